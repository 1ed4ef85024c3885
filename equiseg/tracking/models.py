"""Models in MLflow: the pyfunc wrapper, its signature, :func:`predict_masks` and :func:`load_model`, THE resolver.

**Serialization, without pickled code.** :meth:`Tracker.log_model <equiseg.tracking.Tracker.log_model>` logs an
``mlflow.pyfunc`` model *from code* (MLflow's models-from-code: the model is the script
``equiseg/tracking/mlflow_entry.py``, no ``python_model.pkl``), the equiseg package itself as ``code_paths`` (so a
clean environment can import it), pinned requirements, an input example and the self-describing checkpoint as an
artifact. Loading rebuilds the network with ``create_model`` and reads the weights with
``torch.load(weights_only=True)``.

:func:`load_model` never goes through ``mlflow.pyfunc.load_model``: it downloads the model folder, reads ``MLmodel``
as YAML, refuses a model whose code is a pickle (unpickling runs arbitrary code; the gate pod holds secrets) and
loads only the weights-only checkpoint artifact with the *installed* equiseg. Nothing in the downloaded folder runs.

**Inputs.** The served model takes raw, native-range arrays (``uint8`` 0-255, ``uint16`` 0-65535, or floats in the
8-bit range 0-255, as JSON carries them) and normalises them the way the data readers do (docs/data.md) before the
network sees them; it returns ``(B, H, W)`` int64 class masks. The signature names one tensor ``(-1, C, -1, -1)``
per modality and a ``modalities`` parameter choosing the subset the network sees; MLflow tensor specs are all
required, so an absent modality travels as a zero array of any spatial size (e.g. ``(B, C, 1, 1)``). Through
MLflow the arrays are float32; the ``ranges`` parameter gives non-8-bit full scales (``depth:65535``).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch
from mlflow.models.signature import ModelSignature
from mlflow.pyfunc import PythonModel
from mlflow.types.schema import ParamSchema, ParamSpec, Schema, TensorSpec
from torch import nn

from equiseg.modalities import channels_of, from_unit
from equiseg.tracking.artifacts import (
    UnsafeModelError,
    checkpoint_sha256,
    download_model,
    is_model_uri,
    logged_model_id,
    safe_checkpoint_path,
)
from equiseg.training.checkpoint import load_model_from_checkpoint

__all__ = [
    "ENTRY_SCRIPT",
    "EquisegPyfuncModel",
    "UnsafeModelError",
    "checkpoint_sha256",
    "checkpoint_signature",
    "input_example",
    "is_model_uri",
    "load_model",
    "logged_model_id",
    "model_signature",
    "normalize_inputs",
    "parse_ranges",
    "pinned_requirements",
    "predict_masks",
]

#: Distributions pinned into the logged model's requirements: what ``import equiseg.tracking`` and the network need.
_MODEL_REQUIREMENTS = (
    "torch",
    "numpy",
    "pyarrow",
    "PyYAML",
    "pillow",
    "click",
    "tqdm",
    "matplotlib",
    "mlflow",
    "sqlalchemy",
)
#: Prefixes of MLflow model URIs without ``://`` (any ``scheme://`` is a URI too).
#: The models-from-code script logged as the model (it only instantiates :class:`EquisegPyfuncModel`).
ENTRY_SCRIPT = Path(__file__).with_name("mlflow_entry.py")
#: Full range of each integer dtype; floats are taken as 8-bit range (JSON carries numbers, not dtypes).
_DTYPE_RANGE = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0, np.dtype(np.bool_): 1.0}


def pinned_requirements() -> list[str]:
    """``name==version`` for the distributions the logged model needs, from the running environment."""
    pins = []
    for name in _MODEL_REQUIREMENTS:
        with contextlib.suppress(metadata.PackageNotFoundError):
            pins.append(f"{name}=={metadata.version(name)}")
    return pins


def model_signature(modalities: Sequence[str], in_chans: Mapping[str, int], num_classes: int) -> ModelSignature:
    """Named float32 ``(-1, C, -1, -1)`` input per modality, ``(-1, -1, -1)`` int64 masks; params ``modalities``
    (the subset fed to the network) and ``ranges`` (full-scale values, e.g. ``depth:65535``; default 255)."""
    del num_classes  # masks carry class indices; the count is in the checkpoint
    inputs = Schema([TensorSpec(np.dtype(np.float32), (-1, int(in_chans[m]), -1, -1), m) for m in modalities])
    outputs = Schema([TensorSpec(np.dtype(np.int64), (-1, -1, -1))])
    params = ParamSchema([ParamSpec("modalities", "string", ",".join(modalities)), ParamSpec("ranges", "string", "")])
    return ModelSignature(inputs=inputs, outputs=outputs, params=params)


def _in_chans(build: Mapping[str, Any]) -> dict[str, int]:
    modalities = list(build["modalities"])
    in_chans = dict(build.get("in_chans") or {})
    return {m: int(in_chans.get(m) or channels_of(m)) for m in modalities}


def checkpoint_signature(ckpt: Mapping[str, Any]) -> tuple[ModelSignature, list[str]]:
    """The :func:`model_signature` of a loaded checkpoint, and its modalities."""
    build = ckpt["build_kwargs"]
    modalities = list(build["modalities"])
    return model_signature(modalities, _in_chans(build), int(build["num_classes"])), modalities


def input_example(ckpt: Mapping[str, Any], size: int = 32) -> dict[str, np.ndarray]:
    """A raw 0-255 float32 batch of one ``size``-square image per modality (the logged model's input example)."""
    rng = np.random.default_rng(0)
    return {
        m: rng.integers(0, 256, size=(1, c, size, size)).astype(np.float32)
        for m, c in _in_chans(ckpt["build_kwargs"]).items()
    }


def parse_ranges(text: str) -> dict[str, float]:
    """``"depth:65535,thermal:255"`` -> ``{"depth": 65535.0, "thermal": 255.0}`` (the ``ranges`` model param)."""
    out = {}
    for item in (part.strip() for part in str(text or "").split(",")):
        if not item:
            continue
        name, sep, value = item.partition(":")
        try:
            out[name.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep or out.get(name.strip(), 0.0) <= 0:
            raise ValueError(f"range {item!r} must look like modality:max_value with max_value > 0, e.g. depth:65535")
    return out


def normalize_inputs(inputs: Mapping[str, Any], ranges: Mapping[str, float] | None = None) -> dict[str, torch.Tensor]:
    """Raw native-range arrays ``{modality: (B, C, H, W) or (C, H, W)}`` -> normalised float32 tensors.

    Each modality is divided by its full-scale value: ``ranges[modality]`` when given, else 255 for ``uint8`` and
    floats, 65535 for ``uint16``; then RGB gets the ImageNet mean/std of :mod:`equiseg.modalities` and other
    modalities stay in [0, 1], as the data readers produce them.
    """
    out = {}
    for name, raw in inputs.items():
        array = np.asarray(raw)
        scale = float((ranges or {}).get(name) or _DTYPE_RANGE.get(array.dtype, 255.0))
        tensor = torch.as_tensor(array.astype(np.float32) / scale)
        if tensor.ndim == 3:
            tensor = tensor.unsqueeze(0)
        if tensor.ndim != 4:
            raise ValueError(f"input {name!r} has shape {tuple(array.shape)}; give (B, C, H, W) or (C, H, W)")
        out[name] = from_unit(tensor, name)
    return out


def predict_masks(
    model: nn.Module,
    inputs: Mapping[str, Any],
    modalities: Sequence[str] | None = None,
    ranges: Mapping[str, float] | None = None,
) -> np.ndarray:
    """``(B, H, W)`` int64 class masks of ``model`` on raw inputs (see :func:`normalize_inputs`).

    Args:
        model: an equiseg network (e.g. from :func:`load_model`).
        inputs: raw arrays per modality; a modality absent here is missing for the network.
        modalities: the subset to feed (default: every modality in ``inputs`` that the model knows).
        ranges: full-scale value per modality (see :func:`normalize_inputs`).

    Raises:
        ValueError: a listed modality is not in ``inputs``, the model does not know it, or nothing is left.
    """
    known = tuple(getattr(model, "modalities", ()) or inputs)
    names = list(modalities) if modalities else [m for m in inputs if m in known]
    problems = [m for m in names if m not in inputs or m not in known]
    if problems or not names:
        raise ValueError(
            f"modalities {names} cannot be fed: {problems or 'none given'}; the model takes {list(known)} and the "
            f"input has {list(inputs)}"
        )
    tensors = normalize_inputs({m: inputs[m] for m in names}, ranges)
    with torch.inference_mode():
        output = model(tensors)
    logits = output.logits if hasattr(output, "logits") else output
    return logits.argmax(dim=1).to(torch.int64).cpu().numpy()


class EquisegPyfuncModel(PythonModel):
    """pyfunc wrapper: rebuilds the network from the ``checkpoint`` artifact and predicts class masks.

    ``predict(context, {modality: (B, C, H, W) raw float32}, params={"modalities": "rgb,depth", "ranges":
    "depth:65535"})`` feeds the listed modalities (default: every one given) to the network and returns
    ``(B, H, W)`` int64 masks.
    """

    def __init__(self) -> None:
        self.model: nn.Module | None = None

    def load_context(self, context: Any) -> None:
        """Rebuild the model from the logged checkpoint (weights-only, strict)."""
        self.model, _ = load_model_from_checkpoint(context.artifacts["checkpoint"], device="cpu")

    def predict(self, context: Any, model_input: Any, params: Any = None) -> Any:
        """Masks for the selected modalities of ``model_input`` (a dict of raw arrays)."""
        if self.model is None:
            raise RuntimeError("the pyfunc model has no network; load it with mlflow.pyfunc.load_model")
        if not isinstance(model_input, Mapping):
            raise TypeError(f"expected a dict modality -> (B, C, H, W) array, got {type(model_input).__name__}")
        wanted = str((params or {}).get("modalities") or "")
        names = [m.strip() for m in wanted.split(",") if m.strip()] or list(model_input)
        return predict_masks(self.model, model_input, names, parse_ranges((params or {}).get("ranges") or ""))


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
        UnsafeModelError: (a ``TypeError``) the URI names a model that ``Tracker.log_model`` did not log, e.g. one
            whose code is pickled; it is refused before anything in it runs.
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
    with tempfile.TemporaryDirectory(prefix="equiseg-model-") as tmp:
        checkpoint = safe_checkpoint_path(download_model(str(ref), Path(tmp)), str(ref))
        model, _ckpt = load_model_from_checkpoint(checkpoint, device)
    return model.to(device).eval()
