"""Config values checked for range and meaning; resume refuses a config that changes what the weights mean."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from equiseg.cli.main import cli
from equiseg.config import ConfigError, load_config
from equiseg.training import CheckpointError, train


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.epochs=-1", r"train.epochs=-1 is out of range: expected an integer >= 1"),
        ("train.batch_size=0", r"train.batch_size=0 is out of range"),
        ("data.val_fraction=1.5", r"data.val_fraction=1.5 is out of range: expected a fraction in \[0, 1\]"),
        ("train.modality_dropout=1.0", r"train.modality_dropout=1.0 is out of range"),
        ("gate.ci_level=0", r"gate.ci_level=0.0 is out of range"),
        ("train.lr=nan", r"train.lr=nan is out of range"),
    ],
)
def test_out_of_range_values_are_refused_with_one_line(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        load_config("smoke", [override])
    assert "\n" not in str(info.value)


def test_fractions_that_leave_nothing_to_train_on_are_refused() -> None:
    with pytest.raises(ConfigError, match="leaves no training samples"):
        load_config("smoke", ["data.val_fraction=0.6", "data.test_fraction=0.4"])


def test_train_command_refuses_negative_epochs_before_doing_anything(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["train", "--set", "train.epochs=-1", "--out", str(tmp_path / "o"), "--no-track"])
    assert result.exit_code != 0 and "train.epochs=-1 is out of range" in result.output
    assert not (tmp_path / "o").exists()


def test_num_classes_must_match_the_manifest(
    tiny_data: tuple[Path, Path], tiny_overrides: tuple[str, ...], tmp_path: Path
) -> None:
    manifest, root = tiny_data
    for wrong in (3, 12):  # too few crashed mid-training, too many trained with a diluted mIoU
        cfg = load_config("smoke", (*tiny_overrides, f"data.num_classes={wrong}"))
        with pytest.raises(ConfigError, match=f"data.num_classes={wrong} but .* declares 4 classes"):
            train(cfg, manifest=manifest, data_root=root, out_dir=tmp_path / f"n{wrong}", show_progress=False)
        assert not (tmp_path / f"n{wrong}" / "config.yaml").exists()


def test_resume_refuses_a_changed_meaning_and_never_rewrites_config_yaml(
    tiny_data: tuple[Path, Path], tiny_overrides: tuple[str, ...], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    manifest, root = tiny_data
    base = (*tiny_overrides, "model.name=mean_fusion_tiny", "train.epochs=1")
    out = tmp_path / "run"
    train(load_config("smoke", base), manifest=manifest, data_root=root, out_dir=out, show_progress=False)
    original = (out / "config.yaml").read_bytes()

    changed = load_config("smoke", (*base, "train.lr=0.1", "data.image_size=48"))
    with pytest.raises(CheckpointError, match=r"changes what its weights mean \(data.image_size: 32 -> 48\)"):
        train(changed, manifest=manifest, data_root=root, out_dir=out, resume=True, show_progress=False)
    assert (out / "config.yaml").read_bytes() == original
    assert not list(out.glob("config.resume-*.yaml"))

    schedule = load_config("smoke", (*base, "train.lr=0.1", "train.epochs=2"))
    result = train(schedule, manifest=manifest, data_root=root, out_dir=out, resume=True, show_progress=False)
    assert result.epochs_run == 2
    assert (out / "config.yaml").read_bytes() == original  # still how the first epoch's weights were made
    recorded = yaml.safe_load((out / "config.resume-1.yaml").read_text())
    assert recorded["train"]["lr"] == 0.1 and recorded["train"]["epochs"] == 2
    assert any("train.lr: 0.002 -> 0.1" in r.getMessage() for r in caplog.records)


def test_a_full_disk_during_a_checkpoint_write_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The write goes to /dev/full, which fails every write with the kernel's real ENOSPC."""
    import os
    import tempfile

    from equiseg.models import create_model
    from equiseg.training import save_checkpoint

    model = create_model("mean_fusion_tiny", num_classes=4, modalities=("rgb",))
    (tmp_path / "last.pt").write_bytes(b"previous")

    def full_disk(prefix: str = "", suffix: str = "", dir: str | None = None) -> tuple[int, str]:
        return os.open("/dev/full", os.O_WRONLY), str(tmp_path / f"{prefix}x{suffix}")

    monkeypatch.setattr(tempfile, "mkstemp", full_disk)
    with pytest.raises(CheckpointError, match=r"the disk is full .* MiB free"):
        save_checkpoint(tmp_path / "last.pt", model=model)
    assert (tmp_path / "last.pt").read_bytes() == b"previous"


def test_missing_manifest_hint_names_a_command_that_exists(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["train", "--set", f"data.root={tmp_path / 'none'}", "--no-track"])
    assert result.exit_code != 0 and "equiseg data synth --profile smoke" in result.output
    assert CliRunner().invoke(cli, ["data", "synth", "--help"]).exit_code == 0


def test_train_command_refuses_a_meaning_changing_resume_in_one_line(
    tiny_data: tuple[Path, Path], tiny_overrides: tuple[str, ...], tmp_path: Path
) -> None:
    manifest, _ = tiny_data
    sets = [f"--set={item}" for item in (*tiny_overrides, "model.name=mean_fusion_tiny", "train.epochs=1")]
    args = ["train", *sets, "--manifest", str(manifest), "--out", str(tmp_path / "o"), "--no-track", "--no-progress"]
    assert CliRunner().invoke(cli, args).exit_code == 0
    original = (tmp_path / "o" / "config.yaml").read_bytes()
    result = CliRunner().invoke(cli, [*args, "--resume", "--set", "train.lr=0.1", "--set", "data.image_size=48"])
    assert result.exit_code == 1 and "Error: refusing to resume" in result.output
    assert "Traceback" not in result.output
    assert (tmp_path / "o" / "config.yaml").read_bytes() == original
