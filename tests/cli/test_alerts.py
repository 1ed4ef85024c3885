"""Alerts from the exit handler to a real loopback webhook: a blocked gate, a failed step, retries, a dead hook."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

import components
from equiseg.config import load_config
from equiseg.promotion.verdict import Check, GateVerdict
from equiseg.steps import record_facts, write_run_summary
from equiseg.steps.alerts import AlertPolicy, send_alert
from equiseg.steps.run_folder import gate_paths, run_dir_for

RUN_ID = "alerts-run-1"


class Hook:
    """A loopback webhook that records every JSON body; the first ``fail_first`` requests get HTTP 503."""

    def __init__(self, fail_first: int = 0) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.requests = 0
        self.fail_first = fail_first
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                hook.requests += 1
                if hook.requests <= hook.fail_first:
                    self.send_response(503)
                    self.end_headers()
                    return
                hook.bodies.append(json.loads(body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def hook() -> Iterator[Hook]:
    server = Hook()
    yield server
    server.server.shutdown()


@pytest.fixture
def cfg(tmp_path: Path) -> Any:
    return load_config("smoke", (f"pipeline.output_dir={tmp_path / 'runs'}",))


def _blocked_gate(run_dir: Path) -> None:
    """What the gate step leaves behind when it blocks: gate.json / gate.md and the facts."""
    checks = [
        Check("floor.clean_miou", 41.0, 50.0, -9.0, False, "clean mIoU 41.00 is below the floor 50.00"),
        Check("floor.emm_avg", 30.0, 20.0, 10.0, True, "EMM avg 30.00 clears 20.00"),
    ]
    verdict = GateVerdict(passed=False, checks=checks, mode="enabled", first_run=True)
    gate_json, gate_md = gate_paths(run_dir)
    gate_json.parent.mkdir(parents=True)
    gate_json.write_text(json.dumps(verdict.to_dict()))
    gate_md.write_text("# gate\n")
    record_facts(run_dir, gate_decision=verdict.headline(), gate_passed=False, reports={"gate_verdict": str(gate_md)})


def test_blocked_gate_sends_verdict_failing_checks_and_report_links(cfg: Any, hook: Hook) -> None:
    run_dir = run_dir_for(cfg, RUN_ID)
    _blocked_gate(run_dir)
    write_run_summary(cfg, pipeline_run_id=RUN_ID, state="SUCCEEDED", alert_webhook=hook.url)
    assert len(hook.bodies) == 1
    alert = hook.bodies[0]
    assert alert["event"] == "gate_blocked" and alert["pipeline_run_id"] == RUN_ID
    assert "floor.clean_miou" in alert["verdict"]
    assert [c["name"] for c in alert["failing_checks"]] == ["floor.clean_miou"]
    assert alert["failing_checks"][0]["threshold"] == 50.0
    assert alert["reports"]["gate verdict"].endswith("gate.md")
    assert alert["reports"]["run summary"] == str(run_dir / "summary.md")


def test_failed_step_alerts_through_the_exit_handler_component(
    cfg: Any, hook: Hook, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the smoke profile's pipeline.output_dir (runs/) lands here
    status = SimpleNamespace(state="FAILED", error_message="task train failed: CUDA out of memory")
    components.run_summary.python_func(
        profile="smoke", overrides=[], pipeline_run_id=RUN_ID, status=status, alert_webhook=hook.url
    )
    (alert,) = hook.bodies
    assert alert["event"] == "run_failed" and alert["state"] == "FAILED"
    assert alert["error"] == "task train failed: CUDA out of memory"
    assert alert["verdict"] == "not reached" and alert["failing_checks"] == []
    assert json.loads((tmp_path / "runs" / RUN_ID / "summary.json").read_text())["state"] == "FAILED"


def test_webhook_from_the_environment_and_no_alert_for_a_good_run(
    cfg: Any, hook: Hook, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EQUISEG_ALERT_WEBHOOK", hook.url)
    run_dir = run_dir_for(cfg, RUN_ID)
    record_facts(run_dir, gate_decision="passed (2 checks)", gate_passed=True)
    write_run_summary(cfg, pipeline_run_id=RUN_ID, state="SUCCEEDED")
    assert hook.bodies == []
    write_run_summary(cfg, pipeline_run_id=RUN_ID, state="FAILED", error_message="boom")
    assert [b["event"] for b in hook.bodies] == ["run_failed"]


def test_alert_retries_server_errors_then_delivers() -> None:
    flaky = Hook(fail_first=2)
    try:
        waits: list[float] = []
        assert send_alert(flaky.url, {"event": "x"}, AlertPolicy(attempts=4, backoff_s=0.5), sleep=waits.append)
        assert flaky.requests == 3 and flaky.bodies == [{"event": "x"}]
        assert waits == [0.5, 1.0]  # exponential backoff between attempts
    finally:
        flaky.server.shutdown()


def test_unreachable_webhook_is_logged_and_never_fails_the_run(
    cfg: Any, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    dead = Hook()
    url = dead.url
    dead.server.shutdown()
    dead.server.server_close()  # nothing listens on the port any more
    monkeypatch.setattr("equiseg.steps.alerts.time.sleep", lambda s: None)
    run_dir = run_dir_for(cfg, RUN_ID)
    _blocked_gate(run_dir)
    with caplog.at_level("WARNING", logger="equiseg.steps.alerts"):
        summary = write_run_summary(cfg, pipeline_run_id=RUN_ID, state="SUCCEEDED", alert_webhook=url)
    assert summary.is_file()
    assert "not delivered after 4 attempts" in caplog.text


@pytest.mark.slow
def test_a_failed_kfp_local_run_alerts_from_its_exit_handler(
    hook: Hook, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real pipeline under kfp.local: its first step fails, the exit handler still runs and sends the alert."""
    from pipelines.local import run_local

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("EQUISEG_ALERT_WEBHOOK", hook.url)  # the component subprocesses inherit it
    with pytest.raises(RuntimeError, match="failed"):
        run_local("smoke", ["data.source=pst900"], pipeline_run_id="broken")
    (alert,) = hook.bodies
    assert alert["event"] == "run_failed" and alert["pipeline_run_id"] == "broken"
    assert alert["verdict"] == "not reached"
    assert alert["reports"]["run summary"] == str(tmp_path / "runs" / "broken" / "summary.md")
