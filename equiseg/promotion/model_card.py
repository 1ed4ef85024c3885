"""Model card (``model_card.md``) for one registered version: what it is for, what it was trained on, how it scores.

Sections: intended use, data (version and statistics), training configuration, clean and robustness metrics with
confidence intervals, the robustness heatmap, the gate verdict and known limitations (docs/gate.md). Built from plain
data so it can be tested without MLflow.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from equiseg.promotion.verdict import GateVerdict
from equiseg.robustness.result import slice_label

__all__ = ["build_model_card", "write_model_card"]

_HEADLINE = ("clean_miou", "emm_avg", "emm_min", "worst_slice_miou", "balance_ratio", "relative_robustness")


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else f"{value:.2f}"
    return str(value)


def build_model_card(
    *,
    model_name: str,
    version: str,
    verdict: GateVerdict,
    lineage: Mapping[str, str] | None = None,
    config: Mapping[str, Any] | None = None,
    data_stats: Mapping[str, Any] | None = None,
    heatmap: str | None = None,
) -> str:
    """Markdown model card for ``model_name`` version ``version``.

    Args:
        model_name: registered model name.
        version: registered version.
        verdict: the gate verdict (carries the clean and robustness metrics with CIs of the candidate).
        lineage: dataset version, git commit, pipeline run id, config hash.
        config: resolved configuration as a nested dict (``config_to_dict``); model, data and train are shown.
        data_stats: data statistics (e.g. the validation step's ``stats.json``); top-level scalars are shown.
        heatmap: relative path or URI of the robustness heatmap figure.
    """
    config = config or {}
    data_cfg, model_cfg, train_cfg = (dict(config.get(k) or {}) for k in ("data", "model", "train"))
    modalities = ", ".join(data_cfg.get("modalities") or []) or "see the training config"
    lines = [
        f"# Model card: {model_name} version {version}",
        "",
        "## Intended use",
        "",
        f"Semantic segmentation of multimodal scenes ({modalities}) that must keep working when a sensor degrades or "
        "drops out (EQUISeg, arXiv 2509.24505). Input: normalised float32 tensors per modality (RGB ImageNet "
        "mean/std, other modalities in [0, 1]); any non-empty subset of the trained modalities may be given. Output: "
        f"per-pixel logits over {data_cfg.get('num_classes', '?')} classes at input size. Not intended for "
        "safety-critical decisions without a human in the loop, nor for sensors or domains absent from the training "
        "data.",
        "",
        "## Data",
        "",
    ]
    lineage = dict(lineage or {})
    lines += [f"- {k.removeprefix('equiseg.').replace('_', ' ')}: `{v}`" for k, v in sorted(lineage.items())] or [
        "- lineage: not recorded"
    ]
    if data_cfg:
        lines.append(
            f"- source: {data_cfg.get('source', '?')}, image size {data_cfg.get('image_size', '?')}, "
            f"val fraction {data_cfg.get('val_fraction', '?')}"
        )
    scalars = {k: v for k, v in (data_stats or {}).items() if isinstance(v, int | float | str | bool)}
    if scalars:
        lines += ["", "| statistic | value |", "| --- | --- |"]
        lines += [f"| {k} | {_fmt(v)} |" for k, v in sorted(scalars.items())]
    lines += ["", "## Training configuration", ""]
    if model_cfg or train_cfg:
        lines += [f"- model.{k}: `{v}`" for k, v in model_cfg.items()]
        lines += [f"- train.{k}: `{v}`" for k, v in train_cfg.items() if k in _TRAIN_KEYS]
    else:
        lines.append("- not recorded")
    lines += ["", "## Metrics (evaluation split, mIoU points)", "", "| metric | value |", "| --- | ---: |"]
    metrics = verdict.candidate_metrics
    lines += [f"| {k} | {_fmt(metrics[k])} |" for k in _HEADLINE if k in metrics]
    if verdict.candidate_slices:
        lines += ["", "### Robustness slices (bootstrap CI)", "", "| slice | mIoU | CI |", "| --- | ---: | --- |"]
        for name, s in verdict.candidate_slices.items():
            lines.append(f"| {slice_label(name)} | {_fmt(s['miou'])} | [{_fmt(s['ci_low'])}, {_fmt(s['ci_high'])}] |")
    registry = [c for c in verdict.checks if c.name.startswith("registry_")]
    gate_checks = len(verdict.checks) - len(registry)
    lines += ["", "### Robustness heatmap (change of mIoU from clean)", ""]
    lines.append(f"![robustness heatmap]({heatmap})" if heatmap else "No heatmap was produced for this version.")
    lines += [
        "",
        "## Gate verdict",
        "",
        f"- result: **{'passed' if verdict.passed else 'failed'}** (mode `{verdict.mode}`, "
        + (
            "first run: value floors only)"
            if verdict.first_run
            else f"compared with champion version {verdict.champion_version} on the same data)"
        ),
        f"- checks: {gate_checks} at the gate (`gate/gate.md`)"
        + (f", plus {len(verdict.checks) - gate_checks} serving checks of the registered version" if registry else ""),
        *([f"- {r}" for r in verdict.reasons] if not verdict.passed else []),
        "",
        "## Known limitations",
        "",
    ]
    limits = [
        "Scores come from the evaluation split of the recorded dataset version; other sensors, resolutions or "
        "domains are not covered.",
        "Confidence intervals are percentile bootstraps over images; they ignore correlation between neighbouring "
        "frames of one sequence.",
    ]
    worst = min(verdict.candidate_slices.items(), key=lambda kv: kv[1]["miou"], default=None)
    if worst is not None:
        limits.append(f"Weakest slice: {slice_label(worst[0])} (`{worst[0]}`) at {_fmt(worst[1]['miou'])} mIoU.")
    if data_cfg.get("source") == "synthetic":
        limits.append("Trained and evaluated on the synthetic world: not a model for real scenes.")
    lines += [f"- {item}" for item in limits]
    return "\n".join(lines) + "\n"


_TRAIN_KEYS = ("epochs", "batch_size", "lr", "weight_decay", "loss", "modality_dropout", "seed", "amp")


def write_model_card(text: str, out_dir: str | Path) -> Path:
    """Write ``model_card.md`` into ``out_dir``; returns its path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "model_card.md"
    path.write_text(text)
    return path
