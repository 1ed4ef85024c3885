"""Self-describing, atomically written training checkpoints (docs/training.md).

A checkpoint is a plain dict saved with ``torch.save`` and read back with ``torch.load(weights_only=True)``, so
loading never executes pickled code. It records everything needed to rebuild and resume:

``format`` / ``format_version`` (``equiseg-checkpoint`` / 1), ``equiseg_version``, ``model_name`` and
``build_kwargs`` (``create_model(model_name, **build_kwargs)`` rebuilds the architecture), ``model`` (state dict),
``digest`` (sha256 over everything else, catches bit rot the zip container misses), ``optimizer``,
``scheduler`` (the step the pure LR schedule resumes from), ``scaler`` (empty: bf16 needs no loss scaling),
``rng`` (python / numpy / torch / CUDA generator states), ``epoch`` and ``epoch_step`` (where to resume: a
mid-epoch checkpoint has ``epoch_step > 0``), ``global_step``, ``best_metric``, ``metrics`` and ``config`` (the
resolved :class:`~equiseg.config.EquisegConfig` as a dict).

Writes go to a temporary file in the same folder, are flushed and fsynced, then renamed over the target, so a
crash (``kill -9``, pre-emption) leaves either the previous or the new checkpoint, never a torn one.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import pickle
import random
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

import equiseg
from equiseg.models import create_model

__all__ = [
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_FORMAT_VERSION",
    "CheckpointError",
    "capture_rng_state",
    "load_checkpoint",
    "load_model_from_checkpoint",
    "restore_rng_state",
    "save_checkpoint",
    "state_digest",
    "unwrap_model",
]

logger = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "equiseg-checkpoint"
CHECKPOINT_FORMAT_VERSION = 1
_REQUIRED_KEYS = ("format", "format_version", "model_name", "build_kwargs", "model", "digest")


class CheckpointError(RuntimeError):
    """A checkpoint is missing, corrupted, foreign or does not fit the model; the message says what to do."""


def unwrap_model(model: nn.Module) -> nn.Module:
    """The bare model inside ``DistributedDataParallel`` / ``torch.compile`` wrappers."""
    inner: nn.Module = model
    while True:
        if hasattr(inner, "module") and isinstance(inner.module, nn.Module):
            inner = inner.module
        elif hasattr(inner, "_orig_mod") and isinstance(inner._orig_mod, nn.Module):
            inner = inner._orig_mod
        else:
            return inner


def state_digest(state: Any) -> str:
    """sha256 over a checkpoint payload: every tensor's name, dtype, shape and bytes, and every plain value.

    Dict keys are visited in sorted order, so the digest does not depend on insertion order. Covers the model,
    optimiser and RNG tensors, so bit rot anywhere in the tensor data is caught (the zip container has no checksum
    that ``torch.load`` verifies).
    """
    digest = hashlib.sha256()

    def visit(node: Any, where: str) -> None:
        if isinstance(node, torch.Tensor):
            tensor = node.detach().cpu().contiguous()
            digest.update(f"{where}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
            if tensor.numel():
                digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
        elif isinstance(node, Mapping):
            for key in sorted(node, key=str):
                visit(node[key], f"{where}/{key}")
        elif isinstance(node, list | tuple):
            digest.update(f"{where}|{type(node).__name__}{len(node)}|".encode())
            for index, item in enumerate(node):
                visit(item, f"{where}[{index}]")
        else:
            digest.update(f"{where}={node!r}|".encode())

    visit(state, "")
    return digest.hexdigest()


def capture_rng_state() -> dict[str, Any]:
    """Python, numpy, torch (and CUDA) generator states as weights-only-loadable values."""
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": (str(np_name), [int(k) for k in np_keys], int(np_pos), int(np_has_gauss), float(np_gauss)),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: Mapping[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state` (missing entries are left alone)."""
    if "python" in state:
        version, internal, gauss = state["python"]
        random.setstate((version, tuple(internal), gauss))
    if "numpy" in state:
        name, keys, pos, has_gauss, gauss = state["numpy"]
        np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, gauss))
    if "torch" in state:
        torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(
    path: str | os.PathLike[str],
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    config: Mapping[str, Any] | None = None,
    epoch: int = 0,
    epoch_step: int = 0,
    global_step: int = 0,
    best_metric: float | None = None,
    metrics: Mapping[str, float] | None = None,
    history: Sequence[Mapping[str, float]] | None = None,
    partial_epoch_loss: Sequence[float] | None = None,
    include_rng: bool = True,
) -> Path:
    """Write a self-describing checkpoint atomically (temp file + fsync + rename); returns the path.

    Args:
        path: target file (``*.pt``); its folder is created.
        model: the model (DDP / compile wrappers are unwrapped); must expose ``model_name`` and ``build_kwargs``.
        optimizer: optional optimiser whose state is stored for resuming.
        config: the resolved config as a plain dict (``config_to_dict(cfg)``).
        epoch: the epoch to resume in (0-based); with ``epoch_step == 0`` it is the next epoch to start.
        epoch_step: optimiser steps already done inside ``epoch`` (mid-epoch checkpoints).
        global_step: optimiser steps done since the start of training (drives the LR schedule).
        best_metric: best objective value so far (``None`` before the first robustness evaluation).
        metrics: latest metrics, for humans and for :func:`load_model_from_checkpoint` callers.
        history: per-epoch metrics so far (restored on resume, so curves survive a crash).
        partial_epoch_loss: mid-epoch only: loss sums of the epoch's finished steps over all ranks, so the
            resumed epoch reports the same mean loss as an uninterrupted one.
        include_rng: store the generator states so a resumed run continues the same random streams.
    """
    bare = unwrap_model(model)
    model_name = getattr(bare, "model_name", None)
    build_kwargs = getattr(bare, "build_kwargs", None)
    if not isinstance(model_name, str) or not isinstance(build_kwargs, dict):
        raise TypeError(
            f"{type(bare).__name__} has no model_name/build_kwargs; checkpoints only hold models built with "
            "equiseg.models.create_model, which are self-describing"
        )
    state = {name: tensor.detach().cpu() for name, tensor in bare.state_dict().items()}
    payload: dict[str, Any] = {
        "format": CHECKPOINT_FORMAT,
        "format_version": CHECKPOINT_FORMAT_VERSION,
        "equiseg_version": equiseg.__version__,
        "model_name": model_name,
        "build_kwargs": dict(build_kwargs),
        "model": state,
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scheduler": {"kind": "warmup_poly", "global_step": int(global_step)},
        "scaler": {},
        "rng": capture_rng_state() if include_rng else {},
        "epoch": int(epoch),
        "epoch_step": int(epoch_step),
        "global_step": int(global_step),
        "best_metric": None if best_metric is None else float(best_metric),
        "metrics": {str(k): float(v) for k, v in (metrics or {}).items()},
        "partial_epoch_loss": [float(v) for v in partial_epoch_loss] if partial_epoch_loss is not None else None,
        "history": [{str(k): float(v) for k, v in h.items()} for h in (history or [])],
        "config": dict(config or {}),
    }
    payload["digest"] = state_digest(payload)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(payload, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, target)
    except (OSError, RuntimeError) as exc:
        Path(tmp_name).unlink(missing_ok=True)
        raise _write_error(target, exc) from exc
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    _fsync_dir(target.parent)
    logger.debug("saved checkpoint %s (epoch %d, step %d)", target, epoch, global_step)
    return target


def _write_error(target: Path, exc: BaseException) -> BaseException:
    """A :class:`CheckpointError` that says "disk full" when it is (torch reports ENOSPC as an opaque
    ``RuntimeError: [enforce fail at inline_container.cc]``); other errors unchanged."""
    free = shutil.disk_usage(target.parent).free if target.parent.exists() else -1
    text = str(exc)
    full = getattr(exc, "errno", None) == errno.ENOSPC or "No space left" in text or "file write failed" in text
    if not full and free > 64 * 2**20:
        return exc
    return CheckpointError(
        f"could not write checkpoint {target}: the disk is full ({free / 2**20:.1f} MiB free in {target.parent}); "
        "free space or point train.output_dir at a larger disk, then resume with --resume (the previous "
        "checkpoint is intact)"
    )


def _fsync_dir(folder: Path) -> None:
    try:
        dir_fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(dir_fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(dir_fd)


def load_checkpoint(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read and verify a checkpoint with ``torch.load(weights_only=True)``.

    Raises:
        CheckpointError: the file is missing, truncated or corrupted, holds pickled objects other than tensors and
            plain containers, is not an equiseg checkpoint, comes from a newer format, or its model tensors do not
            match their stored digest.
    """
    source = Path(path)
    if not source.is_file():
        raise CheckpointError(f"checkpoint {source} does not exist; check the path (training writes last.pt/best.pt)")
    try:
        payload = torch.load(source, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"{source} holds pickled objects that weights_only loading refuses ({exc}); it is not an equiseg "
            "checkpoint, and equiseg never unpickles code. Re-export it with equiseg.training.save_checkpoint"
        ) from exc
    except Exception as exc:  # torch raises RuntimeError, EOFError, KeyError, ... for damaged or non-torch files
        raise CheckpointError(
            f"{source} is corrupted or truncated and cannot be read ({type(exc).__name__}: {exc}); "
            "resume from an earlier checkpoint (best.pt / last.pt) or retrain"
        ) from exc
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        found = sorted(map(str, payload))[:8] if isinstance(payload, dict) else type(payload).__name__
        raise CheckpointError(
            f"{source} is not an equiseg checkpoint (expected format {CHECKPOINT_FORMAT!r}, found {found}); "
            "pass a last.pt/best.pt written by `equiseg train`"
        )
    version = payload.get("format_version")
    if not isinstance(version, int) or version > CHECKPOINT_FORMAT_VERSION:
        raise CheckpointError(
            f"{source} has checkpoint format version {version!r}, newer than this equiseg understands "
            f"({CHECKPOINT_FORMAT_VERSION}); upgrade equiseg (it was written by {payload.get('equiseg_version')})"
        )
    missing = [key for key in _REQUIRED_KEYS if key not in payload]
    if missing:
        raise CheckpointError(f"{source} lacks required entries {missing}; it is incomplete, retrain or re-save it")
    content = {key: value for key, value in payload.items() if key != "digest"}
    if state_digest(content) != payload["digest"]:
        raise CheckpointError(
            f"{source} is corrupted: its contents do not match the stored sha256 digest; "
            "resume from an earlier checkpoint or retrain"
        )
    return payload


def load_model_from_checkpoint(
    path: str | os.PathLike[str], device: str | torch.device = "cpu"
) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model a checkpoint describes and load its weights strictly; returns ``(model.eval(), ckpt)``.

    The model is rebuilt with ``create_model(ckpt["model_name"], **ckpt["build_kwargs"])``.

    Raises:
        CheckpointError: see :func:`load_checkpoint`, plus an unknown model name or weights that do not fit the
            rebuilt architecture (missing / unexpected keys, wrong shapes).
    """
    ckpt = load_checkpoint(path, map_location="cpu")
    build_kwargs = dict(ckpt["build_kwargs"])
    try:
        model = create_model(ckpt["model_name"], **build_kwargs)
    except KeyError as exc:
        raise CheckpointError(
            f"{path} was written for model {ckpt['model_name']!r}, which this equiseg does not register: {exc}"
        ) from exc
    try:
        model.load_state_dict(ckpt["model"], strict=True)
    except RuntimeError as exc:
        raise CheckpointError(
            f"{path} does not fit {ckpt['model_name']} built with {build_kwargs}: {exc}. "
            "The checkpoint was written by a different architecture or equiseg version"
        ) from exc
    return model.to(device).eval(), ckpt
