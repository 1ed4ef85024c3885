"""A run that fails during a tracking outage ends FAILED once the server is back, not RUNNING forever."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from equiseg.config import TrackingConfig
from equiseg.tracking import Tracker

pytestmark = pytest.mark.slow  # starts a real mlflow server twice (~30 s)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start(root: Path, port: int) -> subprocess.Popen[bytes]:
    command = [
        str(Path(sys.executable).with_name("mlflow")), "server", "--workers", "1",
        "--backend-store-uri", f"sqlite:///{root / 'db.sqlite'}", "--artifacts-destination", str(root / "artifacts"),
        "--host", "127.0.0.1", "--port", str(port),
    ]  # fmt: skip
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
                            start_new_session=True)  # fmt: skip
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                return proc
        except OSError:
            time.sleep(0.5)
    raise AssertionError("mlflow server did not start")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


def test_a_run_that_fails_during_an_outage_is_marked_failed_when_the_server_returns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # only equiseg's own bounded retries (tracking.*)
    port = _free_port()
    server = _start(tmp_path, port)
    uri = f"http://127.0.0.1:{port}"
    tracker = Tracker(TrackingConfig(uri=uri, artifact_location="", retries=6, backoff_s=2.0, log_system_metrics=False))
    restarted: list[subprocess.Popen[bytes]] = []
    try:
        with pytest.raises(RuntimeError, match="training crashed"), tracker.start_run(run_name="outage") as run_id:
            _stop(server)  # the outage begins
            threading.Timer(3.0, lambda: restarted.append(_start(tmp_path, port))).start()
            raise RuntimeError("training crashed")
        deadline = time.monotonic() + 60
        while not restarted and time.monotonic() < deadline:
            time.sleep(0.5)
        assert MlflowClient(uri).get_run(run_id).info.status == "FAILED"
    finally:
        for proc in restarted:
            _stop(proc)


def test_a_run_that_fails_past_the_retry_budget_is_marked_failed_by_the_next_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("EQUISEG_STATE_DIR", str(tmp_path / "state"))
    port = _free_port()
    server = _start(tmp_path, port)
    uri = f"http://127.0.0.1:{port}"
    cfg = TrackingConfig(uri=uri, artifact_location="", retries=1, backoff_s=0.2, log_system_metrics=False)
    try:
        with pytest.raises(RuntimeError, match="training crashed"), Tracker(cfg).start_run(run_name="lost") as run_id:
            _stop(server)  # down for longer than tracking.retries covers
            raise RuntimeError("training crashed")
        assert (tmp_path / "state" / "pending-run-ends.json").exists()
        server = _start(tmp_path, port)
        assert MlflowClient(uri).get_run(run_id).info.status == "RUNNING"  # nobody could tell the server yet
        with Tracker(cfg).start_run(run_name="next"):
            pass
        assert MlflowClient(uri).get_run(run_id).info.status == "FAILED"
        assert run_id not in (tmp_path / "state" / "pending-run-ends.json").read_text()
    finally:
        _stop(server)
