"""Pipeline step ``evaluate_robustness``: the configured robustness suite on the candidate (EQUISeg, arXiv
2509.24505: EMM, RMM, NM) and its report."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from equiseg.config import EquisegConfig
from equiseg.data import CLASS_NAMES, SYNTHETIC_CLASS_SET, make_loader, manifest_info, read_manifest
from equiseg.robustness import collect_examples, write_robustness_report
from equiseg.robustness.evaluate import evaluate_configured
from equiseg.robustness.protocols import subset_key
from equiseg.steps.run_folder import TaskFacts, output_folder
from equiseg.tracking import Tracker, load_model

__all__ = ["EvaluatedCandidate", "eval_loader", "evaluate_candidate", "example_slices", "report_class_names"]


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


def example_slices(modalities: tuple[str, ...] | list[str]) -> list[str]:
    """Slices of the report's prediction grid: clean, each modality alone, the first one missing, noise, a corruption.

    Missing-modality inputs are what EQUISeg (arXiv 2509.24505) is about, so a reviewer sees them, not only clean.
    """
    mods = list(modalities)
    slices = ["clean", *[f"emm/{m}" for m in mods]]
    if len(mods) > 1:
        slices.append(f"emm/{subset_key(mods[1:])}")
    slices.append("nm/mid")
    slices += [f"corrupt/{m}/{d}/s3" for m, d in (("rgb", "fog"), ("depth", "holes")) if m in mods]
    return slices


def report_class_names(manifest: str | Path, num_classes: int) -> tuple[str, ...] | None:
    """Class names for the report: the synthetic world's when the manifest declares that class set, else None."""
    info = manifest_info(read_manifest(Path(manifest)))
    if info.class_set.startswith(SYNTHETIC_CLASS_SET) and len(CLASS_NAMES) == num_classes:
        return tuple(CLASS_NAMES)
    return None


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
    out_dir: str | Path,
    mlflow_run_id: str = "",
    facts: TaskFacts | None = None,
) -> EvaluatedCandidate:
    """Run the configured robustness suite on the candidate; write the report into ``out_dir`` and log the metrics
    to its run."""
    facts = facts if facts is not None else TaskFacts()
    folder = output_folder(cfg, out_dir)
    with facts.timed("evaluate_robustness"):
        model = load_model(Path(checkpoint), device="cpu")
        loader = eval_loader(cfg, manifest, data_root)
        result = evaluate_configured(cfg, model, loader)
        examples = None
        if cfg.robustness.examples > 0:
            examples = collect_examples(
                model,
                loader,
                modalities=cfg.data.modalities,
                slices=example_slices(cfg.data.modalities),
                max_examples=cfg.robustness.examples,
                seed=cfg.robustness.seed,
                missing=result.meta["missing_mode"],
            )
        names = report_class_names(manifest, int(result.meta["num_classes"]))
        paths = write_robustness_report(result, folder, examples=examples, class_names=names)
        metrics = result.summary_metrics()
        if mlflow_run_id:
            Tracker(cfg.tracking).log_to_run(
                mlflow_run_id,
                {f"robustness.{k}": v for k, v in metrics.items()},
                artifacts=folder,
                artifact_path="robustness",
            )
    facts.report("robustness_report", "robustness", folder, paths["html"])
    facts.record(robustness=metrics)
    return EvaluatedCandidate(report_html=Path(paths["html"]), report_json=Path(paths["json"]), metrics=metrics)
