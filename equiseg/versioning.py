"""Dataset versioning with DVC 3 (docs/data.md).

``version_data`` runs ``dvc add`` on a data folder and ``dvc push`` to a remote, and returns the ``.dir`` md5 as the
dataset version id used in MLflow tags and registry lineage. It works in a Git repository (the project root, where
``data.dvc`` is committed) and in a plain folder (``core.no_scm``, for containers). Analytics are always off.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

__all__ = ["DEFAULT_REMOTE_NAME", "DataVersion", "dvc_dir_md5", "ensure_dvc_repo", "version_data"]

logger = logging.getLogger(__name__)

DEFAULT_REMOTE_NAME = "equiseg"


@dataclass(frozen=True)
class DataVersion:
    """A pushed dataset version."""

    version_id: str  # the `.dir` md5 in the .dvc file, without the `.dir` suffix
    dvc_file: Path
    remote_url: str
    nfiles: int
    size: int


def _is_git_top_level(path: Path) -> bool:
    """DVC tracks with Git only at a Git top level; a folder below one (e.g. ``runs/<id>/``) runs without SCM."""
    return (path / ".git").exists()


def _remote_url(remote: str, repo_root: Path) -> str:
    if "://" in remote:
        return remote
    target = Path(remote)
    return str(target if target.is_absolute() else (repo_root / target).resolve())


def ensure_dvc_repo(repo_root: Path, *, remote: str | None = None, remote_name: str = DEFAULT_REMOTE_NAME) -> Any:
    """Open (or initialise) the DVC repo at ``repo_root``, analytics off, ``remote`` set as the default remote.

    A folder that is not a Git top level (outside any repository, or below one such as ``runs/<id>/``) is
    initialised with ``no_scm``. Local remote folders are created.
    """
    os.environ.setdefault("DVC_NO_ANALYTICS", "1")
    try:
        from dvc.config_schema import RelPath  # optional: the [mlops] extra; imported once analytics are off
        from dvc.repo import Repo  # optional: the [mlops] extra
    except ImportError as exc:
        raise ImportError("dataset versioning needs DVC: pip install 'equiseg[mlops]'") from exc

    repo_root = Path(repo_root).resolve()
    if not (repo_root / ".dvc").is_dir():
        Repo.init(str(repo_root), no_scm=not _is_git_top_level(repo_root))
    repo = Repo(str(repo_root))
    with repo.config.edit() as conf:
        conf["core"]["analytics"] = False
        if remote is not None:
            url = _remote_url(remote, repo_root)
            if "://" not in remote and not Path(remote).is_absolute():
                # Saved relative to .dvc/ (DVC's RelPath), so the committed config works in any clone.
                url = RelPath(url)
            conf["remote"][remote_name] = {"url": url}
            conf["core"]["remote"] = remote_name
    if remote is not None and "://" not in remote:
        Path(_remote_url(remote, repo_root)).mkdir(parents=True, exist_ok=True)
    return repo


def dvc_dir_md5(dvc_file: Path) -> tuple[str, int, int]:
    """(md5 without ``.dir``, nfiles, size) of the single directory output recorded in a ``.dvc`` file."""
    content = yaml.safe_load(Path(dvc_file).read_text())
    try:
        out = content["outs"][0]
        md5 = str(out["md5"])
    except (KeyError, IndexError, TypeError) as exc:
        raise ValueError(f"{dvc_file} has no `outs[0].md5`; re-run `equiseg data version`") from exc
    if not md5.endswith(".dir"):
        raise ValueError(f"{dvc_file} tracks a file, not a directory (md5 {md5}); version a data folder")
    return md5.removesuffix(".dir"), int(out.get("nfiles", 0)), int(out.get("size", 0))


def version_data(
    data_dir: Path, *, repo_root: Path, remote: str, remote_name: str = DEFAULT_REMOTE_NAME, push: bool = True
) -> DataVersion:
    """``dvc add`` ``data_dir`` (inside ``repo_root``) and ``dvc push`` it to ``remote``; returns the version.

    Args:
        data_dir: folder to version; must lie inside ``repo_root``.
        repo_root: the DVC project root (a Git checkout, or any folder: then DVC runs without SCM).
        remote: a local folder (relative to ``repo_root`` or absolute) or a URL such as ``s3://bucket/dvc``.
        remote_name: name of the DVC remote entry that is created or updated and made the default.
        push: push the data to the remote (False only records the version locally).
    """
    repo_root = Path(repo_root).resolve()
    data_dir = Path(data_dir)
    data_dir = (data_dir if data_dir.is_absolute() else repo_root / data_dir).resolve()
    if not data_dir.is_dir():
        raise FileNotFoundError(f"{data_dir} is not a folder; generate it first, e.g. `equiseg data synth --out data`")
    if repo_root != data_dir and repo_root not in data_dir.parents:
        raise ValueError(f"{data_dir} is outside the DVC project {repo_root}; pass --repo-root above the data folder")
    repo = ensure_dvc_repo(repo_root, remote=remote, remote_name=remote_name)
    try:
        repo.add([str(data_dir)])
        if push:
            repo.push(remote=remote_name)
    finally:
        repo.close()
    dvc_file = data_dir.with_name(data_dir.name + ".dvc")
    version_id, nfiles, size = dvc_dir_md5(dvc_file)
    url = _remote_url(remote, repo_root)
    logger.info("data version %s (%d files, %d bytes) pushed to %s", version_id, nfiles, size, url)
    return DataVersion(version_id=version_id, dvc_file=dvc_file, remote_url=url, nfiles=nfiles, size=size)
