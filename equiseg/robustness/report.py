"""Robustness report: ``robustness.json``, ``robustness.md``, a self-contained ``robustness.html`` and PNG figures.

Figures (``equiseg.figures``: matplotlib's object API on an Agg canvas, no global pyplot state, no display):

- ``heatmap.png``: mIoU over (modality, degradation) x severity, the corruption matrix (docs/robustness.md);
- ``emm_subsets.png``: mIoU of every EMM kept subset with its bootstrap CI, clean mIoU as a line;
- ``examples.png``: input, label and predictions under a few slices for one sample per condition tag (only when
  ``examples`` are given, see :func:`~equiseg.robustness.examples.collect_examples`).
"""

from __future__ import annotations

import base64
import html
import logging
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from equiseg.figures import colourise, label_colours, new_figure, save_figure
from equiseg.robustness.examples import PredictionExample, collect_examples
from equiseg.robustness.result import RobustnessResult, SliceResult, slice_label

# collect_examples is re-exported: it was defined here, and callers import it with write_robustness_report
__all__ = ["PredictionExample", "collect_examples", "slice_label", "write_robustness_report"]

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------------------------------------


def _heatmap(result: RobustnessResult, path: Path) -> Path | None:
    """Change of mIoU from clean per (modality / degradation) x severity, plus one row per missing modality.

    The drop from clean is what matters to a reviewer (docs/robustness.md); absolute values of a weak model all look
    alike. Red = worse than clean, blue = better, white = no change.
    """
    matrix: Mapping[str, Mapping[str, Mapping[str, float]]] = (result.aggregates.get("corruption") or {}).get(
        "matrix", {}
    )
    if not matrix:
        return None
    clean = result.clean_miou
    severities = sorted({int(s) for degs in matrix.values() for cells in degs.values() for s in cells})
    labels = [f"{m} / {d}" for m, degs in matrix.items() for d in degs]
    rows = [
        [matrix[m][d].get(str(s), math.nan) - clean for s in severities] for m, degs in matrix.items() for d in degs
    ]
    alone = [s for s in result.slices.values() if s.kind == "emm" and len(s.params.get("missing", [])) == 1]
    for s in alone:  # a whole modality missing, shown in the first column's scale
        labels.append(f"{s.params['missing'][0]} / missing")
        rows.append([s.miou - clean] + [math.nan] * (len(severities) - 1))
    values = np.array(rows, dtype=float)
    fig = new_figure(2.0 + 0.9 * len(severities), 0.9 + 0.32 * len(labels))
    ax = fig.add_subplot(1, 1, 1)
    span = max(1.0, float(np.nanmax(np.abs(values))) if np.isfinite(values).any() else 1.0)
    image = ax.imshow(values, cmap="RdBu", vmin=-span, vmax=span, aspect="auto")
    ax.set_xticks(range(len(severities)), [f"severity {s}" for s in severities])
    ax.set_yticks(range(len(labels)), labels)
    for r in range(len(labels)):
        for c in range(len(severities)):
            if not math.isnan(values[r, c]):
                colour = "white" if abs(values[r, c]) > 0.6 * span else "black"
                ax.text(c, r, f"{values[r, c]:+.1f}", ha="center", va="center", fontsize=7, color=colour)
    ax.set_title(f"Change of mIoU from clean ({clean:.1f}), per modality / degradation")
    fig.colorbar(image, ax=ax, label="Δ mIoU (points)")
    return save_figure(fig, path)


def _emm_bars(result: RobustnessResult, path: Path) -> Path | None:
    emm = [s for s in result.slices.values() if s.kind == "emm"]
    if not emm:
        return None
    bars = [result.slices["clean"], *sorted(emm, key=lambda s: (-len(s.params["kept"]), s.name))]
    labels = ["all (clean)"] + ["+".join(s.params["kept"]) for s in bars[1:]]
    values = np.array([s.miou for s in bars])
    low = np.array([s.ci_low if not math.isnan(s.ci_low) else s.miou for s in bars])
    high = np.array([s.ci_high if not math.isnan(s.ci_high) else s.miou for s in bars])
    fig = new_figure(1.5 + 0.55 * len(bars), 3.6)
    ax = fig.add_subplot(1, 1, 1)
    ax.bar(range(len(bars)), values, yerr=np.vstack([values - low, high - values]), color="#4c72b0", capsize=3)
    avg = result.aggregates["emm"]["avg"]
    ax.axhline(avg, color="#dd8452", linestyle="--", label=f"EMM avg {avg:.1f}")
    ax.set_xticks(range(len(bars)), labels, rotation=45, ha="right")
    ax.set_ylabel("mIoU")
    ax.set_title("Entire-missing modality: kept subsets (95% bootstrap CI)")
    ax.set_ylim(0, max(1.0, float(high.max())) * 1.15)
    ax.legend(loc="upper right")
    return save_figure(fig, path)


def _example_grid(examples: Sequence[PredictionExample], num_classes: int, path: Path) -> Path | None:
    if not examples:
        return None
    names = list(examples[0].predictions)
    cols = 2 + len(names)
    fig = new_figure(1.9 * cols, 1.9 * len(examples))
    colours = label_colours(num_classes)
    for r, ex in enumerate(examples):
        panels: list[tuple[str, np.ndarray]] = [("input", ex.image), ("label", colourise(ex.label, colours))]
        panels += [(n, colourise(ex.predictions[n], colours)) for n in names if n in ex.predictions]
        for c, (title, image) in enumerate(panels):
            ax = fig.add_subplot(len(examples), cols, r * cols + c + 1)
            ax.imshow(image, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(title if c < 2 else slice_label(title), fontsize=8)
            if c == 0:
                tags = ",".join(ex.conditions) or "-"
                ax.set_ylabel(f"{ex.sample_id}\n[{tags}]", fontsize=7)
    return save_figure(fig, path)


# --------------------------------------------------------------------------------------------------------------------
# Text reports
# --------------------------------------------------------------------------------------------------------------------


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return "-" if math.isnan(value) else f"{value:.2f}"
    return str(value)


def _ci(s: SliceResult) -> str:
    return "-" if math.isnan(s.ci_low) else f"[{s.ci_low:.2f}, {s.ci_high:.2f}]"


def _tables(
    result: RobustnessResult, class_names: Sequence[str] | None = None
) -> list[tuple[str, list[str], list[list[str]]]]:
    """(title, header, rows) of every section, shared by the Markdown and HTML renderers."""
    agg = result.aggregates
    tables: list[tuple[str, list[str], list[list[str]]]] = []
    summary = result.summary_metrics()
    headline = [k for k in summary if not k.startswith("miou/")]
    tables.append(("Summary", ["metric", "value"], [[k, _fmt(summary[k])] for k in headline]))
    clean = result.slices["clean"]
    titles = {"emm": "Entire-missing modality (EMM)", "rmm": "Random-missing modality (RMM)", "nm": "Noisy modality"}
    for kind, title in titles.items():
        members = [s for s in result.slices.values() if s.kind == kind]
        if members:
            if kind == "emm":
                members.insert(0, clean)
            rows = [[slice_label(s.name), _fmt(s.miou), _fmt(s.miou - clean.miou), _ci(s)] for s in members]
            tables.append((title, ["slice", "mIoU", "Δ from clean", "CI"], rows))
    matrix = (agg.get("corruption") or {}).get("matrix", {})
    if matrix:
        severities = sorted({int(s) for d in matrix.values() for c in d.values() for s in c})
        rows = [
            [m, d, *[_fmt(cells.get(str(s))) for s in severities]]
            for m, degs in matrix.items()
            for d, cells in degs.items()
        ]
        tables.append(("Corruption matrix (mIoU)", ["modality", "degradation", *[f"s{s}" for s in severities]], rows))
        delta = [
            [m, d, *[_fmt(cells[str(s)] - clean.miou) if str(s) in cells else "-" for s in severities]]
            for m, degs in matrix.items()
            for d, cells in degs.items()
        ]
        tables.append(
            ("Change from clean (mIoU points)", ["modality", "degradation", *[f"s{s}" for s in severities]], delta)
        )
    conds = [s for s in result.slices.values() if s.kind == "cond"]
    if conds:
        tables.append(
            (
                "Condition slices",
                ["slice", "images", "mIoU", "CI"],
                [[s.name, str(len(s.sample_ids)), _fmt(s.miou), _ci(s)] for s in conds],
            )
        )
    balance = agg.get("balance") or {}
    if balance:
        rows = [[m, _fmt(v), _fmt(balance["drop_without"].get(m))] for m, v in balance["single"].items()]
        tables.append(("Modality balance", ["modality", "mIoU alone", "drop when removed"], rows))
    tables.append(
        (
            "Per-class IoU (clean)",
            ["class", "IoU"],
            [
                [_class_label(i, class_names), _fmt(v * 100 if not math.isnan(v) else v)]
                for i, v in enumerate(clean.per_class_iou)
            ],
        )
    )
    return tables


def _class_label(index: int, class_names: Sequence[str] | None) -> str:
    if class_names is not None and index < len(class_names):
        return f"{index} {class_names[index]}"
    return str(index)


def _markdown(result: RobustnessResult, figures: Mapping[str, Path], class_names: Sequence[str] | None) -> str:
    meta = result.meta
    lines = [
        "# Robustness report",
        "",
        f"Suite `{meta['suite']}`, seed {meta['seed']}, {meta['num_samples']} samples, modalities "
        f"{', '.join(meta['modalities'])}, {meta['num_classes']} classes, missing modalities "
        f"`{meta['missing_mode']}`, absent classes as zero: {meta['absent_as_zero']}. mIoU in points; CIs are "
        f"{int(100 * meta['ci_level'])}% percentile bootstrap over images ({meta['bootstrap_samples']} resamples).",
        "",
        f"Worst slice: `{result.aggregates['worst_slice']['name']}` at {result.aggregates['worst_slice']['miou']:.2f}.",
        "",
    ]
    for title, header, rows in _tables(result, class_names):
        lines += [f"## {title}", "", "| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        lines.append("")
    for key, path in figures.items():
        lines += [f"![{key}]({path.name})", ""]
    return "\n".join(lines)


def _html(result: RobustnessResult, figures: Mapping[str, Path], class_names: Sequence[str] | None) -> str:
    esc = html.escape
    meta = result.meta
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>equiseg robustness report</title>",
        "<style>body{font-family:sans-serif;margin:2em;max-width:1100px}table{border-collapse:collapse;margin:1em 0}"
        "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#eee}"
        "td:first-child{text-align:left}"
        "img{max-width:100%}</style></head><body>",
        "<h1>Robustness report</h1>",
        f"<p>Suite <code>{esc(str(meta['suite']))}</code>, seed {meta['seed']}, {meta['num_samples']} samples, "
        f"modalities {esc(', '.join(meta['modalities']))}, {meta['num_classes']} classes, missing modalities "
        f"<code>{esc(str(meta['missing_mode']))}</code>. Worst slice: "
        f"<code>{esc(result.aggregates['worst_slice']['name'])}</code> at "
        f"{result.aggregates['worst_slice']['miou']:.2f} mIoU.</p>",
    ]
    for key, path in figures.items():
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        parts.append(f"<h2>{esc(key)}</h2><img alt='{esc(key)}' src='data:image/png;base64,{data}'>")
    for title, header, rows in _tables(result, class_names):
        parts.append(f"<h2>{esc(title)}</h2><table><tr>" + "".join(f"<th>{esc(h)}</th>" for h in header) + "</tr>")
        parts += ["<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in rows]
        parts.append("</table>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_robustness_report(
    result: RobustnessResult,
    out_dir: str | os.PathLike[str],
    *,
    examples: Sequence[PredictionExample] | None = None,
    class_names: Sequence[str] | None = None,
) -> dict[str, Path]:
    """Write ``robustness.json``, ``robustness.md``, ``robustness.html`` and the PNG figures into ``out_dir``.

    ``class_names`` (index order) label the per-class table; ids are shown otherwise.

    Returns:
        ``{"json", "markdown", "html", "heatmap"?, "emm_subsets"?, "examples"?: Path}``; a figure is absent when
        the suite has nothing to draw (e.g. no corruption matrix in the ``clean`` suite, no examples given).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {"json": out / "robustness.json"}
    result.to_json(paths["json"])
    figures: dict[str, Path] = {}
    heat = _heatmap(result, out / "heatmap.png")
    if heat is not None:
        figures["heatmap"] = heat
    bars = _emm_bars(result, out / "emm_subsets.png")
    if bars is not None:
        figures["emm_subsets"] = bars
    grid = _example_grid(list(examples or []), int(result.meta["num_classes"]), out / "examples.png")
    if grid is not None:
        figures["examples"] = grid
    paths["markdown"] = out / "robustness.md"
    paths["markdown"].write_text(_markdown(result, figures, class_names))
    paths["html"] = out / "robustness.html"
    paths["html"].write_text(_html(result, figures, class_names))
    paths.update(figures)
    logger.info("robustness report written to %s (%s)", out, ", ".join(p.name for p in paths.values()))
    return paths
