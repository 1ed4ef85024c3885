"""Protocol aggregates of a robustness run: EMM / RMM / NM summaries, modality balance, corruption matrix, mIoU-C.

Formulas in ``docs/robustness.md`` (after the multimodal robustness benchmark, Liao et al., arXiv 2503.18445, and
ImageNet-C, arXiv 1903.12261). Bootstrap replicates are aggregated by these same definitions
(``equiseg.experiments.stats``).
"""

from __future__ import annotations

import math
import re
import statistics
from collections.abc import Mapping
from typing import Any

from equiseg.robustness.protocols import EMM_P_VALUES, expected_miou, subset_key
from equiseg.robustness.result import SliceResult, metric_safe
from equiseg.robustness.suites import ratio_key

__all__ = ["aggregate_slices", "tag_key"]


def tag_key(tag: str) -> str:
    """A condition tag as it appears in slice names and metric keys: ``"heavy rain"`` -> ``"heavy_rain"``."""
    return metric_safe(re.sub(r"\s+", "_", tag.strip()))


def aggregate_slices(
    slices: Mapping[str, SliceResult],
    modalities: tuple[str, ...],
    condition_names: Mapping[str, str],
    *,
    with_protocols: bool,
) -> dict[str, Any]:
    """The protocol aggregates (docs/robustness.md) from slice mIoUs (``RobustnessResult.aggregates``).

    Reads only each slice's ``name``, ``kind``, ``params`` and ``miou``, so bootstrap replicates can be aggregated
    by the very same definitions (``equiseg.experiments.stats``).
    """
    clean = slices["clean"].miou
    out: dict[str, Any] = {"clean_miou": clean}
    emm_slices = {tuple(s.params["missing"]): s.miou for s in slices.values() if s.kind == "emm"}
    if with_protocols:  # with one modality the only admissible EMM case is the clean one
        by_missing: dict[tuple[str, ...], float] = {(): clean, **emm_slices}
        values = list(by_missing.values())
        out["emm"] = {
            "avg": math.fsum(values) / len(values),
            "min": min(values),
            "expected": {f"{p:g}": expected_miou(by_missing, modalities, p) for p in EMM_P_VALUES},
            "by_kept": {subset_key(tuple(m for m in modalities if m not in s)): v for s, v in by_missing.items()},
        }
        single = {m: by_missing[tuple(x for x in modalities if x != m)] for m in modalities}
        if len(modalities) == 1:
            single = {modalities[0]: clean}
        best = max(single.values())
        out["balance"] = {
            "single": single,
            "min_max_ratio": (min(single.values()) / best) if best > 0 else 0.0,
            "spread": best - min(single.values()),
            "std": statistics.pstdev(single.values()) if len(single) > 1 else 0.0,
            "drop_without": {m: clean - by_missing[(m,)] for m in modalities if (m,) in by_missing},
        }
    rmm: dict[str, Any] = {}
    for ratio in sorted({float(s.params["ratio"]) for s in slices.values() if s.kind == "rmm"}):
        cases: dict[tuple[str, ...], float] = {(): clean}
        cases.update(
            {
                tuple(s.params["missing"]): s.miou
                for s in slices.values()
                if s.kind == "rmm" and float(s.params["ratio"]) == ratio
            }
        )
        rmm[ratio_key(ratio)] = {
            "avg": math.fsum(cases.values()) / len(cases),
            "expected": {f"{p:g}": expected_miou(cases, modalities, p) for p in EMM_P_VALUES},
            "by_missing": {subset_key(s) or "none": v for s, v in cases.items()},
        }
    if rmm:
        out["rmm"] = rmm
    nm = {str(s.params["level"]): s.miou for s in slices.values() if s.kind == "nm"}
    if nm:
        out["nm"] = nm
    corrupt = [s for s in slices.values() if s.kind == "corrupt"]
    if corrupt:
        matrix: dict[str, dict[str, dict[str, float]]] = {}
        for s in corrupt:
            p = s.params
            matrix.setdefault(p["modality"], {}).setdefault(p["degradation"], {})[str(p["severity"])] = s.miou
        miou_c = math.fsum(s.miou for s in corrupt) / len(corrupt)
        per_modality = {
            m: math.fsum(v for row in rows.values() for v in row.values()) / sum(len(row) for row in rows.values())
            for m, rows in matrix.items()
        }
        out["corruption"] = {
            "matrix": matrix,
            "miou_c": miou_c,
            "relative_robustness": miou_c / clean if clean > 0 else 0.0,
            "per_modality_miou_c": per_modality,
        }
    if condition_names:
        conditions = {tag_key(tag): slices[name].miou for tag, name in condition_names.items()}
        out["conditions"] = conditions
        out["condition_summary"] = {
            "mean": math.fsum(conditions.values()) / len(conditions),
            "min": min(conditions.values()),
        }
    worst = min(slices.values(), key=lambda s: s.miou)
    out["worst_slice"] = {"name": worst.name, "miou": worst.miou}
    return out
