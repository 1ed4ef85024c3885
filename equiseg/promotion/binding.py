"""Verdicts bound to what they judged: the candidate's checkpoint digest, logged-model id, data and policy.

A ``gate.json`` names its candidate by more than a path: :func:`bind_verdict` records the sha256 of the checkpoint
the gate scored (a logged model carries a byte copy of it), the logged-model id, the manifest digest and the policy
hash. :func:`check_binding` is what ``register`` and ``promote`` call: a verdict whose digest differs from the
model's own checkpoint artifact is refused, so one run's pass cannot make another model champion (docs/gate.md).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

from equiseg.promotion.verdict import GateVerdict
from equiseg.tracking import checkpoint_sha256, logged_model_id

__all__ = ["VerdictMismatchError", "bind_verdict", "check_binding", "file_sha256", "policy_hash"]


class VerdictMismatchError(ValueError):
    """A verdict was offered for a model it did not judge (or it records no candidate digest)."""


def file_sha256(path: str | Path) -> str:
    """``sha256:<hex>`` of a file (the data version of a manifest)."""
    return "sha256:" + hashlib.sha256(Path(path).read_bytes()).hexdigest()


def policy_hash(policy: Any) -> str:
    """sha256 (16 hex) of a policy dataclass or dict, key order independent."""
    is_instance = dataclasses.is_dataclass(policy) and not isinstance(policy, type)
    raw = dataclasses.asdict(policy) if is_instance else dict(policy)
    return hashlib.sha256(json.dumps(raw, sort_keys=True, default=str).encode()).hexdigest()[:16]


def bind_verdict(
    verdict: GateVerdict,
    *,
    candidate: str,
    model_uri: str | None = None,
    manifest: str | Path | None = None,
    policy: Any = None,
) -> GateVerdict:
    """``verdict`` with the candidate's checkpoint digest, logged-model id, data version and policy hash filled in.

    Args:
        verdict: the gate's decision.
        candidate: what the gate scored (checkpoint path or model URI); its checkpoint is hashed.
        model_uri: the candidate's logged model (``models:/m-<id>``), when known.
        manifest: the evaluation manifest.
        policy: the policy that decided (default: the verdict's own ``policy`` dict).
    """
    return dataclasses.replace(
        verdict,
        candidate_digest=checkpoint_sha256(candidate),
        candidate_model_id=logged_model_id(model_uri or candidate),
        data_version=file_sha256(manifest) if manifest else verdict.data_version,
        policy_hash=policy_hash(policy if policy is not None else verdict.policy),
    )


def check_binding(verdict: GateVerdict, model_uri: str) -> str:
    """The checkpoint digest of ``model_uri`` after checking the verdict judged exactly that checkpoint.

    Raises:
        VerdictMismatchError: the verdict records no digest, or names another logged model or checkpoint.
    """
    if not verdict.candidate_digest:
        raise VerdictMismatchError(
            f"the verdict for {verdict.candidate or 'an unnamed candidate'} records no candidate digest, so it cannot "
            f"be tied to {model_uri}; re-run `equiseg gate` on this model and pass its new gate.json"
        )
    model_id = logged_model_id(model_uri)
    if model_id and verdict.candidate_model_id and model_id != verdict.candidate_model_id:
        raise VerdictMismatchError(
            f"the verdict judged logged model {verdict.candidate_model_id}, not {model_id}; a verdict applies only "
            "to the model it judged: gate this model and pass its own gate.json"
        )
    digest = checkpoint_sha256(model_uri)
    if digest != verdict.candidate_digest:
        raise VerdictMismatchError(
            f"the verdict judged checkpoint sha256 {verdict.candidate_digest[:12]}… ({verdict.candidate}), but "
            f"{model_uri} holds sha256 {digest[:12]}…; a verdict applies only to the model it judged: gate this model "
            "and pass its own gate.json"
        )
    return digest
