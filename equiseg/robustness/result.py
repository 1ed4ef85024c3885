"""Result types of a robustness evaluation: per-slice scores, aggregates, flat MLflow metrics and JSON round trip."""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["RobustnessResult", "SliceResult", "metric_safe", "slice_label"]

_UNSAFE = re.compile(r"[^\w.\- /]")


def metric_safe(name: str) -> str:
    """Replace characters MLflow rejects in metric keys (anything but word chars, ``.``, ``-``, `` ``, ``/``)."""
    return _UNSAFE.sub("_", name)


def _nan_to_none(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _nan_to_none(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_nan_to_none(v) for v in value]
    return value


def _float(value: Any) -> float:
    return math.nan if value is None else float(value)


@dataclass
class SliceResult:
    """Scores of one evaluation slice (a protocol case, a corruption cell or a condition subset).

    Attributes:
        name: slice name, e.g. ``clean``, ``emm/rgb-depth`` (kept set), ``rmm/r0.5/depth`` (missing set),
            ``nm/mid``, ``corrupt/rgb/fog/s3``, ``cond/night``.
        kind: ``clean | emm | rmm | nm | corrupt | cond``.
        miou: dataset-level mIoU in points (docs/robustness.md).
        ci_low, ci_high: percentile bootstrap interval of ``miou`` over images (NaN when not computable).
        per_class_iou: IoU per class (0-1; NaN for a class absent from target and prediction).
        per_image_miou: per-image mIoU in points, in sample order (for the gate's paired bootstrap).
        sample_ids: sample ids aligned with ``per_image_miou``.
        params: what defines the slice (missing set, ratio, level, modality, degradation, severity, tag).
        per_image_confusion: (N, K, K) confusion matrices per image, aligned with ``sample_ids``; kept only when
            asked for (``evaluate_robustness(keep_confusion=True)``), never serialised to JSON (see
            :meth:`RobustnessResult.save_confusion`). Resampling images and summing their matrices gives bootstrap
            replicates of the dataset-level mIoU itself (the claim experiment's CIs).
    """

    name: str
    kind: str
    miou: float
    ci_low: float
    ci_high: float
    per_class_iou: list[float]
    per_image_miou: list[float]
    sample_ids: list[str]
    params: dict[str, Any] = field(default_factory=dict)
    per_image_confusion: np.ndarray | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (NaN written as null)."""
        return _nan_to_none(
            {
                "name": self.name,
                "kind": self.kind,
                "miou": self.miou,
                "ci_low": self.ci_low,
                "ci_high": self.ci_high,
                "per_class_iou": list(self.per_class_iou),
                "per_image_miou": list(self.per_image_miou),
                "sample_ids": list(self.sample_ids),
                "params": self.params,
            }
        )

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> SliceResult:
        """Inverse of :meth:`to_dict`."""
        return cls(
            name=raw["name"],
            kind=raw["kind"],
            miou=_float(raw["miou"]),
            ci_low=_float(raw["ci_low"]),
            ci_high=_float(raw["ci_high"]),
            per_class_iou=[_float(v) for v in raw["per_class_iou"]],
            per_image_miou=[_float(v) for v in raw["per_image_miou"]],
            sample_ids=[str(s) for s in raw["sample_ids"]],
            params=dict(raw.get("params", {})),
        )


@dataclass
class RobustnessResult:
    """Everything one :func:`~equiseg.robustness.evaluate_robustness` call measured.

    Attributes:
        slices: slice name -> :class:`SliceResult`, in evaluation order.
        aggregates: structured protocol aggregates (see ``docs/robustness.md``): ``clean_miou``, ``emm``, ``rmm``,
            ``nm``, ``corruption``, ``conditions``, ``worst_slice``, ``balance``.
        meta: how it was measured (suite, seed, modalities, num_classes, missing mode, severities, conventions,
            sample count, timings).
    """

    slices: dict[str, SliceResult]
    aggregates: dict[str, Any]
    meta: dict[str, Any]

    @property
    def clean_miou(self) -> float:
        """mIoU with every modality intact."""
        return self.slices["clean"].miou

    def summary_metrics(self) -> dict[str, float]:
        """Flat ``name -> value`` dict with MLflow-safe keys (mIoU values in points, ratios in 0-1).

        Keys: ``clean_miou``; ``emm_avg``, ``emm_min``, ``emm_e0.2|0.1|0.05``; ``rmm_r<r>`` and ``rmm_r<r>_e<p>``;
        ``nm_<level>``; ``corrupt_miou_c``, ``corrupt_miou_c_<modality>``, ``relative_robustness``;
        ``worst_slice_miou``; ``balance_ratio``, ``balance_spread``, ``balance_std``, ``single_<m>_miou``,
        ``drop_without_<m>``; ``cond_<tag>_miou``, ``cond_mean_miou``, ``cond_min_miou``; and ``miou/<slice name>``
        for every slice.
        Metrics a suite did not measure are absent, never zero-filled.
        """
        agg = self.aggregates
        out: dict[str, float] = {"clean_miou": float(agg["clean_miou"])}
        emm = agg.get("emm") or {}
        if emm:
            out["emm_avg"] = emm["avg"]
            out["emm_min"] = emm["min"]
            for p, value in emm["expected"].items():
                out[f"emm_e{p}"] = value
        for ratio, rmm in (agg.get("rmm") or {}).items():
            out[f"rmm_r{ratio}"] = rmm["avg"]
            for p, value in rmm["expected"].items():
                out[f"rmm_r{ratio}_e{p}"] = value
        for level, value in (agg.get("nm") or {}).items():
            out[f"nm_{level}"] = value
        corruption = agg.get("corruption") or {}
        if corruption.get("miou_c") is not None:
            out["corrupt_miou_c"] = corruption["miou_c"]
            out["relative_robustness"] = corruption["relative_robustness"]
            for modality, value in corruption["per_modality_miou_c"].items():
                out[f"corrupt_miou_c_{modality}"] = value
        out["worst_slice_miou"] = agg["worst_slice"]["miou"]
        balance = agg.get("balance") or {}
        if balance:
            out["balance_ratio"] = balance["min_max_ratio"]
            out["balance_spread"] = balance["spread"]
            out["balance_std"] = balance["std"]
            for modality, value in balance["single"].items():
                out[f"single_{modality}_miou"] = value
            for modality, value in balance["drop_without"].items():
                out[f"drop_without_{modality}"] = value
        for tag, value in (agg.get("conditions") or {}).items():
            out[f"cond_{tag}_miou"] = value
        if agg.get("condition_summary"):
            out["cond_mean_miou"] = agg["condition_summary"]["mean"]
            out["cond_min_miou"] = agg["condition_summary"]["min"]
        for name, sl in self.slices.items():
            out[f"miou/{name}"] = sl.miou
        return {metric_safe(k): float(v) for k, v in out.items() if v is not None}

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (NaN written as null)."""
        return {
            "format": "equiseg.robustness/1",
            "meta": _nan_to_none(self.meta),
            "aggregates": _nan_to_none(self.aggregates),
            "summary": _nan_to_none(self.summary_metrics()),
            "slices": [sl.to_dict() for sl in self.slices.values()],
        }

    def to_json(self, path: str | os.PathLike[str] | None = None) -> str:
        """Serialise to strict JSON text (NaN as null); also write it to ``path`` when given."""
        text = json.dumps(self.to_dict(), indent=2, allow_nan=False)
        if path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Path(path).write_text(text)
        return text

    def save_confusion(self, path: str | os.PathLike[str]) -> Path:
        """Write the kept per-image confusion matrices (slice name -> (N, K, K) int32) to a compressed ``.npz``.

        Raises:
            ValueError: the result was evaluated without ``keep_confusion=True``.
        """
        arrays = {
            name: sl.per_image_confusion.astype(np.int32)
            for name, sl in self.slices.items()
            if sl.per_image_confusion is not None
        }
        if not arrays:
            raise ValueError("no per-image confusion matrices were kept; evaluate with keep_confusion=True")
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        with out.open("wb") as fh:
            np.savez_compressed(fh, **arrays)  # type: ignore[arg-type]  # slice names are never "allow_pickle"
        return out

    @staticmethod
    def load_confusion(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
        """Inverse of :meth:`save_confusion`: slice name -> (N, K, K) int64."""
        with np.load(Path(path), allow_pickle=False) as data:
            return {name: data[name].astype(np.int64) for name in data.files}

    @classmethod
    def from_json(cls, source: str | os.PathLike[str]) -> RobustnessResult:
        """Load from JSON text or from a path to a ``robustness.json`` file."""
        text = str(source)
        if isinstance(source, os.PathLike) or not text.lstrip().startswith("{"):
            path = Path(source)
            if not path.is_file():
                raise FileNotFoundError(f"{path} does not exist; pass robustness.json or its JSON text")
            text = path.read_text()
        raw = json.loads(text)
        if raw.get("format") != "equiseg.robustness/1":
            raise ValueError(f"not an equiseg robustness result (format={raw.get('format')!r})")
        slices = [SliceResult.from_dict(s) for s in raw["slices"]]
        return cls(
            slices={s.name: s for s in slices},
            aggregates=_restore_nan(raw["aggregates"]),
            meta=raw["meta"],
        )


def _restore_nan(value: Any) -> Any:
    if value is None:
        return math.nan
    if isinstance(value, dict):
        return {k: (v if k == "name" else _restore_nan(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [_restore_nan(v) for v in value]
    return value


def slice_label(name: str) -> str:
    """One way to name a slice everywhere a person reads it: which modalities are kept, which are missing.

    ``emm/rgb-depth`` (the kept set) -> ``kept rgb+depth``; ``rmm/r0.5/rgb`` (the missing set) ->
    ``rgb missing in 50% of images``; ``corrupt/rgb/fog/s3`` -> ``rgb fog, severity 3``; ``nm/mid`` ->
    ``noisy modalities (mid)``; ``cond/night`` -> ``condition night``; anything else is returned as is.
    """
    parts = name.split("/")
    if parts[0] == "emm" and len(parts) == 2:
        return "kept " + parts[1].replace("-", "+")
    if parts[0] == "rmm" and len(parts) == 3 and parts[1].startswith("r"):
        try:
            share = f"{float(parts[1][1:]):.0%}"
        except ValueError:
            return name
        return f"{parts[2].replace('-', '+')} missing in {share} of images"
    if parts[0] == "corrupt" and len(parts) == 4:
        return f"{parts[1]} {parts[2]}, severity {parts[3].removeprefix('s')}"
    if parts[0] == "nm" and len(parts) == 2:
        return f"noisy modalities ({parts[1]})"
    if parts[0] == "cond" and len(parts) == 2:
        return f"condition {parts[1]}"
    return name
