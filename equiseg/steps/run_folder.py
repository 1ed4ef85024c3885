"""The run folder: where one pipeline run writes each step's outputs, and the facts its summary is built from.

Layout (docs/pipeline.md), under ``<pipeline.output_dir>/<pipeline_run_id>/``::

    facts.json            what the user must see at the end (dataset version, gate decision, reports, step times)
    summary.json/.md      the exit handler's summary
    index.html            one page linking every report
    data/  tune/  train/  robustness/  gate/  registry/   one folder per step, each with the config it ran

and ``<pipeline.output_dir>/reference/stats.json``, the statistics of the last accepted dataset version.
This module is the only place that knows these paths.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from equiseg.config import EquisegConfig, save_config

__all__ = [
    "REPORT_LABELS",
    "PipelineBusyError",
    "data_stats_path",
    "exclusive_pipeline_run",
    "gate_paths",
    "index_path",
    "new_pipeline_run_id",
    "optuna_db_path",
    "read_facts",
    "record_facts",
    "reference_profile_path",
    "robustness_heatmap_path",
    "run_dir_for",
    "step_dir",
    "summary_paths",
    "timed_step",
]

#: Report keys recorded in ``facts.json`` and how the index page and summary name them.
REPORT_LABELS = {
    "data_report": "data report",
    "robustness_report": "robustness report",
    "gate_verdict": "gate verdict",
    "model_card": "model card",
}


def run_dir_for(cfg: EquisegConfig, pipeline_run_id: str) -> Path:
    """The folder holding everything one pipeline run writes."""
    if not pipeline_run_id or "/" in pipeline_run_id or pipeline_run_id in (".", ".."):
        raise ValueError(f"pipeline run id {pipeline_run_id!r} must be a plain folder name, e.g. smoke-20260101-030000")
    return Path(cfg.pipeline.output_dir).resolve() / pipeline_run_id


def step_dir(cfg: EquisegConfig, pipeline_run_id: str, name: str) -> Path:
    """A step's folder inside the run folder, created, with the config the step ran with saved in it."""
    folder = run_dir_for(cfg, pipeline_run_id) / name
    folder.mkdir(parents=True, exist_ok=True)
    save_config(cfg, folder / "config.yaml")
    return folder


def reference_profile_path(cfg: EquisegConfig) -> Path:
    """Statistics of the last accepted dataset version, the reference for drift checks."""
    return Path(cfg.pipeline.output_dir).resolve() / "reference" / "stats.json"


def data_stats_path(run_dir: Path) -> Path:
    """The validation step's dataset statistics (promoted to the reference profile when the model is promoted)."""
    return run_dir / "data" / "stats.json"


def robustness_heatmap_path(run_dir: Path) -> Path | None:
    """The robustness step's heatmap figure, if it wrote one (the model card shows it)."""
    found = sorted((run_dir / "robustness").glob("*heatmap*.png"))
    return found[0] if found else None


def optuna_db_path(run_dir: Path) -> Path:
    """The run's default (sqlite) Optuna storage."""
    return run_dir / "tune" / "optuna.db"


def gate_paths(run_dir: Path) -> tuple[Path, Path]:
    """The gate verdict as (``gate.json``, ``gate.md``)."""
    return run_dir / "gate" / "gate.json", run_dir / "gate" / "gate.md"


def index_path(run_dir: Path) -> Path:
    """The page linking every report of the run."""
    return run_dir / "index.html"


def summary_paths(run_dir: Path) -> tuple[Path, Path]:
    """The exit handler's (``summary.json``, ``summary.md``)."""
    return run_dir / "summary.json", run_dir / "summary.md"


def _merge_json(path: Path, updates: dict[str, Any]) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text()) if path.is_file() else {}
    for key, value in updates.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key].update(value)
        else:
            data[key] = value
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str))
    os.replace(tmp, path)
    return data


def record_facts(run_dir: Path, **facts: Any) -> dict[str, Any]:
    """Merge facts for the run summary into ``<run dir>/facts.json``; returns all facts so far."""
    run_dir.mkdir(parents=True, exist_ok=True)
    return _merge_json(run_dir / "facts.json", facts)


def read_facts(run_dir: Path) -> dict[str, Any]:
    """The facts recorded so far (empty dict if none)."""
    path = run_dir / "facts.json"
    return json.loads(path.read_text()) if path.is_file() else {}


@contextlib.contextmanager
def timed_step(run_dir: Path, name: str) -> Iterator[None]:
    """Record the step's own wall time in ``facts.json`` (used by the pipeline-overhead benchmark)."""
    started = time.perf_counter()
    status = "failed"
    try:
        yield
        status = "succeeded"
    finally:
        record_facts(run_dir, steps={name: {"seconds": round(time.perf_counter() - started, 3), "status": status}})


class PipelineBusyError(RuntimeError):
    """Another local pipeline run holds the output folder or the data root."""


def new_pipeline_run_id(profile: str) -> str:
    """A sortable, readable run id that cannot collide: ``<profile>-YYYYmmdd-HHMMSS-<8 random hex>``.

    Two runs started in the same second get different ids (and so different run folders, checkpoints, studies and
    verdicts).
    """
    name = Path(profile).stem if str(profile).endswith((".yaml", ".yml")) else str(profile)
    return f"{name}-{dt.datetime.now(dt.UTC).strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(4)}"


def _lock_files(cfg: EquisegConfig) -> list[Path]:
    out = Path(cfg.pipeline.output_dir).resolve()
    data = Path(cfg.data.root).resolve()
    return [out / ".pipeline.lock", data.parent / f".{data.name}.pipeline.lock"]


@contextlib.contextmanager
def exclusive_pipeline_run(cfg: EquisegConfig, pipeline_run_id: str) -> Iterator[None]:
    """Hold the local pipeline locks on ``pipeline.output_dir`` and ``data.root`` for one run, or refuse at once.

    A second local run on the same output folder or data root would regenerate the data a running one reads and
    share its reference profile; it is refused with :class:`PipelineBusyError` naming the running one (run id,
    pid, start time). The locks are OS file locks, released when the holder exits, even by SIGKILL.
    """
    handles = []
    try:
        for path in _lock_files(cfg):
            path.parent.mkdir(parents=True, exist_ok=True)
            handle = open(path, "a+")  # noqa: SIM115 - held open for the whole run
            handles.append(handle)
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                holder = handle.read().strip() or "unknown run"
                raise PipelineBusyError(
                    f"another local pipeline run is using {path.parent} ({holder}); wait for it to finish, or give "
                    "this run its own --set pipeline.output_dir=... and --set data.root=..."
                ) from None
            handle.seek(0)
            handle.truncate()
            handle.write(
                f"run {pipeline_run_id}, pid {os.getpid()}, started {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M:%S} UTC"
            )
            handle.flush()
        yield
    finally:
        for handle in handles:
            handle.close()
