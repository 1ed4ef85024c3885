"""The default gate policy blocks a constant (majority-class) predictor and a model that collapses without a sensor.

Scripted models are scored by the real robustness runner (quick suite), then judged by ``decide`` with the
default ``GateConfig()``: the first-run path, where only floors apply, must already have teeth.
"""

from __future__ import annotations

from collections.abc import Mapping

import pytest
import torch

from equiseg.config import GateConfig
from equiseg.modalities import channels_of, from_unit, to_unit
from equiseg.promotion import decide
from equiseg.promotion.policy import constant_predictor_bound
from equiseg.robustness import RobustnessResult, evaluate_robustness

K = 5
MODALITIES = ("rgb", "depth", "thermal")


def _encode(label: torch.Tensor, modality: str) -> torch.Tensor:
    unit = ((label.float() + 1.0) / (K + 1.0)).unsqueeze(1).expand(-1, channels_of(modality), -1, -1)
    return from_unit(unit.contiguous(), modality)


def _decode(x: torch.Tensor, modality: str) -> torch.Tensor:
    unit = to_unit(x, modality)[:, 0]
    return (torch.round(unit * (K + 1.0)) - 1.0).clamp(0, K - 1).long()


def _batches(n: int = 12, size: int = 32) -> list[dict[str, object]]:
    g = torch.Generator().manual_seed(0)
    out = []
    for start in range(0, n, 4):
        coarse = torch.randint(0, K, (4, 1, size // 8, size // 8), generator=g).float()
        label = torch.nn.functional.interpolate(coarse, size=(size, size), mode="nearest").squeeze(1).long()
        label[:, :8, :] = 0  # class 0 is the majority class
        out.append(
            {
                "inputs": {m: _encode(label, m) for m in MODALITIES},
                "label": label,
                "sample_id": [f"s{start + i:03d}" for i in range(4)],
                "conditions": [()] * 4,
            }
        )
    return out


def _logits(pred: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.one_hot(pred, K).permute(0, 3, 1, 2).float() * 10.0


class Majority(torch.nn.Module):
    """Predicts class 0 everywhere, whatever it is given."""

    def forward(self, inputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        x = next(iter(inputs.values()))
        return _logits(torch.zeros(x.shape[0], x.shape[2], x.shape[3], dtype=torch.long))


class ReadsAny(torch.nn.Module):
    """Reads the label from the first modality that is present (not all zero): robust to any one missing."""

    def forward(self, inputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        for m in MODALITIES:
            if m in inputs and bool((inputs[m] != 0).any()):
                return _logits(_decode(inputs[m], m))
        x = next(iter(inputs.values()))
        return _logits(torch.zeros(x.shape[0], x.shape[2], x.shape[3], dtype=torch.long))


class RgbOrNothing(ReadsAny):
    """Perfect with RGB, a constant without it: collapses when one modality is missing."""

    def forward(self, inputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        if "rgb" in inputs and bool((inputs["rgb"] != 0).any()):
            return _logits(_decode(inputs["rgb"], "rgb"))
        return Majority()(inputs)


def _score(model: torch.nn.Module) -> RobustnessResult:
    return evaluate_robustness(
        model,
        _batches(),
        num_classes=K,
        modalities=MODALITIES,
        suite="quick",
        severities=[3],
        bootstrap_samples=50,
        progress=False,
        missing="zero",
    )


@pytest.fixture(scope="module")
def results() -> dict[str, RobustnessResult]:
    return {name: _score(model) for name, model in (("good", ReadsAny()), ("majority", Majority()))} | {
        "collapse": _score(RgbOrNothing())
    }


def test_a_model_that_reads_any_modality_passes_the_default_floors(results: dict[str, RobustnessResult]) -> None:
    verdict = decide(GateConfig(), results["good"], None)
    assert verdict.passed, verdict.reasons
    names = {c.name for c in verdict.checks}
    assert "floor.beats_constant.clean" in names
    assert {f"floor.keeps_without.{m}" for m in MODALITIES} <= names


def test_the_default_policy_blocks_a_majority_class_predictor(results: dict[str, RobustnessResult]) -> None:
    majority = results["majority"]
    assert majority.clean_miou > 0  # it does score something: class 0 is the largest class
    assert majority.clean_miou < constant_predictor_bound(majority) == pytest.approx(100.0 / K)
    verdict = decide(GateConfig(), majority, None)
    assert not verdict.passed
    failed = {c.name for c in verdict.failed_checks}
    assert "floor.beats_constant.clean" in failed
    assert "floor.beats_constant.kept_rgb" in failed
    assert any("constant (majority-class) predictor" in r for r in verdict.reasons)


def test_the_default_policy_blocks_a_model_that_collapses_without_one_modality(
    results: dict[str, RobustnessResult],
) -> None:
    collapse = results["collapse"]
    assert collapse.clean_miou == pytest.approx(100.0)  # perfect with every sensor
    verdict = decide(GateConfig(), collapse, None)
    assert not verdict.passed
    failed = {c.name for c in verdict.failed_checks}
    assert "floor.keeps_without.rgb" in failed
    assert "floor.keeps_without.depth" not in failed  # it does not need depth
    assert "floor.beats_constant.kept_depth-thermal".replace("-", "+") in failed


def test_the_floors_can_be_turned_off_explicitly(results: dict[str, RobustnessResult]) -> None:
    policy = GateConfig(beat_constant=False, min_keep_without=0.0)
    assert decide(policy, results["collapse"], None).passed
