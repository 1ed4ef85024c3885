"""Components: create the shared Optuna study, tuning workers on it, and the selection of the best trial."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Output

from components._image import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def create_study(profile: str, overrides: list, pipeline_run_id: str, storage: str, facts: Output[Artifact]) -> str:
    """Create the run's shared study (and its database schema) once, before the workers fan out."""
    from equiseg.config import load_config
    from equiseg.steps import TaskFacts
    from equiseg.steps import create_study as step

    with TaskFacts.written_to(facts.path, "create_study") as recorded:
        return step(load_config(profile, overrides), pipeline_run_id=pipeline_run_id, storage=storage, facts=recorded)


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def tune_worker(
    profile: str,
    overrides: list,
    pipeline_run_id: str,
    worker: int,
    trials: int,
    storage: str,
    data: Input[Dataset],
    trials_dir: Output[Artifact],
    facts: Output[Artifact],
) -> int:
    """Run ``trials`` trials of the shared study (fanned out with dsl.ParallelFor); returns trials completed.

    Files go to ``trials_dir/worker-<worker>`` and facts to ``facts/tune_worker_<worker>.json``: names of its own,
    so the run folder and the summary keep every worker apart.
    """
    from equiseg.config import load_config
    from equiseg.steps import TaskFacts
    from equiseg.steps import tune_worker as step

    with TaskFacts.written_to(facts.path, f"tune_worker_{worker}") as recorded:
        return step(
            load_config(profile, overrides),
            manifest=data.path,
            data_root=data.metadata["data_root"],
            pipeline_run_id=pipeline_run_id,
            worker=worker,
            trials=trials,
            out_dir=trials_dir.path,
            storage=storage,
            facts=recorded,
        )


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def select_best_trial(
    profile: str, overrides: list, pipeline_run_id: str, storage: str, facts: Output[Artifact]
) -> list:
    """Read the shared study and return the best trial's parameters as ``key=value`` overrides for training."""
    from equiseg.config import load_config
    from equiseg.steps import TaskFacts
    from equiseg.steps import select_best_trial as step

    with TaskFacts.written_to(facts.path, "select_best_trial") as recorded:
        return step(load_config(profile, overrides), pipeline_run_id=pipeline_run_id, storage=storage, facts=recorded)
