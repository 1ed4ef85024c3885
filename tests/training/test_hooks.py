"""TrainHooks: the loop's only way out to tracking and tuning (per-step, per-epoch, stop, checkpoint sink)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import pytest
import torch

from equiseg.config import EquisegConfig
from equiseg.tracking import is_model_uri, load_model
from equiseg.training import TrainHooks, TrainResult, train
from equiseg.tuning import trial_hooks
from equiseg.tuning.study import _raise_if_pruned


def test_hooks_see_steps_epochs_checkpoints_and_stop_the_loop(
    tiny_data: tuple[Path, Path], tiny_cfg: Callable[..., EquisegConfig], tmp_path: Path
) -> None:
    manifest, root = tiny_data
    calls: dict[str, list[Any]] = {"step": [], "epoch": [], "checkpoint": []}
    hooks = TrainHooks(
        on_step=lambda epoch_step, global_step, metrics: calls["step"].append((epoch_step, global_step, metrics)),
        on_epoch=lambda epoch, metrics: calls["epoch"].append((epoch, dict(metrics))),
        should_stop=lambda epoch, metrics: epoch >= 1,
        on_checkpoint=lambda path: calls["checkpoint"].append(path.name),
    )
    result = train(tiny_cfg("train.epochs=3"), manifest=manifest, data_root=root, out_dir=tmp_path / "run",
                   hooks=hooks, show_progress=False)  # fmt: skip
    assert result.stopped and result.epochs_run == 1 and len(result.history) == 1
    assert [s[:2] for s in calls["step"]] == [(1, 1), (2, 2), (3, 3)]  # 12 train samples, batches of 4
    assert {"train_step_loss", "lr"} == set(calls["step"][0][2])
    assert [e[0] for e in calls["epoch"]] == [1] and "val_miou" in calls["epoch"][0][1]
    assert calls["checkpoint"] == ["last.pt"]  # no robustness objective yet, so no best.pt
    assert (tmp_path / "run" / "metrics.json").is_file()


class _PruneAlways:
    """The two trial methods trial_hooks uses, with a pruner that always says stop."""

    def __init__(self) -> None:
        self.reported: list[tuple[float, int]] = []

    def report(self, value: float, step: int) -> None:
        self.reported.append((value, step))

    def should_prune(self) -> bool:
        return True


def test_trial_hooks_report_the_objective_and_prune() -> None:
    trial = _PruneAlways()
    hooks = trial_hooks(trial)  # type: ignore[arg-type]
    assert hooks.should_stop is not None
    assert hooks.should_stop(1, {"val_miou": 10.0}) is False  # no objective on this epoch: nothing reported
    assert hooks.should_stop(2, {"objective": 12.5}) is True
    assert trial.reported == [(12.5, 2)]
    stopped = TrainResult(Path("best.pt"), Path("last.pt"), {}, 2, history=[{"objective": 12.5}], stopped=True)
    with pytest.raises(optuna.TrialPruned, match="pruned after epoch 2"):
        _raise_if_pruned(stopped)
    _raise_if_pruned(dataclasses.replace(stopped, stopped=False))


def test_one_resolver_for_paths_and_uris(tmp_path: Path) -> None:
    from equiseg.models import create_model
    from equiseg.training import save_checkpoint

    assert is_model_uri("models:/equiseg@champion") and is_model_uri("models:/equiseg/3")
    assert is_model_uri("runs:/abc/model") and is_model_uri("s3://bucket/model")
    assert not is_model_uri(tmp_path / "best.pt") and not is_model_uri("runs/best.pt")
    model = create_model("equiseg_tiny", num_classes=4, modalities=("rgb", "depth"))
    path = save_checkpoint(tmp_path / "best.pt", model=model)
    loaded = load_model(path)
    assert not loaded.training
    torch.testing.assert_close(loaded.state_dict(), model.state_dict())
    with pytest.raises(FileNotFoundError, match="neither a checkpoint file nor an MLflow URI"):
        load_model(tmp_path / "missing.pt")
