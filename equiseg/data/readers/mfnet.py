"""MFNet (Ha et al., IROS 2017): the original 4-channel layout and the CMX/CMNeXt re-split (docs/data.md).

* ``mfnet``: ``images/<name>.png`` RGBA-mode PNG whose channel 3 is 8-bit thermal (not alpha), ``labels/<name>.png``
  ids 0..8, ``{train,val,test}.txt``; names ending D/N → day/night.
* ``mfnet_cmx``: ``rgb/``, ``ther/`` (gray or 3 identical channels), ``labels/``, split lists.

Labels may come colour-coded with the MSRS visualisation palette (../shared/realdata/mfnet/README.md); the reader
then records ``label_encoding="palette"`` and the colours are mapped back to ids explicitly.
"""

from __future__ import annotations

from collections.abc import Sequence

from equiseg.data.readers._intake import Intake, find, read_split_lists, select
from equiseg.data.specs import DatasetSpec, FileSpec, LabelSpec

__all__ = ["SPEC", "SPEC_CMX", "read_mfnet", "read_mfnet_cmx"]

_PALETTE: tuple[tuple[int, int, int], ...] = ((0, 0, 0), (64, 0, 128), (64, 64, 0), (0, 128, 192), (0, 0, 192))
_PALETTE += ((128, 128, 0), (64, 64, 128), (192, 128, 128), (192, 64, 0))
_LABEL = LabelSpec(max_id=8, palette=_PALETTE)

#: The original layout: one RGBA-mode PNG per frame (RGB + 8-bit thermal).
SPEC = DatasetSpec(
    name="mfnet",
    source="mfnet",
    class_set="mfnet-9",
    num_classes=9,
    files={
        "rgb": FileSpec(modes=("RGBA",), dtype="uint8", channels=4),
        "thermal": FileSpec(modes=("RGBA",), dtype="uint8", channels=4),
    },
    label=_LABEL,
)
#: The CMX split: RGB PNGs and 8-bit thermal stored gray or as 3 identical channels.
SPEC_CMX = DatasetSpec(
    name="mfnet_cmx",
    source="mfnet",
    class_set="mfnet-9",
    num_classes=9,
    files={
        "rgb": FileSpec(modes=("RGB",), dtype="uint8", channels=3),
        "thermal": FileSpec(modes=("L", "RGB"), dtype="uint8", channels=1, replicated=True),
    },
    label=_LABEL,
)


def _day_night(name: str) -> tuple[str, ...]:
    return ("day",) if name.endswith("D") else ("night",) if name.endswith("N") else ()


def read_mfnet(intake: Intake, modalities: Sequence[str] | None) -> list[str]:
    """MFNet original layout: one 4-channel RGB+T PNG per frame."""
    root = intake.root
    mods = select(["rgb", "thermal"], modalities, "mfnet")
    listed = [
        (split, name)
        for split, names in read_split_lists(root, ("train", "val", "test"), "mfnet").items()
        for name in names
    ]
    labelled = (root / "labels").is_dir()
    bands = {"rgb": ("0:3", 3), "thermal": ("3:4", 1)}
    intake.prefetch([p for _s, n in listed for p in (find(root / "images", n), find(root / "labels", n)) if p])
    for split, name in intake.track(listed):
        image = find(root / "images", name)
        files, problems, size = intake.add_modalities({m: image for m in mods}, bands=bands)
        label = intake.probe(find(root / "labels", name), "label", f"labels/{name}.png") if labelled else None
        intake.add(name, split, files, problems, size=size, label=label, conditions=_day_night(name))
    intake.strays([root / "images", root / "labels"])
    return mods


def read_mfnet_cmx(intake: Intake, modalities: Sequence[str] | None) -> list[str]:
    """MFNet as pre-split by CMX/CMNeXt: ``rgb/``, ``ther/``, ``labels/``."""
    root = intake.root
    mods = select(["rgb", "thermal"], modalities, "mfnet_cmx")
    listed = [
        (split, name)
        for split, names in read_split_lists(root, ("train", "val", "test"), "mfnet_cmx").items()
        for name in names
    ]
    folders = {"rgb": "rgb", "thermal": "ther"}
    labelled = (root / "labels").is_dir()
    intake.prefetch([p for _s, n in listed for f in ("rgb", "ther", "labels") if (p := find(root / f, n))])
    for split, name in intake.track(listed):
        paths = {m: find(root / folders[m], name) for m in mods}
        files, problems, size = intake.add_modalities(paths, single=("thermal",))
        label = intake.probe(find(root / "labels", name), "label", f"labels/{name}.png") if labelled else None
        intake.add(name, split, files, problems, size=size, label=label, conditions=_day_night(name))
    intake.strays([root / "rgb", root / "ther", root / "labels"])
    return mods
