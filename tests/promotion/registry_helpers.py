"""Helpers for registry tests: a real MLflow sqlite store, a tiny logged model, gated versions."""

from __future__ import annotations

import mlflow
import torch

from equiseg.config import GateConfig
from equiseg.promotion import GateVerdict, decide, get_alias_version, register_candidate

from .gate_synthetic import base_per_image, make_result, shifted

POLICY = GateConfig(min_clean_miou=50.0, noninferiority_margin=2.0, bootstrap_samples=300)
PIP = ["torch==2.14.1"]


_LOGGED: dict[str, tuple[str, str]] = {}


def log_tiny_model(tracking_uri: str, experiment: str = "gate-tests", *, fresh: bool = False) -> tuple[str, str]:
    """Log a real (tiny) torch model through mlflow once per store; returns (model_uri, run_id).

    Registry tests register this one logged model as many versions (each version still gets its own verdict);
    ``fresh=True`` logs a new one.
    """
    if not fresh and tracking_uri in _LOGGED:
        return _LOGGED[tracking_uri]
    client = mlflow.MlflowClient(tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    exp_id = exp.experiment_id if exp else client.create_experiment(experiment)
    mlflow.set_tracking_uri(tracking_uri)
    with mlflow.start_run(experiment_id=exp_id) as run:
        info = mlflow.pytorch.log_model(
            torch.nn.Conv2d(3, 2, 1), name="model", pip_requirements=PIP, serialization_format="pickle"
        )
    _LOGGED[tracking_uri] = (info.model_uri, run.info.run_id)
    return _LOGGED[tracking_uri]


def gate_verdict(tracking_uri: str, model_name: str, shift: float | dict[str, float], **policy: object) -> GateVerdict:
    """Decide on a synthetic candidate shifted from a synthetic champion (first run when no champion exists)."""
    champion_version = get_alias_version(model_name, "champion", tracking_uri=tracking_uri)
    cfg = POLICY.__class__(**{**POLICY.__dict__, **policy})
    base = base_per_image()
    champion = make_result(base) if champion_version else None
    return decide(cfg, make_result(shifted(base, shift)), champion, champion_version=champion_version)


def gated_version(tracking_uri: str, model_name: str, shift: float | dict[str, float], **policy: object) -> str:
    """Log a model, gate it and register it with its verdict; returns the version."""
    uri, run_id = log_tiny_model(tracking_uri)
    verdict = gate_verdict(tracking_uri, model_name, shift, **policy)
    lineage = {"dataset_version": "abc123.dir", "git_commit": "deadbeef", "pipeline_run_id": "p1", "config_hash": "c"}
    return register_candidate(
        uri, model_name=model_name, verdict=verdict, lineage=lineage, mlflow_run_id=run_id, tracking_uri=tracking_uri
    )
