"""Robustness promotion gate and MLflow model registry (see docs/gate.md).

The gate core (:func:`decide`) depends only on plain data; the registry operations talk to MLflow (imported lazily);
:func:`run_gate` ties them to the robustness evaluation and :func:`promote_candidate` is the pipeline's registry step.
"""

from equiseg.registry.gate import PromotionOutcome, promote_candidate, run_gate
from equiseg.registry.model_card import build_model_card, write_model_card
from equiseg.registry.operations import (
    CHALLENGER,
    CHAMPION,
    PREVIOUS_CHAMPION,
    ChampionMovedError,
    PromotionError,
    PromotionResult,
    VersionSummary,
    approve,
    audit_registry,
    get_alias_version,
    list_versions,
    promote,
    record_verdict,
    register_candidate,
    rollback,
)
from equiseg.registry.policy import Check, GateVerdict, decide, paired_bootstrap_lower_bounds, write_verdict
from equiseg.registry.serving import ServingReport, serving_check

__all__ = [
    "CHALLENGER",
    "CHAMPION",
    "PREVIOUS_CHAMPION",
    "ChampionMovedError",
    "Check",
    "GateVerdict",
    "PromotionError",
    "PromotionOutcome",
    "PromotionResult",
    "ServingReport",
    "VersionSummary",
    "approve",
    "audit_registry",
    "build_model_card",
    "decide",
    "get_alias_version",
    "list_versions",
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
