"""Optuna study storage (optuna only, so the steps that create or read a study import no torch or mlflow)."""

from __future__ import annotations

from pathlib import Path

import optuna

__all__ = ["default_storage", "make_storage"]


def default_storage(out_dir: Path) -> str:
    """SQLite file ``<out_dir>/optuna.db`` (absolute URL)."""
    return f"sqlite:///{(Path(out_dir) / 'optuna.db').resolve()}"


def make_storage(url: str) -> optuna.storages.BaseStorage:
    """RDB storage; for server databases with heartbeats so a crashed worker's trial is failed and retried once."""
    if url.startswith("sqlite"):
        return optuna.storages.RDBStorage(url)
    return optuna.storages.RDBStorage(
        url,
        heartbeat_interval=30,
        grace_period=120,
        failed_trial_callback=optuna.storages.RetryFailedTrialCallback(max_retry=1),
    )
