"""The retraining pipeline: data → validation → DVC version → Optuna tuning → training → robustness → gate →
(if passed) register and promote → reports, with a run summary published by an exit handler even on failure.

`build_retrain_pipeline(target=...)` returns the pipeline function. The `cluster` target applies the platform
decoration of :mod:`pipelines.platform` (GPU image and GPUs, node pool, shm, PVC, secrets, requests and limits,
retries); the `local` target does not. Data crosses steps only as KFP parameters and artifacts (docs/pipeline.md,
"Data flow"); the run id is an input only of the steps whose outputs depend on it, so the data steps can be cached
(`pipeline.cached_steps`).
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
        platform_config: images, GPU pool, secrets, PVC names and cached steps (defaults: ``PipelineConfig()``).
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
        common = {"profile": profile, "overrides": overrides}
        per_run = {**common, "pipeline_run_id": pipeline_run_id}  # only where the outputs depend on the run
        summary = run_summary(alert_webhook=alert_webhook, **per_run)
        with dsl.ExitHandler(summary, name="retrain"):
            data = prepare_data(source=data_source, ingest_root=ingest_root, **common)
            checked = validate_data(data=data.outputs["data"], **common)
            validated = checked.outputs["validated"]
            versioned = version_data(data=validated, **common)
            study = create_study(storage=optuna_storage, **per_run)
            with dsl.ParallelFor(worker_ids, parallelism=tune_workers) as worker:
                tuned = tune_worker(
                    worker=worker, trials=trials_per_worker, storage=optuna_storage, data=validated, **per_run
                ).after(study)
            best = select_best_trial(storage=optuna_storage, **per_run).after(tuned)
            trained = train(
                tuned_overrides=best.outputs["Output"],
                dataset_version=versioned.outputs["Output"],
                data=validated,
                data_report=checked.outputs["report_dir"],
                **per_run,
            )
            model = trained.outputs["model"]
            evaluated = evaluate_robustness(data=validated, model=model, **common)
            gated = gate(data=validated, model=model, **common).after(evaluated)
            report_inputs = {
                "dataset_version": versioned.outputs["Output"],
                "verdict": gated.outputs["verdict"],
                "robustness": evaluated.outputs["metrics"],
                **per_run,
            }
            # The reports come last in both branches (a task outside a dsl.If cannot wait on one inside it).
            with dsl.If(gated.outputs["Output"] == True, name="gate-passed"):  # noqa: E712 - KFP condition syntax
                promoted = register_and_promote(
                    tuned_overrides=best.outputs["Output"],
                    dataset_version=versioned.outputs["Output"],
                    model=model,
                    verdict=gated.outputs["verdict"],
                    data_report=checked.outputs["report_dir"],
                    robustness_report=evaluated.outputs["report_dir"],
                    **per_run,
                )
                reports = publish_reports(
                    gate_passed=True, registered_version=promoted.outputs["Output"], **report_inputs
                )
            with dsl.Else(name="gate-blocked"):
                blocked_reports = publish_reports(gate_passed=False, **report_inputs)

        steps = {
            "prepare_data": [data],
            "validate_data": [checked],
            "version_data": [versioned],
            "create_study": [study],
            "tune_worker": [tuned],
            "select_best_trial": [best],
            "train": [trained],
            "evaluate_robustness": [evaluated],
            "gate": [gated],
            "register_and_promote": [promoted],
            "publish_reports": [reports, blocked_reports],
        }
        unknown = set(pcfg.cached_steps) - set(steps)
        if unknown:
            raise ValueError(f"pipeline.cached_steps has unknown steps {sorted(unknown)}; choose from {sorted(steps)}")
        for name, tasks in steps.items():
            for task in tasks:
                task.set_caching_options(name in pcfg.cached_steps)
        summary.set_caching_options(False)
        if decorate:
            platform.decorate_cluster_tasks(
                pcfg,
                all_tasks=[*(t for tasks in steps.values() for t in tasks), summary],
                gpu_tasks=[tuned, trained, evaluated, gated],
                service_tasks=[checked, versioned, study, tuned, best, trained, evaluated, gated, promoted],
            )

    return retrain
