"""MLflow model-registry operations: register, promote, approve, rollback, list. Aliases only, never stages.

Aliases: ``champion`` (serving), ``previous_champion`` (rollback target), ``challenger`` (awaiting approval in
``manual`` mode). Every alias move happens under :func:`~equiseg.registry.lock.promotion_lock` with a
compare-and-set on the champion version, and ``champion`` is always written LAST, after every tag, so a crash at
any step leaves it on a version that has a passing verdict. See docs/gate.md.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from equiseg.registry.lock import promotion_lock, resolve_lock_target
from equiseg.registry.policy import GateVerdict

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

__all__ = [
    "CHALLENGER",
    "CHAMPION",
    "PREVIOUS_CHAMPION",
    "PROMOTION_STEPS",
    "ChampionMovedError",
    "PromotionError",
    "PromotionResult",
    "VersionSummary",
    "approve",
    "audit_registry",
    "get_alias_version",
    "list_versions",
    "promote",
    "record_verdict",
    "register_candidate",
    "rollback",
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
LINEAGE_PREFIX = "equiseg.lineage."
METRIC_PREFIX = "equiseg.metric."
LINEAGE_KEYS = ("dataset_version", "git_commit", "pipeline_run_id", "config_hash")
_MAX_TAG_CHARS = 90_000

#: Steps of a promotion, reported to ``on_step`` after each completes (the SIGKILL tests stop at every one).
PROMOTION_STEPS: tuple[str, ...] = (
    "locked",
    "verified",
    "candidate_tagged",
    "previous_tagged",
    "previous_alias_set",
    "champion_alias_set",
    "challenger_cleared",
)

StepHook = Callable[[str], None]


class PromotionError(RuntimeError):
    """A promotion, approval or rollback was refused; the message says why and what to do."""


class ChampionMovedError(PromotionError):
    """The champion changed since the gate scored against it (the compare-and-set failed)."""


@dataclass(frozen=True)
class PromotionResult:
    """What a promotion, approval or rollback did.

    Attributes:
        action: ``promoted`` (champion moved), ``challenger`` (manual mode: waits for approve), ``none``
            (dry run or already champion) or ``rolled_back``.
        model_name: registered model name.
        version: the version acted on.
        champion: the champion version afterwards (``None`` if there is none).
        previous_champion: the previous_champion version afterwards.
        message: what happened, in plain words.
    """

    action: Literal["promoted", "challenger", "none", "rolled_back"]
    model_name: str
    version: str
    champion: str | None
    previous_champion: str | None
    message: str


@dataclass(frozen=True)
class VersionSummary:
    """One registered version for ``equiseg registry list``."""

    version: str
    aliases: list[str]
    run_id: str | None
    source: str
    created_at: str
    gate_passed: bool | None
    gate_mode: str | None
    failed_checks: list[str]
    metrics: dict[str, float] = field(default_factory=dict)
    lineage: dict[str, str] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------------------------------
# Client helpers
# --------------------------------------------------------------------------------------------------------------------


def _client(tracking_uri: str | None) -> MlflowClient:
    import mlflow
    from mlflow import MlflowClient

    from equiseg.tracking import configure_store

    uri = tracking_uri or mlflow.get_tracking_uri()
    # Registering a `models:/m-<id>` source resolves the logged model through the *global* tracking URI, so a fresh
    # process (a pipeline step) must point it at the same store or MLflow looks in ./mlflow.db and fails.
    configure_store(uri)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _uri(client: MlflowClient) -> str:
    return str(client._registry_uri)


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def get_alias_version(model_name: str, alias: str, *, tracking_uri: str | None = None) -> str | None:
    """Version number behind ``models:/<model_name>@<alias>``, or ``None`` if the alias or model does not exist."""
    return _alias(_client(tracking_uri), model_name, alias)


def _alias(client: MlflowClient, model_name: str, alias: str) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(model_name, alias).version)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"):
            return None
        raise


def _ensure_registered_model(client: MlflowClient, model_name: str) -> None:
    from mlflow.exceptions import MlflowException

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
    }
    for key, value in verdict.candidate_metrics.items():
        tags[METRIC_PREFIX + key] = f"{value:.4f}"
    return tags


# --------------------------------------------------------------------------------------------------------------------
# Register and record
# --------------------------------------------------------------------------------------------------------------------


def register_candidate(
    model_uri: str,
    *,
    model_name: str,
    verdict: GateVerdict | None = None,
    lineage: Mapping[str, str] | None = None,
    run_id: str | None = None,
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
        run_id: the MLflow run that produced the model (filled from the logged model when omitted).
        tracking_uri: MLflow tracking/registry URI (default: the current one).

    Returns:
        The new version number as a string.
    """
    client = _client(tracking_uri)
    _ensure_registered_model(client, model_name)
    model_id = None
    if model_uri.startswith("models:/m-"):
        model_id = model_uri.removeprefix("models:/").split("/")[0]
        if run_id is None:
            run_id = client.get_logged_model(model_id).source_run_id
    elif model_uri.startswith("runs:/") and run_id is None:
        run_id = model_uri.removeprefix("runs:/").split("/")[0]
    tags = {LINEAGE_PREFIX + k.removeprefix("equiseg."): str(v) for k, v in (lineage or {}).items()}
    mv = client.create_model_version(model_name, source=model_uri, run_id=run_id, tags=tags, model_id=model_id)
    version = str(mv.version)
    if verdict is not None:
        record_verdict(model_name, version, verdict, tracking_uri=_uri(client))
    logger.info("registered %s as %s version %s", model_uri, model_name, version)
    return version


def record_verdict(model_name: str, version: str, verdict: GateVerdict, *, tracking_uri: str | None = None) -> None:
    """Write the gate verdict of ``version`` as model-version tags (``equiseg.gate.*``, ``equiseg.metric.*``)."""
    client = _client(tracking_uri)
    for key, value in _verdict_tags(verdict).items():
        client.set_model_version_tag(model_name, version, key, value)


def _read_verdict_tags(mv: ModelVersion) -> tuple[bool, str | None]:
    """(passed, champion version it was compared with) from a model version's tags."""
    tags = mv.tags or {}
    passed = tags.get(TAG_PASSED) == "true" and bool(tags.get(TAG_VERDICT))
    return passed, (tags.get(TAG_COMPARED_WITH) or None)


# --------------------------------------------------------------------------------------------------------------------
# Promote, approve, rollback
# --------------------------------------------------------------------------------------------------------------------

_UNSET: Any = object()


def promote(
    model_name: str,
    version: str,
    *,
    mode: Literal["enabled", "dry_run", "manual"] | None = None,
    expected_champion: str | None = _UNSET,
    tracking_uri: str | None = None,
    lock_uri: str = "",
    lock_timeout_s: float = 120.0,
    on_step: StepHook | None = None,
) -> PromotionResult:
    """Act on a gated version according to the mode: move ``champion`` (enabled), set ``challenger`` (manual) or
    nothing (dry_run).

    Under the promotion lock: the version must carry a passing verdict, and the current champion must equal
    ``expected_champion`` (default: the champion the verdict was scored against), otherwise
    :class:`ChampionMovedError`. Then tags are written, ``previous_champion`` is set to the old champion and
    ``champion`` is set to ``version`` as the last write.

    Args:
        model_name: registered model name.
        version: version to promote.
        mode: ``enabled``, ``dry_run`` or ``manual``; default: the mode recorded in the verdict.
        expected_champion: compare-and-set value (``None`` = no champion may exist yet).
        tracking_uri: MLflow tracking/registry URI.
        lock_uri: lock override (see :func:`~equiseg.registry.lock.resolve_lock_target`).
        lock_timeout_s: how long to wait for a concurrent promotion.
        on_step: called with each completed step of :data:`PROMOTION_STEPS`.

    Raises:
        PromotionError: no passing verdict on the version.
        ChampionMovedError: the champion moved since the gate ran.
    """
    client = _client(tracking_uri)
    mv = client.get_model_version(model_name, version)
    passed, compared_with = _read_verdict_tags(mv)
    mode = mode or (mv.tags or {}).get(TAG_MODE) or "enabled"  # type: ignore[assignment]
    if expected_champion is _UNSET:
        expected_champion = compared_with
    if not passed:
        raise PromotionError(
            f"{model_name} version {version} has no passing gate verdict "
            f"(failed: {(mv.tags or {}).get(TAG_FAILED) or 'no verdict recorded'}); run `equiseg gate` and register "
            "the candidate with its verdict"
        )
    if mode == "dry_run":
        champ = _alias(client, model_name, CHAMPION)
        return PromotionResult(
            "none",
            model_name,
            version,
            champ,
            _alias(client, model_name, PREVIOUS_CHAMPION),
            f"dry run: version {version} passed the gate and would replace champion {champ}; no alias moved",
        )
    if mode == "manual":
        return _with_lock(
            client,
            model_name,
            lock_uri,
            lock_timeout_s,
            lambda: _set_challenger(client, model_name, version, expected_champion, on_step),
            on_step,
        )
    return _with_lock(
        client,
        model_name,
        lock_uri,
        lock_timeout_s,
        lambda: _promote_locked(client, model_name, version, expected_champion, on_step, approver=None),
        on_step,
    )


def approve(
    model_name: str,
    version: str | None = None,
    *,
    approver: str,
    expected_champion: str | None = _UNSET,
    tracking_uri: str | None = None,
    lock_uri: str = "",
    lock_timeout_s: float = 120.0,
    on_step: StepHook | None = None,
) -> PromotionResult:
    """Promote the ``challenger`` (or ``version``) after a human review; the same checks as :func:`promote`.

    Raises:
        PromotionError: nothing awaits approval, or the version has no passing verdict.
        ChampionMovedError: the champion moved since the gate ran (re-run the gate).
    """
    client = _client(tracking_uri)
    version = version or _alias(client, model_name, CHALLENGER)
    if version is None:
        raise PromotionError(
            f"{model_name} has no {CHALLENGER!r} alias: nothing awaits approval (promote in manual mode first, "
            "or pass --version)"
        )
    mv = client.get_model_version(model_name, version)
    passed, compared_with = _read_verdict_tags(mv)
    if not passed:
        raise PromotionError(f"{model_name} version {version} has no passing gate verdict; it cannot be approved")
    if expected_champion is _UNSET:
        expected_champion = compared_with
    return _with_lock(
        client,
        model_name,
        lock_uri,
        lock_timeout_s,
        lambda: _promote_locked(client, model_name, version, expected_champion, on_step, approver=approver),
        on_step,
    )


def rollback(
    model_name: str,
    *,
    reason: str,
    tracking_uri: str | None = None,
    lock_uri: str = "",
    lock_timeout_s: float = 120.0,
) -> PromotionResult:
    """Move ``champion`` back to ``previous_champion`` and record who/why as tags; ``previous_champion`` is cleared.

    Raises:
        PromotionError: there is no previous champion to return to.
    """
    client = _client(tracking_uri)

    def locked() -> PromotionResult:
        current = _alias(client, model_name, CHAMPION)
        previous = _alias(client, model_name, PREVIOUS_CHAMPION)
        if previous is None or previous == current:
            raise PromotionError(
                f"{model_name} has no {PREVIOUS_CHAMPION!r} version to roll back to (champion: {current}); "
                "promote an earlier version explicitly instead"
            )
        when = _now()
        record = json.dumps({"from": current, "to": previous, "at": when, "reason": reason})
        if current is not None:
            client.set_model_version_tag(model_name, current, "equiseg.rolled_back_at", when)
            client.set_model_version_tag(model_name, current, "equiseg.rollback_reason", reason)
        client.set_model_version_tag(model_name, previous, "equiseg.restored_at", when)
        client.set_registered_model_tag(model_name, "equiseg.last_rollback", record)
        client.set_registered_model_alias(model_name, CHAMPION, previous)
        client.delete_registered_model_alias(model_name, PREVIOUS_CHAMPION)
        logger.warning("rolled back %s champion %s -> %s: %s", model_name, current, previous, reason)
        return PromotionResult(
            "rolled_back", model_name, previous, previous, None, f"champion {current} -> {previous} ({reason})"
        )

    return _with_lock(client, model_name, lock_uri, lock_timeout_s, locked, None)


def _with_lock(
    client: MlflowClient,
    model_name: str,
    lock_uri: str,
    timeout_s: float,
    body: Callable[[], PromotionResult],
    on_step: StepHook | None,
) -> PromotionResult:
    target = resolve_lock_target(_uri(client), lock_uri)
    with promotion_lock(target, model_name, timeout_s=timeout_s):
        if on_step:
            on_step("locked")
        return body()


def _compare_and_check(client: MlflowClient, model_name: str, version: str, expected: str | None) -> str | None:
    """Current champion, after checking it equals ``expected``; raises :class:`ChampionMovedError` otherwise."""
    current = _alias(client, model_name, CHAMPION)
    if current != expected:
        raise ChampionMovedError(
            f"{model_name}: the champion is version {current} but version {version} was gated against "
            f"{expected if expected is not None else 'no champion'}; another promotion won the race. Re-run "
            "`equiseg gate` so the candidate is compared with the current champion"
        )
    return current


def _promote_locked(
    client: MlflowClient,
    model_name: str,
    version: str,
    expected: str | None,
    on_step: StepHook | None,
    *,
    approver: str | None,
) -> PromotionResult:
    step = on_step or (lambda _name: None)
    current = _alias(client, model_name, CHAMPION)
    if current == version:  # idempotent: a retry after a crash past the last alias write
        if _alias(client, model_name, CHALLENGER) == version:
            client.delete_registered_model_alias(model_name, CHALLENGER)
        return PromotionResult(
            "none",
            model_name,
            version,
            current,
            _alias(client, model_name, PREVIOUS_CHAMPION),
            f"version {version} is already the champion",
        )
    current = _compare_and_check(client, model_name, version, expected)
    mv = client.get_model_version(model_name, version)  # re-read under the lock
    if not _read_verdict_tags(mv)[0]:
        raise PromotionError(f"{model_name} version {version} lost its passing verdict; refusing to promote")
    step("verified")
    when = _now()
    client.set_model_version_tag(model_name, version, "equiseg.promoted_at", when)
    client.set_model_version_tag(model_name, version, "equiseg.promoted_over", current or "")
    if approver:
        client.set_model_version_tag(model_name, version, "equiseg.approved_by", approver)
    step("candidate_tagged")
    if current is not None:
        client.set_model_version_tag(model_name, current, "equiseg.replaced_at", when)
        client.set_model_version_tag(model_name, current, "equiseg.replaced_by", version)
    step("previous_tagged")
    if current is not None:
        client.set_registered_model_alias(model_name, PREVIOUS_CHAMPION, current)
    step("previous_alias_set")
    client.set_registered_model_alias(model_name, CHAMPION, version)  # the last write that matters
    step("champion_alias_set")
    if _alias(client, model_name, CHALLENGER) == version:
        client.delete_registered_model_alias(model_name, CHALLENGER)
    step("challenger_cleared")
    logger.info("promoted %s version %s (previous champion %s)", model_name, version, current)
    return PromotionResult(
        "promoted",
        model_name,
        version,
        version,
        current,
        f"version {version} is now champion" + (f"; previous champion {current}" if current else " (first champion)"),
    )


def _set_challenger(
    client: MlflowClient, model_name: str, version: str, expected: str | None, on_step: StepHook | None
) -> PromotionResult:
    current = _compare_and_check(client, model_name, version, expected)
    if on_step:
        on_step("verified")
    client.set_model_version_tag(model_name, version, "equiseg.awaiting_approval_since", _now())
    client.set_registered_model_alias(model_name, CHALLENGER, version)
    return PromotionResult(
        "challenger",
        model_name,
        version,
        current,
        _alias(client, model_name, PREVIOUS_CHAMPION),
        f"version {version} passed and is the challenger; run `equiseg registry approve` to make it champion",
    )


# --------------------------------------------------------------------------------------------------------------------
# Inspect
# --------------------------------------------------------------------------------------------------------------------


def list_versions(model_name: str, *, tracking_uri: str | None = None) -> list[VersionSummary]:
    """All versions of ``model_name``, newest first, with aliases, key metrics, lineage and verdicts."""
    client = _client(tracking_uri)
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
                run_id=mv.run_id,
                source=str(mv.source),
                created_at=dt.datetime.fromtimestamp(mv.creation_timestamp / 1000, dt.UTC).isoformat(
                    timespec="seconds"
                ),
                gate_passed=None if passed is None else passed == "true",
                gate_mode=tags.get(TAG_MODE),
                failed_checks=[c for c in tags.get(TAG_FAILED, "").split(",") if c],
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
    client = _client(tracking_uri)
    problems = []
    for alias in (CHAMPION, PREVIOUS_CHAMPION, CHALLENGER):
        ver = _alias(client, model_name, alias)
        if ver is None:
            continue
        if not _read_verdict_tags(client.get_model_version(model_name, ver))[0]:
            problems.append(f"{alias} points at version {ver}, which has no passing gate verdict")
    return problems
