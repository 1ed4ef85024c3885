"""Component: register the gated candidate with lineage tags, serving-check it, and move the aliases."""

from kfp import dsl
from kfp.dsl import Artifact, Input, Markdown, Model, Output

from components._image import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def register_and_promote(
    profile: str,
    overrides: list,
    tuned_overrides: list,
    pipeline_run_id: str,
    dataset_version: str,
    model: Input[Model],
    verdict: Input[Artifact],
    data_report: Input[Artifact],
    robustness_report: Input[Artifact],
    registry: Output[Artifact],
    model_card: Output[Markdown],
    facts: Output[Artifact],
) -> str:
    """Runs only under ``dsl.If(gate passed)``; returns the registered version (aliases per ``gate.mode``).

    The gate's ``verdict`` folder is the decision it registers. The config is resolved exactly as ``train`` resolved
    it (profile, overrides, tuned overrides), so the model card and the lineage tags describe the config the model
    was trained with; a different config hash than the one on ``model`` is refused.
    """
    import shutil

    from equiseg.config import load_config
    from equiseg.steps import TaskFacts
    from equiseg.steps import register_and_promote as step

    with TaskFacts.written_to(facts.path, "register_and_promote") as recorded:
        version = step(
            load_config(profile, [*overrides, *tuned_overrides]),
            pipeline_run_id=pipeline_run_id,
            mlflow_run_id=model.metadata["mlflow_run_id"],
            model_uri=model.metadata["model_uri"],
            dataset_version=dataset_version,
            verdict_dir=verdict.path,
            out_dir=registry.path,
            trained_config_hash=model.metadata.get("config_hash", ""),
            data_report_dir=data_report.path,
            robustness_dir=robustness_report.path,
            facts=recorded,
        )
    shutil.copyfile(f"{registry.path}/model_card.md", model_card.path)
    return version
