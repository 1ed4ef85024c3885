"""MLflow runs: :class:`Tracker`, the only class of equiseg that logs to MLflow runs (docs/design.md).

* :class:`Tracker` resolves ``tracking.uri`` (relative ``sqlite:///runs/mlflow.db`` paths against the working
  directory), creates the experiment with its ``artifact_location``, and wraps every MLflow call in bounded
  retries with exponential backoff; when the server stays unreachable it raises :class:`TrackingError` saying so.
  Training writes its checkpoints before it logs, so a tracking outage never costs a checkpoint.
* Runs carry the flattened config as params (chunked to MLflow's batch limit), the resolved YAML as an artifact,
  lineage tags (dataset version, git commit, pipeline run id), per-step and per-epoch metrics, system metrics,
  figures (curves, sample predictions) and the model (:mod:`equiseg.tracking.models`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import mlflow
import torch
from matplotlib.figure import Figure
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH, MAX_PARAMS_TAGS_PER_BATCH
from sqlalchemy.exc import OperationalError
from torch import nn

import equiseg
from equiseg import provenance
from equiseg.config import EquisegConfig, TrackingConfig, config_hash, config_to_yaml, flatten_config
from equiseg.tracking.figures import curves_figure, predictions_figure
from equiseg.tracking.models import (
    ENTRY_SCRIPT,
    checkpoint_signature,
    input_example,
    is_model_uri,
    load_model,
    pinned_requirements,
)
from equiseg.tracking.pending import flush_pending_ends, record_pending_end
from equiseg.tracking.store import TrackingError, configure_store, resolve_artifact_location, resolve_tracking_uri
from equiseg.training.checkpoint import load_checkpoint

__all__ = ["Tracker"]

logger = logging.getLogger(__name__)
T = TypeVar("T")

#: MLflow error codes that mean "your request is wrong", not "try again".
_PERMANENT_ERRORS = {"INVALID_PARAMETER_VALUE", "RESOURCE_ALREADY_EXISTS", "RESOURCE_DOES_NOT_EXIST", "BAD_REQUEST"}
#: Experiment tag the MLflow UI reads to pick the experiment's landing page (runs and models vs GenAI traces).
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
#: Non-MLflow exceptions worth retrying: network and database hiccups (other errors are bugs and propagate).
_TRANSIENT_ERRORS: tuple[type[Exception], ...] = (OSError, ConnectionError, TimeoutError, OperationalError)


def _known(commit: str) -> str | None:
    return None if commit == "unknown" else commit


class Tracker:
    """MLflow runs for one experiment, with bounded retries (see the module docstring).

    Args:
        cfg: the ``tracking:`` section.
        experiment: experiment name; default ``cfg.experiment`` (one experiment per pipeline).
    """

    def __init__(self, cfg: TrackingConfig, *, experiment: str | None = None) -> None:
        self.cfg = cfg
        self.uri = resolve_tracking_uri(cfg.uri)
        self.artifact_location = resolve_artifact_location(cfg.artifact_location)
        self.experiment_name = experiment or cfg.experiment
        if self.uri.startswith(("http://", "https://")):
            # Our own retry loop governs; MLflow's default (7 retries, factor 2) would stall for minutes.
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
        self.client = MlflowClient(tracking_uri=self.uri)
        self._experiment_id: str | None = None

    # ---------------------------------------------------------------------------------------------------------------
    # plumbing
    # ---------------------------------------------------------------------------------------------------------------

    def _call(self, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn`` with ``cfg.retries`` retries and exponential backoff; raise :class:`TrackingError` at the end."""
        attempts = max(1, self.cfg.retries + 1)
        for attempt in range(attempts):
            try:
                return fn(*args, **kwargs)
            except MlflowException as exc:
                if exc.error_code in _PERMANENT_ERRORS:
                    raise TrackingError(f"MLflow refused {what}: {exc.message}") from exc
                error: Exception = exc
            except _TRANSIENT_ERRORS as exc:
                error = exc
            if attempt + 1 < attempts:
                delay = self.cfg.backoff_s * (2**attempt)
                logger.warning(
                    "MLflow %s failed (%s); retry %d/%d in %.1fs", what, error, attempt + 1, attempts - 1, delay
                )
                time.sleep(delay)
        raise TrackingError(
            f"MLflow at {self.uri} failed while {what} after {attempts} attempt(s): {error}. Check tracking.uri "
            "(--set tracking.uri=...) and that the server is up; checkpoints already on disk are unaffected"
        ) from error

    @property
    def experiment_id(self) -> str:
        """Id of the experiment, created (with ``artifact_location``) on first use."""
        if self._experiment_id is None:
            self._experiment_id = self._call("creating the experiment", self._get_or_create_experiment)
        return self._experiment_id

    def _get_or_create_experiment(self) -> str:
        found = self.client.get_experiment_by_name(self.experiment_name)
        if found is not None:
            return str(found.experiment_id)
        try:
            # The experiment kind makes the MLflow UI open on runs and models, not on its GenAI (traces) page.
            return str(
                self.client.create_experiment(
                    self.experiment_name,
                    artifact_location=self.artifact_location,
                    tags={EXPERIMENT_KIND_TAG: "custom_model_development"},
                )
            )
        except MlflowException as exc:  # another worker created it first
            found = self.client.get_experiment_by_name(self.experiment_name)
            if found is None:
                raise exc
            return str(found.experiment_id)

    # ---------------------------------------------------------------------------------------------------------------
    # runs
    # ---------------------------------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def start_run(
        self,
        run_name: str | None = None,
        *,
        nested: bool = False,
        parent_run_id: str | None = None,
        tags: Mapping[str, str] | None = None,
        reuse_active: bool = False,
    ) -> Iterator[str]:
        """Open a run (yields its id) and end it FINISHED, FAILED or KILLED.

        Args:
            run_name: display name.
            nested: a child of the active run (or of ``parent_run_id``), e.g. one Optuna trial.
            parent_run_id: parent for a nested run opened in another process (parallel tuning workers).
            tags: extra tags.
            reuse_active: when a run is already active in this process, log into it and leave it open.
        """
        configure_store(self.uri)
        active = mlflow.active_run()
        if reuse_active and active is not None:
            yield active.info.run_id
            return
        with contextlib.suppress(Exception):  # ends an earlier outage left pending (equiseg.tracking.pending)
            flush_pending_ends(self.uri, lambda run_id, status, end: self.client.set_terminated(run_id, status, end))
        system_metrics = self.cfg.log_system_metrics and not (nested or parent_run_id)
        run = self._call(
            "starting a run",
            mlflow.start_run,
            experiment_id=self.experiment_id,
            run_name=run_name,
            nested=nested or parent_run_id is not None,
            parent_run_id=parent_run_id,
            tags=dict(tags or {}),
            log_system_metrics=system_metrics,
        )
        status = "FINISHED"
        try:
            yield run.info.run_id
        except KeyboardInterrupt:
            status = "KILLED"
            raise
        except BaseException:
            status = "FAILED"
            raise
        finally:
            self._end_run(run.info.run_id, status)

    def _end_run(self, run_id: str, status: str) -> None:
        """End the run with ``status``, retrying through a tracking outage (a run must not stay RUNNING).

        The terminal status is written with the client and the retries of ``tracking.retries``; only then is the
        run popped from MLflow's active-run stack. If the store stays unreachable, the end is recorded on disk and
        written when the next run on this tracking URI starts (:mod:`equiseg.tracking.pending`).
        """
        try:
            self._call("ending the run", self.client.set_terminated, run_id, status)
        except TrackingError as exc:
            ledger = record_pending_end(self.uri, run_id, status)
            logger.error(
                "MLflow run %s could not be marked %s (%s); the end is kept in %s and written when the next run "
                "on %s starts", run_id, status, exc, ledger, self.uri,
            )  # fmt: skip
        with contextlib.suppress(Exception):
            mlflow.end_run(status)

    @property
    def active_run_id(self) -> str | None:
        """Id of the active run in this process, if any."""
        run = mlflow.active_run()
        return run.info.run_id if run is not None else None

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Log params in batches of MLflow's limit; long values are truncated to its maximum length."""
        items = [(str(k), str(v)[:MAX_PARAM_VAL_LENGTH]) for k, v in params.items()]
        for start in range(0, len(items), MAX_PARAMS_TAGS_PER_BATCH):
            chunk = dict(items[start : start + MAX_PARAMS_TAGS_PER_BATCH])
            self._call("logging params", mlflow.log_params, chunk)

    def log_config(self, cfg: EquisegConfig) -> None:
        """Flattened config as params, the resolved YAML as ``config.yaml``, profile and hash as tags."""
        self.log_params(flatten_config(cfg))
        self._call("logging config.yaml", mlflow.log_text, config_to_yaml(cfg), "config.yaml")
        self.set_tags({"equiseg.profile": cfg.profile, "equiseg.config_hash": config_hash(cfg)})

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        """Set run tags (values stringified)."""
        if tags:
            self._call("setting tags", mlflow.set_tags, {str(k): str(v) for k, v in tags.items()})

    def set_lineage_tags(
        self,
        *,
        dataset_version: str | None = None,
        git_commit: str | None = None,
        pipeline_run_id: str | None = None,
        manifest_sha256: str | None = None,
    ) -> dict[str, str]:
        """Tag the active run with its lineage; the git commit defaults to ``git rev-parse HEAD`` when available.

        Returns:
            The tags that were set (``equiseg.dataset_version``, ``equiseg.git_commit``, ``equiseg.pipeline_run_id``,
            ``equiseg.manifest_sha256``; absent values are skipped).
        """
        commit = git_commit
        if commit is None:  # keep a commit the caller already tagged (e.g. the pipeline's), else detect it
            active = mlflow.active_run()
            existing = self.client.get_run(active.info.run_id).data.tags if active is not None else {}
            commit = existing.get("equiseg.git_commit") or _known(provenance.git_commit())
        tags = {
            "equiseg.dataset_version": dataset_version,
            "equiseg.git_commit": commit,
            "equiseg.pipeline_run_id": pipeline_run_id,
            "equiseg.manifest_sha256": manifest_sha256,
        }
        present = {k: v for k, v in tags.items() if v}
        if commit:
            present["mlflow.source.git.commit"] = commit
        self.set_tags(present)
        return present

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Log numeric metrics at ``step``; non-finite values are logged as they are (MLflow accepts NaN)."""
        values = {str(k): float(v) for k, v in metrics.items()}
        if values:
            self._call("logging metrics", mlflow.log_metrics, values, step=step)

    def log_artifact(self, path: str | os.PathLike[str], artifact_path: str | None = None) -> None:
        """Upload a local file or folder to the active run."""
        local = Path(path)
        if local.is_dir():
            self._call("logging artifacts", mlflow.log_artifacts, str(local), artifact_path)
        else:
            self._call("logging an artifact", mlflow.log_artifact, str(local), artifact_path)

    def log_to_run(
        self,
        run_id: str,
        metrics: Mapping[str, float],
        *,
        artifacts: str | os.PathLike[str] | None = None,
        artifact_path: str | None = None,
        tags: Mapping[str, Any] | None = None,
    ) -> None:
        """Log metrics, tags and a file or folder to an existing run, e.g. a later step adding to training's."""
        for key, value in metrics.items():
            self._call("logging a metric", self.client.log_metric, run_id, str(key), float(value))
        for key, value in (tags or {}).items():
            self._call("setting a tag", self.client.set_tag, run_id, str(key), str(value))
        if artifacts is not None:
            local = Path(artifacts)
            log = self.client.log_artifacts if local.is_dir() else self.client.log_artifact
            self._call("logging artifacts", log, run_id, str(local), artifact_path)

    def log_text(self, text: str, artifact_file: str) -> None:
        """Write ``text`` as an artifact file of the active run."""
        self._call("logging text", mlflow.log_text, text, artifact_file)

    def log_figure(self, figure: Figure, artifact_file: str) -> None:
        """Log a matplotlib figure, e.g. ``figures/curves.png``."""
        self._call("logging a figure", mlflow.log_figure, figure, artifact_file)

    def log_curves(self, history: Sequence[Mapping[str, float]], artifact_file: str = "figures/curves.png") -> None:
        """Plot per-epoch training loss, mIoU metrics and LR from ``history`` (one dict per epoch)."""
        if history:
            self.log_figure(curves_figure(history), artifact_file)

    def log_sample_predictions(
        self,
        inputs: Mapping[str, torch.Tensor],
        labels: torch.Tensor,
        predictions: torch.Tensor,
        artifact_file: str = "figures/predictions.png",
        max_samples: int = 4,
    ) -> None:
        """Grid of the first samples: every modality, ground truth and prediction (ignore pixels black)."""
        figure = predictions_figure(inputs, labels, predictions, max_samples)
        if figure is not None:
            self.log_figure(figure, artifact_file)

    # ---------------------------------------------------------------------------------------------------------------
    # models
    # ---------------------------------------------------------------------------------------------------------------

    def log_model(self, checkpoint_path: Path, *, name: str = "model", registered_model_name: str | None = None) -> str:
        """Log a checkpoint as an ``mlflow.pyfunc`` model in the active run; returns its model URI.

        Raises:
            CheckpointError: the checkpoint is unreadable (checked before anything is uploaded).
            TrackingError: no active run, or MLflow failed after the retries.
        """
        if mlflow.active_run() is None:
            raise TrackingError("log_model needs an active run; call it inside `with tracker.start_run(...)`")
        ckpt = load_checkpoint(checkpoint_path)
        signature, modalities = checkpoint_signature(ckpt)
        with tempfile.TemporaryDirectory(prefix="equiseg-code-") as staging:
            code = _package_copy(staging)
            info = self._log_model(name, checkpoint_path, ckpt, modalities, signature, code, registered_model_name)
        return str(info.model_uri)

    def _log_model(
        self,
        name: str,
        checkpoint_path: Path,
        ckpt: Mapping[str, Any],
        modalities: Sequence[str],
        signature: Any,
        code: Path,
        registered_model_name: str | None,
    ) -> Any:
        """``mlflow.pyfunc.log_model`` from code (docs/operations.md, "Serving"), with retries."""
        return self._call(
            "logging the model",
            mlflow.pyfunc.log_model,
            name=name,
            python_model=str(ENTRY_SCRIPT),  # models-from-code: no pickled code in the registry
            artifacts={"checkpoint": str(Path(checkpoint_path).resolve())},
            code_paths=[str(code)],  # a clean environment imports this equiseg
            signature=signature,
            input_example=(input_example(ckpt), {"modalities": ",".join(modalities)}),
            pip_requirements=pinned_requirements(),
            registered_model_name=registered_model_name,
            metadata={
                "equiseg_model_name": ckpt["model_name"],
                "modalities": ",".join(modalities),
                "equiseg_version": equiseg.__version__,
            },
        )

    def load_model(self, ref: str | os.PathLike[str], device: str | torch.device = "cpu") -> nn.Module:
        """:func:`~equiseg.tracking.load_model` (a checkpoint path or a model URI) against this tracker's store."""
        if not is_model_uri(ref):  # a checkpoint path: no store, no retries (a missing file is not transient)
            return load_model(ref, device)
        configure_store(self.uri)
        return self._call("loading the model", load_model, ref, device)

    def download_checkpoint(self, model_uri: str, dst_dir: Path | None = None) -> Path:
        """Local path of the checkpoint artifact inside a logged model."""
        configure_store(self.uri)
        target = dst_dir or Path(tempfile.mkdtemp(prefix="equiseg-model-"))
        local = self._call(
            "downloading the model", mlflow.artifacts.download_artifacts, artifact_uri=model_uri, dst_path=str(target)
        )
        found = sorted(Path(local).rglob("*.pt"))
        if not found:
            raise TrackingError(f"{model_uri} holds no checkpoint artifact; was it logged by Tracker.log_model?")
        return found[0]


def _package_copy(staging: str) -> Path:
    """A copy of the installed equiseg package without bytecode caches (the logged model's ``code/equiseg``)."""
    target = Path(staging) / "equiseg"
    shutil.copytree(Path(equiseg.__file__).parent, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return target
