"""Figures and the Markdown report of the claim experiment (docs/results.md).

The report is regenerated between ``<!-- claim:<profile>:begin -->`` and ``<!-- claim:<profile>:end -->`` markers,
so one document can hold several profiles (CPU, GPU) and hand-written analysis around them survives a rerun.
Figures (matplotlib object API on the Agg canvas) go to ``<output_dir>/figures`` and are copied next to the
document, in a folder named after it (``docs/results/<profile>-*.png``).
"""

from __future__ import annotations

import math
import re
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import colormaps

from equiseg.config import EquisegConfig
from equiseg.experiments.analysis import ClaimAnalysis
from equiseg.experiments.stats import Estimate
from equiseg.figures import new_figure, save_figure

__all__ = ["claim_markdown", "update_document", "write_claim_figures", "write_claim_report"]

_MAIN_COLUMNS: tuple[tuple[str, str], ...] = (
    ("clean", "clean"),
    ("emm_avg", "EMM avg"),
    ("emm_min", "EMM min"),
    ("rmm_avg", "RMM avg"),
    ("nm_avg", "NM avg"),
    ("miou_c", "mIoU_C"),
    ("balance_ratio", "balance"),
)


def _colours(models: Sequence[str]) -> dict[str, Any]:
    cmap = colormaps["tab10"]
    return {m: cmap(i % 10) for i, m in enumerate(models)}


def _subset_keys(analysis: ClaimAnalysis) -> list[str]:
    """EMM kept-subset keys, full set first, then by size, in modality order."""
    keys = {k.split("/", 1)[1] for v in analysis.metrics.values() for k in v if k.startswith("emm/")}
    order = {m: i for i, m in enumerate(analysis.modalities)}

    def rank(key: str) -> tuple[int, list[int]]:
        parts = key.split("-")
        return (-len(parts), [order.get(p, 99) for p in parts])

    return sorted(keys, key=rank)


def _emm_figure(analysis: ClaimAnalysis, path: Path) -> Path:
    subsets = _subset_keys(analysis)
    models = analysis.models
    colours = _colours(models)
    fig = new_figure(max(7.0, 1.2 * len(subsets) + 2), 4.2)
    ax = fig.add_subplot(1, 1, 1)
    width = 0.8 / max(len(models), 1)
    x = np.arange(len(subsets))
    for i, model in enumerate(models):
        ests = [analysis.metrics[model].get(f"emm/{s}") for s in subsets]
        values = [e.value if e else math.nan for e in ests]
        errs = np.array([[e.value - e.low, e.high - e.value] if e else [0.0, 0.0] for e in ests]).T
        ax.bar(
            x + (i - (len(models) - 1) / 2) * width,
            values,
            width,
            yerr=errs,
            capsize=2,
            label=model,
            color=colours[model],
        )
    ax.set_xticks(x, [s.replace("-", "+") for s in subsets], rotation=20)
    ax.set_ylabel("mIoU (points)")
    ax.set_title("EMM: mIoU with only the listed modalities present (mean of seeds, 95% CI)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7, ncol=3)
    return save_figure(fig, path)


def _heatmap_figure(analysis: ClaimAnalysis, path: Path) -> Path:
    columns = [(k, label) for k, label in _MAIN_COLUMNS if k != "balance_ratio"]
    columns += [(f"single_{m}", f"only {m}") for m in analysis.modalities]
    columns += [(f"miou_c_{m}", f"mIoU_C {m}") for m in analysis.modalities]
    models = analysis.models
    data = np.array(
        [[analysis.metrics[m][k].value if k in analysis.metrics[m] else math.nan for k, _ in columns] for m in models]
    )
    fig = new_figure(1.0 * len(columns) + 2.5, 0.5 * len(models) + 1.6)
    ax = fig.add_subplot(1, 1, 1)
    image = ax.imshow(data, cmap="viridis", aspect="auto", vmin=0, vmax=max(1.0, float(np.nanmax(data))))
    ax.set_xticks(range(len(columns)), [label for _, label in columns], rotation=35, ha="right")
    ax.set_yticks(range(len(models)), models)
    for i in range(len(models)):
        for j in range(len(columns)):
            if np.isfinite(data[i, j]):
                ax.text(
                    j,
                    i,
                    f"{data[i, j]:.1f}",
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if data[i, j] < 0.6 * np.nanmax(data) else "black",
                )
    fig.colorbar(image, ax=ax, label="mIoU (points)")
    ax.set_title("Robustness summary (mean of seeds)")
    return save_figure(fig, path)


def _severity_figure(analysis: ClaimAnalysis, path: Path) -> Path:
    mods = analysis.modalities
    colours = _colours(analysis.models)
    fig = new_figure(4.0 * len(mods), 3.4)
    for j, modality in enumerate(mods):
        ax = fig.add_subplot(1, len(mods), j + 1)
        for model in analysis.models:
            values = analysis.metrics[model]
            xs, ys = [0], [values["clean"].value]
            for severity in range(1, 6):
                est = values.get(f"sev{severity}_{modality}")
                if est is not None:
                    xs.append(severity)
                    ys.append(est.value)
            ax.plot(xs, ys, marker="o", ms=3, label=model, color=colours[model])
        ax.set_title(f"{modality} corrupted")
        ax.set_xlabel("severity (0 = clean)")
        if j == 0:
            ax.set_ylabel("mIoU, mean over degradations")
        ax.grid(alpha=0.3)
    fig.axes[-1].legend(fontsize=7)
    return save_figure(fig, path)


def _difference_figure(analysis: ClaimAnalysis, cfg: EquisegConfig, path: Path) -> Path:
    others = list(analysis.differences)
    fig = new_figure(8.0, 0.45 * len(others) * 2 + 1.5)
    ax = fig.add_subplot(1, 1, 1)
    rows: list[tuple[str, Estimate, str]] = []
    for model in others:
        for key, label in (("clean", "clean"), ("emm_avg", "EMM avg")):
            est = analysis.differences[model].get(key)
            if est is not None:
                rows.append((f"vs {model}: {label}", est, key))
    for i, (_label, est, key) in enumerate(rows):
        colour = "tab:blue" if key == "emm_avg" else "tab:grey"
        ax.errorbar(
            est.value, i, xerr=[[est.value - est.low], [est.high - est.value]], fmt="o", color=colour, capsize=3
        )
    ax.axvline(0.0, color="black", lw=0.8)
    for model, margin in cfg.experiment.emm_margins.items():
        label = f"vs {model}: EMM avg"
        idx = [i for i, r in enumerate(rows) if r[0] == label]
        if idx:
            ax.plot([margin, margin], [idx[0] - 0.4, idx[0] + 0.4], color="tab:red", lw=2)
    ax.set_yticks(range(len(rows)), [r[0] for r in rows])
    ax.invert_yaxis()
    ax.set_xlabel(f"{analysis.candidate} minus other model (mIoU points; red: target margin)")
    ax.grid(axis="x", alpha=0.3)
    return save_figure(fig, path)


def _curves_figure(analysis: ClaimAnalysis, path: Path) -> Path:
    colours = _colours(analysis.models)
    fig = new_figure(11.0, 3.4)
    panels = (("train_loss", "training loss"), ("clean_miou", "val clean mIoU"), ("emm_avg", "val EMM avg"))
    for j, (key, title) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), j + 1)
        for model, runs in analysis.histories.items():
            # per-epoch points where the metric was measured (val robustness runs every few epochs)
            points = [[(i + 1, h[key]) for i, h in enumerate(run) if key in h] for run in runs]
            points = [p for p in points if p]
            if not points:
                continue
            length = min(len(p) for p in points)
            epochs = [e for e, _ in points[0][:length]]
            mean = np.mean(np.array([[v for _, v in p[:length]] for p in points]), axis=0)
            ax.plot(epochs, mean, marker="o", ms=2, label=model, color=colours[model])
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    labelled = [ax for ax in fig.axes if ax.lines]
    if labelled:
        labelled[-1].legend(fontsize=7)
    return save_figure(fig, path)


def write_claim_figures(analysis: ClaimAnalysis, cfg: EquisegConfig, folder: Path) -> dict[str, Path]:
    """Write the five figures into ``folder``; returns name -> path."""
    folder.mkdir(parents=True, exist_ok=True)
    return {
        "emm_subsets": _emm_figure(analysis, folder / "emm_subsets.png"),
        "summary_heatmap": _heatmap_figure(analysis, folder / "summary_heatmap.png"),
        "corruption_severity": _severity_figure(analysis, folder / "corruption_severity.png"),
        "differences": _difference_figure(analysis, cfg, folder / "differences.png"),
        "training_curves": _curves_figure(analysis, folder / "training_curves.png"),
    }


# ------------------------------------------------------------------------------------------------------------------
# Markdown
# ------------------------------------------------------------------------------------------------------------------


def _ci(est: Estimate | None, digits: int = 1) -> str:
    if est is None or not math.isfinite(est.value):
        return "–"
    return f"{est.value:.{digits}f} [{est.low:.{digits}f}, {est.high:.{digits}f}]"


def _signed(est: Estimate | None) -> str:
    if est is None:
        return "–"
    return f"{est.value:+.1f} [{est.low:+.1f}, {est.high:+.1f}]"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _shortfalls(analysis: ClaimAnalysis) -> list[str]:
    """Where the candidate trails: EMM subsets and corruption cells against the best other model."""
    cand = analysis.candidate
    lines: list[str] = []
    others = [m for m in analysis.models if m != cand]
    if not others:
        return lines
    subset_rows = []
    for subset in _subset_keys(analysis):
        key = f"emm/{subset}"
        best = max(others, key=lambda m: analysis.metrics[m].get(key, Estimate(-1, -1, -1)).value)
        diff = analysis.differences[best].get(key)
        subset_rows.append([subset.replace("-", "+"), _ci(analysis.metrics[cand].get(key)), best, _signed(diff)])
    lines += ["**EMM subsets: the candidate against the best other model on each subset**", ""]
    lines += _table(["kept modalities", cand, "best other", "difference [CI]"], subset_rows)
    gaps: list[tuple[float, str, str, str]] = []
    for name, row in analysis.corruption.get(cand, {}).items():
        for severity, value in row.items():
            best = max(others, key=lambda m: analysis.corruption.get(m, {}).get(name, {}).get(severity, -1.0))
            other = analysis.corruption.get(best, {}).get(name, {}).get(severity)
            if other is not None:
                gaps.append((value - other, f"{name} s{severity}", best, f"{value:.1f} vs {other:.1f}"))
    gaps.sort()
    if gaps:
        lines += ["", "**Corruption cells where the candidate trails the best other model most (seed means)**", ""]
        lines += _table(
            ["cell", "best other", "candidate vs best", "gap"],
            [[cell, best, text, f"{gap:+.1f}"] for gap, cell, best, text in gaps[:8]],
        )
    return lines


def claim_markdown(analysis: ClaimAnalysis, cfg: EquisegConfig, figures: Mapping[str, str]) -> str:
    """The generated section of the results document (figures referenced by the relative paths given)."""
    meta = analysis.meta
    ec = cfg.experiment
    level = round(100 * ec.ci_level)
    lines = [
        f"## Profile `{cfg.profile}`",
        "",
        f"- Command: `{meta.get('command') or 'equiseg experiment claim --profile ' + cfg.profile}`",
        f"- Commit: `{meta.get('git_commit') or 'unknown'}`, config hash `{meta.get('config_hash', '')}`, "
        f"date {meta.get('date', '')}",
        f"- Runs: {len(analysis.models)} models × {len(analysis.seeds)} seeds {analysis.seeds} on "
        f"{', '.join(meta.get('devices', []))}; {cfg.data.samples} synthetic scenes of {cfg.data.image_size}², "
        f"modalities {', '.join(analysis.modalities)}; {cfg.train.epochs} epochs, batch {cfg.train.batch_size}, "
        f"lr {cfg.train.lr:g}, modality dropout {cfg.train.modality_dropout:g}, loss {cfg.train.loss}",
        f"- Scored: robustness suite `{cfg.robustness.suite}` on the `{cfg.robustness.split}` split "
        f"({meta.get('num_test_images')} images), each run's best epoch picked on `val` by (clean + EMM avg) / 2",
        f"- Time: training {meta.get('train_seconds_total', 0.0) / 60:.1f} min, evaluation "
        f"{meta.get('eval_seconds_total', 0.0) / 60:.1f} min in total",
        f"- Intervals: {level}% two-level bootstrap ({ec.bootstrap_samples} replicates; seeds, then test images "
        "paired across models); all values are mIoU points except the balance ratio (min/max of single-modality "
        "mIoU, 0-1)",
        "",
        "### Targets",
        "",
    ]
    lines += _table(
        ["target", "requirement", "measured [CI]", "point estimate meets it", "CI clears it"],
        [
            [o.name, o.requirement, _signed(o.estimate), "yes" if o.met else "**no**", "yes" if o.confident else "no"]
            for o in analysis.outcomes
        ],
    )
    met = sum(o.met for o in analysis.outcomes)
    lines += ["", f"**{met} of {len(analysis.outcomes)} targets met.**", "", "### All models", ""]
    lines += _table(
        ["model", *[label for _, label in _MAIN_COLUMNS], "train s/run"],
        [
            [
                f"**{m}**" if m == analysis.candidate else m,
                *[_ci(analysis.metrics[m].get(k), 2 if k == "balance_ratio" else 1) for k, _ in _MAIN_COLUMNS],
                f"{analysis.timings[m]['train_s']:.0f}",
            ]
            for m in analysis.models
        ],
    )
    lines += ["", f"### {analysis.candidate} minus each other model", ""]
    diff_keys = [("clean", "clean"), ("emm_avg", "EMM avg"), ("emm_min", "EMM min"), ("miou_c", "mIoU_C")]
    diff_keys += [(f"single_{m}", f"only {m}") for m in analysis.modalities]
    lines += _table(
        ["other model", *[label for _, label in diff_keys]],
        [[m, *[_signed(analysis.differences[m].get(k)) for k, _ in diff_keys]] for m in analysis.differences],
    )
    lines += ["", "### Single-modality and per-seed figures", ""]
    single_keys = [(f"single_{m}", f"only {m}") for m in analysis.modalities]
    lines += _table(
        ["model", *[label for _, label in single_keys], "EMM avg per seed", "clean per seed"],
        [
            [
                m,
                *[_ci(analysis.metrics[m].get(k)) for k, _ in single_keys],
                ", ".join(f"{v:.1f}" for v in analysis.per_seed[m].get("emm_avg", [])),
                ", ".join(f"{v:.1f}" for v in analysis.per_seed[m].get("clean", [])),
            ]
            for m in analysis.models
        ],
    )
    lines += ["", "### Where the candidate falls short", ""]
    lines += _shortfalls(analysis)
    lines += ["", "### Figures", ""]
    captions = {
        "differences": "Candidate minus each model, with CIs; red marks the target margin.",
        "emm_subsets": "EMM per kept modality subset.",
        "summary_heatmap": "Summary per model.",
        "corruption_severity": "Corruption of one modality at growing severity (mean over degradations).",
        "training_curves": "Training curves (mean of seeds; val metrics from the quick suite).",
    }
    for name, rel in figures.items():
        lines += [f"![{captions.get(name, name)}]({rel})", "", f"*{captions.get(name, name)}*", ""]
    modes = meta.get("missing_modes", {})
    if modes:
        lines += [
            "Missing-modality mode per model (EMM): "
            + ", ".join(f"{m}: {'/'.join(v)}" for m, v in modes.items())
            + " (drop = the model fuses the present subset; zero = zero-filled input).",
            "",
        ]
    return "\n".join(lines).rstrip() + "\n"


def write_claim_report(
    analysis: ClaimAnalysis, cfg: EquisegConfig, *, out_dir: Path, doc_path: Path | None
) -> dict[str, Path]:
    """Write figures and ``results.md`` under ``out_dir``; with ``doc_path``, update that document's section too.

    Returns:
        name -> path of every file written (figures, ``results.md``, the document).
    """
    figures = write_claim_figures(analysis, cfg, out_dir / "figures")
    paths: dict[str, Path] = dict(figures)
    local = claim_markdown(analysis, cfg, {k: f"figures/{p.name}" for k, p in figures.items()})
    paths["results_md"] = out_dir / "results.md"
    paths["results_md"].write_text(f"# Claim experiment\n\n{local}")
    paths["results_json"] = out_dir / "results.json"
    if doc_path is not None:
        folder = doc_path.parent / doc_path.stem
        folder.mkdir(parents=True, exist_ok=True)
        rel: dict[str, str] = {}
        for name, path in figures.items():
            target = folder / f"{cfg.profile}-{path.name}"
            shutil.copyfile(path, target)
            rel[name] = f"{doc_path.stem}/{target.name}"
        update_document(doc_path, cfg.profile, claim_markdown(analysis, cfg, rel))
        paths["doc"] = doc_path
    return paths


def update_document(path: Path, profile: str, section: str, kind: str = "claim") -> None:
    """Replace the profile's marked section of ``path`` (appending it, or creating the file, when absent)."""
    begin, end = f"<!-- {kind}:{profile}:begin -->", f"<!-- {kind}:{profile}:end -->"
    block = f"{begin}\n{section.rstrip()}\n{end}"
    text = path.read_text() if path.is_file() else "# Results: does balance pay?\n"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.DOTALL)
    found = pattern.search(text) is not None
    text = pattern.sub(lambda _m: block, text) if found else text.rstrip() + "\n\n" + block + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text if text.endswith("\n") else text + "\n")
