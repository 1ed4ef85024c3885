"""Alias moves on the MLflow Model Registry: promote, approve, rollback. Aliases only, never stages.

Every alias move happens under :func:`~equiseg.promotion.lock.promotion_lock` with a compare-and-set on the champion
version, and ``champion`` is always written LAST, after every tag, so a crash at any step leaves it on a version
that has a passing verdict. See docs/gate.md.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from mlflow import MlflowClient

from equiseg.promotion.guards import (
    Override,
    PromotionError,
    check_rollback,
    check_version_binding,
    ensure_serving,
    record_override,
)
from equiseg.promotion.lock import promotion_lock, resolve_lock_target
from equiseg.promotion.versions import (
    CHALLENGER,
    CHAMPION,
    PREVIOUS_CHAMPION,
    TAG_FAILED,
    TAG_MODE,
    TAG_VERDICT,
    alias_version,
    client_uri,
    open_client,
    read_verdict_tags,
    utc_now,
)

__all__ = [
    "PROMOTION_STEPS",
    "ChampionMovedError",
    "Override",
    "PromotionError",
    "PromotionResult",
    "approve",
    "promote",
    "rollback",
]

logger = logging.getLogger(__name__)

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
    override: Override | None = None,
    serving: Mapping[str, Any] | None = None,
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
        lock_uri: lock override (see :func:`~equiseg.promotion.lock.resolve_lock_target`).
        lock_timeout_s: how long to wait for a concurrent promotion.
        on_step: called with each completed step of :data:`PROMOTION_STEPS`.
        override: who and why, needed to promote a version that was rolled back (recorded as tags).
        serving: keyword arguments of :func:`~equiseg.promotion.serving.serving_check`; when given, the check runs
            on the registered version unless it already passed for it (``None``: not required).

    Raises:
        PromotionError: no passing verdict, a verdict that did not judge this version's checkpoint, a rollback
            without override, or a failed serving check.
        ChampionMovedError: the champion moved since the gate ran.
    """
    client = open_client(tracking_uri)
    mv = client.get_model_version(model_name, version)
    passed, compared_with = read_verdict_tags(mv)
    mode = mode or (mv.tags or {}).get(TAG_MODE) or "enabled"  # type: ignore[assignment]
    if expected_champion is _UNSET:
        expected_champion = compared_with
    if not passed:
        raise PromotionError(
            f"{model_name} version {version} has no passing gate verdict "
            f"(failed: {(mv.tags or {}).get(TAG_FAILED) or 'no verdict recorded'}); run `equiseg gate` and register "
            "the candidate with its verdict"
        )
    if serving is not None and mode != "dry_run":
        ensure_serving(client, model_name, version, client_uri(client), serving)
    if mode == "dry_run":
        champ = alias_version(client, model_name, CHAMPION)
        return PromotionResult(
            "none",
            model_name,
            version,
            champ,
            alias_version(client, model_name, PREVIOUS_CHAMPION),
            f"dry run: version {version} passed the gate and would replace champion {champ}; no alias moved",
        )
    if mode == "manual":
        return _with_lock(
            client,
            model_name,
            lock_uri,
            lock_timeout_s,
            lambda: _set_challenger(client, model_name, version, expected_champion, on_step, override),
            on_step,
        )
    return _with_lock(
        client,
        model_name,
        lock_uri,
        lock_timeout_s,
        lambda: _promote_locked(
            client, model_name, version, expected_champion, on_step, approver=None, override=override
        ),
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
    override_reason: str | None = None,
    serving: Mapping[str, Any] | None = None,
) -> PromotionResult:
    """Promote the ``challenger`` (or ``version``) after a human review; the same checks as :func:`promote`.

    With ``override_reason`` the approver may promote a version whose verdict failed (a blocked candidate) or that
    was rolled back; the verdict must still be bound to this version's checkpoint, and the override (approver,
    reason, time, kind) is recorded on the version and the registered model.

    Raises:
        PromotionError: nothing awaits approval, the version has no passing verdict and no override was given, or
            any refusal of :func:`promote`.
        ChampionMovedError: the champion moved since the gate ran (re-run the gate).
    """
    client = open_client(tracking_uri)
    version = version or alias_version(client, model_name, CHALLENGER)
    if version is None:
        raise PromotionError(
            f"{model_name} has no {CHALLENGER!r} alias: nothing awaits approval (promote in manual mode first, "
            "or pass --version)"
        )
    mv = client.get_model_version(model_name, version)
    passed, compared_with = read_verdict_tags(mv)
    override = Override(approver, override_reason) if override_reason else None
    if not (mv.tags or {}).get(TAG_VERDICT):
        raise PromotionError(f"{model_name} version {version} has no gate verdict at all; run `equiseg gate` first")
    if not passed and override is None:
        raise PromotionError(
            f"{model_name} version {version} has no passing gate verdict (failed: "
            f"{(mv.tags or {}).get(TAG_FAILED) or '?'}); to promote it anyway, approve with --override-reason '<why>'"
        )
    if serving is not None:
        ensure_serving(client, model_name, version, client_uri(client), serving)
    if expected_champion is _UNSET:
        expected_champion = compared_with
    return _with_lock(
        client,
        model_name,
        lock_uri,
        lock_timeout_s,
        lambda: _promote_locked(
            client, model_name, version, expected_champion, on_step, approver=approver, override=override
        ),
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
    client = open_client(tracking_uri)

    def locked() -> PromotionResult:
        current = alias_version(client, model_name, CHAMPION)
        previous = alias_version(client, model_name, PREVIOUS_CHAMPION)
        if previous is None or previous == current:
            raise PromotionError(
                f"{model_name} has no {PREVIOUS_CHAMPION!r} version to roll back to (champion: {current}); "
                "promote an earlier version explicitly instead"
            )
        when = utc_now()
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
    target = resolve_lock_target(client_uri(client), lock_uri)
    with promotion_lock(target, model_name, timeout_s=timeout_s):
        if on_step:
            on_step("locked")
        return body()


def _compare_and_check(client: MlflowClient, model_name: str, version: str, expected: str | None) -> str | None:
    """Current champion, after checking it equals ``expected``; raises :class:`ChampionMovedError` otherwise."""
    current = alias_version(client, model_name, CHAMPION)
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
    override: Override | None = None,
) -> PromotionResult:
    step = on_step or (lambda _name: None)
    current = alias_version(client, model_name, CHAMPION)
    if current == version:  # idempotent: a retry after a crash past the last alias write
        if alias_version(client, model_name, CHALLENGER) == version:
            client.delete_registered_model_alias(model_name, CHALLENGER)
        return PromotionResult(
            "none",
            model_name,
            version,
            current,
            alias_version(client, model_name, PREVIOUS_CHAMPION),
            f"version {version} is already the champion",
        )
    current = _compare_and_check(client, model_name, version, expected)
    mv = client.get_model_version(model_name, version)  # re-read under the lock
    passed = read_verdict_tags(mv)[0]
    if not passed and override is None:
        raise PromotionError(f"{model_name} version {version} lost its passing verdict; refusing to promote")
    check_version_binding(client, model_name, version, mv)
    rolled_back = check_rollback(model_name, version, mv, override)
    step("verified")
    if override is not None and (rolled_back or not passed):
        record_override(client, model_name, version, override, "rolled_back" if rolled_back else "blocked_verdict")
    when = utc_now()
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
    if alias_version(client, model_name, CHALLENGER) == version:
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
    client: MlflowClient,
    model_name: str,
    version: str,
    expected: str | None,
    on_step: StepHook | None,
    override: Override | None,
) -> PromotionResult:
    current = _compare_and_check(client, model_name, version, expected)
    mv = client.get_model_version(model_name, version)
    check_version_binding(client, model_name, version, mv)
    check_rollback(model_name, version, mv, override)
    if on_step:
        on_step("verified")
    client.set_model_version_tag(model_name, version, "equiseg.awaiting_approval_since", utc_now())
    client.set_registered_model_alias(model_name, CHALLENGER, version)
    return PromotionResult(
        "challenger",
        model_name,
        version,
        current,
        alias_version(client, model_name, PREVIOUS_CHAMPION),
        f"version {version} passed and is the challenger; run `equiseg registry approve` to make it champion",
    )
