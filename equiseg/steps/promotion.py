"""Pipeline steps ``gate`` and ``register_and_promote``: the robustness gate against the champion, then
registration with lineage and the alias moves its mode allows (docs/gate.md)."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from equiseg.config import EquisegConfig, config_hash
from equiseg.promotion import promote_candidate, run_gate
from equiseg.steps.run_folder import (
    data_stats_path,
    gate_paths,
    read_facts,
    record_facts,
    reference_profile_path,
    robustness_heatmap_path,
    run_dir_for,
    step_dir,
    timed_step,
)
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
    pipeline_run_id: str,
    mlflow_run_id: str = "",
) -> GateDecision:
    """Re-score the champion on the same data and decide whether the candidate may be promoted."""
    folder = step_dir(cfg, pipeline_run_id, "gate")
    with timed_step(folder.parent, "gate"):
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
    gate_json, gate_md = gate_paths(folder.parent)
    gate_html = gate_md.with_suffix(".html")
    record_facts(
        folder.parent,
        gate_decision=summary,
        gate_passed=bool(verdict.passed),
        reports={"gate_verdict": str(gate_html if gate_html.is_file() else gate_md)},
    )
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
    cfg: EquisegConfig, *, pipeline_run_id: str, mlflow_run_id: str, model_uri: str, dataset_version: str
) -> str:
    """Register the candidate with lineage tags, serving-check it, write its model card, then move the aliases.

    ``cfg`` must be the config the candidate was TRAINED with (the profile plus the tuned overrides, as the ``train``
    step resolved it): the card's training section and the ``config_hash`` lineage tag come from it, and the hash
    must equal the training run's ``equiseg.config_hash`` tag (docs/pipeline.md, "Lineage").

    Returns the registered version. What the aliases do depends on ``gate.mode`` (enabled / dry_run / manual).
    A promoted candidate's dataset statistics become the reference profile for the next run's drift check.
    """
    folder = step_dir(cfg, pipeline_run_id, "registry")
    run_dir = run_dir_for(cfg, pipeline_run_id)
    trained_hash = read_facts(run_dir).get("train_config_hash")
    if trained_hash and trained_hash != config_hash(cfg):
        raise ValueError(
            f"the config to register ({config_hash(cfg)}) is not the one the model was trained with ({trained_hash}); "
            "pass the tuned overrides the train step used"
        )
    stats = data_stats_path(run_dir)
    with timed_step(run_dir, "register_and_promote"):
        outcome = promote_candidate(
            cfg,
            model_uri=model_uri,
            mlflow_run_id=mlflow_run_id,
            verdict_path=gate_paths(run_dir)[0],
            lineage=lineage_tags(cfg, pipeline_run_id=pipeline_run_id, dataset_version=dataset_version)
            | _report_links(mlflow_run_id),
            out_dir=folder,
            data_stats=json.loads(stats.read_text()) if stats.is_file() else None,
            heatmap=robustness_heatmap_path(run_dir),
        )
    if outcome.promoted and stats.is_file():
        reference = reference_profile_path(cfg)
        reference.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(stats, reference)
    record_facts(run_dir, registry=outcome.describe(), reports={"model_card": str(outcome.model_card)})
    return str(outcome.version)
