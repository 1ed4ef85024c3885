"""Component: version the data root with DVC; returns the dataset version id (the .dir md5)."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Output

from components._image import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def version_data(profile: str, overrides: list, data: Input[Dataset], facts: Output[Artifact]) -> str:
    """``dvc add`` + ``dvc push`` of the data root; the returned id goes on every run and registered model."""
    from equiseg.config import load_config
    from equiseg.steps import TaskFacts
    from equiseg.steps import version_data as step

    with TaskFacts.written_to(facts.path, "version_data") as recorded:
        version = step(load_config(profile, overrides), data_root=data.metadata["data_root"], facts=recorded)
    return version.version_id
