"""The figures a training run logs: per-epoch curves and a grid of sample predictions.

Built as ``matplotlib.figure.Figure`` objects, without pyplot: no backend, no global figure state, nothing to close.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure

from equiseg.modalities import to_unit

__all__ = ["curves_figure", "predictions_figure"]


def curves_figure(history: Sequence[Mapping[str, float]]) -> Figure:
    """Per-epoch training loss, mIoU metrics and LR from ``history`` (one dict per epoch)."""
    epochs = [int(h.get("epoch", i)) for i, h in enumerate(history)]
    fig = Figure(figsize=(13, 3.5))
    axes = fig.subplots(1, 3)
    panels: list[tuple[Any, tuple[str, ...], str]] = [
        (axes[0], ("train_loss",), "loss"),
        (axes[1], ("val_miou", "clean_miou", "emm_avg", "objective"), "mIoU (points)"),
        (axes[2], ("lr",), "learning rate"),
    ]
    for axis, keys, label in panels:
        for key in keys:
            points = [(e, h[key]) for e, h in zip(epochs, history, strict=True) if key in h]
            if points:
                axis.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=key)
        axis.set_xlabel("epoch")
        axis.set_ylabel(label)
        axis.grid(alpha=0.3)
        if axis.lines:
            axis.legend(fontsize=8)
    fig.tight_layout()
    return fig


def predictions_figure(
    inputs: Mapping[str, torch.Tensor], labels: torch.Tensor, predictions: torch.Tensor, max_samples: int = 4
) -> Figure | None:
    """Grid of the first samples: every modality, ground truth and prediction (ignore pixels black); None if empty."""
    count = min(max_samples, labels.shape[0])
    if count == 0:
        return None
    names = list(inputs)
    columns = len(names) + 2
    fig = Figure(figsize=(2.2 * columns, 2.2 * count))
    axes = fig.subplots(count, columns, squeeze=False)
    vmax = max(
        int(predictions.max().item()), int(labels[labels != 255].max().item()) if (labels != 255).any() else 0, 1
    )
    for row in range(count):
        for col, name in enumerate(names):
            image = to_unit(inputs[name][row].detach().float().cpu(), name).clamp(0, 1)
            shown = image.permute(1, 2, 0).numpy() if image.shape[0] == 3 else image[0].numpy()
            axes[row][col].imshow(shown, cmap=None if image.shape[0] == 3 else "gray")
            axes[row][col].set_title(name if row == 0 else "", fontsize=8)
        gt = np.ma.masked_equal(labels[row].cpu().numpy(), 255)
        axes[row][-2].imshow(gt, cmap="tab20", vmin=0, vmax=vmax, interpolation="nearest")
        axes[row][-1].imshow(predictions[row].cpu().numpy(), cmap="tab20", vmin=0, vmax=vmax, interpolation="nearest")
        if row == 0:
            axes[row][-2].set_title("label", fontsize=8)
            axes[row][-1].set_title("prediction", fontsize=8)
        for axis in axes[row]:
            axis.axis("off")
    fig.tight_layout()
    return fig
