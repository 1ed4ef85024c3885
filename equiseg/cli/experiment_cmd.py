"""``equiseg experiment claim``: does balance pay? The paper's central claim on our benchmark (docs/results.md)."""

from __future__ import annotations

import shlex
import sys

import click

from equiseg.cli.common import config_options, emit, json_option, progress_option, resolve_config
from equiseg.config import ConfigError
from equiseg.experiments import run_claim
from equiseg.experiments.runs import RunBusyError
from equiseg.experiments.study import analyse_study, load_summaries, run_study, write_study_report

__all__ = ["group"]


@click.group("experiment")
def group() -> None:
    """Experiments that test the paper's claims on our benchmark; results go to docs/results.md."""


@group.command("claim")
@config_options(default_profile="claim-cpu")
@click.option(
    "--analyse-only",
    is_flag=True,
    help="Train nothing: analyse the finished runs under experiment.output_dir (e.g. runs made on a GPU box with "
    "--no-track and copied here), write the report and log it.",
)
@click.option(
    "--track/--no-track",
    default=True,
    show_default=True,
    help="Log one MLflow parent run and a child run per model x seed (tracking.uri). --no-track where mlflow is "
    "not installed.",
)
@click.option(
    "--doc/--no-doc",
    default=True,
    show_default=True,
    help="Update this profile's section of experiment.results_doc (figures in a folder beside it).",
)
@progress_option
@click.option("--quiet", "-q", "progress", flag_value=False, default=True, hidden=True, deprecated="use --no-progress")
@json_option
def claim(
    profile: str, overrides: tuple[str, ...], analyse_only: bool, track: bool, doc: bool, progress: bool, as_json: bool
) -> None:
    """Train every model of experiment.models with every seed alike, score each with the robustness suite, and
    compare EQUISeg with each baseline (two-level bootstrap over seeds and test images).

    \b
    Profiles: claim-smoke (2 models, 1 seed, minutes), claim-cpu (6 models x 3 seeds, about an hour on 2 cores),
    claim-gpu (b0 variants, larger images, one GPU). Finished runs are reused and an interrupted one resumes, so
    the command can be re-run after a crash. Writes <experiment.output_dir>/results.json, results.md and figures,
    and exits 0 whether or not the targets are met (the report says which are).
    """
    cfg = resolve_config(profile, overrides)
    command = "equiseg " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv else ""
    try:
        analysis = run_claim(
            cfg, tracking=track, analyse_only=analyse_only, write_doc=doc, progress=progress, command=command
        )
    except (ConfigError, FileNotFoundError, RunBusyError) as exc:
        raise click.UsageError(str(exc)) from exc
    lines, rows = [], []
    for outcome in analysis.outcomes:
        est = outcome.estimate
        verdict = "met" if outcome.met else "NOT met"
        interval = f"{est.value:+.2f} [{est.low:+.2f}, {est.high:+.2f}]"
        lines.append(f"{outcome.name}: {interval} ({outcome.requirement}): {verdict}")
        rows.append(
            {
                "name": outcome.name,
                "value": est.value,
                "low": est.low,
                "high": est.high,
                "requirement": outcome.requirement,
                "met": bool(outcome.met),
            }
        )
    results = f"{cfg.experiment.output_dir}/results.md"
    lines.append(f"results: {results}" + (f", {cfg.experiment.results_doc}" if doc else ""))
    payload = {"outcomes": rows, "results": results, "results_doc": cfg.experiment.results_doc if doc else None}
    emit(as_json, payload, "\n".join(lines))


@group.command("study")
@config_options(default_profile="study-cpu")
@click.option(
    "--analyse-only",
    is_flag=True,
    help="Train nothing: rebuild every table and the figure from the committed per-run summaries "
    "(experiment.summary_dir).",
)
@click.option(
    "--interim",
    is_flag=True,
    help="With --analyse-only: analyse the summaries committed so far (the tables say how many of the planned "
    "runs); the pre-registered targets are judged once every run of the strongest setting is in.",
)
@click.option(
    "--doc/--no-doc",
    default=True,
    show_default=True,
    help="Update this profile's study section of experiment.results_doc (figure in docs/results/).",
)
@progress_option
@json_option
def study(
    profile: str,
    overrides: tuple[str, ...],
    analyse_only: bool,
    interim: bool,
    doc: bool,
    progress: bool,
    as_json: bool,
) -> None:
    """Train and score every model x seed x dominance setting (experiment.dominance_levels of the synthetic world's
    dominance dial), write one small summary JSON per run, and compare the candidate with every arm: mean
    difference with a bootstrap interval, Welch's t-test and an exact permutation test (docs/results.md, "Study").

    \b
    Profiles: study-smoke (2 arms x 2 seeds x 2 settings, minutes), study-cpu (4 arms x 10 seeds x 2 settings;
    hours on 2 cores, resumable), study-cpu-controls (capacity controls and the SGM ablation steps, 2 seeds,
    exploratory), study-cpu-fullbudget (EQUISeg without early stopping, 4 seeds, exploratory), study-gpu
    (bench/gpu_study.py runs it on one GPU). Finished runs are reused, so the study may span sittings: commit
    the summaries as they come, and --analyse-only --interim shows where it stands.
    """
    if interim and not analyse_only:
        raise click.UsageError("--interim reports a study in progress; use it with --analyse-only")
    cfg = resolve_config(profile, overrides)
    try:
        if not analyse_only:
            run_study(cfg, progress=progress)
        analysis = analyse_study(cfg, load_summaries(cfg, interim=interim))
    except (ConfigError, FileNotFoundError, RunBusyError) as exc:
        raise click.UsageError(str(exc)) from exc
    paths = write_study_report(cfg, analysis, write_doc=doc)
    lines = [f"{row['name']}: {'met' if row['met'] else 'NOT met'}" for row in analysis["targets"]]
    if not analysis["complete"]:
        judged = "targets judged at the complete strongest setting" if analysis["targets"] else "no target judged yet"
        lines.append(f"interim: {analysis['runs']} of {analysis['planned_runs']} runs; {judged}")
    lines += [f"wrote {path}" for path in paths.values()]
    emit(
        as_json,
        {
            "complete": analysis["complete"],
            "runs": analysis["runs"],
            "planned_runs": analysis["planned_runs"],
            "targets": analysis["targets"],
            "written": {k: str(v) for k, v in paths.items()},
        },
        "\n".join(lines),
    )
