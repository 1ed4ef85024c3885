"""The loop's data: the split datasets, one epoch's resumable loader and the cached validation batches."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from equiseg.config import EquisegConfig
from equiseg.data.dataset import MultimodalDataset, collate_samples
from equiseg.training.distributed import DistInfo, epoch_indices
from equiseg.training.epoch import resolve_dropout_mode

__all__ = ["epoch_loader", "split_dataset", "val_batches"]


def split_dataset(cfg: EquisegConfig, manifest: Path, data_root: Path, split: str) -> MultimodalDataset:
    """``MultimodalDataset`` of one split; the train split augments, crops and drops modalities.

    Its random draws come from ``(seed, epoch, index)`` (``equiseg.data``), so they do not depend on the worker,
    the order, the world size or a resume.
    """
    training = split == "train"
    return MultimodalDataset(
        Path(manifest),
        Path(data_root),
        modalities=cfg.data.modalities,
        split=split,
        augment=training,
        crop_size=cfg.data.image_size if training else None,
        modality_dropout=cfg.train.modality_dropout if training and resolve_dropout_mode(cfg) == "zero" else 0.0,
        seed=cfg.train.seed,
        num_classes=cfg.data.num_classes,
    )


def epoch_loader(
    dataset: Any, cfg: EquisegConfig, info: DistInfo, epoch: int, skip_steps: int
) -> tuple[DataLoader[Any], int]:
    """This rank's batches of ``epoch`` from step ``skip_steps`` on, and the number of steps in a full epoch."""
    dataset.set_epoch(epoch)
    indices = epoch_indices(
        len(dataset),
        batch_size=cfg.train.batch_size,
        seed=cfg.train.seed,
        epoch=epoch,
        rank=info.rank,
        world_size=info.world_size,
    )
    size = cfg.train.batch_size
    batches = [indices[i : i + size] for i in range(0, len(indices), size)]
    generator = torch.Generator().manual_seed(cfg.train.seed * 7_919 + epoch)  # workers' seeds; not the global RNG
    loader = DataLoader(
        dataset,
        batch_sampler=batches[skip_steps:],
        collate_fn=collate_samples,
        num_workers=cfg.data.num_workers,
        pin_memory=info.device.type == "cuda",
        generator=generator,
        persistent_workers=False,
    )
    return loader, len(batches)


def val_batches(
    cfg: EquisegConfig, manifest: Path, data_root: Path, max_batches: int | None = None
) -> list[dict[str, Any]]:
    """The validation split (its first ``max_batches``) as a list of collated batches (``robustness.batch_size``).

    Raises:
        ValueError: the manifest has no ``val`` samples.
    """
    dataset = split_dataset(cfg, manifest, data_root, "val")
    if len(dataset) == 0:
        raise ValueError(f"{manifest} has no 'val' samples; set data.val_fraction > 0 and regenerate the data")
    loader = DataLoader(dataset, batch_size=cfg.robustness.batch_size, shuffle=False, collate_fn=collate_samples)
    return list(itertools.islice(loader, max_batches))
