"""Component: gather the data, robustness, gate and model-card reports into one self-contained index."""

from kfp import dsl
from kfp.dsl import HTML, Output

from components._image import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def publish_reports(profile: str, overrides: list, pipeline_run_id: str, gate_passed: bool, index: Output[HTML]):
    """Write ``<run dir>/index.html`` linking every report of this run; the artifact is a copy for the KFP UI."""
    import shutil

    from equiseg.config import load_config
    from equiseg.steps import publish_reports as step

    shutil.copyfile(
        step(load_config(profile, overrides), pipeline_run_id=pipeline_run_id, gate_passed=gate_passed), index.path
    )
