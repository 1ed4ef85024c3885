"""The registered champion served by ``mlflow models serve`` from a clean virtualenv answers REST requests with
masks, for every modality and for a subset (docs/operations.md, "Serving").

The virtualenv gets only the logged model's own ``requirements.txt`` (pip takes the pinned wheels from the local
wheel cache through ``-c constraints.txt``), never this checkout: equiseg comes from the model's ``code/`` folder.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import mlflow
import numpy as np
import pytest
import torch

from equiseg.config import TrackingConfig
from equiseg.models import create_model
from equiseg.promotion import bind_verdict, decide, promote, register_candidate
from equiseg.tracking import Tracker, load_model, predict_masks
from equiseg.training import save_checkpoint

from .gate_synthetic import base_per_image, make_result
from .registry_helpers import POLICY

pytestmark = pytest.mark.slow  # builds a virtualenv (minutes)

CONSTRAINTS = Path(__file__).resolve().parents[2] / "constraints.txt"
MODEL = "equiseg-serve"


@pytest.fixture(scope="session")
def champion(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """A tiny 3-modality equiseg model, logged, gated, registered and promoted; (tracking URI, its model folder)."""
    root = tmp_path_factory.mktemp("serve")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    tracker = Tracker(TrackingConfig(uri=uri, artifact_location=str(root / "artifacts"), log_system_metrics=False))
    torch.manual_seed(0)
    model = create_model("equiseg_tiny", num_classes=4, modalities=("rgb", "depth", "thermal"))
    with tracker.start_run("serve") as run_id:
        model_uri = tracker.log_model(save_checkpoint(root / "model.pt", model=model))
    verdict = bind_verdict(decide(POLICY, make_result(base_per_image()), None), candidate=model_uri)
    version = register_candidate(model_uri, model_name=MODEL, verdict=verdict, mlflow_run_id=run_id, tracking_uri=uri)
    promote(MODEL, version, tracking_uri=uri)
    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=str(root / "model")))
    return uri, local


@pytest.fixture(scope="session")
def fresh_venv(champion: tuple[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A clean virtualenv with the logged model's requirements only, built once per session (minutes).

    ``$EQUISEG_TEST_SERVE_VENV`` names a folder to build it in (or reuse: pip then only checks the pins).
    """
    wanted = os.environ.get("EQUISEG_TEST_SERVE_VENV")
    venv = Path(wanted) if wanted else tmp_path_factory.mktemp("venv") / "env"
    if not (venv / "bin" / "python").exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "-c", str(CONSTRAINTS)]
    subprocess.run([*pip, "-r", str(champion[1] / "requirements.txt")], check=True, timeout=2400)
    return venv


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _post(port: int, payload: dict[str, object]) -> np.ndarray:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/invocations",
        data=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return np.asarray(json.loads(response.read())["predictions"])


def test_the_champion_serves_masks_over_http_from_a_clean_venv(
    champion: tuple[str, Path], fresh_venv: Path, tmp_path: Path
) -> None:
    uri, _local = champion
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env |= {"MLFLOW_TRACKING_URI": uri, "MLFLOW_REGISTRY_URI": uri, "OMP_NUM_THREADS": "1"}
    env["PATH"] = f"{fresh_venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"  # mlflow execs uvicorn from PATH
    probe = subprocess.run(  # the venv does not see this checkout: equiseg is not importable there by itself
        [str(fresh_venv / "bin" / "python"), "-c", "import equiseg"], env=env, cwd=tmp_path, capture_output=True
    )
    assert probe.returncode != 0
    port = _free_port()
    server = subprocess.Popen(
        [str(fresh_venv / "bin" / "mlflow"), "models", "serve", "-m", f"models:/{MODEL}@champion",
         "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port), "-w", "1"],
        env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            assert server.poll() is None, server.communicate()[0][-4000:]
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=5):
                    break
            except OSError:
                time.sleep(1)
        rng = np.random.default_rng(0)
        raw = {
            "rgb": rng.integers(0, 256, (1, 3, 32, 32)).astype(np.float32),
            "depth": rng.integers(0, 256, (1, 1, 32, 32)).astype(np.float32),
            "thermal": rng.integers(0, 256, (1, 1, 32, 32)).astype(np.float32),
        }
        reference = load_model(_local_uri(champion))
        full = _post(port, {"inputs": {k: v.tolist() for k, v in raw.items()}})
        assert full.shape == (1, 32, 32)
        np.testing.assert_array_equal(full, predict_masks(reference, raw))
        absent = {"depth": np.zeros((1, 1, 1, 1), np.float32), "thermal": np.zeros((1, 1, 1, 1), np.float32)}
        subset = _post(
            port,
            {"inputs": {"rgb": raw["rgb"].tolist(), **{k: v.tolist() for k, v in absent.items()}},
             "params": {"modalities": "rgb"}},
        )  # fmt: skip
        assert subset.shape == (1, 32, 32)
        np.testing.assert_array_equal(subset, predict_masks(reference, {"rgb": raw["rgb"]}))
    finally:
        server.terminate()
        server.wait(timeout=30)


def _local_uri(champion: tuple[str, Path]) -> str:
    from equiseg.tracking import configure_store

    configure_store(champion[0])
    return f"models:/{MODEL}@champion"
