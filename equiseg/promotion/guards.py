"""What every alias move checks besides the verdict: its binding, rollbacks, the serving check, and overrides.

* The version's checkpoint artifact must have the digest its verdict judged (:mod:`equiseg.promotion.binding`).
* A version that was rolled back returns only with an explicit :class:`Override` (who, why), recorded as tags.
* The serving check must have passed for *that registered version*; ``promote`` runs it when it has not (a version
  killed mid-registration carries a passing verdict but no serving check).
* A blocked candidate becomes champion only through ``approve`` with an :class:`Override`, recorded the same way.

See docs/gate.md, "Overrides and rollback".
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion

from equiseg.promotion.serving import serving_check
from equiseg.promotion.versions import TAG_DIGEST, TAG_SERVING, utc_now
from equiseg.tracking import checkpoint_sha256

__all__ = ["Override", "PromotionError", "check_rollback", "check_version_binding", "ensure_serving", "record_override"]

TAG_ROLLED_BACK = "equiseg.rolled_back_at"
TAG_ROLLBACK_REASON = "equiseg.rollback_reason"


class PromotionError(RuntimeError):
    """A promotion, approval or rollback was refused; the message says why and what to do."""


@dataclass(frozen=True)
class Override:
    """An explicit human decision to act against a rollback or a blocked verdict.

    Attributes:
        by: who decides (recorded as ``equiseg.override.by``).
        reason: why (recorded as ``equiseg.override.reason``); must not be empty.
    """

    by: str
    reason: str

    def __post_init__(self) -> None:
        if not self.by.strip() or not self.reason.strip():
            raise ValueError("an override needs both who (--approver) and why (--override-reason), non-empty")


def check_version_binding(client: MlflowClient, model_name: str, version: str, mv: ModelVersion) -> None:
    """Refuse a version whose checkpoint artifact is not the one its verdict judged (or has no recorded digest)."""
    bound = (mv.tags or {}).get(TAG_DIGEST, "")
    if not bound:
        raise PromotionError(
            f"{model_name} version {version} has a verdict that records no candidate digest, so it cannot be tied to "
            "this version's checkpoint; re-run `equiseg gate` on it and register it with the new gate.json"
        )
    del client  # the registry URI is already configured by open_client; the artifact is read through it
    actual = checkpoint_sha256(f"models:/{model_name}/{version}")
    if actual != bound:
        raise PromotionError(
            f"{model_name} version {version}: its checkpoint (sha256 {actual[:12]}…) is not the one its verdict judged "
            f"({bound[:12]}…); a verdict applies only to the model it judged"
        )


def check_rollback(model_name: str, version: str, mv: ModelVersion, override: Override | None) -> str | None:
    """``None`` if the version was never rolled back; the rollback record if it was and ``override`` is given.

    Raises:
        PromotionError: the version was rolled back and no override was given.
    """
    tags = mv.tags or {}
    when = tags.get(TAG_ROLLED_BACK)
    if not when:
        return None
    if override is None:
        raise PromotionError(
            f"{model_name} version {version} was rolled back at {when} ({tags.get(TAG_ROLLBACK_REASON, 'no reason')}); "
            "promote it again only with an explicit override: `equiseg registry promote --version "
            f"{version} --approver <who> --override-reason <why>`"
        )
    return f"rolled back at {when}: {tags.get(TAG_ROLLBACK_REASON, '')}"


def ensure_serving(
    client: MlflowClient, model_name: str, version: str, tracking_uri: str, options: Mapping[str, Any]
) -> None:
    """Run the serving check on ``models:/NAME/<version>`` unless it already passed for that version.

    Raises:
        PromotionError: the serving check fails (the version is tagged ``equiseg.serving.passed=false``).
    """
    if (client.get_model_version(model_name, version).tags or {}).get(TAG_SERVING) == "true":
        return
    report = serving_check(f"models:/{model_name}/{version}", tracking_uri=tracking_uri, **dict(options))
    client.set_model_version_tag(model_name, version, TAG_SERVING, "true" if report.passed else "false")
    if not report.passed:
        failed = [c.reason for c in report.to_checks() if not c.passed]
        raise PromotionError(f"{model_name} version {version} fails the serving check: {'; '.join(failed)}")


def record_override(client: MlflowClient, model_name: str, version: str, override: Override, kind: str) -> None:
    """Tag the version (``equiseg.override.*``) and the registered model (``equiseg.last_override``)."""
    when = utc_now()
    for key, value in (("by", override.by), ("reason", override.reason), ("at", when), ("kind", kind)):
        client.set_model_version_tag(model_name, version, f"equiseg.override.{key}", value)
    record = {"version": version, "by": override.by, "reason": override.reason, "at": when, "kind": kind}
    client.set_registered_model_tag(model_name, "equiseg.last_override", json.dumps(record))
