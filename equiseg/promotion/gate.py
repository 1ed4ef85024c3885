"""The gate run: score candidate and champion on the same data in the same run, decide, record.

:func:`run_gate` never compares with stored numbers: it loads ``models:/<gate.model_name>/<champion version>`` and
re-evaluates it with exactly the candidate's batches (validation split, unshuffled), suite, seed, severities and
bootstrap settings (docs/gate.md).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch import nn

from equiseg.config import EquisegConfig, save_config
from equiseg.data import make_loader
from equiseg.promotion.binding import bind_verdict
from equiseg.promotion.policy import decide
from equiseg.promotion.serving import serving_check
from equiseg.promotion.verdict import GateVerdict, write_verdict
from equiseg.promotion.versions import CHAMPION, get_alias_version
from equiseg.robustness.evaluate import evaluate_configured
from equiseg.tracking import Tracker, configure_store, load_model, resolve_tracking_uri

__all__ = ["log_verdict_to_run", "run_gate", "store_uri", "tracker_on"]

logger = logging.getLogger(__name__)

#: Files of a gate run that go to the candidate's MLflow run (under ``gate/``) when they exist.
VERDICT_FILES = ("gate.json", "gate.md", "gate.html", "serving.json")


def store_uri(cfg: EquisegConfig, tracking_uri: str | None = None) -> str:
    """The MLflow store of runs and registry: ``tracking_uri`` or ``cfg.tracking.uri``, resolved."""
    return resolve_tracking_uri(tracking_uri or cfg.tracking.uri)


def tracker_on(cfg: EquisegConfig, uri: str) -> Tracker:
    """A :class:`~equiseg.tracking.Tracker` on ``uri`` with the retries of ``cfg.tracking``."""
    return Tracker(dataclasses.replace(cfg.tracking, uri=uri))


def run_gate(
    cfg: EquisegConfig,
    *,
    candidate: str,
    manifest: Path,
    data_root: Path,
    out_dir: Path,
    tracking_uri: str | None = None,
    mlflow_run_id: str | None = None,
    model_uri: str | None = None,
) -> GateVerdict:
    """Score the candidate and the current champion on the same evaluation data and decide.

    Args:
        cfg: resolved config (``gate`` policy, ``robustness`` suite and seed, ``data`` modalities and classes).
        candidate: checkpoint path or MLflow model URI.
        manifest: data manifest; the validation split is the evaluation data.
        data_root: root of the data files.
        out_dir: where ``gate.json``, ``gate.md``, both robustness results and ``config.yaml`` go.
        tracking_uri: MLflow URI (default ``cfg.tracking.uri``); the champion is ``models:/<gate.model_name>@champion``.
        mlflow_run_id: if given, the verdict files are logged to this MLflow run (the candidate's) under ``gate/``.
        model_uri: the candidate's logged model, recorded in the verdict with the checkpoint digest, the manifest
            digest and the policy hash (:func:`~equiseg.promotion.binding.bind_verdict`).

    Returns:
        The verdict (``passed`` False blocks promotion). A serving check is included when ``gate.serving_check``.
    """
    uri = store_uri(cfg, tracking_uri)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out / "config.yaml")
    batches = _evaluation_batches(cfg, Path(manifest), Path(data_root))
    logger.info("gate: evaluating candidate %s on %d batches", candidate, len(batches))
    cand_result = evaluate_configured(cfg, _load(candidate, uri), batches, progress=True)  # slices, with progress
    cand_result.to_json(out / "candidate_robustness.json")
    champion_version = get_alias_version(cfg.gate.model_name, CHAMPION, tracking_uri=uri)
    champ_result = None
    if champion_version is not None:
        champion_uri = f"models:/{cfg.gate.model_name}/{champion_version}"  # pinned: the alias may move meanwhile
        logger.info("gate: re-scoring champion %s on the same data", champion_uri)
        champ_result = evaluate_configured(cfg, _load(champion_uri, uri), batches, progress=True)
        champ_result.to_json(out / "champion_robustness.json")
    verdict = decide(cfg.gate, cand_result, champ_result, candidate_name=candidate, champion_version=champion_version)
    verdict = bind_verdict(verdict, candidate=candidate, model_uri=model_uri, manifest=manifest, policy=cfg.gate)
    if cfg.gate.serving_check:
        report = serving_check(
            candidate,
            tracking_uri=uri,
            image_size=cfg.data.image_size,
            batch_size=2,
            latency_budget_ms=cfg.gate.latency_budget_ms,
            timeout_s=cfg.gate.serving_timeout_s,
            seed=cfg.gate.seed,
        )
        (out / "serving.json").write_text(json.dumps(report.to_dict(), indent=2))
        verdict = verdict.with_checks(report.to_checks())
    write_verdict(verdict, out)
    if mlflow_run_id:
        files = [out / name for name in VERDICT_FILES if (out / name).is_file()]
        log_verdict_to_run(tracker_on(cfg, uri), mlflow_run_id, verdict, files)
    logger.info("gate: %s", verdict.headline())
    return verdict


def log_verdict_to_run(tracker: Tracker, mlflow_run_id: str, verdict: GateVerdict, files: Sequence[Path]) -> None:
    """Log the verdict files under ``gate/``, the metric ``gate.passed`` and the tag ``equiseg.gate.passed``."""
    for path in files:
        tracker.log_to_run(mlflow_run_id, {}, artifacts=path, artifact_path="gate")
    tracker.log_to_run(
        mlflow_run_id,
        {"gate.passed": 1.0 if verdict.passed else 0.0},
        tags={"equiseg.gate.passed": "true" if verdict.passed else "false"},
    )


def _evaluation_batches(cfg: EquisegConfig, manifest: Path, data_root: Path) -> list[dict[str, Any]]:
    """The validation split, unshuffled, as one list: the one evaluation set both models see."""
    loader = make_loader(
        manifest,
        data_root,
        modalities=cfg.data.modalities,
        split="val",
        batch_size=cfg.robustness.batch_size,
        shuffle=False,
        num_workers=0,
    )
    batches = list(loader)
    if not batches:
        raise ValueError(f"the validation split of {manifest} is empty; the gate needs evaluation data")
    return batches


def _load(ref: str, uri: str) -> nn.Module:
    configure_store(uri)
    return load_model(ref, device="cpu")
