"""The whole data step as the pipeline runs it: synth -> validate -> version, through the CLI (slow)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from equiseg.cli import cli


@pytest.mark.slow
def test_synth_validate_version_through_the_cli(tmp_path: Path) -> None:
    runner = CliRunner()
    project = tmp_path / "project"
    data = project / "data"
    synth = runner.invoke(
        cli,
        ["data", "synth", "--profile", "cpu", "--out", str(data), "--samples", "200", "--set", "data.seed=5"],
    )
    assert synth.exit_code == 0, synth.output
    report = tmp_path / "report"
    validate = runner.invoke(
        cli,
        ["data", "validate", "--manifest", str(data / "manifest.parquet"), "--out", str(report), "--workers", "2"],
    )
    assert validate.exit_code == 0, validate.output
    stats = json.loads((report / "stats.json").read_text())
    assert stats["rows_in"] == stats["rows_validated"] == 200
    assert all(int(n) > 0 for n in stats["class_histogram"].values())  # every class appears at 128² over 200 scenes
    assert {"night", "fog", "day", "clear"} <= set(stats["condition_counts"])
    # A second run against the first as reference: no drift.
    again = runner.invoke(
        cli,
        [
            "data",
            "validate",
            "--manifest",
            str(data),
            "--out",
            str(tmp_path / "r2"),
            "--reference",
            str(report / "stats.json"),
        ],
    )
    assert again.exit_code == 0, again.output
    version = runner.invoke(
        cli,
        [
            "data",
            "version",
            "--data",
            str(data),
            "--repo-root",
            str(project),
            "--remote",
            str(tmp_path / "remote"),
            "--json",
        ],
    )
    assert version.exit_code == 0, version.output
    payload = json.loads(version.output.strip().splitlines()[-1])
    assert payload["nfiles"] == 200 * 4 + 1 and len(payload["version_id"]) == 32
