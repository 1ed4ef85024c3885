"""Tiny reference models and synthetic batches for the robustness tests (not equiseg.models)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from equiseg.modalities import channels_of, from_unit, to_unit

NUM_CLASSES = 5


def encode_label(label: torch.Tensor, modality: str, num_classes: int = NUM_CLASSES) -> torch.Tensor:
    """(B, H, W) labels -> normalised (B, C, H, W) tensor whose image-space value is (label + 1) / (K + 1)."""
    unit = ((label.clamp(0, num_classes - 1).float() + 1.0) / (num_classes + 1.0)).unsqueeze(1)
    unit = unit.expand(-1, channels_of(modality), -1, -1).contiguous()
    return from_unit(unit, modality)


def decode(x: torch.Tensor, modality: str, num_classes: int = NUM_CLASSES) -> tuple[torch.Tensor, torch.Tensor]:
    """Per pixel: (decoded class from the first non-zero channel, whether any channel is non-zero)."""
    unit = to_unit(x, modality)
    classes = (torch.round(unit * (num_classes + 1.0)) - 1.0).clamp(0, num_classes - 1).long()  # (B, C, H, W)
    nonzero = x != 0
    first = nonzero.float().argmax(dim=1, keepdim=True)
    return classes.gather(1, first).squeeze(1), nonzero.any(dim=1)


class OracleModel(torch.nn.Module):
    """Predicts the label from whichever modality is present at each pixel (in the order given)."""

    def __init__(self, modalities: Sequence[str], num_classes: int = NUM_CLASSES) -> None:
        super().__init__()
        self.modalities = tuple(modalities)
        self.num_classes = num_classes

    def forward(self, inputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        first = next(iter(inputs.values()))
        b, _, h, w = first.shape
        pred = torch.zeros((b, h, w), dtype=torch.long, device=first.device)
        done = torch.zeros((b, h, w), dtype=torch.bool, device=first.device)
        for m in self.modalities:
            if m not in inputs:
                continue
            classes, valid = decode(inputs[m], m, self.num_classes)
            take = valid & ~done
            pred = torch.where(take, classes, pred)
            done = done | valid
        return torch.nn.functional.one_hot(pred, self.num_classes).permute(0, 3, 1, 2).float() * 10.0


class SingleModalityModel(torch.nn.Module):
    """Reads only ``use``: a model that ignores every other modality. Returns an object with ``.logits``."""

    def __init__(self, use: str, num_classes: int = NUM_CLASSES) -> None:
        super().__init__()
        self.use = use
        self.num_classes = num_classes

    def forward(self, inputs: Mapping[str, torch.Tensor]) -> Any:
        classes, _ = decode(inputs[self.use], self.use, self.num_classes)
        logits = torch.nn.functional.one_hot(classes, self.num_classes).permute(0, 3, 1, 2).float()

        class Output:
            pass

        out = Output()
        out.logits = logits  # type: ignore[attr-defined]
        return out


def make_batches(
    modalities: Sequence[str],
    *,
    num_images: int = 8,
    batch_size: int = 4,
    size: int = 32,
    num_classes: int = NUM_CLASSES,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Blocky random label maps, every modality encoding the label; some samples tagged night / fog."""
    g = torch.Generator().manual_seed(seed)
    batches = []
    for start in range(0, num_images, batch_size):
        n = min(batch_size, num_images - start)
        coarse = torch.randint(0, num_classes, (n, 1, size // 8, size // 8), generator=g).float()
        label = torch.nn.functional.interpolate(coarse, size=(size, size), mode="nearest").squeeze(1).long()
        label[:, 0, :3] = 255  # a few ignored pixels
        ids = [f"s{start + i:03d}" for i in range(n)]
        conditions = [
            ("night",) if (start + i) % 3 == 0 else ("fog",) if (start + i) % 3 == 1 else () for i in range(n)
        ]
        batches.append(
            {
                "inputs": {m: encode_label(label, m, num_classes) for m in modalities},
                "label": label,
                "sample_id": ids,
                "conditions": conditions,
            }
        )
    return batches
