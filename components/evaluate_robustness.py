"""Component: the robustness suite (EMM/RMM/NM, corruptions, condition slices, balance) and its report."""

from kfp import dsl
from kfp.dsl import HTML, Artifact, Dataset, Input, Metrics, Model, Output

from components._image import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def evaluate_robustness(
    profile: str,
    overrides: list,
    data: Input[Dataset],
    model: Input[Model],
    report: Output[HTML],
    report_dir: Output[Artifact],
    metrics: Output[Metrics],
    facts: Output[Artifact],
):
    """Evaluate the candidate checkpoint on the validation split; logs the summary to the candidate's run.

    ``report_dir`` is the report bundle (HTML, JSON, heatmap); ``report`` its page for the KFP UI.
    """
    import shutil

    from equiseg.config import load_config
    from equiseg.steps import TaskFacts, evaluate_candidate

    with TaskFacts.written_to(facts.path, "evaluate_robustness") as recorded:
        evaluated = evaluate_candidate(
            load_config(profile, overrides),
            checkpoint=model.path,
            manifest=data.path,
            data_root=data.metadata["data_root"],
            out_dir=report_dir.path,
            mlflow_run_id=model.metadata["mlflow_run_id"],
            facts=recorded,
        )
    shutil.copyfile(evaluated.report_html, report.path)
    for key, value in evaluated.metrics.items():
        metrics.log_metric(key, value)
