"""Shared pytest fixtures and markers."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("EQUISEG_SHARED", REPO_ROOT.parent / "shared"))
REALDATA = SHARED / "realdata"

# Keep CPU tests predictable on a 2-core machine.
os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def realdata_dir() -> Path:
    """The real sample frames in ../shared/realdata; skipped with a reason where absent (CI has them)."""
    if not REALDATA.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"{REALDATA} is missing; CI must have ../shared/realdata beside the clone")
        pytest.skip(f"{REALDATA} not found (set EQUISEG_SHARED to the shared/ folder)")
    return REALDATA


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except Exception:  # pragma: no cover - torch always present in the venv
        has_cuda = False
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords and not has_cuda:
            item.add_marker(skip_gpu)


_MLFLOW_ENV = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")


@pytest.fixture(autouse=True)
def _isolate_mlflow_globals() -> Iterator[None]:
    """Each test starts with MLflow's process-global URIs as the session had them.

    ``mlflow.set_tracking_uri`` / ``set_registry_uri`` also export environment variables that child processes
    inherit; a test that pointed them at its own (later deleted) store or server must not leak that into the next.
    """
    saved = {key: os.environ.get(key) for key in _MLFLOW_ENV}
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    import sys

    if "mlflow" in sys.modules:
        from mlflow.tracking._model_registry import utils as registry_utils
        from mlflow.tracking._tracking_service import utils as tracking_utils

        tracking_utils._tracking_uri = saved["MLFLOW_TRACKING_URI"]
        registry_utils._registry_uri = saved["MLFLOW_REGISTRY_URI"]
