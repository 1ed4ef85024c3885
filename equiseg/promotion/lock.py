"""The promotion lock: makes "read champion, compare, move aliases" one critical section.

MLflow has no compare-and-set on aliases, so promotions, approvals and rollbacks of one registered model run under
an exclusive lock, and inside it compare the current ``champion`` version with the one the gate scored against.
The lock is always released by the operating system or the database when its holder dies (even by SIGKILL):

* a file lock (``fcntl.flock``) on ``<sqlite db>.equiseg-registry.lock`` for ``sqlite:///`` tracking URIs, or on
  any file path given as ``gate.lock_uri``: the kernel drops it when the process's descriptor closes;
* a PostgreSQL session advisory lock (``pg_try_advisory_lock``) for ``postgresql://`` URIs: the server drops it when
  the holder's connection ends.

An ``http(s)://`` MLflow server needs ``gate.lock_uri`` (or ``$EQUISEG_GATE_LOCK_URI``) pointing at the server's
PostgreSQL database (or a file on a filesystem all gate processes share).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

__all__ = ["LockTimeoutError", "promotion_lock", "resolve_lock_target"]

logger = logging.getLogger(__name__)

LOCK_URI_ENV = "EQUISEG_GATE_LOCK_URI"


class LockTimeoutError(TimeoutError):
    """Another promotion held the lock for longer than the timeout."""


def resolve_lock_target(tracking_uri: str, lock_uri: str = "") -> str:
    """The lock to use: ``lock_uri``, else ``$EQUISEG_GATE_LOCK_URI``, else one derived from the tracking URI.

    Returns:
        ``postgresql://...`` (advisory lock) or a filesystem path (file lock).

    Raises:
        ValueError: no lock can be derived (an HTTP tracking server without a configured lock).
    """
    target = lock_uri or os.environ.get(LOCK_URI_ENV, "")
    if target:
        return _normalise(target)
    if tracking_uri.startswith("sqlite:///"):
        return str(Path(tracking_uri[len("sqlite:///") :]).expanduser()) + ".equiseg-registry.lock"
    if tracking_uri.startswith("postgresql"):
        return _normalise(tracking_uri)
    if tracking_uri.startswith(("http://", "https://", "databricks")):
        raise ValueError(
            f"cannot derive a promotion lock from the tracking URI {tracking_uri!r}: set gate.lock_uri (or "
            f"${LOCK_URI_ENV}) to the MLflow server's PostgreSQL URI (postgresql://user@host:5432/db) or to a file "
            "path on storage that every gate process shares"
        )
    return str(Path(tracking_uri.removeprefix("file://")).expanduser() / ".equiseg-registry.lock")


def _normalise(target: str) -> str:
    if target.startswith("postgresql"):
        _scheme, rest = target.split("://", 1)
        return "postgresql://" + rest  # drop a SQLAlchemy driver suffix such as +psycopg2
    return str(Path(target.removeprefix("file://")).expanduser())


@contextlib.contextmanager
def promotion_lock(target: str, model_name: str, *, timeout_s: float = 120.0) -> Iterator[None]:
    """Hold the exclusive promotion lock of ``model_name`` at ``target`` (see :func:`resolve_lock_target`).

    Raises:
        LockTimeoutError: the lock stayed taken for ``timeout_s`` seconds.
    """
    if target.startswith("postgresql://"):
        with _advisory_lock(target, model_name, timeout_s):
            yield
    else:
        with _file_lock(Path(target), timeout_s):
            yield


@contextlib.contextmanager
def _file_lock(path: Path, timeout_s: float) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise LockTimeoutError(
                        f"the promotion lock {path} is held by another process for over {timeout_s:.0f}s; "
                        "wait for the other promotion to finish and retry"
                    ) from None
                time.sleep(0.05)
        logger.debug("acquired promotion lock %s", path)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _advisory_key(model_name: str) -> int:
    """Stable signed 64-bit key for ``pg_advisory_lock``."""
    digest = hashlib.sha256(f"equiseg-registry:{model_name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@contextlib.contextmanager
def _advisory_lock(dsn: str, model_name: str, timeout_s: float) -> Iterator[None]:
    import psycopg2  # optional: only a postgresql:// lock needs it (the [mlops] extra)

    parsed = urlparse(dsn)
    conn = psycopg2.connect(dsn, connect_timeout=10)
    conn.autocommit = True
    key = _advisory_key(model_name)
    try:
        deadline = time.monotonic() + timeout_s
        with conn.cursor() as cur:
            while True:
                cur.execute("SELECT pg_try_advisory_lock(%s)", (key,))
                row = cur.fetchone()
                if row is not None and row[0]:
                    break
                if time.monotonic() > deadline:
                    raise LockTimeoutError(
                        f"the promotion advisory lock of {model_name!r} on {parsed.hostname}:{parsed.port} is held "
                        f"by another session for over {timeout_s:.0f}s; wait for the other promotion and retry"
                    )
                time.sleep(0.1)
        logger.debug("acquired advisory lock %d on %s", key, parsed.hostname)
        try:
            yield
        finally:
            with conn.cursor() as cur:
                cur.execute("SELECT pg_advisory_unlock(%s)", (key,))
    finally:
        conn.close()
