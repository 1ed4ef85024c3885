"""The torch dataset: the sample/batch contract, joint augmentation, modality dropout, determinism."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from equiseg.data import MultimodalDataset, collate_samples, make_loader
from equiseg.modalities import to_unit

MODS = ("rgb", "depth", "thermal")


def _dataset(root: Path, **kwargs: object) -> MultimodalDataset:
    return MultimodalDataset(root / "manifest.parquet", root, modalities=MODS, split=None, **kwargs)  # type: ignore[arg-type]


def test_sample_follows_the_design_contract(synthetic_source: Path) -> None:
    sample = _dataset(synthetic_source)[0]
    assert set(sample) == {"inputs", "label", "sample_id", "conditions"}
    assert list(sample["inputs"]) == list(MODS)
    assert sample["inputs"]["rgb"].shape == (3, 32, 32) and sample["inputs"]["depth"].shape == (1, 32, 32)
    assert all(x.dtype == torch.float32 for x in sample["inputs"].values())
    assert sample["label"].dtype == torch.int64 and sample["label"].shape == (32, 32)
    assert isinstance(sample["conditions"], tuple) and isinstance(sample["sample_id"], str)
    # Normalisation: RGB ImageNet-normalised (roughly centred), other sensors in [0, 1].
    rgb_unit = to_unit(sample["inputs"]["rgb"], "rgb")
    assert float(rgb_unit.min()) >= 0.0 and float(rgb_unit.max()) <= 1.0 + 1e-5
    depth = sample["inputs"]["depth"]
    assert 0.5 < float(to_unit(depth, "depth").mean()) < 0.8  # 12-15.6 m of a 20 m range
    assert int(sample["label"].max()) < 8


def test_split_filter_and_unknown_modality(synthetic_source: Path) -> None:
    manifest = synthetic_source / "manifest.parquet"
    val = MultimodalDataset(manifest, synthetic_source, modalities=("rgb",), split="val")
    train = MultimodalDataset(manifest, synthetic_source, modalities=("rgb",), split="train")
    assert len(val) == 3 and len(train) == 9
    with pytest.raises(ValueError, match="lidar"):
        MultimodalDataset(manifest, synthetic_source, modalities=("rgb", "lidar"), split=None)
    with pytest.raises(ValueError, match="split"):
        MultimodalDataset(manifest, synthetic_source, modalities=("rgb",), split="holdout")


def test_augmentation_keeps_modalities_and_label_aligned(synthetic_source: Path) -> None:
    """Raised classes (plinth, vehicle, tree, pole) are closer to the camera than the ground after any augmentation."""
    dataset = _dataset(synthetic_source, augment=True, crop_size=24, seed=3)
    checked = 0
    for epoch in range(3):
        dataset.set_epoch(epoch)
        for index in range(len(dataset)):
            sample = dataset[index]
            depth, label = sample["inputs"]["depth"][0], sample["label"]
            raised = (label == 2) | (label == 4) | (label == 5) | (label == 7)
            ground = label == 0
            if raised.sum() < 10 or ground.sum() < 10:
                continue
            assert float(depth[raised].mean()) < float(depth[ground].mean()) - 0.01
            checked += 1
    assert checked >= 10


def test_augmentation_is_deterministic_per_seed_epoch_and_index(synthetic_source: Path) -> None:
    a = _dataset(synthetic_source, augment=True, crop_size=24, seed=1)
    b = _dataset(synthetic_source, augment=True, crop_size=24, seed=1)
    assert torch.equal(a[2]["inputs"]["rgb"], b[2]["inputs"]["rgb"])
    b.set_epoch(1)
    assert not torch.equal(a[2]["inputs"]["rgb"], b[2]["inputs"]["rgb"])


def test_modality_dropout_zeroes_some_but_never_all(synthetic_source: Path) -> None:
    dataset = _dataset(synthetic_source, modality_dropout=0.9, seed=0)
    dropped = 0
    for index in range(len(dataset)):
        inputs = dataset[index]["inputs"]
        zero = [bool((x == 0).all()) for x in inputs.values()]
        assert not all(zero)
        dropped += sum(zero)
    assert dropped >= len(dataset)  # with p=0.9 most samples lose at least one modality


def test_crop_larger_than_image_pads_with_missing_and_ignore(synthetic_source: Path) -> None:
    sample = _dataset(synthetic_source, crop_size=40)[0]
    assert sample["label"].shape == (40, 40)
    # Centre crop of a padded image: the padding is bottom/right, so the last rows are padding.
    assert bool((sample["label"][-4:] == 255).all())
    assert bool((sample["inputs"]["rgb"][:, -4:] == 0).all())  # normalised zero = "missing"
    assert bool((sample["inputs"]["depth"][:, -4:] == 0).all())


def test_collate_and_loader_build_the_batch_contract(synthetic_source: Path) -> None:
    loader = make_loader(
        synthetic_source / "manifest.parquet",
        synthetic_source,
        modalities=MODS,
        split="train",
        batch_size=4,
        shuffle=True,
        augment=True,
        crop_size=16,
        seed=0,
    )
    batch = next(iter(loader))
    assert batch["inputs"]["rgb"].shape == (4, 3, 16, 16)
    assert batch["inputs"]["thermal"].shape == (4, 1, 16, 16)
    assert batch["label"].shape == (4, 16, 16) and batch["label"].dtype == torch.int64
    assert len(batch["sample_id"]) == 4 and all(isinstance(c, tuple) for c in batch["conditions"])
    again = next(
        iter(
            make_loader(
                synthetic_source / "manifest.parquet",
                synthetic_source,
                modalities=MODS,
                split="train",
                batch_size=4,
                shuffle=True,
                augment=True,
                crop_size=16,
                seed=0,
            )
        )
    )
    assert again["sample_id"] == batch["sample_id"]  # seeded shuffle


def test_collate_rejects_mismatched_samples(synthetic_source: Path) -> None:
    dataset = _dataset(synthetic_source)
    small = _dataset(synthetic_source, crop_size=16)
    with pytest.raises(ValueError, match="crop_size"):
        collate_samples([dataset[0], small[1]])
    with pytest.raises(ValueError):
        collate_samples([])


def test_loader_with_worker_processes(synthetic_source: Path) -> None:
    loader = make_loader(
        synthetic_source / "manifest.parquet",
        synthetic_source,
        modalities=("rgb", "depth"),
        split="val",
        batch_size=3,
        shuffle=False,
        num_workers=2,
    )
    batches = list(loader)
    assert len(batches) == 1 and batches[0]["inputs"]["depth"].shape == (3, 1, 32, 32)


def test_a_class_count_below_the_labels_names_the_sample_and_the_fix(synthetic_source: Path) -> None:
    """``data.num_classes`` smaller than the labels' ids fails on the first such sample, not deep in the loss."""
    dataset = _dataset(synthetic_source, num_classes=2)
    with pytest.raises(ValueError, match=r"label id \d+ but data.num_classes=2; set data.num_classes") as err:
        for i in range(len(dataset)):
            dataset[i]
    assert "sample " in str(err.value)
    wide = _dataset(synthetic_source, num_classes=8)
    assert all(int(wide[i]["label"][wide[i]["label"] != 255].max()) < 8 for i in range(len(wide)))
