"""Pipeline step ``version_data``: ``dvc add`` + ``dvc push`` of the data root (docs/data.md)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from equiseg.config import EquisegConfig
from equiseg.steps.run_folder import TaskFacts
from equiseg.versioning import DataVersion
from equiseg.versioning import version_data as dvc_version

__all__ = ["VersionedData", "version_data"]


@dataclass(frozen=True)
class VersionedData:
    """The DVC version of the data root."""

    version_id: str
    dvc_file: Path
    remote: str


def version_data(cfg: EquisegConfig, *, data_root: str | Path, facts: TaskFacts | None = None) -> VersionedData:
    """``dvc add`` + ``dvc push`` the data root; the ``.dir`` md5 is the dataset version id."""
    facts = facts if facts is not None else TaskFacts()
    root = Path(data_root).resolve()
    cwd = Path.cwd().resolve()
    # The data root is versioned inside the project (data.dvc beside the code) when it lies there; a dataset
    # elsewhere (a real one on a volume) is its own DVC project without SCM.
    repo_root = cwd if root.is_relative_to(cwd) and root != cwd else root.parent
    version: DataVersion
    with facts.timed("version_data"):
        version = dvc_version(root, repo_root=repo_root, remote=cfg.data.dvc_remote)
    facts.record(dataset_version=version.version_id)
    return VersionedData(version_id=version.version_id, dvc_file=Path(version.dvc_file), remote=version.remote_url)
