"""Exit-handler component: write the run summary even when a step failed."""

from kfp import dsl
from kfp.dsl import Artifact, Output

from components._image import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def run_summary(
    profile: str,
    overrides: list,
    pipeline_run_id: str,
    status: dsl.PipelineTaskFinalStatus,
    summary: Output[Artifact],
    alert_webhook: str = "",
):
    """Record the final state and error in ``summary/summary.json`` / ``summary.md``; alert on failure or block.

    KFP lets an exit handler depend on no task, so the facts are not inputs: they are the ``facts`` outputs of the
    run's tasks, read from the pipeline job's output folder, the parent of this task's own (a local runner keeps
    every task's outputs under one folder; docs/pipeline.md, "Data flow"). ``alert_webhook`` (else
    ``$EQUISEG_ALERT_WEBHOOK``) receives a JSON alert when the run failed or the gate blocked; a failure to notify is
    logged and never fails this task (docs/operations.md, "Alerts").
    """
    from pathlib import Path

    from equiseg.config import load_config
    from equiseg.steps import write_run_summary

    write_run_summary(
        load_config(profile, overrides),
        pipeline_run_id=pipeline_run_id,
        state=status.state,
        out_dir=summary.path,
        task_outputs=Path(summary.path).parent.parent,
        error_message=status.error_message or "",
        alert_webhook=alert_webhook,
    )
