"""Alerts: tell someone when a scheduled run is blocked by the gate or fails (docs/operations.md, "Alerts").

The exit handler (:func:`equiseg.steps.write_run_summary`) calls :func:`alert_for_run` with the run's facts. When
the gate blocked the candidate or the run did not succeed, a JSON document (verdict, failing checks, links to the
reports) is POSTed to the configured webhook with bounded retries and exponential backoff. Notifying is best
effort: every failure is logged and :func:`send_alert` returns ``False``; it never raises into the run.

The webhook comes from the ``alert_webhook`` argument (the pipeline parameter of the same name) or, when that is
empty, from ``$EQUISEG_ALERT_WEBHOOK``; with neither there is nothing to send. Standard library HTTP only, so the
alert works in any image.
"""

from __future__ import annotations

import json
import logging
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from equiseg.steps.run_folder import REPORT_LABELS, resolve_reports

__all__ = ["ALERT_ENV", "AlertPolicy", "alert_for_run", "build_alert", "send_alert", "webhook_url"]

logger = logging.getLogger(__name__)

#: Environment variable holding the webhook URL when no explicit one is given.
ALERT_ENV = "EQUISEG_ALERT_WEBHOOK"
#: KFP's final states that mean the run did not finish as planned.
_FAILED_STATES = {"FAILED", "ERROR", "CANCELED", "CANCELLED"}


@dataclass(frozen=True)
class AlertPolicy:
    """How hard to try: ``attempts`` POSTs at most, ``timeout_s`` each, waiting ``backoff_s * 2**k`` between."""

    attempts: int = 4
    timeout_s: float = 10.0
    backoff_s: float = 1.0


def webhook_url(explicit: str | None = None) -> str:
    """The webhook to notify: ``explicit`` if non-empty, else ``$EQUISEG_ALERT_WEBHOOK``, else ``""`` (none)."""
    return (explicit or os.environ.get(ALERT_ENV, "")).strip()


def build_alert(run_dir: Path, facts: Mapping[str, Any]) -> dict[str, Any] | None:
    """The alert document for a finished run, or ``None`` when the run succeeded and the gate did not block.

    Fields: ``event`` (``run_failed`` or ``gate_blocked``), ``pipeline_run_id``, ``state``, ``verdict`` (the gate's
    headline or ``not reached``), ``failing_checks`` (name, value, threshold, reason, as the gate task recorded
    them), ``error``, ``reports`` (label -> path in the run folder ``run_dir``, the run summary and index page
    included).
    """
    state = str(facts.get("state", "")).upper()
    failed = state in _FAILED_STATES
    blocked = facts.get("gate_passed") is False
    if not (failed or blocked):
        return None
    resolved = resolve_reports(facts, run_dir).get("reports", {})
    reports = {REPORT_LABELS.get(k, k): str(v) for k, v in dict(resolved).items()}
    reports.setdefault("run summary", str(run_dir / "summary.md"))
    return {
        "event": "run_failed" if failed else "gate_blocked",
        "pipeline_run_id": facts.get("pipeline_run_id", run_dir.name),
        "state": state or "UNKNOWN",
        "verdict": str(facts.get("gate_decision", "not reached")),
        "failing_checks": list(facts.get("gate_failing_checks", [])),
        "error": str(facts.get("error", "")),
        "reports": reports,
        "dataset_version": facts.get("dataset_version"),
        "model_uri": facts.get("model_uri"),
    }


def send_alert(
    url: str,
    payload: Mapping[str, Any],
    policy: AlertPolicy = AlertPolicy(),
    *,
    sleep: Callable[[float], None] = time.sleep,
) -> bool:
    """POST ``payload`` as JSON to ``url``; retry on network errors, 5xx and 429. Never raises.

    Returns:
        True once the server answered 2xx; False after the last failed attempt or on a 4xx (a request the server
        will never accept; retrying would not help). Each failure is logged with the URL and the reason.
    """
    body = json.dumps(payload, default=str).encode()
    headers = {"Content-Type": "application/json", "User-Agent": "equiseg-alerts"}
    for attempt in range(1, max(1, policy.attempts) + 1):
        request = urllib.request.Request(url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=policy.timeout_s) as response:
                logger.info("alert sent to %s (HTTP %s)", url, response.status)
                return True
        except urllib.error.HTTPError as exc:
            reason = f"HTTP {exc.code}"
            if exc.code < 500 and exc.code != 429:
                logger.error("alert to %s refused (%s); fix the webhook URL or its token", url, reason)
                return False
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = str(getattr(exc, "reason", exc))
        logger.warning("alert to %s failed (attempt %d/%d): %s", url, attempt, policy.attempts, reason)
        if attempt < policy.attempts:
            sleep(policy.backoff_s * 2 ** (attempt - 1))
    logger.error("alert to %s not delivered after %d attempts; the run itself is unaffected", url, policy.attempts)
    return False


def alert_for_run(
    run_dir: Path, facts: Mapping[str, Any], *, url: str | None = None, policy: AlertPolicy = AlertPolicy()
) -> bool | None:
    """Send the run's alert if it needs one: None when nothing was due (or no webhook is set), else delivered."""
    payload = build_alert(run_dir, facts)
    target = webhook_url(url)
    if payload is None:
        return None
    if not target:
        logger.info("run %s needs an alert (%s) but no webhook is set (%s)", run_dir.name, payload["event"], ALERT_ENV)
        return None
    try:
        return send_alert(target, payload, policy)
    except Exception:  # a bug in notifying must never fail the run: log it with its traceback
        logger.exception("sending the alert for run %s failed", run_dir.name)
        return False
