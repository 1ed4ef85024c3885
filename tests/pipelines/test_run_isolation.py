"""Local pipeline runs do not clobber one another: ids never collide, one run at a time per output folder and
data root, and a run id never reuses a run folder."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from equiseg.config import load_config
from equiseg.steps.run_folder import PipelineBusyError, exclusive_pipeline_run, new_pipeline_run_id
from pipelines.local import run_local


def test_run_ids_started_in_the_same_second_differ() -> None:
    ids = {new_pipeline_run_id("smoke") for _ in range(200)}
    assert len(ids) == 200
    assert all(i.startswith("smoke-") for i in ids)


def _hold_lock(workdir: Path, overrides: list[str]) -> subprocess.Popen[str]:
    """Another process holding the pipeline lock (a running pipeline), until its stdin closes."""
    code = textwrap.dedent(
        f"""
        import sys
        from equiseg.config import load_config
        from equiseg.steps.run_folder import exclusive_pipeline_run
        with exclusive_pipeline_run(load_config("smoke", {overrides!r}), "running-one"):
            print("held", flush=True)
            sys.stdin.read()
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], cwd=workdir, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_run_while_one_is_running_is_refused_before_it_touches_anything(
    workdir: Path, tiny_pipeline_overrides: list[str]
) -> None:
    holder = _hold_lock(workdir, tiny_pipeline_overrides)
    try:
        with pytest.raises(PipelineBusyError, match=r"another local pipeline run .*running-one, pid \d+"):
            run_local("smoke", tiny_pipeline_overrides, pipeline_run_id="second")
        assert not (workdir / "runs" / "second").exists()
        assert not (workdir / "data").exists()  # the running one's data was not regenerated
        # another output folder still shares the data root: refused too
        other = [*tiny_pipeline_overrides, "pipeline.output_dir=elsewhere"]
        with pytest.raises(PipelineBusyError, match="data"):
            run_local("smoke", other, pipeline_run_id="third")
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=30)
    with exclusive_pipeline_run(load_config("smoke", tiny_pipeline_overrides), "after"):  # released on exit
        pass


def test_a_run_started_with_wait_queues_behind_the_running_one(
    workdir: Path, tiny_pipeline_overrides: list[str]
) -> None:
    cfg = load_config("smoke", tiny_pipeline_overrides)
    holder = _hold_lock(workdir, tiny_pipeline_overrides)
    assert holder.stdin is not None
    impatient = exclusive_pipeline_run(cfg, "impatient", wait_seconds=0.3, poll_seconds=0.05)
    with pytest.raises(PipelineBusyError, match=r"did not finish within --wait 0.3 s"), impatient:
        pass
    release = threading.Timer(1.0, holder.stdin.close)
    release.start()
    started = time.monotonic()
    with exclusive_pipeline_run(cfg, "patient", wait_seconds=60, poll_seconds=0.05):
        waited = time.monotonic() - started
        assert holder.wait(timeout=30) == 0  # it got the lock only once the running one had finished
    release.join()
    assert waited >= 0.9


def test_a_run_id_never_reuses_a_run_folder(workdir: Path, tiny_pipeline_overrides: list[str]) -> None:
    (workdir / "runs" / "taken").mkdir(parents=True)
    with pytest.raises(FileExistsError, match="already has a run folder"):
        run_local("smoke", tiny_pipeline_overrides, pipeline_run_id="taken")
