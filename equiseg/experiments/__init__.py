"""Experiments that test the paper's claims on our benchmark (issue 9; docs/results.md).

``claim``: does balance pay? Every model trained and scored alike over several seeds, EQUISeg compared with each
baseline by two-level bootstrap. Like the training loop, importing this package needs neither mlflow nor kfp.
"""

from __future__ import annotations

from equiseg.experiments.claim import (
    CellRecord,
    ClaimAnalysis,
    ClaimOutcome,
    analyse,
    load_cells,
    run_cell,
    run_cells,
    run_claim,
    validate_experiment,
)
from equiseg.experiments.stats import Estimate

__all__ = [
    "CellRecord",
    "ClaimAnalysis",
    "ClaimOutcome",
    "Estimate",
    "analyse",
    "load_cells",
    "run_cell",
    "run_cells",
    "run_claim",
    "validate_experiment",
]
