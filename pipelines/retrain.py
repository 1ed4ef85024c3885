"""The retraining pipeline: data → validation → DVC version → Optuna tuning → training → robustness → gate →
(if passed) register and promote → reports, with a run summary published by an exit handler even on failure.

`build_retrain_pipeline(target=...)` returns the pipeline function. The `cluster` target applies the platform
decoration of :mod:`pipelines.platform` (GPUs, node pool, shm, PVC, secrets, resources); the `local` target does
not, because `kfp.local` ignores it anyway.
"""

from collections.abc import Callable
from typing import Any, Literal

from kfp import dsl

from components import (
    create_study,
    evaluate_robustness,
    gate,
    prepare_data,
    publish_reports,
    register_and_promote,
    run_summary,
    select_best_trial,
    train,
    tune_worker,
    validate_data,
    version_data,
)
from equiseg.config import PipelineConfig
from pipelines import platform

PIPELINE_NAME = "equiseg-retrain"
Target = Literal["local", "cluster"]  # no `from __future__ import annotations` here: KFP reads real annotations


def build_retrain_pipeline(
    target: Target = "local", *, tune_workers: int = 1, platform_config: PipelineConfig | None = None
) -> Callable[..., Any]:
    """Build the pipeline function for ``target`` with ``tune_workers`` parallel Optuna workers.

    Args:
        target: ``local`` (kfp.local) or ``cluster`` (decorated for GPU node pools, secrets and the data PVC).
        tune_workers: workers fanned out with ``dsl.ParallelFor``; on a cluster they share one PostgreSQL study.
        platform_config: images, GPU pool, secrets and PVC names (defaults: ``PipelineConfig()``).
    """
    if tune_workers < 1:
        raise ValueError(f"tune_workers must be >= 1, got {tune_workers}")
    decorate = target == "cluster"
    pcfg = platform_config or PipelineConfig()
    worker_ids = list(range(tune_workers))

    @dsl.pipeline(name=PIPELINE_NAME, description="Robustness-gated retraining of a multimodal segmentation model")
    def retrain(
        profile: str = "smoke",
        overrides: list = [],  # noqa: B006 - KFP pipeline parameters need literal defaults
        pipeline_run_id: str = dsl.PIPELINE_JOB_NAME_PLACEHOLDER,
        data_source: str = "",
        ingest_root: str = "",
        trials_per_worker: int = 1,
        optuna_storage: str = "",
        alert_webhook: str = "",
    ) -> None:
        common = {"profile": profile, "overrides": overrides, "pipeline_run_id": pipeline_run_id}
        summary = run_summary(alert_webhook=alert_webhook, **common)
        with dsl.ExitHandler(summary, name="retrain"):
            data = prepare_data(source=data_source, ingest_root=ingest_root, **common)
            checked = validate_data(data=data.outputs["data"], **common)
            versioned = version_data(data=checked.outputs["validated"], **common)
            study = create_study(storage=optuna_storage, **common)
            with dsl.ParallelFor(worker_ids, parallelism=tune_workers) as worker:
                tuned = tune_worker(
                    worker=worker,
                    trials=trials_per_worker,
                    storage=optuna_storage,
                    data=checked.outputs["validated"],
                    **common,
                ).after(study)
            best = select_best_trial(storage=optuna_storage, **common).after(tuned)
            trained = train(
                tuned_overrides=best.output,
                dataset_version=versioned.output,
                data=checked.outputs["validated"],
                **common,
            )
            evaluated = evaluate_robustness(data=checked.outputs["validated"], model=trained.outputs["model"], **common)
            gated = gate(data=checked.outputs["validated"], model=trained.outputs["model"], **common).after(evaluated)
            # The reports come last in both branches (a task outside a dsl.If cannot wait on one inside it).
            with dsl.If(gated.outputs["Output"] == True, name="gate-passed"):  # noqa: E712 - KFP condition syntax
                promoted = register_and_promote(
                    tuned_overrides=best.output,
                    dataset_version=versioned.output,
                    model=trained.outputs["model"],
                    **common,
                )
                reports = publish_reports(gate_passed=True, **common).after(promoted)
            with dsl.Else(name="gate-blocked"):
                blocked_reports = publish_reports(gate_passed=False, **common)

        # Caching is unsafe where a step reads or moves shared state (DVC remote, MLflow registry, Optuna study).
        for task in (versioned, study, tuned, best, trained, gated, promoted, reports, blocked_reports):
            task.set_caching_options(False)
        if decorate:
            platform.decorate_cluster_tasks(
                pcfg,
                data_tasks=[data, checked, versioned],
                gpu_tasks=[tuned, trained, evaluated, gated],
                registry_tasks=[study, best, gated, promoted, reports, blocked_reports, summary],
            )

    return retrain
