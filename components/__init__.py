"""KFP v2 components of the equiseg retraining pipeline: one step each, one `equiseg.steps` call each.

Components are lightweight Python components whose ``base_image`` is the project image (``infra/docker``), so on a
cluster they import the installed ``equiseg`` package; locally ``kfp.local.SubprocessRunner(use_venv=False)`` runs
them in the project venv. At module top a component imports only the standard library and kfp; the equiseg call
lives inside the function body (KFP serialises the function source; tests/components checks the imports).
Every step takes ``profile`` + ``overrides`` and resolves the typed config itself, so the pipeline passes only
small parameters and artifacts.
"""

from components.evaluate_robustness import evaluate_robustness
from components.gate import gate
from components.prepare_data import prepare_data
from components.publish_reports import publish_reports
from components.register_and_promote import register_and_promote
from components.run_summary import run_summary
from components.train import train
from components.tune import create_study, select_best_trial, tune_worker
from components.validate_data import validate_data
from components.version_data import version_data

__all__ = [
    "create_study",
    "evaluate_robustness",
    "gate",
    "prepare_data",
    "publish_reports",
    "register_and_promote",
    "run_summary",
    "select_best_trial",
    "train",
    "tune_worker",
    "validate_data",
    "version_data",
]
