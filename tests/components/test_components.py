"""Each KFP component's Python function, called directly with real small artifacts (no KFP runtime).

The tests run in pipeline order and share one working directory, so each component consumes the real artifacts
the previous one produced: the same chain the pipeline runs, one component at a time.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from kfp.dsl import HTML, Dataset, Markdown, Metrics, Model
from mlflow import MlflowClient

import components

PROFILE = "smoke"
OVERRIDES = [
    "data.samples=24",
    "data.image_size=32",
    "train.epochs=1",
    "tune.trials=1",
    "robustness.bootstrap_samples=50",
    "gate.bootstrap_samples=50",
]
RUN_ID = "components"


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimpleNamespace]:
    """A working directory plus a namespace where each test leaves the artifacts it produced."""
    workdir = tmp_path_factory.mktemp("components")
    previous = Path.cwd()
    # (MLflow's global URIs, which the steps point at this folder's store, are restored after every test by the
    # autouse fixture in tests/conftest.py)
    os.chdir(workdir)
    try:
        yield SimpleNamespace(workdir=workdir, artifacts={})
    finally:
        os.chdir(previous)


def _artifact(cls: type, workdir: Path, name: str) -> Any:
    folder = workdir / "artifacts"
    folder.mkdir(exist_ok=True)
    return cls(name=name, uri=str(folder / name), metadata={})


def _mlflow(chain: SimpleNamespace) -> MlflowClient:
    uri = f"sqlite:///{chain.workdir / 'runs' / 'mlflow.db'}"
    return MlflowClient(tracking_uri=uri, registry_uri=uri)  # explicit: the registry URI defaults to a global


def _common() -> dict[str, Any]:
    return {"profile": PROFILE, "overrides": OVERRIDES, "run_id": RUN_ID}


def test_prepare_data_writes_the_manifest_artifact(chain: SimpleNamespace) -> None:
    data = _artifact(Dataset, chain.workdir, "data")
    components.prepare_data.python_func(source="", ingest_root="", data=data, **_common())
    assert Path(data.path).is_file()
    assert data.metadata["samples"] == 24
    assert Path(data.metadata["data_root"]).is_dir()
    chain.artifacts["data"] = data


def test_validate_data_accepts_clean_synthetic_data(chain: SimpleNamespace) -> None:
    validated = _artifact(Dataset, chain.workdir, "validated")
    report = _artifact(HTML, chain.workdir, "report.html")
    stats = _artifact(Metrics, chain.workdir, "stats")
    summary = components.validate_data.python_func(
        data=chain.artifacts["data"], validated=validated, report=report, stats=stats, **_common()
    )
    assert isinstance(summary, str) and summary
    assert stats.metadata["samples_validated"] + stats.metadata["samples_quarantined"] == 24
    assert "<html" in Path(report.path).read_text().lower()
    chain.artifacts["validated"] = validated


def test_version_data_returns_the_dvc_dir_md5(chain: SimpleNamespace) -> None:
    version = components.version_data.python_func(data=chain.artifacts["validated"], **_common())
    assert version.endswith(".dir") or len(version) == 32
    chain.artifacts["version"] = version


def test_tuning_worker_and_best_trial(chain: SimpleNamespace) -> None:
    study = components.create_study.python_func(storage="", **_common())
    assert study == f"equiseg-{RUN_ID}"
    finished = components.tune_worker.python_func(
        worker=0, trials=1, storage="", data=chain.artifacts["validated"], **_common()
    )
    assert finished == 1
    best = components.select_best_trial.python_func(storage="", **_common())
    assert best and all("=" in item for item in best)
    chain.artifacts["best"] = best


def test_train_produces_a_checkpoint_and_an_mlflow_run(chain: SimpleNamespace) -> None:
    model = _artifact(Model, chain.workdir, "model.pt")
    metrics = _artifact(Metrics, chain.workdir, "train-metrics")
    run_id = components.train.python_func(
        tuned_overrides=chain.artifacts["best"],
        dataset_version=chain.artifacts["version"],
        data=chain.artifacts["validated"],
        model=model,
        metrics=metrics,
        **_common(),
    )
    assert Path(model.path).stat().st_size > 0
    assert model.metadata["mlflow_run_id"] == run_id
    client = _mlflow(chain)
    assert client.get_run(run_id).data.tags["equiseg.dataset_version"] == chain.artifacts["version"]
    chain.artifacts["model"] = model


def test_evaluate_robustness_reports_emm(chain: SimpleNamespace) -> None:
    report = _artifact(HTML, chain.workdir, "robustness.html")
    metrics = _artifact(Metrics, chain.workdir, "robustness-metrics")
    components.evaluate_robustness.python_func(
        data=chain.artifacts["validated"], model=chain.artifacts["model"], report=report, metrics=metrics, **_common()
    )
    assert "emm_avg" in metrics.metadata
    assert 0.0 <= metrics.metadata["clean_miou"] <= 100.0


def test_gate_passes_a_first_model_on_floors(chain: SimpleNamespace) -> None:
    verdict = _artifact(Markdown, chain.workdir, "gate.md")
    passed = components.gate.python_func(
        data=chain.artifacts["validated"], model=chain.artifacts["model"], verdict=verdict, **_common()
    )
    assert passed is True
    gate_json = json.loads(Path(verdict.metadata["gate_json"]).read_text())
    assert gate_json["first_run"] is True


def test_register_and_promote_sets_champion_with_lineage(chain: SimpleNamespace) -> None:
    version = components.register_and_promote.python_func(
        dataset_version=chain.artifacts["version"], model=chain.artifacts["model"], **_common()
    )
    client = _mlflow(chain)
    champion = client.get_model_version_by_alias("equiseg", "champion")
    assert str(champion.version) == version
    assert champion.tags["equiseg.lineage.pipeline_run_id"] == RUN_ID


def test_publish_reports_and_run_summary(chain: SimpleNamespace) -> None:
    index = _artifact(HTML, chain.workdir, "index.html")
    components.publish_reports.python_func(gate_passed=True, index=index, **_common())
    page = Path(index.path).read_text()
    assert "robustness report" in page and "gate verdict" in page
    status = SimpleNamespace(state="SUCCEEDED", error_message=None)
    components.run_summary.python_func(status=status, **_common())
    summary = json.loads((chain.workdir / "runs" / RUN_ID / "summary.json").read_text())
    assert summary["state"] == "SUCCEEDED"
    assert summary["dataset_version"] == chain.artifacts["version"]
