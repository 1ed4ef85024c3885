"""Component: register the gated candidate with lineage tags, serving-check it, and move the aliases."""

from kfp import dsl
from kfp.dsl import Input, Model

from components._image import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def register_and_promote(
    profile: str,
    overrides: list,
    tuned_overrides: list,
    pipeline_run_id: str,
    dataset_version: str,
    model: Input[Model],
) -> str:
    """Runs only under ``dsl.If(gate passed)``; returns the registered version (aliases per ``gate.mode``).

    The config is resolved exactly as ``train`` resolved it (profile, overrides, tuned overrides), so the model card
    and the lineage tags describe the config the model was trained with.
    """
    from equiseg.config import load_config
    from equiseg.steps import register_and_promote as step

    return step(
        load_config(profile, [*overrides, *tuned_overrides]),
        pipeline_run_id=pipeline_run_id,
        mlflow_run_id=model.metadata["mlflow_run_id"],
        model_uri=model.metadata["model_uri"],
        dataset_version=dataset_version,
    )
