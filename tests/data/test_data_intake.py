"""Data intake on real-layout trees with damaged samples among good ones (docs/data.md, "Reason codes").

Each reader gets a tree built from the real frames in ../shared/realdata; one kind of damage per sample. Ingestion
must not raise, every damaged sample must be quarantined with the specific reason, every good sample kept, and
rows in = validated + quarantined, where "in" counts every sample found on disk.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from equiseg.cli import cli
from equiseg.data import MultimodalDataset, ingest, read_manifest, validate_dataset
from equiseg.data.readers import SPECS

sys.path.insert(0, str(Path(__file__).parent))
from _realtrees import BUILDERS, DAMAGE, Frames, label_palette

PST_PALETTE = SPECS["pst900"].label.palette
assert PST_PALETTE is not None

#: (format, target file of the sample, damage, argument, the reason code it must get). One sample each.
CASES: list[tuple[str, str, str, int, str]] = [
    ("pst900", "rgb", "truncate", 200, "truncated_file"),
    ("pst900", "thermal", "flip_byte", 100, "crc_mismatch"),
    ("pst900", "depth", "empty", 0, "empty_file"),
    ("pst900", "thermal", "delete", 0, "missing_modality"),
    ("pst900", "rgb", "delete", 0, "missing_modality"),
    ("pst900", "label", "delete", 0, "missing_label"),
    ("pst900", "rgb", "symlink_out", 1, "path_symlink_escape"),
    ("pst900", "rgb", "bomb", 0, "too_large"),
    ("pst900", "label", "add_alpha", 0, "label_mode_mismatch"),
    ("pst900", "label", "label_off_palette", 0, "label_not_in_palette"),
    ("pst900", "label", "colour_map", 0, "label_not_in_palette"),
    ("pst900", "depth", "to_8bit", 0, "bit_depth_mismatch"),
    ("pst900", "thermal", "colour_map", 3, "channels_not_replicated"),
    ("pst900", "rgb", "as_jpeg", 0, "format_mismatch"),
    ("mfnet", "rgb", "drop_alpha", 0, "mode_mismatch"),
    ("mfnet", "rgb", "not_an_image", 0, "not_an_image"),
    ("mfnet", "label", "to_16bit", 0, "bit_depth_mismatch"),
    ("mfnet", "label", "resize_pixel", 1, "label_size_mismatch"),
    ("mfnet", "rgb", "dangling_link", 0, "missing_modality"),
    ("mfnet_cmx", "thermal", "colour_map", 1, "channels_not_replicated"),
    ("mfnet_cmx", "thermal", "resize_pixel", 2, "size_mismatch"),
    ("mfnet_cmx", "rgb", "as_bmp", 0, "not_an_image"),
    ("mfnet_cmx", "label", "label_out_of_range", 2, "label_out_of_range"),
    ("nyuv2", "rgb", "to_gray", 0, "mode_mismatch"),
    ("nyuv2", "depth", "to_16bit", 0, "bit_depth_mismatch"),
    ("nyuv2", "label", "label_off_palette", 0, "label_mode_mismatch"),
    ("nyuv2", "depth", "to_folder", 0, "not_a_file"),
    ("deliver", "hha", "add_alpha", 0, "mode_mismatch"),
    ("deliver", "lidar", "as_tiff", 0, "format_mismatch"),
    ("deliver", "event", "truncate", 5000, "truncated_file"),
    ("deliver", "rgb", "delete", 0, "missing_modality"),
    ("deliver", "label", "empty", 0, "empty_file"),
    ("muses", "lidar", "npz_nan", 7, "nan_values"),
    ("muses", "lidar", "npz_float64", 0, "bit_depth_mismatch"),
    ("muses", "lidar", "truncate", 300, "archive_corrupt"),
    ("muses", "event", "symlink_out", 2, "path_symlink_escape"),
    ("muses", "label", "resize_pixel", 0, "label_size_mismatch"),
]


def test_the_cases_cover_thirty_kinds_over_five_readers() -> None:
    kinds = {(fmt.split("_")[0], target, damage) for fmt, target, damage, _a, _c in CASES}
    assert len(kinds) >= 30 and {fmt for fmt, *_ in CASES} >= {"mfnet", "pst900", "nyuv2", "deliver", "muses"}


@pytest.fixture(scope="module")
def frames(realdata_dir: Path) -> Frames:
    return Frames(realdata_dir)


@pytest.mark.parametrize("fmt", sorted(BUILDERS))
def test_damaged_samples_are_quarantined_with_their_reason(fmt: str, frames: Frames, tmp_path: Path) -> None:
    cases = [c for c in CASES if c[0] == fmt]
    tree = BUILDERS[fmt](tmp_path / fmt, frames, n=len(cases) + 3)  # type: ignore[call-arg]
    ids = list(tree.files)
    expected: dict[str, str] = {}
    for sample_id, (_fmt, target, damage, arg, code) in zip(ids, cases, strict=False):
        DAMAGE[damage](tree.root / tree.files[sample_id][target], arg, tree.root)
        expected[sample_id] = code
    result = ingest(fmt, tree.root, tmp_path / "manifest", progress=False)  # never raises on a sample's files
    assert result.samples_found == len(ids) and result.samples_marked <= len(expected)
    report = validate_dataset(
        result.manifest, None, tmp_path / "report", num_classes=tree.num_classes, workers=1, progress=False
    )
    assert report.rows_in == len(ids) == report.rows_validated + report.rows_quarantined
    quarantined = {r["sample_id"]: r["reason_codes"] for r in pq.read_table(report.quarantine_path).to_pylist()}
    for sample_id, code in expected.items():
        assert sample_id in quarantined, f"{fmt}: damaged {sample_id} ({code}) was not quarantined"
        assert code in quarantined[sample_id], f"{fmt} {sample_id}: {quarantined[sample_id]}, expected {code}"
        assert "decode_error" not in quarantined[sample_id]
    validated = set(pq.read_table(report.validated_path).column("sample_id").to_pylist())
    assert validated == set(ids) - set(expected)
    assert f"{len(validated)} validated, {len(quarantined)} quarantined of {len(ids)}" in report.summary


def test_palette_labels_are_converted_explicitly(frames: Frames, tmp_path: Path) -> None:
    tree = BUILDERS["pst900"](tmp_path / "pst", frames, n=3)  # type: ignore[call-arg]
    sample_id = next(iter(tree.files))
    label_file = tree.root / tree.files[sample_id]["label"]
    ids_before = np.asarray(Image.open(label_file)).astype(np.int64)
    label_palette(PST_PALETTE)(label_file, 0, tree.root)
    manifest = ingest("pst900", tree.root, tmp_path / "m", progress=False).manifest
    row = next(r for r in read_manifest(manifest).to_pylist() if r["sample_id"] == sample_id)
    assert row["label_encoding"] == "palette"
    report = validate_dataset(manifest, None, tmp_path / "r", num_classes=5, workers=1, progress=False)
    assert report.rows_quarantined == 0, report.summary
    dataset = MultimodalDataset(manifest, tree.root, modalities=("rgb", "thermal"), split=None)
    sample = next(dataset[i] for i in range(len(dataset)) if dataset[i]["sample_id"] == sample_id)
    assert torch.equal(sample["label"], torch.from_numpy(ids_before))


def test_duplicates_and_stray_files_are_rows_of_their_own(frames: Frames, tmp_path: Path) -> None:
    tree = BUILDERS["pst900"](tmp_path / "pst", frames, n=4)  # type: ignore[call-arg]
    first = next(iter(tree.files.values()))
    shutil.copy(tree.root / first["rgb"], (tree.root / first["rgb"]).with_suffix(".jpg"))  # a second RGB file
    (tree.root / "train" / "thermal" / "notes.txt").write_text("calibration done 2019-05-02\n")
    mfnet = BUILDERS["mfnet"](tmp_path / "mfnet", frames, n=3)  # type: ignore[call-arg]
    with (mfnet.root / "train.txt").open("a") as fh:
        fh.write(next(iter(mfnet.files)) + "\n")  # listed twice
    for fmt, root, rows in (("pst900", tree.root, 5), ("mfnet", mfnet.root, 4)):
        result = ingest(fmt, root, tmp_path / f"{fmt}-m", progress=False)
        report = validate_dataset(
            result.manifest, None, tmp_path / f"{fmt}-r", num_classes=9, workers=1, progress=False
        )
        assert report.rows_in == rows == report.rows_validated + report.rows_quarantined
        codes = report.reason_counts
        assert codes.get("duplicate_id") == 1 and (fmt != "pst900" or codes.get("stray_file") == 1), codes


def test_pixel_limit_is_configurable(frames: Frames, tmp_path: Path) -> None:
    tree = BUILDERS["nyuv2"](tmp_path / "nyu", frames, n=2)  # type: ignore[call-arg]
    result = ingest("nyuv2", tree.root, tmp_path / "m", progress=False, max_pixels=40 * 56 - 1)
    assert result.samples_marked == 2 and result.reason_counts == {"too_large": 2}
    assert ingest("nyuv2", tree.root, tmp_path / "m2", progress=False, max_pixels=40 * 56).samples_marked == 0


def test_validate_finds_the_data_root_in_the_manifest(frames: Frames, tmp_path: Path) -> None:
    tree = BUILDERS["mfnet_cmx"](tmp_path / "data" / "MFNet", frames, n=3)  # type: ignore[call-arg]
    runner = CliRunner()
    out = tmp_path / "manifests" / "mfnet"
    result = runner.invoke(
        cli, ["data", "ingest", "--format", "mfnet_cmx", "--root", str(tree.root), "--out", str(out)]
    )
    assert result.exit_code == 0 and "found 3 samples: 3 to validate, 0 marked" in result.output, result.output
    validate = ["data", "validate", "--no-gx", "--manifest", str(out), "--out", str(tmp_path / "r")]
    result = runner.invoke(cli, validate)
    assert result.exit_code == 0 and "3 validated, 0 quarantined of 3" in result.output, result.output
    moved = tmp_path / "moved"  # manifest and data move together: the relative root still resolves
    shutil.move(str(tmp_path / "data"), str(moved / "data"))
    shutil.move(str(tmp_path / "manifests"), str(moved / "manifests"))
    moved_validate = [*validate[:4], str(moved / "manifests" / "mfnet"), "--out", str(tmp_path / "r2")]
    assert runner.invoke(cli, moved_validate).exit_code == 0
    shutil.rmtree(moved / "data")
    result = runner.invoke(cli, [*moved_validate[:-1], str(tmp_path / "r3")])
    assert result.exit_code == 1 and "data root recorded in" in result.output and "--data-root" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "r3" / "quarantine.parquet").exists()


def test_dataset_level_problems_are_one_line_errors(tmp_path: Path) -> None:
    runner = CliRunner()
    (tmp_path / "empty").mkdir()
    for fmt in ("mfnet", "pst900", "nyuv2", "deliver", "muses"):
        result = runner.invoke(
            cli, ["data", "ingest", "--format", fmt, "--root", str(tmp_path / "empty"), "--out", "x"]
        )
        assert result.exit_code == 1 and result.output.count("\n") == 1, result.output
        assert fmt in result.output and "Traceback" not in result.output


def test_synth_never_deletes_files_it_did_not_write(tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "data"
    (out / "rgb").mkdir(parents=True)
    (out / "rgb" / "my_photo.png").write_bytes(b"not ours")
    (out / "notes.md").write_text("mine")
    synth = ["data", "synth", "--out", str(out), "--samples", "3", "--size", "16", "--modalities", "rgb,depth"]
    refused = runner.invoke(cli, synth)
    assert refused.exit_code == 1 and "not empty" in refused.output and "--overwrite" in refused.output
    assert runner.invoke(cli, [*synth, "--overwrite"]).exit_code == 0
    assert len(list((out / "depth").iterdir())) == 3
    again = runner.invoke(cli, [*synth[:-1], "rgb", "--samples", "2", "--overwrite"])
    assert again.exit_code == 0, again.output
    assert (out / "rgb" / "my_photo.png").read_bytes() == b"not ours" and (out / "notes.md").read_text() == "mine"
    assert sorted(p.name for p in (out / "rgb").iterdir()) == ["my_photo.png", "syn000000.png", "syn000001.png"]
    assert not (out / "depth").exists()  # the earlier run's own folder, now empty, is gone


def test_probing_in_worker_processes_gives_the_same_manifest(frames: Frames, tmp_path: Path) -> None:
    tree = BUILDERS["pst900"](tmp_path / "pst", frames, n=20)  # type: ignore[call-arg]  # 80 files: the pool runs
    DAMAGE["empty"](tree.root / next(iter(tree.files.values()))["depth"], 0, tree.root)
    one = ingest("pst900", tree.root, tmp_path / "one", progress=False, workers=1).manifest
    two = ingest("pst900", tree.root, tmp_path / "two", progress=False, workers=2).manifest
    assert read_manifest(one).equals(read_manifest(two))
    assert read_manifest(two).column("ingest_codes").to_pylist().count(["empty_file"]) == 1


def test_an_unreadable_file_is_quarantined_as_unreadable(frames: Frames, tmp_path: Path) -> None:
    """A file the ingesting user may not read (permissions) is a quarantined row, never a crash."""
    work = Path(tempfile.mkdtemp(prefix="equiseg-perm-"))  # outside pytest's root-only tmp folder
    try:
        tree = BUILDERS["pst900"](work / "pst", frames, n=3)  # type: ignore[call-arg]
        ingest("pst900", tree.root, work / "warm", progress=False)  # loads every lazily imported module first
        for path in [work, *work.rglob("*")]:
            path.chmod(0o777 if path.is_dir() else 0o644)
        sample_id = next(iter(tree.files))
        (tree.root / tree.files[sample_id]["thermal"]).chmod(0o000)
        if os.geteuid() == 0:  # root reads any file: ingest as an unprivileged user for this call only
            os.setegid(65534)
            os.seteuid(65534)
        try:
            result = ingest("pst900", tree.root, work / "manifest", progress=False)
        finally:
            if os.getuid() == 0:
                os.seteuid(0)
                os.setegid(0)
        rows = {r["sample_id"]: r for r in read_manifest(result.manifest).to_pylist()}
        assert result.samples_found == len(tree.files) == len(rows)
        assert rows[sample_id]["ingest_codes"] == ["unreadable"], rows[sample_id]
        assert all(not r["ingest_codes"] for sid, r in rows.items() if sid != sample_id)
    finally:
        shutil.rmtree(work, ignore_errors=True)
