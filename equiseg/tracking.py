"""MLflow run tracking: the only module of equiseg that talks to MLflow for runs (docs/design.md, issue 6).

* :class:`Tracker` resolves ``tracking.uri`` (relative ``sqlite:///runs/mlflow.db`` paths against the working
  directory), creates the experiment with its ``artifact_location``, and wraps every MLflow call in bounded
  retries with exponential backoff; when the server stays unreachable it raises :class:`TrackingError` saying so.
  The training loop writes its checkpoints before it logs, so a tracking outage never costs a checkpoint.
* Runs carry the flattened config as params (chunked to MLflow's batch limit), the resolved YAML as an artifact,
  lineage tags (dataset version, git commit, pipeline run id), per-step and per-epoch metrics, system metrics,
  figures (curves, sample predictions) and the model.
* **Model serialization** (mlops-stack.md §3.2): ``pt2`` needs plain tensor inputs with only the batch dimension
  dynamic, but our input is a dict of modalities, any subset, any size; ``pickle`` would pickle code objects.
  :func:`log_model` therefore logs an ``mlflow.pyfunc`` model: a small :class:`EquisegPyfuncModel` (pickled by
  reference to this importable class, no code captured) plus the self-describing checkpoint as an artifact; loading
  rebuilds the network with ``create_model`` and loads the weights with ``torch.load(weights_only=True)``. The
  signature names one float32 tensor ``(-1, C, -1, -1)`` per modality and a ``modalities`` parameter choosing the
  subset the network sees (MLflow's tensor specs are all required, so absent modalities travel as zero arrays of
  any size, which is also the project's "missing" convention). ``pip_requirements`` are pinned from the installed
  versions, which keeps ``log_model`` fast (no requirement inference subprocess).
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

import mlflow
import numpy as np
import torch
from mlflow.exceptions import MlflowException
from mlflow.models.signature import ModelSignature
from mlflow.pyfunc import PythonModel
from mlflow.tracking import MlflowClient
from mlflow.types.schema import ParamSchema, ParamSpec, Schema, TensorSpec
from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH, MAX_PARAMS_TAGS_PER_BATCH
from sqlalchemy.exc import OperationalError
from torch import nn

from equiseg import provenance
from equiseg.config import EquisegConfig, TrackingConfig, config_hash, config_to_yaml, flatten_config

__all__ = [
    "EquisegPyfuncModel",
    "Tracker",
    "TrackingError",
    "configure_store",
    "load_model",
    "model_signature",
    "pinned_requirements",
    "resolve_artifact_location",
    "resolve_tracking_uri",
]

logger = logging.getLogger(__name__)
T = TypeVar("T")

#: MLflow error codes that mean "your request is wrong", not "try again".
_PERMANENT_ERRORS = {"INVALID_PARAMETER_VALUE", "RESOURCE_ALREADY_EXISTS", "RESOURCE_DOES_NOT_EXIST", "BAD_REQUEST"}
#: Non-MLflow exceptions worth retrying: network and database hiccups (other errors are bugs and propagate).
_TRANSIENT_ERRORS: tuple[type[Exception], ...] = (OSError, ConnectionError, TimeoutError, OperationalError)
#: Distributions pinned into the logged model's requirements (those the pyfunc needs to rebuild the network).
_MODEL_REQUIREMENTS = ("torch", "torchvision", "timm", "numpy", "pyarrow", "PyYAML", "mlflow", "cloudpickle")


class TrackingError(RuntimeError):
    """MLflow could not be reached or refused a request after the configured retries."""


def configure_store(tracking_uri: str, registry_uri: str | None = None) -> None:
    """Point MLflow's global tracking AND registry URIs at one store (the registry defaults to the tracking store).

    equiseg keeps the model registry in the tracking store. Setting only the tracking URI would leave a registry URI
    from an earlier call in this process (MLflow also exports both as environment variables to child processes), and
    registering a model would then go to the wrong, possibly dead, server.
    """
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(registry_uri or tracking_uri)


def _use_store(uri: str) -> None:
    configure_store(uri)


def resolve_tracking_uri(uri: str, cwd: Path | None = None) -> str:
    """Absolute tracking URI: ``sqlite:///relative.db`` becomes ``sqlite:////<cwd>/relative.db``; others unchanged.

    An empty URI means the default ``sqlite:///runs/mlflow.db``.
    """
    uri = uri or TrackingConfig().uri
    base = Path(cwd) if cwd is not None else Path.cwd()
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri.startswith(prefix + "/") and uri != prefix + ":memory:":
        db_path = (base / uri[len(prefix) :]).resolve()
        db_path.parent.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{db_path}"
    if uri.startswith("sqlite:////"):
        Path(uri[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
    return uri


def resolve_artifact_location(location: str, cwd: Path | None = None) -> str | None:
    """``file://`` URI for a local folder (relative to ``cwd``), URIs unchanged, ``None`` for the server default."""
    if not location:
        return None
    if "://" in location:
        return location
    base = Path(cwd) if cwd is not None else Path.cwd()
    return (base / location).resolve().as_uri()


def pinned_requirements() -> list[str]:
    """``name==version`` for the distributions the logged model needs, from the running environment."""
    pins = []
    for name in _MODEL_REQUIREMENTS:
        with contextlib.suppress(metadata.PackageNotFoundError):
            pins.append(f"{name}=={metadata.version(name)}")
    return pins


def model_signature(modalities: Sequence[str], in_chans: Mapping[str, int], num_classes: int) -> ModelSignature:
    """Named float32 ``(-1, C, -1, -1)`` input per modality, ``(-1, K, -1, -1)`` logits, a ``modalities`` param."""
    inputs = Schema([TensorSpec(np.dtype(np.float32), (-1, int(in_chans[m]), -1, -1), m) for m in modalities])
    outputs = Schema([TensorSpec(np.dtype(np.float32), (-1, int(num_classes), -1, -1))])
    params = ParamSchema([ParamSpec("modalities", "string", ",".join(modalities))])
    return ModelSignature(inputs=inputs, outputs=outputs, params=params)


class EquisegPyfuncModel(PythonModel):
    """pyfunc wrapper: rebuilds the network from the ``checkpoint`` artifact and predicts logits.

    ``predict(context, {modality: (B, C, H, W) float32}, params={"modalities": "rgb,depth"})`` feeds the listed
    modalities (default: every one given) to the network and returns ``(B, K, H, W)`` float32 logits.
    """

    def __init__(self) -> None:
        self.model: nn.Module | None = None

    def load_context(self, context: Any) -> None:
        """Rebuild the model from the logged checkpoint (weights-only, strict)."""
        from equiseg.training.checkpoint import load_model_from_checkpoint

        self.model, _ = load_model_from_checkpoint(context.artifacts["checkpoint"], device="cpu")

    def predict(self, context: Any, model_input: Any, params: Any = None) -> Any:
        """Logits for the selected modalities of ``model_input`` (a dict of arrays)."""
        if self.model is None:
            raise RuntimeError("the pyfunc model has no network; load it with mlflow.pyfunc.load_model")
        if not isinstance(model_input, Mapping):
            raise TypeError(f"expected a dict modality -> (B, C, H, W) array, got {type(model_input).__name__}")
        wanted = str((params or {}).get("modalities") or "")
        names = [m.strip() for m in wanted.split(",") if m.strip()] or list(model_input)
        missing = [m for m in names if m not in model_input]
        if missing:
            raise ValueError(f"params modalities {names} name {missing}, which the input dict lacks")
        tensors = {m: torch.as_tensor(np.asarray(model_input[m], dtype=np.float32)) for m in names}
        with torch.inference_mode():
            output = self.model(tensors)
        logits = output.logits if hasattr(output, "logits") else output
        return logits.float().cpu().numpy()


def load_model(model_uri: str, device: str | torch.device = "cpu") -> nn.Module:
    """The torch ``nn.Module`` (eval mode) behind a checkpoint path or a model logged by :meth:`Tracker.log_model`.

    Args:
        model_uri: a checkpoint path, or e.g. ``models:/m-<id>`` or ``models:/equiseg@champion``; for a URI the
            tracking URI must be set (:func:`configure_store`; a :class:`Tracker` does it).
        device: where to put the module.
    """
    if not (model_uri.startswith(("models:/", "runs:/")) or "://" in model_uri):
        from equiseg.training.checkpoint import load_model_from_checkpoint

        if not Path(model_uri).is_file():
            raise FileNotFoundError(
                f"{model_uri!r} is neither a model URI (models:/..., runs:/...) nor a checkpoint file"
            )
        return load_model_from_checkpoint(model_uri, device=device)[0].eval()
    pyfunc = mlflow.pyfunc.load_model(model_uri)
    wrapper = pyfunc.unwrap_python_model()
    if not isinstance(wrapper, EquisegPyfuncModel) or wrapper.model is None:
        raise TypeError(f"{model_uri} is not an equiseg model logged by equiseg.tracking.Tracker.log_model")
    return wrapper.model.to(device).eval()


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
            return str(self.client.create_experiment(self.experiment_name, artifact_location=self.artifact_location))
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
        _use_store(self.uri)
        active = mlflow.active_run()
        if reuse_active and active is not None:
            yield active.info.run_id
            return
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

    def log_figure(self, figure: Any, artifact_file: str) -> None:
        """Log a matplotlib figure (e.g. ``figures/curves.png``) and close it."""
        import matplotlib.pyplot as plt

        try:
            self._call("logging a figure", mlflow.log_figure, figure, artifact_file)
        finally:
            plt.close(figure)

    def log_curves(self, history: Sequence[Mapping[str, float]], artifact_file: str = "figures/curves.png") -> None:
        """Plot per-epoch training loss, mIoU metrics and LR from ``history`` (one dict per epoch)."""
        if not history:
            return
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt

        epochs = [int(h.get("epoch", i)) for i, h in enumerate(history)]
        fig, axes = plt.subplots(1, 3, figsize=(13, 3.5))
        panels: list[tuple[Any, tuple[str, ...], str]] = [
            (axes[0], ("train_loss",), "loss"),
            (axes[1], ("val_miou", "clean_miou", "emm_avg", "objective"), "mIoU (points)"),
            (axes[2], ("lr",), "learning rate"),
        ]
        for axis, keys, label in panels:
            for key in keys:
                points = [(e, h[key]) for e, h in zip(epochs, history, strict=True) if key in h]
                if points:
                    axis.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=key)
            axis.set_xlabel("epoch")
            axis.set_ylabel(label)
            axis.grid(alpha=0.3)
            if axis.lines:
                axis.legend(fontsize=8)
        fig.tight_layout()
        self.log_figure(fig, artifact_file)

    def log_sample_predictions(
        self,
        inputs: Mapping[str, torch.Tensor],
        labels: torch.Tensor,
        predictions: torch.Tensor,
        artifact_file: str = "figures/predictions.png",
        max_samples: int = 4,
    ) -> None:
        """Grid of the first samples: every modality, ground truth and prediction (ignore pixels black)."""
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt

        from equiseg.modalities import to_unit

        count = min(max_samples, labels.shape[0])
        if count == 0:
            return
        names = list(inputs)
        columns = len(names) + 2
        fig, axes = plt.subplots(count, columns, figsize=(2.2 * columns, 2.2 * count), squeeze=False)
        vmax = max(
            int(predictions.max().item()), int(labels[labels != 255].max().item()) if (labels != 255).any() else 0, 1
        )
        for row in range(count):
            for col, name in enumerate(names):
                image = to_unit(inputs[name][row].detach().float().cpu(), name).clamp(0, 1)
                shown = image.permute(1, 2, 0).numpy() if image.shape[0] == 3 else image[0].numpy()
                axes[row][col].imshow(shown, cmap=None if image.shape[0] == 3 else "gray")
                axes[row][col].set_title(name if row == 0 else "", fontsize=8)
            gt = np.ma.masked_equal(labels[row].cpu().numpy(), 255)
            axes[row][-2].imshow(gt, cmap="tab20", vmin=0, vmax=vmax, interpolation="nearest")
            axes[row][-1].imshow(
                predictions[row].cpu().numpy(), cmap="tab20", vmin=0, vmax=vmax, interpolation="nearest"
            )
            if row == 0:
                axes[row][-2].set_title("label", fontsize=8)
                axes[row][-1].set_title("prediction", fontsize=8)
            for axis in axes[row]:
                axis.axis("off")
        fig.tight_layout()
        self.log_figure(fig, artifact_file)

    # ---------------------------------------------------------------------------------------------------------------
    # models
    # ---------------------------------------------------------------------------------------------------------------

    def log_model(self, checkpoint_path: Path, *, name: str = "model", registered_model_name: str | None = None) -> str:
        """Log a checkpoint as an ``mlflow.pyfunc`` model in the active run; returns its model URI.

        Raises:
            CheckpointError: the checkpoint is unreadable (checked before anything is uploaded).
            TrackingError: no active run, or MLflow failed after the retries.
        """
        from equiseg.training.checkpoint import load_checkpoint

        if mlflow.active_run() is None:
            raise TrackingError("log_model needs an active run; call it inside `with tracker.start_run(...)`")
        ckpt = load_checkpoint(checkpoint_path)
        build = ckpt["build_kwargs"]
        modalities = list(build["modalities"])
        in_chans = dict(build.get("in_chans") or {})
        if set(in_chans) != set(modalities):
            from equiseg.modalities import channels_of

            in_chans = {m: in_chans.get(m, channels_of(m)) for m in modalities}
        signature = model_signature(modalities, in_chans, int(build["num_classes"]))
        info = self._call(
            "logging the model",
            mlflow.pyfunc.log_model,
            name=name,
            python_model=EquisegPyfuncModel(),
            artifacts={"checkpoint": str(Path(checkpoint_path).resolve())},
            signature=signature,
            pip_requirements=pinned_requirements(),
            registered_model_name=registered_model_name,
            metadata={"equiseg_model_name": ckpt["model_name"], "modalities": ",".join(modalities)},
        )
        return str(info.model_uri)

    def load_model(self, model_uri: str, device: str | torch.device = "cpu") -> nn.Module:
        """:func:`load_model` against this tracker's URI."""
        _use_store(self.uri)
        return self._call("loading the model", load_model, model_uri, device)

    def download_checkpoint(self, model_uri: str, dst_dir: Path | None = None) -> Path:
        """Local path of the checkpoint artifact inside a logged model."""
        _use_store(self.uri)
        target = dst_dir or Path(tempfile.mkdtemp(prefix="equiseg-model-"))
        local = self._call(
            "downloading the model", mlflow.artifacts.download_artifacts, artifact_uri=model_uri, dst_path=str(target)
        )
        found = sorted(Path(local).rglob("*.pt"))
        if not found:
            raise TrackingError(f"{model_uri} holds no checkpoint artifact; was it logged by Tracker.log_model?")
        return found[0]
