"""Pipeline steps ``publish_reports`` and the exit handler's ``run_summary``: what a run tells its user."""

from __future__ import annotations

import html
import json
import os
from pathlib import Path
from typing import Any

from equiseg.config import EquisegConfig
from equiseg.pages import markdown_to_html
from equiseg.steps.alerts import alert_for_run
from equiseg.steps.run_folder import REPORT_LABELS, index_path, read_facts, record_facts, run_dir_for, summary_paths

__all__ = ["publish_reports", "read_run_summary", "write_run_summary"]

_PAGE_STYLE = """body{{font-family:system-ui,sans-serif;margin:2rem;max-width:60rem}}table{{border-collapse:collapse}}
th,td{{text-align:left;padding:.3rem .8rem;border-bottom:1px solid #ddd}}.verdict{{color:{colour};font-weight:600}}
"""


def _as_html(path: str) -> str:
    """The HTML page of a report: a Markdown report is rendered beside itself (``x.md`` -> ``x.html``)."""
    source = Path(path)
    if source.suffix != ".md" or not source.is_file():
        return path
    target = source.with_suffix(".html")
    title = source.stem.replace("_", " ")
    target.write_text(markdown_to_html(source.read_text(), title, base_dir=source.parent))
    return str(target)


def _report_rows(reports: dict[str, str], run_dir: Path) -> str:
    rows = []
    for key, raw in reports.items():
        path = _as_html(raw)
        rel = html.escape(os.path.relpath(path, run_dir))
        rows.append(f"<tr><th>{html.escape(REPORT_LABELS.get(key, key))}</th><td><a href='{rel}'>{rel}</a></td></tr>")
    return "".join(rows)


def publish_reports(cfg: EquisegConfig, *, pipeline_run_id: str, gate_passed: bool) -> Path:
    """Write ``<run dir>/index.html``: one self-contained page linking every report of the run."""
    run_dir = run_dir_for(cfg, pipeline_run_id)
    facts = read_facts(run_dir)
    rows = _report_rows(facts.get("reports", {}), run_dir)
    metric_rows = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{v:.2f}</td></tr>"
        for k, v in facts.get("robustness", {}).items()
        if isinstance(v, int | float)
    )
    decision = html.escape(str(facts.get("gate_decision", "not reached")))
    version = html.escape(str(facts.get("dataset_version", "-")))
    name = html.escape(pipeline_run_id)
    style = _PAGE_STYLE.format(colour="#1a7f37" if gate_passed else "#b42318")
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>equiseg run {name}</title>
<style>{style}</style></head><body><h1>equiseg run {name}</h1>
<p>Profile <b>{html.escape(cfg.profile)}</b>, dataset version <code>{version}</code>,
model <code>{html.escape(cfg.model.name)}</code>.</p>
<p class="verdict">Gate: {decision}</p><p>Registry: {html.escape(str(facts.get("registry", "no change")))}</p>
<h2>Reports</h2><table>{rows}</table><h2>Robustness (candidate)</h2><table>{metric_rows}</table></body></html>"""
    out = index_path(run_dir)
    out.write_text(page)
    record_facts(run_dir, reports={"index": str(out)})
    return out


def write_run_summary(
    cfg: EquisegConfig, *, pipeline_run_id: str, state: str, error_message: str = "", alert_webhook: str = ""
) -> Path:
    """Exit handler: ``summary.json`` and ``summary.md`` with the final state, even when a step failed.

    A failed run or a blocked gate is then announced to ``alert_webhook`` (else ``$EQUISEG_ALERT_WEBHOOK``) by
    :func:`equiseg.steps.alerts.alert_for_run`; a failure to notify is logged and never fails the exit handler.
    """
    run_dir = run_dir_for(cfg, pipeline_run_id)
    facts = record_facts(run_dir, pipeline_run_id=pipeline_run_id, state=state, error=error_message)
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
    summary_json, summary_md = summary_paths(run_dir)
    summary_md.write_text("\n".join(lines) + "\n")
    summary_json.write_text(json.dumps(facts, indent=2, default=str))
    alert_for_run(run_dir, facts, url=alert_webhook)
    return summary_md


def read_run_summary(run_dir: Path) -> dict[str, Any]:
    """The facts and final state of a run (empty dict if the run never started)."""
    summary_json, _ = summary_paths(run_dir)
    if summary_json.is_file():
        data: dict[str, Any] = json.loads(summary_json.read_text())
        return data
    return read_facts(run_dir)
