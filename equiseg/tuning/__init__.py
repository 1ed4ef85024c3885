"""Optuna adapter (docs/design.md): the search space and its overlays, the study, and :func:`trial_hooks`.

Public API::

    run_study(cfg, *, manifest, data_root, out_dir, trials=None, storage=None, workers=None, tracker=None)
    trial_hooks(trial) -> equiseg.training.TrainHooks
"""

from __future__ import annotations

from equiseg.tuning.space import (
    load_overlay,
    overlay_overrides,
    suggest_params,
    validate_search_space,
    write_overlay,
)
from equiseg.tuning.study import (
    TuningResult,
    default_storage,
    make_pruner,
    make_storage,
    run_study,
    trial_hooks,
)

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
