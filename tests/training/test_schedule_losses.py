"""LR schedule, losses and the epoch sampler: the pure pieces of the training loop."""

from __future__ import annotations

import itertools

import pytest
import torch

from equiseg.training import epoch_indices, lr_at, ohem_cross_entropy, segmentation_loss, warmup_steps_for


def test_warmup_rises_linearly_then_poly_decays_to_zero() -> None:
    lrs = [lr_at(s, total_steps=100, base_lr=1e-3, warmup_steps=10, warmup_ratio=0.1, power=0.9) for s in range(101)]
    assert lrs[0] == pytest.approx(1e-4)
    assert all(a < b for a, b in itertools.pairwise(lrs[:11]))  # warm-up strictly increasing
    assert lrs[10] == pytest.approx(1e-3)  # peak right after warm-up
    assert all(a >= b for a, b in itertools.pairwise(lrs[10:]))  # then non-increasing
    assert lrs[100] == 0.0
    assert lrs[55] == pytest.approx(1e-3 * 0.5**0.9)  # half-way through the decay


def test_schedule_rejects_impossible_settings() -> None:
    with pytest.raises(ValueError, match="total_steps"):
        lr_at(0, total_steps=0, base_lr=1e-3)
    with pytest.raises(ValueError, match="warmup_ratio"):
        lr_at(0, total_steps=10, base_lr=1e-3, warmup_steps=2, warmup_ratio=1.5)
    assert warmup_steps_for(0.5, 7) == 4


def test_ohem_keeps_hard_pixels_and_skips_ignored() -> None:
    labels = torch.zeros(1, 4, 4, dtype=torch.long)
    logits = torch.zeros(1, 3, 4, 4)
    logits[:, 0, :2] = 10.0  # top half confidently right (loss ~0)
    logits[:, 1, 2:] = 10.0  # bottom half confidently wrong (loss ~10)
    ce = segmentation_loss(logits, labels, kind="ce")
    ohem = segmentation_loss(logits, labels, kind="ohem", ohem_thresh=0.7)
    assert ohem == pytest.approx(10.0, abs=1e-3)  # mean over the hard half only
    assert ce == pytest.approx(5.0, abs=1e-3)
    ignored = labels.clone()
    ignored[:, 2:] = 255
    changed = logits.clone()
    changed[:, :, 2:] = torch.randn(1, 3, 2, 4) * 50  # anything at ignored pixels
    assert segmentation_loss(changed, ignored, kind="ohem") == pytest.approx(
        float(segmentation_loss(logits, ignored, kind="ohem"))
    )


def test_ohem_min_kept_and_all_ignored_batch() -> None:
    labels = torch.zeros(1, 8, 8, dtype=torch.long)
    logits = torch.zeros(1, 2, 8, 8)
    logits[:, 0] = 10.0  # every pixel easy: OHEM still keeps the hardest 1/16
    assert float(ohem_cross_entropy(logits, labels)) > 0.0
    empty = torch.full((1, 8, 8), 255, dtype=torch.long)
    params = torch.zeros(1, 2, 8, 8, requires_grad=True)
    for kind in ("ce", "ohem"):
        loss = segmentation_loss(params, empty, kind=kind)  # type: ignore[arg-type]
        loss.backward()
        assert float(loss) == 0.0
    with pytest.raises(ValueError, match="train.loss"):
        segmentation_loss(logits, labels, kind="dice")  # type: ignore[arg-type]


def test_epoch_indices_same_global_batches_for_any_world_size() -> None:
    single = epoch_indices(23, batch_size=4, seed=3, epoch=1)
    assert len(single) == 20 and len(set(single)) == 20  # whole global batches, no repeats
    ranks = [epoch_indices(23, batch_size=2, seed=3, epoch=1, rank=r, world_size=2) for r in range(2)]
    for step in range(5):
        global_batch = set(single[4 * step : 4 * step + 4])
        assert set(ranks[0][2 * step : 2 * step + 2]) | set(ranks[1][2 * step : 2 * step + 2]) == global_batch
    assert epoch_indices(23, batch_size=4, seed=3, epoch=1) == single  # deterministic
    assert epoch_indices(23, batch_size=4, seed=3, epoch=2) != single  # reshuffled each epoch
    with pytest.raises(ValueError, match="lower train.batch_size"):
        epoch_indices(3, batch_size=2, seed=0, epoch=0, world_size=2)
