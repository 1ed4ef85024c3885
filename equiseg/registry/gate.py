"""The gate run: score candidate and champion on the same data in the same run, decide, record; then register,
serving-check, write the model card and move the aliases.

:func:`run_gate` never compares with stored numbers: it loads ``models:/<gate.model_name>/<champion version>`` and
re-evaluates it with exactly the candidate's batches (validation split, unshuffled), suite, seed, severities and
bootstrap settings. :func:`promote_candidate` is the pipeline's registry step.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from equiseg.config import EquisegConfig, config_to_dict, save_config
from equiseg.registry.model_card import build_model_card, write_model_card
from equiseg.registry.operations import (
    CHAMPION,
    PromotionError,
    PromotionResult,
    get_alias_version,
    promote,
    record_verdict,
    register_candidate,
)
from equiseg.registry.policy import GateVerdict, decide, write_verdict
from equiseg.registry.serving import serving_check

__all__ = ["PromotionOutcome", "is_model_uri", "promote_candidate", "run_gate"]

logger = logging.getLogger(__name__)


def is_model_uri(candidate: str) -> bool:
    """True for MLflow model URIs (``models:/...``, ``runs:/...``, ``s3://...``), False for a checkpoint path."""
    from equiseg.tracking import is_model_uri as tracking_is_model_uri

    return tracking_is_model_uri(candidate)


def _tracking_uri(cfg: EquisegConfig, tracking_uri: str | None) -> str:
    from equiseg.tracking import resolve_tracking_uri

    return resolve_tracking_uri(tracking_uri or cfg.tracking.uri)


def _load_model(candidate: str, tracking_uri: str) -> Any:
    from equiseg.tracking import configure_store, load_model

    configure_store(tracking_uri)
    return load_model(candidate, device="cpu")


def _evaluate(cfg: EquisegConfig, model: Any, batches: list[dict[str, Any]]) -> Any:
    from equiseg.robustness.evaluate import evaluate_configured

    return evaluate_configured(cfg, model, batches)


def run_gate(
    cfg: EquisegConfig,
    *,
    candidate: str,
    manifest: Path,
    data_root: Path,
    out_dir: Path,
    tracking_uri: str | None = None,
    candidate_run_id: str | None = None,
) -> GateVerdict:
    """Score the candidate and the current champion on the same evaluation data and decide.

    Args:
        cfg: resolved config (``gate`` policy, ``robustness`` suite and seed, ``data`` modalities and classes).
        candidate: checkpoint path or MLflow model URI.
        manifest: data manifest; the validation split is the evaluation data.
        data_root: root of the data files.
        out_dir: where ``gate.json``, ``gate.md``, both robustness results and ``config.yaml`` go.
        tracking_uri: MLflow URI (default ``cfg.tracking.uri``); the champion is ``models:/<gate.model_name>@champion``.
        candidate_run_id: if given, the verdict files are logged to this MLflow run under ``gate/``.

    Returns:
        The verdict (``passed`` False blocks promotion). A serving check is included when ``gate.serving_check``.
    """
    from equiseg.data.dataset import make_loader

    uri = _tracking_uri(cfg, tracking_uri)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out / "config.yaml")
    loader = make_loader(
        Path(manifest),
        Path(data_root),
        modalities=cfg.data.modalities,
        split="val",
        batch_size=cfg.robustness.batch_size,
        shuffle=False,
        num_workers=0,
    )
    batches = list(loader)  # the one evaluation set both models see
    if not batches:
        raise ValueError(f"the validation split of {manifest} is empty; the gate needs evaluation data")
    logger.info("gate: evaluating candidate %s on %d batches", candidate, len(batches))
    cand_result = _evaluate(cfg, _load_model(candidate, uri), batches)
    cand_result.to_json(out / "candidate_robustness.json")
    champion_version = get_alias_version(cfg.gate.model_name, CHAMPION, tracking_uri=uri)
    champ_result = None
    if champion_version is not None:
        champion_uri = f"models:/{cfg.gate.model_name}/{champion_version}"  # pinned: the alias may move meanwhile
        logger.info("gate: re-scoring champion %s on the same data", champion_uri)
        champ_result = _evaluate(cfg, _load_model(champion_uri, uri), batches)
        champ_result.to_json(out / "champion_robustness.json")
    verdict = decide(cfg.gate, cand_result, champ_result, candidate_name=candidate, champion_version=champion_version)
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
    if candidate_run_id:
        _log_gate_to_run(uri, candidate_run_id, out, verdict)
    logger.info("gate: %s", verdict.headline())
    return verdict


def _log_gate_to_run(uri: str, run_id: str, out: Path, verdict: GateVerdict) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    for name in ("gate.json", "gate.md", "serving.json"):
        if (out / name).is_file():
            client.log_artifact(run_id, str(out / name), artifact_path="gate")
    client.log_metric(run_id, "gate.passed", 1.0 if verdict.passed else 0.0)
    client.set_tag(run_id, "equiseg.gate.passed", "true" if verdict.passed else "false")


@dataclass(frozen=True)
class PromotionOutcome:
    """What the registry step did for one candidate.

    Attributes:
        version: the registered version.
        verdict_passed: gate verdict after the registry's serving check.
        promoted: ``champion`` now points at this version.
        action: ``promoted``, ``challenger``, ``none`` or ``blocked``.
        message: plain words.
        model_card: path of the written ``model_card.md``.
    """

    version: str
    verdict_passed: bool
    promoted: bool
    action: str
    message: str
    model_card: Path

    def describe(self) -> str:
        """One line for the run summary."""
        return f"version {self.version}: {self.action} ({self.message})"


def promote_candidate(
    cfg: EquisegConfig,
    *,
    model_uri: str,
    run_id: str | None,
    verdict_path: Path,
    lineage: Mapping[str, str],
    out_dir: Path,
    tracking_uri: str | None = None,
    data_stats: Mapping[str, Any] | None = None,
    heatmap: Path | None = None,
) -> PromotionOutcome:
    """Register ``model_uri`` with lineage and verdict, serving-check the registered version, write and log its
    model card, then act according to ``gate.mode``.

    A failed gate or serving check still registers the version (for the audit trail) but moves no alias. The
    heatmap and data statistics default to ``<out_dir>/../robustness/heatmap.png`` and ``<out_dir>/../data/stats.json``
    (the pipeline's layout) when present. A lost promotion race
    (:class:`~equiseg.registry.operations.ChampionMovedError`) is reported, not raised.
    """
    uri = _tracking_uri(cfg, tracking_uri)
    run_id = run_id or None  # the pipeline passes "" when tracking was off
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    verdict = GateVerdict.from_json(Path(verdict_path).read_text())
    name = cfg.gate.model_name
    version = register_candidate(
        model_uri, model_name=name, verdict=verdict, lineage=lineage, run_id=run_id, tracking_uri=uri
    )
    if verdict.passed and cfg.gate.serving_check:
        report = serving_check(
            f"models:/{name}/{version}",
            tracking_uri=uri,
            image_size=cfg.data.image_size,
            latency_budget_ms=cfg.gate.latency_budget_ms,
            timeout_s=cfg.gate.serving_timeout_s,
            seed=cfg.gate.seed,
        )
        (out / "serving.json").write_text(json.dumps(report.to_dict(), indent=2))
        verdict = verdict.with_checks([dataclasses.replace(c, name="registry_" + c.name) for c in report.to_checks()])
        record_verdict(name, version, verdict, tracking_uri=uri)
        write_verdict(verdict, out)
    if heatmap is None:  # the pipeline's robustness step writes <run dir>/robustness/heatmap.png
        found = sorted((out.parent / "robustness").glob("*heatmap*.png"))
        heatmap = found[0] if found else None
    stats_file = out.parent / "data" / "stats.json"  # the pipeline's validation step writes the data statistics
    if data_stats is None and stats_file.is_file():
        data_stats = json.loads(stats_file.read_text())
    card = build_model_card(
        model_name=name,
        version=version,
        verdict=verdict,
        lineage=lineage,
        config=config_to_dict(cfg),
        data_stats=data_stats,
        heatmap=heatmap.name if heatmap else None,
    )
    card_path = write_model_card(card, out)
    if heatmap is not None and heatmap.is_file():
        (out / heatmap.name).write_bytes(heatmap.read_bytes())
    if run_id:
        _log_card(uri, run_id, name, version, card_path, heatmap)
    if not verdict.passed:
        return PromotionOutcome(version, False, False, "blocked", "; ".join(verdict.reasons), card_path)
    try:
        result: PromotionResult = promote(
            name, version, mode=cfg.gate.mode, tracking_uri=uri, lock_uri=cfg.gate.lock_uri
        )
    except PromotionError as exc:
        logger.warning("promotion of %s version %s refused: %s", name, version, exc)
        return PromotionOutcome(version, True, False, "blocked", str(exc), card_path)
    return PromotionOutcome(version, True, result.action == "promoted", result.action, result.message, card_path)


def _log_card(uri: str, run_id: str, name: str, version: str, card: Path, heatmap: Path | None) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    artifact_path = f"model_card/v{version}"
    client.log_artifact(run_id, str(card), artifact_path=artifact_path)
    if heatmap is not None and heatmap.is_file():
        client.log_artifact(run_id, str(heatmap), artifact_path=artifact_path)
    run = client.get_run(run_id)
    client.set_model_version_tag(
        name, version, "equiseg.model_card", f"{run.info.artifact_uri}/{artifact_path}/model_card.md"
    )
