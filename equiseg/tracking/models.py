"""Models in MLflow: the pyfunc wrapper, its signature, and :func:`load_model`, THE one model resolver.

**Serialization.** ``pt2`` needs plain tensor inputs with only the batch dimension dynamic, but our input is a dict
of modalities, any subset, any size; ``pickle`` would pickle code objects. :meth:`Tracker.log_model
<equiseg.tracking.Tracker.log_model>` therefore logs an ``mlflow.pyfunc`` model: a small
:class:`EquisegPyfuncModel` (pickled by reference to this importable class, no code captured) plus the
self-describing checkpoint as an artifact; loading rebuilds the network with ``create_model`` and loads the weights
with ``torch.load(weights_only=True)``. The signature names one float32 tensor ``(-1, C, -1, -1)`` per modality
and a ``modalities`` parameter choosing the subset the network sees (MLflow's tensor specs are all required, so
absent modalities travel as zero arrays of any size, which is also the project's "missing" convention).
``pip_requirements`` are pinned from the installed versions, which keeps logging fast (no requirement inference).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import torch
from mlflow.models.signature import ModelSignature
from mlflow.pyfunc import PythonModel
from mlflow.types.schema import ParamSchema, ParamSpec, Schema, TensorSpec
from torch import nn

from equiseg.modalities import channels_of
from equiseg.training.checkpoint import load_model_from_checkpoint

__all__ = [
    "EquisegPyfuncModel",
    "checkpoint_signature",
    "is_model_uri",
    "load_model",
    "model_signature",
    "pinned_requirements",
]

#: Distributions pinned into the logged model's requirements (those the pyfunc needs to rebuild the network).
_MODEL_REQUIREMENTS = ("torch", "torchvision", "timm", "numpy", "pyarrow", "PyYAML", "mlflow", "cloudpickle")
#: Prefixes of MLflow model URIs without ``://`` (any ``scheme://`` is a URI too).
_URI_PREFIXES = ("models:/", "runs:/", "mlflow-artifacts:")


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


def checkpoint_signature(ckpt: Mapping[str, Any]) -> tuple[ModelSignature, list[str]]:
    """The :func:`model_signature` of a loaded checkpoint, and its modalities."""
    build = ckpt["build_kwargs"]
    modalities = list(build["modalities"])
    in_chans = dict(build.get("in_chans") or {})
    if set(in_chans) != set(modalities):
        in_chans = {m: in_chans.get(m, channels_of(m)) for m in modalities}
    return model_signature(modalities, in_chans, int(build["num_classes"])), modalities


class EquisegPyfuncModel(PythonModel):
    """pyfunc wrapper: rebuilds the network from the ``checkpoint`` artifact and predicts logits.

    ``predict(context, {modality: (B, C, H, W) float32}, params={"modalities": "rgb,depth"})`` feeds the listed
    modalities (default: every one given) to the network and returns ``(B, K, H, W)`` float32 logits.
    """

    def __init__(self) -> None:
        self.model: nn.Module | None = None

    def load_context(self, context: Any) -> None:
        """Rebuild the model from the logged checkpoint (weights-only, strict)."""
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


def is_model_uri(ref: str | os.PathLike[str]) -> bool:
    """True for an MLflow model URI (``models:/...``, ``runs:/...``, ``s3://...``), False for a checkpoint path."""
    text = str(ref)
    return text.startswith(_URI_PREFIXES) or "://" in text


def load_model(ref: str | os.PathLike[str], device: str | torch.device = "cpu") -> nn.Module:
    """The eval-mode torch module behind ``ref``, on ``device``: the one way equiseg loads a stored model.

    Args:
        ref: a checkpoint path (``best.pt``), ``runs:/<mlflow_run_id>/model``, ``models:/<name>@<alias>``,
            ``models:/<name>/<version>`` or a logged-model URI (``models:/m-<id>``). URIs resolve against the store
            :func:`~equiseg.tracking.configure_store` (or a :class:`~equiseg.tracking.Tracker`) set.
        device: where to put the module.

    Raises:
        FileNotFoundError: ``ref`` is neither an existing checkpoint file nor an MLflow URI.
        CheckpointError: the checkpoint is unreadable or does not fit its architecture.
        TypeError: the URI names a model that ``Tracker.log_model`` did not log.
    """
    if not is_model_uri(ref):
        path = Path(ref)
        if not path.is_file():
            raise FileNotFoundError(
                f"model {str(ref)!r} is neither a checkpoint file nor an MLflow URI (models:/name@alias, "
                "models:/name/<version>, runs:/<id>/model); check the path or the URI"
            )
        model, _ckpt = load_model_from_checkpoint(path, device)
        return model
    pyfunc = mlflow.pyfunc.load_model(str(ref))
    wrapper = pyfunc.unwrap_python_model()
    if not isinstance(wrapper, EquisegPyfuncModel) or wrapper.model is None:
        raise TypeError(f"{ref} is not an equiseg model logged by equiseg.tracking.Tracker.log_model")
    return wrapper.model.to(device).eval()
