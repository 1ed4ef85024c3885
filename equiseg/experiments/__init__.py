"""Experiments that test the paper's claims on our benchmark (docs/results.md).

``claim``: does balance pay? Every model trained and scored alike over several seeds, EQUISeg compared with each
baseline by two-level bootstrap. One module per job:

- :mod:`~equiseg.experiments.plan`: the checked ``experiment:`` section, one config and two hashes per run;
- :mod:`~equiseg.experiments.runs`: the runs (train + score, resumable); core dependencies only, so they also run
  on a bare GPU box;
- :mod:`~equiseg.experiments.stats` and :mod:`~equiseg.experiments.analysis`: statistics over finished runs;
- :mod:`~equiseg.experiments.report`: figures and the Markdown report;
- :mod:`~equiseg.experiments.claim`: the command (:func:`run_claim`), with MLflow logging when mlflow is installed.

Importing this package needs neither mlflow nor kfp.
"""

from __future__ import annotations

from equiseg.experiments.analysis import ClaimAnalysis, ClaimOutcome, analyse
from equiseg.experiments.claim import run_claim
from equiseg.experiments.plan import validate_experiment
from equiseg.experiments.runs import CellRecord, load_cells, run_cell, run_cells
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
