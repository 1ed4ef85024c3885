"""Pipeline step ``validate_data``: manifest rules as a great-expectations suite, pixel checks, quarantine, drift
against the last accepted version (docs/data.md)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import mlflow
from mlflow.exceptions import MlflowException

from equiseg.config import EquisegConfig
from equiseg.data import validate_dataset
from equiseg.expectations import run_manifest_suite
from equiseg.promotion.versions import CHAMPION, alias_version, open_client
from equiseg.steps.run_folder import TaskFacts, output_folder
from equiseg.tracking import resolve_tracking_uri

__all__ = ["DataValidationError", "ValidatedData", "champion_data_stats", "validate_data"]

logger = logging.getLogger(__name__)

#: Where the train step logs the validation statistics in its MLflow run (``equiseg.steps.training``).
CHAMPION_STATS_ARTIFACT = "data/stats.json"


class DataValidationError(RuntimeError):
    """The data failed a blocking validation rule; the message is the validator's summary."""


@dataclass(frozen=True)
class ValidatedData:
    """What the validation step hands on: the accepted manifest, the report and the headline numbers."""

    validated_path: Path
    report_path: Path
    summary: str
    n_validated: int
    n_quarantined: int
    n_input: int

    def metrics(self) -> dict[str, float]:
        """Headline numbers for the KFP Metrics artifact."""
        return {
            "samples_in": float(self.n_input),
            "samples_validated": float(self.n_validated),
            "samples_quarantined": float(self.n_quarantined),
        }


def champion_data_stats(cfg: EquisegConfig, dst_dir: Path) -> Path | None:
    """The champion's training data statistics (``data/stats.json`` of its MLflow run): the drift reference.

    ``None`` when there is no champion yet, its run logged no statistics, or the local sqlite store does not exist
    (a first run: nothing was ever registered).
    """
    uri = resolve_tracking_uri(cfg.tracking.uri)
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
        return None
    client = open_client(uri)
    version = alias_version(client, cfg.gate.model_name, CHAMPION)
    if version is None:
        return None
    run_id = client.get_model_version(cfg.gate.model_name, version).run_id
    if not run_id:
        return None
    try:
        path = mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path=CHAMPION_STATS_ARTIFACT, dst_path=str(dst_dir), tracking_uri=uri
        )
    except (MlflowException, OSError) as exc:
        logger.warning("champion version %s has no %s (%s); drift unchecked", version, CHAMPION_STATS_ARTIFACT, exc)
        return None
    return Path(path)


def validate_data(
    cfg: EquisegConfig,
    *,
    manifest: str | Path,
    data_root: str | Path,
    out_dir: str | Path,
    facts: TaskFacts | None = None,
) -> ValidatedData:
    """Validate the manifest and every pixel file into ``out_dir``; raise :class:`DataValidationError` on a
    blocking rule. Drift is measured against the champion's training data (:func:`champion_data_stats`)."""
    facts = facts if facts is not None else TaskFacts()
    folder = output_folder(cfg, out_dir)
    with facts.timed("validate_data"):
        reference = champion_data_stats(cfg, folder / "reference")
        result = validate_dataset(
            Path(manifest),
            Path(data_root),
            folder,
            num_classes=cfg.data.num_classes,
            ignore_index=cfg.data.ignore_index,
            max_quarantine_fraction=cfg.data.quarantine_max_fraction,
            reference_profile=reference,
            drift_threshold=cfg.data.drift_threshold,
            workers=max(1, cfg.data.num_workers),
            progress=False,
            manifest_checks=run_manifest_suite,
        )
    facts.report("data_report", "data", folder, result.report_path)
    facts.record(
        data={"validated": result.rows_validated, "quarantined": result.rows_quarantined, "validation": result.summary}
    )
    if not result.passed:
        raise DataValidationError(f"data validation blocked the run: {result.summary} (report: {result.report_path})")
    return ValidatedData(
        validated_path=Path(result.validated_path),
        report_path=Path(result.report_path),
        summary=result.summary,
        n_validated=result.rows_validated,
        n_quarantined=result.rows_quarantined,
        n_input=result.rows_in,
    )
