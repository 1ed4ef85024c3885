"""Robustness promotion gate and MLflow Model Registry operations (see docs/gate.md).

The gate core (:func:`decide`) depends only on plain data; :mod:`~equiseg.promotion.versions` and
:mod:`~equiseg.promotion.aliases` operate on the MLflow Model Registry; :func:`run_gate` ties them to the robustness
evaluation and :func:`promote_candidate` is the pipeline's registry step. Runs are logged and models loaded only
through :mod:`equiseg.tracking`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from equiseg.lazy import lazy_namespace

if TYPE_CHECKING:
    from equiseg.promotion.aliases import (
        PROMOTION_STEPS,
        ChampionMovedError,
        Override,
        PromotionError,
        PromotionResult,
        approve,
        promote,
        rollback,
    )
    from equiseg.promotion.binding import VerdictMismatchError, bind_verdict, check_binding
    from equiseg.promotion.bootstrap import align_per_image, paired_bootstrap_lower_bounds
    from equiseg.promotion.candidate import PromotionOutcome, promote_candidate
    from equiseg.promotion.gate import log_verdict_to_run, run_gate
    from equiseg.promotion.model_card import build_model_card, write_model_card
    from equiseg.promotion.policy import decide
    from equiseg.promotion.serving import ServingReport, serving_check
    from equiseg.promotion.verdict import Check, GateVerdict, write_verdict
    from equiseg.promotion.versions import (
        CHALLENGER,
        CHAMPION,
        PREVIOUS_CHAMPION,
        VersionSummary,
        audit_registry,
        get_alias_version,
        list_versions,
        record_verdict,
        register_candidate,
    )

__all__ = [
    "CHALLENGER",
    "CHAMPION",
    "PREVIOUS_CHAMPION",
    "PROMOTION_STEPS",
    "ChampionMovedError",
    "Check",
    "GateVerdict",
    "Override",
    "PromotionError",
    "PromotionOutcome",
    "PromotionResult",
    "ServingReport",
    "VerdictMismatchError",
    "VersionSummary",
    "align_per_image",
    "approve",
    "audit_registry",
    "bind_verdict",
    "build_model_card",
    "check_binding",
    "decide",
    "get_alias_version",
    "list_versions",
    "log_verdict_to_run",
    "paired_bootstrap_lower_bounds",
    "promote",
    "promote_candidate",
    "record_verdict",
    "register_candidate",
    "rollback",
    "run_gate",
    "serving_check",
    "write_model_card",
    "write_verdict",
]

#: public name -> the module that defines it, imported on first use (equiseg.lazy)
_LAZY: dict[str, str] = {
    "align_per_image": "equiseg.promotion.bootstrap",
    "approve": "equiseg.promotion.aliases",
    "audit_registry": "equiseg.promotion.versions",
    "bind_verdict": "equiseg.promotion.binding",
    "build_model_card": "equiseg.promotion.model_card",
    "CHALLENGER": "equiseg.promotion.versions",
    "CHAMPION": "equiseg.promotion.versions",
    "ChampionMovedError": "equiseg.promotion.aliases",
    "Check": "equiseg.promotion.verdict",
    "check_binding": "equiseg.promotion.binding",
    "decide": "equiseg.promotion.policy",
    "GateVerdict": "equiseg.promotion.verdict",
    "get_alias_version": "equiseg.promotion.versions",
    "list_versions": "equiseg.promotion.versions",
    "log_verdict_to_run": "equiseg.promotion.gate",
    "Override": "equiseg.promotion.aliases",
    "paired_bootstrap_lower_bounds": "equiseg.promotion.bootstrap",
    "PREVIOUS_CHAMPION": "equiseg.promotion.versions",
    "promote": "equiseg.promotion.aliases",
    "promote_candidate": "equiseg.promotion.candidate",
    "PROMOTION_STEPS": "equiseg.promotion.aliases",
    "PromotionError": "equiseg.promotion.aliases",
    "PromotionOutcome": "equiseg.promotion.candidate",
    "PromotionResult": "equiseg.promotion.aliases",
    "record_verdict": "equiseg.promotion.versions",
    "register_candidate": "equiseg.promotion.versions",
    "rollback": "equiseg.promotion.aliases",
    "run_gate": "equiseg.promotion.gate",
    "serving_check": "equiseg.promotion.serving",
    "ServingReport": "equiseg.promotion.serving",
    "VerdictMismatchError": "equiseg.promotion.binding",
    "VersionSummary": "equiseg.promotion.versions",
    "write_model_card": "equiseg.promotion.model_card",
    "write_verdict": "equiseg.promotion.verdict",
}

__getattr__, __dir__ = lazy_namespace(__name__, _LAZY, globals())
