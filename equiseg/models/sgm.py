"""Self-guided Module (SGM): per-modality predictions, their contribution estimates and mutual guidance
(EQUISeg, arXiv 2509.24505).

The abstract states that the SGM's "mutual guidance" lets each modality adaptively adjust its contribution;
third-party summaries mention prototype distillation and knowledge distillation. Our reading (inferred, docs/model.md),
after the sibling RobustSeg/UMMSS code's prototype KL:

* every modality gets an auxiliary head, a small SegFormer-style head over its four stages fused at 1/4 resolution
  (:class:`ModalityHead`), and its own cross-entropy there (``sgm_aux_ce``), so each modality learns to segment on
  its own (a head on the last stage alone would see 2x2 positions at 64x64);
* **contribution estimates**, label-free so that they exist at inference: per position, a softmax over the present
  modalities of the negative entropy of each head's prediction (:meth:`SelfGuidedModule.contribution`, detached). The
  model feeds them to every stage's hierarchical selection as a prior, in training and at inference alike, so a
  modality whose own prediction is confident at a position gets more weight in the fusion there;
* mutual guidance (training only): each modality is distilled towards the mixture of the *other* modalities weighted
  by how well each does on this batch, ``softmax_j(-CE_j)`` (detached, a teacher): KL of its head's class
  distribution (``sgm_logit_kl``) and, at every stage, KL between softmax-normalised class prototypes (masked
  feature means per class, ``sgm_proto_kl``).

``terms`` picks the loss terms (the SGM ablation: ``("ce",)``, ``("ce", "logit")``, all three). All terms are
multiplied by ``sgm_weight`` and returned as a dict the trainer sums with its main loss.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["SGM_TERMS", "ModalityHead", "SelfGuidedModule", "class_masks", "class_prototypes"]

#: The SGM loss terms in ablation order: per-branch CE, + logit guidance, + prototype guidance.
SGM_TERMS: tuple[str, ...] = ("ce", "logit", "proto")


def class_masks(labels: Tensor, size: tuple[int, int], num_classes: int, ignore_index: int) -> Tensor:
    """Nearest-resized one-hot class masks of ``labels`` ``(B, H, W)``: ``(B, K, h*w)``, zero at ignored pixels."""
    small = F.interpolate(labels[:, None].float(), size=size, mode="nearest")[:, 0].long()  # (B, h, w)
    valid = (small != ignore_index) & (small >= 0) & (small < num_classes)
    one_hot = F.one_hot(torch.where(valid, small, 0), num_classes) * valid[..., None]  # (B, h, w, K)
    return one_hot.flatten(1, 2).transpose(1, 2)  # (B, K, h*w)


def class_prototypes(feat: Tensor, masks: Tensor) -> tuple[Tensor, Tensor]:
    """Masked per-class mean of ``feat`` ``(B, C, h, w)`` under :func:`class_masks` ``(B, K, h*w)``.

    Returns:
        prototypes ``(B, K, C)`` and a ``(B, K)`` bool mask of the classes present in each image.
    """
    masks = masks.to(feat.dtype)
    counts = masks.sum(dim=-1)  # (B, K)
    sums = masks @ feat.flatten(2).transpose(1, 2)  # (B, K, C)
    return sums / counts.clamp(min=1.0)[..., None], counts > 0


class ModalityHead(nn.Module):
    """One modality's auxiliary segmentation head: every stage projected to ``dim``, upsampled to stage 1 (1/4 of
    the input), summed, GELU, 1x1 classifier (a SegFormer all-MLP head in miniature)."""

    def __init__(self, embed_dims: Sequence[int], dim: int, num_classes: int) -> None:
        super().__init__()
        self.proj = nn.ModuleList(nn.Conv2d(c, dim, 1) for c in embed_dims)
        self.classify = nn.Conv2d(dim, num_classes, 1)

    def forward(self, stage_feats: Sequence[Tensor]) -> Tensor:
        """Four ``(B, C_i, h_i, w_i)`` maps -> ``(B, K, h_1, w_1)`` logits."""
        size = stage_feats[0].shape[-2:]
        total = self.proj[0](stage_feats[0])
        for proj, feat in zip(self.proj[1:], stage_feats[1:], strict=True):
            total = total + F.interpolate(proj(feat), size=size, mode="bilinear", align_corners=False)
        out: Tensor = self.classify(F.gelu(total))
        return out


class SelfGuidedModule(nn.Module):
    """Per-modality heads, label-free contribution estimates and the guidance losses (see module docstring)."""

    def __init__(
        self,
        modalities: Sequence[str],
        embed_dims: Sequence[int],
        num_classes: int,
        *,
        weight: float = 1.0,
        ignore_index: int = 255,
        temperature: float = 1.0,
        contribution_temperature: float = 0.25,
        aux_ce_weight: float = 0.4,
        logit_kl_weight: float = 0.5,
        proto_kl_weight: float = 1.0,
        terms: Sequence[str] = SGM_TERMS,
    ) -> None:
        super().__init__()
        unknown = sorted(set(terms) - set(SGM_TERMS))
        if unknown or "ce" not in terms:
            raise ValueError(f"SGM terms {list(terms)} must include 'ce' and come from {list(SGM_TERMS)}")
        self.num_classes = num_classes
        self.weight = weight
        self.ignore_index = ignore_index
        self.temperature = temperature
        self.contribution_temperature = contribution_temperature
        self.aux_ce_weight = aux_ce_weight
        self.logit_kl_weight = logit_kl_weight
        self.proto_kl_weight = proto_kl_weight
        self.terms = tuple(t for t in SGM_TERMS if t in terms)
        head_dim = max(2 * int(embed_dims[0]), 16)
        self.aux_heads = nn.ModuleDict({name: ModalityHead(embed_dims, head_dim, num_classes) for name in modalities})

    def predict(self, stage_feats: Sequence[dict[str, Tensor]]) -> dict[str, Tensor]:
        """Each present modality's own logits ``(B, K, H/4, W/4)`` from its per-stage features."""
        names = list(stage_feats[0])
        return {name: self.aux_heads[name]([feats[name] for feats in stage_feats]) for name in names}

    def contribution(self, aux_logits: dict[str, Tensor]) -> Tensor:
        """Per-position shares ``(B, N, H/4, W/4)`` (sum 1 over N): softmax over modalities of the negative entropy
        (in units of ``log K``) of each modality's own prediction, divided by ``contribution_temperature``;
        detached (an estimate, not a path for the main loss)."""
        entropies = []
        for logits in aux_logits.values():
            logp = F.log_softmax(logits.detach().float(), dim=1)
            entropies.append(-(logp.exp() * logp).sum(dim=1) / math.log(max(self.num_classes, 2)))
        stacked = torch.stack(entropies, dim=1)  # (B, N, h, w) in [0, 1]
        return torch.softmax(-stacked / self.contribution_temperature, dim=1).to(next(iter(aux_logits.values())).dtype)

    def forward(
        self, stage_feats: Sequence[dict[str, Tensor]], aux_logits: dict[str, Tensor], labels: Tensor
    ) -> dict[str, Tensor]:
        """Weighted loss terms from per-stage ``{modality: (B, C, h, w)}`` features, the heads' logits
        (:meth:`predict`) and ``(B, H, W)`` labels."""
        names = list(aux_logits)
        quarter = aux_logits[names[0]].shape[-2:]
        small = F.interpolate(labels[:, None].float(), size=quarter, mode="nearest")[:, 0].long()  # (B, H/4, W/4)
        valid = (small != self.ignore_index) & (small >= 0) & (small < self.num_classes)
        # No host-side "any valid pixel?" branch (a GPU sync, a graph break under torch.compile): the CE is a sum over
        # valid pixels / their count, and ``any_valid`` zeroes the guidance terms of a batch without one.
        any_valid = valid.any()
        count = valid.sum().clamp(min=1)
        temp = self.temperature
        safe_labels = torch.where(valid, small, self.ignore_index)
        ce = {
            name: F.cross_entropy(logit, safe_labels, ignore_index=self.ignore_index, reduction="sum") / count
            for name, logit in aux_logits.items()
        }
        losses = {"sgm_aux_ce": self.weight * self.aux_ce_weight * torch.stack(list(ce.values())).mean()}
        if len(names) < 2:
            return losses
        # Adaptive contribution: the better a modality does on this batch, the more it guides the others.
        contribution = torch.softmax(-torch.stack([ce[name].detach() for name in names]), dim=0)  # (N,)
        if "logit" in self.terms:
            probs = {name: torch.softmax(aux_logits[name].detach() / temp, dim=1) for name in names}
            logit_terms = []
            for i, name in enumerate(names):
                others = [j for j in range(len(names)) if j != i]
                share = contribution[others] / contribution[others].sum()
                teacher = sum(share[k] * probs[names[j]] for k, j in enumerate(others))
                assert isinstance(teacher, Tensor)
                student = F.log_softmax(aux_logits[name] / temp, dim=1)
                logit_terms.append(F.kl_div(student, teacher, reduction="none").sum(dim=1).mean() * temp**2)
            losses["sgm_logit_kl"] = self.weight * self.logit_kl_weight * torch.stack(logit_terms).mean() * any_valid
        if "proto" in self.terms:
            losses["sgm_proto_kl"] = (
                self.weight * self.proto_kl_weight * self._prototype_kl(stage_feats, labels, names, contribution)
            )
        return losses

    def _prototype_kl(
        self, stage_feats: Sequence[dict[str, Tensor]], labels: Tensor, names: list[str], contribution: Tensor
    ) -> Tensor:
        """Mean over stages (with a present class) of the KL between each modality's class prototypes and the
        contribution-weighted prototypes of the others."""
        temp = self.temperature
        proto_terms: list[Tensor] = []
        stage_has_class: list[Tensor] = []
        for feats in stage_feats:
            size = (int(feats[names[0]].shape[-2]), int(feats[names[0]].shape[-1]))
            masks = class_masks(labels, size, self.num_classes, self.ignore_index)
            present = masks.sum(dim=-1) > 0  # (B, K)
            n_present = present.sum()
            protos = {name: class_prototypes(feats[name], masks)[0] for name in names}
            for i, name in enumerate(names):
                others = [j for j in range(len(names)) if j != i]
                share = contribution[others] / contribution[others].sum()
                teacher_proto = sum(share[k] * protos[names[j]].detach() for k, j in enumerate(others))
                assert isinstance(teacher_proto, Tensor)
                kl = F.kl_div(
                    F.log_softmax(protos[name] / temp, dim=-1),
                    F.softmax(teacher_proto / temp, dim=-1),
                    reduction="none",
                ).sum(dim=-1)  # (B, K)
                # mean over the present classes, as a masked sum (no data-dependent shape); a stage without any
                # present class adds no term (its weight in the mean below is 0)
                proto_terms.append((kl * present).sum() / n_present.clamp(min=1))
                stage_has_class.append(n_present > 0)
        counted = torch.stack(stage_has_class).float()  # 1 for the terms of stages with a present class
        return (torch.stack(proto_terms) * counted).sum() / counted.sum().clamp(min=1)
