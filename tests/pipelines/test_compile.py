"""The pipeline compiles for both targets; the cluster target carries GPUs, node pool, shm, PVC and secrets."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from equiseg.cli import cli
from equiseg.config import load_config
from pipelines.cluster import compile_pipeline

STEPS = {
    "prepare-data",
    "validate-data",
    "version-data",
    "create-study",
    "tune-worker",
    "select-best-trial",
    "train",
    "evaluate-robustness",
    "gate",
    "register-and-promote",
    "publish-reports",
    "publish-reports-2",
    "run-summary",
}
GPU_STEPS = {"tune-worker", "train", "evaluate-robustness", "gate"}


def _load(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    docs = list(yaml.safe_load_all(path.read_text()))
    spec = docs[0]
    platform = docs[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"] if len(docs) > 1 else {}
    return spec, platform


@pytest.fixture(scope="module")
def cluster_yaml(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return compile_pipeline(tmp_path_factory.mktemp("c") / "retrain.yaml", target="cluster", profile="cluster")


def test_every_step_and_the_gate_condition_are_compiled(cluster_yaml: Path) -> None:
    spec, _ = _load(cluster_yaml)
    executors = {name.removeprefix("exec-") for name in spec["deploymentSpec"]["executors"]}
    assert executors == STEPS
    text = cluster_yaml.read_text()
    assert "pipelinechannel--gate-Output" in text  # the dsl.If on the gate's bool verdict
    branches = [
        set(c["dag"]["tasks"])
        for name, c in spec["components"].items()
        if name.startswith("comp-condition") and not name.startswith("comp-condition-branches")
    ]
    # dsl.If(gate passed): register, promote, then reports; dsl.Else: reports only.
    assert sorted(branches, key=len) == [{"publish-reports-2"}, {"register-and-promote", "publish-reports"}]
    # The exit handler wraps the body; run-summary runs with the final status.
    root_tasks = spec["root"]["dag"]["tasks"]
    assert root_tasks["run-summary"]["triggerPolicy"]["strategy"] == "ALL_UPSTREAM_TASKS_COMPLETED"


def test_tuning_fans_out_over_the_cluster_profiles_workers(cluster_yaml: Path) -> None:
    spec, _ = _load(cluster_yaml)
    workers = load_config("cluster").tune.workers
    loop = next(t for t in spec["components"]["comp-exit-handler-1"]["dag"]["tasks"].values() if "iteratorPolicy" in t)
    assert loop["iteratorPolicy"]["parallelismLimit"] == workers
    defaults = spec["root"]["inputDefinitions"]["parameters"]
    assert defaults["profile"]["defaultValue"] == "cluster"
    assert defaults["optuna_storage"]["defaultValue"].startswith("postgresql")


def test_cluster_target_puts_gpus_tolerations_shm_pvc_and_secrets_on_the_right_tasks(cluster_yaml: Path) -> None:
    spec, platform = _load(cluster_yaml)
    pcfg = load_config("cluster").pipeline
    for step in STEPS:
        container = spec["deploymentSpec"]["executors"][f"exec-{step}"]["container"]
        kube = platform.get(f"exec-{step}", {})
        accel = container.get("resources", {}).get("accelerator")
        if step in GPU_STEPS:
            assert accel and accel["resourceType"] == pcfg.gpu_accelerator and accel["resourceCount"] == "1", step
            assert kube["nodeSelector"]["labels"] == pcfg.gpu_node_selector, step
            assert kube["tolerations"][0]["key"] == pcfg.gpu_toleration_key, step
            assert kube["emptyDirMounts"][0] == {"medium": "Memory", "mountPath": "/dev/shm", "volumeName": "dshm"}
        else:
            assert accel is None, f"{step} must not hold a GPU"
            assert "tolerations" not in kube, step
        secrets = {s["secretName"] for s in kube["secretAsEnv"]}
        assert {pcfg.mlflow_secret, pcfg.s3_secret, pcfg.postgres_secret} <= secrets, step
        assert kube["pvcMount"][0]["mountPath"] == "/data/equiseg", step
        assert container["resources"]["resourceCpuRequest"] == pcfg.cpu_request, step
        assert container["image"] == pcfg.image
    # Credentials never appear as values in the compiled spec.
    assert "password:" not in cluster_yaml.read_text().replace("secretKey: password", "")


def test_local_target_has_no_platform_config(tmp_path: Path) -> None:
    path = compile_pipeline(tmp_path / "local.yaml", target="local", profile="smoke")
    spec, platform = _load(path)
    assert platform == {}
    for executor in spec["deploymentSpec"]["executors"].values():
        assert "accelerator" not in executor["container"].get("resources", {})


def test_cli_compile_and_bad_schedule(tmp_path: Path) -> None:
    out = tmp_path / "retrain.yaml"
    result = CliRunner().invoke(cli, ["pipeline", "compile", "--out", str(out), "--image", "registry.local/eq:1"])
    assert result.exit_code == 0, result.output
    assert out.is_file()
    result = CliRunner().invoke(
        cli, ["pipeline", "schedule", "--host", "http://127.0.0.1:9", "--package", str(out), "--cron", "0 3 * * *"]
    )
    assert result.exit_code != 0
    assert "six fields" in result.output  # one Error: line, no traceback


def test_cli_compile_prints_json_for_scripts(tmp_path: Path) -> None:
    out = tmp_path / "retrain.yaml"
    result = CliRunner().invoke(cli, ["pipeline", "compile", "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {"target": "cluster", "package": str(out)}
