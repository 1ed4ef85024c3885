"""Scale-out for real: MLflow server on PostgreSQL with proxied artifacts, Optuna on PostgreSQL, 2 tuning workers.

Starts `mlflow server` on loopback backed by a fresh PostgreSQL database, points the smoke pipeline at it with a
second fresh database as the Optuna storage and two parallel tuning workers, then checks the registry, the runs and
the study through their own APIs.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import pytest
from mlflow import MlflowClient

from pipelines.local import run_local

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


def test_smoke_pipeline_against_mlflow_server_and_optuna_on_postgres(
    workdir: Path, mlflow_server: Any, new_postgres_database: Callable[[], str], tiny_pipeline_overrides: list[str]
) -> None:
    optuna_url = new_postgres_database()
    run = run_local(
        "smoke",
        [
            *tiny_pipeline_overrides,
            "gate.beat_constant=false",  # a one-epoch model cannot clear the default floors (docs/gate.md, 1b)
            "gate.min_keep_without=0",
            f"tracking.uri={mlflow_server.url}",
            # Racing gates on an HTTP server serialise on a PostgreSQL advisory lock in the server's database.
            f"gate.lock_uri={mlflow_server.backend_store}",
            "tracking.artifact_location=",
            f"tune.storage={optuna_url}",
            "tune.workers=2",
            "tune.trials=4",
        ],
        pipeline_run_id="scaleout",
    )
    assert run.summary["state"] == "SUCCEEDED"

    client = MlflowClient(tracking_uri=mlflow_server.url, registry_uri=mlflow_server.url)
    champion = client.get_model_version_by_alias("equiseg", "champion")
    assert champion.tags["equiseg.lineage.pipeline_run_id"] == "scaleout"
    assert champion.tags["equiseg.lineage.dataset_version"] == run.summary["dataset_version"]
    # The model's files went through the server's proxied artifact store.
    assert client.list_artifacts(champion.run_id), "the training run has no artifacts on the server"

    study = optuna.load_study(study_name="equiseg-scaleout", storage=optuna_url)
    finished = [t for t in study.trials if t.state.is_finished()]
    assert len(finished) == 4  # 2 workers x 2 trials: none lost, none duplicated
    assert len({t.number for t in finished}) == 4
