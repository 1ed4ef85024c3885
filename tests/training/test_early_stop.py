"""``train.early_stop_patience``: training ends at a validation plateau, and a resumed run stays stopped."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from equiseg.config import ConfigError, EquisegConfig, load_config
from equiseg.training import train


def test_plateau_stops_training_after_patience_epochs(
    tiny_cfg: Callable[..., EquisegConfig], tiny_data: tuple[Path, Path], tmp_path: Path
) -> None:
    manifest, root = tiny_data
    # lr 0.5 overshoots: the objective peaks early and stalls or falls, a plateau that patience 1 must catch
    cfg = tiny_cfg(
        "model.name=early_fusion_tiny", "train.epochs=6", "train.lr=0.5", "train.eval_robustness_every=1",
        "train.early_stop_patience=1",
    )  # fmt: skip
    result = train(cfg, manifest=manifest, data_root=root, out_dir=tmp_path, show_progress=False)
    assert result.early_stopped and not result.stopped
    objectives = [h["objective"] for h in result.history]
    best = int(result.metrics["best_epoch"])
    assert result.epochs_run == len(objectives) == best + 1 < 6  # one epoch without a gain, then stop
    assert objectives[best - 1] == max(objectives) >= objectives[-1]  # a tie is no gain
    assert json.loads((tmp_path / "metrics.json").read_text())["early_stopped"] is True
    again = train(cfg, manifest=manifest, data_root=root, out_dir=tmp_path, resume=True, show_progress=False)
    assert again.early_stopped and again.epochs_run == result.epochs_run  # a stopped run trains nothing more


def test_patience_zero_runs_every_epoch(
    tiny_cfg: Callable[..., EquisegConfig], tiny_data: tuple[Path, Path], tmp_path: Path
) -> None:
    manifest, root = tiny_data
    cfg = tiny_cfg("model.name=early_fusion_tiny", "train.epochs=3", "train.lr=1e-12", "train.eval_robustness_every=1")
    assert cfg.train.early_stop_patience == 0
    result = train(cfg, manifest=manifest, data_root=root, out_dir=tmp_path, show_progress=False)
    assert not result.early_stopped and result.epochs_run == 3


def test_negative_patience_is_refused_with_the_fix() -> None:
    with pytest.raises(ConfigError, match="early_stop_patience"):
        load_config("smoke", ("train.early_stop_patience=-1",))
