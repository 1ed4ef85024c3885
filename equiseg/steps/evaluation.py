"""Pipeline step ``evaluate_robustness``: the configured robustness suite on the candidate (EQUISeg, arXiv
2509.24505: EMM, RMM, NM) and its report."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from equiseg.config import EquisegConfig
from equiseg.data import make_loader
from equiseg.robustness import write_robustness_report
from equiseg.robustness.evaluate import evaluate_configured
from equiseg.steps.run_folder import record_facts, step_dir, timed_step
from equiseg.tracking import Tracker, load_model

__all__ = ["EvaluatedCandidate", "eval_loader", "evaluate_candidate"]


def eval_loader(cfg: EquisegConfig, manifest: str | Path, data_root: str | Path) -> Any:
    """The evaluation data every model of a run is scored on: the validation split, unshuffled, unaugmented."""
    return make_loader(
        Path(manifest),
        Path(data_root),
        modalities=cfg.data.modalities,
        split="val",
        batch_size=cfg.robustness.batch_size,
        shuffle=False,
        num_workers=0,
    )


@dataclass(frozen=True)
class EvaluatedCandidate:
    """The candidate's robustness report and headline metrics."""

    report_html: Path
    report_json: Path
    metrics: dict[str, float]


def evaluate_candidate(
    cfg: EquisegConfig,
    *,
    checkpoint: str | Path,
    manifest: str | Path,
    data_root: str | Path,
    pipeline_run_id: str,
    mlflow_run_id: str = "",
) -> EvaluatedCandidate:
    """Run the configured robustness suite on the candidate; write the report and log the metrics to its run."""
    folder = step_dir(cfg, pipeline_run_id, "robustness")
    with timed_step(folder.parent, "evaluate_robustness"):
        model = load_model(Path(checkpoint), device="cpu")
        result = evaluate_configured(cfg, model, eval_loader(cfg, manifest, data_root))
        paths = write_robustness_report(result, folder)
        metrics = result.summary_metrics()
        if mlflow_run_id:
            Tracker(cfg.tracking).log_to_run(
                mlflow_run_id,
                {f"robustness.{k}": v for k, v in metrics.items()},
                artifacts=folder,
                artifact_path="robustness",
            )
    record_facts(folder.parent, reports={"robustness_report": str(paths["html"])}, robustness=metrics)
    return EvaluatedCandidate(report_html=Path(paths["html"]), report_json=Path(paths["json"]), metrics=metrics)
