"""What the gate reads and what it writes: the robustness-result shape it needs and the verdict.

:class:`ResultLike` is anything shaped like ``equiseg.robustness.RobustnessResult``; :class:`GateVerdict` is the
decision with every :class:`Check`, serialised as ``gate.json`` and ``gate.md`` (how to read them: docs/gate.md).
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from equiseg.promotion.gate_report import render_gate_html, render_gate_markdown

__all__ = ["Check", "GateVerdict", "ResultLike", "SliceLike", "write_verdict"]


class SliceLike(Protocol):
    """One evaluation slice (a degradation, severity or missing-modality set) of a robustness result."""

    @property
    def miou(self) -> float: ...
    @property
    def ci_low(self) -> float: ...
    @property
    def ci_high(self) -> float: ...
    @property
    def per_image_miou(self) -> Sequence[float]: ...
    @property
    def sample_ids(self) -> Sequence[str]: ...


class ResultLike(Protocol):
    """What the gate needs from ``equiseg.robustness.RobustnessResult``."""

    @property
    def slices(self) -> Mapping[str, SliceLike]: ...
    def summary_metrics(self) -> dict[str, float]: ...


@dataclass(frozen=True)
class Check:
    """One rule of the gate applied to one number.

    Attributes:
        name: stable rule id, e.g. ``floor.clean_miou`` or ``slice_drop.emm_missing_rgb``.
        value: the measured value (candidate value, or a change, or a bootstrap lower bound).
        threshold: the bound the value must reach (``value >= threshold`` passes).
        margin: ``value - threshold``; negative when the rule fails.
        passed: whether the rule holds.
        reason: the outcome in plain words.
    """

    name: str
    value: float
    threshold: float
    margin: float
    passed: bool
    reason: str


@dataclass(frozen=True)
class GateVerdict:
    """The gate's decision with every check; serialised as ``gate.json`` and ``gate.md``.

    Attributes:
        passed: every check passed.
        checks: all checks, in the order they were applied.
        mode: the policy mode (``enabled``, ``dry_run`` or ``manual``); it decides what promotion does with a pass.
        first_run: no champion existed, so only the value floors applied.
        candidate: what was gated (checkpoint path or model URI).
        champion_version: the champion version the candidate was compared with (the compare-and-set value).
        candidate_metrics / champion_metrics: summary metrics of both, scored on the same data.
        candidate_slices / champion_slices: per-slice ``{"miou", "ci_low", "ci_high"}``.
        policy: the policy that produced the verdict.
        num_samples: images in the paired comparison (0 on a first run).
        created_at: ISO-8601 UTC time of the decision.
        candidate_digest: sha256 of the candidate's checkpoint file: what binds the verdict to the model it judged
            (``register`` and ``promote`` refuse a version whose checkpoint differs; docs/gate.md).
        candidate_model_id: the candidate's MLflow logged-model id (``m-<hex>``), when it was gated as one.
        data_version: ``sha256:<hex>`` of the evaluation manifest.
        policy_hash: sha256 of the gate policy (``gate`` config section) that decided.
    """

    passed: bool
    checks: list[Check]
    mode: str
    first_run: bool
    candidate: str = ""
    champion_version: str | None = None
    candidate_metrics: dict[str, float] = field(default_factory=dict)
    champion_metrics: dict[str, float] = field(default_factory=dict)
    candidate_slices: dict[str, dict[str, float]] = field(default_factory=dict)
    champion_slices: dict[str, dict[str, float]] = field(default_factory=dict)
    policy: dict[str, Any] = field(default_factory=dict)
    num_samples: int = 0
    created_at: str = ""
    candidate_digest: str = ""
    candidate_model_id: str = ""
    data_version: str = ""
    policy_hash: str = ""

    @property
    def failed_checks(self) -> list[Check]:
        """The checks that failed."""
        return [c for c in self.checks if not c.passed]

    @property
    def reasons(self) -> list[str]:
        """Plain-words reasons of the failed checks (or one line saying all passed)."""
        failed = self.failed_checks
        if not failed:
            return [f"all {len(self.checks)} checks passed"]
        return [c.reason for c in failed]

    def headline(self) -> str:
        """One line for logs and run summaries, e.g. ``passed (12 checks, vs champion v3)``."""
        against = "first run, floors only" if self.first_run else f"vs champion v{self.champion_version}"
        if self.passed:
            return f"passed ({len(self.checks)} checks, {against}, mode {self.mode})"
        names = ", ".join(c.name for c in self.failed_checks[:3])
        more = f" and {len(self.failed_checks) - 3} more" if len(self.failed_checks) > 3 else ""
        return f"blocked: {names}{more} failed ({against})"

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (JSON-safe; non-finite numbers become ``None``)."""
        return _json_safe(dataclasses.asdict(self) | {"reasons": self.reasons})

    def to_json(self) -> str:
        """The verdict as indented JSON (the content of ``gate.json``)."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=False)

    @classmethod
    def from_json(cls, text: str) -> GateVerdict:
        """Rebuild a verdict written by :meth:`to_json`."""
        raw = json.loads(text)
        raw.pop("reasons", None)
        known = {f.name for f in dataclasses.fields(cls)}
        raw = {k: v for k, v in raw.items() if k in known}
        checks = [
            Check(**{**c, "value": _num(c["value"]), "threshold": _num(c["threshold"]), "margin": _num(c["margin"])})
            for c in raw.pop("checks")
        ]
        return cls(checks=checks, **raw)

    def with_checks(self, extra: Sequence[Check]) -> GateVerdict:
        """A copy with more checks appended (e.g. the serving check) and ``passed`` recomputed."""
        checks = [*self.checks, *extra]
        return dataclasses.replace(self, checks=checks, passed=all(c.passed for c in checks))

    def to_markdown(self) -> str:
        """Human-readable report (the content of ``gate.md``; layout in :mod:`~equiseg.promotion.gate_report`)."""
        return render_gate_markdown(self)

    def to_html(self) -> str:
        """The same report as one self-contained HTML page (the content of ``gate.html``)."""
        return render_gate_html(self)


def write_verdict(verdict: GateVerdict, out_dir: str | Path) -> tuple[Path, Path]:
    """Write ``gate.json``, ``gate.md`` and ``gate.html`` into ``out_dir`` (created if needed); returns the first 2."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / "gate.json", out / "gate.md"
    json_path.write_text(verdict.to_json() + "\n")
    md_path.write_text(verdict.to_markdown())
    (out / "gate.html").write_text(verdict.to_html())
    return json_path, md_path


def fmt_number(value: float | None) -> str:
    """Three decimals; ``n/a`` for a missing or NaN value."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.3f}"


def _num(value: Any) -> float:
    return math.nan if value is None else float(value)


def _json_safe(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value
