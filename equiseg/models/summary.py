"""Size and cost of a registered model: parameters, FLOPs and the per-stage feature shapes fed to the decoder.

FLOPs come from ``torch.utils.flop_counter.FlopCounterMode`` (matmuls, convolutions, attention; 2 FLOPs per
multiply-add). Segmentation papers (SegFormer, CMNeXt) quote fvcore/mmcv "GFLOPs", which count one per
multiply-add, so :class:`ModelSummary` reports both: ``gflops`` (true) and ``gmacs`` (the papers' unit).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from equiseg.models.base import SegmentationModel
from equiseg.models.registry import create_model

__all__ = ["ModelSummary", "count_flops", "summarize", "summarize_model"]


@dataclass
class ModelSummary:
    """What ``equiseg model summary`` prints."""

    name: str
    modalities: tuple[str, ...]
    size: int
    params: int
    gflops: float
    stage_shapes: list[tuple[int, ...]] = field(default_factory=list)
    logits_shape: tuple[int, ...] = ()

    @property
    def gmacs(self) -> float:
        """Multiply-adds in billions: what SegFormer/CMNeXt tables call "GFLOPs"."""
        return self.gflops / 2.0

    def to_text(self) -> str:
        """Human-readable block."""
        lines = [
            f"model       {self.name}",
            f"modalities  {', '.join(self.modalities)}",
            f"input       {self.size}x{self.size}, batch 1",
            f"params      {self.params / 1e6:.3f} M",
            f"GFLOPs      {self.gflops:.2f} (2 per multiply-add; papers' fvcore 'GFLOPs' = GMACs {self.gmacs:.2f})",
            f"logits      {tuple(self.logits_shape)}",
        ]
        lines += [
            f"stage{i + 1}      {shape} (fused features into the decoder)" for i, shape in enumerate(self.stage_shapes)
        ]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict."""
        return {
            "name": self.name,
            "modalities": list(self.modalities),
            "size": self.size,
            "params": self.params,
            "gflops": self.gflops,
            "gmacs": self.gmacs,
            "stage_shapes": [list(s) for s in self.stage_shapes],
            "logits_shape": list(self.logits_shape),
        }


def count_flops(model: nn.Module, inputs: dict[str, Tensor]) -> tuple[int, Any]:
    """FLOPs (2 per multiply-add) of one inference forward pass on ``inputs``, and the model's output."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            output = model(inputs)
    finally:
        model.train(was_training)
    return int(counter.get_total_flops()), output


def random_inputs(model: SegmentationModel, size: int, batch: int = 1, seed: int = 0) -> dict[str, Tensor]:
    """Normalised-looking random inputs for every modality of ``model`` at ``size`` x ``size``."""
    generator = torch.Generator().manual_seed(seed)
    return {name: torch.randn(batch, c, size, size, generator=generator) for name, c in model.in_chans.items()}


def summarize_model(model: SegmentationModel, size: int) -> ModelSummary:
    """Parameters, FLOPs and per-stage decoder-input shapes of ``model`` on a ``size`` x ``size`` batch of one."""
    if size < 32:
        raise ValueError(f"size must be at least 32 (the encoder's output stride), got {size}")
    inputs = random_inputs(model, size)
    captured: list[tuple[int, ...]] = []

    def capture(_module: nn.Module, args: tuple[Any, ...]) -> None:
        captured.extend(tuple(feat.shape) for feat in args[0])

    handle = model.decoder.register_forward_pre_hook(capture)  # its input is forward_features(inputs)
    try:
        flops, output = count_flops(model, inputs)
    finally:
        handle.remove()
    return ModelSummary(
        name=model.model_name,
        modalities=model.modalities,
        size=size,
        params=sum(p.numel() for p in model.parameters()),
        gflops=flops / 1e9,
        stage_shapes=captured,
        logits_shape=tuple(output.logits.shape),
    )


def summarize(name: str, modalities: Sequence[str], size: int = 512, num_classes: int = 25) -> ModelSummary:
    """Build ``name`` for ``modalities`` (default DeLiVER's 25 classes) and summarise it at ``size``."""
    return summarize_model(create_model(name, num_classes=num_classes, modalities=tuple(modalities)), size)
