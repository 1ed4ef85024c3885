"""Robustness runner: evaluates a model over the clean / quick / full suites (reference §3) into a result.

Suites (N modalities; see ``docs/robustness.md`` for the exact slice lists):

- ``clean``: all modalities intact, plus condition slices (``cond/<tag>``) from the samples' condition tags.
- ``quick``: ``clean`` + EMM (2^N - 1 kept sets) + RMM r = 0.5 (2^N - 1 missing sets) + NM mid + the key
  corruptions of :data:`~equiseg.robustness.degradations.QUICK_CORRUPTIONS` at ``severities`` (default 1, 3, 5).
  ``severities`` only applies here; the full suite always covers 1-5.
  Cheap enough for every retraining on CPU.
- ``full``: ``clean`` + EMM + RMM at r = 0.25, 0.5, 0.75 + NM low/mid/high + every registered degradation
  applicable to each modality at severities 1-5 (the whole corruption matrix).

By default the evaluation set is iterated **once** and its batches are kept in memory on the model's device
(evaluation sets are small); every slice then re-uses those clean batches, so a DataLoader with random augmentation
cannot make slices disagree about their inputs. ``cache="cpu"`` keeps them in host memory instead, and
``cache="none"`` re-reads a fixed-order DataLoader for every slice (large sets such as DeLiVER val at 1024 px).
Each slice is scored as soon as it is evaluated, so only one slice's per-image matrices are held at a time; nothing
derived from the model is cached. Every random draw comes from a ``torch.Generator`` seeded by
``(seed, slice name, batch index)``, so a slice's inputs do not depend on which other slices run, and two models
scored with the same seed see identical degraded inputs (what the gate's paired comparison needs).

Missing modalities (EMM): ``missing="zero"`` zero-fills the tensor (zero is "missing" in normalised space, the
benchmark's definition, §3.3); ``"drop"`` leaves it out of the input dict (modality-agnostic protocol, §3.4);
``"auto"`` drops only for models that advertise ``supports_missing_modalities = True`` and zero-fills otherwise.
RMM and NM always act on the tensors themselves.
"""

from __future__ import annotations

import logging
import math
import re
import statistics
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from equiseg.robustness.degradations import DEGRADATIONS, QUICK_CORRUPTIONS, apply_degradation
from equiseg.robustness.metrics import bootstrap_miou_ci, miou, per_class_iou, per_image_confusion, per_image_miou
from equiseg.robustness.protocols import (
    EMM_P_VALUES,
    NM_LEVELS,
    RMM_RATIOS,
    apply_noisy_modalities,
    apply_random_missing,
    expected_miou,
    missing_sets,
    remove_modalities,
    subset_key,
)
from equiseg.robustness.result import RobustnessResult, SliceResult, metric_safe

__all__ = ["SUITES", "SliceSpec", "aggregate_slices", "evaluate_robustness", "model_logits", "plan_suite", "slice_seed"]

logger = logging.getLogger(__name__)

SUITES: tuple[str, ...] = ("clean", "quick", "full")
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


def _ratio_key(ratio: float) -> str:
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
    for ratio in RMM_RATIOS if full else QUICK_RMM_RATIOS:
        for missing_set in missing_cases[1:]:
            specs.append(
                SliceSpec(
                    f"rmm/r{_ratio_key(ratio)}/{subset_key(missing_set)}",
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


def model_logits(output: Any) -> torch.Tensor:
    """Logits of a model output: the tensor itself or its ``.logits`` (``SegmentationOutput``)."""
    if isinstance(output, torch.Tensor):
        return output
    logits = getattr(output, "logits", None)
    if isinstance(logits, torch.Tensor):
        return logits
    raise TypeError(
        f"model returned {type(output).__name__}; it must return a logits Tensor (B, K, H, W) or an object with a "
        "`.logits` tensor such as equiseg.models.SegmentationOutput"
    )


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class _CachedBatch:
    inputs: Inputs
    label: torch.Tensor
    sample_ids: list[str]
    conditions: list[tuple[str, ...]]


def _prepare_batch(
    batch: Mapping[str, Any], index: int, modalities: Sequence[str], device: torch.device
) -> _CachedBatch:
    inputs = batch["inputs"]
    absent = [m for m in modalities if m not in inputs]
    if absent:
        raise KeyError(
            f"batch {index} lacks modalities {absent} (it holds {sorted(inputs)}); evaluate with "
            "modalities= matching the data, or fix the manifest"
        )
    label = batch["label"]
    size = label.shape[0]
    sample_ids = [str(s) for s in batch.get("sample_id", [f"{index}_{i}" for i in range(size)])]
    conditions = [tuple(c) for c in batch.get("conditions", [() for _ in range(size)])]
    return _CachedBatch(
        inputs={m: inputs[m].to(device=device, dtype=torch.float32) for m in modalities},
        label=label.to(device=device, dtype=torch.long),
        sample_ids=sample_ids,
        conditions=conditions,
    )


class _BatchSource:
    """The evaluation batches on the model's device, once per slice, always in the same order.

    ``cache="device"`` (default) or ``"cpu"`` reads ``batches`` once and keeps the prepared clean batches there;
    ``"none"`` re-iterates ``batches`` for every slice (it must be re-iterable in a fixed order, e.g. a DataLoader
    with ``shuffle=False``) for evaluation sets too large to hold.
    """

    def __init__(
        self, batches: Iterable[Mapping[str, Any]], modalities: Sequence[str], device: torch.device, cache: str
    ) -> None:
        if cache not in ("device", "cpu", "none"):
            raise ValueError(f"cache must be 'device', 'cpu' or 'none', got {cache!r}")
        self.modalities = tuple(modalities)
        self.device = device
        self.cache = cache
        self.sample_ids: list[str] = []
        self.conditions: list[tuple[str, ...]] = []
        self._batches = batches
        self._cached: list[_CachedBatch] = []
        self._order: list[list[str]] | None = None
        if cache == "none":
            if iter(batches) is batches:
                raise ValueError(
                    "cache='none' re-reads the data for every slice, but this source can be iterated only once "
                    "(a generator); pass a DataLoader or list, or use cache='device' / 'cpu'"
                )
            return
        store = device if cache == "device" else torch.device("cpu")
        self._cached = [_prepare_batch(b, i, self.modalities, store) for i, b in enumerate(batches)]
        self._set_order([b.sample_ids for b in self._cached], [c for b in self._cached for c in b.conditions])

    def _set_order(self, order: list[list[str]], conditions: list[tuple[str, ...]]) -> None:
        if not order:
            raise ValueError("the evaluation data yielded no batches; check the manifest split and data root")
        self._order = order
        self.sample_ids = [s for ids in order for s in ids]
        self.conditions = conditions

    def __len__(self) -> int:
        if self._order is not None:
            return len(self._order)
        return len(self._batches) if hasattr(self._batches, "__len__") else 0  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[tuple[int, _CachedBatch]]:
        if self.cache != "none":
            for index, batch in enumerate(self._cached):
                if self.cache == "cpu":
                    batch = _CachedBatch(
                        inputs={m: x.to(self.device, non_blocking=True) for m, x in batch.inputs.items()},
                        label=batch.label.to(self.device, non_blocking=True),
                        sample_ids=batch.sample_ids,
                        conditions=batch.conditions,
                    )
                yield index, batch
            return
        order: list[list[str]] = []
        conditions: list[tuple[str, ...]] = []
        for index, raw in enumerate(self._batches):
            batch = _prepare_batch(raw, index, self.modalities, self.device)
            if self._order is not None and (index >= len(self._order) or self._order[index] != batch.sample_ids):
                raise RuntimeError(
                    "the evaluation data changed order or content between slices; use a DataLoader with "
                    "shuffle=False (or cache='device')"
                )
            order.append(batch.sample_ids)
            conditions.extend(batch.conditions)
            yield index, batch
        if self._order is None:
            self._set_order(order, conditions)
        elif len(order) != len(self._order):
            raise RuntimeError("the evaluation data yielded a different number of batches between slices")


def _make_slice(
    name: str,
    kind: str,
    params: dict[str, Any],
    hists: np.ndarray,
    sample_ids: list[str],
    *,
    seed: int,
    bootstrap_samples: int,
    ci_level: float,
    absent_as_zero: bool,
) -> SliceResult:
    total = hists.sum(axis=0)
    low, high = bootstrap_miou_ci(
        hists,
        samples=bootstrap_samples,
        level=ci_level,
        seed=slice_seed(seed, "bootstrap/" + name, 0),
        absent_as_zero=absent_as_zero,
    )
    return SliceResult(
        name=name,
        kind=kind,
        miou=float(miou(total, absent_as_zero)),
        ci_low=low,
        ci_high=high,
        per_class_iou=[float(v) for v in per_class_iou(total)],
        per_image_miou=per_image_miou(hists),
        sample_ids=list(sample_ids),
        params=params,
    )


def evaluate_robustness(
    model: Callable[[Mapping[str, torch.Tensor]], Any],
    batches: Iterable[Mapping[str, Any]],
    *,
    num_classes: int,
    modalities: Sequence[str],
    suite: Literal["clean", "quick", "full"] = "quick",
    seed: int = 0,
    device: str | torch.device = "cpu",
    ignore_index: int = 255,
    severities: Sequence[int] | None = None,
    bootstrap_samples: int = 1000,
    ci_level: float = 0.95,
    absent_as_zero: bool = True,
    progress: bool = True,
    missing: Literal["auto", "zero", "drop"] = "auto",
    cache: Literal["device", "cpu", "none"] = "device",
    keep_confusion: bool = False,
) -> RobustnessResult:
    """Score ``model`` on every slice of ``suite`` and aggregate the protocols of reference §3.

    Args:
        model: callable ``model(inputs: dict[str, Tensor]) -> Tensor | object with .logits`` (B, K, H, W); logits at
            another size are resized bilinearly to the label size. ``nn.Module``s are put in eval mode for the
            call and restored afterwards.
        batches: iterable of batch dicts (``docs/design.md``), e.g. a DataLoader; iterated once and cached
            (see ``cache``).
        num_classes: number of classes K (mIoU averages over all K, §3.1).
        modalities: modalities to feed, in order; every batch must hold them.
        suite: ``clean``, ``quick`` or ``full`` (module docstring).
        seed: seed of every mask, noise draw and bootstrap.
        device: where batches, degradations and the model run.
        ignore_index: label value not scored.
        severities: corruption severities (1-5) of the quick suite, default 1, 3, 5 (``robustness.severities``);
            the full suite always uses 1-5, so callers may pass the configured value for either suite.
        bootstrap_samples: bootstrap resamples for each slice's CI (0 disables it).
        ci_level: CI level, e.g. 0.95.
        absent_as_zero: mIoU NaN convention (True: DeLiVER, absent classes count 0).
        progress: show a tqdm progress bar.
        missing: EMM missing-modality mode, ``auto | zero | drop`` (module docstring).
        cache: where the clean batches are kept between slices: ``device`` (default), ``cpu`` (moved per batch) or
            ``none`` (``batches`` re-iterated per slice; must be re-iterable in a fixed order).
        keep_confusion: keep every slice's per-image confusion matrices on the result
            (``SliceResult.per_image_confusion``; save them with ``RobustnessResult.save_confusion``).

    Returns:
        A :class:`RobustnessResult` with every slice, the aggregates and the measurement metadata.
    """
    dev = torch.device(device)
    mods = tuple(modalities)
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    if missing == "auto":
        mode: Literal["zero", "drop"] = "drop" if getattr(model, "supports_missing_modalities", False) else "zero"
    elif missing in ("zero", "drop"):
        mode = missing
    else:
        raise ValueError(f"missing must be 'auto', 'zero' or 'drop', got {missing!r}")
    specs = plan_suite(mods, suite, severities=severities, missing=mode)
    started = time.perf_counter()
    source = _BatchSource(batches, mods, dev, cache)

    def build(name: str, kind: str, params: dict[str, Any], h: np.ndarray, ids: list[str]) -> SliceResult:
        made = _make_slice(
            name,
            kind,
            params,
            h,
            ids,
            seed=seed,
            bootstrap_samples=bootstrap_samples,
            ci_level=ci_level,
            absent_as_zero=absent_as_zero,
        )
        if keep_confusion:
            made.per_image_confusion = h
        return made

    was_training = bool(getattr(model, "training", False))
    if isinstance(model, torch.nn.Module):
        model.eval()
    slices: dict[str, SliceResult] = {}
    clean_hists = np.zeros((0, num_classes, num_classes), dtype=np.int64)
    degrade_s = 0.0
    inference_s = 0.0
    total = len(specs) * len(source) or None
    bar = tqdm(total=total, desc=f"robustness[{suite}]", unit="batch", disable=not progress)
    try:
        with torch.inference_mode():
            for spec in specs:
                per_batch: list[np.ndarray] = []
                for index, batch in source:
                    inputs = batch.inputs
                    if spec.transform is not None:
                        generator = torch.Generator(device=dev)
                        generator.manual_seed(slice_seed(seed, spec.name, index))
                        _sync(dev)
                        t0 = time.perf_counter()
                        inputs = spec.transform(inputs, generator)
                        _sync(dev)
                        degrade_s += time.perf_counter() - t0
                    t0 = time.perf_counter()
                    try:
                        output = model(inputs)
                    except (KeyError, ValueError) as exc:
                        if spec.kind == "emm" and mode == "drop":
                            raise RuntimeError(
                                f"the model failed on slice {spec.name} with modalities {sorted(inputs)} left out of "
                                f"the input ({exc!r}); it does not accept modality subsets, evaluate with "
                                "missing='zero' (robustness.missing=zero)"
                            ) from exc
                        raise
                    logits = model_logits(output)
                    if logits.shape[-2:] != batch.label.shape[-2:]:
                        logits = F.interpolate(
                            logits, size=batch.label.shape[-2:], mode="bilinear", align_corners=False
                        )
                    pred = logits.argmax(dim=1)
                    _sync(dev)
                    inference_s += time.perf_counter() - t0
                    per_batch.append(per_image_confusion(pred, batch.label, num_classes, ignore_index).cpu().numpy())
                    bar.update(1)
                hists = np.concatenate(per_batch, axis=0)
                # scored right away: only the clean per-image matrices are kept (for the condition slices)
                slices[spec.name] = build(spec.name, spec.kind, spec.params, hists, source.sample_ids)
                if spec.kind == "clean":
                    clean_hists = hists
    finally:
        bar.close()
        if isinstance(model, torch.nn.Module) and was_training:
            model.train()

    sample_ids, conditions = source.sample_ids, source.conditions
    tags = sorted({t for c in conditions for t in c})
    condition_names: dict[str, str] = {}
    for tag in tags:
        members = [i for i, c in enumerate(conditions) if tag in c]
        name = f"cond/{_tag_key(tag)}"
        condition_names[tag] = name
        slices[name] = build(name, "cond", {"tag": tag}, clean_hists[members], [sample_ids[i] for i in members])

    aggregates = aggregate_slices(slices, mods, condition_names, with_protocols=suite != "clean")
    meta: dict[str, Any] = {
        "suite": suite,
        "seed": seed,
        "modalities": list(mods),
        "num_classes": num_classes,
        "ignore_index": ignore_index,
        "missing_mode": mode,
        "severities": sorted({int(s.params["severity"]) for s in specs if s.kind == "corrupt"}),
        "absent_as_zero": absent_as_zero,
        "bootstrap_samples": bootstrap_samples,
        "ci_level": ci_level,
        "num_samples": len(sample_ids),
        "cache": cache,
        "num_slices": len(slices),
        "device": str(dev),
        "timing": {
            "degrade_s": degrade_s,
            "inference_s": inference_s,
            "total_s": time.perf_counter() - started,
        },
    }
    logger.info(
        "robustness %s: %d slices on %d samples, clean mIoU %.2f (degrade %.2fs, inference %.2fs)",
        suite,
        len(slices),
        len(sample_ids),
        slices["clean"].miou,
        degrade_s,
        inference_s,
    )
    return RobustnessResult(slices=slices, aggregates=aggregates, meta=meta)


def _tag_key(tag: str) -> str:
    return metric_safe(re.sub(r"\s+", "_", tag.strip()))


def aggregate_slices(
    slices: Mapping[str, SliceResult],
    modalities: tuple[str, ...],
    condition_names: Mapping[str, str],
    *,
    with_protocols: bool,
) -> dict[str, Any]:
    """The protocol aggregates of reference §3 from slice mIoUs (``RobustnessResult.aggregates``).

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
        rmm[_ratio_key(ratio)] = {
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
        conditions = {_tag_key(tag): slices[name].miou for tag, name in condition_names.items()}
        out["conditions"] = conditions
        out["condition_summary"] = {
            "mean": math.fsum(conditions.values()) / len(conditions),
            "min": min(conditions.values()),
        }
    worst = min(slices.values(), key=lambda s: s.miou)
    out["worst_slice"] = {"name": worst.name, "miou": worst.miou}
    return out
