"""Registry operations against a real MLflow (sqlite): promotion rules, modes, rollback, races and crashes."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from equiseg.promotion import (
    PROMOTION_STEPS,
    ChampionMovedError,
    PromotionError,
    approve,
    audit_registry,
    get_alias_version,
    list_versions,
    promote,
    rollback,
)

from .registry_helpers import gated_version

WORKER = Path(__file__).with_name("promote_worker.py")


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One real sqlite MLflow store per module (creating the schema is the slow part); one model name per test."""
    return f"sqlite:///{tmp_path_factory.mktemp('registry') / 'mlflow.db'}"


@pytest.fixture
def uri(store: str) -> str:
    return store


@pytest.fixture
def model(request: pytest.FixtureRequest) -> str:
    """A registered-model name of its own for every test."""
    return "m-" + re.sub(r"[^\w-]", "-", request.node.name)


def aliases(uri: str, model: str) -> dict[str, str | None]:
    return {a: get_alias_version(model, a, tracking_uri=uri) for a in ("champion", "previous_champion", "challenger")}


def test_first_run_promotes_on_floors_alone(uri: str, model: str) -> None:
    v1 = gated_version(uri, model, 0.0)
    result = promote(model, v1, tracking_uri=uri)
    assert result.action == "promoted"
    assert aliases(uri, model) == {"champion": v1, "previous_champion": None, "challenger": None}
    (summary,) = list_versions(model, tracking_uri=uri)
    assert summary.gate_passed is True and summary.aliases == ["champion"]
    assert summary.lineage["dataset_version"] == "abc123.dir" and summary.lineage["git_commit"] == "deadbeef"
    assert summary.metrics["clean_miou"] > 50


def test_worse_candidate_is_blocked_and_champion_unchanged(uri: str, model: str) -> None:
    v1 = gated_version(uri, model, 0.0)
    promote(model, v1, tracking_uri=uri)
    v2 = gated_version(uri, model, -4.0)
    with pytest.raises(PromotionError, match="no passing gate verdict"):
        promote(model, v2, tracking_uri=uri)
    assert aliases(uri, model)["champion"] == v1
    listed = {s.version: s for s in list_versions(model, tracking_uri=uri)}
    assert listed[v2].gate_passed is False and "abs_change.clean_miou" in listed[v2].failed_checks


def test_better_candidate_passes_and_sets_previous_champion_then_rollback_restores(uri: str, model: str) -> None:
    v1 = gated_version(uri, model, 0.0)
    promote(model, v1, tracking_uri=uri)
    v2 = gated_version(uri, model, 2.0)
    result = promote(model, v2, tracking_uri=uri)
    assert (result.action, result.champion, result.previous_champion) == ("promoted", v2, v1)
    assert aliases(uri, model) == {"champion": v2, "previous_champion": v1, "challenger": None}
    back = rollback(model, reason="latency regression in prod", tracking_uri=uri)
    assert back.action == "rolled_back"
    assert aliases(uri, model) == {"champion": v1, "previous_champion": None, "challenger": None}
    import mlflow

    client = mlflow.MlflowClient(uri)
    record = json.loads(client.get_registered_model(model).tags["equiseg.last_rollback"])
    assert record == {"from": v2, "to": v1, "at": record["at"], "reason": "latency regression in prod"}
    assert client.get_model_version(model, v2).tags["equiseg.rollback_reason"] == "latency regression in prod"
    with pytest.raises(PromotionError, match="no 'previous_champion'"):
        rollback(model, reason="again", tracking_uri=uri)


def test_collapse_without_rgb_and_noise_only_candidates_are_not_promoted(uri: str, model: str) -> None:
    v1 = gated_version(uri, model, 0.0)
    promote(model, v1, tracking_uri=uri)
    collapse = gated_version(uri, model, {"clean": 3.0, "emm_missing_rgb": -6.0})
    listed = {s.version: s for s in list_versions(model, tracking_uri=uri)}
    assert "slice_drop.emm_missing_rgb" in listed[collapse].failed_checks
    with pytest.raises(PromotionError):
        promote(model, collapse, tracking_uri=uri)
    assert aliases(uri, model)["champion"] == v1


def test_dry_run_moves_nothing(uri: str, model: str) -> None:
    v1 = gated_version(uri, model, 0.0, mode="dry_run")
    result = promote(model, v1, tracking_uri=uri)  # mode taken from the verdict
    assert result.action == "none" and "dry run" in result.message
    assert aliases(uri, model) == {"champion": None, "previous_champion": None, "challenger": None}


def test_manual_mode_waits_for_approve(uri: str, model: str) -> None:
    v1 = gated_version(uri, model, 0.0)
    promote(model, v1, tracking_uri=uri)
    v2 = gated_version(uri, model, 2.0, mode="manual")
    result = promote(model, v2, tracking_uri=uri)
    assert result.action == "challenger"
    assert aliases(uri, model) == {"champion": v1, "previous_champion": None, "challenger": v2}
    approved = approve(model, approver="alice", tracking_uri=uri)
    assert approved.action == "promoted"
    assert aliases(uri, model) == {"champion": v2, "previous_champion": v1, "challenger": None}
    import mlflow

    assert mlflow.MlflowClient(uri).get_model_version(model, v2).tags["equiseg.approved_by"] == "alice"
    with pytest.raises(PromotionError, match="nothing awaits approval"):
        approve(model, approver="alice", tracking_uri=uri)


def test_stale_verdict_is_refused_by_compare_and_set(uri: str, model: str) -> None:
    v1 = gated_version(uri, model, 0.0)
    v2 = gated_version(uri, model, 0.0)  # both gated as first runs (no champion yet)
    promote(model, v1, tracking_uri=uri)
    with pytest.raises(ChampionMovedError, match="Re-run `equiseg gate`"):
        promote(model, v2, tracking_uri=uri)
    assert aliases(uri, model)["champion"] == v1


def _worker(uri: str, model: str, version: str, *extra: str) -> subprocess.Popen[str]:
    cmd = [sys.executable, str(WORKER), uri, model, version, *extra]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_two_racing_promotions_leave_exactly_one_champion(uri: str, model: str, tmp_path: Path) -> None:
    v1 = gated_version(uri, model, 0.0)
    promote(model, v1, tracking_uri=uri)
    a, b = gated_version(uri, model, 2.0), gated_version(uri, model, 3.0)  # both gated against v1
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    race = ("--barrier", str(barrier), "--parties", "2")
    procs = {a: _worker(uri, model, a, *race), b: _worker(uri, model, b, *race)}
    codes = {v: p.wait(timeout=120) for v, p in procs.items()}
    outputs = {v: p.communicate() for v, p in procs.items()}
    assert sorted(codes.values()) == [0, 3], outputs
    winner = next(v for v, c in codes.items() if c == 0)
    assert aliases(uri, model) == {"champion": winner, "previous_champion": v1, "challenger": None}
    assert audit_registry(model, tracking_uri=uri) == []


@pytest.mark.slow
@pytest.mark.parametrize("step", PROMOTION_STEPS)
def test_sigkill_at_each_promotion_step_leaves_a_consistent_registry(uri: str, model: str, step: str) -> None:
    v1 = gated_version(uri, model, 0.0)
    promote(model, v1, tracking_uri=uri)
    v2 = gated_version(uri, model, 2.0)
    proc = _worker(uri, model, v2, "--kill-at", step)
    assert proc.wait(timeout=120) == -9, proc.communicate()
    state = aliases(uri, model)
    assert state["champion"] in (v1, v2)
    assert audit_registry(model, tracking_uri=uri) == []
    # The lock died with the process; re-running the promotion finishes it.
    result = promote(model, v2, tracking_uri=uri, lock_timeout_s=5)
    assert result.champion == v2
    assert aliases(uri, model) == {"champion": v2, "previous_champion": v1, "challenger": None}


@pytest.mark.slow
def test_sigkill_between_the_two_alias_writes_then_recovery(uri: str, model: str) -> None:
    """Fast representative of the slow per-step matrix: killed after previous_champion moved, before champion."""
    _kill_and_recover(uri, model, "previous_alias_set")


def _kill_and_recover(uri: str, model: str, step: str) -> None:
    v1 = gated_version(uri, model, 0.0)
    promote(model, v1, tracking_uri=uri)
    v2 = gated_version(uri, model, 2.0)
    proc = _worker(uri, model, v2, "--kill-at", step)
    assert proc.wait(timeout=120) == -9, proc.communicate()
    assert aliases(uri, model) == {"champion": v1, "previous_champion": v1, "challenger": None}
    assert promote(model, v2, tracking_uri=uri, lock_timeout_s=5).champion == v2
    assert aliases(uri, model) == {"champion": v2, "previous_champion": v1, "challenger": None}
