"""NYU Depth v2 (Silberman et al., 2012) in the CMX (``RGB/ HHA/ Label/``) or DFormer (``RGB/ Depth/ Label/``)
layout with ``train.txt``/``test.txt``; raw label 0 → ignore, ids − 1 (``shift1``)."""

from __future__ import annotations

from collections.abc import Sequence

from equiseg.data.readers._intake import Intake, LayoutError, find, read_split_lists, select
from equiseg.data.specs import DatasetSpec, FileSpec, LabelSpec

__all__ = ["SPEC", "read_nyuv2"]

SPEC = DatasetSpec(
    name="nyuv2",
    source="nyuv2",
    class_set="nyuv2-40",
    num_classes=40,
    files={
        "rgb": FileSpec(modes=("RGB",), dtype="uint8", channels=3, formats=("jpeg", "png")),
        "hha": FileSpec(modes=("RGB",), dtype="uint8", channels=3, formats=("jpeg", "png")),
        "depth": FileSpec(modes=("L", "RGB"), dtype="uint8", channels=1, replicated=True),
    },
    label=LabelSpec(max_id=40),
)


def read_nyuv2(intake: Intake, modalities: Sequence[str] | None) -> list[str]:
    """NYUv2: samples are the names in the split lists."""
    root = intake.root
    found = ["rgb"] + (["hha"] if (root / "HHA").is_dir() else []) + (["depth"] if (root / "Depth").is_dir() else [])
    if len(found) == 1:
        raise LayoutError(
            f"nyuv2: neither HHA/ nor Depth/ under {root}; expected RGB/ with HHA/ (CMX) or Depth/ (DFormer)"
        )
    mods = select(found, modalities, "nyuv2")
    folders = {"rgb": "RGB", "hha": "HHA", "depth": "Depth"}
    listed = [
        (split, name)
        for split, names in read_split_lists(root, ("train", "val", "test"), "nyuv2").items()
        for name in names
    ]
    wanted = [*(folders[m] for m in mods), "Label"]
    intake.prefetch([p for _s, n in listed for f in wanted if (p := find(root / f, n))])
    for split, name in intake.track(listed):
        paths = {m: find(root / folders[m], name) for m in mods}
        files, problems, size = intake.add_modalities(paths, single=("depth",))
        label = (
            intake.probe(find(root / "Label", name), "label", f"Label/{name}.png")
            if (root / "Label").is_dir()
            else None
        )
        intake.add(name, split, files, problems, size=size, label=label, label_encoding="shift1")
    intake.strays([root / folders[m] for m in mods] + [root / "Label"])
    return mods
