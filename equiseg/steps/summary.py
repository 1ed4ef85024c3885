"""Pipeline steps ``publish_reports`` and the exit handler's ``run_summary``: what a run tells its user.

Both read only their own inputs: ``publish_reports`` gets the gate's decision, the robustness metrics and the
dataset version from the upstream tasks; the exit handler, which KFP lets depend on no task, merges the facts every
task wrote into its own ``facts`` output (:func:`equiseg.steps.run_folder.collect_task_facts`).
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from equiseg.config import EquisegConfig
from equiseg.steps.alerts import alert_for_run
from equiseg.steps.run_folder import (
    REPORT_LABELS,
    RUN_REPORTS,
    TaskFacts,
    collect_task_facts,
    merge_facts,
    resolve_reports,
    run_dir_for,
    summary_paths,
)

__all__ = ["publish_reports", "read_run_summary", "write_run_summary"]

_PAGE_STYLE = """body{{font-family:system-ui,sans-serif;margin:2rem;max-width:60rem}}table{{border-collapse:collapse}}
th,td{{text-align:left;padding:.3rem .8rem;border-bottom:1px solid #ddd}}.verdict{{color:{colour};font-weight:600}}
"""


def publish_reports(
    cfg: EquisegConfig,
    *,
    pipeline_run_id: str,
    gate_passed: bool,
    out_path: str | Path,
    gate_decision: str = "not reached",
    robustness: Mapping[str, Any] | None = None,
    dataset_version: str = "",
    registered_version: str = "",
    facts: TaskFacts | None = None,
) -> Path:
    """Write the run's index page to ``out_path``: one self-contained page linking every report of the run.

    Links are relative to the run folder (``index.html`` sits at its top).
    """
    facts = facts if facts is not None else TaskFacts()
    links = {k: v for k, v in RUN_REPORTS.items() if k != "model_card" or registered_version}
    rows = "".join(
        f"<tr><th>{html.escape(REPORT_LABELS.get(k, k))}</th><td><a href='{html.escape(v)}'>{html.escape(v)}</a></td>"
        "</tr>"
        for k, v in links.items()
    )
    metric_rows = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{v:.2f}</td></tr>"
        for k, v in dict(robustness or {}).items()
        if isinstance(v, int | float)
    )
    registry = f"version {registered_version} registered" if registered_version else "no change"
    name = html.escape(pipeline_run_id)
    style = _PAGE_STYLE.format(colour="#1a7f37" if gate_passed else "#b42318")
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>equiseg run {name}</title>
<style>{style}</style></head><body><h1>equiseg run {name}</h1>
<p>Profile <b>{html.escape(cfg.profile)}</b>, dataset version <code>{html.escape(dataset_version or "-")}</code>,
model <code>{html.escape(cfg.model.name)}</code>.</p>
<p class="verdict">Gate: {html.escape(gate_decision)}</p><p>Registry: {html.escape(registry)}</p>
<h2>Reports</h2><table>{rows}</table><h2>Robustness (candidate)</h2><table>{metric_rows}</table></body></html>"""
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page)
    facts.record(reports={"index": "index.html"})
    return out


def write_run_summary(
    cfg: EquisegConfig,
    *,
    pipeline_run_id: str,
    state: str,
    out_dir: str | Path,
    task_outputs: str | Path | None = None,
    error_message: str = "",
    alert_webhook: str = "",
) -> Path:
    """Exit handler: ``summary.json`` and ``summary.md`` in ``out_dir`` with the final state, even when a step failed.

    The facts are every task's own facts found under ``task_outputs`` (the pipeline job's outputs; on a local
    runner the exit handler's output folder sits beside them). A failed run or a blocked gate is then announced to
    ``alert_webhook`` (else ``$EQUISEG_ALERT_WEBHOOK``) by :func:`equiseg.steps.alerts.alert_for_run`; a failure to
    notify is logged and never fails the exit handler.
    """
    tasks = collect_task_facts(Path(task_outputs)) if task_outputs and Path(task_outputs).is_dir() else {}
    facts = merge_facts([tasks, {"pipeline_run_id": pipeline_run_id, "state": state, "error": error_message}])
    facts.setdefault("registry", _registry_outcome(facts))
    lines = [f"# equiseg run {pipeline_run_id}: {state}", ""]
    if error_message:
        lines += [f"**Error:** {error_message}", ""]
    for key in ("dataset_version", "gate_decision", "registry", "mlflow_run_id", "model_uri"):
        if key in facts:
            lines.append(f"- {key.replace('_', ' ')}: {facts[key]}")
    for key, path in facts.get("reports", {}).items():
        lines.append(f"- {REPORT_LABELS.get(key, key)}: {path}")
    for name, step in facts.get("steps", {}).items():
        lines.append(f"- step {name}: {step['status']} in {step['seconds']} s")
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    summary_json, summary_md = summary_paths(folder)
    summary_md.write_text("\n".join(lines) + "\n")
    summary_json.write_text(json.dumps(facts, indent=2, default=str))
    alert_for_run(run_dir_for(cfg, pipeline_run_id), facts, url=alert_webhook)
    return summary_md


def _registry_outcome(facts: Mapping[str, Any]) -> str:
    """What this run did to the registry when its registration step did not run (it records its own outcome)."""
    if facts.get("gate_passed") is False:
        return "nothing registered: the gate blocked the candidate (the champion stays)"
    if facts.get("error") or str(facts.get("state", "")).upper() == "FAILED":
        return "nothing registered: the run failed before registration"
    return "nothing registered"


def read_run_summary(run_dir: Path) -> dict[str, Any]:
    """The facts and final state of a run folder, report paths made absolute (empty dict if the run never started)."""
    summary_json, _ = summary_paths(run_dir)
    facts_json = run_dir / "facts.json"
    for path in (summary_json, facts_json):
        if path.is_file():
            data: dict[str, Any] = json.loads(path.read_text())
            return resolve_reports(data, run_dir)
    return {}
