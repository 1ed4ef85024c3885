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
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from equiseg.config import EquisegConfig, save_config

__all__ = [
    "REPORT_LABELS",
    "data_stats_path",
    "gate_paths",
    "index_path",
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
