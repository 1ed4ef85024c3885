"""Pipeline step ``validate_data``: manifest rules as a great-expectations suite, pixel checks, quarantine, drift
against the last accepted version (docs/data.md)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from equiseg.config import EquisegConfig
from equiseg.data import validate_dataset
from equiseg.expectations import run_manifest_suite
from equiseg.steps.run_folder import record_facts, reference_profile_path, step_dir, timed_step

__all__ = ["DataValidationError", "ValidatedData", "validate_data"]


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


def validate_data(
    cfg: EquisegConfig, *, manifest: str | Path, data_root: str | Path, pipeline_run_id: str
) -> ValidatedData:
    """Validate the manifest and every pixel file; raise :class:`DataValidationError` on a blocking rule."""
    folder = step_dir(cfg, pipeline_run_id, "data")
    reference = reference_profile_path(cfg)
    with timed_step(folder.parent, "validate_data"):
        result = validate_dataset(
            Path(manifest),
            Path(data_root),
            folder,
            num_classes=cfg.data.num_classes,
            ignore_index=cfg.data.ignore_index,
            max_quarantine_fraction=cfg.data.quarantine_max_fraction,
            reference_profile=reference if reference.is_file() else None,
            drift_threshold=cfg.data.drift_threshold,
            workers=max(1, cfg.data.num_workers),
            progress=False,
            manifest_checks=run_manifest_suite,
        )
    record_facts(
        folder.parent,
        reports={"data_report": str(result.report_path)},
        data={"validated": result.rows_validated, "quarantined": result.rows_quarantined, "validation": result.summary},
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
