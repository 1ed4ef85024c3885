"""Shared matplotlib helpers for the reports (robustness report, experiment report; docs/robustness.md).

Figures use matplotlib's object API on an Agg canvas: no global pyplot state, no display needed, safe in threads and
on headless machines.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from numpy.typing import NDArray

__all__ = ["colourise", "label_colours", "new_figure", "save_figure"]


def new_figure(width: float, height: float) -> Figure:
    """A matplotlib figure on its own Agg canvas (no pyplot state, no display)."""
    fig = Figure(figsize=(width, height), dpi=110)
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Figure, path: Path) -> Path:
    """Write ``fig`` as a tightly cropped PNG; returns ``path``."""
    fig.savefig(path, format="png", bbox_inches="tight")
    return path


def label_colours(num_classes: int) -> NDArray[np.float64]:
    """``(K, 3)`` RGB colours in [0, 1] for class ids, from matplotlib's ``tab20`` (repeats after 20 classes)."""
    cmap = colormaps["tab20"]
    return np.array([cmap(i % 20)[:3] for i in range(num_classes)], dtype=np.float64)


def colourise(label: NDArray[np.int64], colours: NDArray[np.float64]) -> NDArray[np.float64]:
    """``(H, W)`` class ids -> ``(H, W, 3)`` image; ids outside ``colours`` (e.g. the ignore index) stay black."""
    out = np.zeros((*label.shape, 3))
    valid = (label >= 0) & (label < len(colours))
    out[valid] = colours[label[valid]]
    return out
