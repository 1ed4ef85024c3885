"""Components: create the shared Optuna study, tuning workers on it, and the selection of the best trial."""

from kfp import dsl
from kfp.dsl import Dataset, Input

from components._image import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def create_study(profile: str, overrides: list, pipeline_run_id: str, storage: str) -> str:
    """Create the run's shared study (and its database schema) once, before the workers fan out."""
    from equiseg.config import load_config
    from equiseg.steps import create_study as step

    return step(load_config(profile, overrides), pipeline_run_id=pipeline_run_id, storage=storage)


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def tune_worker(
    profile: str, overrides: list, pipeline_run_id: str, worker: int, trials: int, storage: str, data: Input[Dataset]
) -> int:
    """Run ``trials`` trials of the shared study (fanned out with dsl.ParallelFor); returns trials completed."""
    from equiseg.config import load_config
    from equiseg.steps import tune_worker as step

    return step(
        load_config(profile, overrides),
        manifest=data.path,
        data_root=data.metadata["data_root"],
        pipeline_run_id=pipeline_run_id,
        worker=worker,
        trials=trials,
        storage=storage,
    )


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def select_best_trial(profile: str, overrides: list, pipeline_run_id: str, storage: str) -> list:
    """Read the shared study and return the best trial's parameters as ``key=value`` overrides for training."""
    from equiseg.config import load_config
    from equiseg.steps import select_best_trial as step

    return step(load_config(profile, overrides), pipeline_run_id=pipeline_run_id, storage=storage)
