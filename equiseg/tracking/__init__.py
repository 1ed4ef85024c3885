"""MLflow adapter (docs/design.md): runs, models and the one store setting.

* :mod:`~equiseg.tracking.store`: :func:`configure_store`, the one place that sets MLflow's tracking and registry
  URIs, and the URI resolution.
* :mod:`~equiseg.tracking.runs`: :class:`Tracker`, runs with bounded retries.
* :mod:`~equiseg.tracking.models`: the pyfunc wrapper and :func:`load_model`, the one model resolver (checkpoint
  path, ``runs:/``, ``models:/name@alias``, ``models:/name/version``, logged-model URIs).
* :mod:`~equiseg.tracking.artifacts`: model URIs, the pickle-free check of a downloaded model and checkpoint digests
  (no torch).
* :mod:`~equiseg.tracking.tracked`: :func:`train_tracked`, training inside a tracked run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from equiseg.lazy import lazy_namespace

if TYPE_CHECKING:
    from equiseg.tracking.artifacts import UnsafeModelError, checkpoint_sha256, is_model_uri, logged_model_id
    from equiseg.tracking.models import (
        EquisegPyfuncModel,
        load_model,
        model_signature,
        normalize_inputs,
        pinned_requirements,
        predict_masks,
    )
    from equiseg.tracking.runs import Tracker
    from equiseg.tracking.store import TrackingError, configure_store, resolve_artifact_location, resolve_tracking_uri
    from equiseg.tracking.tracked import TrackingHooks, train_tracked

__all__ = [
    "EquisegPyfuncModel",
    "Tracker",
    "TrackingError",
    "TrackingHooks",
    "UnsafeModelError",
    "checkpoint_sha256",
    "configure_store",
    "is_model_uri",
    "load_model",
    "logged_model_id",
    "model_signature",
    "normalize_inputs",
    "pinned_requirements",
    "predict_masks",
    "resolve_artifact_location",
    "resolve_tracking_uri",
    "train_tracked",
]

#: public name -> the module that defines it, imported on first use (equiseg.lazy)
_LAZY: dict[str, str] = {
    "checkpoint_sha256": "equiseg.tracking.artifacts",
    "configure_store": "equiseg.tracking.store",
    "EquisegPyfuncModel": "equiseg.tracking.models",
    "is_model_uri": "equiseg.tracking.artifacts",
    "load_model": "equiseg.tracking.models",
    "logged_model_id": "equiseg.tracking.artifacts",
    "model_signature": "equiseg.tracking.models",
    "normalize_inputs": "equiseg.tracking.models",
    "pinned_requirements": "equiseg.tracking.models",
    "predict_masks": "equiseg.tracking.models",
    "resolve_artifact_location": "equiseg.tracking.store",
    "resolve_tracking_uri": "equiseg.tracking.store",
    "Tracker": "equiseg.tracking.runs",
    "TrackingError": "equiseg.tracking.store",
    "TrackingHooks": "equiseg.tracking.tracked",
    "train_tracked": "equiseg.tracking.tracked",
    "UnsafeModelError": "equiseg.tracking.artifacts",
}

__getattr__, __dir__ = lazy_namespace(__name__, _LAZY, globals())
