"""The claim experiment's runs ("cells"): one model trained with one seed and scored, in a folder of its own
(docs/results.md, "Method").

A cell trains on the shared synthetic dataset, picks its best epoch on ``val`` and scores that checkpoint with the
``robustness:`` suite on the held-out split, keeping per-image confusion matrices for the bootstrap. Cells are
resumable: a finished cell (``cell.json`` with the same config hashes) is reused, an interrupted one resumes from
its ``last.pt``. Nothing here imports mlflow, kfp or optuna, so :func:`run_cells` runs on a bare GPU box with the
core dependencies only; its folder can then be brought back and analysed, and logged, elsewhere.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from equiseg.config import ConfigError, EquisegConfig, config_to_dict, load_config, stable_hash
from equiseg.data import generate_from_config, make_loader
from equiseg.experiments.plan import cell_config, cell_name, eval_hash, train_hash, validate_experiment
from equiseg.robustness.evaluate import evaluate_configured, resolve_device
from equiseg.training import load_model_from_checkpoint, train

__all__ = [
    "CELL_FILE",
    "CellRecord",
    "RunBusyError",
    "load_cells",
    "prepare_claim_data",
    "run_cell",
    "run_cells",
    "score_run",
    "write_json_atomic",
]

logger = logging.getLogger(__name__)

CELL_FILE = "cell.json"


@dataclass(frozen=True)
class CellRecord:
    """One finished run (model x seed): where it lives and what it measured."""

    model: str
    seed: int
    path: Path
    train_hash: str
    eval_hash: str
    train_seconds: float
    eval_seconds: float
    best_epoch: int
    history: list[dict[str, float]]
    summary: dict[str, float]
    device: str

    def matches(self, cfg: EquisegConfig) -> tuple[bool, bool]:
        """``(weights match, scores match)`` for the run config ``cfg`` (see :func:`train_hash`, :func:`eval_hash`)."""
        return self.train_hash == train_hash(cfg), self.eval_hash == eval_hash(cfg)

    @property
    def robustness_path(self) -> Path:
        return self.path / "robustness.json"

    @property
    def confusion_path(self) -> Path:
        return self.path / "confusion.npz"

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "seed": self.seed,
            "train_hash": self.train_hash,
            "eval_hash": self.eval_hash,
            "train_seconds": self.train_seconds,
            "eval_seconds": self.eval_seconds,
            "best_epoch": self.best_epoch,
            "history": self.history,
            "summary": self.summary,
            "device": self.device,
        }

    @classmethod
    def load(cls, path: Path) -> CellRecord:
        raw = json.loads((path / CELL_FILE).read_text())
        return cls(
            model=raw["model"],
            seed=int(raw["seed"]),
            path=path,
            train_hash=raw.get("train_hash", ""),
            eval_hash=raw.get("eval_hash", ""),
            train_seconds=float(raw["train_seconds"]),
            eval_seconds=float(raw["eval_seconds"]),
            best_epoch=int(raw["best_epoch"]),
            history=list(raw["history"]),
            summary={k: float(v) for k, v in raw["summary"].items() if v is not None},
            device=str(raw.get("device", "")),
        )


def prepare_claim_data(cfg: EquisegConfig, *, progress: bool = True) -> tuple[Path, Path]:
    """Generate the experiment's synthetic dataset once under ``<output_dir>/data``; returns ``(manifest, root)``.

    An existing dataset made from the same ``data:`` section is reused (``data/.data-hash``).
    """
    if cfg.data.source != "synthetic":
        raise ConfigError(
            f"the claim experiment runs on the synthetic world (data.source=synthetic), got {cfg.data.source!r}"
        )
    root = Path(cfg.experiment.output_dir) / "data"
    stamp = root / ".data-hash"
    wanted = stable_hash(config_to_dict(cfg.data))
    manifest = root / "manifest.parquet"
    if manifest.is_file() and stamp.is_file() and stamp.read_text().strip() == wanted:
        return manifest, root
    manifest = generate_from_config(cfg.data, root, progress=progress)
    stamp.write_text(wanted + "\n")
    return manifest, root


def _reuse_or_reset(run_cfg: EquisegConfig, path: Path) -> tuple[CellRecord | None, float]:
    """The finished record of ``path`` when it still matches ``run_cfg``; else clear what no longer matches.

    Returns:
        ``(record or None, training seconds already spent)``: a run that only needs scoring again keeps the time
        its training took.
    """
    if (path / CELL_FILE).is_file():
        record = CellRecord.load(path)
        weights_match, scores_match = record.matches(run_cfg)
        if weights_match and scores_match and record.confusion_path.is_file():
            logger.info("reusing finished run %s", path)
            return record, record.train_seconds
        (path / CELL_FILE).unlink()
        if weights_match:
            logger.info("%s was scored with another robustness config; scoring it again", path)
            return None, record.train_seconds
        logger.warning("%s was trained with another config; training it again", path)
        shutil.rmtree(path / "train", ignore_errors=True)
    elif (saved := path / "train" / "config.yaml").is_file() and train_hash(load_config(saved)) != train_hash(run_cfg):
        logger.warning("%s holds an unfinished run of another config; training it afresh", path)
        shutil.rmtree(path / "train", ignore_errors=True)
    return None, 0.0


class RunBusyError(RuntimeError):
    """Another process holds the run's folder (:func:`run_lock`): two schedulers launched the same run."""


@contextmanager
def run_lock(path: Path) -> Iterator[None]:
    """Hold ``<path>/.lock`` for as long as one process trains or scores the run in ``path``.

    An advisory ``flock``: the OS releases it when the holder exits, however it exits, so a killed run never leaves
    a stale lock. The file keeps the holder's pid for the message.

    Raises:
        RunBusyError: another process holds it.
    """
    path.mkdir(parents=True, exist_ok=True)
    with (path / ".lock").open("a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            raise RunBusyError(
                f"run {path} is in progress in another process (pid {holder}); wait for it to finish or stop that "
                "process, then run again (finished runs are reused)"
            ) from None
        handle.truncate(0)
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        yield


def run_cell(
    cfg: EquisegConfig, model: str, seed: int, *, manifest: Path, data_root: Path, progress: bool = True
) -> CellRecord:
    """Train ``model`` with ``seed`` and score its best checkpoint; reuse the cell when it already finished.

    Writes ``<output_dir>/cells/<model>-seed<seed>/``: ``train/`` (checkpoints, config), ``robustness.json``,
    ``confusion.npz`` (per-image confusion matrices of every slice) and, last, ``cell.json``. The folder is locked
    while this runs (:func:`run_lock`).

    Raises:
        RunBusyError: another process is running the same cell.
    """
    run_cfg = cell_config(cfg, model, seed)
    path = Path(run_cfg.train.output_dir).parent
    with run_lock(path):
        return _run_cell_locked(run_cfg, path, manifest=manifest, data_root=data_root, progress=progress)


def _run_cell_locked(
    run_cfg: EquisegConfig, path: Path, *, manifest: Path, data_root: Path, progress: bool
) -> CellRecord:
    finished, earlier_train_seconds = _reuse_or_reset(run_cfg, path)
    if finished is not None:
        return finished
    started = time.perf_counter()
    result = train(
        run_cfg,
        manifest=manifest,
        data_root=data_root,
        out_dir=Path(run_cfg.train.output_dir),
        resume=True,
        show_progress=progress,
    )
    train_seconds = earlier_train_seconds + time.perf_counter() - started
    device = resolve_device(run_cfg.train.device)
    net, _ = load_model_from_checkpoint(result.best_checkpoint, device)
    if device.type == "cuda":
        net = net.to(memory_format=torch.channels_last)
    loader = make_loader(
        manifest,
        data_root,
        modalities=run_cfg.data.modalities,
        split=run_cfg.robustness.split,
        batch_size=run_cfg.robustness.batch_size,
        shuffle=False,
        num_workers=run_cfg.data.num_workers,
    )
    return score_run(
        run_cfg,
        net,
        loader,
        device=device,
        train_seconds=train_seconds,
        best_epoch=int(result.metrics.get("best_epoch", -1)),
        history=result.history,
        progress=progress,
    )


def score_run(
    run_cfg: EquisegConfig,
    net: nn.Module,
    batches: Iterable[Mapping[str, Any]],
    *,
    device: torch.device | str,
    train_seconds: float,
    best_epoch: int,
    history: Sequence[Mapping[str, float]],
    progress: bool = False,
) -> CellRecord:
    """Score a trained run with ``run_cfg.robustness`` and write its folder: ``robustness.json``, ``confusion.npz``
    and, last, ``cell.json`` (so a folder with ``cell.json`` is always complete)."""
    path = Path(run_cfg.train.output_dir).parent
    model, seed = run_cfg.model.name, run_cfg.train.seed
    started = time.perf_counter()  # scored in fp32 on every device, so degradations are computed identically
    robustness = evaluate_configured(run_cfg, net, batches, device=device, progress=progress, keep_confusion=True)
    eval_seconds = time.perf_counter() - started
    robustness.meta.update({"model": model, "seed": seed, "split": run_cfg.robustness.split})
    robustness.to_json(path / "robustness.json")
    robustness.save_confusion(path / "confusion.npz")
    record = CellRecord(
        model=model,
        seed=seed,
        path=path,
        train_hash=train_hash(run_cfg),
        eval_hash=eval_hash(run_cfg),
        train_seconds=train_seconds,
        eval_seconds=eval_seconds,
        best_epoch=best_epoch,
        history=[{k: float(v) for k, v in h.items()} for h in history],
        summary=robustness.summary_metrics(),
        device=str(device),
    )
    write_json_atomic(path / CELL_FILE, record.to_dict())
    return record


def run_cells(cfg: EquisegConfig, *, progress: bool = True) -> list[CellRecord]:
    """Prepare the data and run (or reuse) every model x seed, in config order; no analysis, no tracking.

    This is all a bare GPU box needs (torch, numpy, pyarrow): copy ``experiment.output_dir`` back and run
    ``equiseg experiment claim --analyse-only`` where mlflow is installed.
    """
    validate_experiment(cfg)
    manifest, data_root = prepare_claim_data(cfg, progress=progress)
    records = []
    # seed-major: an interrupted experiment has every model at the first seeds rather than some models at all seeds
    cells = [(m, s) for s in cfg.experiment.seeds for m in cfg.experiment.models]
    bar = tqdm(cells, desc="claim", unit="run", disable=not progress)
    for model, seed in bar:
        bar.set_postfix_str(cell_name(model, seed))
        records.append(run_cell(cfg, model, seed, manifest=manifest, data_root=data_root, progress=progress))
    return records


def load_cells(cfg: EquisegConfig) -> list[CellRecord]:
    """The finished runs of ``experiment.models`` x ``experiment.seeds`` under ``output_dir`` (in config order).

    Raises:
        FileNotFoundError: a run is missing or unfinished; the message names it and says how to produce it.
        ConfigError: a run was trained or scored with another config than ``cfg``.
    """
    records, missing = [], []
    for model in cfg.experiment.models:
        for seed in cfg.experiment.seeds:
            path = Path(cfg.experiment.output_dir) / "cells" / cell_name(model, seed)
            if not (path / CELL_FILE).is_file():
                missing.append(path.name)
                continue
            record = CellRecord.load(path)
            weights_match, scores_match = record.matches(cell_config(cfg, model, seed))
            if not (weights_match and scores_match):
                what = "trained" if not weights_match else "scored"
                raise ConfigError(
                    f"{path} was {what} with another config than this one; analyse it with the profile and --set "
                    "overrides that made it, or re-run without --analyse-only to redo it"
                )
            records.append(record)
    if missing:
        raise FileNotFoundError(
            f"unfinished runs in {cfg.experiment.output_dir}/cells: {', '.join(missing)}; run "
            "`equiseg experiment claim` without --analyse-only to train them"
        )
    return records


def write_json_atomic(path: Path, payload: Mapping[str, Any]) -> None:
    """Write ``payload`` as JSON through a temporary file, so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(payload, indent=1, allow_nan=True))
    os.replace(tmp, path)
