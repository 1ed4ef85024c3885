"""Component: generate the synthetic world or ingest a real dataset into the data root."""

from kfp import dsl
from kfp.dsl import Dataset, Output

from components._image import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def prepare_data(
    profile: str, overrides: list, source: str, ingest_root: str, pipeline_run_id: str, data: Output[Dataset]
):
    """Write the dataset (files + manifest) into ``data.root``; the artifact is the manifest."""
    import shutil

    from equiseg.config import load_config
    from equiseg.steps import prepare_data as step

    prepared = step(
        load_config(profile, overrides), source=source, ingest_root=ingest_root, pipeline_run_id=pipeline_run_id
    )
    shutil.copyfile(prepared.manifest, data.path)
    data.metadata.update(prepared.metadata())
