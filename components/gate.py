"""Component: the robustness promotion gate. Returns the verdict as a bool so that `dsl.If` can branch on it."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Markdown, Model, Output

from components._image import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def gate(
    profile: str,
    overrides: list,
    data: Input[Dataset],
    model: Input[Model],
    verdict: Output[Artifact],
    verdict_page: Output[Markdown],
    facts: Output[Artifact],
) -> bool:
    """Re-score the champion on the same data and decide; ``True`` means the candidate may be promoted.

    ``verdict`` is the verdict folder (``gate.json``, ``gate.md``, ``gate.html``) that ``register_and_promote``
    consumes; ``verdict_page`` is ``gate.md`` for the KFP UI. A single ``bool`` return (not a NamedTuple) because
    kfp.local 2.17.3 cannot resolve named outputs inside ``dsl.If`` conditions (``Could not resolve parent input:
    gate-passed``); ``outputs["Output"]`` works.
    """
    import shutil

    from equiseg.config import load_config
    from equiseg.steps import TaskFacts, gate_candidate

    with TaskFacts.written_to(facts.path, "gate") as recorded:
        decided = gate_candidate(
            load_config(profile, overrides),
            checkpoint=model.path,
            model_uri=model.metadata["model_uri"],
            manifest=data.path,
            data_root=data.metadata["data_root"],
            out_dir=verdict.path,
            mlflow_run_id=model.metadata["mlflow_run_id"],
            facts=recorded,
        )
    shutil.copyfile(decided.markdown_path, verdict_page.path)
    verdict.metadata.update({"passed": decided.passed, "decision": decided.summary})
    return decided.passed
