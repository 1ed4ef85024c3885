"""The retraining pipeline's steps as plain library functions (one per KFP component in ``components/``).

Each step takes the resolved config and small parameters, does its work through the capability modules, writes its
outputs under the run folder ``<pipeline.output_dir>/<run id>/`` and returns a small result the component maps to
KFP outputs. Keeping the steps here means they are typed, tested on CPU without KFP, and the components stay thin.

Steps also record what the user must see at the end of a run (dataset version, gate decision, registry state,
report paths) in ``<run dir>/facts.json``; the exit handler turns it into ``summary.json`` / ``summary.md``.
"""

from __future__ import annotations

import contextlib
import html
import json
import logging
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from equiseg.config import EquisegConfig, config_hash, save_config
from equiseg.provenance import git_commit

logger = logging.getLogger(__name__)

REPORT_LABELS = {
    "data_report": "data report",
    "robustness_report": "robustness report",
    "gate_verdict": "gate verdict",
    "model_card": "model card",
}


class DataValidationError(RuntimeError):
    """The data failed a blocking validation rule; the message is the validator's summary."""


# --------------------------------------------------------------------------------------------------------------------
# Run folder, facts and step timing
# --------------------------------------------------------------------------------------------------------------------


def run_dir_for(cfg: EquisegConfig, run_id: str) -> Path:
    """The folder holding everything one pipeline run writes."""
    if not run_id or "/" in run_id or run_id in (".", ".."):
        raise ValueError(f"run id {run_id!r} must be a plain folder name, e.g. smoke-20260101-030000")
    return Path(cfg.pipeline.output_dir).resolve() / run_id


def _merge_json(path: Path, updates: dict[str, Any]) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text()) if path.is_file() else {}
    for key, value in updates.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key].update(value)
        else:
            data[key] = value
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str))
    os.replace(tmp, path)
    return data


def record_facts(run_dir: Path, **facts: Any) -> dict[str, Any]:
    """Merge facts for the run summary into ``<run dir>/facts.json``."""
    run_dir.mkdir(parents=True, exist_ok=True)
    return _merge_json(run_dir / "facts.json", facts)


@contextlib.contextmanager
def timed_step(run_dir: Path, name: str) -> Iterator[None]:
    """Record the step's own wall time in ``facts.json`` (used by the pipeline-overhead benchmark)."""
    started = time.perf_counter()
    status = "failed"
    try:
        yield
        status = "succeeded"
    finally:
        record_facts(run_dir, steps={name: {"seconds": round(time.perf_counter() - started, 3), "status": status}})


def _step_dir(cfg: EquisegConfig, run_id: str, name: str) -> Path:
    folder = run_dir_for(cfg, run_id) / name
    folder.mkdir(parents=True, exist_ok=True)
    save_config(cfg, folder / "config.yaml")
    return folder


# --------------------------------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PreparedData:
    """The dataset written to the data root."""

    manifest: Path
    data_root: Path
    samples: int
    source: str

    def metadata(self) -> dict[str, Any]:
        """KFP artifact metadata: where the pixel files are, relative to which the manifest's paths resolve."""
        return {"data_root": str(self.data_root), "samples": self.samples, "source": self.source}


def prepare_data(cfg: EquisegConfig, *, source: str = "", ingest_root: str = "", run_id: str) -> PreparedData:
    """Generate the synthetic world (deterministic per seed) or ingest a real dataset into ``data.root``."""
    from equiseg.data import generate_from_config, ingest_dataset, read_manifest

    source = source or cfg.data.source
    data_root = Path(cfg.data.root).resolve()
    step_dir = _step_dir(cfg, run_id, "data")
    with timed_step(step_dir.parent, "prepare_data"):
        if source == "synthetic":
            manifest = generate_from_config(cfg.data, data_root)
        else:
            if not ingest_root:
                raise ValueError(f"data source {source!r} needs --ingest-root pointing at the dataset's folder")
            # A real dataset stays where it is; the manifest (paths relative to that root) goes to data.root.
            manifest = ingest_dataset(source, Path(ingest_root), data_root, progress=False)
            data_root = Path(ingest_root).resolve()
        samples = read_manifest(manifest).num_rows
    record_facts(step_dir.parent, data={"source": source, "root": str(data_root), "samples": samples})
    return PreparedData(manifest=Path(manifest), data_root=data_root, samples=samples, source=source)


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


def reference_profile_path(cfg: EquisegConfig) -> Path:
    """Statistics of the last accepted dataset version, the reference for drift checks."""
    return Path(cfg.pipeline.output_dir).resolve() / "reference" / "stats.json"


def validate_data(cfg: EquisegConfig, *, manifest: str | Path, data_root: str | Path, run_id: str) -> ValidatedData:
    """Validate the manifest and every pixel file; raise :class:`DataValidationError` on a blocking rule."""
    from equiseg.data import validate_dataset

    step_dir = _step_dir(cfg, run_id, "data")
    reference = reference_profile_path(cfg)
    with timed_step(step_dir.parent, "validate_data"):
        result = validate_dataset(
            Path(manifest),
            Path(data_root),
            step_dir,
            num_classes=cfg.data.num_classes,
            ignore_index=cfg.data.ignore_index,
            max_quarantine_fraction=cfg.data.quarantine_max_fraction,
            reference_profile=reference if reference.is_file() else None,
            drift_threshold=cfg.data.drift_threshold,
            workers=max(1, cfg.data.num_workers),
            progress=False,
        )
    record_facts(
        step_dir.parent,
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


@dataclass(frozen=True)
class VersionedData:
    """The DVC version of the data root."""

    version_id: str
    dvc_file: Path
    remote: str


def version_data(cfg: EquisegConfig, *, data_root: str | Path, run_id: str = "") -> VersionedData:
    """``dvc add`` + ``dvc push`` the data root; the ``.dir`` md5 is the dataset version id."""
    from equiseg.data import version_data as dvc_version

    root = Path(data_root).resolve()
    cwd = Path.cwd().resolve()
    # The data root is versioned inside the project (data.dvc beside the code) when it lies there; a dataset
    # elsewhere (a real one on a volume) is its own DVC project without SCM.
    repo_root = cwd if root.is_relative_to(cwd) and root != cwd else root.parent
    if run_id:
        with timed_step(run_dir_for(cfg, run_id), "version_data"):
            version = dvc_version(root, repo_root=repo_root, remote=cfg.data.dvc_remote)
        record_facts(run_dir_for(cfg, run_id), dataset_version=version.version_id)
    else:
        version = dvc_version(root, repo_root=repo_root, remote=cfg.data.dvc_remote)
    return VersionedData(version_id=version.version_id, dvc_file=Path(version.dvc_file), remote=version.remote_url)


# --------------------------------------------------------------------------------------------------------------------
# Tuning and training
# --------------------------------------------------------------------------------------------------------------------


def optuna_storage_for(cfg: EquisegConfig, run_id: str, storage: str = "") -> str:
    """The study storage: explicit > ``$EQUISEG_OPTUNA_STORAGE`` (a cluster secret) > ``tune.storage`` > sqlite in
    the run folder (one worker only; parallel workers need PostgreSQL)."""
    explicit = storage or os.environ.get("EQUISEG_OPTUNA_STORAGE", "") or cfg.tune.storage
    if explicit:
        return explicit
    return f"sqlite:///{run_dir_for(cfg, run_id) / 'tune' / 'optuna.db'}"


def study_name_for(cfg: EquisegConfig, run_id: str) -> str:
    """One Optuna study per pipeline run, shared by that run's workers."""
    return f"{cfg.tune.study_name}-{run_id}"


def create_study(cfg: EquisegConfig, *, run_id: str, storage: str = "") -> str:
    """Create the run's study (and the storage schema) once, before the workers fan out.

    Parallel workers that each create the schema of an empty PostgreSQL database race on ``CREATE TABLE``
    (``UniqueViolation``); one creator avoids that. Returns the study name.
    """
    import optuna

    from equiseg.tuning import make_storage

    name = study_name_for(cfg, run_id)
    step_dir = _step_dir(cfg, run_id, "tune")  # also where the default sqlite storage lives
    with timed_step(step_dir.parent, "create_study"):
        optuna.create_study(
            study_name=name,
            storage=make_storage(optuna_storage_for(cfg, run_id, storage)),
            direction="maximize",
            load_if_exists=True,
        )
    return name


def tune_worker(
    cfg: EquisegConfig,
    *,
    manifest: str | Path,
    data_root: str | Path,
    run_id: str,
    worker: int,
    trials: int,
    storage: str = "",
) -> int:
    """One tuning worker: ``trials`` trials of the run's shared study; returns the finished trials in the study."""
    from equiseg.tracking import Tracker
    from equiseg.tuning import run_study

    step_dir = _step_dir(cfg, run_id, "tune")
    tracker = Tracker(cfg.tracking)
    with timed_step(step_dir.parent, f"tune_worker_{worker}"):
        result = run_study(
            cfg.replace(**{"tune.study_name": study_name_for(cfg, run_id)}),
            manifest=Path(manifest),
            data_root=Path(data_root),
            out_dir=step_dir / f"worker-{worker}",
            trials=trials,
            storage=optuna_storage_for(cfg, run_id, storage),
            workers=1,
            tracker=tracker,
        )
    return int(result.n_trials)


def _best_trial_overrides(storage: str, study_name: str) -> list[str]:
    import optuna

    from equiseg.tuning import make_storage, overlay_overrides

    study = optuna.load_study(study_name=study_name, storage=make_storage(storage))
    if not study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        logger.warning("study %s has no completed trial; training with the profile's parameters", study_name)
        return []
    return overlay_overrides(study.best_trial.params)


def select_best_trial(cfg: EquisegConfig, *, run_id: str, storage: str = "") -> list[str]:
    """The best trial of the run's study as ``key=value`` overrides (empty if no trial completed)."""
    step_dir = _step_dir(cfg, run_id, "tune")
    with timed_step(step_dir.parent, "select_best_trial"):
        overrides = _best_trial_overrides(optuna_storage_for(cfg, run_id, storage), study_name_for(cfg, run_id))
    (step_dir / "best_overrides.json").write_text(json.dumps(overrides, indent=2))
    record_facts(step_dir.parent, tuned_overrides=overrides)
    return overrides


@dataclass(frozen=True)
class TrainedCandidate:
    """The trained candidate: its best checkpoint, MLflow run and logged model."""

    checkpoint: Path
    mlflow_run_id: str
    model_uri: str
    metrics: dict[str, float] = field(default_factory=dict)


def lineage_tags(cfg: EquisegConfig, *, run_id: str, dataset_version: str) -> dict[str, str]:
    """Tags that tie a run or model version to its data, code, pipeline run and config."""
    return {
        "equiseg.dataset_version": dataset_version,
        "equiseg.git_commit": git_commit(),
        "equiseg.pipeline_run_id": run_id,
        "equiseg.config_hash": config_hash(cfg),
        "equiseg.profile": cfg.profile,
    }


def train_candidate(
    cfg: EquisegConfig, *, manifest: str | Path, data_root: str | Path, run_id: str, dataset_version: str
) -> TrainedCandidate:
    """Train the candidate, logging to one MLflow run with lineage tags, then log the model from its checkpoint."""
    from equiseg.tracking import Tracker, train_tracked

    step_dir = _step_dir(cfg, run_id, "train")
    tracker = Tracker(cfg.tracking)
    tags = lineage_tags(cfg, run_id=run_id, dataset_version=dataset_version)
    with timed_step(step_dir.parent, "train"):
        # train_tracked logs config, lineage, metrics, curves and the best model into one run.
        result = train_tracked(
            cfg,
            manifest=Path(manifest),
            data_root=Path(data_root),
            out_dir=step_dir,
            tracker=tracker,
            show_progress=False,
            run_name=f"train-{run_id}",
            tags=tags,
        )
    run_id_ = result.mlflow_run_id
    if not result.model_uri:
        raise RuntimeError(f"training run {run_id_} logged no model; check the MLflow run for errors")
    model_uri = result.model_uri
    record_facts(step_dir.parent, mlflow_run_id=run_id_, model_uri=model_uri, train_metrics=result.metrics)
    return TrainedCandidate(
        checkpoint=Path(result.best_checkpoint),
        mlflow_run_id=str(run_id_),
        model_uri=model_uri,
        metrics={k: float(v) for k, v in result.metrics.items()},
    )


# --------------------------------------------------------------------------------------------------------------------
# Robustness, gate, registry
# --------------------------------------------------------------------------------------------------------------------


def eval_loader(cfg: EquisegConfig, manifest: str | Path, data_root: str | Path) -> Any:
    """The evaluation data every model of a run is scored on: the validation split, unshuffled, unaugmented."""
    from equiseg.data import make_loader

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
    run_id: str,
    mlflow_run_id: str = "",
) -> EvaluatedCandidate:
    """Run the configured robustness suite on the candidate; write the report and log the metrics to its run."""
    from equiseg.robustness import write_robustness_report
    from equiseg.robustness.evaluate import evaluate_configured
    from equiseg.tracking import Tracker, load_model

    step_dir = _step_dir(cfg, run_id, "robustness")
    with timed_step(step_dir.parent, "evaluate_robustness"):
        model = load_model(Path(checkpoint), device="cpu")
        result = evaluate_configured(cfg, model, eval_loader(cfg, manifest, data_root))
        paths = write_robustness_report(result, step_dir)
        metrics = result.summary_metrics()
        if mlflow_run_id:
            tracker = Tracker(cfg.tracking)
            tracker.log_to_run(
                mlflow_run_id,
                {f"robustness.{k}": v for k, v in metrics.items()},
                artifacts=step_dir,
                artifact_path="robustness",
            )
    record_facts(step_dir.parent, reports={"robustness_report": str(paths["html"])}, robustness=metrics)
    return EvaluatedCandidate(report_html=Path(paths["html"]), report_json=Path(paths["json"]), metrics=metrics)


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
    run_id: str,
    mlflow_run_id: str = "",
) -> GateDecision:
    """Re-score the champion on the same data and decide whether the candidate may be promoted."""
    from equiseg.promotion import run_gate

    step_dir = _step_dir(cfg, run_id, "gate")
    with timed_step(step_dir.parent, "gate"):
        verdict = run_gate(
            cfg,
            candidate=str(checkpoint),
            manifest=Path(manifest),
            data_root=Path(data_root),
            out_dir=step_dir,
            tracking_uri=None,
            mlflow_run_id=mlflow_run_id or None,
        )
    summary = verdict.headline() if hasattr(verdict, "headline") else ("passed" if verdict.passed else "blocked")
    record_facts(
        step_dir.parent,
        gate_decision=summary,
        gate_passed=bool(verdict.passed),
        reports={"gate_verdict": str(step_dir / "gate.md")},
    )
    return GateDecision(
        passed=bool(verdict.passed),
        json_path=step_dir / "gate.json",
        markdown_path=step_dir / "gate.md",
        summary=summary,
    )


def register_and_promote(
    cfg: EquisegConfig, *, run_id: str, mlflow_run_id: str, model_uri: str, dataset_version: str
) -> str:
    """Register the candidate with lineage tags, serving-check it, write its model card, then move the aliases.

    Returns the registered version. What the aliases do depends on ``gate.mode`` (enabled / dry_run / manual).
    """
    from equiseg.promotion import promote_candidate

    step_dir = _step_dir(cfg, run_id, "registry")
    gate_json = run_dir_for(cfg, run_id) / "gate" / "gate.json"
    heatmaps = sorted((run_dir_for(cfg, run_id) / "robustness").glob("*heatmap*.png"))
    stats = run_dir_for(cfg, run_id) / "data" / "stats.json"
    with timed_step(step_dir.parent, "register_and_promote"):
        outcome = promote_candidate(
            cfg,
            model_uri=model_uri,
            mlflow_run_id=mlflow_run_id,
            verdict_path=gate_json,
            lineage=lineage_tags(cfg, run_id=run_id, dataset_version=dataset_version),
            out_dir=step_dir,
            data_stats=json.loads(stats.read_text()) if stats.is_file() else None,
            heatmap=heatmaps[0] if heatmaps else None,
        )
    if outcome.promoted and stats.is_file():
        reference = reference_profile_path(cfg)
        reference.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(stats, reference)
    record_facts(
        step_dir.parent,
        registry=outcome.describe(),
        reports={"model_card": str(outcome.model_card)},
    )
    return str(outcome.version)


# --------------------------------------------------------------------------------------------------------------------
# Reports and summary
# --------------------------------------------------------------------------------------------------------------------


def _read_facts(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "facts.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def publish_reports(cfg: EquisegConfig, *, run_id: str, gate_passed: bool) -> Path:
    """Write ``<run dir>/index.html``: one self-contained page linking every report of the run."""
    run_dir = run_dir_for(cfg, run_id)
    facts = _read_facts(run_dir)
    reports: dict[str, str] = facts.get("reports", {})
    rows = "".join(
        f"<tr><th>{html.escape(REPORT_LABELS.get(key, key))}</th>"
        f"<td><a href='{html.escape(os.path.relpath(path, run_dir))}'>{html.escape(os.path.relpath(path, run_dir))}"
        f"</a></td></tr>"
        for key, path in reports.items()
    )
    robustness = facts.get("robustness", {})
    metric_rows = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{v:.2f}</td></tr>"
        for k, v in robustness.items()
        if isinstance(v, int | float)
    )
    decision = html.escape(str(facts.get("gate_decision", "not reached")))
    version = html.escape(str(facts.get("dataset_version", "-")))
    colour = "#1a7f37" if gate_passed else "#b42318"
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>equiseg run {html.escape(run_id)}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2rem;max-width:60rem}}table{{border-collapse:collapse}}
th,td{{text-align:left;padding:.3rem .8rem;border-bottom:1px solid #ddd}}.verdict{{color:{colour};font-weight:600}}
</style></head><body><h1>equiseg run {html.escape(run_id)}</h1>
<p>Profile <b>{html.escape(cfg.profile)}</b>, dataset version <code>{version}</code>,
model <code>{html.escape(cfg.model.name)}</code>.</p>
<p class="verdict">Gate: {decision}</p><p>Registry: {html.escape(str(facts.get("registry", "no change")))}</p>
<h2>Reports</h2><table>{rows}</table><h2>Robustness (candidate)</h2><table>{metric_rows}</table></body></html>"""
    out = run_dir / "index.html"
    out.write_text(page)
    record_facts(run_dir, reports={"index": str(out)})
    return out


def write_run_summary(cfg: EquisegConfig, *, run_id: str, state: str, error_message: str = "") -> Path:
    """Exit handler: ``summary.json`` and ``summary.md`` with the final state, even when a step failed."""
    run_dir = run_dir_for(cfg, run_id)
    facts = record_facts(run_dir, run_id=run_id, state=state, error=error_message)
    lines = [f"# equiseg run {run_id}: {state}", ""]
    if error_message:
        lines += [f"**Error:** {error_message}", ""]
    for key in ("dataset_version", "gate_decision", "registry", "mlflow_run_id", "model_uri"):
        if key in facts:
            lines.append(f"- {key.replace('_', ' ')}: {facts[key]}")
    for key, path in facts.get("reports", {}).items():
        lines.append(f"- {REPORT_LABELS.get(key, key)}: {path}")
    for name, step in facts.get("steps", {}).items():
        lines.append(f"- step {name}: {step['status']} in {step['seconds']} s")
    (run_dir / "summary.md").write_text("\n".join(lines) + "\n")
    (run_dir / "summary.json").write_text(json.dumps(facts, indent=2, default=str))
    return run_dir / "summary.md"


def read_run_summary(run_dir: Path) -> dict[str, Any]:
    """The facts and final state of a run (empty dict if the run never started)."""
    summary = run_dir / "summary.json"
    if summary.is_file():
        data: dict[str, Any] = json.loads(summary.read_text())
        return data
    return _read_facts(run_dir)
