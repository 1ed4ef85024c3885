"""CLI conventions a user can rely on (docs/operations.md, "Command line"): one output flag, one progress flag,
``--json`` everywhere, one-line errors, bounded tracking calls, checked config names, no stray stores, and the
extra to install when an optional dependency is missing."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from equiseg.cli.main import COMMANDS, cli

REPO = Path(__file__).resolve().parents[2]


def _leaves() -> Iterator[tuple[str, click.Command]]:
    """Every runnable command of equiseg itself (plugins such as `equiseg pipeline` belong to their packages)."""
    ctx = click.Context(cli)
    for name in COMMANDS:
        command = cli.get_command(ctx, name)
        assert command is not None
        if isinstance(command, click.Group):
            for sub in command.commands.values():
                yield f"{name} {sub.name}", sub
        else:
            yield name, command


def _visible_flags(command: click.Command) -> set[str]:
    return {opt for p in command.params if isinstance(p, click.Option) and not p.hidden for opt in p.opts}


def _run(args: list[str], *, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: int = 120):
    """The real console entry point in a subprocess: what a user's terminal shows (stdout, stderr, exit code)."""
    code = "from equiseg.cli import main; main()"
    full_env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.run(
        [sys.executable, "-c", code, *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout
    )


def _empty_registry(path: Path) -> str:
    from mlflow import MlflowClient

    uri = f"sqlite:///{path}"
    MlflowClient(uri, registry_uri=uri).create_registered_model("equiseg")
    return uri


# --------------------------------------------------------------------------------------------------------------------
# flags
# --------------------------------------------------------------------------------------------------------------------


def test_every_command_that_prints_results_takes_json() -> None:
    missing = [name for name, command in _leaves() if "--json" not in _visible_flags(command)]
    assert missing == []


def test_one_output_flag_name() -> None:
    for name, command in _leaves():
        flags = _visible_flags(command)
        assert "--report" not in flags, f"{name} still shows --report; the output folder is --out"
    for name in ("evaluate", "data validate", "predict", "gate", "train", "tune", "data synth"):
        assert "--out" in _visible_flags(dict(_leaves())[name]), name


def test_old_report_flag_still_works_hidden_and_deprecated() -> None:
    command = dict(_leaves())["evaluate"]
    ctx = command.make_context("evaluate", ["--model", "m.pt", "--manifest", __file__, "--report", "r"])
    assert ctx.params["out_dir"] == Path("r")


def test_one_progress_flag() -> None:
    for name, command in _leaves():
        progress = [p for p in command.params if isinstance(p, click.Option) and not p.hidden]
        progress = [p for p in progress if any("progress" in o or "quiet" in o for o in p.opts + p.secondary_opts)]
        for option in progress:
            assert (option.opts, option.secondary_opts) == (["--progress"], ["--no-progress"]), name
    leaves = dict(_leaves())
    for name in ("train", "tune", "evaluate", "experiment claim", "predict"):
        assert "--no-progress" in {o for p in leaves[name].params for o in p.secondary_opts}, name
    # the old `-q` of experiment claim keeps working, hidden
    assert leaves["experiment claim"].make_context("claim", ["-q"]).params["progress"] is False
    assert leaves["experiment claim"].make_context("claim", []).params["progress"] is True


# --------------------------------------------------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------------------------------------------------


def test_errors_are_one_line_that_says_the_fix_and_v_shows_the_traceback(tmp_path: Path) -> None:
    uri = _empty_registry(tmp_path / "mlflow.db")
    args = ["registry", "promote", "--version", "7", "--tracking-uri", uri]
    plain = _run(args)
    assert plain.returncode == 1
    lines = [line for line in plain.stderr.splitlines() if not line.lstrip().startswith(("warn", "func_info"))]
    errors = [line for line in lines if line.startswith("Error:")]
    assert len(errors) == 1 and "version=7" in errors[0] and "equiseg registry list" in errors[0], plain.stderr
    assert "Traceback" not in plain.stderr
    verbose = _run(["-v", *args])
    assert verbose.returncode == 1 and "Traceback" in verbose.stderr


def test_unknown_alias_is_one_line(tmp_path: Path) -> None:
    uri = _empty_registry(tmp_path / "mlflow.db")
    args = ["evaluate", "--model", "models:/equiseg@nope", "--manifest", __file__, "--out", str(tmp_path / "r")]
    result = CliRunner().invoke(cli, [*args, "--tracking-uri", uri])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    (line,) = [x for x in result.output.splitlines() if x.startswith("Error:")]
    assert "nope" in line and "equiseg registry list" in line


def test_unanswering_tracking_server_fails_within_the_bound_with_a_message(tmp_path: Path) -> None:
    # A socket that completes the TCP handshake (kernel backlog) but never answers: a hung server.
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        url = f"http://127.0.0.1:{server.getsockname()[1]}"
        env = {"EQUISEG_TRACKING_TIMEOUT": "2"}
        clean = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_HTTP_REQUEST")}
        code = "from equiseg.cli import main; main()"
        done = subprocess.run(
            [sys.executable, "-c", code, "registry", "list", "--tracking-uri", url],
            env={**clean, "PYTHONPATH": str(REPO), **env},
            capture_output=True,
            text=True,
            timeout=100,  # MLflow's own defaults would wait 120 s a request, 7 times over
        )
    assert done.returncode == 1
    (line,) = [x for x in done.stderr.splitlines() if x.startswith("Error:")]
    assert "check that the tracking server runs" in line and "Traceback" not in done.stderr
    assert cli.make_context("equiseg", ["model", "list"]).params["tracking_timeout"] == 30


# --------------------------------------------------------------------------------------------------------------------
# config names, stores, extras
# --------------------------------------------------------------------------------------------------------------------


def test_config_load_checks_model_modality_and_severity_names(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  name: foo\n")
    result = CliRunner().invoke(cli, ["config", "validate", str(bad)])
    assert result.exit_code == 2 and "unknown model.name 'foo'; valid: cmnext_like_b0" in result.output
    for override, message in (
        ("data.modalities=[rgb,sonar]", "unknown modality in data.modalities 'sonar'"),
        ("robustness.severities=[3,9]", "unknown degradation severity in robustness.severities 9"),
        ("experiment.models=[equiseg_tiny,resnet]", "unknown model in experiment.models 'resnet'"),
    ):
        shown = CliRunner().invoke(cli, ["config", "show", "--set", override])
        assert shown.exit_code == 2 and message in shown.output, override
    train = CliRunner().invoke(cli, ["train", "--set", "model.name=foo", "--no-track"])
    assert train.exit_code == 2 and "unknown model.name 'foo'" in train.output


def test_read_only_commands_create_no_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    listed = CliRunner().invoke(cli, ["registry", "list"])
    assert not (tmp_path / "runs").exists(), "registry list created a tracking store"
    assert listed.exit_code == 1 and "no tracking store at" in listed.output
    evaluated = CliRunner().invoke(
        cli, ["evaluate", "--model", "models:/equiseg@champion", "--manifest", __file__, "--out", "r"]
    )
    assert evaluated.exit_code == 1 and "no tracking store at" in evaluated.output
    predicted = CliRunner().invoke(cli, ["predict", "--input", str(tmp_path), "--out", "p"])
    assert predicted.exit_code == 1 and "no tracking store at" in predicted.output
    assert not (tmp_path / "runs").exists()


BLOCKED = textwrap.dedent(
    """
    import importlib.abc, sys

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] == "mlflow":
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, Block())
    from equiseg.cli import main
    main()
    """
)


def test_missing_extra_inside_a_command_names_the_extra(tmp_path: Path) -> None:
    manifest = tmp_path / "manifest.parquet"
    manifest.write_bytes(b"")  # only its existence is checked before the tracker is imported
    done = subprocess.run(
        [sys.executable, "-c", BLOCKED, "train", "--manifest", str(manifest), "--track"],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert "Error: equiseg train needs mlflow, from the [mlops] extra: pip install 'equiseg[mlops]'" in done.stderr
    assert "Traceback" not in done.stderr


def test_tune_progress_counts_finished_trials_from_the_study_storage(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import optuna

    from equiseg.cli.progress import TrialProgress
    from equiseg.config import load_config

    cfg = load_config("smoke")
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    with TrialProgress(cfg, storage, trials=3, interval_s=0.05):
        study = optuna.create_study(study_name=cfg.tune.study_name, storage=storage, direction="maximize")
        study.optimize(lambda trial: trial.suggest_float("x", 0.0, 1.0), n_trials=3)
    err = capsys.readouterr().err
    assert "tune trials" in err and "3/3" in err and "best=" in err
