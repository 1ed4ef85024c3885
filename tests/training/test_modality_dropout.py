"""Modality dropout: zero-filled modalities train without exploding gradients; ``drop`` mode trains on subsets."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from equiseg.config import EquisegConfig
from equiseg.models import FAMILIES, create_model, supports_missing_modalities
from equiseg.training import load_model_from_checkpoint, train
from equiseg.training.epoch import drop_modalities, resolve_dropout_mode

MODALITIES = ("rgb", "depth", "thermal")


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_a_zero_filled_modality_keeps_gradients_bounded(family: str) -> None:
    """Zero-filled inputs (modality dropout, the zero-fill EMM protocol) used to enter each branch's LayerNorms as
    all-zero tokens; their backward multiplied gradients by 1/sqrt(eps) per norm (norms of 1e6 to inf, NaN for
    cmnext_like_b0), so clipping wiped out every such step."""
    torch.manual_seed(0)
    model = create_model(f"{family}_tiny", num_classes=4, modalities=MODALITIES)
    inputs = {m: torch.randn(4, 3 if m == "rgb" else 1, 32, 32) for m in MODALITIES}
    inputs["depth"][1] = 0.0
    inputs["thermal"][2] = 0.0
    inputs["rgb"][3] = 0.0
    labels = torch.randint(0, 4, (4, 32, 32))
    output = model(inputs, labels)
    loss = torch.nn.functional.cross_entropy(output.logits, labels) + sum(output.aux_losses.values(), torch.tensor(0.0))
    loss.backward()
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), float("inf"))
    assert torch.isfinite(norm) and norm < 100.0, f"{family}: gradient norm {norm:.3e} with zero-filled modalities"


def test_drop_modalities_removes_a_seeded_subset_and_never_all() -> None:
    inputs = {m: torch.ones(2, 1, 4, 4) for m in MODALITIES}
    subsets = [tuple(drop_modalities(inputs, 0.9, (0, 0, step))) for step in range(200)]
    assert all(1 <= len(s) <= 3 for s in subsets)
    assert len(set(subsets)) > 3  # different steps draw different subsets
    assert subsets == [tuple(drop_modalities(inputs, 0.9, (0, 0, step))) for step in range(200)]  # same on every rank
    assert drop_modalities(inputs, 0.0, (0, 0, 0)).keys() == inputs.keys()


def test_auto_mode_drops_only_for_models_that_fuse_subsets(tiny_cfg: Callable[..., EquisegConfig]) -> None:
    for family in FAMILIES:
        cfg = tiny_cfg(f"model.name={family}_tiny", "train.modality_dropout_mode=auto")
        expected = "drop" if supports_missing_modalities(f"{family}_tiny") else "zero"
        assert resolve_dropout_mode(cfg) == expected
    assert supports_missing_modalities("equiseg_b0") and not supports_missing_modalities("early_fusion_b0")
    with pytest.raises(ValueError, match="use zero"):
        resolve_dropout_mode(tiny_cfg("model.name=early_fusion_tiny", "train.modality_dropout_mode=drop"))


def test_drop_mode_trains_equiseg_on_modality_subsets(
    tiny_data: tuple[Path, Path], tiny_cfg: Callable[..., EquisegConfig], tmp_path: Path
) -> None:
    manifest, root = tiny_data
    cfg = tiny_cfg("train.modality_dropout_mode=drop", "train.modality_dropout=0.5", "train.epochs=2")
    seen: list[tuple[str, ...]] = []
    model_cls = type(create_model("equiseg_tiny", num_classes=4, modalities=MODALITIES))
    original = model_cls.forward

    def recording_forward(self, inputs, labels=None):  # type: ignore[no-untyped-def]
        if self.training:
            seen.append(tuple(inputs))
        return original(self, inputs, labels)

    model_cls.forward = recording_forward  # type: ignore[method-assign]
    try:
        result = train(cfg, manifest=manifest, data_root=root, out_dir=tmp_path / "run", show_progress=False)
    finally:
        model_cls.forward = original  # type: ignore[method-assign]
    assert len(seen) == 6 and any(len(s) < 3 for s in seen), seen  # some steps really ran on a subset
    # (the total loss is not compared across epochs: the SGM adds one term per present modality)
    assert all(torch.isfinite(torch.tensor([h["train_main_loss"] for h in result.history])))
    model, _ = load_model_from_checkpoint(result.last_checkpoint)
    with torch.no_grad():
        for modality in MODALITIES:  # every single modality still gives a finite prediction
            x = torch.rand(1, 3 if modality == "rgb" else 1, 32, 32)
            assert torch.isfinite(model({modality: x}).logits).all()
