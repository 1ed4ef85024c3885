"""`equiseg evaluate` end to end: synthetic data, a real equiseg_tiny checkpoint, the report on disk."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from equiseg.cli.main import cli


@pytest.fixture(scope="module")
def checkpoint_and_manifest(
    tmp_path_factory: pytest.TempPathFactory, make_synthetic: Callable[..., Path]
) -> tuple[Path, Path]:
    from equiseg.models import create_model
    from equiseg.training import save_checkpoint

    root = tmp_path_factory.mktemp("evaluate")
    manifest = make_synthetic(root / "data", samples=6, modalities=("rgb", "depth"), num_classes=None, val_fraction=0.5)
    model = create_model("equiseg_tiny", num_classes=8, modalities=("rgb", "depth"))
    return save_checkpoint(root / "best.pt", model=model), manifest


def test_evaluate_writes_report_for_a_checkpoint(tmp_path: Path, checkpoint_and_manifest: tuple[Path, Path]) -> None:
    checkpoint, manifest = checkpoint_and_manifest
    report = tmp_path / "report"
    args = ["evaluate", "--model", str(checkpoint), "--manifest", str(manifest), "--report", str(report)]
    args += [
        "--no-progress",
        "--device",
        "cpu",
        "--set",
        "robustness.bootstrap_samples=20",
        "--set",
        "robustness.examples=2",
    ]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "clean_miou" in result.output and "emm_avg" in result.output
    raw = json.loads((report / "robustness.json").read_text())
    assert raw["meta"]["modalities"] == ["rgb", "depth"] and raw["meta"]["split"] == "val"
    assert raw["meta"]["num_samples"] == len(raw["slices"][0]["sample_ids"]) == 3
    assert {"emm/rgb", "emm/depth", "nm/mid"} <= {s["name"] for s in raw["slices"]}
    assert 0.0 <= raw["summary"]["clean_miou"] <= 100.0
    assert "| 1 lane_marking |" in (report / "robustness.md").read_text()  # synthetic class names label the table
    for name in ("robustness.md", "robustness.html", "heatmap.png", "emm_subsets.png", "examples.png", "config.yaml"):
        assert (report / name).is_file(), name


def test_evaluate_explains_a_bad_model_reference(tmp_path: Path, checkpoint_and_manifest: tuple[Path, Path]) -> None:
    _, manifest = checkpoint_and_manifest
    args = ["evaluate", "--model", str(tmp_path / "nope.pt"), "--manifest", str(manifest), "--report", str(tmp_path)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1
    assert "neither a checkpoint file nor an MLflow URI" in result.output


@pytest.mark.slow
def test_evaluate_a_registered_model_uri(tmp_path: Path, checkpoint_and_manifest: tuple[Path, Path]) -> None:
    """models:/name@alias goes through equiseg.tracking against a real MLflow registry on sqlite."""
    from mlflow import MlflowClient

    from equiseg.config import TrackingConfig
    from equiseg.tracking import Tracker

    checkpoint, manifest = checkpoint_and_manifest
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = Tracker(
        TrackingConfig(uri=uri, artifact_location=str(tmp_path / "artifacts"), log_system_metrics=False),
        experiment="robustness-test",
    )
    with tracker.start_run("logged"):
        tracker.log_model(checkpoint, registered_model_name="equiseg_robustness_test")
    MlflowClient(tracking_uri=uri).set_registered_model_alias("equiseg_robustness_test", "champion", "1")
    report = tmp_path / "report"
    args = ["evaluate", "--model", "models:/equiseg_robustness_test@champion", "--manifest", str(manifest)]
    args += ["--report", str(report), "--tracking-uri", uri, "--suite", "clean", "--no-progress", "--device", "cpu"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    raw = json.loads((report / "robustness.json").read_text())
    assert raw["meta"]["model"] == "models:/equiseg_robustness_test@champion"
    assert raw["meta"]["suite"] == "clean" and raw["slices"][0]["kind"] == "clean"
