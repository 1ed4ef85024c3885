"""DeLiVER (Zhang et al., CVPR 2023).

Layout: ``{img,hha,depth,event,lidar,semantic}/<cond>/<split>/<seq>/<frame>_<kind>_front.png``.

Raw label 0 and 255 → ignore, ids − 1 (``deliver``); ids live in channel 0 of the semantic PNG. Tags = condition +
the sensor-failure case found in the path. CMNeXt's "depth" input is our ``hha`` modality (the 3-channel ``hha/``
folder); ``depth`` here is the raw ``depth/`` folder.
"""

from __future__ import annotations

from collections.abc import Sequence

from equiseg.data.readers._intake import Intake, LayoutError, select
from equiseg.data.specs import DatasetSpec, FileSpec, LabelSpec

__all__ = ["SPEC", "read_deliver"]

_CASES = ("motionblur", "overexposure", "underexposure", "lidarjitter", "eventlowres")
_FOLDERS = {"rgb": ("img", "rgb"), "hha": ("hha", "depth"), "depth": ("depth", "depth")}
_FOLDERS.update({"event": ("event", "event"), "lidar": ("lidar", "lidar")})
_SENSOR = FileSpec(modes=("L", "RGB"), dtype="uint8", channels=1, replicated=True)

SPEC = DatasetSpec(
    name="deliver",
    source="deliver",
    class_set="deliver-25",
    num_classes=25,
    files={
        "rgb": FileSpec(modes=("RGB",), dtype="uint8", channels=3),
        "hha": FileSpec(modes=("RGB",), dtype="uint8", channels=3),
        "depth": _SENSOR,
        "event": _SENSOR,
        "lidar": _SENSOR,
    },
    label=LabelSpec(max_id=25, modes=("L", "RGB"), channel0=True),
)


def read_deliver(intake: Intake, modalities: Sequence[str] | None) -> list[str]:
    """DeLiVER: samples are the RGB frames; other modalities found by substituting ``img``/``_rgb_`` in the path."""
    root = intake.root
    rgb_files = sorted((root / "img").glob("*/*/*/*_rgb_front*"))
    if not rgb_files:
        raise LayoutError(f"deliver: no img/<cond>/<split>/<seq>/*_rgb_front.png under {root}")
    found = [m for m, (folder, _k) in _FOLDERS.items() if (root / folder).is_dir()]
    mods = select(found, modalities, "deliver")
    for rgb in intake.track(rgb_files):
        rel = rgb.relative_to(root)
        cond, split, seq = rel.parts[1], rel.parts[2], rel.parts[3]
        paths = {}
        for modality in mods:
            folder, kind = _FOLDERS[modality]
            path = root / folder / cond / split / seq / rgb.name.replace("_rgb_", f"_{kind}_")
            paths[modality] = path if path.exists() or path.is_symlink() else None
        files, problems, size = intake.add_modalities(paths, single=("depth", "event", "lidar"))
        label = None
        if (root / "semantic").is_dir():
            label_path = root / "semantic" / cond / split / seq / rgb.name.replace("_rgb_", "_semantic_")
            found_label = label_path if label_path.exists() or label_path.is_symlink() else None
            label = intake.probe(found_label, "label", label_path.relative_to(root).as_posix())
        cases = tuple(case for case in _CASES if case in rel.as_posix())
        sample_id = f"{cond}/{split}/{seq}/{rgb.stem.replace('_rgb_front', '')}"
        intake.add(
            sample_id,
            split,
            files,
            problems,
            size=size,
            label=label,
            label_encoding="deliver",
            conditions=(cond, *cases),
        )
    intake.strays([root / _FOLDERS[m][0] for m in mods] + [root / "semantic"])
    return mods
