"""`equiseg predict`: masks and overlays from raw images, any subset of modalities, a checkpoint or the champion."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from equiseg.cli.main import cli
from equiseg.data import MultimodalDataset
from equiseg.models import create_model
from equiseg.training import save_checkpoint

MODALITIES = ("rgb", "depth")


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory, make_synthetic: Callable[..., Path]) -> tuple[Path, Path, Path]:
    """(checkpoint, manifest, data folder): an equiseg_tiny (fuses subsets) on 4 synthetic rgb+depth samples."""
    root = tmp_path_factory.mktemp("predict")
    manifest = make_synthetic(root / "data", samples=4, modalities=MODALITIES, num_classes=4)
    torch.manual_seed(0)
    model = create_model("equiseg_tiny", num_classes=4, modalities=MODALITIES)
    return save_checkpoint(root / "best.pt", model=model), manifest, root / "data"


def _reference(checkpoint: Path, manifest: Path, modalities: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Masks from the model fed exactly what training feeds it (MultimodalDataset's normalisation)."""
    from equiseg.tracking import load_model

    model = load_model(checkpoint)
    dataset = MultimodalDataset(manifest, manifest.parent, modalities=modalities, split=None)
    out = {}
    for sample in dataset:
        with torch.inference_mode():
            logits = model({m: x[None] for m, x in sample["inputs"].items()}).logits
        out[sample["sample_id"]] = logits[0].argmax(0).numpy()
    return out


def test_predict_from_a_manifest_writes_masks_overlays_and_json(setup: tuple[Path, Path, Path], tmp_path: Path) -> None:
    checkpoint, manifest, _ = setup
    args = ["predict", "--model", str(checkpoint), "--input", str(manifest), "--out", str(tmp_path), "--json"]
    result = CliRunner().invoke(cli, [*args, "--no-progress", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["count"] == 4 and summary["modalities"] == list(MODALITIES) and summary["missing"] == []
    reference = _reference(checkpoint, manifest, MODALITIES)
    for sample in summary["samples"]:
        mask = np.asarray(Image.open(sample["mask"]))
        assert mask.shape == (32, 32) and mask.max() < 4
        np.testing.assert_array_equal(mask, reference[sample["sample_id"]])  # normalised as in training
        overlay = np.asarray(Image.open(sample["overlay"]))
        assert overlay.shape == (32, 32, 3)
        assert abs(sum(sample["class_fractions"].values()) - 1.0) < 1e-3
    assert json.loads((tmp_path / "predictions.json").read_text())["count"] == 4


def test_predict_a_subset_of_modalities_from_a_folder_of_images(setup: tuple[Path, Path, Path], tmp_path: Path) -> None:
    checkpoint, manifest, folder = setup
    args = ["predict", "--model", str(checkpoint), "--input", str(folder / "rgb"), "--out", str(tmp_path)]
    # a folder without <modality>/ sub-folders: one line saying what layout is expected
    bad = CliRunner().invoke(cli, [*args, "--no-progress"])
    assert bad.exit_code == 1 and "put e.g." in bad.output and "Traceback" not in bad.output
    folder_args = ["predict", "--model", str(checkpoint), "--input", str(folder), "--out", str(tmp_path), "-m", "rgb"]
    result = CliRunner().invoke(cli, [*folder_args, "--no-progress", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["modalities"] == ["rgb"] and summary["missing"] == ["depth"] and summary["count"] == 4
    reference = _reference(checkpoint, manifest, ("rgb",))
    for sample in summary["samples"]:
        assert sample["modalities"] == ["rgb"]
        np.testing.assert_array_equal(np.asarray(Image.open(sample["mask"])), reference[sample["sample_id"]])


def test_predict_rejects_a_modality_the_model_lacks(setup: tuple[Path, Path, Path], tmp_path: Path) -> None:
    checkpoint, manifest, _ = setup
    args = ["predict", "--model", str(checkpoint), "--input", str(manifest), "--out", str(tmp_path), "-m", "thermal"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1
    assert "the model takes a non-empty subset of ['rgb', 'depth']" in result.output


def test_predict_with_the_champion_alias(setup: tuple[Path, Path, Path], tmp_path: Path) -> None:
    """The headline use: models:/equiseg@champion from a tracking store, masks out."""
    from mlflow import MlflowClient

    from equiseg.config import TrackingConfig
    from equiseg.tracking import Tracker

    checkpoint, manifest, _ = setup
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = Tracker(TrackingConfig(uri=uri, artifact_location=str(tmp_path / "artifacts"), log_system_metrics=False))
    with tracker.start_run("predict-test"):
        tracker.log_model(checkpoint, registered_model_name="equiseg")
    MlflowClient(uri, registry_uri=uri).set_registered_model_alias("equiseg", "champion", "1")
    args = ["predict", "--input", str(manifest), "--out", str(tmp_path / "out"), "--tracking-uri", uri, "--json"]
    result = CliRunner().invoke(cli, [*args, "--no-progress"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["model"] == "models:/equiseg@champion" and summary["count"] == 4
    reference = _reference(checkpoint, manifest, MODALITIES)
    for sample in summary["samples"]:
        np.testing.assert_array_equal(np.asarray(Image.open(sample["mask"])), reference[sample["sample_id"]])
