"""PST900 (Shivakumar et al., 2019): ``{train,test}/{rgb,thermal,depth,labels}/<name>.png`` paired by name.

Thermal is FLIR AGC 8-bit stored gray or as 3 identical channels (→ channel 0), depth uint16, labels uint8 ids
0..4. Colour-coded labels in the toolkit palette (../shared/realdata/pst900/README.md) are converted explicitly.
"""

from __future__ import annotations

from collections.abc import Sequence

from equiseg.data.readers._intake import IMAGE_SUFFIXES, Intake, LayoutError, find, select
from equiseg.data.specs import DatasetSpec, FileSpec, LabelSpec

__all__ = ["SPEC", "read_pst900"]

#: Toolkit colours in RGB order: background, fire extinguisher, backpack, hand drill, survivor.
_PALETTE = ((0, 0, 0), (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255))

SPEC = DatasetSpec(
    name="pst900",
    source="pst900",
    class_set="pst900-5",
    num_classes=5,
    files={
        "rgb": FileSpec(modes=("RGB",), dtype="uint8", channels=3),
        "thermal": FileSpec(modes=("L", "RGB"), dtype="uint8", channels=1, replicated=True),
        "depth": FileSpec(modes=("I;16", "I;16B", "I;16L"), dtype="uint16", channels=1),
    },
    label=LabelSpec(max_id=4, palette=_PALETTE),
)


def read_pst900(intake: Intake, modalities: Sequence[str] | None) -> list[str]:
    """PST900: samples are the files of ``<split>/rgb/``; other modalities are paired by name."""
    root = intake.root
    split_dirs = [s for s in ("train", "test") if (root / s / "rgb").is_dir()]
    if not split_dirs:
        raise LayoutError(
            f"pst900: no train/rgb or test/rgb folder under {root}; expected {{train,test}}/rgb/<name>.png"
        )
    found = ["rgb", "thermal"] + (["depth"] if all((root / s / "depth").is_dir() for s in split_dirs) else [])
    mods = select(found, modalities, "pst900")
    listed = [
        (split, rgb)
        for split in split_dirs
        for rgb in sorted((root / split / "rgb").iterdir())
        if rgb.suffix.lower() in IMAGE_SUFFIXES
    ]
    for split, rgb in intake.track(listed):
        name = rgb.stem
        paths = {m: rgb if m == "rgb" else find(root / split / m, name) for m in mods}
        files, problems, size = intake.add_modalities(paths, single=("thermal", "depth"))
        labelled = (root / split / "labels").is_dir()
        label = (
            intake.probe(find(root / split / "labels", name), "label", f"{split}/labels/{name}.png")
            if labelled
            else None
        )
        intake.add(f"{split}/{name}", split, files, problems, size=size, label=label)
    for split in split_dirs:
        intake.strays([root / split / folder for folder in ("rgb", *mods, "labels")], split)
    return mods
