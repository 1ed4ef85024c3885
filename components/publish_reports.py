"""Component: gather the data, robustness, gate and model-card reports into one self-contained index."""

from kfp import dsl
from kfp.dsl import HTML, Artifact, Input, Metrics, Output

from components._image import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def publish_reports(
    profile: str,
    overrides: list,
    pipeline_run_id: str,
    gate_passed: bool,
    dataset_version: str,
    verdict: Input[Artifact],
    robustness: Input[Metrics],
    index: Output[HTML],
    facts: Output[Artifact],
    registered_version: str = "",
):
    """Write the run's ``index.html`` linking every report (links relative to the run folder) from its inputs."""
    from equiseg.config import load_config
    from equiseg.steps import TaskFacts
    from equiseg.steps import publish_reports as step

    with TaskFacts.written_to(facts.path, "publish_reports") as recorded:
        step(
            load_config(profile, overrides),
            pipeline_run_id=pipeline_run_id,
            gate_passed=gate_passed,
            out_path=index.path,
            gate_decision=str(verdict.metadata.get("decision", "not reached")),
            robustness=dict(robustness.metadata),
            dataset_version=dataset_version,
            registered_version=registered_version,
            facts=recorded,
        )
