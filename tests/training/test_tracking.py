"""MLflow tracking: run contents of a training run, the logged model, URI handling and outage behaviour."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient

import equiseg
from equiseg.config import TrackingConfig
from equiseg.modalities import from_unit
from equiseg.tracking import Tracker, TrackingError, configure_store, resolve_tracking_uri
from equiseg.tracking.models import UnsafeModelError, normalize_inputs, predict_masks
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
    assert pyfunc.metadata.metadata["equiseg_version"] == equiseg.__version__
    raw = {  # native-range inputs, as a client sends them: 8-bit images, 16-bit depth
        "rgb": np.random.default_rng(0).integers(0, 256, (2, 3, 32, 32)).astype(np.uint8),
        "depth": np.random.default_rng(1).integers(0, 65536, (2, 1, 32, 32)).astype(np.uint16),
        "thermal": np.random.default_rng(2).integers(0, 256, (2, 1, 32, 32)).astype(np.uint8),
    }
    normalised = normalize_inputs(raw)
    unit = torch.as_tensor(raw["depth"] / 65535.0, dtype=torch.float32)
    torch.testing.assert_close(normalised["depth"], from_unit(unit, "depth"))  # standardised (docs/data.md)
    as_sent = {name: array.astype(np.float32) for name, array in raw.items()}  # MLflow carries float32
    for size in (1, 2, 3):
        for subset in itertools.combinations(("rgb", "depth", "thermal"), size):
            masks = pyfunc.predict(as_sent, params={"modalities": ",".join(subset), "ranges": "depth:65535"})
            assert isinstance(masks, np.ndarray) and masks.shape == (2, 32, 32) and masks.dtype == np.int64
            with torch.no_grad():
                expected = reference({m: normalised[m] for m in subset}).logits.argmax(1).numpy()
            np.testing.assert_array_equal(masks, expected)
            np.testing.assert_array_equal(predict_masks(module, {m: raw[m] for m in subset}), expected)


def test_logged_model_holds_no_pickled_code_and_ships_equiseg(tracked_run: Any, tmp_path: Path) -> None:
    configure_store(tracked_run.tracker.uri)
    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=tracked_run.result.model_uri, dst_path=str(tmp_path)))
    assert not list(local.rglob("*.pkl"))
    assert (local / "code" / "equiseg" / "tracking" / "models.py").is_file()
    requirements = (local / "requirements.txt").read_text()
    assert "torch==" in requirements and "mlflow==" in requirements
    assert "timm" not in requirements and "torchvision" not in requirements  # the MiT is our own (equiseg.models.mit)
    assert (local / "serving_input_example.json").is_file()


class _Payload:
    """Unpickling this writes a marker file: what an attacker's ``python_model.pkl`` would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (Path.write_text, (self.marker, "pwned"))


class _Trojan(mlflow.pyfunc.PythonModel):
    def __init__(self, marker: Path) -> None:
        self.payload = _Payload(marker)

    def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
        return model_input


def test_a_model_with_a_malicious_pickle_is_refused_and_nothing_runs(
    tracked_run: Any, tiny_data: tuple[Path, Path], tmp_path: Path
) -> None:
    tracker, marker = tracked_run.tracker, tmp_path / "marker.txt"
    with tracker.start_run(run_name="trojan"):
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=_Trojan(marker),
            artifacts={"checkpoint": str(tracked_run.result.best_checkpoint)},  # even with a genuine checkpoint
            pip_requirements=["numpy"],
        )
    assert not marker.exists()
    with pytest.raises(UnsafeModelError, match=r"pickle \(python_model.pkl\).*never unpickles"):
        tracker.load_model(info.model_uri)
    assert not marker.exists(), "loading the model ran the pickled payload"
    completed = subprocess.run(  # the CLI path: equiseg evaluate --model <uri>
        [sys.executable, "-c", "from equiseg.cli.main import main; main()", "evaluate", "--model", info.model_uri,
         "--manifest", str(tiny_data[0]), "--report", str(tmp_path / "report"), "--tracking-uri", tracker.uri],
        capture_output=True, text=True, check=False, env={**os.environ, "PYTHONPATH": str(Path.cwd())},
    )  # fmt: skip
    assert completed.returncode != 0 and "never unpickles" in completed.stderr + completed.stdout
    assert not marker.exists(), "equiseg evaluate ran the pickled payload"
    mlflow.pyfunc.load_model(info.model_uri)  # control: MLflow's own loader does run it
    assert marker.read_text() == "pwned"


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
