"""The gate report a reviewer approves from: ``gate.md`` and a self-contained ``gate.html`` beside it.

Layout (docs/gate.md, "Reading the report"): one verdict line; the failing checks first, in plain words; one row per
check family (a summary metric, the per-slice comparison, the constant-predictor floor, the missing-modality floor,
the overall improvement, serving) with candidate, champion, Δ and the paired bootstrap bound; every check and every
slice folded below. Slices are named one way everywhere (:func:`~equiseg.robustness.report.slice_label`: which
modalities are kept, which are missing).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from equiseg.pages import markdown_to_html
from equiseg.robustness.result import slice_label

if TYPE_CHECKING:  # the verdict module imports this one to render itself
    from equiseg.promotion.verdict import Check, GateVerdict

__all__ = ["check_family", "render_gate_html", "render_gate_markdown"]

_METRICS = ("clean_miou", "emm_avg", "worst_slice_miou", "balance_ratio")
_FAMILY_TITLES = {
    "beats_constant": "beats any constant (majority-class) predictor",
    "keeps_without": "keeps mIoU with one modality missing",
    "slices": "per-slice change vs champion (paired)",
    "improvement": "overall improvement (paired)",
    "serving": "serving in a fresh process (latency, ms)",
    "registry_serving": "serving of the registered version (latency, ms)",
}


def _num(value: float | None, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.{digits}f}"


def check_family(name: str) -> str:
    """The family a check belongs to: a summary metric (``metric:clean_miou``), ``slices``, ``beats_constant``,
    ``keeps_without``, ``improvement``, ``serving`` or ``registry_serving``."""
    head, _, rest = name.partition(".")
    if head in ("serving", "registry_serving"):
        return head
    if head == "floor" and rest.partition(".")[0] in ("beats_constant", "keeps_without"):
        return rest.partition(".")[0]
    if head in ("floor", "abs_change", "rel_change", "change"):
        return f"metric:{rest}"
    if head in ("slice_drop", "noninferiority"):
        return "slices"
    return head


@dataclass(frozen=True)
class _Row:
    family: str
    title: str
    checks: list[Check]
    candidate: float | None
    champion: float | None
    paired_low: float | None
    subject: str

    @property
    def failed(self) -> int:
        return sum(not c.passed for c in self.checks)

    @property
    def delta(self) -> float | None:
        if self.candidate is None or self.champion is None:
            return None
        return self.candidate - self.champion


def _deciding(checks: Sequence[Check]) -> Check:
    """The check that decides a family: the failing (or passing) one with the smallest margin."""
    failed = [c for c in checks if not c.passed]
    pool = failed or list(checks)
    return min(pool, key=lambda c: c.margin if not math.isnan(c.margin) else -math.inf)


def _slice_of(check_name: str) -> str:
    return check_name.partition(".")[2]


def _rows(verdict: GateVerdict) -> list[_Row]:
    families: dict[str, list[Check]] = {}
    for c in verdict.checks:
        families.setdefault(check_family(c.name), []).append(c)
    rows = []
    cand_m, champ_m = verdict.candidate_metrics, verdict.champion_metrics
    for family, checks in families.items():
        worst = _deciding(checks)
        candidate: float | None = worst.value
        champion: float | None = None
        paired_low: float | None = None
        subject = worst.name
        if family.startswith("metric:"):
            key = family.removeprefix("metric:")
            title = key.replace("_", " ")
            candidate, champion = cand_m.get(key), champ_m.get(key) if champ_m else None
        elif family == "slices":
            name = _slice_of(worst.name)
            title, subject = _FAMILY_TITLES[family], slice_label(name)
            candidate = verdict.candidate_slices.get(name, {}).get("miou")
            champion = verdict.champion_slices.get(name, {}).get("miou")
            bound = next((c for c in checks if c.name == f"noninferiority.{name}"), None)
            paired_low = bound.value if bound else None
        elif family == "improvement":
            title, paired_low, candidate = _FAMILY_TITLES[family], worst.value, None
        elif family in ("serving", "registry_serving"):
            title = _FAMILY_TITLES[family]
            timed = [c for c in checks if not c.name.endswith(".load")]  # value = latency (ms), threshold = budget
            slowest = max(timed, key=lambda c: c.value, default=None)
            if slowest is not None and worst.passed:
                candidate, subject = slowest.value, slowest.name
            elif slowest is not None:
                candidate = slowest.value
        else:
            title = _FAMILY_TITLES.get(family, family)
        rows.append(_Row(family, title, checks, candidate, champion, paired_low, subject))
    return sorted(rows, key=lambda r: r.failed == 0)  # failing families first, otherwise in rule order


def _verdict_line(verdict: GateVerdict) -> str:
    n, failed = len(verdict.checks), len(verdict.failed_checks)
    against = (
        "first run: no champion, floors only"
        if verdict.first_run
        else f"against champion version {verdict.champion_version}, paired on {verdict.num_samples} images"
    )
    at_registry = sum(c.name.startswith("registry_") for c in verdict.checks)
    if at_registry:  # gate/gate.md has the gate's checks; registry/gate.md adds the registered version's serving
        against += f"; {n - at_registry} checks at the gate, {at_registry} when registering"
    if verdict.passed:
        return f"**PASSED**: all {n} checks hold ({against}; mode `{verdict.mode}`)."
    return f"**BLOCKED**: {failed} of {n} checks failed ({against}; mode `{verdict.mode}`)."


def _ci(s: Mapping[str, float] | None) -> str:
    if not s:
        return "–"
    return f"{_num(s.get('miou'))} [{_num(s.get('ci_low'))}, {_num(s.get('ci_high'))}]"


def render_gate_markdown(verdict: GateVerdict) -> str:
    """``gate.md``: verdict line, failing checks, one row per family, then every check and slice folded."""
    level = verdict.policy.get("ci_level", 0.95)
    lines = [
        f"# Promotion gate: {'PASSED' if verdict.passed else 'BLOCKED'}",
        "",
        _verdict_line(verdict),
        "",
        f"- candidate: `{verdict.candidate or '(unnamed)'}`",
        f"- champion: {('version ' + verdict.champion_version) if verdict.champion_version else 'none yet'}",
        f"- decided at: {verdict.created_at}",
        "",
    ]
    if verdict.failed_checks:
        lines += ["## Failing checks", "", *[f"- `{c.name}`: {c.reason}" for c in verdict.failed_checks], ""]
    lines += [
        "## Checks by family",
        "",
        f"| family | result | candidate | champion | Δ | paired {float(level):.0%} lower bound | deciding check |",
        "| --- | --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in _rows(verdict):
        result = f"**FAIL** ({r.failed}/{len(r.checks)})" if r.failed else f"pass ({len(r.checks)})"
        lines.append(
            f"| {r.title} | {result} | {_num(r.candidate)} | {_num(r.champion)} | {_num(r.delta)} | "
            f"{_num(r.paired_low)} | {r.subject} |"
        )
    lines += ["", "<details><summary>Every check (failing first)</summary>", ""]
    lines += ["| check | value | threshold | margin | result |", "| --- | ---: | ---: | ---: | --- |"]
    for c in sorted(verdict.checks, key=lambda c: c.passed):
        mark = "pass" if c.passed else "**FAIL**"
        lines.append(f"| `{c.name}` | {_num(c.value, 3)} | {_num(c.threshold, 3)} | {_num(c.margin, 3)} | {mark} |")
    lines += ["", "</details>", ""]
    if verdict.candidate_slices:
        lines += ["<details><summary>Every slice (mIoU with bootstrap CI)</summary>", ""]
        lines += ["| slice | name | candidate | champion | Δ |", "| --- | --- | --- | --- | ---: |"]
        for name, s in verdict.candidate_slices.items():
            champ = verdict.champion_slices.get(name)
            delta = s["miou"] - champ["miou"] if champ else None
            lines.append(f"| {slice_label(name)} | `{name}` | {_ci(s)} | {_ci(champ)} | {_num(delta)} |")
        lines += ["", "</details>", ""]
    lines += ["How to read this report: docs/gate.md.", ""]
    return "\n".join(lines)


def render_gate_html(verdict: GateVerdict) -> str:
    """``gate.html``: the Markdown report rendered as one self-contained page."""
    status = "passed" if verdict.passed else "blocked"
    return markdown_to_html(render_gate_markdown(verdict), f"equiseg gate: {status}")
