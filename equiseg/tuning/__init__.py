"""Optuna adapter (docs/design.md): the search space and its overlays, the study, and :func:`trial_hooks`.

Public API::

    run_study(cfg, *, manifest, data_root, out_dir, trials=None, storage=None, workers=None, tracker=None)
    trial_hooks(trial) -> equiseg.training.TrainHooks

Names load their module on first use: the study storage and the search space need optuna only, the study itself
torch and mlflow too (a KFP task that only creates or reads a study never imports them).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from equiseg.lazy import lazy_namespace

if TYPE_CHECKING:
    from equiseg.tuning.space import (
        load_overlay,
        overlay_overrides,
        suggest_params,
        validate_search_space,
        write_overlay,
    )
    from equiseg.tuning.storage import default_storage, make_storage
    from equiseg.tuning.study import TuningResult, make_pruner, run_study, trial_hooks

_LAZY: dict[str, str] = {
    "TuningResult": "equiseg.tuning.study",
    "default_storage": "equiseg.tuning.storage",
    "load_overlay": "equiseg.tuning.space",
    "make_pruner": "equiseg.tuning.study",
    "make_storage": "equiseg.tuning.storage",
    "overlay_overrides": "equiseg.tuning.space",
    "run_study": "equiseg.tuning.study",
    "suggest_params": "equiseg.tuning.space",
    "trial_hooks": "equiseg.tuning.study",
    "validate_search_space": "equiseg.tuning.space",
    "write_overlay": "equiseg.tuning.space",
}

__all__ = [
    "TuningResult",
    "default_storage",
    "load_overlay",
    "make_pruner",
    "make_storage",
    "overlay_overrides",
    "run_study",
    "suggest_params",
    "trial_hooks",
    "validate_search_space",
    "write_overlay",
]

__getattr__, __dir__ = lazy_namespace(__name__, _LAZY, globals())
