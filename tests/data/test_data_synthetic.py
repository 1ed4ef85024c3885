"""The synthetic world: determinism, splits, conditions and the complementary-modality class design."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from equiseg.config import DataConfig
from equiseg.data import CLASS_NAMES, CLASS_TABLE, generate_synthetic, read_manifest
from equiseg.data.synthetic import render_sample


def _tree_digest(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in root.rglob("*")
        if p.is_file()
    }


def test_same_seed_gives_byte_identical_files(tmp_path: Path) -> None:
    kwargs = dict(samples=5, size=32, modalities=("rgb", "depth", "thermal", "lidar", "event", "hha"), seed=3)
    generate_synthetic(tmp_path / "a", progress=False, **kwargs)  # type: ignore[arg-type]
    generate_synthetic(tmp_path / "b", progress=False, **kwargs)  # type: ignore[arg-type]
    generate_synthetic(tmp_path / "c", progress=False, **{**kwargs, "seed": 4})  # type: ignore[arg-type]
    a, b, c = (_tree_digest(tmp_path / n) for n in "abc")
    assert a == b
    assert len(a) == 5 * 7 + 1  # six modalities + label per sample, plus the manifest
    assert a["rgb/syn000000.png"] != c["rgb/syn000000.png"]


def test_regenerating_into_the_same_folder_removes_stale_samples(tmp_path: Path) -> None:
    generate_synthetic(tmp_path, samples=6, size=16, modalities=("rgb",), seed=0, progress=False)
    generate_synthetic(tmp_path, samples=3, size=16, modalities=("rgb",), seed=0, progress=False, overwrite=True)
    assert sorted(p.name for p in (tmp_path / "rgb").iterdir()) == [f"syn00000{i}.png" for i in range(3)]


def test_manifest_describes_the_files(synthetic_source: Path) -> None:
    table = read_manifest(synthetic_source / "manifest.parquet")
    assert table.num_rows == 12
    rows = table.to_pylist()
    assert {r["split"] for r in rows} == {"train", "val"}
    assert sum(r["split"] == "val" for r in rows) == 3  # 25 % of 12
    for row in rows[:3]:
        depth = np.asarray(Image.open(synthetic_source / row["depth_path"]))
        assert depth.dtype == np.uint16 and row["depth_dtype"] == "uint16"
        assert 4000 < depth.mean() < 20000  # millimetres: the camera is ~12-15.6 m above the ground
        assert row["rgb_channels"] == 3 and row["thermal_channels"] == 1
        assert row["height"] == row["width"] == 32
        assert len(row["conditions"]) == 2
    meta = pq.read_schema(synthetic_source / "manifest.parquet").metadata
    assert meta[b"equiseg.schema_version"] == b"1"


def test_class_table_matches_default_config() -> None:
    assert len(CLASS_TABLE) == DataConfig().num_classes == len(CLASS_NAMES)
    assert [c.id for c in CLASS_TABLE] == list(range(len(CLASS_TABLE)))
    only = {c.name: c.reveals for c in CLASS_TABLE if len(c.reveals) == 1}
    assert only == {"lane_marking": ("rgb",), "plinth": ("depth",), "heated_plate": ("thermal",)}
    rgb_visible = sum("rgb" in c.reveals for c in CLASS_TABLE)
    assert rgb_visible > max(sum(m in c.reveals for c in CLASS_TABLE) for m in ("depth", "thermal"))


def _class_stats(seed_count: int = 40, size: int = 96, **dial: object) -> dict[int, dict[str, list[float]]]:
    """Per class: mean RGB, depth and thermal of its pixels vs the ground pixels of the same scene."""
    stats: dict[int, dict[str, list[float]]] = {c: {"rgb": [], "depth": [], "thermal": []} for c in range(1, 8)}
    for seed in range(seed_count):
        rng = np.random.default_rng([99, seed])
        arrays, label = render_sample(rng, size, ("rgb", "depth", "thermal"), **dial)  # type: ignore[arg-type]
        ground = label == 0
        # Compare with ground pixels in the same rows, because depth varies with the row (tilted view).
        for cls in np.unique(label).tolist():
            if cls == 0:
                continue
            mask = label == cls
            interior = mask & np.roll(mask, 2, 0) & np.roll(mask, -2, 0) & np.roll(mask, 2, 1) & np.roll(mask, -2, 1)
            rows = np.flatnonzero(interior.any(axis=1))
            if rows.size == 0 or not ground[rows].any():
                continue
            ref = ground[rows]
            obj = interior[rows]
            stats[cls]["rgb"].append(float(arrays["rgb"][rows][obj].mean() - arrays["rgb"][rows][ref].mean()))
            depth = arrays["depth"].astype(float)[rows]
            stats[cls]["depth"].append(float(depth[obj].mean() - depth[ref].mean()))
            thermal = arrays["thermal"].astype(float)[rows]
            stats[cls]["thermal"].append(float(thermal[obj].mean() - thermal[ref].mean()))
    return stats


def test_single_modality_classes_are_invisible_to_the_other_sensors() -> None:
    stats = _class_stats()
    med = {c: {m: float(np.median(v)) for m, v in s.items() if v} for c, s in stats.items()}
    # plinth (2): raised (depth at least 300 mm closer), same colour and temperature as the ground
    assert med[2]["depth"] < -300 and abs(med[2]["rgb"]) < 6 and abs(med[2]["thermal"]) < 2
    # heated plate (3): warm, flush, ground-coloured
    assert med[3]["thermal"] > 30 and abs(med[3]["depth"]) < 30 and abs(med[3]["rgb"]) < 6
    # lane marking (1): bright paint, flush, ambient
    assert med[1]["rgb"] > 60 and abs(med[1]["depth"]) < 30 and abs(med[1]["thermal"]) < 2
    # vehicle (4) shows in all three
    assert med[4]["depth"] < -500 and med[4]["thermal"] > 20 and abs(med[4]["rgb"]) > 10


def test_night_scenes_are_dark_in_rgb_only() -> None:
    day, _ = render_sample(np.random.default_rng(5), 64, ("rgb", "thermal"), night=False)
    night, _ = render_sample(np.random.default_rng(5), 64, ("rgb", "thermal"), night=True)
    assert night["rgb"].mean() < 0.35 * day["rgb"].mean()
    assert night["thermal"].std() > 1.0


def test_conditions_off_tags_every_scene_day_clear(tmp_path: Path) -> None:
    manifest = generate_synthetic(
        tmp_path, samples=8, size=16, modalities=("rgb",), seed=1, conditions=False, progress=False
    )
    assert {tuple(t) for t in read_manifest(manifest).column("conditions").to_pylist()} == {("day", "clear")}
    manifest = generate_synthetic(
        tmp_path, samples=40, size=16, modalities=("rgb",), seed=1, progress=False, overwrite=True
    )
    tags = [t for tags in read_manifest(manifest).column("conditions").to_pylist() for t in tags]
    assert "night" in tags and "fog" in tags


def test_num_classes_limits_the_labels(tmp_path: Path) -> None:
    manifest = generate_synthetic(
        tmp_path, samples=6, size=32, modalities=("rgb",), seed=0, num_classes=3, progress=False
    )
    ids = set()
    for rel in read_manifest(manifest).column("label_path").to_pylist():
        ids |= set(np.unique(np.asarray(Image.open(tmp_path / rel))).tolist())
    assert ids <= {0, 1, 2} and len(ids) > 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"modalities": ("rgb", "radar")}, "radar"),
        ({"samples": 0}, "samples"),
        ({"size": 8}, "size"),
        ({"num_classes": 9}, "num_classes"),
        ({"val_fraction": 0.8, "test_fraction": 0.3}, "sum below 1"),
        ({"dominant": "lidar", "dominance": 0.5}, "dominant modality"),
        ({"dominant": "rgb", "dominance": 1.5}, "dominance"),
    ],
)
def test_bad_generator_arguments_say_what_to_fix(tmp_path: Path, kwargs: dict, message: str) -> None:
    args = {"samples": 2, "size": 16, "modalities": ("rgb",), "seed": 0, **kwargs}
    with pytest.raises(ValueError, match=message):
        generate_synthetic(tmp_path, progress=False, **args)


def test_dominance_dial_leaves_the_dominant_modality_alone_with_its_classes() -> None:
    """At dominance 1 towards RGB, RGB's classes vanish from depth and thermal; depth-only and thermal-only classes
    stay; dominance 0 is the balanced world byte for byte."""
    stats = _class_stats(seed_count=30, size=64, dominant="rgb", dominance=1.0)
    med = {c: {m: float(np.median(v)) for m, v in s.items() if v} for c, s in stats.items()}
    assert abs(med[4]["depth"]) < 30 and abs(med[4]["thermal"]) < 2 and abs(med[4]["rgb"]) > 10  # vehicle: RGB only
    assert abs(med[5]["thermal"]) < 2 and abs(med[5]["depth"]) < 30  # tree
    assert med[2]["depth"] < -300 and med[3]["thermal"] > 30  # plinth and heated plate keep their sensor
    balanced = render_sample(np.random.default_rng(3), 32, ("rgb", "depth", "thermal"))
    zero = render_sample(np.random.default_rng(3), 32, ("rgb", "depth", "thermal"), dominant="depth", dominance=0.0)
    assert all(np.array_equal(balanced[0][m], zero[0][m]) for m in balanced[0])
    half = _class_stats(seed_count=30, size=64, dominant="thermal", dominance=0.5)
    full = _class_stats(seed_count=30, size=64)
    vehicle_rgb = (float(np.median(np.abs(half[4]["rgb"]))), float(np.median(np.abs(full[4]["rgb"]))))
    assert vehicle_rgb[0] < 0.75 * vehicle_rgb[1]  # thermal dominance halves the vehicle's colour contrast


def test_conditions_can_be_confined_to_the_test_split(tmp_path: Path) -> None:
    manifest = generate_synthetic(
        tmp_path, samples=60, size=16, modalities=("rgb",), seed=2, test_fraction=0.4, conditions_split="test",
        progress=False,
    )  # fmt: skip
    table = read_manifest(manifest)
    by_split: dict[str, set[str]] = {}
    for split, tags in zip(table.column("split").to_pylist(), table.column("conditions").to_pylist(), strict=True):
        by_split.setdefault(split, set()).update(tags)
    assert by_split["train"] == by_split["val"] == {"day", "clear"}
    assert {"night", "fog"} <= by_split["test"]
    with pytest.raises(ValueError, match="test_fraction"):
        generate_synthetic(
            tmp_path / "x", samples=4, size=16, modalities=("rgb",), seed=0, conditions_split="test", progress=False
        )


def test_normalisation_statistics_standardise_the_world() -> None:
    """equiseg.modalities' statistics make every dense sensor of the world about mean 0, std 1 once normalised, so
    a noise sigma means the same for each (docs/data.md, "Normalisation")."""
    import torch

    from equiseg.data.synthetic import DEPTH_MAX_MM
    from equiseg.modalities import from_unit

    values: dict[str, list[np.ndarray]] = {"rgb": [], "depth": [], "thermal": []}
    for index in range(40):
        arrays, _ = render_sample(np.random.default_rng([0, index]), 48, tuple(values))
        for name, array in arrays.items():
            unit = array.astype(np.float32) / (DEPTH_MAX_MM if array.dtype == np.uint16 else 255.0)
            values[name].append(unit.reshape(48, 48, -1).transpose(2, 0, 1))
    for name, chunks in values.items():
        normalised = from_unit(torch.from_numpy(np.stack(chunks)), name)
        assert abs(float(normalised.mean())) < 0.35, name
        assert 0.5 < float(normalised.std()) < 1.5, name  # RGB keeps ImageNet's std: 0.57 on day scenes


def _mtimes(root: Path) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}


def test_the_pipeline_keeps_data_it_would_regenerate_byte_for_byte(tmp_path: Path) -> None:
    """A second run with the same data config only reads the data root (a running run is never disturbed); a changed
    config, a tampered file or a missing one is regenerated."""
    from equiseg.data import generate_from_config

    data = DataConfig(samples=12, image_size=32, modalities=["rgb", "depth"], seed=3)
    manifest = generate_from_config(data, tmp_path)
    before = _mtimes(tmp_path)
    assert generate_from_config(data, tmp_path) == manifest
    assert _mtimes(tmp_path) == before  # nothing rewritten

    tampered = next((tmp_path / "depth").iterdir())
    tampered.write_bytes(b"not the generator's bytes")
    generate_from_config(data, tmp_path)
    assert hashlib.sha256(tampered.read_bytes()).hexdigest() != hashlib.sha256(b"not the generator's bytes").hexdigest()

    kept = _mtimes(tmp_path)
    other = DataConfig(samples=12, image_size=32, modalities=["rgb", "depth"], seed=4)
    generate_from_config(other, tmp_path)
    assert _mtimes(tmp_path) != kept
    assert read_manifest(tmp_path / "manifest.parquet").num_rows == 12
