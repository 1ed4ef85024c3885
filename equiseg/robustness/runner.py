"""Robustness runner: scores a model on every slice of a suite (:mod:`~equiseg.robustness.suites`) into a result.

The clean batches are read once (:class:`~equiseg.robustness.batches.BatchSource`, ``cache``); every slice
transforms them with its own seeded generator, and each slice is scored as soon as it is evaluated, so only one
slice's per-image matrices are held at a time; nothing derived from the model is cached. The aggregates follow
``docs/robustness.md`` (:func:`~equiseg.robustness.aggregate.aggregate_slices`).

Missing modalities (EMM): ``missing="zero"`` zero-fills the tensor (zero is "missing" in normalised space, the
benchmark's definition); ``"drop"`` leaves it out of the input dict (the modality-agnostic protocol); ``"auto"``
drops only for models that advertise ``supports_missing_modalities = True`` and zero-fills otherwise. RMM and NM
always act on the tensors themselves.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from equiseg.robustness.aggregate import aggregate_slices, tag_key
from equiseg.robustness.batches import BatchSource, CachedBatch
from equiseg.robustness.metrics import bootstrap_miou_ci, miou, per_class_iou, per_image_confusion, per_image_miou
from equiseg.robustness.result import RobustnessResult, SliceResult
from equiseg.robustness.suites import SUITES, SliceSpec, plan_suite, slice_seed

__all__ = ["SUITES", "SliceSpec", "aggregate_slices", "evaluate_robustness", "model_logits", "plan_suite", "slice_seed"]

logger = logging.getLogger(__name__)

Model = Callable[[Mapping[str, torch.Tensor]], Any]


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


def _missing_mode(model: Model, missing: str) -> Literal["zero", "drop"]:
    """The EMM mode for ``missing`` = ``auto | zero | drop`` (module docstring)."""
    if missing == "auto":
        return "drop" if getattr(model, "supports_missing_modalities", False) else "zero"
    if missing == "zero":
        return "zero"
    if missing == "drop":
        return "drop"
    raise ValueError(f"missing must be 'auto', 'zero' or 'drop', got {missing!r}")


@dataclass(frozen=True)
class _Scoring:
    """How a slice's per-image confusion matrices become a :class:`SliceResult`."""

    seed: int
    bootstrap_samples: int
    ci_level: float
    absent_as_zero: bool
    keep_confusion: bool

    def score(
        self, name: str, kind: str, params: dict[str, Any], hists: np.ndarray, sample_ids: list[str]
    ) -> SliceResult:
        total = hists.sum(axis=0)
        low, high = bootstrap_miou_ci(
            hists,
            samples=self.bootstrap_samples,
            level=self.ci_level,
            seed=slice_seed(self.seed, "bootstrap/" + name, 0),
            absent_as_zero=self.absent_as_zero,
        )
        result = SliceResult(
            name=name,
            kind=kind,
            miou=float(miou(total, self.absent_as_zero)),
            ci_low=low,
            ci_high=high,
            per_class_iou=[float(v) for v in per_class_iou(total)],
            per_image_miou=per_image_miou(hists),
            sample_ids=list(sample_ids),
            params=params,
        )
        if self.keep_confusion:
            result.per_image_confusion = hists
        return result


@dataclass
class _Timing:
    degrade_s: float = 0.0
    inference_s: float = 0.0


def _predict(model: Model, spec: SliceSpec, inputs: dict[str, torch.Tensor], mode: str) -> torch.Tensor:
    """The model's logits; a model that refuses a modality subset under ``missing="drop"`` gets the fix named."""
    try:
        return model_logits(model(inputs))
    except (KeyError, ValueError) as exc:
        if spec.kind == "emm" and mode == "drop":
            raise RuntimeError(
                f"the model failed on slice {spec.name} with modalities {sorted(inputs)} left out of "
                f"the input ({exc!r}); it does not accept modality subsets, evaluate with "
                "missing='zero' (robustness.missing=zero)"
            ) from exc
        raise


def _slice_confusion(
    model: Model,
    spec: SliceSpec,
    batch: CachedBatch,
    index: int,
    *,
    seed: int,
    mode: str,
    num_classes: int,
    ignore_index: int,
    device: torch.device,
    timing: _Timing,
) -> np.ndarray:
    """Per-image confusion matrices ``(B, K, K)`` of one batch under one slice's transform."""
    inputs = batch.inputs
    if spec.transform is not None:
        generator = torch.Generator(device=device)
        generator.manual_seed(slice_seed(seed, spec.name, index))
        _sync(device)
        t0 = time.perf_counter()
        inputs = spec.transform(inputs, generator)
        _sync(device)
        timing.degrade_s += time.perf_counter() - t0
    t0 = time.perf_counter()
    logits = _predict(model, spec, inputs, mode)
    if logits.shape[-2:] != batch.label.shape[-2:]:
        logits = F.interpolate(logits, size=batch.label.shape[-2:], mode="bilinear", align_corners=False)
    pred = logits.argmax(dim=1)
    _sync(device)
    timing.inference_s += time.perf_counter() - t0
    hists: np.ndarray = per_image_confusion(pred, batch.label, num_classes, ignore_index).cpu().numpy()
    return hists


def _score_slices(
    model: Model,
    specs: Sequence[SliceSpec],
    source: BatchSource,
    *,
    seed: int,
    mode: str,
    num_classes: int,
    ignore_index: int,
    scoring: _Scoring,
    timing: _Timing,
    suite: str,
    progress: bool,
) -> tuple[dict[str, SliceResult], np.ndarray]:
    """Every planned slice, scored as soon as it is evaluated; also the clean per-image matrices (for ``cond/``)."""
    was_training = bool(getattr(model, "training", False))
    if isinstance(model, torch.nn.Module):
        model.eval()
    slices: dict[str, SliceResult] = {}
    clean_hists = np.zeros((0, num_classes, num_classes), dtype=np.int64)
    total = len(specs) * len(source) or None
    bar = tqdm(total=total, desc=f"robustness[{suite}]", unit="batch", disable=not progress)
    try:
        with torch.inference_mode():
            for spec in specs:
                per_batch: list[np.ndarray] = []
                for index, batch in source:
                    per_batch.append(
                        _slice_confusion(
                            model,
                            spec,
                            batch,
                            index,
                            seed=seed,
                            mode=mode,
                            num_classes=num_classes,
                            ignore_index=ignore_index,
                            device=source.device,
                            timing=timing,
                        )
                    )
                    bar.update(1)
                hists = np.concatenate(per_batch, axis=0)
                # scored right away: only the clean per-image matrices are kept (for the condition slices)
                slices[spec.name] = scoring.score(spec.name, spec.kind, spec.params, hists, source.sample_ids)
                if spec.kind == "clean":
                    clean_hists = hists
    finally:
        bar.close()
        if isinstance(model, torch.nn.Module) and was_training:
            model.train()
    return slices, clean_hists


def _condition_slices(
    source: BatchSource, clean_hists: np.ndarray, scoring: _Scoring
) -> tuple[dict[str, SliceResult], dict[str, str]]:
    """``cond/<tag>`` slices from the clean per-image matrices of the samples carrying each condition tag."""
    sample_ids, conditions = source.sample_ids, source.conditions
    slices: dict[str, SliceResult] = {}
    names: dict[str, str] = {}
    for tag in sorted({t for c in conditions for t in c}):
        members = [i for i, c in enumerate(conditions) if tag in c]
        name = f"cond/{tag_key(tag)}"
        names[tag] = name
        slices[name] = scoring.score(name, "cond", {"tag": tag}, clean_hists[members], [sample_ids[i] for i in members])
    return slices, names


def evaluate_robustness(
    model: Model,
    batches: Iterable[Mapping[str, Any]],
    *,
    num_classes: int,
    modalities: Sequence[str],
    suite: Literal["clean", "emm", "quick", "full"] = "quick",
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
    """Score ``model`` on every slice of ``suite`` and aggregate the protocols of ``docs/robustness.md``.

    Args:
        model: callable ``model(inputs: dict[str, Tensor]) -> Tensor | object with .logits`` (B, K, H, W); logits at
            another size are resized bilinearly to the label size. ``nn.Module``s are put in eval mode for the
            call and restored afterwards.
        batches: iterable of batch dicts (``docs/design.md``), e.g. a DataLoader; iterated once and cached
            (see ``cache``).
        num_classes: number of classes K (mIoU averages over all K).
        modalities: modalities to feed, in order; every batch must hold them.
        suite: ``clean``, ``emm``, ``quick`` or ``full`` (:mod:`equiseg.robustness.suites`).
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
    mode = _missing_mode(model, missing)
    specs = plan_suite(mods, suite, severities=severities, missing=mode)
    started = time.perf_counter()
    source = BatchSource(batches, mods, dev, cache)
    scoring = _Scoring(seed, bootstrap_samples, ci_level, absent_as_zero, keep_confusion)
    timing = _Timing()

    slices, clean_hists = _score_slices(
        model,
        specs,
        source,
        seed=seed,
        mode=mode,
        num_classes=num_classes,
        ignore_index=ignore_index,
        scoring=scoring,
        timing=timing,
        suite=suite,
        progress=progress,
    )
    condition_slices, condition_names = _condition_slices(source, clean_hists, scoring)
    slices.update(condition_slices)
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
        "num_samples": len(source.sample_ids),
        "cache": cache,
        "num_slices": len(slices),
        "device": str(dev),
        "timing": {
            "degrade_s": timing.degrade_s,
            "inference_s": timing.inference_s,
            "total_s": time.perf_counter() - started,
        },
    }
    logger.info(
        "robustness %s: %d slices on %d samples, clean mIoU %.2f (degrade %.2fs, inference %.2fs)",
        suite,
        len(slices),
        len(source.sample_ids),
        slices["clean"].miou,
        timing.degrade_s,
        timing.inference_s,
    )
    return RobustnessResult(slices=slices, aggregates=aggregates, meta=meta)
