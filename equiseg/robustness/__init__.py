"""Robustness under degradation: degradations, EMM/RMM/NM/corruption protocols, metrics, runner and report.

Protocols and formulas follow the multimodal robustness benchmark (Liao et al., arXiv 2503.18445), ImageNet-C
(arXiv 1903.12261) and the DeLiVER mIoU convention; see ``docs/robustness.md``.

Modules by job: ``degradations`` (+ ``imaging`` primitives) and ``protocols`` transform inputs; ``suites`` plans
the slices; ``batches`` holds the evaluation data; ``runner`` scores a model; ``metrics`` and ``aggregate`` compute
mIoU and the protocol summaries; ``result`` stores them; ``examples`` and ``report`` write the report.
"""

from equiseg.robustness.aggregate import aggregate_slices
from equiseg.robustness.degradations import (
    DEGRADATIONS,
    QUICK_CORRUPTIONS,
    DegradationSpec,
    apply_degradation,
    degradations_for,
    jpeg_compress,
)
from equiseg.robustness.examples import PredictionExample, collect_examples
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
from equiseg.robustness.report import write_robustness_report
from equiseg.robustness.result import RobustnessResult, SliceResult
from equiseg.robustness.runner import evaluate_robustness, model_logits
from equiseg.robustness.suites import SUITES, SliceSpec, plan_suite, slice_seed

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
    "SliceSpec",
    "aggregate_slices",
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
    "model_logits",
    "per_class_iou",
    "per_image_confusion",
    "per_image_miou",
    "plan_suite",
    "remove_modalities",
    "slice_seed",
    "write_robustness_report",
]
