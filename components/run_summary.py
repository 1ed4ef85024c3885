"""Exit-handler component: write the run summary even when a step failed."""

from kfp import dsl

from components._image import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def run_summary(profile: str, overrides: list, pipeline_run_id: str, status: dsl.PipelineTaskFinalStatus):
    """Record the pipeline's final state and error (if any) in ``<run dir>/summary.json`` and ``summary.md``."""
    from equiseg.config import load_config
    from equiseg.steps import write_run_summary

    write_run_summary(
        load_config(profile, overrides),
        pipeline_run_id=pipeline_run_id,
        state=status.state,
        error_message=status.error_message or "",
    )
