"""Learning-rate schedule: linear warm-up then polynomial decay, as a pure function of the step.

SegFormer / CMX / CMNeXt train with AdamW, a linear warm-up and a "poly" decay ``(1 - t)^power`` (power 0.9 here,
configurable); the EQUISeg recipe follows that practice, an inference (arXiv 2509.24505 publishes no schedule).
Being a pure function of the global step, the schedule needs no state of its own: a resumed run recomputes the exact
LR from the step stored in its checkpoint.
"""

from __future__ import annotations

import math

__all__ = ["lr_at", "warmup_steps_for"]


def warmup_steps_for(warmup_epochs: float, steps_per_epoch: int) -> int:
    """Warm-up length in optimiser steps for ``warmup_epochs`` (fractional epochs allowed)."""
    if warmup_epochs < 0:
        raise ValueError(f"train.warmup_epochs must be >= 0, got {warmup_epochs}")
    return math.ceil(warmup_epochs * steps_per_epoch)


def lr_at(
    step: int,
    *,
    total_steps: int,
    base_lr: float,
    warmup_steps: int = 0,
    warmup_ratio: float = 0.1,
    power: float = 0.9,
) -> float:
    """Learning rate for optimiser step ``step`` (0-based).

    During warm-up (``step < warmup_steps``) the LR rises linearly from ``warmup_ratio * base_lr`` towards
    ``base_lr``; afterwards it decays as ``base_lr * (1 - progress) ** power`` where ``progress`` runs from 0 at the
    end of warm-up to 1 at ``total_steps``. Steps past ``total_steps`` get 0.

    Raises:
        ValueError: non-positive ``total_steps``, negative ``step``/``warmup_steps`` or a ratio outside [0, 1].
    """
    if total_steps < 1:
        raise ValueError(f"total_steps must be >= 1, got {total_steps} (is the training split empty?)")
    if step < 0 or warmup_steps < 0:
        raise ValueError(f"step and warmup_steps must be >= 0, got step={step}, warmup_steps={warmup_steps}")
    if not 0.0 <= warmup_ratio <= 1.0:
        raise ValueError(f"train.warmup_ratio must be in [0, 1], got {warmup_ratio}")
    warmup_steps = min(warmup_steps, total_steps)
    if step < warmup_steps:
        return base_lr * (warmup_ratio + (1.0 - warmup_ratio) * step / warmup_steps)
    decay_steps = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / decay_steps)
    return base_lr * (1.0 - progress) ** power
