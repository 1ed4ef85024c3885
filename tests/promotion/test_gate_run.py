"""The gate run end to end with real components: synthetic data, real models, MLflow on sqlite, fresh processes."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import mlflow
import pytest
import torch
from click.testing import CliRunner

from equiseg.cli.main import cli
from equiseg.config import EquisegConfig, config_to_dict, load_config
from equiseg.promotion import (
    GateVerdict,
    audit_registry,
    get_alias_version,
    list_versions,
    promote_candidate,
    run_gate,
    serving_check,
)

MODEL = "equiseg-e2e"
#: the checkpoints here are untrained (random init): the default floors (docs/gate.md) would block them, and these
#: tests are about re-scoring the champion, registration and the CLI, not about the floors (test_policy_floors.py)
FLOORS_OFF = ("gate.beat_constant=false", "gate.min_keep_without=0")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, make_synthetic: Callable[..., Path]) -> dict[str, object]:
    """Synthetic data, two real tiny checkpoints and a config pointing at a fresh sqlite MLflow."""
    from equiseg.models import create_model
    from equiseg.training import save_checkpoint

    root = tmp_path_factory.mktemp("gate-e2e")
    manifest = make_synthetic(root / "data", samples=12, val_fraction=0.5)
    cfg = load_config(
        "smoke",
        [
            f"tracking.uri=sqlite:///{root / 'mlflow.db'}",
            f"tracking.artifact_location={root / 'artifacts'}",
            "tracking.log_system_metrics=false",
            "data.num_classes=4",
            "data.image_size=32",
            f"gate.model_name={MODEL}",
            "robustness.bootstrap_samples=50",
            "gate.bootstrap_samples=200",
            *FLOORS_OFF,
        ],
    )
    ckpts = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        model = create_model("equiseg_tiny", num_classes=4, modalities=("rgb", "depth", "thermal"))
        ckpts.append(save_checkpoint(root / f"model{seed}.pt", model=model, config=config_to_dict(cfg)))
    return {"root": root, "manifest": manifest, "data_root": root / "data", "cfg": cfg, "ckpts": ckpts}


def _log(cfg: EquisegConfig, ckpt: Path) -> tuple[str, str]:
    from equiseg.tracking import Tracker

    tracker = Tracker(cfg.tracking)
    with tracker.start_run("candidate") as run_id:
        uri = tracker.log_model(ckpt)
    return uri, run_id


def _gate(world: dict[str, object], candidate: str, out: str, run_id: str | None = None) -> GateVerdict:
    return run_gate(
        world["cfg"],  # type: ignore[arg-type]
        candidate=candidate,
        manifest=world["manifest"],  # type: ignore[arg-type]
        data_root=world["data_root"],  # type: ignore[arg-type]
        out_dir=world["root"] / out,  # type: ignore[operator]
        mlflow_run_id=run_id,
    )


@pytest.mark.slow
def test_first_run_promotes_then_the_champion_is_rescored_on_the_same_data(world: dict[str, object]) -> None:
    cfg: EquisegConfig = world["cfg"]  # type: ignore[assignment]
    root: Path = world["root"]  # type: ignore[assignment]
    ckpt0, _ckpt1 = world["ckpts"]  # type: ignore[misc]
    uri0, run0 = _log(cfg, ckpt0)

    first = _gate(world, uri0, "gate1", run_id=run0)
    assert first.first_run and first.passed, first.reasons
    assert any(c.name.startswith("serving.") for c in first.checks)  # fresh-process serving check ran
    assert (root / "gate1" / "gate.json").is_file() and (root / "gate1" / "gate.md").is_file()
    outcome = promote_candidate(
        cfg,
        model_uri=uri0,
        mlflow_run_id=run0,
        verdict_path=root / "gate1" / "gate.json",
        lineage={"equiseg.dataset_version": "synthetic-0", "equiseg.git_commit": "abc"},
        out_dir=root / "registry1",
    )
    assert outcome.promoted, outcome.message
    assert get_alias_version(MODEL, "champion", tracking_uri=cfg.tracking.uri) == outcome.version
    # The verdict and the card went to the candidate's run through equiseg.tracking; the version tag points at the card.
    client = mlflow.MlflowClient(cfg.tracking.uri)
    assert {f.path for f in client.list_artifacts(run0, "gate")} >= {"gate/gate.json", "gate/gate.md"}
    run = client.get_run(run0)
    assert run.data.tags["equiseg.gate.passed"] == "true" and run.data.metrics["gate.passed"] == 1.0
    card_uri = client.get_model_version(MODEL, outcome.version).tags["equiseg.model_card"]
    assert card_uri == f"runs:/{run0}/model_card/v{outcome.version}/model_card.md"
    assert mlflow.artifacts.load_text(card_uri) == outcome.model_card.read_text()
    card = outcome.model_card.read_text()
    for section in (
        "## Intended use",
        "## Data",
        "synthetic-0",
        "## Metrics",
        "clean_miou",
        "## Gate verdict",
        "## Known limitations",
    ):
        assert section in card
    (summary,) = list_versions(MODEL, tracking_uri=cfg.tracking.uri)
    assert summary.lineage["dataset_version"] == "synthetic-0"

    # The same model again: the champion is re-scored on the same batches with the same seeds, so every paired
    # per-image difference is exactly zero. Nothing is inferior, nothing is better: blocked by the improvement rule.
    uri_same, run_same = _log(cfg, ckpt0)
    again = _gate(world, uri_same, "gate2", run_id=run_same)
    cand = {s["name"]: s for s in json.loads((root / "gate2" / "candidate_robustness.json").read_text())["slices"]}
    champ = {s["name"]: s for s in json.loads((root / "gate2" / "champion_robustness.json").read_text())["slices"]}
    assert cand.keys() == champ.keys() and len(cand) > 10
    for name, sl in cand.items():
        assert sl["sample_ids"] == champ[name]["sample_ids"]
        assert sl["per_image_miou"] == champ[name]["per_image_miou"]
    assert not again.passed and again.champion_version == outcome.version
    assert {c.name for c in again.failed_checks} == {"improvement.overall"}
    assert again.num_samples == 6

    # The CLI exits 1 on a blocked candidate and the registry is untouched.
    result = CliRunner().invoke(
        cli,
        [
            "gate",
            "--profile",
            "smoke",
            *[a for kv in _overrides(cfg) for a in ("--set", kv)],
            "--candidate",
            uri_same,
            "--manifest",
            str(world["manifest"]),
            "--data-root",
            str(world["data_root"]),
            "--out",
            str(root / "gate3"),
        ],
    )
    assert result.exit_code == 1, result.output
    assert "blocked" in result.output
    assert get_alias_version(MODEL, "champion", tracking_uri=cfg.tracking.uri) == outcome.version
    assert audit_registry(MODEL, tracking_uri=cfg.tracking.uri) == []


def _overrides(cfg: EquisegConfig) -> list[str]:
    return [
        f"tracking.uri={cfg.tracking.uri}",
        f"tracking.artifact_location={cfg.tracking.artifact_location}",
        "data.num_classes=4",
        "data.image_size=32",
        f"gate.model_name={MODEL}",
        "robustness.bootstrap_samples=50",
        "gate.bootstrap_samples=200",
        "gate.serving_check=false",
        *FLOORS_OFF,
    ]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from equiseg.models import create_model
    from equiseg.training import save_checkpoint

    model = create_model("equiseg_tiny", num_classes=4, modalities=("rgb", "depth", "thermal"))
    return save_checkpoint(tmp_path_factory.mktemp("serving") / "model.pt", model=model)


def test_serving_check_loads_a_checkpoint_in_a_fresh_process(checkpoint: Path) -> None:
    report = serving_check(str(checkpoint), image_size=32, latency_budget_ms=60_000)
    assert report.passed, report
    assert len(report.subsets) == 7  # every non-empty subset of rgb, depth, thermal
    assert all(s["shape"] == [2, 4, 32, 32] and s["finite"] for s in report.subsets)
    assert [c.name for c in report.to_checks()][:2] == ["serving.load", "serving.rgb+depth+thermal"]


@pytest.mark.slow
def test_serving_check_fails_a_model_over_the_latency_budget(checkpoint: Path) -> None:
    slow = serving_check(str(checkpoint), image_size=32, latency_budget_ms=0.0)
    assert not slow.passed
    assert all("over the 0 ms budget" in c.reason for c in slow.to_checks()[1:])


@pytest.mark.slow
def test_serving_check_reports_a_model_that_cannot_load(tmp_path: Path) -> None:
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not a checkpoint")
    report = serving_check(str(broken))
    assert not report.passed and not report.loaded
    (check,) = report.to_checks()
    assert check.name == "serving.load" and not check.passed and "could not be loaded" in check.reason
