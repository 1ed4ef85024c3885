"""Where a result came from: the code's git commit (lineage tags, reports)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

__all__ = ["git_commit"]


def git_commit(cwd: Path | None = None, *, mark_dirty: bool = False) -> str:
    """The checked-out commit; ``$EQUISEG_GIT_COMMIT`` when set (images have no ``.git``), else ``unknown``.

    Args:
        cwd: folder inside the checkout (default: the working directory).
        mark_dirty: append ``-dirty`` when the working tree has uncommitted changes.
    """
    env_commit = os.environ.get("EQUISEG_GIT_COMMIT")
    if env_commit:
        return env_commit
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        if commit and mark_dirty:
            status = subprocess.run(
                ["git", "status", "--porcelain"], cwd=cwd, capture_output=True, text=True, timeout=10, check=True
            ).stdout
            commit += "-dirty" if status.strip() else ""
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return commit or "unknown"
