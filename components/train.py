"""Component: train the candidate with the tuned parameters and log it to MLflow."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output

from components._image import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def train(
    profile: str,
    overrides: list,
    tuned_overrides: list,
    pipeline_run_id: str,
    dataset_version: str,
    data: Input[Dataset],
    data_report: Input[Artifact],
    model: Output[Model],
    metrics: Output[Metrics],
    train_dir: Output[Artifact],
    facts: Output[Artifact],
) -> str:
    """Train on ``data``; ``model`` is the best self-describing checkpoint. Returns the MLflow run id.

    The MLflow run id, model URI and config hash also ride on ``model.metadata`` so downstream steps need only the
    artifact. ``data_report`` (the validation bundle) is logged to the run: the next run's drift reference.
    """
    import shutil

    from equiseg.config import load_config
    from equiseg.steps import TaskFacts, train_candidate

    with TaskFacts.written_to(facts.path, "train") as recorded:
        trained = train_candidate(
            load_config(profile, [*overrides, *tuned_overrides]),
            manifest=data.path,
            data_root=data.metadata["data_root"],
            pipeline_run_id=pipeline_run_id,
            dataset_version=dataset_version,
            out_dir=train_dir.path,
            data_report_dir=data_report.path,
            facts=recorded,
        )
    shutil.copyfile(trained.checkpoint, model.path)
    model.metadata.update(
        {"mlflow_run_id": trained.mlflow_run_id, "model_uri": trained.model_uri, "config_hash": trained.config_hash}
    )
    for key, value in trained.metrics.items():
        metrics.log_metric(key, value)
    return trained.mlflow_run_id
