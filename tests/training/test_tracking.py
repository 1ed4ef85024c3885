"""MLflow tracking: run contents of a training run, the logged model, URI handling and outage behaviour."""

from __future__ import annotations

import itertools
import time
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient

from equiseg.config import TrackingConfig
from equiseg.tracking import Tracker, TrackingError, configure_store, resolve_tracking_uri
from equiseg.training import load_model_from_checkpoint


def test_training_run_records_params_tags_metrics_and_artifacts(tracked_run: Any, tmp_path: Path) -> None:
    """``tracked_run``: conftest's shared ``equiseg_tiny`` run logged to a fresh SQLite store."""
    result, tracker, run_id = tracked_run.result, tracked_run.tracker, tracked_run.run_id
    assert result.mlflow_run_id == run_id and result.model_uri

    client = MlflowClient(tracker.uri)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.name == "test-exp"
    assert experiment.artifact_location == Path(tracked_run.cfg.tracking.artifact_location).as_uri()
    params = run.data.params
    assert params["train.lr"] == "0.002" and params["model.name"] == "equiseg_tiny"
    assert params["data.modalities"] == "rgb,depth,thermal"
    tags = run.data.tags
    assert tags["equiseg.dataset_version"] == "md5-abc.dir" and tags["equiseg.pipeline_run_id"] == "pr-7"
    assert tags["equiseg.git_commit"] == "0123abc" and len(tags["equiseg.config_hash"]) == 12
    assert tags["equiseg.model_uri"] == result.model_uri
    losses = client.get_metric_history(run_id, "train_loss")
    assert [m.step for m in losses] == [1, 2, 3]  # per epoch
    assert [m.value for m in losses] == pytest.approx([h["train_loss"] for h in result.history])
    assert len(client.get_metric_history(run_id, "train_step_loss")) >= 1  # per step
    metrics = run.data.metrics
    assert metrics["objective"] == pytest.approx(result.metrics["objective"])
    assert {"clean_miou", "emm_avg", "best_objective", "val_miou"} <= set(metrics)
    assert any(key.startswith("system/") for key in metrics), "system metrics were not logged"
    artifacts = {a.path for a in client.list_artifacts(run_id)} | {
        a.path for a in client.list_artifacts(run_id, "figures")
    }
    assert {"config.yaml", "figures/curves.png", "figures/predictions.png"} <= artifacts
    config_text = Path(client.download_artifacts(run_id, "config.yaml", str(tmp_path))).read_text()
    assert "equiseg_tiny" in config_text


def test_logged_model_loads_back_and_predicts_on_every_modality_subset(tracked_run: Any) -> None:
    result, tracker = tracked_run.result, tracked_run.tracker
    module = tracker.load_model(result.model_uri)
    reference, _ = load_model_from_checkpoint(result.best_checkpoint)
    generator = torch.Generator().manual_seed(0)
    batch = {
        "rgb": torch.randn(2, 3, 32, 32, generator=generator),
        "depth": torch.rand(2, 1, 32, 32, generator=generator),
        "thermal": torch.rand(2, 1, 32, 32, generator=generator),
    }
    with torch.no_grad():
        torch.testing.assert_close(module(batch).logits, reference(batch).logits)
    configure_store(tracker.uri)
    pyfunc = mlflow.pyfunc.load_model(result.model_uri)
    assert pyfunc.metadata.get_input_schema().input_names() == ["rgb", "depth", "thermal"]
    arrays = {name: tensor.numpy() for name, tensor in batch.items()}
    for size in (1, 2, 3):
        for subset in itertools.combinations(("rgb", "depth", "thermal"), size):
            logits = pyfunc.predict(arrays, params={"modalities": ",".join(subset)})
            assert isinstance(logits, np.ndarray) and logits.shape == (2, 4, 32, 32)
            with torch.no_grad():
                expected = reference({m: batch[m] for m in subset}).logits.numpy()
            np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-5)


def test_relative_sqlite_uri_resolves_against_working_directory(tmp_path: Path) -> None:
    assert resolve_tracking_uri("sqlite:///runs/m.db", cwd=tmp_path) == f"sqlite:///{tmp_path}/runs/m.db"
    assert (tmp_path / "runs").is_dir()
    absolute = f"sqlite:///{tmp_path}/abs/x.db"
    assert resolve_tracking_uri(absolute) == absolute
    assert resolve_tracking_uri("http://mlflow:5000") == "http://mlflow:5000"


def test_unreachable_server_fails_after_bounded_retries_with_a_clear_error() -> None:
    tracker = Tracker(TrackingConfig(uri="http://127.0.0.1:9", retries=2, backoff_s=0.05, log_system_metrics=False))
    started = time.monotonic()
    with (
        pytest.raises(TrackingError, match=r"http://127.0.0.1:9 .*after 3 attempt") as info,
        tracker.start_run(run_name="never"),
    ):
        pass
    assert "tracking.uri" in str(info.value)
    assert time.monotonic() - started < 60


class _Echo(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
        return model_input


def test_load_model_rejects_foreign_models_and_log_model_needs_a_run(tmp_path: Path) -> None:
    tracker = Tracker(TrackingConfig(uri=f"sqlite:///{tmp_path}/m.db", artifact_location=str(tmp_path / "a"),
                                     log_system_metrics=False))  # fmt: skip
    with pytest.raises(TrackingError, match="active run"):
        tracker.log_model(tmp_path / "whatever.pt")
    with tracker.start_run(run_name="foreign"):
        info = mlflow.pyfunc.log_model(name="m", python_model=_Echo(), pip_requirements=["numpy"])
    with pytest.raises(TypeError, match="not an equiseg model"):
        tracker.load_model(info.model_uri)
