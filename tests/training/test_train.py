"""The training loop end to end on a tiny synthetic set: learning, checkpoints, crash-safe resume."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from equiseg.training import TrainResult, load_checkpoint, load_model_from_checkpoint, robustness_objective


def test_loss_decreases_and_best_checkpoint_predicts_every_subset(tracked_run: Any) -> None:
    """``tracked_run``: conftest's shared ``equiseg_tiny`` run (3 epochs, robustness suite on the last)."""
    result = tracked_run.result
    assert isinstance(result, TrainResult)
    losses = [h["train_loss"] for h in result.history]
    assert result.epochs_run == 3 and len(losses) == 3
    assert losses[0] > losses[1] > losses[2] and losses[-1] < 0.9 * losses[0], f"loss did not decrease: {losses}"
    final = result.history[-1]
    assert {"clean_miou", "emm_avg", "objective", "val_miou"} <= set(final)
    assert final["objective"] == pytest.approx(robustness_objective(final))
    assert "objective" not in result.history[0]  # robustness ran on the last epoch only
    assert result.metrics["best_epoch"] == 3.0
    assert json.loads((tracked_run.out_dir / "metrics.json").read_text())["epochs_run"] == 3

    model, ckpt = load_model_from_checkpoint(result.best_checkpoint)
    assert ckpt["best_metric"] == pytest.approx(final["objective"])
    assert ckpt["config"]["model"]["name"] == "equiseg_tiny"
    batch = {"rgb": torch.randn(2, 3, 32, 32), "depth": torch.rand(2, 1, 32, 32), "thermal": torch.rand(2, 1, 32, 32)}
    for size in (1, 2, 3):
        for subset in itertools.combinations(tracked_run.cfg.data.modalities, size):
            with torch.no_grad():
                logits = model({m: batch[m] for m in subset}).logits
            assert logits.shape == (2, 4, 32, 32) and torch.isfinite(logits).all(), subset


def _train_cli(out_dir: Path, manifest: Path, overrides: tuple[str, ...]) -> list[str]:
    sets = [f"--set={item}" for item in overrides]
    return [
        str(Path(sys.executable).parent / "equiseg"), "train", "--profile", "smoke", *sets, "--manifest", str(manifest),
        "--out", str(out_dir), "--no-track", "--no-progress",
    ]  # fmt: skip


@pytest.mark.slow
def test_resume_after_kill_9_mid_epoch_matches_uninterrupted_run(
    tiny_data: tuple[Path, Path], tiny_overrides: tuple[str, ...], tmp_path: Path
) -> None:
    manifest, _ = tiny_data
    # 2 epochs x 6 steps of 2 samples, a checkpoint after every step; robustness only at the end. The loop is
    # model-agnostic: the cheapest multimodal model keeps the three runs short.
    extra = (*tiny_overrides, "model.name=mean_fusion_tiny", "train.batch_size=2", "train.checkpoint_every_steps=1")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    reference = tmp_path / "reference"
    subprocess.run(_train_cli(reference, manifest, extra), env=env, check=True, capture_output=True, timeout=600)

    crashed = tmp_path / "crashed"
    victim = subprocess.Popen(_train_cli(crashed, manifest, extra), env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)  # fmt: skip
    killed_at = None
    deadline = time.monotonic() + 300
    while victim.poll() is None and time.monotonic() < deadline:
        last = crashed / "last.pt"
        if last.is_file():
            ckpt = load_checkpoint(last)
            if ckpt["epoch"] == 1 and 0 < ckpt["epoch_step"] < 5:  # inside the second epoch
                victim.send_signal(signal.SIGKILL)
                killed_at = (ckpt["epoch"], ckpt["epoch_step"])
                break
        time.sleep(0.05)
    victim.wait(timeout=60)
    assert killed_at is not None, "the run finished before it could be killed mid-epoch"
    assert victim.returncode == -signal.SIGKILL
    assert not (crashed / "metrics.json").exists()

    subprocess.run([*_train_cli(crashed, manifest, extra), "--resume"], env=env, check=True, capture_output=True,
                   timeout=600)  # fmt: skip

    expected = json.loads((reference / "metrics.json").read_text())
    resumed = json.loads((crashed / "metrics.json").read_text())
    assert resumed["epochs_run"] == expected["epochs_run"] == 2
    for key in ("train_loss", "val_loss", "val_miou", "clean_miou", "emm_avg", "objective"):
        assert resumed["metrics"][key] == pytest.approx(expected["metrics"][key], rel=1e-6, abs=1e-6), key
    assert [h["train_loss"] for h in resumed["history"]] == pytest.approx(
        [h["train_loss"] for h in expected["history"]], rel=1e-6
    )
    final_ref, final_res = load_checkpoint(reference / "last.pt"), load_checkpoint(crashed / "last.pt")
    for name, tensor in final_ref["model"].items():
        torch.testing.assert_close(final_res["model"][name], tensor, rtol=1e-6, atol=1e-7, msg=name)
