"""The study's figures (docs/results.md, "Study"): every arm's per-run EMM avg at each dominance setting, and the
candidate's EMM lead against the dial."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from equiseg.config import EquisegConfig
from equiseg.figures import new_figure, save_figure

__all__ = ["FIGURE_CAPTIONS", "arms_figure", "draw_figures", "figure_names", "find_comparison", "lead_figure"]

#: Markdown caption of each figure (``{candidate}``: ``experiment.candidate``)
FIGURE_CAPTIONS = {
    "arms": "EMM avg of every run, per arm and dominance setting (bar: the mean).",
    "lead": "EMM lead of {candidate} against the dial.",
}


def find_comparison(level: Mapping[str, Any], other: str, metric: str) -> dict[str, Any] | None:
    """The candidate-minus-``other`` comparison on ``metric`` of one analysed setting, if there is one."""
    return next((c for c in level["comparisons"] if (c["other"], c["metric"]) == (other, metric)), None)


def _lead_arms(cfg: EquisegConfig) -> list[str]:
    ec = cfg.experiment
    return list(ec.emm_margins) or [m for m in ec.models if m != ec.candidate][:1]


def figure_names(cfg: EquisegConfig, analysis: Mapping[str, Any]) -> dict[str, str]:
    """File names of the figures ``analysis`` has: the arms figure once any setting has runs, the lead figure from
    two settings on (a dial needs two points)."""
    names = {}
    if analysis["levels"]:
        names["arms"] = f"{cfg.profile}-arms.png"
    if len(analysis["levels"]) > 1 and _lead_arms(cfg):
        names["lead"] = f"{cfg.profile}-lead.png"
    return names


def draw_figures(cfg: EquisegConfig, analysis: Mapping[str, Any], folder: Path) -> dict[str, Path]:
    """Draw every figure of :func:`figure_names` into ``folder``; returns their paths by key."""
    folder.mkdir(parents=True, exist_ok=True)
    draw: dict[str, Callable[[EquisegConfig, Mapping[str, Any], Path], Path | None]]
    draw = {"arms": arms_figure, "lead": lead_figure}
    drawn = {key: draw[key](cfg, analysis, folder / name) for key, name in figure_names(cfg, analysis).items()}
    return {key: path for key, path in drawn.items() if path is not None}


def arms_figure(cfg: EquisegConfig, analysis: Mapping[str, Any], path: Path) -> Path:
    """One panel per dominance setting: each arm's EMM avg, one dot per run (seed), a bar at the mean; the
    candidate first, in ``experiment.models`` order."""
    levels = analysis["levels"]
    models = list(cfg.experiment.models)
    fig = new_figure(1.4 + 0.55 * len(models) * len(levels), 3.4)
    axes = fig.subplots(1, len(levels), sharey=True, squeeze=False)[0]
    for ax, (name, level) in zip(axes, levels.items(), strict=True):
        for index, model in enumerate(models):
            values = np.asarray(level["arms"][model].get("per_run", {}).get("emm_avg", []), dtype=float)
            values = values[np.isfinite(values)]
            if not values.size:
                continue
            jitter = np.linspace(-0.15, 0.15, values.size) if values.size > 1 else np.zeros(1)
            colour = "tab:red" if model == cfg.experiment.candidate else "tab:blue"
            ax.scatter(index + jitter, values, s=12, color=colour, alpha=0.7, linewidths=0)
            ax.hlines(values.mean(), index - 0.3, index + 0.3, color="black", linewidth=1.2)
        ax.set_xticks(range(len(models)), [m.removesuffix("_tiny") for m in models], rotation=35, ha="right")
        ax.set_xlim(-0.6, len(models) - 0.4)
        progress = "" if level.get("complete", True) else f", {level['runs']} of {level['planned_runs']} runs"
        ax.set_title(f"dominance {name}{progress}", fontsize=9)
        ax.grid(axis="y", linewidth=0.4, alpha=0.5)
    axes[0].set_ylabel("EMM avg (mIoU points)")
    path.parent.mkdir(parents=True, exist_ok=True)
    return save_figure(fig, path)


def lead_figure(cfg: EquisegConfig, analysis: Mapping[str, Any], path: Path) -> Path | None:
    """EMM avg lead of the candidate over each ``experiment.emm_margins`` arm (cmnext_like first) against the dial,
    with bootstrap intervals and the target margin; ``None`` with fewer than two settings (no dial to plot)."""
    ec = cfg.experiment
    others = _lead_arms(cfg)
    if not others or len(analysis["levels"]) < 2:
        return None
    fig = new_figure(5.5, 3.4)
    ax = fig.add_subplot(1, 1, 1)
    for offset, other in enumerate(others):
        xs, ys, lows, highs = [], [], [], []
        for name, level in analysis["levels"].items():
            comp = find_comparison(level, other, "emm_avg")
            if comp is None or math.isnan(comp["difference"]):
                continue
            xs.append(float(name) + 0.01 * offset)
            ys.append(comp["difference"])
            lows.append(comp["difference"] - comp["low"])
            highs.append(comp["high"] - comp["difference"])
        ax.errorbar(xs, ys, yerr=[lows, highs], marker="o", capsize=3, label=f"{ec.candidate} - {other}")
        if other in ec.emm_margins:
            ax.axhline(ec.emm_margins[other], linestyle=":", linewidth=0.8, color=ax.lines[-1].get_color())
    ax.axhline(0.0, color="black", linewidth=0.6)
    ax.set_xlim(-0.05, 1.05)  # the whole dial, so settings still to come have their place
    ax.set_xlabel(f"dominance of {cfg.data.dominant_modality or 'none'} (data.dominance)")
    ax.set_ylabel("EMM avg lead (mIoU points)")
    ax.legend(fontsize=7)
    path.parent.mkdir(parents=True, exist_ok=True)
    return save_figure(fig, path)
