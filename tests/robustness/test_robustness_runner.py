"""End-to-end protocol mechanics with reference models (oracle, depth-blind)."""

from __future__ import annotations

import math

import pytest
import torch
from robustness_reference import NUM_CLASSES, OracleModel, SingleModalityModel, make_batches

from equiseg.robustness import RobustnessResult, evaluate_robustness, plan_suite

MODS = ("rgb", "depth")


def test_oracle_is_perfect_wherever_any_modality_survives(batches_rgb_depth: list) -> None:
    result = evaluate_robustness(
        OracleModel(MODS),
        batches_rgb_depth,
        num_classes=NUM_CLASSES,
        modalities=MODS,
        suite="quick",
        bootstrap_samples=50,
        progress=False,
    )
    m = result.summary_metrics()
    assert m["clean_miou"] == pytest.approx(100.0)
    # every EMM case keeps one modality, and RMM zeroes elements of missing modalities only: the oracle recovers
    assert m["emm_avg"] == pytest.approx(100.0)
    assert m["emm_e0.1"] == pytest.approx(100.0)
    assert m["rmm_r0.5"] == pytest.approx(100.0)
    assert m["balance_ratio"] == pytest.approx(1.0)
    assert m["drop_without_rgb"] == pytest.approx(0.0)
    assert m["nm_mid"] < 100.0  # noise does corrupt what the oracle decodes
    assert m["corrupt_miou_c"] < 100.0 and 0.0 < m["relative_robustness"] < 1.0
    assert result.slices["emm/rgb"].sample_ids == [f"s{i:03d}" for i in range(8)]
    assert len(result.slices["emm/rgb"].per_image_miou) == 8
    # condition slices are subsets of the clean predictions
    assert result.slices["cond/night"].sample_ids == ["s000", "s003", "s006"]
    assert m["cond_fog_miou"] == pytest.approx(100.0)


def test_model_that_ignores_depth_has_zero_drop_without_depth(batches_rgb_depth: list) -> None:
    result = evaluate_robustness(
        SingleModalityModel("rgb"),
        batches_rgb_depth,
        num_classes=NUM_CLASSES,
        modalities=MODS,
        suite="quick",
        bootstrap_samples=0,
        progress=False,
    )
    m = result.summary_metrics()
    assert m["drop_without_depth"] == 0.0
    assert m["drop_without_rgb"] > 50.0
    assert m["single_depth_miou"] < m["single_rgb_miou"]
    assert m["balance_ratio"] < 0.5
    assert m["worst_slice_miou"] == min(s.miou for s in result.slices.values())
    assert result.meta["missing_mode"] == "zero"
    # depth corruptions cannot hurt a model that never reads depth
    depth_cells = result.aggregates["corruption"]["matrix"]["depth"]
    assert all(v == pytest.approx(100.0) for row in depth_cells.values() for v in row.values())


def test_drop_mode_for_models_supporting_subsets(batches_rgb_depth: list) -> None:
    model = OracleModel(MODS)
    model.supports_missing_modalities = True  # type: ignore[attr-defined]
    seen: list[set[str]] = []

    def spy(inputs: dict) -> torch.Tensor:
        seen.append(set(inputs))
        return model(inputs)

    spy.supports_missing_modalities = True  # type: ignore[attr-defined]
    result = evaluate_robustness(
        spy, batches_rgb_depth, num_classes=NUM_CLASSES, modalities=MODS, suite="quick", progress=False
    )
    assert result.meta["missing_mode"] == "drop"
    assert {"rgb"} in seen and {"depth"} in seen
    assert result.summary_metrics()["emm_avg"] == pytest.approx(100.0)


def test_same_seed_same_result_and_json_round_trip(tmp_path) -> None:
    batches = make_batches(MODS, num_images=6, batch_size=3)
    kwargs = dict(num_classes=NUM_CLASSES, modalities=MODS, suite="quick", seed=3, severities=[2], progress=False)
    a = evaluate_robustness(OracleModel(MODS), batches, bootstrap_samples=100, **kwargs)
    b = evaluate_robustness(
        OracleModel(MODS), make_batches(MODS, num_images=6, batch_size=2), bootstrap_samples=100, **kwargs
    )
    # batching does not change any slice (per-batch seeds differ, so only deterministic slices must match exactly)
    assert a.slices["clean"].per_image_miou == b.slices["clean"].per_image_miou
    c = evaluate_robustness(OracleModel(MODS), batches, bootstrap_samples=100, **kwargs)
    assert a.summary_metrics() == c.summary_metrics()
    path = tmp_path / "robustness.json"
    a.to_json(path)
    loaded = RobustnessResult.from_json(path)
    assert loaded.summary_metrics() == pytest.approx(a.summary_metrics(), nan_ok=True)
    assert loaded.slices["nm/mid"].per_image_miou == a.slices["nm/mid"].per_image_miou
    assert all(isinstance(v, float) and not math.isinf(v) for v in loaded.summary_metrics().values())


def test_suite_plans() -> None:
    three = ("rgb", "depth", "thermal")
    quick = plan_suite(three, "quick", severities=[3])
    kinds = [s.kind for s in quick]
    assert kinds.count("emm") == 2**3 - 2 and kinds.count("rmm") == 2**3 - 2 and kinds.count("nm") == 1
    full = plan_suite(three, "full", severities=[3])  # the configured quick severities do not thin the full matrix
    assert sum(s.kind == "rmm" for s in full) == 3 * (2**3 - 2)
    assert {s.params["severity"] for s in full if s.kind == "corrupt"} == {1, 2, 3, 4, 5}
    assert [s.name for s in plan_suite(three, "clean")] == ["clean"]
    with pytest.raises(ValueError, match="valid suites"):
        plan_suite(three, "huge")


def test_batches_missing_a_modality_fail_with_advice(batches_rgb_depth: list) -> None:
    with pytest.raises(KeyError, match="lacks modalities"):
        evaluate_robustness(
            OracleModel(MODS), batches_rgb_depth, num_classes=NUM_CLASSES, modalities=("rgb", "thermal"), progress=False
        )


def test_single_modality_and_one_shot_iterable() -> None:
    """N = 1: EMM Avg is the clean mIoU; a generator (iterable once) is enough because batches are cached."""
    batches = (b for b in make_batches(("rgb",), num_images=4, batch_size=2))
    result = evaluate_robustness(
        OracleModel(("rgb",)),
        batches,
        num_classes=NUM_CLASSES,
        modalities=("rgb",),
        severities=[3, 3],
        bootstrap_samples=0,
        progress=False,
    )
    m = result.summary_metrics()
    assert m["emm_avg"] == m["clean_miou"] == pytest.approx(100.0)
    assert m["balance_ratio"] == 1.0 and "drop_without_rgb" not in m
    assert result.meta["severities"] == [3]
    assert m["cond_min_miou"] <= m["cond_mean_miou"]
    assert not any(k.startswith("miou/rmm") for k in m)


def test_drop_mode_on_a_model_without_subset_support_says_how_to_fix() -> None:
    batches = make_batches(MODS, num_images=4)
    kwargs = dict(num_classes=NUM_CLASSES, modalities=MODS, suite="quick", severities=[1], progress=False)
    zero = evaluate_robustness(SingleModalityModel("depth"), batches, missing="zero", bootstrap_samples=0, **kwargs)
    assert zero.slices["emm/depth"].miou == pytest.approx(100.0)
    assert zero.slices["emm/rgb"].miou < 50.0  # zero-filled depth decodes to one constant class
    with pytest.raises(RuntimeError, match="missing='zero'"):
        evaluate_robustness(SingleModalityModel("depth"), batches, missing="drop", bootstrap_samples=0, **kwargs)


@pytest.mark.parametrize("cache", ["cpu", "none"])
def test_cache_modes_give_identical_results(cache: str) -> None:
    from torch.utils.data import DataLoader

    samples = []
    for batch in make_batches(MODS, num_images=6, batch_size=6):
        for i in range(6):
            samples.append(
                {
                    "inputs": {m: x[i] for m, x in batch["inputs"].items()},
                    "label": batch["label"][i],
                    "sample_id": batch["sample_id"][i],
                    "conditions": batch["conditions"][i],
                }
            )

    def collate(items: list) -> dict:
        return {
            "inputs": {m: torch.stack([s["inputs"][m] for s in items]) for m in MODS},
            "label": torch.stack([s["label"] for s in items]),
            "sample_id": [s["sample_id"] for s in items],
            "conditions": [s["conditions"] for s in items],
        }

    loader = DataLoader(samples, batch_size=4, shuffle=False, collate_fn=collate)
    kwargs = dict(num_classes=NUM_CLASSES, modalities=MODS, severities=[2], bootstrap_samples=20, progress=False)
    reference = evaluate_robustness(OracleModel(MODS), loader, **kwargs)
    other = evaluate_robustness(OracleModel(MODS), loader, cache=cache, **kwargs)
    assert other.summary_metrics() == reference.summary_metrics()
    assert other.slices["cond/night"].sample_ids == reference.slices["cond/night"].sample_ids
    if cache == "none":
        order = torch.Generator().manual_seed(0)  # seeded: successive epochs are known to differ
        shuffled = DataLoader(samples, batch_size=4, shuffle=True, collate_fn=collate, generator=order)
        with pytest.raises(RuntimeError, match="shuffle=False"):
            evaluate_robustness(OracleModel(MODS), shuffled, cache="none", **kwargs)
        with pytest.raises(ValueError, match="iterated only once"):
            evaluate_robustness(OracleModel(MODS), iter(loader), cache="none", **kwargs)
