"""MUSES (Brödermann et al., ECCV 2024) with projected sensors: ``<modality>/<split>/<weather>/<time>/*`` (PNG or
NPZ) paired by frame name, labels ``gt_semantic/…/*_gt_labelTrainIds.png``; 255 stays ignore (never class 0)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from equiseg.data.readers._intake import Intake, LayoutError, select
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
    """MUSES: a sample is every split/weather/time/frame found in any sensor or label folder."""
    root = intake.root
    found = [m for m, folder in _FOLDERS.items() if (root / folder).is_dir()]
    if "rgb" not in found:
        raise LayoutError(f"muses: no frame_camera/ under {root}; expected frame_camera/<split>/<weather>/<time>/")
    mods = select(found, modalities, "muses")
    folders = {m: _FOLDERS[m] for m in mods}
    if (root / "gt_semantic").is_dir():
        folders["label"] = "gt_semantic"
    index = {
        key: intake.index(root / folder, "*/*/*/*", lambda p, f=folder: _key(root / f, p))
        for key, folder in folders.items()
    }
    index["label"] = {
        k: [p for p in v if p.stem.endswith("_gt_labelTrainIds")] for k, v in index.get("label", {}).items()
    }
    intake.prefetch_indexed(index.values())
    keys = sorted({k for files in index.values() for k in files if files[k]})
    for key in intake.track(keys):
        split, weather, time_of_day, _frame = key
        problems: list[tuple[str, str]] = []
        paths = {m: intake.pick(index[m].get(key, []), m, problems) for m in mods}
        files, problems, size = intake.add_modalities(paths, problems=problems)
        label = None
        if "label" in folders:
            label_path = intake.pick(index["label"].get(key, []), "label", problems)
            label = intake.probe(label_path, "label", f"gt_semantic/{'/'.join(key)}_gt_labelTrainIds.png")
        intake.add("/".join(key), split, files, problems, size=size, label=label, conditions=(weather, time_of_day))
    intake.strays([root / folder for folder in folders.values()])
    return mods
