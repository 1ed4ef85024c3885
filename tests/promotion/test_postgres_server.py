"""Registry operations against a real ``mlflow server`` on loopback, backed by a fresh PostgreSQL database.

The promotion lock is a PostgreSQL advisory lock on the same database (``gate.lock_uri``), which is how a cluster
deployment with an HTTP tracking server is configured.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from equiseg.promotion import audit_registry, get_alias_version, list_versions, promote, rollback
from equiseg.promotion.lock import resolve_lock_target

from .registry_helpers import gated_version

pytestmark = [pytest.mark.postgres, pytest.mark.slow]  # ~90 s: runs in `make test-slow` (CI)

PG_ADMIN = os.environ.get("EQUISEG_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
MODEL = "equiseg-pg"
WORKER = Path(__file__).with_name("promote_worker.py")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    import psycopg2

    try:
        admin = psycopg2.connect(PG_ADMIN, connect_timeout=5)
    except psycopg2.OperationalError as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"PostgreSQL not reachable at {PG_ADMIN}: {exc}")
    admin.autocommit = True
    db = f"equiseg_gate_{uuid.uuid4().hex[:10]}"
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{db}"')
    base = PG_ADMIN.rsplit("/", 1)[0]
    root = tmp_path_factory.mktemp("mlflow-server")
    port = _free_port()
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    log = (root / "server.log").open("w")
    proc = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("mlflow")),
            "server",
            "--backend-store-uri",
            f"{base.replace('postgresql://', 'postgresql+psycopg2://')}/{db}",
            "--artifacts-destination",
            str(root / "artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"mlflow server did not start: {(root / 'server.log').read_text()[-2000:]}")
            time.sleep(0.5)
        yield {"uri": url, "lock": f"{base}/{db}"}
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        admin.close()


def test_promotion_race_and_rollback_on_a_postgres_backed_server(
    server: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    uri = server["uri"]
    monkeypatch.delenv("EQUISEG_GATE_LOCK_URI", raising=False)
    with pytest.raises(ValueError, match="gate.lock_uri"):  # an HTTP server needs an explicit lock
        resolve_lock_target(uri)
    monkeypatch.setenv("EQUISEG_GATE_LOCK_URI", server["lock"])
    assert resolve_lock_target(uri) == server["lock"]

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
