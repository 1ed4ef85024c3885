"""MLflow adapter (docs/design.md): runs, models and the one store setting.

* :mod:`~equiseg.tracking.store`: :func:`configure_store`, the one place that sets MLflow's tracking and registry
  URIs, and the URI resolution.
* :mod:`~equiseg.tracking.runs`: :class:`Tracker`, runs with bounded retries.
* :mod:`~equiseg.tracking.models`: the pyfunc wrapper and :func:`load_model`, the one model resolver (checkpoint
  path, ``runs:/``, ``models:/name@alias``, ``models:/name/version``, logged-model URIs).
* :mod:`~equiseg.tracking.tracked`: :func:`train_tracked`, training inside a tracked run.
"""

from __future__ import annotations

from equiseg.tracking.models import (
    EquisegPyfuncModel,
    UnsafeModelError,
    checkpoint_sha256,
    is_model_uri,
    load_model,
    logged_model_id,
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
