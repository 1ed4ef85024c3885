"""Readers that turn real dataset layouts into a manifest (docs/data.md).

Readers never copy or convert pixels: the manifest points into the dataset root and records how to decode each
file (``bands``, ``scale``) and how to map label ids (``label_encoding``). Formats:

* ``mfnet``: original layout, ``images/<name>.png`` 4-channel RGB+thermal (PIL opens it as RGBA; channel 3 is
  thermal, not alpha), ``labels/<name>.png`` ids 0..8, ``{train,val,test}.txt``; names ending D/N → day/night.
* ``mfnet_cmx``: ``rgb/``, ``ther/``, ``labels/``, ``train.txt``/``val.txt``/``test.txt``.
* ``pst900``: ``{train,test}/{rgb,thermal,depth,labels}/<name>.png`` (depth uint16; 3-channel thermal → channel 0).
* ``nyuv2``: CMX ``RGB/ HHA/ Label/`` or DFormer ``RGB/ Depth/ Label/`` with ``train.txt``/``test.txt``; label − 1,
  0 → ignore.
* ``deliver``: ``{img,hha,depth,event,lidar,semantic}/<cond>/<split>/<seq>/<frame>_<kind>_front.png``; raw label 0
  and 255 → ignore, ids − 1; tags = condition + sensor-failure case found in the path. CMNeXt's "depth" input is
  our ``hha`` modality (the 3-channel ``hha/`` folder); ``depth`` here is the raw ``depth/`` folder.
* ``muses``: ``<modality>/<split>/<weather>/<time>/*`` projected images (PNG or NPZ) + ``gt_semantic/…
  *_gt_labelTrainIds.png``; 255 stays ignore (never mapped to class 0).
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from tqdm import tqdm

from equiseg.data.io import peek_channels_dtype
from equiseg.data.manifest import (
    ALLOWED_SPLITS,
    MANIFEST_NAME,
    ManifestRow,
    file_sha256,
    rows_to_table,
    write_manifest,
)

__all__ = ["DATASET_CLASSES", "READERS", "ingest_dataset", "list_formats"]

logger = logging.getLogger(__name__)

#: Classes per dataset as evaluated (docs/data.md, "Real datasets").
DATASET_CLASSES: dict[str, int] = {
    "mfnet": 9,
    "mfnet_cmx": 9,
    "pst900": 5,
    "nyuv2": 40,
    "deliver": 25,
    "muses": 19,
}
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".npz", ".npy", ".tif", ".tiff")
_DELIVER_CASES = ("motionblur", "overexposure", "underexposure", "lidarjitter", "eventlowres")


def _default_scale(dtype: str) -> float:
    return {"uint8": 1.0 / 255.0, "uint16": 1.0 / 65535.0, "bool": 1.0}.get(dtype, 1.0)


def _spec(root: Path, path: Path, *, bands: str = "", channels: int | None = None) -> dict[str, Any]:
    """Manifest fields of one modality file (header peek + checksum)."""
    file_channels, dtype, _h, _w = peek_channels_dtype(path)
    if channels is None:
        channels = file_channels
    return {
        "path": path.relative_to(root).as_posix(),
        "channels": channels,
        "dtype": dtype,
        "sha256": None,  # filled by ingest_dataset in one pass with a progress bar
        "bands": bands,
        "scale": _default_scale(dtype),
    }


def _single_channel_spec(root: Path, path: Path) -> dict[str, Any]:
    """Spec for a sensor that should be one channel: 3 identical channels (AGC thermal, ×3 depth) → channel 0."""
    channels, _dtype, _h, _w = peek_channels_dtype(path)
    return _spec(root, path, bands="0:1", channels=1) if channels > 1 else _spec(root, path)


def _size(path: Path) -> tuple[int, int]:
    _c, _d, height, width = peek_channels_dtype(path)
    return height, width


def _find(folder: Path, stem: str) -> Path | None:
    for suffix in _IMAGE_SUFFIXES:
        candidate = folder / f"{stem}{suffix}"
        if candidate.is_file():
            return candidate
    return None


def _read_split_file(path: Path) -> list[str]:
    """Names in a split list; lines may be bare names or paths (``RGB/12.jpg Label/12.png``): first token's stem."""
    names = []
    for line in path.read_text().splitlines():
        tokens = line.strip().split()
        if tokens:
            names.append(Path(tokens[0]).stem)
    return names


def _split_lists(root: Path, splits: Iterable[str] = ALLOWED_SPLITS) -> dict[str, list[str]]:
    lists = {s: _read_split_file(root / f"{s}.txt") for s in splits if (root / f"{s}.txt").is_file()}
    if not lists:
        raise FileNotFoundError(f"no train.txt / val.txt / test.txt split list in {root}; is --root the dataset top?")
    return lists


def _select(found: Sequence[str], requested: Sequence[str] | None, fmt: str) -> list[str]:
    if requested is None:
        return list(found)
    missing = [m for m in requested if m not in found]
    if missing:
        raise ValueError(f"{fmt}: modalities {missing} not available here; this layout provides {list(found)}")
    return list(requested)


def read_mfnet(root: Path, modalities: Sequence[str] | None = None) -> tuple[list[ManifestRow], list[str]]:
    """MFNet original layout: one 4-channel RGB+T PNG per frame."""
    mods = _select(["rgb", "thermal"], modalities, "mfnet")
    rows = []
    for split, names in _split_lists(root).items():
        for name in names:
            image = _find(root / "images", name)
            if image is None:
                raise FileNotFoundError(f"mfnet: {split}.txt lists {name} but images/{name}.png is missing")
            channels, _dtype, height, width = peek_channels_dtype(image)
            if channels != 4:
                raise ValueError(f"mfnet: {image} has {channels} channels; the original layout stores RGB+T (4)")
            files = {}
            if "rgb" in mods:
                files["rgb"] = _spec(root, image, bands="0:3", channels=3)
            if "thermal" in mods:
                files["thermal"] = {**_spec(root, image, bands="3:4", channels=1)}
            label = _find(root / "labels", name)
            rows.append(
                ManifestRow(
                    sample_id=name,
                    split=split,
                    source="mfnet",
                    height=height,
                    width=width,
                    class_set="mfnet-9",
                    files=files,
                    label_path=label.relative_to(root).as_posix() if label else None,
                    conditions=_day_night(name),
                )
            )
    return rows, mods


def _day_night(name: str) -> tuple[str, ...]:
    if name.endswith("D"):
        return ("day",)
    if name.endswith("N"):
        return ("night",)
    return ()


def read_mfnet_cmx(root: Path, modalities: Sequence[str] | None = None) -> tuple[list[ManifestRow], list[str]]:
    """MFNet as pre-split by CMX/CMNeXt: ``rgb/``, ``ther/``, ``labels/``."""
    mods = _select(["rgb", "thermal"], modalities, "mfnet_cmx")
    rows = []
    for split, names in _split_lists(root).items():
        for name in names:
            rgb, ther, label = _find(root / "rgb", name), _find(root / "ther", name), _find(root / "labels", name)
            if rgb is None or ther is None:
                raise FileNotFoundError(f"mfnet_cmx: {split}.txt lists {name} but rgb/ or ther/ lacks it")
            height, width = _size(rgb)
            files = {}
            if "rgb" in mods:
                files["rgb"] = _spec(root, rgb)
            if "thermal" in mods:
                files["thermal"] = _single_channel_spec(root, ther)
            rows.append(
                ManifestRow(
                    sample_id=name,
                    split=split,
                    source="mfnet",
                    height=height,
                    width=width,
                    class_set="mfnet-9",
                    files=files,
                    label_path=label.relative_to(root).as_posix() if label else None,
                    conditions=_day_night(name),
                )
            )
    return rows, mods


def read_pst900(root: Path, modalities: Sequence[str] | None = None) -> tuple[list[ManifestRow], list[str]]:
    """PST900: ``{train,test}/{rgb,thermal,depth,labels}/<name>.png`` paired by name."""
    split_dirs = [s for s in ("train", "test") if (root / s / "rgb").is_dir()]
    if not split_dirs:
        raise FileNotFoundError(f"pst900: no train/rgb or test/rgb folder under {root}")
    found = ["rgb", "thermal"] + (["depth"] if all((root / s / "depth").is_dir() for s in split_dirs) else [])
    mods = _select(found, modalities, "pst900")
    folders = {"rgb": "rgb", "thermal": "thermal", "depth": "depth"}
    rows = []
    for split in split_dirs:
        for rgb in sorted((root / split / "rgb").iterdir()):
            if rgb.suffix.lower() not in _IMAGE_SUFFIXES:
                continue
            name = rgb.stem
            files = {}
            for modality in mods:
                path = _find(root / split / folders[modality], name)
                if path is None:
                    raise FileNotFoundError(f"pst900: {split}/{folders[modality]}/{name}.png is missing")
                files[modality] = _spec(root, path) if modality == "rgb" else _single_channel_spec(root, path)
            label = _find(root / split / "labels", name)
            height, width = _size(rgb)
            rows.append(
                ManifestRow(
                    sample_id=f"{split}/{name}",
                    split=split,
                    source="pst900",
                    height=height,
                    width=width,
                    class_set="pst900-5",
                    files=files,
                    label_path=label.relative_to(root).as_posix() if label else None,
                )
            )
    return rows, mods


def read_nyuv2(root: Path, modalities: Sequence[str] | None = None) -> tuple[list[ManifestRow], list[str]]:
    """NYU Depth v2 in the CMX (``HHA/``) or DFormer (``Depth/``) layout."""
    found = ["rgb"] + (["hha"] if (root / "HHA").is_dir() else []) + (["depth"] if (root / "Depth").is_dir() else [])
    if len(found) == 1:
        raise FileNotFoundError(f"nyuv2: neither HHA/ nor Depth/ under {root}")
    mods = _select(found, modalities, "nyuv2")
    folders = {"rgb": "RGB", "hha": "HHA", "depth": "Depth"}
    rows = []
    for split, names in _split_lists(root, ("train", "val", "test")).items():
        for name in names:
            files = {}
            for modality in mods:
                path = _find(root / folders[modality], name)
                if path is None:
                    raise FileNotFoundError(f"nyuv2: {split}.txt lists {name} but {folders[modality]}/ lacks it")
                files[modality] = _single_channel_spec(root, path) if modality == "depth" else _spec(root, path)
            label = _find(root / "Label", name)
            height, width = _size(root / files["rgb"]["path"])
            rows.append(
                ManifestRow(
                    sample_id=name,
                    split=split,
                    source="nyuv2",
                    height=height,
                    width=width,
                    class_set="nyuv2-40",
                    files=files,
                    label_path=label.relative_to(root).as_posix() if label else None,
                    label_encoding="shift1",
                )
            )
    return rows, mods


_DELIVER_FOLDERS = {"rgb": ("img", "rgb"), "hha": ("hha", "depth"), "depth": ("depth", "depth")}
_DELIVER_FOLDERS.update({"event": ("event", "event"), "lidar": ("lidar", "lidar")})


def read_deliver(root: Path, modalities: Sequence[str] | None = None) -> tuple[list[ManifestRow], list[str]]:
    """DeLiVER: other modalities found by substituting ``img``/``_rgb_`` in the RGB path."""
    rgb_files = sorted((root / "img").glob("*/*/*/*_rgb_front*.png"))
    if not rgb_files:
        raise FileNotFoundError(f"deliver: no img/<cond>/<split>/<seq>/*_rgb_front.png under {root}")
    found = [m for m, (folder, _k) in _DELIVER_FOLDERS.items() if (root / folder).is_dir()]
    mods = _select(found, modalities, "deliver")
    rows = []
    for rgb in rgb_files:
        rel = rgb.relative_to(root)
        cond, split, seq = rel.parts[1], rel.parts[2], rel.parts[3]
        files = {}
        for modality in mods:
            folder, kind = _DELIVER_FOLDERS[modality]
            path = root / folder / cond / split / seq / rgb.name.replace("_rgb_", f"_{kind}_")
            if not path.is_file():
                raise FileNotFoundError(f"deliver: {path.relative_to(root)} (for {rel}) is missing")
            files[modality] = _spec(root, path)
        label = root / "semantic" / cond / split / seq / rgb.name.replace("_rgb_", "_semantic_")
        height, width = _size(rgb)
        cases = tuple(case for case in _DELIVER_CASES if case in rel.as_posix())
        rows.append(
            ManifestRow(
                sample_id=f"{cond}/{split}/{seq}/{rgb.stem.replace('_rgb_front', '')}",
                split=split,
                source="deliver",
                height=height,
                width=width,
                class_set="deliver-25",
                files=files,
                label_path=label.relative_to(root).as_posix() if label.is_file() else None,
                label_encoding="deliver",
                conditions=(cond, *cases),
            )
        )
    return rows, mods


_MUSES_FOLDERS = {"rgb": "frame_camera", "event": "event_camera", "lidar": "lidar", "radar": "radar"}
_MUSES_SUFFIX = re.compile(r"_(frame_camera|event_camera|lidar|radar|gt_labelTrainIds|gt_labelIds)$")


def _muses_key(path: Path) -> str:
    return _MUSES_SUFFIX.sub("", path.stem)


def read_muses(root: Path, modalities: Sequence[str] | None = None) -> tuple[list[ManifestRow], list[str]]:
    """MUSES with projected sensors: ``<modality>/<split>/<weather>/<time>/`` paired by frame name."""
    found = [m for m, folder in _MUSES_FOLDERS.items() if (root / folder).is_dir()]
    if "rgb" not in found:
        raise FileNotFoundError(f"muses: no frame_camera/ folder under {root}")
    mods = _select(found, modalities, "muses")
    index: dict[str, dict[tuple[str, ...], Path]] = {}
    for modality in mods:
        folder = root / _MUSES_FOLDERS[modality]
        index[modality] = {
            (*p.relative_to(folder).parts[:3], _muses_key(p)): p
            for p in folder.glob("*/*/*/*")
            if p.suffix.lower() in _IMAGE_SUFFIXES
        }
    labels = {
        (*p.relative_to(root / "gt_semantic").parts[:3], _muses_key(p)): p
        for p in (root / "gt_semantic").glob("*/*/*/*_gt_labelTrainIds.png")
    }
    rows = []
    for key, rgb in sorted(index["rgb"].items()):
        split, weather, time_of_day, _frame = key
        files = {}
        for modality in mods:
            path = index[modality].get(key)
            if path is None:
                raise FileNotFoundError(f"muses: {modality} file for {'/'.join(key)} is missing")
            files[modality] = _spec(root, path)
        label = labels.get(key)
        height, width = _size(rgb)
        rows.append(
            ManifestRow(
                sample_id="/".join(key),
                split=split,
                source="muses",
                height=height,
                width=width,
                class_set="muses-19",
                files=files,
                label_path=label.relative_to(root).as_posix() if label else None,
                label_encoding="identity",
                conditions=(weather, time_of_day),
            )
        )
    return rows, mods


READERS: dict[str, Callable[[Path, Sequence[str] | None], tuple[list[ManifestRow], list[str]]]] = {
    "mfnet": read_mfnet,
    "mfnet_cmx": read_mfnet_cmx,
    "pst900": read_pst900,
    "nyuv2": read_nyuv2,
    "deliver": read_deliver,
    "muses": read_muses,
}


def _with_checksums(root: Path, row: ManifestRow) -> ManifestRow:
    """The row with the SHA-256 of every file (the MFNet RGB+T file shared by two modalities is hashed once)."""
    cache: dict[str, str] = {}

    def sha(rel: str) -> str:
        if rel not in cache:
            cache[rel] = file_sha256(root / rel)
        return cache[rel]

    files = {m: {**spec, "sha256": sha(str(spec["path"]))} for m, spec in row.files.items()}
    label_sha = sha(row.label_path) if row.label_path else None
    return dataclasses.replace(row, files=files, label_sha256=label_sha)


def list_formats() -> list[str]:
    """Formats ``ingest_dataset`` understands."""
    return sorted(READERS)


def ingest_dataset(
    fmt: str, root: Path, out_dir: Path, *, modalities: Sequence[str] | None = None, progress: bool = True
) -> Path:
    """Read a dataset in layout ``fmt`` under ``root`` and write ``out_dir/manifest.parquet`` (paths relative to root).

    Raises:
        KeyError: unknown format (the message lists the valid ones).
        FileNotFoundError: the layout is not there or a paired file is missing.
    """
    try:
        reader = READERS[fmt]
    except KeyError:
        raise KeyError(f"unknown dataset format {fmt!r}; valid formats: {', '.join(list_formats())}") from None
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"dataset root {root} is not a folder")
    rows, mods = reader(root, modalities)
    if not rows:
        raise ValueError(f"{fmt}: found no samples under {root}")
    rows = [
        _with_checksums(root, row)
        for row in tqdm(rows, desc=f"checksum {fmt}", unit="sample", disable=not progress, leave=False)
    ]
    table = rows_to_table(rows, mods, num_classes=DATASET_CLASSES[fmt], source=fmt)
    manifest = write_manifest(table, Path(out_dir) / MANIFEST_NAME)
    logger.info("ingested %d %s samples (%s) from %s into %s", len(rows), fmt, ",".join(mods), root, manifest)
    return manifest
