"""Metrics against hand-computed confusion matrices (docs/robustness.md)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from equiseg.robustness import ConfusionMatrix, bootstrap_miou_ci, confusion_matrix, miou, per_class_iou


def test_confusion_matrix_matches_hand_count_and_skips_ignore() -> None:
    target = torch.tensor([[[0, 0, 1], [1, 2, 255]]])
    pred = torch.tensor([[[0, 1, 1], [1, 0, 2]]])
    hist = confusion_matrix(pred, target, num_classes=3)
    expected = torch.tensor([[1, 1, 0], [0, 2, 0], [1, 0, 0]])
    assert torch.equal(hist, expected)
    iou = per_class_iou(hist)
    # class 0: tp 1, gt 2, pred 2 -> 1/3; class 1: tp 2, gt 2, pred 3 -> 2/3; class 2: tp 0 -> 0
    np.testing.assert_allclose(iou, [1 / 3, 2 / 3, 0.0])
    assert miou(hist) == pytest.approx(100 * (1 / 3 + 2 / 3 + 0) / 3)


def test_absent_class_convention_is_a_parameter() -> None:
    hist = np.array([[3, 1, 0], [1, 3, 0], [0, 0, 0]])  # class 2 absent from target and prediction
    assert math.isnan(per_class_iou(hist)[2])
    assert miou(hist, absent_as_zero=True) == pytest.approx(100 * (0.6 + 0.6 + 0.0) / 3)
    assert miou(hist, absent_as_zero=False) == pytest.approx(60.0)


def test_labels_outside_range_raise_with_fix() -> None:
    with pytest.raises(ValueError, match="num_classes"):
        confusion_matrix(torch.zeros(1, 2, 2, dtype=torch.long), torch.full((1, 2, 2), 7), num_classes=3)


def test_accumulator_is_dataset_level_not_mean_of_images() -> None:
    cm = ConfusionMatrix(num_classes=2)
    # image 1: all class 0, predicted right (per-image mIoU over present classes = 100)
    cm.update(torch.zeros(1, 2, 2, dtype=torch.long), torch.zeros(1, 2, 2, dtype=torch.long))
    # image 2: 1 pixel of class 1 predicted as 0
    cm.update(torch.tensor([[[0, 0], [0, 0]]]), torch.tensor([[[1, 0], [0, 0]]]))
    assert np.array_equal(cm.hist, [[7, 0], [1, 0]])
    assert cm.miou() == pytest.approx(100 * (7 / 8 + 0) / 2)
    assert cm.per_image_miou() == pytest.approx([100.0, 100 * (3 / 4 + 0) / 2])
    assert cm.per_image_hist.shape == (2, 2, 2)


def test_bootstrap_ci_brackets_estimate_and_is_seeded() -> None:
    rng = np.random.default_rng(0)
    per_image = rng.integers(0, 50, size=(20, 3, 3))
    point = miou(per_image.sum(0))
    low, high = bootstrap_miou_ci(per_image, samples=500, seed=1)
    assert low <= point <= high and low < high
    assert bootstrap_miou_ci(per_image, samples=500, seed=1) == (low, high)
    assert all(math.isnan(v) for v in bootstrap_miou_ci(per_image[:1], samples=100))
