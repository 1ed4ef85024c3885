"""EMM / RMM / NM enumerations and transforms (docs/robustness.md)."""

from __future__ import annotations

import math

import pytest
import torch

from equiseg.robustness import (
    apply_noisy_modalities,
    apply_random_missing,
    expected_miou,
    kept_subsets,
    missing_sets,
    missing_weights,
    remove_modalities,
)

MODS = ("rgb", "depth", "event", "lidar")


@pytest.mark.parametrize("n", [2, 3, 4])
def test_enumerations_count_and_weights_sum_to_one(n: int) -> None:
    mods = MODS[:n]
    sets = missing_sets(mods)
    assert len(sets) == 2**n - 1 == len(set(sets))
    assert () in sets and mods not in sets  # all-missing excluded, no-missing included
    assert all(len(k) >= 1 for k in kept_subsets(mods))
    for p in (0.2, 0.1, 0.05):
        weights = missing_weights(mods, p)
        assert math.fsum(weights.values()) == pytest.approx(1.0)
        raw_full = (1 - p) ** n
        raw_total = sum(p ** len(s) * (1 - p) ** (n - len(s)) for s in sets)
        assert weights[()] == pytest.approx(raw_full / raw_total)


def test_expected_miou_weights_fewer_missing_more() -> None:
    mods = ("rgb", "depth")
    scores = {(): 60.0, ("rgb",): 10.0, ("depth",): 50.0}
    e = expected_miou(scores, mods, 0.1)
    w_full, w_one = 0.81 / 0.99, 0.09 / 0.99
    assert e == pytest.approx(w_full * 60 + w_one * 10 + w_one * 50)
    assert expected_miou(scores, mods, 0.05) > e  # rarer failures -> closer to clean


def test_remove_zero_and_drop_modes() -> None:
    x = {"rgb": torch.ones(1, 3, 4, 4), "depth": torch.ones(1, 1, 4, 4)}
    zero = remove_modalities(x, ("depth",), "zero")
    assert torch.count_nonzero(zero["depth"]) == 0 and torch.equal(zero["rgb"], x["rgb"])
    assert set(remove_modalities(x, ("depth",), "drop")) == {"rgb"}
    with pytest.raises(ValueError, match="all-missing"):
        remove_modalities(x, ("rgb", "depth"))


def test_rmm_zeroes_about_ratio_of_elements_only_in_missing_modalities() -> None:
    x = {"rgb": torch.ones(2, 3, 32, 32), "depth": torch.ones(2, 1, 32, 32)}
    g = torch.Generator().manual_seed(0)
    out = apply_random_missing(x, ("rgb",), 0.5, g)
    zero_share = (out["rgb"] == 0).float().mean().item()
    assert 0.45 < zero_share < 0.55
    assert torch.equal(out["depth"], x["depth"])
    again = apply_random_missing(x, ("rgb",), 0.5, torch.Generator().manual_seed(0))
    assert torch.equal(out["rgb"], again["rgb"])


def test_nm_salt_and_pepper_counts_and_no_gaussian_on_events() -> None:
    x = {"event": torch.full((2, 1, 20, 20), 0.5).clone(), "depth": torch.rand(2, 1, 20, 20)}
    x["event"][:, :, 0, 0] = 0.0
    x["event"][:, :, 0, 1] = 1.0
    out = apply_noisy_modalities(x, "mid", torch.Generator().manual_seed(0))
    changed = (out["event"] != 0.5).sum(dim=(1, 2, 3))
    expected = 2 * math.ceil(0.10 * 400 / 2)
    assert all(2 <= int(c) <= expected + 2 for c in changed)  # ties with repeated indices can only lower it
    assert set(out["event"].unique().tolist()) <= {0.0, 0.5, 1.0}  # events: salt-and-pepper only
    assert not torch.equal(out["depth"], x["depth"])
    with pytest.raises(KeyError, match="low"):
        apply_noisy_modalities(x, "extreme", torch.Generator())
