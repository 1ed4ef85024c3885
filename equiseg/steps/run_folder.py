"""The run folder a user reads, and the facts its summary is built from (docs/pipeline.md, "Data flow").

Steps never share files by path. Each KFP task writes only its own outputs: its report bundle (an Artifact folder)
and its facts (``facts/<step>.json`` in its own ``facts`` output, written by :class:`TaskFacts`). The exit handler
merges every task's facts (:func:`collect_task_facts`) into the run summary, and after a local run the launcher
assembles the run folder from the task outputs (:func:`collect_run_folder`) with the layout users know::

    runs/<pipeline_run_id>/
        facts.json            every task's facts, merged (dataset version, gate decision, reports, step times)
        summary.json/.md      the exit handler's summary
        index.html            one page linking every report
        data/  tune/  train/  robustness/  gate/  registry/   one folder per step, each with the config it ran

This module is the only place that knows these paths. Report paths in the facts are relative to the run folder.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import logging
import os
import re
import secrets
import shutil
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any

from equiseg.config import EquisegConfig, save_config
from equiseg.process import skip_final_collection

logger = logging.getLogger(__name__)

__all__ = [
    "REPORT_LABELS",
    "RUN_FOLDER_LAYOUT",
    "RUN_REPORTS",
    "PipelineBusyError",
    "TaskFacts",
    "collect_run_folder",
    "collect_task_facts",
    "exclusive_pipeline_run",
    "merge_facts",
    "new_pipeline_run_id",
    "output_folder",
    "resolve_reports",
    "run_dir_for",
    "summary_paths",
]

#: Report keys recorded in the facts and how the index page and summary name them.
REPORT_LABELS = {
    "data_report": "data report",
    "robustness_report": "robustness report",
    "gate_verdict": "gate verdict",
    "model_card": "model card",
}

#: The reports of a run, as paths in the run folder (docs/pipeline.md, "Reports"); the model card only when the
#: candidate was registered.
RUN_REPORTS = {
    "data_report": "data/report.html",
    "robustness_report": "robustness/robustness.html",
    "gate_verdict": "gate/gate.html",
    "model_card": "registry/model_card.html",
}

#: Where a task's folder output lands in the run folder: (component, output name) -> path in the run folder.
#: KFP names a task after its component (``publish-reports-2`` is the ``dsl.Else`` copy of ``publish-reports``).
RUN_FOLDER_LAYOUT: dict[tuple[str, str], str] = {
    ("validate-data", "report_dir"): "data",
    ("tune-worker", "trials_dir"): "tune",
    ("train", "train_dir"): "train",
    ("evaluate-robustness", "report_dir"): "robustness",
    ("gate", "verdict"): "gate",
    ("register-and-promote", "registry"): "registry",
    ("publish-reports", "index"): "index.html",
    ("run-summary", "summary"): ".",
}


def run_dir_for(cfg: EquisegConfig, pipeline_run_id: str) -> Path:
    """The folder holding everything one pipeline run shows its user (assembled by :func:`collect_run_folder`)."""
    if not pipeline_run_id or "/" in pipeline_run_id or pipeline_run_id in (".", ".."):
        raise ValueError(f"pipeline run id {pipeline_run_id!r} must be a plain folder name, e.g. smoke-20260101-030000")
    return Path(cfg.pipeline.output_dir).resolve() / pipeline_run_id


def output_folder(cfg: EquisegConfig, path: str | Path) -> Path:
    """A task's folder output (a KFP Artifact path), created, with the config the step ran with saved in it."""
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    save_config(cfg, folder / "config.yaml")
    return folder


def summary_paths(folder: Path) -> tuple[Path, Path]:
    """The exit handler's (``summary.json``, ``summary.md``) in ``folder``."""
    return folder / "summary.json", folder / "summary.md"


def merge_facts(parts: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Merge facts in order: a later value wins, except dicts (``reports``, ``steps``, ``data``), merged key by key."""
    merged: dict[str, Any] = {}
    for part in parts:
        for key, value in part.items():
            if isinstance(value, dict) and isinstance(merged.get(key), dict):
                merged[key] = {**merged[key], **value}
            else:
                merged[key] = value
    return merged


class TaskFacts:
    """What one task tells the run summary, written as ``<facts output>/<step>.json`` (that task's own file).

    Steps call :meth:`record` and :meth:`timed`; the component writes them with :meth:`written_to`, which writes
    even when the step raises, so the summary shows which step failed.
    """

    def __init__(self) -> None:
        self.facts: dict[str, Any] = {}

    def record(self, **facts: Any) -> dict[str, Any]:
        """Merge ``facts`` (dicts key by key, as :func:`merge_facts`); returns all facts so far."""
        self.facts = merge_facts([self.facts, facts])
        return self.facts

    def report(self, key: str, folder: str, out_dir: Path, path: str | Path) -> None:
        """Record report ``key`` at ``path`` (inside ``out_dir``) as ``<folder>/<relative path>`` in the run folder."""
        self.record(reports={key: f"{folder}/{Path(path).resolve().relative_to(out_dir.resolve()).as_posix()}"})

    @contextlib.contextmanager
    def timed(self, name: str) -> Iterator[None]:
        """Record the step's own wall time and status under ``steps.<name>`` (used by the pipeline benchmark)."""
        started = time.perf_counter()
        status = "failed"
        try:
            yield
            status = "succeeded"
        finally:
            self.record(steps={name: {"seconds": round(time.perf_counter() - started, 3), "status": status}})

    def write(self, folder: str | Path, name: str) -> Path:
        """Write the facts as ``<folder>/<name>.json``; ``name`` is unique per task (a worker adds its index)."""
        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        path = out / f"{name}.json"
        path.write_text(json.dumps(self.facts, indent=2, default=str))
        return path

    @classmethod
    @contextlib.contextmanager
    def written_to(cls, folder: str | Path, name: str) -> Iterator[TaskFacts]:
        """Facts for one task, written to ``<folder>/<name>.json`` when the block ends, also when it raises.

        Every KFP task enters this block, so it is where a task's process is told to end without the final full
        garbage collection (:func:`equiseg.process.skip_final_collection`).
        """
        skip_final_collection()
        facts = cls()
        try:
            yield facts
        finally:
            facts.write(folder, name)


def collect_task_facts(job_dir: Path) -> dict[str, Any]:
    """Every task's facts under one pipeline job's outputs (``<job>/<task>/facts/<step>.json``), merged.

    Files are merged in order of their time of writing, so a later task's value wins as in the pipeline.
    """
    files = [p for p in Path(job_dir).rglob("*.json") if p.parent.name == "facts" and p.is_file()]
    files.sort(key=lambda p: (p.stat().st_mtime, str(p)))
    return merge_facts(json.loads(p.read_text()) for p in files)


def resolve_reports(facts: Mapping[str, Any], run_dir: Path) -> dict[str, Any]:
    """``facts`` with every report path made absolute against ``run_dir`` (facts store them relative to it)."""
    reports = {k: str(run_dir / v) for k, v in dict(facts.get("reports", {})).items()}  # an absolute v stays v
    return {**facts, "reports": reports} if reports else dict(facts)


_TASKS = {name for name, _ in RUN_FOLDER_LAYOUT}


def _component_of(task_dir_name: str) -> str:
    """``publish-reports-2`` -> ``publish-reports`` (KFP's suffix for a second use of one component)."""
    return re.sub(r"-\d+$", "", task_dir_name)


def collect_run_folder(job_dir: Path, run_dir: Path) -> dict[str, Any]:
    """Assemble ``run_dir`` from one local pipeline job's task outputs (:data:`RUN_FOLDER_LAYOUT`).

    Copies each task's report bundle into its place, writes the merged ``facts.json``, and returns the merged
    facts. What the exit handler wrote (``summary.json``/``.md``) is copied as is.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    # Tasks of a dsl.ParallelFor sit one level down (``for-loop-3-iteration-0/tune-worker/``).
    for task_dir in sorted(p for p in Path(job_dir).rglob("*") if p.is_dir() and _component_of(p.name) in _TASKS):
        component = _component_of(task_dir.name)
        for (name, output), place in RUN_FOLDER_LAYOUT.items():
            source = task_dir / output
            if name != component or not source.exists():
                continue
            target = run_dir / place
            if source.is_dir():
                shutil.copytree(source, target, dirs_exist_ok=True)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, target)
    facts = collect_task_facts(job_dir)
    (run_dir / "facts.json").write_text(json.dumps(facts, indent=2, default=str))
    return facts


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


def _acquire(handle: IO[str], path: Path, wait_seconds: float, poll_seconds: float) -> None:
    """Take the exclusive lock on ``handle``, waiting up to ``wait_seconds``; :class:`PipelineBusyError` if not."""
    deadline = time.monotonic() + wait_seconds
    announced = False
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown run"
        if time.monotonic() >= deadline:
            hint = (
                f"it did not finish within --wait {wait_seconds:g} s"
                if wait_seconds > 0
                else "start this run with --wait SECONDS to queue behind it"
            )
            raise PipelineBusyError(
                f"another local pipeline run is using {path.parent} ({holder}); {hint}, or give this run its own "
                "--set pipeline.output_dir=... and --set data.root=..."
            )
        if not announced:
            logger.warning("waiting up to %g s for %s to finish (it holds %s)", wait_seconds, holder, path.parent)
            announced = True
        time.sleep(min(poll_seconds, max(0.0, deadline - time.monotonic())))


@contextlib.contextmanager
def exclusive_pipeline_run(
    cfg: EquisegConfig, pipeline_run_id: str, *, wait_seconds: float = 0.0, poll_seconds: float = 1.0
) -> Iterator[None]:
    """Hold the local pipeline locks on ``pipeline.output_dir`` and ``data.root`` for one run.

    A second local run on the same output folder or data root would change the data a running one reads and share
    its reference profile. With ``wait_seconds`` 0 it is refused at once with :class:`PipelineBusyError` naming the
    running one (run id, pid, start time); otherwise it waits up to ``wait_seconds`` for the holder to finish (a
    log line says whom it waits for), then runs. The locks are OS file locks, released when the holder exits,
    even by SIGKILL.
    """
    handles = []
    try:
        for path in _lock_files(cfg):
            path.parent.mkdir(parents=True, exist_ok=True)
            handle = open(path, "a+")  # noqa: SIM115 - held open for the whole run
            handles.append(handle)
            _acquire(handle, path, wait_seconds, poll_seconds)
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
