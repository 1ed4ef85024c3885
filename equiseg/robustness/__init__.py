"""Robustness under degradation: degradations, EMM/RMM/NM/corruption protocols, metrics, runner and report.

Protocols and formulas follow the multimodal robustness benchmark (Liao et al., arXiv 2503.18445), ImageNet-C
(arXiv 1903.12261) and the DeLiVER mIoU convention; see ``docs/robustness.md`` and reference §3.
"""

from equiseg.robustness.degradations import (
    DEGRADATIONS,
    QUICK_CORRUPTIONS,
    DegradationSpec,
    apply_degradation,
    degradations_for,
    jpeg_compress,
)
from equiseg.robustness.metrics import (
    ConfusionMatrix,
    bootstrap_miou_ci,
    confusion_matrix,
    miou,
    per_class_iou,
    per_image_confusion,
    per_image_miou,
)
from equiseg.robustness.protocols import (
    EMM_P_VALUES,
    NM_LEVELS,
    RMM_RATIOS,
    apply_noisy_modalities,
    apply_random_missing,
    expected_miou,
    kept_subsets,
    missing_sets,
    missing_weights,
    remove_modalities,
)
from equiseg.robustness.report import PredictionExample, collect_examples, write_robustness_report
from equiseg.robustness.result import RobustnessResult, SliceResult
from equiseg.robustness.runner import SUITES, evaluate_robustness, plan_suite

__all__ = [
    "DEGRADATIONS",
    "EMM_P_VALUES",
    "NM_LEVELS",
    "QUICK_CORRUPTIONS",
    "RMM_RATIOS",
    "SUITES",
    "ConfusionMatrix",
    "DegradationSpec",
    "PredictionExample",
    "RobustnessResult",
    "SliceResult",
    "apply_degradation",
    "apply_noisy_modalities",
    "apply_random_missing",
    "bootstrap_miou_ci",
    "collect_examples",
    "confusion_matrix",
    "degradations_for",
    "evaluate_robustness",
    "expected_miou",
    "jpeg_compress",
    "kept_subsets",
    "miou",
    "missing_sets",
    "missing_weights",
    "per_class_iou",
    "per_image_confusion",
    "per_image_miou",
    "plan_suite",
    "remove_modalities",
    "write_robustness_report",
]
