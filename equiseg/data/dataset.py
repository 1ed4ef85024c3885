"""Torch dataset over a manifest: decode, normalise, augment jointly, drop modalities (docs/data.md).

Samples follow the contract in docs/design.md: ``{"inputs": {m: (C, H, W) float32 normalised}, "label": (H, W)
int64 with ignore 255, "sample_id": str, "conditions": tuple[str, ...]}``. Geometric augmentation (scale, crop,
horizontal flip) is drawn once per sample and applied to every modality and the label; photometric augmentation is
drawn per modality. Randomness comes from ``numpy.random.default_rng([seed, epoch, index])``, so a sample is the
same in any worker and any order; call :meth:`MultimodalDataset.set_epoch` each epoch for fresh augmentation.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from equiseg.data.io import apply_label_encoding, decode_array, select_bands
from equiseg.data.manifest import ALLOWED_SPLITS, manifest_modalities, read_manifest, resolve_in_root
from equiseg.data.readers import spec_for
from equiseg.data.specs import palette_to_ids
from equiseg.modalities import from_unit, to_unit

__all__ = ["MultimodalDataset", "collate_samples", "make_loader"]

IGNORE_INDEX = 255
_SCALE_RANGE = (0.75, 1.5)


class MultimodalDataset(Dataset[dict[str, Any]]):
    """Samples of one split of a manifest, normalised per ``equiseg.modalities``.

    Args:
        manifest: the ``manifest.parquet`` (or its folder).
        data_root: folder the manifest paths are relative to.
        modalities: modalities to return, in this order; each must be in the manifest.
        split: ``train``, ``val``, ``test`` or None for every row.
        augment: random scale, crop and flip (joint) plus per-modality photometric jitter.
        crop_size: square output side; random crop when augmenting, centre crop otherwise; padded with zeros
            ("missing") and ignore labels when the image is smaller. None keeps the native size.
        modality_dropout: probability of zeroing each modality (never all of them) per sample.
        seed: base seed of every random draw.
        num_classes: when given, a label id outside ``0..num_classes-1`` (other than the ignore index) raises a
            ValueError that names the sample and the fix, instead of an out-of-bounds error deep in the loss.
    """

    def __init__(
        self,
        manifest: Path,
        data_root: Path,
        *,
        modalities: Sequence[str],
        split: str | None,
        augment: bool = False,
        crop_size: int | None = None,
        modality_dropout: float = 0.0,
        seed: int = 0,
        num_classes: int | None = None,
    ) -> None:
        table = read_manifest(manifest)
        available = manifest_modalities(table)
        missing = [m for m in modalities if m not in available]
        if missing or not modalities:
            raise ValueError(
                f"modalities {missing or '(none)'} not in manifest {manifest}; it holds {', '.join(available)}"
            )
        if split is not None and split not in ALLOWED_SPLITS:
            raise ValueError(f"split must be one of {ALLOWED_SPLITS} or None, got {split!r}")
        if not 0.0 <= modality_dropout < 1.0:
            raise ValueError(f"modality_dropout must be in [0, 1), got {modality_dropout}")
        if crop_size is not None and crop_size < 1:
            raise ValueError(f"crop_size must be positive or None, got {crop_size}")
        rows = [r for r in table.to_pylist() if not r.get("ingest_codes")]  # marked for quarantine at ingestion
        if split is not None:
            rows = [r for r in rows if r["split"] == split]
        self.rows = rows
        self.data_root = Path(data_root)
        self.modalities = tuple(modalities)
        self.split = split
        self.augment = augment
        self.crop_size = crop_size
        self.modality_dropout = modality_dropout
        self.seed = seed
        self.num_classes = num_classes
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Change the augmentation draw (call once per epoch; workers see it on the next iterator)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.rows)

    def _load_modality(self, row: dict[str, Any], modality: str) -> torch.Tensor:
        path = resolve_in_root(self.data_root, row[f"{modality}_path"])
        array = select_bands(decode_array(path.read_bytes(), str(path)), row[f"{modality}_bands"])
        unit = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32)).permute(2, 0, 1)
        scale = row[f"{modality}_scale"]
        if scale is None:
            scale = 1.0 / float(np.iinfo(array.dtype).max) if np.issubdtype(array.dtype, np.integer) else 1.0
        return (unit * float(scale)).clamp_(0.0, 1.0)

    def _load_label(self, row: dict[str, Any], height: int, width: int) -> torch.Tensor:
        if not row["label_path"]:
            return torch.full((height, width), IGNORE_INDEX, dtype=torch.int64)
        path = resolve_in_root(self.data_root, row["label_path"])
        array = decode_array(path.read_bytes(), str(path))
        encoding = row["label_encoding"] or "identity"
        if encoding == "palette":  # a colour-coded label: map its colours to ids with the dataset's palette
            spec = spec_for(row["source"])
            ids = palette_to_ids(array, spec.label.palette) if spec and spec.label.palette else None
            if ids is None:
                raise ValueError(f"sample {row['sample_id']}: label colours are not the {row['source']} palette")
            array, encoding = ids, "identity"
        ids = apply_label_encoding(array[:, :, 0], encoding, IGNORE_INDEX)
        if self.num_classes is not None:
            known = ids[ids != IGNORE_INDEX]
            if known.size and int(known.max()) >= self.num_classes:
                raise ValueError(
                    f"sample {row['sample_id']}: label id {int(known.max())} but data.num_classes="
                    f"{self.num_classes}; set data.num_classes to the dataset's class count (at least "
                    f"{int(known.max()) + 1})"
                )
        return torch.from_numpy(ids)

    def __getitem__(self, index: int) -> dict[str, Any]:
        row = self.rows[index]
        rng = np.random.default_rng([self.seed, self.epoch, index])
        images = {m: self._load_modality(row, m) for m in self.modalities}
        first = images[self.modalities[0]]
        label = self._load_label(row, first.shape[1], first.shape[2])
        for modality, image in images.items():
            if image.shape[1:] != label.shape:
                raise ValueError(
                    f"sample {row['sample_id']}: {modality} is {tuple(image.shape[1:])} but the label is "
                    f"{tuple(label.shape)}; run `equiseg data validate` to quarantine such samples"
                )
        if self.augment:
            images, label = _random_scale(images, label, rng)
        if self.crop_size is not None:
            images, label = _crop(images, label, self.crop_size, rng if self.augment else None)
        if self.augment:
            if rng.random() < 0.5:
                images = {m: x.flip(-1) for m, x in images.items()}
                label = label.flip(-1)
            images = {m: _photometric(x, m, rng) for m, x in images.items()}
        inputs = {m: from_unit(x, m).contiguous() for m, x in images.items()}
        if self.modality_dropout > 0.0 and len(inputs) > 1:
            keep = rng.random(len(inputs)) >= self.modality_dropout
            if not keep.any():
                keep[int(rng.integers(len(inputs)))] = True
            for modality, kept in zip(self.modalities, keep.tolist(), strict=True):
                if not kept:
                    inputs[modality] = torch.zeros_like(inputs[modality])
        return {
            "inputs": inputs,
            "label": label.contiguous(),
            "sample_id": row["sample_id"],
            "conditions": tuple(row["conditions"] or ()),
        }


def _random_scale(
    images: dict[str, torch.Tensor], label: torch.Tensor, rng: np.random.Generator
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    factor = float(rng.uniform(*_SCALE_RANGE))
    height, width = label.shape
    size = (max(1, round(height * factor)), max(1, round(width * factor)))
    scaled = {
        m: F.interpolate(x[None], size=size, mode="bilinear", align_corners=False, antialias=factor < 1)[0]
        for m, x in images.items()
    }
    scaled_label = F.interpolate(label[None, None].float(), size=size, mode="nearest")[0, 0].long()
    return scaled, scaled_label


def _crop(
    images: dict[str, torch.Tensor], label: torch.Tensor, crop: int, rng: np.random.Generator | None
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    height, width = label.shape
    pad_h, pad_w = max(0, crop - height), max(0, crop - width)
    if pad_h or pad_w:
        images = {m: _pad_unit(x, m, pad_h, pad_w) for m, x in images.items()}
        label = F.pad(label, (0, pad_w, 0, pad_h), value=IGNORE_INDEX)
        height, width = label.shape
    if rng is None:
        top, left = (height - crop) // 2, (width - crop) // 2
    else:
        top, left = int(rng.integers(height - crop + 1)), int(rng.integers(width - crop + 1))
    window = (slice(top, top + crop), slice(left, left + crop))
    return {m: x[:, window[0], window[1]] for m, x in images.items()}, label[window]


def _pad_unit(x: torch.Tensor, modality: str, pad_h: int, pad_w: int) -> torch.Tensor:
    """Pad a unit-space image (bottom/right) with the value that normalises to 0, the contract's "missing"."""
    missing = to_unit(torch.zeros(x.shape[0], 1, 1, dtype=x.dtype), modality)  # the mean: ImageNet mean for RGB
    padded = missing.expand(x.shape[0], x.shape[1] + pad_h, x.shape[2] + pad_w).clone()
    padded[:, : x.shape[1], : x.shape[2]] = x
    return padded


def _photometric(x: torch.Tensor, modality: str, rng: np.random.Generator) -> torch.Tensor:
    """Per-modality jitter in unit space: brightness/contrast (+ saturation for RGB), gain and noise otherwise."""
    if modality == "rgb":
        brightness = float(rng.uniform(0.8, 1.2))
        contrast = float(rng.uniform(0.8, 1.2))
        saturation = float(rng.uniform(0.8, 1.2))
        grey = x.mean(dim=0, keepdim=True)
        x = grey + (x - grey) * saturation
        x = (x - x.mean()) * contrast + x.mean()
        return (x * brightness).clamp_(0.0, 1.0)
    gain = float(rng.uniform(0.9, 1.1))
    sigma = float(rng.uniform(0.0, 0.02))
    noise = torch.from_numpy(rng.standard_normal(size=tuple(x.shape), dtype=np.float32)) * sigma
    return (x * gain + noise).clamp_(0.0, 1.0)


def collate_samples(samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Stack samples into the batch of docs/design.md (inputs (B, C, H, W), label (B, H, W), lists of ids/tags)."""
    if not samples:
        raise ValueError("collate_samples needs at least one sample")
    modalities = list(samples[0]["inputs"])
    for sample in samples[1:]:
        if list(sample["inputs"]) != modalities:
            raise ValueError(
                f"samples disagree on modalities ({list(sample['inputs'])} vs {modalities}); "
                "build the dataset with one fixed modality list"
            )
    try:
        inputs = {m: torch.stack([s["inputs"][m] for s in samples]) for m in modalities}
        label = torch.stack([s["label"] for s in samples])
    except RuntimeError as exc:
        raise ValueError(f"samples have different sizes ({exc}); set crop_size so every sample has one size") from exc
    return {
        "inputs": inputs,
        "label": label,
        "sample_id": [s["sample_id"] for s in samples],
        "conditions": [tuple(s["conditions"]) for s in samples],
    }


def make_loader(
    manifest: Path,
    data_root: Path,
    *,
    modalities: Sequence[str],
    split: str | None,
    batch_size: int,
    shuffle: bool,
    num_workers: int = 0,
    augment: bool = False,
    crop_size: int | None = None,
    modality_dropout: float = 0.0,
    seed: int = 0,
    drop_last: bool = False,
) -> DataLoader[dict[str, Any]]:
    """A DataLoader over :class:`MultimodalDataset` with :func:`collate_samples` and a seeded shuffle."""
    dataset = MultimodalDataset(
        manifest,
        data_root,
        modalities=modalities,
        split=split,
        augment=augment,
        crop_size=crop_size,
        modality_dropout=modality_dropout,
        seed=seed,
    )
    if len(dataset) == 0:
        raise ValueError(f"split {split!r} of {manifest} is empty; check the manifest's split column")
    generator = torch.Generator()
    generator.manual_seed(seed)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        num_workers=num_workers,
        collate_fn=collate_samples,
        generator=generator,
        drop_last=drop_last,
        persistent_workers=False,
    )
