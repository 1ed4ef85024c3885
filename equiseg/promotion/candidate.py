"""The pipeline's registry step: register a gated candidate, serving-check it, write its model card, promote.

Every input is explicit (the verdict file, the heatmap, the data statistics): this module knows nothing of the
pipeline's run-folder layout. See docs/gate.md.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from equiseg.config import EquisegConfig, config_to_dict
from equiseg.promotion.aliases import PromotionError, PromotionResult, promote
from equiseg.promotion.gate import store_uri, tracker_on
from equiseg.promotion.model_card import build_model_card, write_model_card
from equiseg.promotion.serving import serving_check
from equiseg.promotion.verdict import GateVerdict, write_verdict
from equiseg.promotion.versions import TAG_SERVING, open_client, record_verdict, register_candidate, tag_model_card

__all__ = ["PromotionOutcome", "promote_candidate", "serving_options"]

logger = logging.getLogger(__name__)


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
    mlflow_run_id: str | None,
    verdict_path: Path,
    lineage: Mapping[str, str],
    out_dir: Path,
    tracking_uri: str | None = None,
    data_stats: Mapping[str, Any] | None = None,
    heatmap: Path | None = None,
) -> PromotionOutcome:
    """Register ``model_uri`` with lineage and verdict, serving-check the registered version, write and log its
    model card, then act according to ``gate.mode``.

    A failed gate or serving check still registers the version (for the audit trail) but moves no alias. A lost
    promotion race (:class:`~equiseg.promotion.aliases.ChampionMovedError`) is reported, not raised.

    Args:
        cfg: resolved config (``gate`` policy and model name, ``data`` for the card and the serving check).
        model_uri: the logged model to register.
        mlflow_run_id: the MLflow run that produced it; the card is logged there (``None`` or ``""``: not logged).
        verdict_path: the gate's ``gate.json`` for this candidate.
        lineage: lineage tags (dataset version, git commit, pipeline run id, config hash).
        out_dir: where ``model_card.md``, the heatmap copy and the registry's serving check go.
        tracking_uri: MLflow URI (default ``cfg.tracking.uri``).
        data_stats: data statistics shown on the card (e.g. the validation step's ``stats.json``).
        heatmap: the robustness heatmap figure shown on the card.
    """
    uri = store_uri(cfg, tracking_uri)
    mlflow_run_id = mlflow_run_id or None  # the pipeline passes "" when tracking was off
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    verdict = GateVerdict.from_json(Path(verdict_path).read_text())
    name = cfg.gate.model_name
    version = register_candidate(
        model_uri, model_name=name, verdict=verdict, lineage=lineage, mlflow_run_id=mlflow_run_id, tracking_uri=uri
    )
    if verdict.passed and cfg.gate.serving_check:
        verdict = _serving_recheck(cfg, uri, name, version, verdict, out)
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
    if mlflow_run_id:
        _log_card(cfg, uri, mlflow_run_id, name, version, card_path, heatmap)
    if not verdict.passed:
        return PromotionOutcome(version, False, False, "blocked", "; ".join(verdict.reasons), card_path)
    try:
        result: PromotionResult = promote(
            name,
            version,
            mode=cfg.gate.mode,
            tracking_uri=uri,
            lock_uri=cfg.gate.lock_uri,
            serving=serving_options(cfg),
        )
    except PromotionError as exc:
        logger.warning("promotion of %s version %s refused: %s", name, version, exc)
        return PromotionOutcome(version, True, False, "blocked", str(exc), card_path)
    return PromotionOutcome(version, True, result.action == "promoted", result.action, result.message, card_path)


def serving_options(cfg: EquisegConfig) -> dict[str, Any] | None:
    """Keyword arguments of the serving check from ``cfg.gate`` (``None`` when ``gate.serving_check`` is off)."""
    if not cfg.gate.serving_check:
        return None
    return {
        "image_size": cfg.data.image_size,
        "latency_budget_ms": cfg.gate.latency_budget_ms,
        "timeout_s": cfg.gate.serving_timeout_s,
        "seed": cfg.gate.seed,
    }


def _serving_recheck(
    cfg: EquisegConfig, uri: str, name: str, version: str, verdict: GateVerdict, out: Path
) -> GateVerdict:
    """Serving-check the registered ``models:/NAME/<version>``; its checks join the verdict as ``registry_*``."""
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
    open_client(uri).set_model_version_tag(name, version, TAG_SERVING, "true" if report.passed else "false")
    write_verdict(verdict, out)
    return verdict


def _log_card(
    cfg: EquisegConfig, uri: str, mlflow_run_id: str, name: str, version: str, card: Path, heatmap: Path | None
) -> None:
    """Log the card (and heatmap) to the candidate's run under ``model_card/v<version>/`` and tag the version."""
    tracker = tracker_on(cfg, uri)
    artifact_path = f"model_card/v{version}"
    tracker.log_to_run(mlflow_run_id, {}, artifacts=card, artifact_path=artifact_path)
    if heatmap is not None and heatmap.is_file():
        tracker.log_to_run(mlflow_run_id, {}, artifacts=heatmap, artifact_path=artifact_path)
    tag_model_card(name, version, f"runs:/{mlflow_run_id}/{artifact_path}/{card.name}", tracking_uri=uri)
