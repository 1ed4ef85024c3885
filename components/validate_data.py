"""Component: great-expectations + pixel validation with quarantine; fails the run on a blocking rule."""

from kfp import dsl
from kfp.dsl import HTML, Dataset, Input, Metrics, Output

from components._image import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def validate_data(
    profile: str,
    overrides: list,
    pipeline_run_id: str,
    data: Input[Dataset],
    validated: Output[Dataset],
    report: Output[HTML],
    stats: Output[Metrics],
) -> str:
    """Validate ``data``; ``validated`` is the manifest of the samples that passed (the rest are quarantined)."""
    import shutil

    from equiseg.config import load_config
    from equiseg.steps import validate_data as step

    result = step(
        load_config(profile, overrides),
        manifest=data.path,
        data_root=data.metadata["data_root"],
        pipeline_run_id=pipeline_run_id,
    )
    shutil.copyfile(result.validated_path, validated.path)
    validated.metadata.update({**data.metadata, "validated_samples": result.n_validated})
    shutil.copyfile(result.report_path, report.path)
    for key, value in result.metrics().items():
        stats.log_metric(key, value)
    return result.summary
