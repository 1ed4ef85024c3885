"""Manifest schema, metadata and path safety; the `equiseg data` command line."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from equiseg.cli import cli
from equiseg.data import (
    ManifestError,
    ManifestRow,
    PathEscapeError,
    manifest_info,
    read_manifest,
    resolve_in_root,
    rows_to_table,
    write_manifest,
)


def _row(sample_id: str = "a") -> ManifestRow:
    spec = {"path": f"rgb/{sample_id}.png", "channels": 3, "dtype": "uint8", "sha256": None, "scale": 1 / 255}
    return ManifestRow(sample_id, "train", "test", 4, 4, "demo-2", {"rgb": spec}, label_path=None, conditions=("x",))


def test_round_trip_keeps_schema_version_and_metadata(tmp_path: Path) -> None:
    table = rows_to_table([_row("a"), _row("b")], ["rgb"], num_classes=2, source="test")
    path = write_manifest(table, tmp_path / "m.parquet")
    again = read_manifest(path)
    info = manifest_info(again)
    assert (info.schema_version, info.modalities, info.class_set, info.num_classes) == ("1", ("rgb",), "demo-2", 2)
    assert again.column("conditions").to_pylist() == [["x"], ["x"]]
    assert again.column("rgb_bands").to_pylist() == ["", ""]
    write_manifest(table, tmp_path / "m2.parquet")
    assert (tmp_path / "m.parquet").read_bytes() == (tmp_path / "m2.parquet").read_bytes()  # deterministic bytes


def test_rows_must_hold_every_modality() -> None:
    with pytest.raises(ValueError, match="no 'depth' file"):
        rows_to_table([_row()], ["rgb", "depth"])


def test_other_schema_version_is_refused(tmp_path: Path) -> None:
    table = rows_to_table([_row()], ["rgb"])
    meta = dict(table.schema.metadata)
    meta[b"equiseg.schema_version"] = b"99"
    pq.write_table(table.replace_schema_metadata(meta), tmp_path / "m.parquet")
    with pytest.raises(ManifestError, match="version 99"):
        read_manifest(tmp_path / "m.parquet")
    (tmp_path / "bad.parquet").write_text("not parquet")
    with pytest.raises(ManifestError, match="not a readable Parquet"):
        read_manifest(tmp_path / "bad.parquet")
    pq.write_table(pa.table({"x": [1]}), tmp_path / "cols.parquet")
    with pytest.raises(ManifestError, match="lacks required column"):
        read_manifest(tmp_path / "cols.parquet")


@pytest.mark.parametrize(
    ("rel", "code"),
    [("/etc/passwd", "path_absolute"), ("a/../../b.png", "path_parent_escape"), ("..", "path_parent_escape")],
)
def test_paths_escaping_the_root_are_rejected(tmp_path: Path, rel: str, code: str) -> None:
    with pytest.raises(PathEscapeError, match=code):
        resolve_in_root(tmp_path, rel)


def test_symlink_escape_is_rejected_but_inner_links_are_fine(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (tmp_path / "secret.png").write_bytes(b"x")
    (root / "sub" / "real.png").write_bytes(b"y")
    os.symlink(tmp_path / "secret.png", root / "out.png")
    os.symlink(root / "sub" / "real.png", root / "in.png")
    with pytest.raises(PathEscapeError, match="path_symlink_escape"):
        resolve_in_root(root, "out.png")
    assert resolve_in_root(root, "in.png").read_bytes() == b"y"


def test_data_cli_help_and_synth_defaults_from_profile(tmp_path: Path) -> None:
    runner = CliRunner()
    for command in ("synth", "ingest", "validate", "version"):
        result = runner.invoke(cli, ["data", command, "--help"])
        assert result.exit_code == 0 and "Usage" in result.output and len(result.output) > 300
    result = runner.invoke(cli, ["data", "synth", "--profile", "smoke", "--out", str(tmp_path), "--samples", "3"])
    assert result.exit_code == 0, result.output
    rows = read_manifest(tmp_path / "manifest.parquet").to_pylist()
    assert len(rows) == 3 and rows[0]["height"] == 64  # size from configs/smoke.yaml
    bad = runner.invoke(cli, ["data", "synth", "--out", str(tmp_path), "--modalities", "rgb,sonar"])
    assert bad.exit_code == 1 and "sonar" in bad.output and "Traceback" not in bad.output


def test_importing_the_data_layer_stays_light() -> None:
    """Training workers import equiseg.data; it must not pull in mlflow, kfp, great_expectations or dvc."""
    import subprocess
    import sys

    heavy = "('mlflow', 'kfp', 'great_expectations', 'dvc')"
    code = f"import sys, equiseg.data; print(sorted(m for m in {heavy} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"
