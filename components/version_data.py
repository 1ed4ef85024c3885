"""Component: version the data root with DVC; returns the dataset version id (the .dir md5)."""

from kfp import dsl
from kfp.dsl import Dataset, Input

from components._image import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def version_data(profile: str, overrides: list, pipeline_run_id: str, data: Input[Dataset]) -> str:
    """``dvc add`` + ``dvc push`` of the data root; the returned id goes on every run and registered model."""
    from equiseg.config import load_config
    from equiseg.steps import version_data as step

    return step(
        load_config(profile, overrides), data_root=data.metadata["data_root"], pipeline_run_id=pipeline_run_id
    ).version_id
