"""The whole retraining pipeline through kfp.local, as `make run` runs it, from an empty working directory."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient

from pipelines.local import run_local


def _client(workdir: Path) -> MlflowClient:
    uri = f"sqlite:///{workdir / 'runs' / 'mlflow.db'}"
    return MlflowClient(tracking_uri=uri, registry_uri=uri)  # explicit: the registry URI defaults to a global


def test_local_run_validates_versions_trains_gates_and_registers(
    workdir: Path, tiny_pipeline_overrides: list[str]
) -> None:
    # A one-epoch model cannot clear the default floors (tests/promotion/test_policy_floors.py); this test is about
    # the plumbing, so it turns them off to reach registration.
    floors_off = ["gate.beat_constant=false", "gate.min_keep_without=0"]
    run = run_local("smoke", [*tiny_pipeline_overrides, *floors_off], pipeline_run_id="first")
    summary = run.summary
    assert summary["state"] == "SUCCEEDED"
    # Every report the user is told about exists.
    for key in ("data_report", "robustness_report", "gate_verdict", "model_card", "index"):
        assert Path(summary["reports"][key]).is_file(), key
    # The dataset version is DVC's .dir md5 and is on the training run and the registered version.
    version_id = summary["dataset_version"]
    assert len(version_id.removesuffix(".dir")) == 32
    client = _client(workdir)
    champion = client.get_model_version_by_alias("equiseg", "champion")
    assert champion.tags["equiseg.lineage.dataset_version"] == version_id
    assert champion.tags["equiseg.lineage.pipeline_run_id"] == "first"
    assert champion.tags["equiseg.lineage.git_commit"]
    train_run = client.get_run(summary["mlflow_run_id"])
    assert train_run.data.tags["equiseg.dataset_version"] == version_id
    assert "robustness.emm_avg" in train_run.data.metrics
    # The version and its card describe the config the model was TRAINED with (profile + tuned overrides).
    assert summary["tuned_overrides"], "the tuning step chose no parameters"
    assert champion.tags["equiseg.lineage.config_hash"] == train_run.data.tags["equiseg.config_hash"]
    card = Path(summary["reports"]["model_card"]).read_text()
    for key in ("train.lr", "train.modality_dropout"):
        assert f"- {key}: `{train_run.data.params[key]}`" in card, key
    # The data report and the gate verdict are one hop from the model version; the experiment opens on runs.
    assert champion.tags["equiseg.lineage.data_report"] == f"runs:/{train_run.info.run_id}/data/report.html"
    assert {f.path for f in client.list_artifacts(train_run.info.run_id, "data")} >= {"data/report.html"}
    experiment = client.get_experiment(train_run.info.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    # First run: no champion to compare with, so floors only.
    gate = json.loads((run.run_dir / "gate" / "gate.json").read_text())
    assert gate["passed"] is True and gate["first_run"] is True
    # Every step recorded its own time; the summary says the run succeeded.
    assert {"prepare_data", "validate_data", "train", "evaluate_robustness", "gate"} <= set(summary["steps"])
    assert "SUCCEEDED" in (run.run_dir / "summary.md").read_text()
    # The run folder holds only what the launcher assembled from the task outputs (docs/pipeline.md, "Data flow").
    assert {p.name for p in run.run_dir.iterdir()} == {
        *("data", "tune", "train", "robustness", "gate", "registry"),
        *("index.html", "facts.json", "summary.json", "summary.md"),
    }
    assert (run.run_dir / "registry" / "model_card.html").is_file()


@pytest.mark.slow
def test_two_runs_started_together_both_finish_and_the_second_rescores_the_champion(
    workdir: Path, tiny_pipeline_overrides: list[str]
) -> None:
    """Two `equiseg pipeline run --wait` started at once: the second queues behind the first, keeps its data (same
    config, same bytes), gates against the champion the first registered and reports its own registry outcome."""
    floors_off = [*tiny_pipeline_overrides, "gate.beat_constant=false", "gate.min_keep_without=0"]  # see above
    args = [a for item in floors_off for a in ("--set", item)]
    equiseg = str(Path(sys.executable).parent / "equiseg")  # the console script, as a user starts it
    command = [equiseg, "pipeline", "run", "--profile", "smoke", *args, "--json", "--wait", "1200"]
    logs = workdir / "logs"
    logs.mkdir()
    procs = {}
    for run_id in ("alpha", "beta"):  # output to files, not pipes: a full pipe would stall the run holding the lock
        with open(logs / f"{run_id}.out", "w") as out, open(logs / f"{run_id}.err", "w") as err:
            run = [*command, "--pipeline-run-id", run_id]
            procs[run_id] = subprocess.Popen(run, cwd=workdir, stdout=out, stderr=err)
    for proc in procs.values():
        proc.wait(timeout=1800)
    results = {r: ((logs / f"{r}.out").read_text(), (logs / f"{r}.err").read_text()) for r in procs}
    for run_id, (_, err) in results.items():
        assert procs[run_id].returncode == 0, f"{run_id}: {err[-3000:]}"
    summaries = {run_id: json.loads(out) for run_id, (out, _) in results.items()}
    assert {s["pipeline_run_id"] for s in summaries.values()} == {"alpha", "beta"}
    gates = {r: json.loads((workdir / "runs" / r / "gate" / "gate.json").read_text()) for r in summaries}
    assert sorted(g["first_run"] for g in gates.values()) == [False, True]  # one ran first, the other queued
    first, second = sorted(summaries.values(), key=lambda s: not gates[s["pipeline_run_id"]]["first_run"])
    later_log = results[second["pipeline_run_id"]][1]
    assert "waiting up to 1200 s" in later_log  # it queued instead of clobbering the running one
    assert "kept the synthetic dataset" in later_log  # and read the data without rewriting it
    assert first["dataset_version"] == second["dataset_version"]
    later_dir = workdir / "runs" / second["pipeline_run_id"]
    assert gates[second["pipeline_run_id"]]["champion_version"] is not None
    assert first["registry"].startswith("version 1:")  # each summary reports its own run's registry outcome
    if second["gate_passed"]:
        assert second["registry"].startswith("version 2:")
    else:  # deterministic CPU training gives the champion's weights again: no improvement, so the gate blocks
        assert second["registry"].startswith("nothing registered: the gate blocked")
    # The drift reference is the champion's training data statistics, read from its MLflow run.
    assert (later_dir / "data" / "reference" / "stats.json").is_file()


def test_failed_step_still_writes_the_summary(workdir: Path, tiny_pipeline_overrides: list[str]) -> None:
    with pytest.raises(RuntimeError, match="failed"):
        run_local("smoke", [*tiny_pipeline_overrides, "data.source=pst900"], pipeline_run_id="broken")
    summary = json.loads((workdir / "runs" / "broken" / "summary.json").read_text())
    assert summary["state"] == "FAILED"
    assert "ingest-root" in summary["error"] or summary["steps"]["prepare_data"]["status"] == "failed"
