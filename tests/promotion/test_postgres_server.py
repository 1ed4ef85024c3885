"""Registry operations against a real ``mlflow server`` on loopback, backed by a fresh PostgreSQL database.

The promotion lock is a PostgreSQL advisory lock on the same database (``gate.lock_uri``), which is how a cluster
deployment with an HTTP tracking server is configured.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from equiseg.promotion import audit_registry, get_alias_version, list_versions, promote, rollback
from equiseg.promotion.lock import resolve_lock_target

from .registry_helpers import gated_version

pytestmark = [pytest.mark.postgres, pytest.mark.slow]  # ~90 s: runs in `make test-slow` (CI)

MODEL = "equiseg-pg"
WORKER = Path(__file__).with_name("promote_worker.py")


def test_promotion_race_and_rollback_on_a_postgres_backed_server(
    mlflow_server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    uri = mlflow_server.url
    lock = mlflow_server.backend_store.replace("postgresql+psycopg2://", "postgresql://")
    monkeypatch.delenv("EQUISEG_GATE_LOCK_URI", raising=False)
    with pytest.raises(ValueError, match="gate.lock_uri"):  # an HTTP server needs an explicit lock
        resolve_lock_target(uri)
    monkeypatch.setenv("EQUISEG_GATE_LOCK_URI", lock)
    assert resolve_lock_target(uri) == lock

    v1 = gated_version(uri, MODEL, 0.0)
    assert promote(MODEL, v1, tracking_uri=uri).action == "promoted"  # first run: floors only
    worse = gated_version(uri, MODEL, -4.0)
    assert not {v.version: v for v in list_versions(MODEL, tracking_uri=uri)}[worse].gate_passed

    a, b = gated_version(uri, MODEL, 2.0), gated_version(uri, MODEL, 3.0)  # both gated against v1
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    procs = {
        v: subprocess.Popen(
            [sys.executable, str(WORKER), uri, MODEL, v, "--barrier", str(barrier), "--parties", "2"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for v in (a, b)
    }
    codes = {v: p.wait(timeout=180) for v, p in procs.items()}
    assert sorted(codes.values()) == [0, 3], {v: p.communicate() for v, p in procs.items()}
    winner = next(v for v, c in codes.items() if c == 0)
    assert get_alias_version(MODEL, "champion", tracking_uri=uri) == winner
    assert get_alias_version(MODEL, "previous_champion", tracking_uri=uri) == v1
    assert audit_registry(MODEL, tracking_uri=uri) == []

    rollback(MODEL, reason="postgres test", tracking_uri=uri)
    assert get_alias_version(MODEL, "champion", tracking_uri=uri) == v1
    assert get_alias_version(MODEL, "previous_champion", tracking_uri=uri) is None
