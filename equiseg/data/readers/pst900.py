"""PST900 (Shivakumar et al., 2019): ``{train,test}/{rgb,thermal,depth,labels}/<name>.png`` paired by name.

Thermal is FLIR AGC 8-bit stored gray or as 3 identical channels (→ channel 0), depth uint16, labels uint8 ids
0..4. Colour-coded labels in the toolkit palette (../shared/realdata/pst900/README.md) are converted explicitly.
A sample is every name found in any of a split's folders, so a frame whose RGB file is gone is still a sample
(quarantined as ``missing_modality``), not a set of stray files.
"""

from __future__ import annotations

from collections.abc import Sequence

from equiseg.data.readers._intake import Intake, LayoutError, select
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
    """PST900: samples are the names found in a split's modality and label folders."""
    root = intake.root
    split_dirs = [s for s in ("train", "test") if (root / s / "rgb").is_dir()]
    if not split_dirs:
        raise LayoutError(f"pst900: no train/rgb or test/rgb folder under {root}; expected {{train,test}}/rgb/*.png")
    found = ["rgb", "thermal"] + (["depth"] if all((root / s / "depth").is_dir() for s in split_dirs) else [])
    mods = select(found, modalities, "pst900")
    indexes = {s: {f: intake.index(root / s / f, "*", lambda p: p.stem) for f in (*mods, "labels")} for s in split_dirs}
    intake.prefetch_indexed(index for folders in indexes.values() for index in folders.values())
    listed = [
        (split, name, index)
        for split, index in indexes.items()
        for name in sorted({name for files in index.values() for name in files})
    ]
    for split, name, index in intake.track(listed):
        problems: list[tuple[str, str]] = []
        paths = {m: intake.pick(index[m].get(name, []), m, problems) for m in mods}
        files, problems, size = intake.add_modalities(paths, single=("thermal", "depth"), problems=problems)
        label = None
        if (root / split / "labels").is_dir():
            label_path = intake.pick(index["labels"].get(name, []), "label", problems)
            label = intake.probe(label_path, "label", f"{split}/labels/{name}.png")
        intake.add(f"{split}/{name}", split, files, problems, size=size, label=label)
    for split in split_dirs:
        intake.strays([root / split / folder for folder in (*mods, "labels")], split)
    return mods
