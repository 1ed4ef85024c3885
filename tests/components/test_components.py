"""Each KFP component's Python function, called directly with real small artifacts (no KFP runtime).

Every component's inputs come from module-scoped fixtures that run the upstream components once, so the tests
pass in any order and alone: the same chain the pipeline runs, one component at a time.
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
PIPELINE_RUN_ID = "components"


@pytest.fixture(scope="module")
def common(tiny_pipeline_overrides: list[str]) -> dict[str, Any]:
    """The parameters every component takes: profile, the shared tiny pipeline overrides and the run id."""
    return {"profile": PROFILE, "overrides": list(tiny_pipeline_overrides), "pipeline_run_id": PIPELINE_RUN_ID}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One working directory for the module: runs/, data/ and the sqlite stores land here."""
    folder = tmp_path_factory.mktemp("components")
    previous = Path.cwd()
    # (MLflow's global URIs, which the steps point at this folder's store, are restored after every test by the
    # autouse fixture in tests/conftest.py)
    os.chdir(folder)
    try:
        yield folder
    finally:
        os.chdir(previous)


def _artifact(cls: type, workdir: Path, name: str) -> Any:
    folder = workdir / "artifacts"
    folder.mkdir(exist_ok=True)
    return cls(name=name, uri=str(folder / name), metadata={})


def _mlflow(workdir: Path) -> MlflowClient:
    uri = f"sqlite:///{workdir / 'runs' / 'mlflow.db'}"
    return MlflowClient(tracking_uri=uri, registry_uri=uri)  # explicit: the registry URI defaults to a global


@pytest.fixture(scope="module")
def data(common: dict[str, Any], workdir: Path) -> Any:
    data = _artifact(Dataset, workdir, "data")
    components.prepare_data.python_func(source="", ingest_root="", data=data, **common)
    return data


@pytest.fixture(scope="module")
def validated(common: dict[str, Any], workdir: Path, data: Any) -> SimpleNamespace:
    out = SimpleNamespace(
        validated=_artifact(Dataset, workdir, "validated"),
        report=_artifact(HTML, workdir, "report.html"),
        stats=_artifact(Metrics, workdir, "stats"),
    )
    out.summary = components.validate_data.python_func(
        data=data, validated=out.validated, report=out.report, stats=out.stats, **common
    )
    return out


@pytest.fixture(scope="module")
def version(common: dict[str, Any], validated: SimpleNamespace) -> str:
    return str(components.version_data.python_func(data=validated.validated, **common))


@pytest.fixture(scope="module")
def tuned(common: dict[str, Any], validated: SimpleNamespace) -> SimpleNamespace:
    study = components.create_study.python_func(storage="", **common)
    finished = components.tune_worker.python_func(worker=0, trials=1, storage="", data=validated.validated, **common)
    best = components.select_best_trial.python_func(storage="", **common)
    return SimpleNamespace(study=study, finished=finished, best=best)


@pytest.fixture(scope="module")
def trained(
    common: dict[str, Any], workdir: Path, validated: SimpleNamespace, version: str, tuned: SimpleNamespace
) -> SimpleNamespace:
    out = SimpleNamespace(model=_artifact(Model, workdir, "model.pt"), metrics=_artifact(Metrics, workdir, "tm"))
    out.mlflow_run_id = components.train.python_func(
        tuned_overrides=tuned.best,
        dataset_version=version,
        data=validated.validated,
        model=out.model,
        metrics=out.metrics,
        **common,
    )
    return out


@pytest.fixture(scope="module")
def evaluated(common: dict[str, Any], workdir: Path, validated: SimpleNamespace, trained: SimpleNamespace) -> Any:
    report = _artifact(HTML, workdir, "robustness.html")
    metrics = _artifact(Metrics, workdir, "robustness-metrics")
    components.evaluate_robustness.python_func(
        data=validated.validated, model=trained.model, report=report, metrics=metrics, **common
    )
    return metrics


@pytest.fixture(scope="module")
def gated(
    common: dict[str, Any], workdir: Path, validated: SimpleNamespace, trained: SimpleNamespace, evaluated: Any
) -> SimpleNamespace:
    verdict = _artifact(Markdown, workdir, "gate.md")
    passed = components.gate.python_func(data=validated.validated, model=trained.model, verdict=verdict, **common)
    return SimpleNamespace(passed=passed, verdict=verdict)


@pytest.fixture(scope="module")
def promoted(
    common: dict[str, Any], version: str, tuned: SimpleNamespace, trained: SimpleNamespace, gated: SimpleNamespace
) -> str:
    assert gated.passed, "the pipeline registers only a candidate that passed the gate"
    return str(
        components.register_and_promote.python_func(
            tuned_overrides=tuned.best, dataset_version=version, model=trained.model, **common
        )
    )


@pytest.fixture(scope="module")
def published(common: dict[str, Any], workdir: Path, promoted: str) -> Any:
    index = _artifact(HTML, workdir, "index.html")
    components.publish_reports.python_func(gate_passed=True, index=index, **common)
    return index


def test_prepare_data_writes_the_manifest_artifact(data: Any) -> None:
    assert Path(data.path).is_file()
    assert data.metadata["samples"] == 24
    assert Path(data.metadata["data_root"]).is_dir()


def test_validate_data_accepts_clean_synthetic_data(validated: SimpleNamespace) -> None:
    assert isinstance(validated.summary, str) and validated.summary
    assert validated.stats.metadata["samples_validated"] + validated.stats.metadata["samples_quarantined"] == 24
    assert "<html" in Path(validated.report.path).read_text().lower()


def test_version_data_returns_the_dvc_dir_md5(version: str) -> None:
    assert version.endswith(".dir") or len(version) == 32


def test_tuning_worker_and_best_trial(tuned: SimpleNamespace) -> None:
    assert tuned.study == f"equiseg-{PIPELINE_RUN_ID}"
    assert tuned.finished == 1
    assert tuned.best and all("=" in item for item in tuned.best)


def test_train_produces_a_checkpoint_and_an_mlflow_run(workdir: Path, trained: SimpleNamespace, version: str) -> None:
    assert Path(trained.model.path).stat().st_size > 0
    assert trained.model.metadata["mlflow_run_id"] == trained.mlflow_run_id
    tags = _mlflow(workdir).get_run(trained.mlflow_run_id).data.tags
    assert tags["equiseg.dataset_version"] == version
    assert tags["equiseg.pipeline_run_id"] == PIPELINE_RUN_ID


def test_evaluate_robustness_reports_emm(evaluated: Any) -> None:
    assert "emm_avg" in evaluated.metadata
    assert 0.0 <= evaluated.metadata["clean_miou"] <= 100.0


def test_gate_passes_a_first_model_on_floors(gated: SimpleNamespace) -> None:
    assert gated.passed is True
    gate_json = json.loads(Path(gated.verdict.metadata["gate_json"]).read_text())
    assert gate_json["first_run"] is True


def test_register_and_promote_sets_champion_with_lineage(workdir: Path, promoted: str) -> None:
    champion = _mlflow(workdir).get_model_version_by_alias("equiseg", "champion")
    assert str(champion.version) == promoted
    assert champion.tags["equiseg.lineage.pipeline_run_id"] == PIPELINE_RUN_ID


def test_publish_reports_links_every_report(published: Any) -> None:
    page = Path(published.path).read_text()
    assert "robustness report" in page and "gate verdict" in page and "model card" in page


def test_run_summary_records_the_final_state(
    common: dict[str, Any], workdir: Path, version: str, published: Any
) -> None:
    status = SimpleNamespace(state="SUCCEEDED", error_message=None)
    components.run_summary.python_func(status=status, **common)
    summary = json.loads((workdir / "runs" / PIPELINE_RUN_ID / "summary.json").read_text())
    assert summary["state"] == "SUCCEEDED"
    assert summary["pipeline_run_id"] == PIPELINE_RUN_ID
    assert summary["dataset_version"] == version
