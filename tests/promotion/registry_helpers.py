"""Helpers for registry tests: a real MLflow sqlite store, a tiny logged model, gated versions."""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from equiseg.config import GateConfig, TrackingConfig
from equiseg.models import create_model
from equiseg.promotion import GateVerdict, bind_verdict, decide, get_alias_version, register_candidate
from equiseg.tracking import Tracker
from equiseg.training import save_checkpoint

from .gate_synthetic import base_per_image, make_result, shifted

POLICY = GateConfig(min_clean_miou=50.0, noninferiority_margin=2.0, bootstrap_samples=300)


_LOGGED: dict[str, tuple[str, str]] = {}


def log_tiny_model(
    tracking_uri: str, experiment: str = "gate-tests", *, fresh: bool = False, seed: int = 0
) -> tuple[str, str]:
    """Log a real (tiny, rgb-only) equiseg model with ``Tracker.log_model`` once per store; (model_uri, run_id).

    Registry tests register this one logged model as many versions (each version still gets its own verdict);
    ``fresh=True`` logs a new one (``seed`` makes its weights, so two seeds give two checkpoint digests).
    """
    if not fresh and tracking_uri in _LOGGED:
        return _LOGGED[tracking_uri]
    torch.manual_seed(seed)
    model = create_model("equiseg_tiny", num_classes=4, modalities=("rgb",))
    local = tracking_uri.startswith("sqlite:///")  # a server keeps its own default artifact root
    artifacts = tracking_uri.removeprefix("sqlite:///").rsplit("/", 1)[0] + "/artifacts" if local else ""
    tracker = Tracker(
        TrackingConfig(uri=tracking_uri, artifact_location=artifacts, experiment=experiment, log_system_metrics=False)
    )
    with tempfile.TemporaryDirectory() as tmp, tracker.start_run("tiny") as run_id:
        uri = tracker.log_model(save_checkpoint(Path(tmp) / "tiny.pt", model=model))
    if not fresh:
        _LOGGED[tracking_uri] = (uri, run_id)
    return uri, run_id


def gate_verdict(
    tracking_uri: str, model_name: str, shift: float | dict[str, float], model_uri: str | None = None, **policy: object
) -> GateVerdict:
    """Decide on a synthetic candidate shifted from a synthetic champion (first run when no champion exists), bound
    to ``model_uri`` (default: the store's tiny logged model)."""
    champion_version = get_alias_version(model_name, "champion", tracking_uri=tracking_uri)
    cfg = POLICY.__class__(**{**POLICY.__dict__, **policy})
    base = base_per_image()
    champion = make_result(base) if champion_version else None
    verdict = decide(cfg, make_result(shifted(base, shift)), champion, champion_version=champion_version)
    return bind_verdict(verdict, candidate=model_uri or log_tiny_model(tracking_uri)[0])


def gated_version(tracking_uri: str, model_name: str, shift: float | dict[str, float], **policy: object) -> str:
    """Log a model, gate it and register it with its verdict; returns the version."""
    uri, run_id = log_tiny_model(tracking_uri)
    verdict = gate_verdict(tracking_uri, model_name, shift, uri, **policy)
    lineage = {"dataset_version": "abc123.dir", "git_commit": "deadbeef", "pipeline_run_id": "p1", "config_hash": "c"}
    return register_candidate(
        uri, model_name=model_name, verdict=verdict, lineage=lineage, mlflow_run_id=run_id, tracking_uri=tracking_uri
    )
