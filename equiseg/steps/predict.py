"""Use a stored model: masks and colour overlays for a folder of images or a manifest (docs/operations.md).

:func:`predict_folder` takes raw images (no pre-normalised tensors): each modality is decoded, scaled to [0, 1]
and normalised with :func:`equiseg.modalities.from_unit`, exactly as training saw it. Any non-empty subset of
the model's modalities may be given; the others are missing. A model that fuses subsets
(``supports_missing_modalities``) sees only the present ones, the others get the project's "missing" input, a
zero tensor in normalised space (EQUISeg, arXiv 2509.24505, Sec. 3: missing modalities at test time).

Input layouts:

* a manifest (``manifest.parquet`` or its folder), paths relative to ``data_root`` (default: its folder);
* a folder with one sub-folder per modality, files matched by stem: ``in/rgb/0001.png``, ``in/thermal/0001.png``.
  A sample lacking some modality's file is predicted with that modality missing.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from tqdm import tqdm

from equiseg.data import MultimodalDataset
from equiseg.data.io import decode_array
from equiseg.data.manifest import manifest_modalities, read_manifest
from equiseg.figures import colourise, label_colours
from equiseg.modalities import from_unit, to_unit
from equiseg.models.base import SegmentationModel

__all__ = ["PredictionSummary", "iter_inputs", "predict_folder", "predict_sample"]

_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".npy"}
_PAD = 32  # inputs are padded to a multiple of the encoder's total stride, the logits cropped back


@dataclass
class PredictionSummary:
    """What :func:`predict_folder` wrote: per-sample files and class shares, plus the run's settings."""

    model: str
    modalities: list[str]
    missing: list[str]
    out_dir: str
    seconds: float = 0.0
    samples: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"count": len(self.samples)}


def _safe_name(sample_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", sample_id).strip("._") or "sample"


def _read_unit(path: Path, channels: int) -> torch.Tensor:
    """``(C, H, W)`` float in [0, 1] from an image file, with ``channels`` channels (grey repeated, extra dropped)."""
    array = np.load(path) if path.suffix == ".npy" else decode_array(path.read_bytes(), str(path))
    if array.ndim == 2:
        array = array[:, :, None]
    scale = 1.0 / float(np.iinfo(array.dtype).max) if np.issubdtype(array.dtype, np.integer) else 1.0
    unit = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32)).permute(2, 0, 1) * scale
    if unit.shape[0] == 1 and channels > 1:
        unit = unit.expand(channels, -1, -1)
    if unit.shape[0] < channels:
        raise ValueError(f"{path} has {unit.shape[0]} channels, the model needs {channels}; convert the image")
    return unit[:channels].clamp(0.0, 1.0).contiguous()


def _folder_samples(folder: Path, modalities: Sequence[str], in_chans: dict[str, int]) -> Iterator[tuple[str, dict]]:
    files: dict[str, dict[str, Path]] = {}
    for modality in modalities:
        sub = folder / modality
        for path in sorted(sub.iterdir()) if sub.is_dir() else []:
            if path.suffix.lower() in _IMAGE_SUFFIXES:
                files.setdefault(path.stem, {})[modality] = path
    if not files:
        raise FileNotFoundError(
            f"no images under {folder}/<modality>/ for modalities {list(modalities)}; put e.g. "
            f"{folder}/rgb/0001.png there, or pass a manifest.parquet"
        )
    for stem in sorted(files):
        yield stem, {m: from_unit(_read_unit(p, in_chans[m]), m) for m, p in files[stem].items()}


def iter_inputs(
    source: Path,
    modalities: Sequence[str],
    in_chans: dict[str, int],
    *,
    data_root: Path | None = None,
    split: str | None = None,
) -> tuple[int, Iterator[tuple[str, dict[str, torch.Tensor]]]]:
    """(sample count, iterator of ``(sample_id, {modality: normalised (C, H, W)})``) for a manifest or a folder."""
    manifest = source / "manifest.parquet" if source.is_dir() else source
    if manifest.suffix == ".parquet" and manifest.is_file():
        present = [m for m in modalities if m in manifest_modalities(read_manifest(manifest))]
        if not present:
            raise ValueError(f"manifest {manifest} holds none of the modalities {list(modalities)}")
        dataset = MultimodalDataset(manifest, data_root or manifest.parent, modalities=present, split=split)
        return len(dataset), ((s["sample_id"], s["inputs"]) for s in (dataset[i] for i in range(len(dataset))))
    if not source.is_dir():
        raise FileNotFoundError(f"input {source} is neither a manifest.parquet nor a folder of <modality>/ images")
    samples = list(_folder_samples(source, modalities, in_chans))
    return len(samples), iter(samples)


def predict_sample(model: SegmentationModel, inputs: dict[str, torch.Tensor], device: torch.device) -> np.ndarray:
    """``(H, W)`` class ids for one sample's normalised ``(C, H, W)`` inputs (absent modalities handled)."""
    first = next(iter(inputs.values()))
    height, width = first.shape[-2:]
    feed = dict(inputs)
    if not getattr(model, "supports_missing_modalities", False):
        for modality in model.modalities:
            if modality not in feed:
                feed[modality] = torch.zeros(model.in_chans[modality], height, width)
    pad_h, pad_w = (-height) % _PAD, (-width) % _PAD
    batch = {m: F.pad(x, (0, pad_w, 0, pad_h)).unsqueeze(0).to(device) for m, x in feed.items()}
    with torch.inference_mode():
        logits = model(batch).logits[0, :, :height, :width]
    return logits.argmax(0).cpu().numpy()


def _background(inputs: dict[str, torch.Tensor], height: int, width: int) -> np.ndarray:
    """Grey-or-colour picture under the overlay: the RGB input if present, else the first modality in grey."""
    if "rgb" in inputs:
        return to_unit(inputs["rgb"], "rgb").clamp(0, 1).permute(1, 2, 0).numpy()
    if inputs:
        name, x = next(iter(inputs.items()))
        grey = to_unit(x, name)[0].clamp(0, 1).numpy()
        return np.repeat(grey[:, :, None], 3, axis=2)
    return np.zeros((height, width, 3))


def _write(out_dir: Path, name: str, mask: np.ndarray, inputs: dict, colours: np.ndarray) -> dict[str, Any]:
    mask_path, overlay_path = out_dir / "masks" / f"{name}.png", out_dir / "overlays" / f"{name}.png"
    dtype = np.uint8 if len(colours) <= 256 else np.uint16
    Image.fromarray(mask.astype(dtype)).save(mask_path)
    blend = 0.5 * _background(inputs, *mask.shape) + 0.5 * colourise(mask, colours)
    Image.fromarray((blend * 255).round().astype(np.uint8)).save(overlay_path)
    counts = np.bincount(mask.ravel(), minlength=len(colours)) / mask.size
    shares = {str(k): round(float(v), 4) for k, v in enumerate(counts) if v > 0}
    return {"mask": str(mask_path), "overlay": str(overlay_path), "class_fractions": shares}


def predict_folder(
    model: nn.Module,
    source: Path,
    out_dir: Path,
    *,
    model_ref: str,
    modalities: Sequence[str] | None = None,
    data_root: Path | None = None,
    split: str | None = None,
    device: torch.device | str = "cpu",
    progress: bool = True,
) -> PredictionSummary:
    """Predict every sample of ``source``; write ``masks/``, ``overlays/`` and ``predictions.json`` under ``out_dir``.

    Args:
        model: an eval-mode equiseg model (``equiseg.tracking.load_model``).
        modalities: the subset to feed (default: every modality of the model); the rest count as missing.

    Raises:
        ValueError: a requested modality the model was not built with (the message lists its modalities).
        FileNotFoundError: ``source`` holds no usable input.
    """
    if not isinstance(model, SegmentationModel):
        raise TypeError(f"predict needs an equiseg model (equiseg.tracking.load_model), got {type(model).__name__}")
    known = list(model.modalities)
    wanted = list(modalities) if modalities else known
    unknown = [m for m in wanted if m not in known]
    if unknown or not wanted:
        raise ValueError(f"--modalities {unknown or '(none)'}: the model takes a non-empty subset of {known}")
    device = torch.device(device)
    model.to(device).eval()
    count, samples = iter_inputs(source, wanted, dict(model.in_chans), data_root=data_root, split=split)
    for sub in ("masks", "overlays"):
        (out_dir / sub).mkdir(parents=True, exist_ok=True)
    summary = PredictionSummary(model_ref, wanted, [m for m in known if m not in wanted], str(out_dir))
    colours = label_colours(int(model.num_classes))
    started = time.perf_counter()
    for sample_id, inputs in tqdm(samples, total=count, desc="predict", unit="sample", disable=not progress):
        mask = predict_sample(model, inputs, device)
        record = _write(out_dir, _safe_name(sample_id), mask, inputs, colours)
        summary.samples.append({"sample_id": sample_id, "modalities": sorted(inputs), **record})
    summary.seconds = round(time.perf_counter() - started, 3)
    (out_dir / "predictions.json").write_text(json.dumps(summary.to_dict(), indent=2))
    return summary
