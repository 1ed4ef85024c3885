"""DeLiVER (Zhang et al., CVPR 2023).

Layout: ``{img,hha,depth,event,lidar,semantic}/<cond>/<split>/<seq>/<frame>_<kind>_front.png``.

Raw label 0 and 255 → ignore, ids − 1 (``deliver``); ids live in channel 0 of the semantic PNG. Tags = condition +
the sensor-failure case found in the path. CMNeXt's "depth" input is our ``hha`` modality (the 3-channel ``hha/``
folder); ``depth`` here is the raw ``depth/`` folder.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

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
    """DeLiVER: a sample is every ``<cond>/<split>/<seq>/<frame>`` found in any modality or label folder."""
    root = intake.root
    if not any((root / "img").glob("*/*/*/*_rgb_front*")):
        raise LayoutError(f"deliver: no img/<cond>/<split>/<seq>/*_rgb_front.png under {root}")
    found = [m for m, (folder, _k) in _FOLDERS.items() if (root / folder).is_dir()]
    mods = select(found, modalities, "deliver")
    folders = {m: _FOLDERS[m] for m in mods}
    if (root / "semantic").is_dir():
        folders["label"] = ("semantic", "semantic")
    index = {
        key: intake.index(root / folder, f"*/*/*/*_{kind}_front*", lambda p, f=folder, k=kind: _key(root / f, p, k))
        for key, (folder, kind) in folders.items()
    }
    intake.prefetch_indexed(index.values())
    keys = sorted({k for files in index.values() for k in files})
    for key in intake.track(keys):
        cond, split, seq, frame = key
        problems: list[tuple[str, str]] = []
        paths = {m: intake.pick(index[m].get(key, []), m, problems) for m in mods}
        files, problems, size = intake.add_modalities(paths, single=("depth", "event", "lidar"), problems=problems)
        label = None
        if "label" in index:
            label_path = intake.pick(index["label"].get(key, []), "label", problems)
            label = intake.probe(label_path, "label", f"semantic/{cond}/{split}/{seq}/{frame}_semantic_front.png")
        cases = tuple(case for case in _CASES if case in "/".join(key))
        intake.add(
            "/".join(key),
            split,
            files,
            problems,
            size=size,
            label=label,
            label_encoding="deliver",
            conditions=(cond, *cases),
        )
    intake.strays([root / folder for folder, _kind in folders.values()])
    return mods


def _key(folder: Path, path: Path, kind: str) -> tuple[str, ...]:
    cond, split, seq = path.relative_to(folder).parts[:3]
    return cond, split, seq, path.stem.replace(f"_{kind}_front", "")
