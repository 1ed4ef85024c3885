"""The pipeline compiles for both targets; the cluster target carries the GPU image and GPUs on exactly the GPU
steps, node pool, shm, PVC, secrets, requests and limits, and retries on the steps that call services."""

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
# Steps that call a service (MLflow, Optuna storage, DVC remote, registry) and are retried with backoff.
SERVICE_STEPS = STEPS - {"prepare-data", "publish-reports", "publish-reports-2", "run-summary"}
# Steps whose outputs do not depend on the pipeline run: the run id is not one of their inputs (cache keys can hit).
RUN_INDEPENDENT = {"prepare-data", "validate-data", "version-data", "evaluate-robustness", "gate"}


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


def _tasks(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every task of the compiled pipeline, nested groups included, by task name."""
    tasks: dict[str, dict[str, Any]] = {}
    for component in [spec["root"], *spec["components"].values()]:
        tasks.update(component.get("dag", {}).get("tasks", {}))
    return tasks


def test_gpu_image_on_exactly_the_tasks_that_request_a_gpu(cluster_yaml: Path) -> None:
    spec, _ = _load(cluster_yaml)
    pcfg = load_config("cluster").pipeline
    assert pcfg.gpu_image != pcfg.image
    images = {}
    for name, executor in spec["deploymentSpec"]["executors"].items():
        container = executor["container"]
        wants_gpu = "accelerator" in container.get("resources", {})
        images[name.removeprefix("exec-")] = (container["image"], wants_gpu)
    assert {step for step, (_, gpu) in images.items() if gpu} == GPU_STEPS
    for step, (image, wants_gpu) in images.items():
        assert image == (pcfg.gpu_image if wants_gpu else pcfg.image), step


def test_retries_on_service_steps_and_the_run_id_only_where_outputs_depend_on_it(cluster_yaml: Path) -> None:
    spec, _ = _load(cluster_yaml)
    pcfg = load_config("cluster").pipeline
    tasks = _tasks(spec)
    for step in STEPS:
        policy = tasks[step].get("retryPolicy")
        if step in SERVICE_STEPS:
            assert policy["maxRetryCount"] == pcfg.retries and policy["backoffDuration"] == pcfg.retry_backoff, step
            assert policy["backoffFactor"] == pcfg.retry_backoff_factor, step
        else:
            assert policy is None, step
        inputs = set(tasks[step].get("inputs", {}).get("parameters", {}))
        assert ("pipeline_run_id" in inputs) == (step not in RUN_INDEPENDENT), step
    cached = {t for t, spec_ in tasks.items() if spec_.get("cachingOptions", {}).get("enableCache")}
    assert cached == {s.replace("_", "-") for s in pcfg.cached_steps}
    assert "run-summary" not in cached


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
        assert container["resources"]["resourceCpuLimit"] == pcfg.cpu_limit, step
        assert container["resources"]["resourceMemoryLimit"] == pcfg.memory_limit, step
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
