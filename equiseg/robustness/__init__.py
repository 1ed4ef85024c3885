"""Robustness under degradation: degradations, EMM/RMM/NM/corruption protocols, metrics, runner and report.

Protocols and formulas follow the multimodal robustness benchmark (Liao et al., arXiv 2503.18445), ImageNet-C
(arXiv 1903.12261) and the DeLiVER mIoU convention; see ``docs/robustness.md``.

Modules by job: ``degradations`` (+ ``imaging`` primitives) and ``protocols`` transform inputs; ``suites`` plans
the slices; ``batches`` holds the evaluation data; ``runner`` scores a model; ``metrics`` and ``aggregate`` compute
mIoU and the protocol summaries; ``result`` stores them; ``examples`` and ``report`` write the report.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from equiseg.lazy import lazy_namespace

if TYPE_CHECKING:
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

#: public name -> the module that defines it, imported on first use (equiseg.lazy)
_LAZY: dict[str, str] = {
    "aggregate_slices": "equiseg.robustness.aggregate",
    "apply_degradation": "equiseg.robustness.degradations",
    "apply_noisy_modalities": "equiseg.robustness.protocols",
    "apply_random_missing": "equiseg.robustness.protocols",
    "bootstrap_miou_ci": "equiseg.robustness.metrics",
    "collect_examples": "equiseg.robustness.examples",
    "confusion_matrix": "equiseg.robustness.metrics",
    "ConfusionMatrix": "equiseg.robustness.metrics",
    "DEGRADATIONS": "equiseg.robustness.degradations",
    "degradations_for": "equiseg.robustness.degradations",
    "DegradationSpec": "equiseg.robustness.degradations",
    "EMM_P_VALUES": "equiseg.robustness.protocols",
    "evaluate_robustness": "equiseg.robustness.runner",
    "expected_miou": "equiseg.robustness.protocols",
    "jpeg_compress": "equiseg.robustness.degradations",
    "kept_subsets": "equiseg.robustness.protocols",
    "miou": "equiseg.robustness.metrics",
    "missing_sets": "equiseg.robustness.protocols",
    "missing_weights": "equiseg.robustness.protocols",
    "model_logits": "equiseg.robustness.runner",
    "NM_LEVELS": "equiseg.robustness.protocols",
    "per_class_iou": "equiseg.robustness.metrics",
    "per_image_confusion": "equiseg.robustness.metrics",
    "per_image_miou": "equiseg.robustness.metrics",
    "plan_suite": "equiseg.robustness.suites",
    "PredictionExample": "equiseg.robustness.examples",
    "QUICK_CORRUPTIONS": "equiseg.robustness.degradations",
    "remove_modalities": "equiseg.robustness.protocols",
    "RMM_RATIOS": "equiseg.robustness.protocols",
    "RobustnessResult": "equiseg.robustness.result",
    "slice_seed": "equiseg.robustness.suites",
    "SliceResult": "equiseg.robustness.result",
    "SliceSpec": "equiseg.robustness.suites",
    "SUITES": "equiseg.robustness.suites",
    "write_robustness_report": "equiseg.robustness.report",
}

__getattr__, __dir__ = lazy_namespace(__name__, _LAZY, globals())
