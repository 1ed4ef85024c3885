"""The retraining pipeline's steps as plain library functions, one module per stage (docs/pipeline.md).

Each KFP component in ``components/`` is one call into this package. A step takes the resolved config and small
parameters, does its work through the core and adapter modules, writes its files into the output folder its
component hands it (a KFP artifact) and returns a small result the component maps to KFP outputs. Keeping the steps
here means they are typed, tested on CPU without KFP, and the components stay thin. Steps also record what the user
must see at the end of a run in a :class:`~equiseg.steps.run_folder.TaskFacts`, written as the task's own ``facts``
output; the exit handler merges them into ``summary.json`` / ``summary.md`` (:mod:`equiseg.steps.run_folder`).
"""

from typing import TYPE_CHECKING

from equiseg.lazy import lazy_namespace

if TYPE_CHECKING:
    from equiseg.steps.data import PreparedData, prepare_data
    from equiseg.steps.evaluation import EvaluatedCandidate, eval_loader, evaluate_candidate
    from equiseg.steps.promotion import GateDecision, gate_candidate, register_and_promote
    from equiseg.steps.run_folder import (
        REPORT_LABELS,
        TaskFacts,
        collect_run_folder,
        collect_task_facts,
        run_dir_for,
    )
    from equiseg.steps.summary import publish_reports, read_run_summary, write_run_summary
    from equiseg.steps.training import TrainedCandidate, lineage_tags, train_candidate
    from equiseg.steps.tuning import create_study, optuna_storage_for, select_best_trial, study_name_for, tune_worker
    from equiseg.steps.validation import DataValidationError, ValidatedData, validate_data
    from equiseg.steps.versioning import VersionedData, version_data

__all__ = [
    "REPORT_LABELS",
    "DataValidationError",
    "EvaluatedCandidate",
    "GateDecision",
    "PreparedData",
    "TaskFacts",
    "TrainedCandidate",
    "ValidatedData",
    "VersionedData",
    "collect_run_folder",
    "collect_task_facts",
    "create_study",
    "eval_loader",
    "evaluate_candidate",
    "gate_candidate",
    "lineage_tags",
    "optuna_storage_for",
    "prepare_data",
    "publish_reports",
    "read_run_summary",
    "register_and_promote",
    "run_dir_for",
    "select_best_trial",
    "study_name_for",
    "train_candidate",
    "tune_worker",
    "validate_data",
    "version_data",
    "write_run_summary",
]


#: public name -> the step module that defines it. A KFP task imports one step; loading the names lazily (PEP 562)
#: keeps it from importing every other step's dependencies (torch, mlflow, optuna, great-expectations, DVC) too.
_LAZY: dict[str, str] = {
    "DataValidationError": "equiseg.steps.validation",
    "EvaluatedCandidate": "equiseg.steps.evaluation",
    "GateDecision": "equiseg.steps.promotion",
    "PreparedData": "equiseg.steps.data",
    "TaskFacts": "equiseg.steps.run_folder",
    "REPORT_LABELS": "equiseg.steps.run_folder",
    "TrainedCandidate": "equiseg.steps.training",
    "ValidatedData": "equiseg.steps.validation",
    "VersionedData": "equiseg.steps.versioning",
    "collect_run_folder": "equiseg.steps.run_folder",
    "collect_task_facts": "equiseg.steps.run_folder",
    "create_study": "equiseg.steps.tuning",
    "eval_loader": "equiseg.steps.evaluation",
    "evaluate_candidate": "equiseg.steps.evaluation",
    "gate_candidate": "equiseg.steps.promotion",
    "lineage_tags": "equiseg.steps.training",
    "optuna_storage_for": "equiseg.steps.tuning",
    "prepare_data": "equiseg.steps.data",
    "publish_reports": "equiseg.steps.summary",
    "read_run_summary": "equiseg.steps.summary",
    "register_and_promote": "equiseg.steps.promotion",
    "run_dir_for": "equiseg.steps.run_folder",
    "select_best_trial": "equiseg.steps.tuning",
    "study_name_for": "equiseg.steps.tuning",
    "train_candidate": "equiseg.steps.training",
    "tune_worker": "equiseg.steps.tuning",
    "validate_data": "equiseg.steps.validation",
    "version_data": "equiseg.steps.versioning",
    "write_run_summary": "equiseg.steps.summary",
}

__getattr__, __dir__ = lazy_namespace(__name__, _LAZY, globals())
