"""MLflow Model Registry versions: register a candidate with lineage and verdict tags, read aliases, list, audit.

Aliases: ``champion`` (serving), ``previous_champion`` (rollback target), ``challenger`` (awaiting approval in
``manual`` mode); they move only in :mod:`equiseg.promotion.aliases`. A version may be promoted only with a passing
verdict recorded here as tags (``equiseg.gate.*``). See docs/gate.md.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

import mlflow
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from equiseg.promotion.binding import check_binding
from equiseg.promotion.verdict import GateVerdict
from equiseg.tracking import configure_store

__all__ = [
    "CHALLENGER",
    "CHAMPION",
    "PREVIOUS_CHAMPION",
    "VersionSummary",
    "audit_registry",
    "get_alias_version",
    "list_versions",
    "record_verdict",
    "register_candidate",
    "tag_model_card",
]

logger = logging.getLogger(__name__)

CHAMPION = "champion"
PREVIOUS_CHAMPION = "previous_champion"
CHALLENGER = "challenger"

TAG_PASSED = "equiseg.gate.passed"
TAG_MODE = "equiseg.gate.mode"
TAG_FIRST_RUN = "equiseg.gate.first_run"
TAG_COMPARED_WITH = "equiseg.gate.champion_version"
TAG_FAILED = "equiseg.gate.failed_checks"
TAG_VERDICT = "equiseg.gate.verdict"
TAG_DIGEST = "equiseg.gate.candidate_digest"
TAG_CHECKPOINT = "equiseg.checkpoint_sha256"
TAG_SERVING = "equiseg.serving.passed"
TAG_MODEL_CARD = "equiseg.model_card"
LINEAGE_PREFIX = "equiseg.lineage."
METRIC_PREFIX = "equiseg.metric."
LINEAGE_KEYS = ("dataset_version", "git_commit", "pipeline_run_id", "config_hash")
_MAX_TAG_CHARS = 90_000


@dataclass(frozen=True)
class VersionSummary:
    """One registered version for ``equiseg registry list``."""

    version: str
    aliases: list[str]
    mlflow_run_id: str | None
    source: str
    created_at: str
    gate_passed: bool | None
    gate_mode: str | None
    failed_checks: list[str]
    metrics: dict[str, float] = field(default_factory=dict)
    serving_passed: bool | None = None  # None: the serving check never ran on this registered version
    lineage: dict[str, str] = field(default_factory=dict)


def open_client(tracking_uri: str | None) -> MlflowClient:
    """A client on one store for runs and registry (default: the current tracking URI)."""
    uri = tracking_uri or mlflow.get_tracking_uri()
    # Registering a `models:/m-<id>` source resolves the logged model through the *global* tracking URI, so a fresh
    # process (a pipeline step) must point it at the same store or MLflow looks in ./mlflow.db and fails.
    configure_store(uri)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def client_uri(client: MlflowClient) -> str:
    """The registry URI a client talks to."""
    return str(client._registry_uri)


def utc_now() -> str:
    """ISO-8601 UTC time, seconds resolution (the time stamps of the ``equiseg.*`` tags)."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def get_alias_version(model_name: str, alias: str, *, tracking_uri: str | None = None) -> str | None:
    """Version number behind ``models:/<model_name>@<alias>``, or ``None`` if the alias or model does not exist."""
    return alias_version(open_client(tracking_uri), model_name, alias)


def alias_version(client: MlflowClient, model_name: str, alias: str) -> str | None:
    """:func:`get_alias_version` with an open client."""
    try:
        return str(client.get_model_version_by_alias(model_name, alias).version)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"):
            return None
        raise


def _ensure_registered_model(client: MlflowClient, model_name: str) -> None:
    try:
        client.create_registered_model(model_name, description="equiseg segmentation model (robustness-gated)")
    except MlflowException as exc:
        if exc.error_code not in ("RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS"):
            raise


def _verdict_tags(verdict: GateVerdict) -> dict[str, str]:
    payload = verdict.to_dict()
    text = json.dumps(payload, separators=(",", ":"))
    if len(text) > _MAX_TAG_CHARS:  # keep the decision, drop the per-slice tables
        payload = {k: v for k, v in payload.items() if k not in ("candidate_slices", "champion_slices", "checks")}
        text = json.dumps(payload, separators=(",", ":"))
    tags = {
        TAG_PASSED: "true" if verdict.passed else "false",
        TAG_MODE: verdict.mode,
        TAG_FIRST_RUN: "true" if verdict.first_run else "false",
        TAG_COMPARED_WITH: verdict.champion_version or "",
        TAG_FAILED: ",".join(c.name for c in verdict.failed_checks)[:4000],
        TAG_VERDICT: text,
        TAG_DIGEST: verdict.candidate_digest,
    }
    for key, value in verdict.candidate_metrics.items():
        tags[METRIC_PREFIX + key] = f"{value:.4f}"
    return tags


def register_candidate(
    model_uri: str,
    *,
    model_name: str,
    verdict: GateVerdict | None = None,
    lineage: Mapping[str, str] | None = None,
    mlflow_run_id: str | None = None,
    tracking_uri: str | None = None,
) -> str:
    """Register ``model_uri`` as a new version of ``model_name`` with lineage and (optionally) gate-verdict tags.

    No alias moves. Lineage keys are free-form; the pipeline passes ``dataset_version``, ``git_commit``,
    ``pipeline_run_id`` and ``config_hash``. Without a verdict the version cannot be promoted until
    :func:`record_verdict` attaches a passing one.

    Args:
        model_uri: a logged model (``models:/m-<id>``, ``runs:/<run>/model``) or an artifact location.
        model_name: registered model name (``gate.model_name``).
        verdict: the gate verdict for this candidate.
        lineage: lineage tags, written as ``equiseg.lineage.<key>``.
        mlflow_run_id: the MLflow run that produced the model (filled from the logged model when omitted).
        tracking_uri: MLflow tracking/registry URI (default: the current one).

    Returns:
        The new version number as a string.

    Raises:
        VerdictMismatchError: ``verdict`` did not judge this model (its checkpoint digest or logged-model id
            differs, or it records none); nothing is registered.
    """
    client = open_client(tracking_uri)
    digest = check_binding(verdict, model_uri) if verdict is not None else ""
    _ensure_registered_model(client, model_name)
    model_id = None
    if model_uri.startswith("models:/m-"):
        model_id = model_uri.removeprefix("models:/").split("/")[0]
        if mlflow_run_id is None:
            mlflow_run_id = client.get_logged_model(model_id).source_run_id
    elif model_uri.startswith("runs:/") and mlflow_run_id is None:
        mlflow_run_id = model_uri.removeprefix("runs:/").split("/")[0]
    tags = {LINEAGE_PREFIX + k.removeprefix("equiseg."): str(v) for k, v in (lineage or {}).items()}
    if digest:
        tags[TAG_CHECKPOINT] = digest
    mv = client.create_model_version(model_name, source=model_uri, run_id=mlflow_run_id, tags=tags, model_id=model_id)
    version = str(mv.version)
    if verdict is not None:
        record_verdict(model_name, version, verdict, tracking_uri=client_uri(client))
    logger.info("registered %s as %s version %s", model_uri, model_name, version)
    return version


def record_verdict(model_name: str, version: str, verdict: GateVerdict, *, tracking_uri: str | None = None) -> None:
    """Write the gate verdict of ``version`` as model-version tags (``equiseg.gate.*``, ``equiseg.metric.*``)."""
    client = open_client(tracking_uri)
    for key, value in _verdict_tags(verdict).items():
        client.set_model_version_tag(model_name, version, key, value)


def tag_model_card(model_name: str, version: str, card_uri: str, *, tracking_uri: str | None = None) -> None:
    """Point the version tag ``equiseg.model_card`` at the logged model card (e.g. a ``runs:/`` artifact URI)."""
    open_client(tracking_uri).set_model_version_tag(model_name, version, TAG_MODEL_CARD, card_uri)


def read_verdict_tags(mv: ModelVersion) -> tuple[bool, str | None]:
    """(passed, champion version it was compared with) from a model version's tags."""
    tags = mv.tags or {}
    passed = tags.get(TAG_PASSED) == "true" and bool(tags.get(TAG_VERDICT))
    return passed, (tags.get(TAG_COMPARED_WITH) or None)


def list_versions(model_name: str, *, tracking_uri: str | None = None) -> list[VersionSummary]:
    """All versions of ``model_name``, newest first, with aliases, key metrics, lineage and verdicts."""
    client = open_client(tracking_uri)
    escaped = model_name.replace("'", "\\'")
    versions = list(client.search_model_versions(f"name = '{escaped}'"))
    aliases: dict[str, list[str]] = {}
    try:
        for alias, ver in (client.get_registered_model(model_name).aliases or {}).items():
            aliases.setdefault(str(ver), []).append(alias)
    except Exception:  # the model does not exist yet
        return []
    out = []
    for mv in sorted(versions, key=lambda m: int(m.version), reverse=True):
        tags = mv.tags or {}
        passed = tags.get(TAG_PASSED)
        out.append(
            VersionSummary(
                version=str(mv.version),
                aliases=sorted(aliases.get(str(mv.version), [])),
                mlflow_run_id=mv.run_id,
                source=str(mv.source),
                created_at=dt.datetime.fromtimestamp(mv.creation_timestamp / 1000, dt.UTC).isoformat(
                    timespec="seconds"
                ),
                gate_passed=None if passed is None else passed == "true",
                gate_mode=tags.get(TAG_MODE),
                failed_checks=[c for c in tags.get(TAG_FAILED, "").split(",") if c],
                serving_passed=None if TAG_SERVING not in tags else tags[TAG_SERVING] == "true",
                metrics={
                    k.removeprefix(METRIC_PREFIX): float(v) for k, v in tags.items() if k.startswith(METRIC_PREFIX)
                },
                lineage={k.removeprefix(LINEAGE_PREFIX): v for k, v in tags.items() if k.startswith(LINEAGE_PREFIX)},
            )
        )
    return out


def audit_registry(model_name: str, *, tracking_uri: str | None = None) -> list[str]:
    """Problems with the aliases of ``model_name`` (empty when consistent).

    Consistent means: ``champion``, ``previous_champion`` and ``challenger`` each point at a version with a passing
    gate verdict. (``previous_champion == champion`` is a harmless state left by a crash between the two alias
    writes of a promotion; re-running the promotion completes it.)
    """
    client = open_client(tracking_uri)
    problems = []
    for alias in (CHAMPION, PREVIOUS_CHAMPION, CHALLENGER):
        ver = alias_version(client, model_name, alias)
        if ver is None:
            continue
        if not read_verdict_tags(client.get_model_version(model_name, ver))[0]:
            problems.append(f"{alias} points at version {ver}, which has no passing gate verdict")
    return problems
