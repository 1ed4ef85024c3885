"""Component: the robustness promotion gate. Returns the verdict as a bool so that `dsl.If` can branch on it."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Markdown, Model, Output

from components._image import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def gate(
    profile: str,
    overrides: list,
    pipeline_run_id: str,
    data: Input[Dataset],
    model: Input[Model],
    verdict: Output[Markdown],
) -> bool:
    """Re-score the champion on the same data and decide; ``True`` means the candidate may be promoted.

    A single ``bool`` return (not a NamedTuple) because kfp.local 2.17.3 cannot resolve named outputs inside
    ``dsl.If`` conditions (``Could not resolve parent input: gate-passed``); ``outputs["Output"]`` works.
    """
    import shutil

    from equiseg.config import load_config
    from equiseg.steps import gate_candidate

    decided = gate_candidate(
        load_config(profile, overrides),
        checkpoint=model.path,
        model_uri=model.metadata["model_uri"],
        manifest=data.path,
        data_root=data.metadata["data_root"],
        pipeline_run_id=pipeline_run_id,
        mlflow_run_id=model.metadata["mlflow_run_id"],
    )
    shutil.copyfile(decided.markdown_path, verdict.path)
    verdict.metadata.update({"passed": decided.passed, "gate_json": str(decided.json_path)})
    return decided.passed
