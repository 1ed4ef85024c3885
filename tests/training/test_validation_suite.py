"""``train.val_suite``: the ``emm`` suite scores only what model selection reads and keeps the checkpoint ``quick``
would (docs/training.md)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from equiseg.config import ConfigError, EquisegConfig, load_config
from equiseg.experiments.plan import train_hash
from equiseg.robustness.suites import plan_suite
from equiseg.training import train


def test_emm_suite_is_clean_plus_one_slice_per_kept_set() -> None:
    names = [spec.name for spec in plan_suite(("rgb", "depth", "thermal"), "emm")]
    assert names[0] == "clean" and len(names) == 7 and all(n.startswith("emm/") for n in names[1:])
    assert names == [spec.name for spec in plan_suite(("rgb", "depth", "thermal"), "quick")][:7]


def test_emm_and_quick_validation_keep_the_same_checkpoint(
    tiny_cfg: Callable[..., EquisegConfig], tiny_data: tuple[Path, Path], tmp_path: Path
) -> None:
    manifest, root = tiny_data
    runs = {}
    for suite in ("quick", "emm"):
        cfg = tiny_cfg("train.epochs=3", "train.eval_robustness_every=1", f"train.val_suite={suite}")
        runs[suite] = train(cfg, manifest=manifest, data_root=root, out_dir=tmp_path / suite, show_progress=False)
    quick, emm = runs["quick"], runs["emm"]
    for key in ("objective", "clean_miou", "emm_avg", "balance_ratio"):
        assert [h[key] for h in emm.history] == [h[key] for h in quick.history], key
    assert emm.metrics["best_epoch"] == quick.metrics["best_epoch"]
    assert "corrupt_miou_c" in quick.history[-1] and "corrupt_miou_c" not in emm.history[-1]
    best = {s: torch.load(tmp_path / s / "best.pt", map_location="cpu", weights_only=False)["model"] for s in runs}
    assert all(torch.equal(best["quick"][k], best["emm"][k]) for k in best["quick"])


def test_val_suite_does_not_change_the_train_hash_and_rejects_other_suites() -> None:
    cfg = load_config("smoke", ())
    assert train_hash(cfg) == train_hash(cfg.replace(**{"train.val_suite": "emm"}))
    with pytest.raises(ConfigError, match="val_suite"):
        load_config("smoke", ("train.val_suite=full",))
