"""Synthetic datasets on disk: the world of :mod:`equiseg.data.world` rendered scene by scene into PNGs and a
manifest (docs/data.md), byte-identical per seed, so a folder the generator wrote can be recognised and kept."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from equiseg.config import DataConfig
from equiseg.data.dominance import DOMINANT_MODALITIES
from equiseg.data.io import encode_png, save_png
from equiseg.data.manifest import (
    MANIFEST_NAME,
    ManifestError,
    ManifestRow,
    PathEscapeError,
    manifest_info,
    read_manifest,
    resolve_in_root,
    rows_to_table,
    write_manifest,
)
from equiseg.data.world import (
    CLASS_NAMES,
    CLASS_TABLE,
    DEPTH_MAX_MM,
    SYNTHETIC_CLASS_SET,
    SYNTHETIC_MODALITIES,
    SyntheticClass,
    render_sample,
)

__all__ = [
    "CLASS_NAMES",
    "CLASS_TABLE",
    "DEPTH_MAX_MM",
    "DOMINANT_MODALITIES",
    "SYNTHETIC_CLASS_SET",
    "SYNTHETIC_MODALITIES",
    "SyntheticClass",
    "generate_from_config",
    "generate_synthetic",
    "render_sample",
]

logger = logging.getLogger(__name__)

_MODALITY_CHANNELS = {"rgb": 3, "depth": 1, "thermal": 1, "lidar": 1, "event": 1, "hha": 3}


def _clear_previous(out_dir: Path, overwrite: bool) -> None:
    """Refuse a non-empty ``out_dir`` unless ``overwrite``; then remove only what an earlier run wrote: the files its
    synthetic manifest lists, the manifest, and the folders that this leaves empty. Nothing else is touched."""
    if not any(out_dir.iterdir()):
        return
    if not overwrite:
        raise FileExistsError(
            f"{out_dir} is not empty; choose an empty folder or pass --overwrite to replace an earlier synthetic "
            "dataset there (only the files it wrote are removed)"
        )
    manifest = out_dir / MANIFEST_NAME
    try:
        table = read_manifest(manifest) if manifest.is_file() else None
    except ManifestError:
        table = None
    if table is None or manifest_info(table).source != "synthetic":
        return  # no earlier synthetic output recorded here: files are overwritten by name only
    columns = [c for c in table.column_names if c.endswith("_path")]
    folders = set()
    for rel in (v for c in columns for v in table.column(c).to_pylist() if v):
        try:
            path = resolve_in_root(out_dir, rel)
        except PathEscapeError:
            continue
        if path.is_file() and not path.is_symlink():
            path.unlink()
            folders.add(path.parent)
    manifest.unlink()
    for folder in sorted(folders, key=lambda p: len(p.parts), reverse=True):
        if folder != out_dir and not any(folder.iterdir()):
            folder.rmdir()


def _assign_splits(rng: np.random.Generator, samples: int, val_fraction: float, test_fraction: float) -> list[str]:
    if not (0.0 <= val_fraction < 1.0 and 0.0 <= test_fraction < 1.0 and val_fraction + test_fraction < 1.0):
        raise ValueError(
            f"val_fraction={val_fraction} and test_fraction={test_fraction} must be in [0, 1) and sum below 1"
        )
    n_val = round(samples * val_fraction)
    n_test = round(samples * test_fraction)
    splits = ["train"] * samples
    for rank, index in enumerate(rng.permutation(samples).tolist()):
        if rank < n_val:
            splits[index] = "val"
        elif rank < n_val + n_test:
            splits[index] = "test"
    return splits


def _check_arguments(
    modalities: Sequence[str],
    samples: int,
    size: int,
    num_classes: int | None,
    dominant: str,
    dominance: float,
    conditions_split: str,
    test_fraction: float,
) -> int:
    """Refuse bad :func:`generate_synthetic` arguments with the fix; returns the class count."""
    unknown = [m for m in modalities if m not in SYNTHETIC_MODALITIES]
    if unknown or not modalities:
        raise ValueError(
            f"synthetic world cannot render modalities {unknown or '(none)'}; choose from {SYNTHETIC_MODALITIES}"
        )
    if len(set(modalities)) != len(modalities):
        raise ValueError(f"modalities {list(modalities)} contain duplicates")
    if samples < 1:
        raise ValueError(f"samples must be ≥ 1, got {samples}")
    if size < 16:
        raise ValueError(f"size must be ≥ 16 pixels, got {size}")
    n_classes = len(CLASS_TABLE) if num_classes is None else num_classes
    if not 2 <= n_classes <= len(CLASS_TABLE):
        raise ValueError(
            f"num_classes must be between 2 and {len(CLASS_TABLE)} for the synthetic world, got {n_classes}"
        )
    if dominant and dominant not in DOMINANT_MODALITIES:
        raise ValueError(f"dominant modality {dominant!r} is not one of {DOMINANT_MODALITIES}; or '' for none")
    if not 0.0 <= dominance <= 1.0:
        raise ValueError(f"dominance must be in [0, 1] (0 = balanced), got {dominance}")
    if conditions_split not in ("all", "test"):
        raise ValueError(f"conditions_split must be 'all' or 'test', got {conditions_split!r}")
    if conditions_split == "test" and test_fraction <= 0:
        raise ValueError("conditions_split='test' needs a test split; set test_fraction > 0, e.g. 0.2")
    return n_classes


_META_GENERATOR = b"equiseg.generator"


@dataclass(frozen=True)
class _World:
    """The settings that decide every scene's pixels (the split assignment aside)."""

    seed: int
    size: int
    modalities: tuple[str, ...]
    conditions: bool
    conditions_split: str
    num_classes: int
    dominant: str
    dominance: float


def _render_scene(index: int, split: str, world: _World) -> tuple[dict[str, np.ndarray], np.ndarray, bool, bool]:
    """Scene ``index`` of the world: its sensor arrays, label and (night, fog) flags; a pure function of its inputs."""
    rng = np.random.default_rng([world.seed, index])
    night = world.conditions and bool(rng.random() < 0.25)
    fog = world.conditions and bool(rng.random() < 0.2)
    if world.conditions_split == "test" and split != "test":  # the draws above keep every stream aligned
        night = fog = False
    arrays, label = render_sample(
        rng,
        world.size,
        world.modalities,
        night=night,
        fog=fog,
        num_classes=world.num_classes,
        dominant=world.dominant,
        dominance=world.dominance,
    )
    return arrays, label, night, fog


def _generator_record(world: _World, samples: int, val_fraction: float, test_fraction: float) -> dict[str, object]:
    """The generator settings a synthetic manifest records in its footer."""
    generator: dict[str, object] = {
        "samples": samples,
        "size": world.size,
        "modalities": list(world.modalities),
        "seed": world.seed,
    }
    generator.update(conditions=world.conditions, val_fraction=val_fraction, test_fraction=test_fraction)
    if world.dominant and world.dominance > 0.0:  # recorded only when set: the balanced world's manifest unchanged
        generator.update(dominant=world.dominant, dominance=world.dominance)
    if world.conditions_split != "all":
        generator.update(conditions_split=world.conditions_split)
    return generator


def _unchanged_dataset(out_dir: Path, world: _World, samples: int, val_fraction: float, test_fraction: float) -> bool:
    """Whether ``out_dir`` already holds, byte for byte, what :func:`generate_synthetic` would write there.

    The manifest must record the same generator settings and classes, every file it lists must be there with its
    recorded SHA-256, and today's renderer must reproduce the first scene's recorded bytes (so a changed renderer
    never passes old pixels off as new).
    """
    manifest = out_dir / MANIFEST_NAME
    try:
        table = read_manifest(manifest) if manifest.is_file() else None
    except ManifestError:
        return False
    if table is None or table.num_rows != samples or table.num_rows == 0:
        return False
    recorded = (table.schema.metadata or {}).get(_META_GENERATOR, b"")
    expected = json.dumps(_generator_record(world, samples, val_fraction, test_fraction), sort_keys=True).encode()
    if recorded != expected or manifest_info(table).num_classes != world.num_classes:
        return False
    rows = table.to_pylist()
    checks = [(row[f"{m}_path"], row[f"{m}_sha256"]) for row in rows for m in world.modalities]
    checks += [(row["label_path"], row["label_sha256"]) for row in rows]
    for rel, digest in checks:
        try:
            path = resolve_in_root(out_dir, rel)
        except PathEscapeError:
            return False
        if not path.is_file() or hashlib.sha256(path.read_bytes()).hexdigest() != digest:
            return False
    first = rows[0]
    arrays, label, _, _ = _render_scene(int(first["sample_id"].removeprefix("syn")), first["split"], world)
    rendered = {m: hashlib.sha256(encode_png(arrays[m])).hexdigest() for m in world.modalities}
    rendered["label"] = hashlib.sha256(encode_png(label)).hexdigest()
    return rendered == {**{m: first[f"{m}_sha256"] for m in world.modalities}, "label": first["label_sha256"]}


def generate_synthetic(
    out_dir: Path,
    *,
    samples: int,
    size: int,
    modalities: Sequence[str],
    seed: int,
    conditions: bool = True,
    val_fraction: float = 0.25,
    test_fraction: float = 0.0,
    num_classes: int | None = None,
    dominant: str = "",
    dominance: float = 0.0,
    conditions_split: str = "all",
    progress: bool = True,
    overwrite: bool = False,
    keep_unchanged: bool = False,
) -> Path:
    """Write a synthetic multimodal dataset under ``out_dir`` and return its ``manifest.parquet`` path.

    Layout: ``out_dir/<modality>/<id>.png``, ``out_dir/label/<id>.png``, ``out_dir/manifest.parquet``. With
    ``overwrite`` the files an earlier run wrote are replaced, so a folder holding only generator output equals what
    this call produces (DVC relies on it); files the generator did not write are never removed.

    Args:
        out_dir: destination folder (created).
        samples: number of scenes.
        size: side of the square images in pixels (≥ 16).
        modalities: any of rgb, depth, thermal, lidar, event, hha.
        seed: the same seed gives byte-identical files.
        conditions: tag ~25 % of scenes ``night`` (dark RGB) and ~20 % ``fog``; otherwise all ``day``/``clear``.
        val_fraction: share of samples in the ``val`` split.
        test_fraction: share of samples in the ``test`` split.
        num_classes: use only classes ``0 .. num_classes-1`` of :data:`CLASS_TABLE` (2 to 8; default all 8).
        dominant: the modality the dominance dial favours (one of :data:`DOMINANT_MODALITIES`; "" = none).
        dominance: how far it dominates, 0 (balanced) to 1 (it alone carries every class it reveals;
            :func:`equiseg.data.dominance.class_gains`).
        conditions_split: ``"all"`` tags night/fog scenes in every split; ``"test"`` only in the test split (train
            and val stay day/clear, so adverse conditions are unseen in training).
        progress: show a tqdm progress bar.
        overwrite: allow a non-empty ``out_dir``; the files an earlier run wrote (listed in its manifest) are
            removed, nothing else.
        keep_unchanged: if ``out_dir`` already holds what this call would write, byte for byte, keep it and only
            read it (:func:`_unchanged_dataset`): nothing is rewritten, so its DVC version stays the same.

    Raises:
        FileExistsError: ``out_dir`` is not empty and ``overwrite`` is False.
    """
    n_classes = _check_arguments(
        modalities, samples, size, num_classes, dominant, dominance, conditions_split, test_fraction
    )
    out_dir = Path(out_dir)
    world = _World(seed, size, tuple(modalities), conditions, conditions_split, n_classes, dominant, dominance)
    if keep_unchanged and _unchanged_dataset(out_dir, world, samples, val_fraction, test_fraction):
        logger.info("kept the synthetic dataset in %s: it is what this config generates, byte for byte", out_dir)
        return out_dir / MANIFEST_NAME
    out_dir.mkdir(parents=True, exist_ok=True)
    _clear_previous(out_dir, overwrite)
    splits = _assign_splits(np.random.default_rng([seed, 2**31 - 1]), samples, val_fraction, test_fraction)
    rows: list[ManifestRow] = []
    for index in tqdm(range(samples), desc="synth", unit="sample", disable=not progress, leave=False):
        arrays, label, night, fog = _render_scene(index, splits[index], world)
        sample_id = f"syn{index:06d}"
        files: dict[str, dict[str, object]] = {}
        for modality in modalities:
            rel = f"{modality}/{sample_id}.png"
            encoded = save_png(arrays[modality], out_dir / rel)
            is16 = arrays[modality].dtype == np.uint16
            files[modality] = {
                "path": rel,
                "channels": _MODALITY_CHANNELS[modality],
                "dtype": "uint16" if is16 else "uint8",
                "sha256": hashlib.sha256(encoded).hexdigest(),
                "bands": "",
                "scale": 1.0 / DEPTH_MAX_MM if is16 else 1.0 / 255.0,
            }
        label_rel = f"label/{sample_id}.png"
        label_sha256 = hashlib.sha256(save_png(label, out_dir / label_rel)).hexdigest()
        rows.append(
            ManifestRow(
                sample_id=sample_id,
                split=splits[index],
                source="synthetic",
                height=size,
                width=size,
                class_set=SYNTHETIC_CLASS_SET
                if n_classes == len(CLASS_TABLE)
                else f"{SYNTHETIC_CLASS_SET}-k{n_classes}",
                files=files,
                label_path=label_rel,
                label_sha256=label_sha256,
                conditions=("night" if night else "day", "fog" if fog else "clear"),
            )
        )
    table = rows_to_table(rows, modalities, num_classes=n_classes, source="synthetic")
    generator = _generator_record(world, samples, val_fraction, test_fraction)
    metadata = dict(table.schema.metadata or {})
    metadata[_META_GENERATOR] = json.dumps(generator, sort_keys=True).encode()
    table = table.replace_schema_metadata(metadata)
    manifest = write_manifest(table, out_dir / MANIFEST_NAME)
    logger.info("wrote %d synthetic samples (%d px, %s) to %s", samples, size, ",".join(modalities), out_dir)
    return manifest


def generate_from_config(data: DataConfig, out_dir: Path, *, progress: bool = False) -> Path:
    """:func:`generate_synthetic` with every setting taken from the ``data:`` section; returns the manifest path.

    A dataset in ``out_dir`` that this call would write byte for byte is kept as it is and only read (no file is
    rewritten, so a run reading it is never disturbed and its DVC version stays the same); otherwise the earlier
    output there is replaced (``overwrite``): only the files that output listed are removed.
    """
    return generate_synthetic(
        out_dir,
        samples=data.samples,
        size=data.image_size,
        modalities=data.modalities,
        seed=data.seed,
        conditions=data.conditions,
        val_fraction=data.val_fraction,
        test_fraction=data.test_fraction,
        num_classes=data.num_classes,
        dominant=data.dominant_modality,
        dominance=data.dominance,
        conditions_split=data.conditions_split,
        progress=progress,
        overwrite=True,
        keep_unchanged=True,
    )
