"""DVC versioning: add + push + pull round trip, Git and no-SCM projects, and data.dvc matching the smoke data."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from equiseg.cli import cli
from equiseg.data import generate_synthetic
from equiseg.versioning import dvc_dir_md5, ensure_dvc_repo, version_data


def _digest(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in root.rglob("*")
        if p.is_file()
    }


def test_version_push_and_pull_round_trip_without_git(tmp_path: Path) -> None:
    project = tmp_path / "project"
    generate_synthetic(project / "data", samples=4, size=16, modalities=("rgb", "depth"), seed=0, progress=False)
    before = _digest(project / "data")
    version = version_data(project / "data", repo_root=project, remote=str(tmp_path / "remote"))
    assert len(version.version_id) == 32 and version.nfiles == 4 * 3 + 1
    assert version.dvc_file == project / "data.dvc"
    assert dvc_dir_md5(version.dvc_file)[0] == version.version_id
    assert (tmp_path / "remote" / "files" / "md5" / version.version_id[:2] / f"{version.version_id[2:]}.dir").is_file()
    config = (project / ".dvc" / "config").read_text()
    assert "no_scm = True" in config and "analytics = False" in config

    shutil.rmtree(project / "data")
    shutil.rmtree(project / ".dvc" / "cache")
    repo = ensure_dvc_repo(project)
    try:
        repo.pull()
    finally:
        repo.close()
    assert _digest(project / "data") == before

    again = version_data(project / "data", repo_root=project, remote=str(tmp_path / "remote"))
    assert again.version_id == version.version_id  # same bytes, same version


def test_version_in_a_git_repository_with_relative_remote(tmp_path: Path) -> None:
    project = tmp_path / "repo"
    project.mkdir()
    subprocess.run(["git", "init", "-q", str(project)], check=True)
    generate_synthetic(project / "data", samples=3, size=16, modalities=("rgb",), seed=1, progress=False)
    version = version_data(project / "data", repo_root=project, remote=".dvc-remote")
    config = (project / ".dvc" / "config").read_text()
    assert "no_scm" not in config and "url = ../.dvc-remote" in config
    assert (project / ".dvc-remote" / "files" / "md5").is_dir()
    assert "/data" in (project / ".gitignore").read_text()
    generate_synthetic(
        project / "data", samples=3, size=16, modalities=("rgb",), seed=2, progress=False, overwrite=True
    )
    changed = version_data(project / "data", repo_root=project, remote=".dvc-remote")
    assert changed.version_id != version.version_id


def test_version_rejects_data_outside_the_project(tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "project").mkdir()
    with pytest.raises(ValueError, match="outside the DVC project"):
        version_data(tmp_path / "elsewhere", repo_root=tmp_path / "project", remote="r")
    with pytest.raises(FileNotFoundError, match="equiseg data synth"):
        version_data(tmp_path / "project" / "data", repo_root=tmp_path / "project", remote="r")


def test_committed_data_dvc_matches_regenerated_smoke_data(repo_root: Path, tmp_path: Path) -> None:
    """A fresh clone regenerates data/ with `equiseg data synth --profile smoke --out data`; DVC sees no change."""
    committed = repo_root / "data.dvc"
    assert committed.is_file(), "data.dvc must be committed at the repository root"
    clone = tmp_path / "clone"
    (clone / ".dvc").mkdir(parents=True)
    shutil.copy(committed, clone / "data.dvc")
    config = (repo_root / ".dvc" / "config").read_text()
    assert "analytics = False" in config
    (clone / ".dvc" / "config").write_text(
        config + "\n[core]\n    no_scm = True\n"
        if "[core]" not in config
        else config.replace("[core]", "[core]\n    no_scm = True", 1)
    )

    result = CliRunner().invoke(cli, ["data", "synth", "--profile", "smoke", "--out", str(clone / "data")])
    assert result.exit_code == 0, result.output

    expected = yaml.safe_load(committed.read_text())["outs"][0]
    version = version_data(clone / "data", repo_root=clone, remote=str(tmp_path / "remote"), push=False)
    assert f"{version.version_id}.dir" == expected["md5"]
    assert version.nfiles == expected["nfiles"] and version.size == expected["size"]
    assert (clone / "data.dvc").read_text() == committed.read_text()
    repo = ensure_dvc_repo(clone)
    try:
        assert repo.status() == {}  # `dvc status`: data and pipelines are up to date
    finally:
        repo.close()
    first_png = sorted((clone / "data" / "rgb").iterdir())[0]
    first_png.write_bytes(first_png.read_bytes() + b"\0")
    repo = ensure_dvc_repo(clone)
    try:
        assert repo.status() != {}  # a changed file is reported: the check can fail
    finally:
        repo.close()


def test_version_cli_prints_json(tmp_path: Path) -> None:
    project = tmp_path / "p"
    generate_synthetic(project / "data", samples=2, size=16, modalities=("rgb",), seed=0, progress=False)
    result = CliRunner().invoke(
        cli,
        [
            "data",
            "version",
            "--data",
            str(project / "data"),
            "--repo-root",
            str(project),
            "--remote",
            str(tmp_path / "r"),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    assert '"version_id"' in result.output.splitlines()[-1]


def test_version_in_a_folder_below_a_git_checkout_runs_without_scm(tmp_path: Path) -> None:
    """A pipeline run directory such as runs/<id>/ inside the project is its own no-SCM DVC project."""
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    run_dir = tmp_path / "runs" / "r1"
    generate_synthetic(run_dir / "data", samples=2, size=16, modalities=("rgb",), seed=0, progress=False)
    version = version_data(run_dir / "data", repo_root=run_dir, remote=".dvc-remote")
    assert "no_scm = True" in (run_dir / ".dvc" / "config").read_text()
    assert version.dvc_file == run_dir / "data.dvc" and len(version.version_id) == 32
