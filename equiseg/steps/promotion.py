"""Pipeline steps ``gate`` and ``register_and_promote``: the robustness gate against the champion, then
registration with lineage and the alias moves its mode allows (docs/gate.md)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from equiseg.config import EquisegConfig, config_hash
from equiseg.pages import markdown_to_html
from equiseg.promotion import promote_candidate, run_gate
from equiseg.steps.run_folder import TaskFacts, output_folder
from equiseg.steps.training import lineage_tags

__all__ = ["GateDecision", "gate_candidate", "register_and_promote"]


@dataclass(frozen=True)
class GateDecision:
    """The gate's verdict and where it was written."""

    passed: bool
    json_path: Path
    markdown_path: Path
    summary: str


def gate_candidate(
    cfg: EquisegConfig,
    *,
    checkpoint: str | Path,
    model_uri: str,
    manifest: str | Path,
    data_root: str | Path,
    out_dir: str | Path,
    mlflow_run_id: str = "",
    facts: TaskFacts | None = None,
) -> GateDecision:
    """Re-score the champion on the same data and decide whether the candidate may be promoted.

    The verdict folder ``out_dir`` (``gate.json``, ``gate.md``, ``gate.html``) is the gate task's output; the
    promotion task consumes it as its input.
    """
    facts = facts if facts is not None else TaskFacts()
    folder = output_folder(cfg, out_dir)
    with facts.timed("gate"):
        verdict = run_gate(
            cfg,
            candidate=str(checkpoint),
            manifest=Path(manifest),
            data_root=Path(data_root),
            out_dir=folder,
            tracking_uri=None,
            mlflow_run_id=mlflow_run_id or None,
            model_uri=model_uri or None,
        )
    summary = verdict.headline() if hasattr(verdict, "headline") else ("passed" if verdict.passed else "blocked")
    gate_json, gate_md = folder / "gate.json", folder / "gate.md"
    gate_html = gate_md.with_suffix(".html")
    facts.report("gate_verdict", "gate", folder, gate_html if gate_html.is_file() else gate_md)
    failing = [
        {k: getattr(c, k, None) for k in ("name", "value", "threshold", "reason")} for c in verdict.failed_checks
    ]
    facts.record(gate_decision=summary, gate_passed=bool(verdict.passed), gate_failing_checks=failing)
    return GateDecision(passed=bool(verdict.passed), json_path=gate_json, markdown_path=gate_md, summary=summary)


def _report_links(mlflow_run_id: str) -> dict[str, str]:
    """Where a reviewer finds, from the model version, the data it was trained on and why the gate let it through."""
    if not mlflow_run_id:
        return {}
    return {
        "equiseg.data_report": f"runs:/{mlflow_run_id}/data/report.html",
        "equiseg.gate_verdict": f"runs:/{mlflow_run_id}/gate/gate.md",
    }


def register_and_promote(
    cfg: EquisegConfig,
    *,
    pipeline_run_id: str,
    mlflow_run_id: str,
    model_uri: str,
    dataset_version: str,
    verdict_dir: str | Path,
    out_dir: str | Path,
    trained_config_hash: str = "",
    data_report_dir: str | Path | None = None,
    robustness_dir: str | Path | None = None,
    facts: TaskFacts | None = None,
) -> str:
    """Register the candidate with lineage tags, serving-check it, write its model card, then move the aliases.

    ``cfg`` must be the config the candidate was TRAINED with (the profile plus the tuned overrides, as the ``train``
    step resolved it): the card's training section and the ``config_hash`` lineage tag come from it, and the hash
    must equal ``trained_config_hash``, the train step's (docs/pipeline.md, "Lineage").

    Inputs are the upstream tasks' outputs: the gate's verdict folder (``gate.json``), the validation report folder
    (``stats.json`` for the card) and the robustness report folder (the heatmap). Returns the registered version.
    What the aliases do depends on ``gate.mode`` (enabled / dry_run / manual). The champion's MLflow run holds the
    statistics of its training data, the next run's drift reference (``equiseg.steps.validation``).
    """
    facts = facts if facts is not None else TaskFacts()
    folder = output_folder(cfg, out_dir)
    if trained_config_hash and trained_config_hash != config_hash(cfg):
        raise ValueError(
            f"the config to register ({config_hash(cfg)}) is not the one the model was trained with "
            f"({trained_config_hash}); pass the tuned overrides the train step used"
        )
    stats = Path(data_report_dir) / "stats.json" if data_report_dir else None
    heatmaps = sorted(Path(robustness_dir).glob("*heatmap*.png")) if robustness_dir else []
    with facts.timed("register_and_promote"):
        outcome = promote_candidate(
            cfg,
            model_uri=model_uri,
            mlflow_run_id=mlflow_run_id,
            verdict_path=Path(verdict_dir) / "gate.json",
            lineage=lineage_tags(cfg, pipeline_run_id=pipeline_run_id, dataset_version=dataset_version)
            | _report_links(mlflow_run_id),
            out_dir=folder,
            data_stats=json.loads(stats.read_text()) if stats is not None and stats.is_file() else None,
            heatmap=heatmaps[0] if heatmaps else None,
        )
    card = Path(outcome.model_card)
    card_html = card.with_suffix(".html")
    card_html.write_text(markdown_to_html(card.read_text(), card.stem.replace("_", " "), base_dir=card.parent))
    facts.report("model_card", "registry", folder, card)  # the index links card_html
    facts.record(registry=outcome.describe(), registered_version=str(outcome.version))
    return str(outcome.version)
