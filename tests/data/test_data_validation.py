"""Validation: manifest rules (GX suite or plain Python) + pixel checks, quarantine with reasons, report, drift.

Each bad-input kind (docs/data.md) is its own test case: it corrupts one sample of a good synthetic dataset and checks
that exactly that sample is quarantined with the right reason code while the good samples pass.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from PIL import Image

from equiseg.cli import cli
from equiseg.data import ManifestError, ValidationResult, check_manifest_rules, generate_synthetic, validate_dataset
from equiseg.expectations import run_manifest_suite

Rows = list[dict[str, Any]]


def _validate(root: Path, tmp_path: Path, **kwargs: Any) -> ValidationResult:
    options: dict[str, Any] = {
        "num_classes": 8,
        "workers": 1,
        "progress": False,
        "max_quarantine_fraction": 0.5,
        "manifest_checks": run_manifest_suite,
    }
    options.update(kwargs)
    return validate_dataset(root / "manifest.parquet", root, tmp_path / "report", **options)


def _edit_manifest(root: Path, edit: Callable[[Rows], Rows | None]) -> None:
    path = root / "manifest.parquet"
    table = pq.read_table(path)
    rows = table.to_pylist()
    edited = edit(rows)
    if edited is not None:
        rows = edited
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), path)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _replace(root: Path, column: str, writer: Callable[[Path], None], row: int = 0, update_sha: bool = True) -> None:
    """Rewrite one file of sample ``row`` with ``writer`` and (by default) record its new checksum."""

    def edit(rows: Rows) -> None:
        path = root / rows[row][f"{column}_path"]
        writer(path)
        if update_sha:
            rows[row][f"{column}_sha256"] = _sha(path)

    _edit_manifest(root, edit)


def _sample_id(root: Path, row: int = 0) -> str:
    return str(pq.read_table(root / "manifest.parquet").column("sample_id")[row].as_py())


def _quarantined(result: ValidationResult) -> dict[str, list[str]]:
    table = pq.read_table(result.quarantine_path)
    return dict(zip(table.column("sample_id").to_pylist(), table.column("reason_codes").to_pylist(), strict=True))


def _assert_only(result: ValidationResult, sample_id: str, code: str, rows_in: int = 12) -> None:
    assert result.rows_in == rows_in
    assert result.rows_validated + result.rows_quarantined == result.rows_in
    quarantined = _quarantined(result)
    assert list(quarantined) == [sample_id], quarantined
    assert code in quarantined[sample_id], quarantined
    validated = pq.read_table(result.validated_path).column("sample_id").to_pylist()
    assert sample_id not in validated and len(validated) == rows_in - 1


# --------------------------------------------------------------------------------------------------------------------
# The good path
# --------------------------------------------------------------------------------------------------------------------


def test_good_dataset_passes_and_writes_every_output(synthetic_copy: Path, tmp_path: Path) -> None:
    result = _validate(synthetic_copy, tmp_path)
    assert result.passed and result.gx_success, result.summary
    assert (result.rows_in, result.rows_validated, result.rows_quarantined) == (12, 12, 0)
    for path in (result.validated_path, result.quarantine_path, result.stats_path, result.report_path):
        assert path.is_file()
    assert (result.gx_docs_dir / "index.html").is_file()
    stats = json.loads(result.stats_path.read_text())
    assert sum(stats["class_histogram"].values()) == 12 * 32 * 32
    assert set(stats["modalities"]) == {"rgb", "depth", "thermal"}
    assert len(stats["modalities"]["rgb"]["channels"]) == 3
    assert stats["split_counts"] == {"train": 9, "val": 3}
    assert pq.read_table(result.validated_path).schema.metadata[b"equiseg.schema_version"] == b"1"


def test_report_is_self_contained(synthetic_copy: Path, tmp_path: Path) -> None:
    _replace(synthetic_copy, "thermal", lambda p: p.write_bytes(b""), row=3)
    result = _validate(synthetic_copy, tmp_path)
    text = result.report_path.read_text()
    assert "<svg" in text and "<style>" in text
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", text)  # nothing fetched from the network
    assert "<script" not in text
    assert _sample_id(synthetic_copy, 3) in text and "empty_file" in text


def test_multi_process_validation_matches_single_process(synthetic_copy: Path, tmp_path: Path) -> None:
    _replace(synthetic_copy, "rgb", lambda p: p.write_bytes(b"not a png"), row=5)
    one = _validate(synthetic_copy, tmp_path / "one", workers=1)
    two = _validate(synthetic_copy, tmp_path / "two", workers=2)
    assert _quarantined(one) == _quarantined(two)
    stats_one, stats_two = (json.loads(r.stats_path.read_text()) for r in (one, two))
    assert stats_one["class_histogram"] == stats_two["class_histogram"]
    assert stats_one["modalities"] == stats_two["modalities"]


def test_quarantine_over_policy_blocks_the_run(synthetic_copy: Path, tmp_path: Path) -> None:
    for row in (0, 1):
        _replace(synthetic_copy, "depth", lambda p: p.unlink(), row=row, update_sha=False)
    result = _validate(synthetic_copy, tmp_path, max_quarantine_fraction=0.1)
    assert not result.passed and result.rows_quarantined == 2
    assert any("quarantined 2/12" in b for b in result.blocking)
    assert "BLOCKING" in result.summary
    relaxed = _validate(synthetic_copy, tmp_path / "relaxed", max_quarantine_fraction=0.2)
    assert relaxed.passed


def test_drift_against_reference_profile(synthetic_source: Path, tmp_path: Path) -> None:
    reference = _validate(synthetic_source, tmp_path / "ref")
    same = _validate(synthetic_source, tmp_path / "same", reference_profile=reference.stats_path)
    assert same.passed and max(same.drift.values()) == 0.0
    shifted = tmp_path / "shifted"
    generate_synthetic(
        shifted, samples=12, size=32, modalities=("rgb", "depth", "thermal"), seed=7, num_classes=2, progress=False
    )
    drifted = _validate(shifted, tmp_path / "drifted", reference_profile=reference.stats_path, drift_threshold=0.1)
    assert not drifted.passed
    assert drifted.drift["class_histogram"] > 0.1
    assert any("drift in class_histogram" in b for b in drifted.blocking)


def test_cli_exit_codes(synthetic_copy: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    args = ["data", "validate", "--manifest", str(synthetic_copy / "manifest.parquet"), "--workers", "1"]
    ok = runner.invoke(cli, [*args, "--out", str(tmp_path / "ok")])
    assert ok.exit_code == 0, ok.output
    assert "PASSED" in ok.output and (tmp_path / "ok" / "config.yaml").is_file()
    _replace(synthetic_copy, "rgb", lambda p: p.unlink(), row=0, update_sha=False)
    bad = runner.invoke(cli, [*args, "--out", str(tmp_path / "bad"), "--max-quarantine-fraction", "0"])
    assert bad.exit_code == 1
    assert "FAILED" in bad.output and "missing_file" in bad.output


def test_cli_without_gx_runs_the_plain_python_rules(synthetic_copy: Path, tmp_path: Path) -> None:
    manifest = str(synthetic_copy / "manifest.parquet")
    args = ["data", "validate", "--manifest", manifest, "--workers", "1", "--no-gx", "--out", str(tmp_path / "r")]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "PASSED" in result.output and not (tmp_path / "r" / "gx_docs").exists()
    assert "Great Expectations" not in (tmp_path / "r" / "report.html").read_text()


# --------------------------------------------------------------------------------------------------------------------
# Bad input: one corrupted sample each
# --------------------------------------------------------------------------------------------------------------------


def _png(array: np.ndarray) -> Callable[[Path], None]:
    return lambda path: Image.fromarray(array).save(path)


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _label_with(value: int) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        label = np.asarray(Image.open(path)).copy()
        label[5, 5] = value
        Image.fromarray(label).save(path)

    return write


FILE_CASES: dict[str, tuple[str, Callable[[Path], None], bool, str]] = {
    # name: (column, writer, update_sha, reason)
    "truncated_png": ("rgb", _truncate, True, "truncated_file"),
    "zero_byte_file": ("thermal", lambda p: p.write_bytes(b""), True, "empty_file"),
    "missing_modality_file": ("depth", lambda p: p.unlink(), False, "missing_file"),
    "hw_mismatch_between_modalities": (
        "thermal",
        _png(np.full((32, 30), 90, np.uint8) + np.eye(32, 30, dtype=np.uint8)),
        True,
        "size_mismatch",
    ),
    "label_size_mismatch": ("label", _png(np.zeros((30, 32), np.uint8)), True, "label_size_mismatch"),
    "label_id_out_of_range": ("label", _label_with(9), True, "label_out_of_range"),
    "16bit_where_8bit_declared": (
        "thermal",
        _png(np.arange(32 * 32, dtype=np.uint16).reshape(32, 32) * 50),
        True,
        "dtype_mismatch",
    ),
    "wrong_channel_count": (
        "thermal",
        _png(np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)),
        True,
        "channel_mismatch",
    ),
    "dead_channel": ("thermal", _png(np.full((32, 32), 77, np.uint8)), True, "dead_channel"),
    "checksum_mismatch": ("rgb", _label_with(0), False, "checksum_mismatch"),
    "non_image_with_png_name": ("depth", lambda p: p.write_text("<html>oops</html>"), True, "not_an_image"),
    "missing_label_file": ("label", lambda p: p.unlink(), False, "missing_file"),
}


@pytest.mark.parametrize("case", sorted(FILE_CASES))
def test_bad_file_is_quarantined_with_its_reason(case: str, synthetic_copy: Path, tmp_path: Path) -> None:
    column, writer, update_sha, reason = FILE_CASES[case]
    _replace(synthetic_copy, column, writer, row=0, update_sha=update_sha)
    result = _validate(synthetic_copy, tmp_path)
    _assert_only(result, _sample_id(synthetic_copy), reason)
    assert result.passed  # 1/12 is under the relaxed test policy of 50 %


@pytest.mark.parametrize(
    ("case", "bad_value", "reason"), [("nan_depth", np.nan, "nan_values"), ("inf_depth", np.inf, "inf_values")]
)
def test_non_finite_float_depth_is_quarantined(
    case: str, bad_value: float, reason: str, synthetic_copy: Path, tmp_path: Path
) -> None:
    def edit(rows: Rows) -> None:
        old = synthetic_copy / rows[0]["depth_path"]
        metres = np.asarray(Image.open(old)).astype(np.float32) / 1000.0
        metres[3, 4] = bad_value
        new = old.with_suffix(".npy")
        np.save(new, metres[:, :, None])
        rows[0].update(
            depth_path=rows[0]["depth_path"].replace(".png", ".npy"),
            depth_dtype="float32",
            depth_scale=1.0 / 20.0,
            depth_sha256=_sha(new),
        )
        # A good float sample too, so float depth itself is shown to be accepted.
        good_old = synthetic_copy / rows[1]["depth_path"]
        good_new = good_old.with_suffix(".npy")
        np.save(good_new, (np.asarray(Image.open(good_old)).astype(np.float32) / 1000.0)[:, :, None])
        rows[1].update(
            depth_path=rows[1]["depth_path"].replace(".png", ".npy"),
            depth_dtype="float32",
            depth_scale=1.0 / 20.0,
            depth_sha256=_sha(good_new),
        )

    _edit_manifest(synthetic_copy, edit)
    _assert_only(_validate(synthetic_copy, tmp_path), _sample_id(synthetic_copy), reason)


def test_duplicate_sample_id_quarantines_the_later_row(synthetic_copy: Path, tmp_path: Path) -> None:
    _edit_manifest(synthetic_copy, lambda rows: [*rows, dict(rows[4])])
    result = _validate(synthetic_copy, tmp_path)
    assert result.rows_in == 13 and result.rows_validated == 12 and result.rows_quarantined == 1
    assert _quarantined(result) == {_sample_id(synthetic_copy, 4): ["duplicate_id"]}


MANIFEST_CASES: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "unknown_split": (lambda row: row.update(split="holdout"), "unknown_split"),
    "absolute_path": (lambda row: row.update(rgb_path="/etc/passwd"), "path_absolute"),
    "dotdot_path": (lambda row: row.update(thermal_path="../outside/thermal.png"), "path_parent_escape"),
    "dotdot_in_label_path": (lambda row: row.update(label_path="label/../../x.png"), "path_parent_escape"),
    "null_required_field": (lambda row: row.update(depth_path=None), "null_field"),
    "unknown_label_encoding": (lambda row: row.update(label_encoding="minus_two"), "bad_declaration"),
    "bad_dtype_declaration": (lambda row: row.update(rgb_dtype="complex64"), "bad_declaration"),
}


@pytest.mark.parametrize("case", sorted(MANIFEST_CASES))
def test_bad_manifest_row_is_quarantined_by_gx(case: str, synthetic_copy: Path, tmp_path: Path) -> None:
    mutate, reason = MANIFEST_CASES[case]

    def edit(rows: Rows) -> None:
        mutate(rows[0])

    _edit_manifest(synthetic_copy, edit)
    result = _validate(synthetic_copy, tmp_path)
    _assert_only(result, _sample_id(synthetic_copy), reason)
    assert not result.gx_success
    failed = [e for e in json.loads(result.stats_path.read_text())["expectations"] if not e["success"]]
    assert failed and all(e["unexpected"] >= 1 for e in failed)


def test_symlink_out_of_the_root_is_quarantined(synthetic_copy: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside.png"
    rows = pq.read_table(synthetic_copy / "manifest.parquet").to_pylist()
    target = synthetic_copy / rows[0]["rgb_path"]
    outside.write_bytes(target.read_bytes())
    target.unlink()
    os.symlink(outside, target)
    _assert_only(_validate(synthetic_copy, tmp_path), _sample_id(synthetic_copy), "path_symlink_escape")


def test_symlink_inside_the_root_is_fine(synthetic_copy: Path, tmp_path: Path) -> None:
    rows = pq.read_table(synthetic_copy / "manifest.parquet").to_pylist()
    target = synthetic_copy / rows[0]["rgb_path"]
    kept = synthetic_copy / "elsewhere.png"
    target.rename(kept)
    os.symlink(kept, target)
    assert _validate(synthetic_copy, tmp_path).rows_quarantined == 0


def test_empty_manifest_is_a_clear_error(synthetic_copy: Path, tmp_path: Path) -> None:
    _edit_manifest(synthetic_copy, lambda rows: [])
    with pytest.raises(ManifestError, match="no rows"):
        _validate(synthetic_copy, tmp_path)
    result = CliRunner().invoke(
        cli, ["data", "validate", "--manifest", str(synthetic_copy), "--out", str(tmp_path / "r")]
    )
    assert result.exit_code == 1 and "no rows" in result.output


def test_manifest_with_missing_columns_is_a_clear_error(synthetic_copy: Path, tmp_path: Path) -> None:
    path = synthetic_copy / "manifest.parquet"
    table = pq.read_table(path)
    pq.write_table(table.drop_columns(["split", "thermal_dtype"]), path)
    with pytest.raises(ManifestError, match="split, thermal_dtype"):
        _validate(synthetic_copy, tmp_path)


def test_missing_manifest_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="does not exist"):
        validate_dataset(tmp_path / "nope.parquet", tmp_path, tmp_path / "r", num_classes=8)


@pytest.mark.parametrize("case", sorted(MANIFEST_CASES))
def test_plain_python_rules_quarantine_like_the_gx_suite(case: str, synthetic_copy: Path, tmp_path: Path) -> None:
    """The core's own manifest rules (no great-expectations) quarantine the same row for the same reason."""
    mutate, reason = MANIFEST_CASES[case]
    _edit_manifest(synthetic_copy, lambda rows: mutate(rows[0]))
    core = _validate(synthetic_copy, tmp_path / "core", manifest_checks=check_manifest_rules)
    gx = _validate(synthetic_copy, tmp_path / "gx")
    _assert_only(core, _sample_id(synthetic_copy), reason)
    assert _quarantined(core) == _quarantined(gx)
    assert not core.gx_success and not (core.gx_docs_dir / "index.html").exists()
    failed = [
        {
            (e["expectation"], e["column"])
            for e in json.loads(r.stats_path.read_text())["expectations"]
            if not e["success"]
        }
        for r in (core, gx)
    ]
    assert failed[0] == failed[1]


def test_plain_python_rules_keep_the_first_of_a_duplicated_id(synthetic_copy: Path, tmp_path: Path) -> None:
    _edit_manifest(synthetic_copy, lambda rows: [*rows, dict(rows[4])])
    result = _validate(synthetic_copy, tmp_path, manifest_checks=check_manifest_rules)
    assert result.passed and result.rows_quarantined == 1
    assert _quarantined(result) == {_sample_id(synthetic_copy, 4): ["duplicate_id"]}
