"""Stored models as files: URIs, the safety check of a downloaded model folder and checkpoint digests.

mlflow and yaml only (no torch): the tasks that bind or check a verdict hash a checkpoint without loading a model
(docs/gate.md). :mod:`equiseg.tracking.models` loads models through these.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import mlflow
import yaml

__all__ = [
    "UnsafeModelError",
    "checkpoint_sha256",
    "download_model",
    "is_model_uri",
    "logged_model_id",
    "safe_checkpoint_path",
]

_URI_PREFIXES = ("models:/", "runs:/", "mlflow-artifacts:")


class UnsafeModelError(TypeError):
    """A model URI that equiseg refuses to load (pickled code, or not logged by ``Tracker.log_model``)."""


def is_model_uri(ref: str | os.PathLike[str]) -> bool:
    """True for an MLflow model URI (``models:/...``, ``runs:/...``, ``s3://...``), False for a checkpoint path."""
    text = str(ref)
    return text.startswith(_URI_PREFIXES) or "://" in text


def safe_checkpoint_path(model_dir: Path, ref: str) -> Path:
    """The checkpoint artifact of a downloaded model folder, after checking the model stores no pickled code.

    Reads ``MLmodel`` with ``yaml.safe_load`` only; nothing in the folder is imported, executed or unpickled.

    Raises:
        UnsafeModelError: the model's code is a pickle (``python_model.pkl``, a pickled torch module, ...), or the
            model was not logged by ``Tracker.log_model`` (no models-from-code entry, no checkpoint artifact).
    """
    mlmodel = model_dir / "MLmodel"
    if not mlmodel.is_file():
        raise UnsafeModelError(f"{ref} has no MLmodel file; it is not an equiseg model logged by Tracker.log_model")
    spec = yaml.safe_load(mlmodel.read_text()) or {}
    pyfunc = (spec.get("flavors") or {}).get("python_function") or {}
    pickled = sorted({p.name for p in model_dir.rglob("*.pkl")} | {str(pyfunc.get("python_model") or "")} - {""})
    if pickled or "model_code_path" not in pyfunc:
        raise UnsafeModelError(
            f"{ref} is not an equiseg model logged by equiseg.tracking.Tracker.log_model: it stores its code as a "
            f"pickle ({', '.join(pickled) or 'no models-from-code entry'}), and equiseg never unpickles a registry "
            "model because that runs arbitrary code. Re-log the checkpoint with `Tracker.log_model` (or register "
            "the checkpoint of a trusted run)"
        )
    artifact = ((pyfunc.get("artifacts") or {}).get("checkpoint") or {}).get("path")
    path = (model_dir / str(artifact)).resolve() if artifact else None
    if path is None or not path.is_file() or model_dir.resolve() not in path.parents:
        raise UnsafeModelError(f"{ref} is not an equiseg model logged by Tracker.log_model: no checkpoint artifact")
    return path


def download_model(ref: str, dst_dir: Path | None = None) -> Path:
    """Download the folder of model URI ``ref`` (files only; nothing is loaded) and return its local path."""
    target = dst_dir or Path(tempfile.mkdtemp(prefix="equiseg-model-"))
    return Path(mlflow.artifacts.download_artifacts(artifact_uri=str(ref), dst_path=str(target)))


def checkpoint_sha256(ref: str | os.PathLike[str]) -> str:
    """sha256 of the checkpoint file behind ``ref`` (a checkpoint path or a model URI; nothing is loaded).

    A model logged by ``Tracker.log_model`` carries a byte copy of its checkpoint, so the digest of the file the gate
    scored equals the digest of the registered version's artifact: the key that binds a verdict to its model.
    """
    if not is_model_uri(ref):
        return _sha256(Path(ref))
    with tempfile.TemporaryDirectory(prefix="equiseg-model-") as tmp:
        return _sha256(safe_checkpoint_path(download_model(str(ref), Path(tmp)), str(ref)))


def logged_model_id(ref: str) -> str:
    """The MLflow logged-model id (``m-<hex>``) in a ``models:/m-<hex>`` URI, else ``""``."""
    text = str(ref)
    return text.removeprefix("models:/").split("/")[0] if text.startswith("models:/m-") else ""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
