"""Score a model object with the configured suite and write the report (``equiseg evaluate``).

Core floor: this module scores the module it is given. Loading a model from a checkpoint path or an MLflow URI is
the caller's job, through ``equiseg.tracking.load_model`` (the one model resolver).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from equiseg.config import EquisegConfig, save_config
from equiseg.data import CLASS_NAMES, SYNTHETIC_CLASS_SET, make_loader, manifest_info, read_manifest
from equiseg.robustness.report import collect_examples, write_robustness_report
from equiseg.robustness.result import RobustnessResult
from equiseg.robustness.runner import evaluate_robustness

__all__ = ["EvaluationOutput", "evaluate_configured", "resolve_device", "score_and_report"]

logger = logging.getLogger(__name__)


@dataclass
class EvaluationOutput:
    """What :func:`score_and_report` produced: the result and the report files."""

    result: RobustnessResult
    paths: dict[str, Path]


def evaluate_configured(
    cfg: EquisegConfig,
    model: Any,
    batches: Any,
    *,
    device: str | torch.device = "cpu",
    progress: bool = False,
    keep_confusion: bool = False,
    modalities: tuple[str, ...] | None = None,
    num_classes: int | None = None,
) -> RobustnessResult:
    """:func:`evaluate_robustness` with the suite, seed, severities, statistics, missing-modality mode and batch
    cache of ``cfg.robustness``.

    The one place that maps the config onto the runner, so that the pipeline's robustness step, the gate (which
    scores candidate and champion), ``equiseg evaluate`` and the claim experiment always evaluate the same way.
    ``modalities`` and ``num_classes`` default to ``cfg.data``'s (a stored model may carry its own).
    """
    rc = cfg.robustness
    return evaluate_robustness(
        model,
        batches,
        num_classes=num_classes or cfg.data.num_classes,
        modalities=modalities or cfg.data.modalities,
        suite=rc.suite,
        seed=rc.seed,
        device=device,
        ignore_index=cfg.data.ignore_index,
        severities=rc.severities,
        bootstrap_samples=rc.bootstrap_samples,
        ci_level=rc.ci_level,
        absent_as_zero=rc.miou_absent_as_zero,
        progress=progress,
        missing=rc.missing,
        cache=rc.cache,
        keep_confusion=keep_confusion,
    )


def resolve_device(device: str) -> torch.device:
    """``auto`` -> ``cuda`` when available else ``cpu``; anything else as given (``cpu``, ``cuda:1``)."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available; use --device cpu or auto")
    return resolved


def _class_names(manifest: Path, num_classes: int) -> tuple[str, ...] | None:
    """Names of the synthetic world's classes when the manifest declares that class set; None otherwise."""
    info = manifest_info(read_manifest(manifest))
    if info.class_set.startswith(SYNTHETIC_CLASS_SET) and len(CLASS_NAMES) == num_classes:
        return CLASS_NAMES
    return None


def score_and_report(
    cfg: EquisegConfig,
    model: nn.Module,
    *,
    model_ref: str,
    manifest: Path,
    data_root: Path,
    out_dir: Path,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> EvaluationOutput:
    """Score ``model`` on ``cfg.robustness.split`` of ``manifest`` and write the report into ``out_dir``.

    The suite, seed, severities (quick suite only; full always uses 1-5), bootstrap, CI level, mIoU convention,
    missing-modality mode, batch cache and example count come from ``cfg.robustness``; modalities and class count
    from the model when it carries them (``.modalities``, ``.num_classes``), else from ``cfg.data``. ``model_ref``
    (the path or URI it was loaded from) is recorded in the report. The resolved config is written next to the
    report as ``config.yaml``.
    """
    rc = cfg.robustness
    dev = resolve_device(device) if isinstance(device, str) else device
    modalities = tuple(getattr(model, "modalities", None) or cfg.data.modalities)
    num_classes = int(getattr(model, "num_classes", None) or cfg.data.num_classes)
    loader = make_loader(
        manifest,
        data_root,
        modalities=modalities,
        split=rc.split,
        batch_size=rc.batch_size,
        shuffle=False,
        num_workers=cfg.data.num_workers,
    )
    result = evaluate_configured(
        cfg, model, loader, device=dev, progress=progress, modalities=modalities, num_classes=num_classes
    )
    result.meta["model"] = model_ref
    result.meta["manifest"] = str(manifest)
    result.meta["split"] = rc.split
    examples = None
    if rc.examples > 0:
        examples = collect_examples(
            model,
            loader,
            modalities=modalities,
            max_examples=rc.examples,
            seed=rc.seed,
            device=dev,
            missing=result.meta["missing_mode"],
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = write_robustness_report(result, out_dir, examples=examples, class_names=_class_names(manifest, num_classes))
    paths["config"] = save_config(cfg, out_dir / "config.yaml")
    return EvaluationOutput(result=result, paths=paths)
