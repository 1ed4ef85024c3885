"""Where MLflow keeps runs and models: URI resolution and :func:`configure_store`, the one place that sets them.

equiseg keeps the model registry in the tracking store. MLflow holds both URIs as process globals (and exports them
as environment variables to child processes), so every module that talks to MLflow points them at one store
through :func:`configure_store`; nothing else calls ``mlflow.set_tracking_uri`` / ``set_registry_uri``.
"""

from __future__ import annotations

from pathlib import Path

import mlflow

from equiseg.config import TrackingConfig

__all__ = ["TrackingError", "configure_store", "resolve_artifact_location", "resolve_tracking_uri"]


class TrackingError(RuntimeError):
    """MLflow could not be reached or refused a request after the configured retries."""


def configure_store(tracking_uri: str, registry_uri: str | None = None) -> None:
    """Point MLflow's global tracking and registry URIs at one store (the registry defaults to the tracking store).

    Setting only the tracking URI would leave a registry URI from an earlier call in this process, and registering
    a model would then go to the wrong, possibly dead, server.
    """
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(registry_uri or tracking_uri)


def resolve_tracking_uri(uri: str, cwd: Path | None = None) -> str:
    """Absolute tracking URI: ``sqlite:///relative.db`` becomes ``sqlite:////<cwd>/relative.db``; others unchanged.

    An empty URI means the default ``sqlite:///runs/mlflow.db``.
    """
    uri = uri or TrackingConfig().uri
    base = Path(cwd) if cwd is not None else Path.cwd()
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri.startswith(prefix + "/") and uri != prefix + ":memory:":
        db_path = (base / uri[len(prefix) :]).resolve()
        db_path.parent.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{db_path}"
    if uri.startswith("sqlite:////"):
        Path(uri[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
    return uri


def resolve_artifact_location(location: str, cwd: Path | None = None) -> str | None:
    """``file://`` URI for a local folder (relative to ``cwd``), URIs unchanged, ``None`` for the server default."""
    if not location:
        return None
    if "://" in location:
        return location
    base = Path(cwd) if cwd is not None else Path.cwd()
    return (base / location).resolve().as_uri()
