"""`equiseg registry` commands against a real sqlite MLflow, and the model card."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
from click.testing import CliRunner

from equiseg.cli.main import cli
from equiseg.config import load_config
from equiseg.promotion import (
    bind_verdict,
    build_model_card,
    decide,
    get_alias_version,
    promote_candidate,
    write_verdict,
)

from .gate_synthetic import base_per_image, make_result, shifted
from .registry_helpers import POLICY, gate_verdict, log_tiny_model

MODEL = "equiseg-cli"


def run(uri: str, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(
        cli, ["registry", args[0], "--tracking-uri", uri, "--set", f"gate.model_name={MODEL}", *args[1:]]
    )
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    # stdout only on success (MLflow warnings go to stderr); everything on failure, where the reason is on stderr
    return result.exit_code, result.stdout if result.exit_code == 0 else result.output


def test_register_promote_list_rollback_from_the_command_line(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    versions = []
    for shift in (0.0, 2.0):
        model_uri, _run_id = log_tiny_model(uri)
        verdict_json, _ = write_verdict(gate_verdict(uri, MODEL, shift), tmp_path / f"gate{shift}")
        code, out = run(
            uri,
            "register",
            "--model-uri",
            model_uri,
            "--verdict",
            str(verdict_json),
            "--lineage",
            "dataset_version=d1.dir",
            "--lineage",
            "git_commit=cafe",
        )
        assert code == 0, out
        versions.append(out.strip())
        code, out = run(uri, "promote", "--version", versions[-1])
        assert code == 0 and out.startswith("promoted:"), out
    v1, v2 = versions
    assert get_alias_version(MODEL, "champion", tracking_uri=uri) == v2

    code, out = run(uri, "list")
    assert code == 0, out
    rows = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert "champion" in rows[v2] and "previous_champion" in rows[v1] and "d1.dir" in rows[v2]
    code, out = run(uri, "list", "--json")
    listed = json.loads(out)
    assert listed[0]["lineage"] == {
        "dataset_version": "d1.dir",
        "git_commit": "cafe",
        "config_hash": listed[0]["lineage"]["config_hash"],
    }

    code, out = run(uri, "rollback", "--reason", "bad canary")
    assert code == 0 and get_alias_version(MODEL, "champion", tracking_uri=uri) == v1
    code, out = run(uri, "rollback", "--reason", "again")
    assert code == 1 and "refused" in out


def test_blocked_version_is_refused_by_the_cli_and_manual_mode_waits_for_approve(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    model_uri, _ = log_tiny_model(uri)
    worse = decide(POLICY, make_result(shifted(base_per_image(), -20.0)), None)  # below the clean floor
    verdict_json, _ = write_verdict(bind_verdict(worse, candidate=model_uri), tmp_path / "bad")
    code, version = run(uri, "register", "--model-uri", model_uri, "--verdict", str(verdict_json))
    code, out = run(uri, "promote", "--version", version.strip())
    assert code == 1 and "no passing gate verdict" in out

    model_uri, _ = log_tiny_model(uri)
    verdict_json, _ = write_verdict(gate_verdict(uri, MODEL, 0.0), tmp_path / "good")
    code, version = run(uri, "register", "--model-uri", model_uri, "--verdict", str(verdict_json))
    code, out = run(uri, "promote", "--version", version.strip(), "--mode", "manual")
    assert code == 0 and out.startswith("challenger:"), out
    assert get_alias_version(MODEL, "champion", tracking_uri=uri) is None
    code, out = run(uri, "approve", "--approver", "bob")
    assert code == 0 and get_alias_version(MODEL, "champion", tracking_uri=uri) == version.strip()


def test_model_card_has_every_section() -> None:
    base = base_per_image()
    verdict = decide(POLICY, make_result(shifted(base, 2.0)), make_result(base), champion_version="4")
    card = build_model_card(
        model_name="equiseg",
        version="5",
        verdict=verdict,
        lineage={"equiseg.dataset_version": "0a1b.dir", "equiseg.git_commit": "abc"},
        config={
            "data": {"modalities": ["rgb", "depth"], "num_classes": 8, "source": "synthetic"},
            "model": {"name": "equiseg_tiny"},
            "train": {"epochs": 2, "lr": 0.0006},
        },
        data_stats={"samples": 48, "quarantined": 0},
        heatmap="robustness_heatmap.png",
    )
    assert card.startswith("# Model card: equiseg version 5")
    for needle in (
        "## Intended use",
        "rgb, depth",
        "dataset version: `0a1b.dir`",
        "| samples | 48 |",
        "model.name: `equiseg_tiny`",
        "train.lr: `0.0006`",
        "| clean_miou |",
        "emm_missing_rgb",
        "![robustness heatmap](robustness_heatmap.png)",
        "**passed**",
        "champion version 4",
        "## Known limitations",
        "Weakest slice",
        "synthetic world",
    ):
        assert needle in card, needle


def test_registry_step_takes_heatmap_and_statistics_from_its_caller(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    name = "equiseg-step"
    model_uri, mlflow_run_id = log_tiny_model(uri)
    verdict_json, _ = write_verdict(gate_verdict(uri, name, 0.0), tmp_path / "anywhere" / "gate")
    heatmap = tmp_path / "elsewhere" / "robustness_heatmap.png"
    heatmap.parent.mkdir()
    heatmap.write_bytes(b"\x89PNG not really")
    overrides = [f"tracking.uri={uri}", f"gate.model_name={name}", "gate.serving_check=false", "gate.mode=dry_run"]
    outcome = promote_candidate(
        load_config("smoke", overrides),
        model_uri=model_uri,
        mlflow_run_id=mlflow_run_id,
        verdict_path=verdict_json,
        lineage={"dataset_version": "d1.dir"},
        out_dir=tmp_path / "registry",
        data_stats={"samples": 12},
        heatmap=heatmap,
    )
    assert outcome.action == "none" and not outcome.promoted  # dry run: decided, nothing moved
    card = outcome.model_card.read_text()
    assert "![robustness heatmap](robustness_heatmap.png)" in card and "| samples | 12 |" in card
    assert (tmp_path / "registry" / heatmap.name).read_bytes() == heatmap.read_bytes()
    tags = mlflow.MlflowClient(uri).get_model_version(name, outcome.version).tags
    assert tags["equiseg.model_card"] == f"runs:/{mlflow_run_id}/model_card/v{outcome.version}/model_card.md"
