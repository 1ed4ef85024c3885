"""The robustness suites: which slices ``clean``, ``emm``, ``quick`` and ``full`` hold, and each slice's input
transform.

Suites (N modalities; ``docs/robustness.md`` lists the exact slices):

- ``clean``: all modalities intact (condition slices ``cond/<tag>`` are derived from it after the run).
- ``emm``: ``clean`` + EMM (2^N - 1 kept sets): exactly what the model-selection objective (clean + EMM) / 2 needs
  (``train.val_suite``), and the single-modality balance.
- ``quick``: ``clean`` + EMM (2^N - 1 kept sets) + RMM r = 0.5 (2^N - 1 missing sets) + NM mid + the key
  corruptions of :data:`~equiseg.robustness.degradations.QUICK_CORRUPTIONS` at ``severities`` (default 1, 3, 5).
  ``severities`` only applies here; the full suite always covers 1-5. Cheap enough for every retraining on CPU.
- ``full``: ``clean`` + EMM + RMM at r = 0.25, 0.5, 0.75 + NM low/mid/high + every registered degradation
  applicable to each modality at severities 1-5 (the whole corruption matrix).

Every random draw of a transform comes from a ``torch.Generator`` seeded by :func:`slice_seed` ``(seed, slice name,
batch index)``, so a slice's inputs do not depend on which other slices run, and two models scored with the same
seed see identical degraded inputs (what the gate's paired comparison needs).
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from equiseg.robustness.degradations import DEGRADATIONS, QUICK_CORRUPTIONS, apply_degradation
from equiseg.robustness.protocols import (
    NM_LEVELS,
    RMM_RATIOS,
    apply_noisy_modalities,
    apply_random_missing,
    missing_sets,
    remove_modalities,
    subset_key,
)

__all__ = [
    "FULL_SEVERITIES",
    "QUICK_SEVERITIES",
    "SUITES",
    "Inputs",
    "SliceSpec",
    "Transform",
    "plan_suite",
    "ratio_key",
    "slice_seed",
]

logger = logging.getLogger(__name__)

SUITES: tuple[str, ...] = ("clean", "emm", "quick", "full")
QUICK_SEVERITIES: tuple[int, ...] = (1, 3, 5)
FULL_SEVERITIES: tuple[int, ...] = (1, 2, 3, 4, 5)
QUICK_RMM_RATIOS: tuple[float, ...] = (0.5,)
QUICK_NM_LEVELS: tuple[str, ...] = ("mid",)

Inputs = dict[str, torch.Tensor]
Transform = Callable[[Inputs, torch.Generator], Inputs]


@dataclass(frozen=True)
class SliceSpec:
    """One planned slice: its name, kind, parameters and the input transform (None = clean inputs)."""

    name: str
    kind: str
    params: dict[str, Any] = field(default_factory=dict)
    transform: Transform | None = None


def ratio_key(ratio: float) -> str:
    """How a ratio appears in slice names and aggregate keys: ``0.5`` -> ``"0.5"``."""
    return f"{ratio:g}"


def plan_suite(
    modalities: Sequence[str],
    suite: str = "quick",
    *,
    severities: Sequence[int] | None = None,
    missing: Literal["zero", "drop"] = "zero",
) -> list[SliceSpec]:
    """The model-evaluated slices of a suite, in order (condition slices are derived from ``clean`` afterwards).

    Raises:
        ValueError: unknown suite, empty or duplicated modalities, or a severity outside 1-5.
    """
    if suite not in SUITES:
        raise ValueError(f"unknown robustness suite {suite!r}; valid suites: {', '.join(SUITES)}")
    mods = tuple(modalities)
    full = suite == "full"
    specs = [SliceSpec("clean", "clean")]
    if suite == "clean":
        return specs
    missing_cases = missing_sets(mods)  # validates modalities
    for missing_set in missing_cases[1:]:  # the empty missing set is the clean slice
        kept = tuple(m for m in mods if m not in missing_set)
        specs.append(
            SliceSpec(
                f"emm/{subset_key(kept)}",
                "emm",
                {"kept": list(kept), "missing": list(missing_set)},
                _emm_transform(missing_set, missing),
            )
        )
    if suite == "emm":
        return specs
    for ratio in RMM_RATIOS if full else QUICK_RMM_RATIOS:
        for missing_set in missing_cases[1:]:
            specs.append(
                SliceSpec(
                    f"rmm/r{ratio_key(ratio)}/{subset_key(missing_set)}",
                    "rmm",
                    {"ratio": ratio, "missing": list(missing_set)},
                    _rmm_transform(missing_set, ratio),
                )
            )
    for level in NM_LEVELS if full else QUICK_NM_LEVELS:
        specs.append(SliceSpec(f"nm/{level}", "nm", {"level": level}, _nm_transform(level)))
    if full:
        severities = FULL_SEVERITIES  # the full suite is the whole matrix, whatever the quick severities are
    elif severities is None:
        severities = QUICK_SEVERITIES
    bad = [s for s in severities if isinstance(s, bool) or not isinstance(s, int) or not 1 <= s <= 5]
    if bad:
        raise ValueError(f"corruption severities must be ints in 1-5, got {bad}")
    severities = sorted(set(severities))
    for modality in mods:
        if full:
            names = [n for n, spec in DEGRADATIONS.items() if spec.applies_to(modality) and n != "missing"]
        else:
            names = [n for n in QUICK_CORRUPTIONS.get(modality, ()) if DEGRADATIONS[n].applies_to(modality)]
        if not names:
            logger.info("no corruptions registered for modality %r; its corruption row stays empty", modality)
        for name in names:
            for severity in severities:
                specs.append(
                    SliceSpec(
                        f"corrupt/{modality}/{name}/s{int(severity)}",
                        "corrupt",
                        {"modality": modality, "degradation": name, "severity": int(severity)},
                        _corrupt_transform(modality, name, int(severity)),
                    )
                )
    return specs


def _emm_transform(missing_set: tuple[str, ...], mode: str) -> Transform:
    def transform(inputs: Inputs, generator: torch.Generator) -> Inputs:
        return remove_modalities(inputs, missing_set, mode)

    return transform


def _rmm_transform(missing_set: tuple[str, ...], ratio: float) -> Transform:
    def transform(inputs: Inputs, generator: torch.Generator) -> Inputs:
        return apply_random_missing(inputs, missing_set, ratio, generator)

    return transform


def _nm_transform(level: str) -> Transform:
    def transform(inputs: Inputs, generator: torch.Generator) -> Inputs:
        return apply_noisy_modalities(inputs, level, generator)

    return transform


def _corrupt_transform(modality: str, name: str, severity: int) -> Transform:
    def transform(inputs: Inputs, generator: torch.Generator) -> Inputs:
        out = dict(inputs)
        out[modality] = apply_degradation(
            name, inputs[modality], modality=modality, severity=severity, generator=generator
        )
        return out

    return transform


def slice_seed(seed: int, slice_name: str, batch_index: int) -> int:
    """Seed of the generator for one (slice, batch): independent of the other slices and of evaluation order."""
    return zlib.crc32(f"{seed}:{slice_name}:{batch_index}".encode())
