"""Component: generate the synthetic world or ingest a real dataset into the data root."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Output

from components._image import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def prepare_data(
    profile: str, overrides: list, source: str, ingest_root: str, data: Output[Dataset], facts: Output[Artifact]
):
    """Write the dataset (files + manifest) into ``data.root``; the artifact is the manifest, with the data root in
    its metadata (the pixel files stay there). No run id: same config and source, same data, so it can be cached."""
    import shutil

    from equiseg.config import load_config
    from equiseg.steps import TaskFacts
    from equiseg.steps import prepare_data as step

    with TaskFacts.written_to(facts.path, "prepare_data") as recorded:
        prepared = step(load_config(profile, overrides), source=source, ingest_root=ingest_root, facts=recorded)
    shutil.copyfile(prepared.manifest, data.path)
    data.metadata.update(prepared.metadata())
