"""Robustness promotion gate and MLflow model registry (see docs/gate.md).

The gate core (:func:`decide`) depends only on plain data; registry operations talk to MLflow; :func:`run_gate`
ties them to the robustness evaluation. mlflow is imported lazily by the registry operations.
"""

from equiseg.registry.policy import Check, GateVerdict, decide, paired_bootstrap_lower_bounds, write_verdict

__all__ = ["Check", "GateVerdict", "decide", "paired_bootstrap_lower_bounds", "write_verdict"]
