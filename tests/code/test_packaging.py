"""``pip install equiseg`` without extras: none of the MLOps or pipeline stack, and the model still trains.

Builds the wheel, installs it into a fresh Python 3.11 venv with ``-c constraints.txt`` (torch and torchvision come
from the local wheel index, as the constraints say) and trains one step of ``equiseg_tiny`` there by calling the
library (docs/design.md: the core needs only torch, numpy, pyarrow, pillow, pyyaml, tqdm, matplotlib).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

EXTRAS_ONLY = ("mlflow", "mlflow-skinny", "kfp", "kfp-kubernetes", "great-expectations", "dvc", "optuna",
               "psycopg2-binary")  # fmt: skip
EXTRA_MODULES = ("mlflow", "kfp", "great_expectations", "dvc", "optuna", "psycopg2")
CORE = {"torch", "numpy", "pyarrow", "pillow", "pyyaml", "click", "tqdm", "matplotlib",
        "markdown-it-py"}  # fmt: skip
SOURCES = ("pyproject.toml", "README.md", "equiseg", "components", "pipelines")

TRAIN_ONE_STEP = f"""
import json, sys
from pathlib import Path

from equiseg.config import load_config
from equiseg.data import generate_synthetic
from equiseg.training import train

profile, overrides, work = sys.argv[1], json.loads(sys.argv[2]), Path(sys.argv[3])
cfg = load_config(profile, overrides)
manifest = generate_synthetic(work / "data", samples=cfg.data.samples, size=cfg.data.image_size,
                              modalities=cfg.data.modalities, seed=0, num_classes=cfg.data.num_classes,
                              progress=False)
result = train(cfg, manifest=manifest, data_root=work / "data", out_dir=work / "out", show_progress=False)
heavy = sorted(m for m in sys.modules if m.split(".")[0] in {set(EXTRA_MODULES)})
print(json.dumps({{"best": str(result.best_checkpoint), "exists": result.best_checkpoint.is_file(),
                  "epochs": result.epochs_run, "heavy": heavy}}))
"""


def _run(command: list[str], timeout: float, **kwargs: object) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, **kwargs)  # type: ignore[call-overload]
    assert done.returncode == 0, f"{' '.join(command)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def _names(requirements: list[str]) -> set[str]:
    return {re.split(r"[<>=!~\[; ]", item, maxsplit=1)[0].lower() for item in requirements}


def test_core_dependencies_are_what_the_core_needs_and_the_rest_are_extras(repo_root: Path) -> None:
    project = tomllib.loads((repo_root / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    assert _names(project["dependencies"]) == CORE
    assert {"mlflow", "optuna", "great-expectations", "dvc", "psycopg2-binary"} <= _names(extras["mlops"])
    assert _names(extras["pipeline"]) == {"kfp", "kfp-kubernetes"}
    assert extras["all"] == ["equiseg[mlops,pipeline]"]
    assert {"dev", "bench"} <= set(extras)
    assert '-e ".[all,dev]"' in (repo_root / "Makefile").read_text()


@pytest.mark.slow  # minutes: builds a wheel and installs torch into a fresh venv
def test_wheel_without_extras_installs_no_mlops_stack_and_trains_a_step(
    repo_root: Path, tiny_overrides: tuple[str, ...], tmp_path: Path
) -> None:
    python = shutil.which("python3.11")
    if python is None:
        pytest.skip("python3.11 not on PATH")
    src = tmp_path / "src"  # build from a copy: setuptools writes build/ and *.egg-info beside the sources
    src.mkdir()
    for name in SOURCES:
        path = repo_root / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(path, src / name)
    env_dir = tmp_path / "venv"
    _run([python, "-m", "venv", str(env_dir)], timeout=300)
    bin_dir = env_dir / "bin"
    pip = [str(bin_dir / "python"), "-m", "pip"]
    _run([*pip, "wheel", "--no-deps", "-w", str(tmp_path / "dist"), str(src)], timeout=600)
    (wheel,) = (tmp_path / "dist").glob("equiseg-*.whl")
    _run([*pip, "install", "-c", str(repo_root / "constraints.txt"), str(wheel)], timeout=2400)

    installed = json.loads(_run([*pip, "list", "--format=json"], timeout=120).stdout)
    names = {item["name"].lower().replace("_", "-") for item in installed}
    assert "equiseg" in names and "torch" in names
    assert not names & set(EXTRAS_ONLY), f"installed without extras: {sorted(names & set(EXTRAS_ONLY))}"

    overrides = (*tiny_overrides, "data.samples=8", "train.epochs=1", "train.batch_size=6", "robustness.suite=clean")
    done = _run(
        [str(bin_dir / "python"), "-c", TRAIN_ONE_STEP, str(repo_root / "configs" / "smoke.yaml"),
         json.dumps(overrides), str(tmp_path / "work")],
        timeout=900, cwd=tmp_path, env={"PATH": f"{bin_dir}:/usr/bin:/bin", "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["exists"] and report["epochs"] == 1, report
    assert report["heavy"] == [], f"training imported extras: {report['heavy']}"
    assert sys.version_info >= (3, 11)
