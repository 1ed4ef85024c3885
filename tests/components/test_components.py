"""Each KFP component's Python function, called directly with real small artifacts (no KFP runtime).

Every component's inputs come from module-scoped fixtures that run the upstream components once, so the tests
pass in any order and alone: the same chain the pipeline runs, one component at a time. Components exchange data
only through these artifacts and parameters: the run folder (``runs/<id>/``) is never written by a component.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from kfp.dsl import HTML, Artifact, Dataset, Markdown, Metrics, Model
from mlflow import MlflowClient

import components
from equiseg.steps import collect_task_facts

PROFILE = "smoke"
PIPELINE_RUN_ID = "components"


@pytest.fixture(scope="module")
def common(tiny_pipeline_overrides: list[str]) -> dict[str, Any]:
    """The parameters every component takes: the profile and the shared tiny pipeline overrides."""
    return {"profile": PROFILE, "overrides": list(tiny_pipeline_overrides)}


@pytest.fixture(scope="module")
def per_run(common: dict[str, Any]) -> dict[str, Any]:
    """The parameters of the components whose outputs depend on the run: ``common`` and the run id."""
    return {**common, "pipeline_run_id": PIPELINE_RUN_ID}


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


def _artifact(cls: type, workdir: Path, name: str, task: str = "") -> Any:
    """An output artifact at ``<workdir>/job/<task>/<name>``, the layout kfp.local gives one pipeline job."""
    folder = workdir / "job" / (task or name)
    folder.mkdir(parents=True, exist_ok=True)
    return cls(name=name, uri=str(folder / name), metadata={})


def _facts(workdir: Path, task: str) -> Any:
    return _artifact(Artifact, workdir, "facts", task)


def _mlflow(workdir: Path) -> MlflowClient:
    uri = f"sqlite:///{workdir / 'runs' / 'mlflow.db'}"
    return MlflowClient(tracking_uri=uri, registry_uri=uri)  # explicit: the registry URI defaults to a global


@pytest.fixture(scope="module")
def data(common: dict[str, Any], workdir: Path) -> Any:
    data = _artifact(Dataset, workdir, "data", "prepare-data")
    components.prepare_data.python_func(
        source="", ingest_root="", data=data, facts=_facts(workdir, "prepare-data"), **common
    )
    return data


@pytest.fixture(scope="module")
def validated(common: dict[str, Any], workdir: Path, data: Any) -> SimpleNamespace:
    task = "validate-data"
    out = SimpleNamespace(
        validated=_artifact(Dataset, workdir, "validated", task),
        report=_artifact(HTML, workdir, "report", task),
        report_dir=_artifact(Artifact, workdir, "report_dir", task),
        stats=_artifact(Metrics, workdir, "stats", task),
    )
    out.summary = components.validate_data.python_func(
        data=data,
        validated=out.validated,
        report=out.report,
        report_dir=out.report_dir,
        stats=out.stats,
        facts=_facts(workdir, task),
        **common,
    )
    return out


@pytest.fixture(scope="module")
def version(common: dict[str, Any], workdir: Path, validated: SimpleNamespace) -> str:
    facts = _facts(workdir, "version-data")
    return str(components.version_data.python_func(data=validated.validated, facts=facts, **common))


@pytest.fixture(scope="module")
def tuned(per_run: dict[str, Any], workdir: Path, validated: SimpleNamespace) -> SimpleNamespace:
    study = components.create_study.python_func(storage="", facts=_facts(workdir, "create-study"), **per_run)
    finished = components.tune_worker.python_func(
        worker=0,
        trials=1,
        storage="",
        data=validated.validated,
        trials_dir=_artifact(Artifact, workdir, "trials_dir", "tune-worker"),
        facts=_facts(workdir, "tune-worker"),
        **per_run,
    )
    best = components.select_best_trial.python_func(storage="", facts=_facts(workdir, "select-best-trial"), **per_run)
    return SimpleNamespace(study=study, finished=finished, best=best)


@pytest.fixture(scope="module")
def trained(
    per_run: dict[str, Any], workdir: Path, validated: SimpleNamespace, version: str, tuned: SimpleNamespace
) -> SimpleNamespace:
    out = SimpleNamespace(
        model=_artifact(Model, workdir, "model", "train"), metrics=_artifact(Metrics, workdir, "metrics", "train")
    )
    out.mlflow_run_id = components.train.python_func(
        tuned_overrides=tuned.best,
        dataset_version=version,
        data=validated.validated,
        data_report=validated.report_dir,
        model=out.model,
        metrics=out.metrics,
        train_dir=_artifact(Artifact, workdir, "train_dir", "train"),
        facts=_facts(workdir, "train"),
        **per_run,
    )
    return out


@pytest.fixture(scope="module")
def evaluated(
    common: dict[str, Any], workdir: Path, validated: SimpleNamespace, trained: SimpleNamespace
) -> SimpleNamespace:
    task = "evaluate-robustness"
    out = SimpleNamespace(
        report_dir=_artifact(Artifact, workdir, "report_dir", task),
        metrics=_artifact(Metrics, workdir, "metrics", task),
    )
    components.evaluate_robustness.python_func(
        data=validated.validated,
        model=trained.model,
        report=_artifact(HTML, workdir, "report", task),
        report_dir=out.report_dir,
        metrics=out.metrics,
        facts=_facts(workdir, task),
        **common,
    )
    return out


@pytest.fixture(scope="module")
def gated(
    common: dict[str, Any],
    workdir: Path,
    validated: SimpleNamespace,
    trained: SimpleNamespace,
    evaluated: SimpleNamespace,
) -> SimpleNamespace:
    verdict = _artifact(Artifact, workdir, "verdict", "gate")
    passed = components.gate.python_func(
        data=validated.validated,
        model=trained.model,
        verdict=verdict,
        verdict_page=_artifact(Markdown, workdir, "verdict_page", "gate"),
        facts=_facts(workdir, "gate"),
        **common,
    )
    return SimpleNamespace(passed=passed, verdict=verdict)


@pytest.fixture(scope="module")
def promoted(
    per_run: dict[str, Any],
    workdir: Path,
    version: str,
    validated: SimpleNamespace,
    tuned: SimpleNamespace,
    trained: SimpleNamespace,
    evaluated: SimpleNamespace,
    gated: SimpleNamespace,
) -> str:
    assert gated.passed, "the pipeline registers only a candidate that passed the gate"
    task = "register-and-promote"
    return str(
        components.register_and_promote.python_func(
            tuned_overrides=tuned.best,
            dataset_version=version,
            model=trained.model,
            verdict=gated.verdict,
            data_report=validated.report_dir,
            robustness_report=evaluated.report_dir,
            registry=_artifact(Artifact, workdir, "registry", task),
            model_card=_artifact(Markdown, workdir, "model_card", task),
            facts=_facts(workdir, task),
            **per_run,
        )
    )


@pytest.fixture(scope="module")
def published(
    per_run: dict[str, Any],
    workdir: Path,
    version: str,
    gated: SimpleNamespace,
    evaluated: SimpleNamespace,
    promoted: str,
) -> Any:
    index = _artifact(HTML, workdir, "index", "publish-reports")
    components.publish_reports.python_func(
        gate_passed=True,
        dataset_version=version,
        verdict=gated.verdict,
        robustness=evaluated.metrics,
        index=index,
        facts=_facts(workdir, "publish-reports"),
        registered_version=promoted,
        **per_run,
    )
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


def test_evaluate_robustness_reports_emm(evaluated: SimpleNamespace) -> None:
    assert "emm_avg" in evaluated.metrics.metadata
    assert 0.0 <= evaluated.metrics.metadata["clean_miou"] <= 100.0
    assert sorted(Path(evaluated.report_dir.path).glob("*.html")), "the report bundle holds the HTML report"


def test_gate_passes_a_first_model_on_floors(gated: SimpleNamespace) -> None:
    assert gated.passed is True
    gate_json = json.loads((Path(gated.verdict.path) / "gate.json").read_text())  # the verdict is the gate's output
    assert gate_json["first_run"] is True
    assert gated.verdict.metadata["decision"]


def test_register_and_promote_sets_champion_with_lineage(workdir: Path, promoted: str) -> None:
    champion = _mlflow(workdir).get_model_version_by_alias("equiseg", "champion")
    assert str(champion.version) == promoted
    assert champion.tags["equiseg.lineage.pipeline_run_id"] == PIPELINE_RUN_ID


def test_publish_reports_links_every_report(published: Any) -> None:
    page = Path(published.path).read_text()
    assert "robustness report" in page and "gate verdict" in page and "model card" in page
    assert "registry/model_card.html" in page  # links relative to the run folder the launcher assembles


def test_run_summary_merges_every_tasks_own_facts(
    per_run: dict[str, Any], workdir: Path, version: str, promoted: str, published: Any
) -> None:
    status = SimpleNamespace(state="SUCCEEDED", error_message=None)
    summary_out = _artifact(Artifact, workdir, "summary", "run-summary")
    components.run_summary.python_func(status=status, summary=summary_out, **per_run)
    summary = json.loads((Path(summary_out.path) / "summary.json").read_text())
    assert summary["state"] == "SUCCEEDED"
    assert summary["pipeline_run_id"] == PIPELINE_RUN_ID
    assert summary["dataset_version"] == version
    assert summary["gate_passed"] is True and summary["registered_version"] == promoted
    assert {"prepare_data", "validate_data", "tune_worker_0", "train", "gate", "register_and_promote"} <= set(
        summary["steps"]
    )
    assert summary["reports"]["model_card"] == "registry/model_card.md"
    # One facts file per task, each in that task's own output; nothing in a shared run folder.
    facts_files = sorted(p.relative_to(workdir / "job").as_posix() for p in (workdir / "job").rglob("facts/*.json"))
    assert len(facts_files) == len({p.split("/")[0] for p in facts_files}) == 11, facts_files
    assert collect_task_facts(workdir / "job")["dataset_version"] == version
    assert not (workdir / "runs" / PIPELINE_RUN_ID).exists()
