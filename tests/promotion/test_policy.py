"""The gate decision on synthetic per-image numbers: every rule, exact and seeded."""

from __future__ import annotations

import json

import numpy as np
import pytest

from equiseg.config import GateConfig
from equiseg.promotion import GateVerdict, decide, paired_bootstrap_lower_bounds, write_verdict

from .gate_synthetic import base_per_image, make_result, shifted

POLICY = GateConfig(
    min_clean_miou=50.0,
    min_emm_avg=40.0,
    min_worst_slice=30.0,
    min_balance_ratio=0.5,
    max_abs_drop=1.0,
    max_rel_drop=0.05,
    slice_max_abs_drop=3.0,
    noninferiority_margin=2.0,
    bootstrap_samples=500,
)


def failed(verdict: GateVerdict) -> set[str]:
    return {c.name for c in verdict.failed_checks}


def test_first_run_passes_on_floors_alone() -> None:
    verdict = decide(POLICY, make_result(base_per_image()), None)
    assert verdict.passed and verdict.first_run
    assert {c.name.split(".")[0] for c in verdict.checks} == {"floor"}
    assert verdict.champion_version is None


def test_first_run_below_a_floor_fails_with_a_plain_reason() -> None:
    weak = make_result(shifted(base_per_image(), {"clean": -15.0}))
    verdict = decide(POLICY, weak, None)
    assert not verdict.passed
    assert failed(verdict) == {"floor.clean_miou"}
    assert "below the floor" in verdict.reasons[0]


def test_clearly_better_candidate_passes() -> None:
    champ = base_per_image()
    verdict = decide(POLICY, make_result(shifted(champ, 2.0)), make_result(champ), champion_version="3")
    assert verdict.passed, verdict.reasons
    assert not verdict.first_run and verdict.champion_version == "3"
    assert verdict.num_samples == 40
    assert any(c.name == "improvement.overall" for c in verdict.checks)


def test_worse_candidate_is_blocked() -> None:
    champ = base_per_image()
    verdict = decide(POLICY, make_result(shifted(champ, -4.0)), make_result(champ))
    assert not verdict.passed
    assert {"abs_change.clean_miou", "abs_change.emm_avg", "improvement.overall"} <= failed(verdict)


def test_better_clean_but_collapses_without_rgb_is_blocked_by_the_slice_rule() -> None:
    champ = base_per_image()
    cand = shifted(champ, {"clean": 3.0, "emm_missing_depth": 3.0, "emm_missing_thermal": 3.0, "noise_high": 3.0})
    cand["emm_missing_rgb"] = champ["emm_missing_rgb"] - 4.0  # collapse when RGB is missing
    verdict = decide(POLICY, make_result(cand), make_result(champ))
    assert not verdict.passed
    assert "slice_drop.emm_missing_rgb" in failed(verdict)
    assert verdict.candidate_metrics["clean_miou"] > verdict.champion_metrics["clean_miou"]
    assert not any(name.startswith("slice_drop.") and name != "slice_drop.emm_missing_rgb" for name in failed(verdict))


def test_better_by_noise_only_is_blocked_by_the_ci_rule() -> None:
    champ = base_per_image()
    # Per-image differences alternate +6 / -5: the mean is +0.5 on every slice, but it is noise.
    noise = np.where(np.arange(40) % 2 == 0, 6.0, -5.0)
    cand = {k: v + noise for k, v in champ.items()}
    verdict = decide(POLICY, make_result(cand), make_result(champ))
    assert verdict.candidate_metrics["clean_miou"] == pytest.approx(verdict.champion_metrics["clean_miou"] + 0.5)
    assert failed(verdict) == {"improvement.overall"}, verdict.reasons
    assert "beyond chance" in verdict.reasons[0]
    # ... and the same shift without noise is a real improvement.
    assert decide(POLICY, make_result(shifted(champ, 0.5)), make_result(champ)).passed


def test_noninferiority_blocks_a_noisy_small_drop_that_change_thresholds_allow() -> None:
    champ = base_per_image()
    noise = np.where(np.arange(40) % 2 == 0, 9.0, -10.0)  # mean -0.5: within max_abs_drop, but the CI is wide
    verdict = decide(
        POLICY.__class__(**{**POLICY.__dict__, "require_improvement": False}),
        make_result({k: v + noise for k, v in champ.items()}),
        make_result(champ),
    )
    assert not verdict.passed
    assert failed(verdict) == {f"noninferiority.{s}" for s in champ}


def test_pairing_is_by_sample_id_not_position() -> None:
    champ = base_per_image()
    ids = [f"img{i:03d}" for i in range(40)]
    perm = np.random.default_rng(1).permutation(40)
    cand = shifted(champ, 1.5)
    shuffled = make_result({k: v[perm] for k, v in cand.items()}, [ids[i] for i in perm])
    in_order = decide(POLICY, make_result(cand, ids), make_result(champ, ids))
    permuted = decide(POLICY, shuffled, make_result(champ, ids))
    assert [c.value for c in permuted.checks if c.name.startswith("floor")] == pytest.approx(
        [c.value for c in in_order.checks if c.name.startswith("floor")]
    )
    lb = {c.name: c.value for c in permuted.checks if c.name.startswith("noninferiority")}
    assert min(lb.values()) > 1.0  # the true paired difference is +1.5 everywhere: a tight bound


def test_different_images_are_refused() -> None:
    champ = base_per_image()
    other_ids = [f"other{i}" for i in range(40)]
    with pytest.raises(ValueError, match="different images"):
        decide(POLICY, make_result(champ, other_ids), make_result(champ))


def test_bootstrap_is_exact_and_seeded() -> None:
    ids = [f"s{i}" for i in range(10)]
    d = {"a": dict(zip(ids, range(10), strict=True)), "b": dict.fromkeys(ids, 1.0)}
    first = paired_bootstrap_lower_bounds(d, samples=200, ci_level=0.9, seed=7)
    assert first == paired_bootstrap_lower_bounds(d, samples=200, ci_level=0.9, seed=7)
    assert first != paired_bootstrap_lower_bounds(d, samples=200, ci_level=0.9, seed=8)
    assert first["b"] == pytest.approx(1.0)  # a constant difference has a degenerate interval
    # Reference computation: same generator, same indices, 5 % quantile of resampled means.
    idx = np.random.Generator(np.random.PCG64(7)).integers(0, 10, size=(200, 10))
    assert first["a"] == pytest.approx(float(np.quantile(np.arange(10.0)[idx].mean(axis=1), 0.05)))


def test_bootstrap_handles_slices_covering_a_subset_of_images() -> None:
    """Condition slices (e.g. night scenes only) hold fewer images; they share the same resamples."""
    champ = base_per_image()
    night_ids = [f"img{i:03d}" for i in range(0, 40, 4)]
    cand = make_result(shifted(champ, 1.0))
    base = make_result(champ)
    for result, values in ((cand, champ["clean"][::4] + 1.0), (base, champ["clean"][::4])):
        result.slices["cond_night"] = type(result.slices["clean"])(
            float(values.mean()), 0.0, 100.0, values.tolist(), night_ids
        )
    verdict = decide(POLICY, cand, base)
    assert verdict.passed, verdict.reasons
    assert {c.name: c.value for c in verdict.checks}["noninferiority.cond_night"] == pytest.approx(1.0)
    assert verdict.num_samples == 40


def test_verdict_json_and_markdown_round_trip(tmp_path) -> None:
    champ = base_per_image()
    verdict = decide(POLICY, make_result(shifted(champ, -4.0)), make_result(champ), candidate_name="ckpt.pt")
    json_path, md_path = write_verdict(verdict, tmp_path / "out")
    data = json.loads(json_path.read_text())
    assert data["passed"] is False and data["reasons"] == verdict.reasons
    assert GateVerdict.from_json(json_path.read_text()) == verdict
    md = md_path.read_text()
    assert md.startswith("# Promotion gate: BLOCKED")
    assert "**FAIL**" in md and "`abs_change.clean_miou`" in md and "emm_missing_rgb" in md
