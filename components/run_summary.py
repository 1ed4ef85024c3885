"""Exit-handler component: write the run summary even when a step failed."""

from kfp import dsl

from components._image import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def run_summary(
    profile: str,
    overrides: list,
    pipeline_run_id: str,
    status: dsl.PipelineTaskFinalStatus,
    alert_webhook: str = "",
):
    """Record the final state and error in ``<run dir>/summary.json`` / ``summary.md``; alert on failure or block.

    ``alert_webhook`` (else ``$EQUISEG_ALERT_WEBHOOK``) receives a JSON alert when the run failed or the gate
    blocked; a failure to notify is logged and never fails this task (docs/operations.md, "Alerts").
    """
    from equiseg.config import load_config
    from equiseg.steps import write_run_summary

    write_run_summary(
        load_config(profile, overrides),
        pipeline_run_id=pipeline_run_id,
        state=status.state,
        error_message=status.error_message or "",
        alert_webhook=alert_webhook,
    )
