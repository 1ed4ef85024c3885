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
from kfp.dsl import Artifact

import components
from equiseg.config import load_config
from equiseg.promotion.verdict import Check, GateVerdict
from equiseg.steps import TaskFacts, write_run_summary
from equiseg.steps.alerts import AlertPolicy, send_alert
from equiseg.steps.run_folder import run_dir_for

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


def _blocked_gate(job_dir: Path) -> None:
    """What the gate task leaves behind when it blocks: its verdict folder and its own facts output."""
    checks = [
        Check("floor.clean_miou", 41.0, 50.0, -9.0, False, "clean mIoU 41.00 is below the floor 50.00"),
        Check("floor.emm_avg", 30.0, 20.0, 10.0, True, "EMM avg 30.00 clears 20.00"),
    ]
    verdict = GateVerdict(passed=False, checks=checks, mode="enabled", first_run=True)
    folder = job_dir / "gate" / "verdict"
    folder.mkdir(parents=True)
    (folder / "gate.json").write_text(json.dumps(verdict.to_dict()))
    (folder / "gate.md").write_text("# gate\n")
    facts = TaskFacts()
    facts.report("gate_verdict", "gate", folder, folder / "gate.md")
    failing = [{"name": c.name, "value": c.value, "threshold": c.threshold, "reason": c.reason} for c in checks[:1]]
    facts.record(gate_decision=verdict.headline(), gate_passed=False, gate_failing_checks=failing)
    facts.write(job_dir / "gate" / "facts", "gate")


def _summary(cfg: Any, job_dir: Path, state: str, **kwargs: Any) -> Path:
    """The exit handler's summary of the job whose task outputs are under ``job_dir``."""
    return write_run_summary(
        cfg,
        pipeline_run_id=RUN_ID,
        state=state,
        out_dir=job_dir / "run-summary" / "summary",
        task_outputs=job_dir,
        **kwargs,
    )


def test_blocked_gate_sends_verdict_failing_checks_and_report_links(cfg: Any, hook: Hook, tmp_path: Path) -> None:
    run_dir = run_dir_for(cfg, RUN_ID)
    _blocked_gate(tmp_path / "job")
    _summary(cfg, tmp_path / "job", "SUCCEEDED", alert_webhook=hook.url)
    assert len(hook.bodies) == 1
    alert = hook.bodies[0]
    assert alert["event"] == "gate_blocked" and alert["pipeline_run_id"] == RUN_ID
    assert "floor.clean_miou" in alert["verdict"]
    assert [c["name"] for c in alert["failing_checks"]] == ["floor.clean_miou"]
    assert alert["failing_checks"][0]["threshold"] == 50.0
    assert alert["reports"]["gate verdict"] == str(run_dir / "gate" / "gate.md")
    assert alert["reports"]["run summary"] == str(run_dir / "summary.md")


def test_failed_step_alerts_through_the_exit_handler_component(
    cfg: Any, hook: Hook, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the smoke profile's pipeline.output_dir (runs/) lands here
    status = SimpleNamespace(state="FAILED", error_message="task train failed: CUDA out of memory")
    summary = Artifact(name="summary", uri=str(tmp_path / "job" / "run-summary" / "summary"), metadata={})
    components.run_summary.python_func(
        profile="smoke", overrides=[], pipeline_run_id=RUN_ID, status=status, summary=summary, alert_webhook=hook.url
    )
    (alert,) = hook.bodies
    assert alert["event"] == "run_failed" and alert["state"] == "FAILED"
    assert alert["error"] == "task train failed: CUDA out of memory"
    assert alert["verdict"] == "not reached" and alert["failing_checks"] == []
    assert json.loads((Path(summary.path) / "summary.json").read_text())["state"] == "FAILED"
    assert not (tmp_path / "runs").exists()  # the exit handler writes only its own output


def test_webhook_from_the_environment_and_no_alert_for_a_good_run(
    cfg: Any, hook: Hook, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("EQUISEG_ALERT_WEBHOOK", hook.url)
    facts = TaskFacts()
    facts.record(gate_decision="passed (2 checks)", gate_passed=True)
    facts.write(tmp_path / "job" / "gate" / "facts", "gate")
    _summary(cfg, tmp_path / "job", "SUCCEEDED")
    assert hook.bodies == []
    _summary(cfg, tmp_path / "job", "FAILED", error_message="boom")
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
    cfg: Any, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    dead = Hook()
    url = dead.url
    dead.server.shutdown()
    dead.server.server_close()  # nothing listens on the port any more
    monkeypatch.setattr("equiseg.steps.alerts.time.sleep", lambda s: None)
    _blocked_gate(tmp_path / "job")
    with caplog.at_level("WARNING", logger="equiseg.steps.alerts"):
        summary = _summary(cfg, tmp_path / "job", "SUCCEEDED", alert_webhook=url)
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
