"""Shared pytest fixtures and markers: the one tiny config, the one synthetic-dataset factory, the one MLflow server.

- ``tiny_overrides`` / ``tiny_cfg``: the smoke profile shrunk to 16 samples of 32 px, 4 classes, ``equiseg_tiny``;
  ``tiny_pipeline_overrides``: the same profile shrunk for a whole pipeline run (24 samples, 1 epoch, 1 trial).
- ``make_synthetic`` / ``tiny_data``: synthetic datasets (``equiseg.data.generate_synthetic``, no progress bars).
- ``new_postgres_database`` / ``mlflow_server``: fresh PostgreSQL databases and a real ``mlflow server`` on them.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from equiseg.config import EquisegConfig, load_config
from equiseg.data import generate_synthetic

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("EQUISEG_SHARED", REPO_ROOT.parent / "shared"))
REALDATA = SHARED / "realdata"
PG_ADMIN_DSN = os.environ.get("EQUISEG_TEST_PG", "host=127.0.0.1 port=5432 user=postgres dbname=test")
PG_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432"

#: 16 samples of 32 px: 12 train (3 steps of 4), 4 val. Small enough for a 2-core box shared by several people.
TINY_OVERRIDES = (
    "data.image_size=32",
    "data.samples=16",
    "data.num_classes=4",
    "model.name=equiseg_tiny",
    "train.epochs=2",
    "train.batch_size=4",
    "train.lr=0.002",
    "train.warmup_epochs=0.3",
    "train.device=cpu",
    "train.eval_robustness_every=100",
    "robustness.batch_size=8",
    "robustness.severities=[3]",
    "tune.epochs_per_trial=1",
)
TINY_MODALITIES = ("rgb", "depth", "thermal")
#: The whole retraining pipeline, smaller than the smoke profile so the default suite stays quick; the same code path.
TINY_PIPELINE_OVERRIDES = (
    "data.samples=24",
    "data.image_size=32",
    "train.epochs=1",
    "tune.trials=1",
    "robustness.bootstrap_samples=50",
    "gate.bootstrap_samples=50",
    # a one-epoch model cannot clear the default floors (docs/gate.md); these runs test the wiring, not the model
    "gate.beat_constant=false",
    "gate.min_keep_without=0",
)

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
    import torch

    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    if torch.cuda.is_available():
        return
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


# --------------------------------------------------------------------------------------------------------------------
# The tiny config and synthetic data
# --------------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def tiny_overrides() -> tuple[str, ...]:
    """The ``--set`` items that shrink the smoke profile for tests (:data:`TINY_OVERRIDES`)."""
    return TINY_OVERRIDES


@pytest.fixture(scope="session")
def tiny_pipeline_overrides() -> list[str]:
    """The ``--set`` items that shrink the smoke profile for whole-pipeline runs (:data:`TINY_PIPELINE_OVERRIDES`)."""
    return list(TINY_PIPELINE_OVERRIDES)


@pytest.fixture(scope="session")
def tiny_cfg() -> Callable[..., EquisegConfig]:
    """Factory: the smoke profile shrunk by :data:`TINY_OVERRIDES` plus extra ``key=value`` overrides."""

    def make(*extra: str) -> EquisegConfig:
        return load_config("smoke", (*TINY_OVERRIDES, *extra))

    return make


def _make_synthetic(
    out_dir: Path,
    *,
    samples: int = 16,
    size: int = 32,
    modalities: tuple[str, ...] = TINY_MODALITIES,
    seed: int = 0,
    num_classes: int | None = 4,
    **kwargs: Any,
) -> Path:
    return generate_synthetic(
        Path(out_dir),
        samples=samples,
        size=size,
        modalities=modalities,
        seed=seed,
        num_classes=num_classes,
        progress=False,
        **kwargs,
    )


@pytest.fixture(scope="session")
def make_synthetic() -> Callable[..., Path]:
    """Factory ``make_synthetic(out_dir, *, samples=16, size=32, modalities=(rgb, depth, thermal), seed=0,
    num_classes=4, **generate_synthetic_kwargs) -> manifest path``: THE way tests make synthetic data."""
    return _make_synthetic


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(manifest, data_root) of the tiny config's data: 16 samples, 32 px, 4 classes, rgb/depth/thermal. Read-only."""
    root = tmp_path_factory.mktemp("tiny_data")
    return _make_synthetic(root), root


# --------------------------------------------------------------------------------------------------------------------
# PostgreSQL and a real MLflow server
# --------------------------------------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def _postgres_admin() -> Iterator[Any]:
    """An autocommit admin connection to 127.0.0.1:5432; skipped where unreachable outside CI."""
    psycopg2 = pytest.importorskip("psycopg2")
    try:
        admin = psycopg2.connect(PG_ADMIN_DSN, connect_timeout=5)
    except psycopg2.OperationalError as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"PostgreSQL at 127.0.0.1:5432 not reachable: {exc}")
    admin.autocommit = True
    yield admin
    admin.close()


@contextlib.contextmanager
def _databases(admin: Any) -> Iterator[Callable[[], str]]:
    """Factory of fresh, empty databases (SQLAlchemy URLs); drops them all on exit."""
    created: list[str] = []

    def create() -> str:
        name = f"equiseg_test_{uuid.uuid4().hex[:10]}"
        with admin.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
        created.append(name)
        return f"{PG_URL}/{name}"

    try:
        yield create
    finally:
        with admin.cursor() as cur:
            for name in created:
                cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def new_postgres_database(_postgres_admin: Any) -> Iterator[Callable[[], str]]:
    """Factory of fresh, empty PostgreSQL databases on 127.0.0.1:5432 (SQLAlchemy URLs), dropped afterwards."""
    with _databases(_postgres_admin) as create:
        yield create


@dataclass(frozen=True)
class MlflowServer:
    url: str
    backend_store: str  # the PostgreSQL URL behind the server (also the promotion lock's database)


@pytest.fixture(scope="module")
def mlflow_server(_postgres_admin: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    """A real ``mlflow server`` on loopback: a fresh PostgreSQL backend store, proxied artifacts to a local folder."""
    root = tmp_path_factory.mktemp("mlflow-server")
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    with _databases(_postgres_admin) as create, (root / "server.log").open("w") as log:
        backend = create()
        command = [
            str(Path(sys.executable).with_name("mlflow")), "server", "--backend-store-uri", backend,
            "--artifacts-destination", str(root / "artifacts"), "--host", "127.0.0.1", "--port", str(port),
            "--workers", "1",
        ]  # fmt: skip
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        try:
            _wait_healthy(url, proc, root / "server.log", timeout=120)
            yield MlflowServer(url=url, backend_store=backend)
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def _wait_healthy(url: str, proc: subprocess.Popen[bytes], log: Path, *, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"mlflow server did not start: {log.read_text()[-2000:]}")
        time.sleep(0.5)


# --------------------------------------------------------------------------------------------------------------------
# Isolation
# --------------------------------------------------------------------------------------------------------------------

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
    if "mlflow" in sys.modules:  # only where a test imported mlflow: the [mlops] extra may be absent
        from mlflow.tracking._model_registry import utils as registry_utils
        from mlflow.tracking._tracking_service import utils as tracking_utils

        tracking_utils._tracking_uri = saved["MLFLOW_TRACKING_URI"]
        registry_utils._registry_uri = saved["MLFLOW_REGISTRY_URI"]
