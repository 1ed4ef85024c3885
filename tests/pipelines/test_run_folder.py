"""The run folder is assembled from task outputs: each task's own facts file, merged; report bundles in place."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from equiseg.steps.run_folder import TaskFacts, collect_run_folder, collect_task_facts, merge_facts
from equiseg.steps.summary import read_run_summary


def _task(job: Path, task: str, step: str, mtime: float, **facts: object) -> None:
    """One task's facts output, written at ``mtime`` (the merge follows the order of writing)."""
    recorded = TaskFacts()
    recorded.record(**facts)
    path = recorded.write(job / task / "facts", step)
    os.utime(path, (mtime, mtime))


def _job(tmp_path: Path) -> Path:
    """A pipeline job's outputs laid out as kfp.local lays them out: ``<job>/<task>/<output>``."""
    job = tmp_path / "kfp" / "equiseg-retrain-2026"
    _task(job, "prepare-data", "prepare_data", 1, data={"samples": 24}, steps={"prepare_data": {"seconds": 1}})
    report_dir = job / "validate-data" / "report_dir"
    report_dir.mkdir(parents=True)
    (report_dir / "report.html").write_text("<html>data</html>")
    _task(
        job,
        "validate-data",
        "validate_data",
        2,
        data={"validated": 24},
        reports={"data_report": "data/report.html"},
        steps={"validate_data": {"seconds": 2}},
    )
    for worker in (0, 1):  # a dsl.ParallelFor iteration's task sits one level down
        task = f"for-loop-3-iteration-{worker}/tune-worker"
        (job / task / "trials_dir" / f"worker-{worker}").mkdir(parents=True)
        _task(job, task, f"tune_worker_{worker}", 3 + worker, steps={f"tune_worker_{worker}": {"seconds": 5}})
    verdict = job / "gate" / "verdict"
    verdict.mkdir(parents=True)
    (verdict / "gate.json").write_text(json.dumps({"passed": False}))
    _task(job, "gate", "gate", 5, gate_passed=False, gate_decision="blocked", reports={"gate_verdict": "gate/gate.md"})
    (job / "publish-reports-2").mkdir()
    (job / "publish-reports-2" / "index").write_text("<html>index</html>")
    _task(job, "publish-reports-2", "publish_reports", 6, reports={"index": "index.html"})
    summary = job / "run-summary" / "summary"
    summary.mkdir(parents=True)
    (summary / "summary.json").write_text(json.dumps({"state": "SUCCEEDED", "reports": {"index": "index.html"}}))
    (summary / "summary.md").write_text("# run\n")
    return job


def test_facts_of_every_task_are_merged_dicts_key_by_key(tmp_path: Path) -> None:
    facts = collect_task_facts(_job(tmp_path))
    assert facts["data"] == {"samples": 24, "validated": 24}
    assert set(facts["steps"]) == {"prepare_data", "validate_data", "tune_worker_0", "tune_worker_1"}
    assert facts["reports"] == {
        "data_report": "data/report.html",
        "gate_verdict": "gate/gate.md",
        "index": "index.html",
    }
    assert facts["gate_passed"] is False
    assert merge_facts([{"a": 1, "d": {"x": 1}}, {"a": 2, "d": {"y": 2}}]) == {"a": 2, "d": {"x": 1, "y": 2}}


def test_collect_run_folder_puts_each_output_where_users_find_it(tmp_path: Path) -> None:
    run_dir = tmp_path / "runs" / "smoke-1"
    facts = collect_run_folder(_job(tmp_path), run_dir)
    assert (run_dir / "data" / "report.html").read_text() == "<html>data</html>"
    assert {p.name for p in (run_dir / "tune").iterdir()} == {"worker-0", "worker-1"}
    assert json.loads((run_dir / "gate" / "gate.json").read_text()) == {"passed": False}
    assert (run_dir / "index.html").read_text() == "<html>index</html>"  # from the dsl.Else copy of the task
    assert (run_dir / "summary.md").is_file()
    assert json.loads((run_dir / "facts.json").read_text()) == facts
    # Report paths in the facts are relative to the run folder; the launcher's reading makes them absolute.
    summary = read_run_summary(run_dir)
    assert summary["state"] == "SUCCEEDED"
    assert Path(summary["reports"]["index"]) == run_dir / "index.html"


def test_a_failing_step_still_writes_its_facts_with_the_failure(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="boom"), TaskFacts.written_to(tmp_path / "facts", "train") as facts:  # noqa: SIM117
        with facts.timed("train"):  # the step's own timing, inside the component's facts output
            raise ValueError("boom")
    written = json.loads((tmp_path / "facts" / "train.json").read_text())
    assert written["steps"]["train"]["status"] == "failed"
