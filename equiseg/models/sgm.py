"""Self-guided Module (SGM): mutual guidance between modalities during training (EQUISeg, arXiv 2509.24505).

The paper states that the SGM's "mutual guidance" lets each modality adaptively adjust its contribution; third-party
summaries mention prototype distillation and knowledge distillation. Our reading (docs/model.md), after the sibling
RobustSeg/UMMSS code's prototype KL:

* every modality gets an auxiliary 1x1 classifier on its stage-4 features and its own cross-entropy at 1/4 scale
  (``sgm_aux_ce``), so that each modality learns to segment on its own;
* adaptive contribution weights ``a_j = softmax_j(-CE_j)`` (detached) rate how well each modality does on this batch;
* each modality is guided by the ``a``-weighted mixture of the *other* modalities (detached, a teacher):
  KL of its auxiliary class distribution (``sgm_logit_kl``) and, at every stage, KL between softmax-normalised class
  prototypes (masked feature means per class, ``sgm_proto_kl``).

All terms are multiplied by ``sgm_weight`` and returned as a dict the trainer sums with its main loss. Nothing of the
SGM runs at inference; its only cost there is the (unused) auxiliary classifiers' weights.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["SelfGuidedModule", "class_masks", "class_prototypes"]


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


class SelfGuidedModule(nn.Module):
    """Training-only mutual guidance losses between the modality branches (see module docstring)."""

    def __init__(
        self,
        modalities: Sequence[str],
        last_dim: int,
        num_classes: int,
        *,
        weight: float = 1.0,
        ignore_index: int = 255,
        temperature: float = 1.0,
        aux_ce_weight: float = 0.4,
        logit_kl_weight: float = 0.5,
        proto_kl_weight: float = 1.0,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.weight = weight
        self.ignore_index = ignore_index
        self.temperature = temperature
        self.aux_ce_weight = aux_ce_weight
        self.logit_kl_weight = logit_kl_weight
        self.proto_kl_weight = proto_kl_weight
        self.aux_heads = nn.ModuleDict({name: nn.Conv2d(last_dim, num_classes, 1) for name in modalities})

    def forward(self, stage_feats: Sequence[dict[str, Tensor]], labels: Tensor) -> dict[str, Tensor]:
        """Weighted loss terms from per-stage ``{modality: (B, C, h, w)}`` features and ``(B, H, W)`` labels."""
        names = list(stage_feats[-1])
        # Auxiliary predictions are scored at stage-1 resolution (1/4), where the decoder works, not at full size.
        quarter = stage_feats[0][names[0]].shape[-2:]
        small = F.interpolate(labels[:, None].float(), size=quarter, mode="nearest")[:, 0].long()  # (B, H/4, W/4)
        valid = (small != self.ignore_index) & (small >= 0) & (small < self.num_classes)
        # No host-side "any valid pixel?" branch (a GPU sync, a graph break under torch.compile): the CE is a sum over
        # valid pixels / their count, and ``any_valid`` zeroes the guidance terms of a batch without one.
        any_valid = valid.any()
        count = valid.sum().clamp(min=1)
        temp = self.temperature
        aux_logits = {name: self.aux_heads[name](stage_feats[-1][name]) for name in names}  # (B, K, h4, w4)
        safe_labels = torch.where(valid, small, self.ignore_index)
        ce = {
            name: F.cross_entropy(
                F.interpolate(logit, size=quarter, mode="bilinear", align_corners=False),
                safe_labels,
                ignore_index=self.ignore_index,
                reduction="sum",
            )
            / count
            for name, logit in aux_logits.items()
        }
        losses = {"sgm_aux_ce": self.weight * self.aux_ce_weight * torch.stack(list(ce.values())).mean()}
        if len(names) < 2:
            return losses
        # Adaptive contribution: the better a modality does on this batch, the more it guides the others.
        contribution = torch.softmax(-torch.stack([ce[name].detach() for name in names]), dim=0)  # (N,)
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

        proto_terms: list[Tensor] = []
        stage_has_class: list[Tensor] = []
        for feats in stage_feats:
            size = (int(feats[names[0]].shape[-2]), int(feats[names[0]].shape[-1]))
            masks = class_masks(labels, size, self.num_classes, self.ignore_index)
            protos = {}
            present = masks.sum(dim=-1) > 0  # (B, K)
            n_present = present.sum()
            for name in names:
                protos[name], _ = class_prototypes(feats[name], masks)
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
        proto_mean = (torch.stack(proto_terms) * counted).sum() / counted.sum().clamp(min=1)
        losses["sgm_proto_kl"] = self.weight * self.proto_kl_weight * proto_mean
        return losses
