"""Component: great-expectations + pixel validation with quarantine; fails the run on a blocking rule."""

from kfp import dsl
from kfp.dsl import HTML, Artifact, Dataset, Input, Metrics, Output

from components._image import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def validate_data(
    profile: str,
    overrides: list,
    data: Input[Dataset],
    validated: Output[Dataset],
    report: Output[HTML],
    report_dir: Output[Artifact],
    stats: Output[Metrics],
    facts: Output[Artifact],
) -> str:
    """Validate ``data``; ``validated`` is the manifest of the samples that passed (the rest are quarantined).

    ``report_dir`` is the whole report bundle (report, statistics, quarantine, Data Docs); ``report`` its page for
    the KFP UI. Drift is measured against the champion's training data, read from its MLflow run.
    """
    import shutil

    from equiseg.config import load_config
    from equiseg.steps import TaskFacts
    from equiseg.steps import validate_data as step

    with TaskFacts.written_to(facts.path, "validate_data") as recorded:
        result = step(
            load_config(profile, overrides),
            manifest=data.path,
            data_root=data.metadata["data_root"],
            out_dir=report_dir.path,
            facts=recorded,
        )
    shutil.copyfile(result.validated_path, validated.path)
    validated.metadata.update({**data.metadata, "validated_samples": result.n_validated})
    shutil.copyfile(result.report_path, report.path)
    for key, value in result.metrics().items():
        stats.log_metric(key, value)
    return result.summary
