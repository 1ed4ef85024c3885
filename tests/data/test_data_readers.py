"""Readers for real dataset layouts, each on a tiny tree written here in the real layout, plus the real frames."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from equiseg.cli import cli
from equiseg.data import MultimodalDataset, ingest_dataset, manifest_info, read_manifest, validate_dataset
from equiseg.modalities import to_unit

RNG = np.random.default_rng(0)


def _img(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def _rgb(h: int = 12, w: int = 16, channels: int = 3) -> np.ndarray:
    return RNG.integers(0, 255, (h, w, channels), dtype=np.uint8)


def _gray(h: int = 12, w: int = 16, high: int = 255, dtype: type = np.uint8) -> np.ndarray:
    return RNG.integers(1, high, (h, w)).astype(dtype)


def _label(values: list[int], h: int = 12, w: int = 16) -> np.ndarray:
    label = np.zeros((h, w), np.uint8)
    for i, v in enumerate(values):
        label[i % h, :] = v
    return label


def _dataset(manifest: Path, root: Path, modalities: tuple[str, ...]) -> MultimodalDataset:
    return MultimodalDataset(manifest, root, modalities=modalities, split=None)


def _validates(manifest: Path, root: Path, tmp_path: Path, num_classes: int) -> None:
    result = validate_dataset(manifest, root, tmp_path / "report", num_classes=num_classes, workers=1, progress=False)
    assert result.passed and result.rows_quarantined == 0, result.summary


def test_mfnet_original_four_channel_layout(tmp_path: Path) -> None:
    root = tmp_path / "MFNet"
    for name in ("00001D", "00002N", "00003D"):
        _img(root / "images" / f"{name}.png", _rgb(channels=4))
        _img(root / "labels" / f"{name}.png", _label([0, 3, 8]))
    (root / "train.txt").write_text("00001D\n00002N\n")
    (root / "test.txt").write_text("00003D\n")
    manifest = ingest_dataset("mfnet", root, tmp_path / "out", progress=False)
    rows = read_manifest(manifest).to_pylist()
    assert [r["split"] for r in rows] == ["train", "train", "test"]
    assert rows[0]["rgb_path"] == rows[0]["thermal_path"] == "images/00001D.png"
    assert (rows[0]["rgb_bands"], rows[0]["thermal_bands"]) == ("0:3", "3:4")
    assert len(rows[0]["rgb_sha256"]) == 64 and rows[0]["rgb_sha256"] == rows[0]["thermal_sha256"]
    assert rows[0]["label_sha256"] != rows[0]["rgb_sha256"] and len(rows[0]["label_sha256"]) == 64
    assert [r["conditions"] for r in rows] == [["day"], ["night"], ["day"]]
    sample = _dataset(manifest, root, ("rgb", "thermal"))[1]
    raw = np.asarray(Image.open(root / "images" / "00002N.png"))
    thermal = to_unit(sample["inputs"]["thermal"], "thermal")[0]
    assert torch.allclose(thermal, torch.from_numpy(raw[:, :, 3] / 255.0).float(), atol=1e-6)
    assert sorted(sample["label"].unique().tolist()) == [0, 3, 8]
    assert manifest_info(read_manifest(manifest)).num_classes == 9
    _validates(manifest, root, tmp_path, 9)


def test_mfnet_cmx_layout(tmp_path: Path) -> None:
    root = tmp_path / "MFNet_cmx"
    for name in ("a01D", "a02N"):
        _img(root / "rgb" / f"{name}.png", _rgb())
        _img(root / "ther" / f"{name}.png", _gray())
        _img(root / "labels" / f"{name}.png", _label([1, 2]))
    (root / "train.txt").write_text("a01D\n")
    (root / "test.txt").write_text("a02N.png\n")
    manifest = ingest_dataset("mfnet_cmx", root, tmp_path / "out", progress=False)
    rows = read_manifest(manifest).to_pylist()
    assert [(r["sample_id"], r["split"]) for r in rows] == [("a01D", "train"), ("a02N", "test")]
    assert rows[0]["thermal_path"] == "ther/a01D.png" and rows[0]["thermal_channels"] == 1
    _validates(manifest, root, tmp_path, 9)


def test_pst900_layout_with_depth(tmp_path: Path) -> None:
    root = tmp_path / "PST900_RGBT_Dataset"
    for split in ("train", "test"):
        for i in range(2):
            name = f"31_bag1a_rect_rgb_frame{i:010d}"
            _img(root / split / "rgb" / f"{name}.png", _rgb())
            _img(root / split / "thermal" / f"{name}.png", np.repeat(_gray()[:, :, None], 3, axis=2))
            _img(root / split / "depth" / f"{name}.png", _gray(high=60000, dtype=np.uint16))
            _img(root / split / "labels" / f"{name}.png", _label([0, 1, 4]))
    manifest = ingest_dataset("pst900", root, tmp_path / "out", progress=False)
    rows = read_manifest(manifest).to_pylist()
    assert len(rows) == 4 and {r["split"] for r in rows} == {"train", "test"}
    assert rows[0]["depth_dtype"] == "uint16" and rows[0]["thermal_bands"] == "0:1"
    sample = _dataset(manifest, root, ("rgb", "thermal", "depth"))[0]
    assert sample["inputs"]["thermal"].shape == (1, 12, 16) and sample["inputs"]["depth"].shape == (1, 12, 16)
    assert sorted(sample["label"].unique().tolist()) == [0, 1, 4]
    _validates(manifest, root, tmp_path, 5)


@pytest.mark.parametrize(("layout", "folder", "modality"), [("cmx", "HHA", "hha"), ("dformer", "Depth", "depth")])
def test_nyuv2_layouts_shift_labels(layout: str, folder: str, modality: str, tmp_path: Path) -> None:
    root = tmp_path / f"NYU_{layout}"
    for i in (1, 2, 3):
        _img(root / "RGB" / f"{i}.jpg", _rgb())
        _img(root / folder / f"{i}.{'jpg' if folder == 'HHA' else 'png'}", _rgb() if folder == "HHA" else _gray())
        _img(root / "Label" / f"{i}.png", _label([0, 1, 40]))
    (root / "train.txt").write_text(
        "RGB/1.jpg Label/1.png\nRGB/2.jpg Label/2.png\n" if layout == "dformer" else "1\n2\n"
    )
    (root / "test.txt").write_text("3\n")
    manifest = ingest_dataset("nyuv2", root, tmp_path / "out", progress=False)
    rows = read_manifest(manifest).to_pylist()
    assert [r["split"] for r in rows] == ["train", "train", "test"]
    assert rows[0]["label_encoding"] == "shift1"
    sample = _dataset(manifest, root, ("rgb", modality))[0]
    assert sorted(sample["label"].unique().tolist()) == [0, 39, 255]  # 0 -> ignore, 1 -> 0, 40 -> 39
    _validates(manifest, root, tmp_path, 40)


def test_deliver_layout_conditions_cases_and_labels(tmp_path: Path) -> None:
    root = tmp_path / "DELIVER"
    frames = [("night", "val", "MAP_1_point102", "045050"), ("sun", "train", "MAP_2", "000001_overexposure")]
    for cond, split, seq, frame in frames:
        for folder, kind in (
            ("img", "rgb"),
            ("hha", "depth"),
            ("depth", "depth"),
            ("event", "event"),
            ("lidar", "lidar"),
        ):
            array = _rgb() if folder in ("img", "hha") else _gray()
            _img(root / folder / cond / split / seq / f"{frame}_{kind}_front.png", array)
        label = _label([0, 1, 25, 255])
        _img(root / "semantic" / cond / split / seq / f"{frame}_semantic_front.png", np.stack([label] * 3, axis=2))
    manifest = ingest_dataset("deliver", root, tmp_path / "out", progress=False)
    rows = {r["sample_id"]: r for r in read_manifest(manifest).to_pylist()}
    night = rows["night/val/MAP_1_point102/045050"]
    assert night["split"] == "val" and night["conditions"] == ["night"]
    assert night["hha_path"] == "hha/night/val/MAP_1_point102/045050_depth_front.png"
    assert rows["sun/train/MAP_2/000001_overexposure"]["conditions"] == ["sun", "overexposure"]
    sample = _dataset(manifest, root, ("rgb", "hha", "event", "lidar"))[0]
    assert sorted(sample["label"].unique().tolist()) == [0, 24, 255]  # raw 0 and 255 -> ignore, 1..25 -> 0..24
    _validates(manifest, root, tmp_path, 25)


def test_muses_layout_keeps_255_as_ignore(tmp_path: Path) -> None:
    root = tmp_path / "muses"
    for split, weather, time in (("train", "fog", "day"), ("val", "snow", "night")):
        stem = f"REC0001_frame_{weather}"
        _img(root / "frame_camera" / split / weather / time / f"{stem}_frame_camera.png", _rgb())
        (root / "lidar" / split / weather / time).mkdir(parents=True)
        np.savez(root / "lidar" / split / weather / time / f"{stem}_lidar.npz", RNG.random((12, 16), np.float32))
        _img(root / "event_camera" / split / weather / time / f"{stem}_event_camera.png", _gray())
        _img(root / "gt_semantic" / split / weather / time / f"{stem}_gt_labelTrainIds.png", _label([0, 18, 255]))
    manifest = ingest_dataset("muses", root, tmp_path / "out", progress=False)
    rows = read_manifest(manifest).to_pylist()
    assert [(r["split"], r["conditions"]) for r in rows] == [("train", ["fog", "day"]), ("val", ["snow", "night"])]
    assert rows[0]["lidar_dtype"] == "float32"
    sample = _dataset(manifest, root, ("rgb", "event", "lidar"))[0]
    assert sorted(sample["label"].unique().tolist()) == [0, 18, 255]  # 255 is NOT mapped to class 0
    _validates(manifest, root, tmp_path, 19)


def test_unknown_format_and_missing_layout(tmp_path: Path) -> None:
    with pytest.raises(KeyError, match="valid formats: deliver, mfnet"):
        ingest_dataset("cityscapes", tmp_path, tmp_path / "out", progress=False)
    with pytest.raises(FileNotFoundError, match="split list"):
        ingest_dataset("mfnet", tmp_path, tmp_path / "out", progress=False)
    result = CliRunner().invoke(cli, ["data", "ingest", "--format", "pst900", "--root", str(tmp_path), "--out", "x"])
    assert result.exit_code == 1 and "no train/rgb" in result.output


# --------------------------------------------------------------------------------------------------------------------
# Real frames in ../shared/realdata
# --------------------------------------------------------------------------------------------------------------------


def test_pst900_real_frame(realdata_dir: Path, tmp_path: Path) -> None:
    src = realdata_dir / "pst900"
    root = tmp_path / "PST900"
    name = "real_frame"
    for folder, file in (
        ("rgb", "utils_rgb_loader.png"),
        ("thermal", "utils_thermal_loader.png"),
        ("labels", "utils_label_ids.png"),
    ):
        (root / "test" / folder).mkdir(parents=True)
        shutil.copy(src / file, root / "test" / folder / f"{name}.png")
    manifest = ingest_dataset("pst900", root, tmp_path / "out", progress=False)
    row = read_manifest(manifest).to_pylist()[0]
    assert (row["height"], row["width"]) == (720, 1280)
    assert row["thermal_bands"] == "0:1"  # AGC thermal stored as 3 identical channels
    sample = _dataset(manifest, root, ("rgb", "thermal"))[0]
    counts = torch.bincount(sample["label"].flatten(), minlength=5).tolist()
    assert counts == [896434, 5172, 14806, 5188, 0]  # pixel counts from the sample's README
    thermal = to_unit(sample["inputs"]["thermal"], "thermal")
    assert float((thermal.abs() < 1e-6).float().sum()) == 22214  # parallax holes
    _validates(manifest, root, tmp_path, 5)


def test_mfnet_real_four_channel_frames(realdata_dir: Path, tmp_path: Path) -> None:
    root = tmp_path / "MFNet"
    (root / "images").mkdir(parents=True)
    for name in ("01234N", "01477D"):
        shutil.copy(realdata_dir / "mfnet" / f"{name}.png", root / "images" / f"{name}.png")
    (root / "test.txt").write_text("01234N\n01477D\n")
    manifest = ingest_dataset("mfnet", root, tmp_path / "out", progress=False)
    rows = read_manifest(manifest).to_pylist()
    assert [r["conditions"] for r in rows] == [["night"], ["day"]]
    assert all((r["height"], r["width"]) == (480, 640) and r["label_path"] is None for r in rows)
    sample = _dataset(manifest, root, ("rgb", "thermal"))[0]
    raw = np.asarray(Image.open(root / "images" / "01234N.png"))
    assert raw.shape == (480, 640, 4)
    thermal = to_unit(sample["inputs"]["thermal"], "thermal")[0]
    assert torch.allclose(thermal, torch.from_numpy(raw[:, :, 3] / 255.0).float(), atol=1e-6)
    assert float(thermal.std()) > 0.01  # the thermal channel carries an image, not an alpha plane
    assert bool((sample["label"] == 255).all())  # unlabelled frames: every pixel ignored
    _validates(manifest, root, tmp_path, 9)
