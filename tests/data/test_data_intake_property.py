"""Property-based intake test (hypothesis): random damage to real-layout trees never crashes ingestion.

For every reader, a tree built from the real frames in ../shared/realdata gets one to three samples damaged at
random (truncate at any offset, flip any byte, empty, delete, change channels or bit depth, resize by a pixel, swap
the format, symlink out of the root, ...). Properties: ingest and validate never raise; rows in = validated +
quarantined = samples on disk; a damaged sample is quarantined with specific reason codes or decodes to exactly the
original pixels; every untouched sample is kept. The default suite runs a few examples per reader, the slow suite
many more.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from equiseg.data import REASON_CODES, MultimodalDataset, ingest, validate_dataset
from equiseg.data.readers import SPECS

sys.path.insert(0, str(Path(__file__).parent))
from _realtrees import BUILDERS, DAMAGE, Frames, Tree

NPZ_DAMAGE = ("truncate", "flip_byte", "empty", "delete", "not_an_image", "to_folder", "symlink_out")
NPZ_DAMAGE += ("dangling_link", "resize_pixel", "npz_nan", "npz_float64")
IMAGE_DAMAGE = tuple(name for name in DAMAGE if not name.startswith("npz_"))
_PRISTINE: dict[str, tuple[Tree, dict[str, dict[str, torch.Tensor]]]] = {}
_WORK = Path(tempfile.mkdtemp(prefix="equiseg-intake-"))


def _tensors(manifest: Path, tree: Tree) -> dict[str, dict[str, torch.Tensor]]:
    dataset = MultimodalDataset(manifest, tree.root, modalities=tree.modalities, split=None)
    out = {}
    for i in range(len(dataset)):
        sample = dataset[i]
        out[sample["sample_id"]] = {**sample["inputs"], "label": sample["label"]}
    return out


def _pristine(fmt: str, realdata: Path) -> tuple[Tree, dict[str, dict[str, torch.Tensor]]]:
    if fmt not in _PRISTINE:
        tree = BUILDERS[fmt](_WORK / "pristine" / fmt, Frames(realdata))
        manifest = ingest(fmt, tree.root, _WORK / "pristine-manifest" / fmt, progress=False).manifest
        _PRISTINE[fmt] = (tree, _tensors(manifest, tree))
    return _PRISTINE[fmt]


def _kinds(fmt: str, target: str, path: str) -> tuple[str, ...]:
    """The damage that applies to a file. Left out: replacing content by other valid content of the same encoding
    (a false-colour rendering of an RGB image, an 8-bit file shifted to zeros, a 16-bit file rescaled, a JPEG
    re-encoded where the dataset ships JPEG, recoloured ids of a dataset whose labels are ids in channel 0, a
    false-colour rendering of an id label of a dataset that declares a palette: an all-background label becomes one
    palette colour, a legal colour-coded label of another class); no reader can tell that from the real thing without
    a trusted checksum. A false-colour label with foreground has off-palette colours: tests/data/test_data_intake.py
    checks that it is quarantined."""
    if path.endswith(".npz"):
        return NPZ_DAMAGE
    spec = SPECS[fmt]
    file_spec = spec.files.get(target)
    sixteen = file_spec is not None and file_spec.dtype == "uint16"
    kinds = [k for k in IMAGE_DAMAGE if (k != "to_8bit" or sixteen) and (k != "to_16bit" or not sixteen)]
    if file_spec is not None and "jpeg" in file_spec.formats:  # a lossy re-encode is a legal file of another look
        kinds.remove("as_jpeg")
    kinds = [k for k in kinds if not k.startswith("label_") or target == "label"]  # label damage hits labels
    if (file_spec is not None and not file_spec.replicated) or (target == "label" and spec.label.palette):
        kinds.remove("colour_map")
    if target == "label" and spec.label.channel0 and "label_off_palette" in kinds:
        kinds.remove("label_off_palette")
    return tuple(kinds)


@st.composite
def damage_plans(draw: Any, fmt: str, files: dict[str, dict[str, str]]) -> list[tuple[str, str, str, int]]:
    ids = sorted(files)
    chosen = draw(st.lists(st.sampled_from(ids), min_size=1, max_size=3, unique=True))
    plan = []
    for sample_id in chosen:
        target = draw(st.sampled_from(sorted(files[sample_id])))
        kinds = _kinds(fmt, target, files[sample_id][target])
        plan.append((sample_id, target, draw(st.sampled_from(kinds)), draw(st.integers(0, 10**7))))
    return plan


def _check_intake(fmt: str, realdata: Path, plan: list[tuple[str, str, str, int]]) -> None:
    pristine, reference = _pristine(fmt, realdata)
    work = Path(tempfile.mkdtemp(dir=_WORK))
    try:
        root = work / "root"
        shutil.copytree(pristine.root, root, symlinks=True)
        for sample_id, target, damage, arg in plan:
            DAMAGE[damage](root / pristine.files[sample_id][target], arg, root)
        result = ingest(fmt, root, work / "manifest", progress=False)
        report = validate_dataset(
            result.manifest, None, work / "report", num_classes=pristine.num_classes, workers=1, progress=False
        )
        assert report.rows_in == len(pristine.files) == report.rows_validated + report.rows_quarantined
        quarantined = {r["sample_id"]: r["reason_codes"] for r in pq.read_table(report.quarantine_path).to_pylist()}
        damaged = {sample_id for sample_id, *_ in plan}
        assert not set(quarantined) - damaged, f"good samples quarantined: {set(quarantined) - damaged}"
        for codes in quarantined.values():
            assert codes and set(codes) <= set(REASON_CODES) and "decode_error" not in codes, (plan, codes)
        kept = _tensors(report.validated_path, Tree(fmt, root, modalities=pristine.modalities))
        for sample_id in damaged - set(quarantined):  # kept although damaged: it must decode to the same pixels
            for key, tensor in reference[sample_id].items():
                assert torch.equal(kept[sample_id][key], tensor), f"{plan}: {sample_id} {key} decodes differently"
    finally:
        shutil.rmtree(work, ignore_errors=True)


_COMMON = {"deadline": None, "database": None, "suppress_health_check": [HealthCheck.function_scoped_fixture]}


@pytest.mark.parametrize("fmt", sorted(BUILDERS))
def test_random_damage_never_crashes_and_is_quarantined(fmt: str, realdata_dir: Path) -> None:
    files = _pristine(fmt, realdata_dir)[0].files

    @settings(max_examples=6, derandomize=True, **_COMMON)
    @given(plan=damage_plans(fmt, files))
    def run(plan: list[tuple[str, str, str, int]]) -> None:
        _check_intake(fmt, realdata_dir, plan)

    run()


@pytest.mark.slow
@pytest.mark.parametrize("fmt", sorted(BUILDERS))
def test_random_damage_many_examples(fmt: str, realdata_dir: Path) -> None:
    files = _pristine(fmt, realdata_dir)[0].files

    @settings(max_examples=150, derandomize=True, **_COMMON)  # the same examples every run: CI stays reproducible
    @given(plan=damage_plans(fmt, files))
    def run(plan: list[tuple[str, str, str, int]]) -> None:
        _check_intake(fmt, realdata_dir, plan)

    run()
