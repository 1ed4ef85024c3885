"""Cluster-only decoration of the retraining pipeline's tasks (kfp-kubernetes), applied at compile time.

Nothing here runs locally: `kfp.local` ignores resources and platform config.
GPU steps get the GPU image (``pipeline.gpu_image``, CUDA torch), the accelerator, the GPU node pool's selector and
toleration, and `/dev/shm` as a memory emptyDir (DataLoader workers need more than the container default); the other
steps keep the CPU image of their component. Every step gets CPU/memory requests and limits, mounts the data PVC and
gets the MLflow and S3 credentials from Kubernetes secrets (never from parameters); steps that call services are
retried with exponential backoff.
"""

from __future__ import annotations

from collections.abc import Iterable

from kfp import kubernetes
from kfp.dsl import PipelineTask

from equiseg.config import PipelineConfig

DATA_MOUNT = "/data/equiseg"
MLFLOW_ENV = {"username": "MLFLOW_TRACKING_USERNAME", "password": "MLFLOW_TRACKING_PASSWORD"}
S3_ENV = {"access_key_id": "AWS_ACCESS_KEY_ID", "secret_access_key": "AWS_SECRET_ACCESS_KEY"}
# The Optuna study storage for tuning workers, and the PostgreSQL DSN of the promotion lock (an advisory lock that
# serialises racing gates on an MLflow HTTP server; docs/gate.md).
POSTGRES_ENV = {"optuna_storage_url": "EQUISEG_OPTUNA_STORAGE", "gate_lock_uri": "EQUISEG_GATE_LOCK_URI"}


def decorate_gpu_task(task: PipelineTask, cfg: PipelineConfig) -> None:
    """The GPU image, GPU accelerator + limit, GPU pool node selector and toleration, shm as a memory emptyDir."""
    task.set_container_image(cfg.gpu_image)
    task.set_accelerator_type(cfg.gpu_accelerator).set_accelerator_limit(cfg.gpu_count)
    for key, value in cfg.gpu_node_selector.items():
        kubernetes.add_node_selector(task, label_key=key, label_value=value)
    kubernetes.add_toleration(task, key=cfg.gpu_toleration_key, operator="Exists", effect="NoSchedule")
    kubernetes.empty_dir_mount(task, volume_name="dshm", mount_path="/dev/shm", medium="Memory")


def decorate_common_task(task: PipelineTask, cfg: PipelineConfig) -> None:
    """CPU/memory requests and limits, the data PVC and the MLflow, S3 and Optuna-database credentials as env."""
    task.set_cpu_request(cfg.cpu_request).set_memory_request(cfg.memory_request)
    task.set_cpu_limit(cfg.cpu_limit).set_memory_limit(cfg.memory_limit)
    kubernetes.mount_pvc(task, pvc_name=cfg.data_pvc, mount_path=DATA_MOUNT)
    kubernetes.use_secret_as_env(task, secret_name=cfg.mlflow_secret, secret_key_to_env=MLFLOW_ENV)
    kubernetes.use_secret_as_env(task, secret_name=cfg.s3_secret, secret_key_to_env=S3_ENV)
    kubernetes.use_secret_as_env(task, secret_name=cfg.postgres_secret, secret_key_to_env=POSTGRES_ENV)


def decorate_service_task(task: PipelineTask, cfg: PipelineConfig) -> None:
    """Retries with exponential backoff for a step that calls a service (MLflow, Optuna storage, DVC remote)."""
    if cfg.retries > 0:
        task.set_retry(
            num_retries=cfg.retries, backoff_duration=cfg.retry_backoff, backoff_factor=cfg.retry_backoff_factor
        )


def decorate_cluster_tasks(
    cfg: PipelineConfig,
    *,
    all_tasks: Iterable[PipelineTask],
    gpu_tasks: Iterable[PipelineTask],
    service_tasks: Iterable[PipelineTask],
) -> None:
    """Decorate every task once: all get the common decoration (the CPU image from the component), GPU steps the
    GPU image and GPU decoration, steps that call services retries."""
    gpu = list(gpu_tasks)
    services = list(service_tasks)
    seen: set[int] = set()
    for task in all_tasks:
        if id(task) in seen:
            continue
        seen.add(id(task))
        decorate_common_task(task, cfg)
        if any(task is g for g in gpu):
            decorate_gpu_task(task, cfg)
        if any(task is s for s in services):
            decorate_service_task(task, cfg)
