"""Registry safety against a real MLflow (sqlite): verdicts bound to their model, rollbacks honoured, overrides
recorded, and the serving check required of a version that never had one."""

from __future__ import annotations

import json
import re
from pathlib import Path

import mlflow
import pytest
from click.testing import CliRunner

from equiseg.cli.main import cli
from equiseg.promotion import (
    PromotionError,
    VerdictMismatchError,
    approve,
    get_alias_version,
    promote,
    register_candidate,
    rollback,
    write_verdict,
)

from .registry_helpers import gate_verdict, gated_version, log_tiny_model


@pytest.fixture(scope="module")
def uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('safety') / 'mlflow.db'}"


@pytest.fixture
def model(request: pytest.FixtureRequest) -> str:
    return "s-" + re.sub(r"[^\w-]", "-", request.node.name)


def _cli(uri: str, model: str, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(
        cli, ["registry", args[0], "--tracking-uri", uri, "--set", f"gate.model_name={model}", *args[1:]]
    )
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


def test_a_passing_verdict_of_one_model_cannot_register_another(uri: str, model: str, tmp_path: Path) -> None:
    judged, _ = log_tiny_model(uri, fresh=True, seed=1)
    other, _ = log_tiny_model(uri, fresh=True, seed=2)  # e.g. one that fails the gate
    verdict = gate_verdict(uri, model, 0.0, judged)
    assert verdict.passed and verdict.candidate_digest and verdict.candidate_model_id == judged.split("/")[-1]
    with pytest.raises(VerdictMismatchError, match="applies only to the model it judged"):
        register_candidate(other, model_name=model, verdict=verdict, tracking_uri=uri)
    gate_json, _ = write_verdict(verdict, tmp_path)
    code, out = _cli(uri, model, "register", "--model-uri", other, "--verdict", str(gate_json))
    assert code == 1 and "refused" in out and "judged" in out
    assert get_alias_version(model, "champion", tracking_uri=uri) is None
    assert not mlflow.MlflowClient(uri).search_model_versions(f"name = '{model}'")  # nothing was registered
    # a verdict without a digest (an older gate.json, or a hand-written one) names nothing: refused too
    unbound = gate_json.with_name("unbound.json")
    raw = json.loads(gate_json.read_text()) | {"candidate_digest": ""}
    unbound.write_text(json.dumps(raw))
    code, out = _cli(uri, model, "register", "--model-uri", judged, "--verdict", str(unbound))
    assert code == 1 and "no candidate digest" in out
    code, out = _cli(uri, model, "register", "--model-uri", judged, "--verdict", str(gate_json))
    assert code == 0, out


def test_a_verdict_tag_copied_onto_another_version_does_not_promote_it(uri: str, model: str) -> None:
    good = gated_version(uri, model, 0.0)
    other, run_id = log_tiny_model(uri, fresh=True, seed=3)
    bad = register_candidate(other, model_name=model, mlflow_run_id=run_id, tracking_uri=uri)  # no verdict
    client = mlflow.MlflowClient(uri)
    for key, value in client.get_model_version(model, good).tags.items():  # forge: copy the passing tags
        if key.startswith("equiseg.gate."):
            client.set_model_version_tag(model, bad, key, value)
    with pytest.raises(PromotionError, match="not the one its verdict judged"):
        promote(model, bad, tracking_uri=uri)
    assert get_alias_version(model, "champion", tracking_uri=uri) is None


def test_a_rolled_back_version_returns_only_with_a_recorded_override(uri: str, model: str) -> None:
    v1 = gated_version(uri, model, 0.0)
    promote(model, v1, tracking_uri=uri)
    v2 = gated_version(uri, model, 2.0)
    promote(model, v2, tracking_uri=uri)
    rollback(model, reason="bad outputs on night frames", tracking_uri=uri)
    with pytest.raises(PromotionError, match="was rolled back .*night frames.*--override-reason"):
        promote(model, v2, tracking_uri=uri)
    code, out = _cli(uri, model, "promote", "--version", v2, "--set", "gate.serving_check=false")
    assert code == 1 and "rolled back" in out
    assert get_alias_version(model, "champion", tracking_uri=uri) == v1
    code, out = _cli(uri, model, "promote", "--version", v2, "--approver", "bob", "--override-reason", "night fix "
                     "was in the pre-processing, not the model", "--set", "gate.serving_check=false")  # fmt: skip
    assert code == 0, out
    assert get_alias_version(model, "champion", tracking_uri=uri) == v2
    client = mlflow.MlflowClient(uri)
    tags = client.get_model_version(model, v2).tags
    assert tags["equiseg.override.by"] == "bob" and tags["equiseg.override.kind"] == "rolled_back"
    assert "pre-processing" in tags["equiseg.override.reason"]
    assert json.loads(client.get_registered_model(model).tags["equiseg.last_override"])["version"] == v2


def test_a_blocked_candidate_is_approved_only_with_an_override_which_is_recorded(uri: str, model: str) -> None:
    v1 = gated_version(uri, model, 0.0)
    promote(model, v1, tracking_uri=uri)
    blocked = gated_version(uri, model, -4.0)
    with pytest.raises(PromotionError, match="no passing gate verdict.*--override-reason"):
        approve(model, blocked, approver="carol", tracking_uri=uri)
    code, out = _cli(uri, model, "approve", "--version", blocked, "--approver", "carol", "--override-reason",
                     "the drop is on a retired sensor", "--set", "gate.serving_check=false")  # fmt: skip
    assert code == 0, out
    assert get_alias_version(model, "champion", tracking_uri=uri) == blocked
    tags = mlflow.MlflowClient(uri).get_model_version(model, blocked).tags
    assert (tags["equiseg.override.by"], tags["equiseg.override.kind"]) == ("carol", "blocked_verdict")
    assert tags["equiseg.approved_by"] == "carol"


def test_promote_runs_the_serving_check_a_version_killed_mid_registration_never_had(uri: str, model: str) -> None:
    v1 = gated_version(uri, model, 0.0)  # registered with its verdict, then "killed": no serving check ran
    client = mlflow.MlflowClient(uri)
    assert "equiseg.serving.passed" not in client.get_model_version(model, v1).tags
    code, out = _cli(uri, model, "list")
    assert code == 0 and re.search(rf"^\s*{v1}\s+-\s+pass\*", out, re.M) and "serving check not yet run" in out
    code, out = _cli(uri, model, "promote", "--version", v1, "--set", "gate.latency_budget_ms=0.000001")
    assert code == 1 and "fails the serving check" in out and "latency" in out
    assert client.get_model_version(model, v1).tags["equiseg.serving.passed"] == "false"
    assert get_alias_version(model, "champion", tracking_uri=uri) is None
    client.delete_model_version_tag(model, v1, "equiseg.serving.passed")
    code, out = _cli(uri, model, "promote", "--version", v1, "--set", "data.image_size=32")
    assert code == 0, out
    assert client.get_model_version(model, v1).tags["equiseg.serving.passed"] == "true"
    assert get_alias_version(model, "champion", tracking_uri=uri) == v1
    code, out = _cli(uri, model, "list")
    assert re.search(rf"^\s*{v1}\s+champion\s+pass\s", out, re.M), out
