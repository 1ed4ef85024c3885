"""The training loop: :func:`train` reads top to bottom, one epoch (:mod:`~equiseg.training.epoch`), its
evaluation (:mod:`~equiseg.training.validation`) and its checkpoints (:mod:`~equiseg.training.state`) in turn.

The loop knows neither MLflow nor Optuna: whoever wants per-step metrics, per-epoch reports, early stopping or the
checkpoints passes plain callables in :class:`TrainHooks` (``equiseg.tracking.train_tracked`` logs a run with them,
``equiseg.tuning`` prunes trials with them). Checkpoints are written before any hook runs, so a failing hook never
costs a checkpoint. The model-selection objective is described in :mod:`equiseg.training.validation`, crash-safe
resume in :mod:`equiseg.training.state`; the whole recipe in docs/training.md.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from equiseg.config import EquisegConfig, config_to_dict, save_config
from equiseg.training.checkpoint import restore_rng_state
from equiseg.training.distributed import DistInfo, all_reduce_sum, barrier, init_distributed
from equiseg.training.epoch import Progress, build_model, build_optimizer, train_one_epoch
from equiseg.training.loaders import epoch_loader, split_dataset, val_batches
from equiseg.training.state import (
    TrainState,
    check_manifest_classes,
    check_resume_config,
    configure_determinism,
    restore_progress,
    resume_path,
    save_mid_epoch,
    stored_config,
    wrap_distributed,
    write_checkpoint,
)
from equiseg.training.validation import robustness_metrics, robustness_objective, validation_metrics

__all__ = ["TrainHooks", "TrainResult", "train"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainHooks:
    """Plain callables :func:`train` calls on rank 0 (every one optional).

    Attributes:
        on_step: ``(epoch_step, global_step, {"train_step_loss", "lr"})`` after every optimiser step.
        on_epoch: ``(epoch, metrics)`` after an epoch (1-based) was evaluated and its checkpoints written.
        should_stop: ``(epoch, metrics) -> bool``, after ``on_epoch``; true ends training after this epoch
            (``TrainResult.stopped``), e.g. an Optuna pruner.
        on_checkpoint: ``(path)`` after every checkpoint written (``last.pt``, ``best.pt``).
    """

    on_step: Callable[[int, int, dict[str, float]], None] | None = None
    on_epoch: Callable[[int, dict[str, float]], None] | None = None
    should_stop: Callable[[int, dict[str, float]], bool] | None = None
    on_checkpoint: Callable[[Path], None] | None = None


@dataclass(frozen=True)
class TrainResult:
    """What :func:`train` produced.

    Attributes:
        best_checkpoint: checkpoint with the highest :func:`robustness_objective`.
        last_checkpoint: checkpoint after the last epoch (resumable).
        metrics: last epoch's metrics plus ``best_objective`` and ``best_epoch``.
        epochs_run: epochs completed in total (including those before a resume).
        mlflow_run_id: MLflow run the training logged to (``equiseg.tracking.train_tracked``, rank 0 only).
        model_uri: URI of the logged best model (``train_tracked`` with ``log_model``).
        history: one metrics dict per completed epoch.
        stopped: ``TrainHooks.should_stop`` ended training before ``train.epochs``.
        early_stopped: the validation objective had not improved for ``train.early_stop_patience`` epochs, so
            training ended before ``train.epochs`` (the best checkpoint is complete, unlike ``stopped``).
    """

    best_checkpoint: Path
    last_checkpoint: Path
    metrics: dict[str, float]
    epochs_run: int
    mlflow_run_id: str | None = None
    model_uri: str | None = None
    history: list[dict[str, float]] = field(default_factory=list)
    stopped: bool = False
    early_stopped: bool = False


def train(
    cfg: EquisegConfig,
    *,
    manifest: Path,
    data_root: Path,
    out_dir: Path,
    hooks: TrainHooks | None = None,
    resume: Path | bool | None = None,
    show_progress: bool = True,
) -> TrainResult:
    """Train ``cfg.model.name`` on the ``train`` split of ``manifest``; write checkpoints under ``out_dir``.

    Args:
        cfg: resolved configuration.
        manifest: the dataset manifest (``manifest.parquet``).
        data_root: folder the manifest's relative paths start from.
        out_dir: receives ``config.yaml``, ``last.pt``, ``best.pt`` and ``metrics.json`` (final metrics, history).
        hooks: callables for per-step and per-epoch reports, early stopping and checkpoints (rank 0).
        resume: ``True`` resumes from ``out_dir/last.pt`` when it exists, a path resumes from that checkpoint.
        show_progress: tqdm bars on rank 0.

    Raises:
        CheckpointError: the checkpoint to resume from is unreadable or belongs to another model.
        ValueError: empty splits or a global batch larger than the training split.
    """
    info = init_distributed(cfg.train.device)
    previous_det = configure_determinism(cfg, info.device)
    try:
        return _fit(cfg, Path(manifest), Path(data_root), Path(out_dir), info, hooks or TrainHooks(), resume,
                    show_progress)  # fmt: skip
    finally:
        torch.use_deterministic_algorithms(previous_det)


def _fit(
    cfg: EquisegConfig,
    manifest: Path,
    data_root: Path,
    out_dir: Path,
    info: DistInfo,
    hooks: TrainHooks,
    resume: Path | bool | None,
    show_progress: bool,
) -> TrainResult:
    tc, device = cfg.train, info.device
    check_manifest_classes(cfg, manifest)
    checkpoint_path = resume_path(resume, out_dir)
    if info.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        _record_config(cfg, out_dir, checkpoint_path)

    # model, optimiser, and where a resumed run stands
    model = build_model(cfg).to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(model, tc.lr, tc.weight_decay)
    progress, rng_state = Progress(), None
    if checkpoint_path is not None:
        progress, rng_state = restore_progress(checkpoint_path, model, optimizer, cfg)
    model, train_model = wrap_distributed(model, cfg, info)

    # data
    train_set = split_dataset(cfg, manifest, data_root, "train")
    val = val_batches(cfg, manifest, data_root) if info.is_main else []

    state = TrainState(
        cfg=cfg,
        info=info,
        model=model,
        optimizer=optimizer,
        progress=progress,
        out_dir=out_dir,
        config=config_to_dict(cfg),
        last_metrics=dict(progress.history[-1]) if progress.history else {},
        on_checkpoint=hooks.on_checkpoint,
    )
    if rng_state is not None:
        restore_rng_state(rng_state)  # last, so nothing above shifts the restored streams

    stopped = early_stopped = False
    for epoch in range(progress.epoch, tc.epochs):
        if _plateaued(progress.best_epoch, epoch, tc.early_stop_patience):  # a resumed run that had already stopped
            early_stopped = True
            break
        skip = progress.epoch_step if epoch == progress.epoch else 0
        loader, steps_per_epoch = epoch_loader(train_set, cfg, info, epoch, skip)
        on_step = functools.partial(_after_step, state, hooks, epoch, steps_per_epoch)
        epoch_metrics = train_one_epoch(
            train_model,
            loader,
            optimizer,
            cfg,
            epoch=epoch,
            start_step=skip,
            steps_per_epoch=steps_per_epoch,
            progress=progress,
            info=info,
            on_step=on_step,
            show_progress=show_progress,
        )
        progress.epoch, progress.epoch_step, progress.epoch_loss_sum = epoch + 1, 0, [0.0, 0.0, 0.0]
        metrics: dict[str, float] = {"epoch": float(epoch + 1), **epoch_metrics}
        stop = False
        if info.is_main:
            _end_epoch(state, val, metrics)
            if hooks.on_epoch is not None:
                hooks.on_epoch(epoch + 1, metrics)
            stop = hooks.should_stop is not None and bool(hooks.should_stop(epoch + 1, metrics))
        barrier(info)
        if _any_rank(stop, info):
            logger.info("stopped after epoch %d by TrainHooks.should_stop", epoch + 1)
            stopped = True
            break
        # rank 0 holds the validation history; the other ranks follow its decision
        plateau = info.is_main and _plateaued(progress.best_epoch, epoch + 1, tc.early_stop_patience)
        if tc.early_stop_patience > 0 and _any_rank(plateau, info):
            logger.info(
                "early stop after epoch %d: no better validation objective since epoch %d (patience %d)",
                epoch + 1,
                progress.best_epoch,
                tc.early_stop_patience,
            )
            early_stopped = True
            break

    result_metrics = dict(state.last_metrics)
    if progress.best_metric is not None:
        result_metrics["best_objective"] = float(progress.best_metric)
        result_metrics["best_epoch"] = float(progress.best_epoch)
    if info.is_main:
        summary = {
            "metrics": result_metrics,
            "history": progress.history,
            "epochs_run": progress.epoch,
            "early_stopped": early_stopped,
        }
        (out_dir / "metrics.json").write_text(json.dumps(summary, indent=2, sort_keys=True))
    barrier(info)
    return TrainResult(
        best_checkpoint=state.best_path,
        last_checkpoint=state.last_path,
        metrics=result_metrics,
        epochs_run=progress.epoch,
        history=list(progress.history),
        stopped=stopped,
        early_stopped=early_stopped,
    )


def _after_step(
    state: TrainState,
    hooks: TrainHooks,
    epoch: int,
    steps_per_epoch: int,
    epoch_step: int,
    global_step: int,
    step_metrics: dict[str, float],
) -> None:
    """After every optimiser step: the mid-epoch checkpoint first, then the step report."""
    save_mid_epoch(state, epoch, steps_per_epoch, epoch_step, global_step)
    if hooks.on_step is not None and state.info.is_main:
        hooks.on_step(epoch_step, global_step, step_metrics)


def _end_epoch(state: TrainState, val: list[dict[str, object]], metrics: dict[str, float]) -> None:
    """Rank 0 after an epoch: clean validation, the quick suite when due, ``best.pt`` if better, ``last.pt``."""
    cfg, progress, model, device = state.cfg, state.progress, state.model, state.info.device
    epoch = int(metrics["epoch"])
    metrics.update(
        validation_metrics(
            model,
            val,
            num_classes=cfg.data.num_classes,
            device=device,
            ignore_index=cfg.data.ignore_index,
            absent_as_zero=cfg.robustness.miou_absent_as_zero,
        )
    )
    if epoch % max(1, cfg.train.eval_robustness_every) == 0 or epoch == cfg.train.epochs:
        metrics.update(robustness_metrics(model, val, cfg, device))
        metrics["objective"] = robustness_objective(metrics)
    progress.history.append(metrics)
    state.last_metrics = metrics
    if "objective" in metrics and (progress.best_metric is None or metrics["objective"] > progress.best_metric):
        progress.best_metric, progress.best_epoch = metrics["objective"], epoch
        write_checkpoint(state, state.best_path, epoch=epoch, epoch_step=0, metrics=metrics)
    write_checkpoint(state, state.last_path, epoch=epoch, epoch_step=0, metrics=metrics)
    logger.info(
        "epoch %d/%d: loss %.4f, val mIoU %.2f%s",
        epoch,
        cfg.train.epochs,
        metrics["train_loss"],
        metrics["val_miou"],
        f", objective {metrics['objective']:.2f}" if "objective" in metrics else "",
    )


def _record_config(cfg: EquisegConfig, out_dir: Path, checkpoint_path: Path | None) -> None:
    """Write ``config.yaml`` on a fresh run; on a resume check the change first and write ``config.resume-N.yaml``.

    The original ``config.yaml`` keeps describing how the weights were made; a refused resume writes nothing.
    """
    if checkpoint_path is None:
        save_config(cfg, out_dir / "config.yaml")
        return
    for change in check_resume_config(stored_config(checkpoint_path), config_to_dict(cfg), checkpoint_path):
        logger.warning("resuming with a changed schedule: %s", change)
    index = 1
    while (out_dir / f"config.resume-{index}.yaml").exists():
        index += 1
    save_config(cfg, out_dir / f"config.resume-{index}.yaml")
    if not (out_dir / "config.yaml").exists():  # resuming from a checkpoint outside out_dir
        save_config(cfg, out_dir / "config.yaml")


def _plateaued(best_epoch: int | None, epochs_done: int, patience: int) -> bool:
    """True when ``patience`` > 0 epochs have passed since the best objective (``best_epoch``, 1-based)."""
    return patience > 0 and best_epoch is not None and best_epoch > 0 and epochs_done - best_epoch >= patience


def _any_rank(flag: bool, info: DistInfo) -> bool:
    """True on every rank when ``flag`` is true on any (rank 0 decides to stop; the others follow)."""
    if not info.distributed:
        return flag
    return bool(all_reduce_sum(torch.tensor([float(flag)], device=info.device), info).item() > 0)
