"""Component: the robustness suite (EMM/RMM/NM, corruptions, condition slices, balance) and its report."""

from kfp import dsl
from kfp.dsl import HTML, Dataset, Input, Metrics, Model, Output

from components._image import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def evaluate_robustness(
    profile: str,
    overrides: list,
    pipeline_run_id: str,
    data: Input[Dataset],
    model: Input[Model],
    report: Output[HTML],
    metrics: Output[Metrics],
):
    """Evaluate the candidate checkpoint on the validation split; logs the summary to the candidate's run."""
    import shutil

    from equiseg.config import load_config
    from equiseg.steps import evaluate_candidate

    evaluated = evaluate_candidate(
        load_config(profile, overrides),
        checkpoint=model.path,
        manifest=data.path,
        data_root=data.metadata["data_root"],
        pipeline_run_id=pipeline_run_id,
        mlflow_run_id=model.metadata["mlflow_run_id"],
    )
    shutil.copyfile(evaluated.report_html, report.path)
    for key, value in evaluated.metrics.items():
        metrics.log_metric(key, value)
