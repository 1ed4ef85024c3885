"""Run ends that could not reach the tracking server: recorded on disk, written when a later run starts.

A run that fails while the server is down past ``tracking.retries`` cannot be marked FAILED then. Its end (uri,
run id, status, time) is kept in ``$EQUISEG_STATE_DIR/pending-run-ends.json`` (default
``~/.local/state/equiseg``); the next :class:`~equiseg.tracking.Tracker` run on the same URI writes it, so no run
stays RUNNING once the server is back (docs/operations.md, "Tracking outages").
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

__all__ = ["flush_pending_ends", "pending_ends", "record_pending_end"]

logger = logging.getLogger(__name__)


def _ledger() -> Path:
    state = os.environ.get("EQUISEG_STATE_DIR") or os.path.join(
        os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state", "equiseg"
    )
    return Path(state) / "pending-run-ends.json"


@contextlib.contextmanager
def _locked() -> Iterator[list[dict[str, Any]]]:
    """The ledger's entries under an exclusive lock (tuning workers may record at once); saved on exit."""
    path = _ledger()
    path.parent.mkdir(parents=True, exist_ok=True)
    with (path.parent / ".pending-run-ends.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        entries = json.loads(path.read_text()) if path.exists() and path.stat().st_size else []
        yield entries
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(json.dumps(entries, indent=1))
        tmp.replace(path)


def record_pending_end(uri: str, run_id: str, status: str) -> Path:
    """Remember that ``run_id`` on ``uri`` must end with ``status``; returns the ledger's path."""
    with _locked() as entries:
        entries.append({"uri": uri, "run_id": run_id, "status": status, "end_time_ms": int(time.time() * 1000)})
    return _ledger()


def pending_ends(uri: str) -> list[dict[str, Any]]:
    """The ends still pending for ``uri``."""
    path = _ledger()
    if not path.exists() or not path.stat().st_size:
        return []
    return [e for e in json.loads(path.read_text()) if e["uri"] == uri]


def flush_pending_ends(uri: str, set_terminated: Callable[[str, str, int], object]) -> int:
    """Write the pending ends of ``uri`` with ``set_terminated(run_id, status, end_time_ms)``; returns how many.

    One attempt each: an end that still fails stays pending for the next run.
    """
    if not pending_ends(uri):
        return 0
    written = 0
    with _locked() as entries:
        keep = []
        for entry in entries:
            if entry["uri"] != uri:
                keep.append(entry)
                continue
            try:
                set_terminated(entry["run_id"], entry["status"], entry["end_time_ms"])
                written += 1
                logger.info("MLflow run %s marked %s (pending since the outage)", entry["run_id"], entry["status"])
            except Exception:  # the server may still be down: keep it for the next run
                keep.append(entry)
        entries[:] = keep
    return written
