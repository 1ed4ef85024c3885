"""MUSES (Brödermann et al., ECCV 2024) with projected sensors: ``<modality>/<split>/<weather>/<time>/*`` (PNG or
NPZ) paired by frame name, labels ``gt_semantic/…/*_gt_labelTrainIds.png``; 255 stays ignore (never class 0)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from equiseg.data.readers._intake import IMAGE_SUFFIXES, Intake, LayoutError, select
from equiseg.data.specs import DatasetSpec, FileSpec, LabelSpec

__all__ = ["SPEC", "read_muses"]

_FOLDERS = {"rgb": "frame_camera", "event": "event_camera", "lidar": "lidar", "radar": "radar"}
_SUFFIX = re.compile(r"_(frame_camera|event_camera|lidar|radar|gt_labelTrainIds|gt_labelIds)$")
_PROJECTED = FileSpec(modes=("L", "array"), dtype="uint8", channels=1, formats=("png", "npz", "npy"))

SPEC = DatasetSpec(
    name="muses",
    source="muses",
    class_set="muses-19",
    num_classes=19,
    files={
        "rgb": FileSpec(modes=("RGB",), dtype="uint8", channels=3),
        "event": _PROJECTED,
        "lidar": FileSpec(
            modes=("array",), dtype="float32", channels=1, formats=("npz", "npy"), value_range=(0.0, 1e4)
        ),
        "radar": FileSpec(
            modes=("array",), dtype="float32", channels=1, formats=("npz", "npy"), value_range=(0.0, 1e4)
        ),
    },
    label=LabelSpec(max_id=18),
)


def _key(root: Path, path: Path) -> tuple[str, ...]:
    return (*path.relative_to(root).parts[:3], _SUFFIX.sub("", path.stem))


def read_muses(intake: Intake, modalities: Sequence[str] | None) -> list[str]:
    """MUSES: samples are the frame-camera images; sensors and labels are paired by split/weather/time/frame."""
    root = intake.root
    found = [m for m, folder in _FOLDERS.items() if (root / folder).is_dir()]
    if "rgb" not in found:
        raise LayoutError(
            f"muses: no frame_camera/ folder under {root}; expected frame_camera/<split>/<weather>/<time>/"
        )
    mods = select(found, modalities, "muses")
    index = {
        m: {
            _key(root / _FOLDERS[m], p): p
            for p in sorted((root / _FOLDERS[m]).glob("*/*/*/*"))
            if p.suffix.lower() in IMAGE_SUFFIXES
        }
        for m in mods
    }
    labels = {
        _key(root / "gt_semantic", p): p for p in sorted((root / "gt_semantic").glob("*/*/*/*_gt_labelTrainIds.png"))
    }
    for key, _rgb in intake.track(sorted(index["rgb"].items())):
        split, weather, time_of_day, _frame = key
        files, problems, size = intake.add_modalities({m: index[m].get(key) for m in mods})
        label = (
            intake.probe(labels.get(key), "label", f"gt_semantic/{'/'.join(key)}")
            if (root / "gt_semantic").is_dir()
            else None
        )
        intake.add("/".join(key), split, files, problems, size=size, label=label, conditions=(weather, time_of_day))
    intake.strays([root / _FOLDERS[m] for m in mods] + [root / "gt_semantic"])
    return mods
