"""Config loading, overrides, rejection of bad keys and types, flattening."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from equiseg.cli import cli
from equiseg.config import (
    ConfigError,
    EquisegConfig,
    available_profiles,
    config_hash,
    flatten_config,
    load_config,
    parse_override,
    save_config,
)


def test_every_profile_loads() -> None:
    profiles = available_profiles()
    assert {"smoke", "cpu", "gpu", "cluster"} <= set(profiles)
    for name in profiles:
        cfg = load_config(name)
        assert cfg.profile == name


def test_profile_overrides_defaults_and_set_overrides_profile() -> None:
    default = EquisegConfig()
    cfg = load_config("gpu")
    assert cfg.model.name == "equiseg_b2" != default.model.name
    cfg = load_config("gpu", ["model.name=cmnext_like_b0", "train.lr=3e-4", "data.modalities=rgb,depth"])
    assert cfg.model.name == "cmnext_like_b0"
    assert cfg.train.lr == pytest.approx(3e-4)
    assert cfg.data.modalities == ("rgb", "depth")


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        ("train.lr=3e-4", ("train.lr", "3e-4")),
        ("train.lr=0.5", ("train.lr", 0.5)),
        ("train.epochs=5", ("train.epochs", 5)),
        ("train.amp=false", ("train.amp", False)),
        ("data.modalities=[rgb, thermal]", ("data.modalities", ["rgb", "thermal"])),
        ("model.name=equiseg_b0", ("model.name", "equiseg_b0")),
        ("tracking.uri=", ("tracking.uri", "")),
    ],
)
def test_parse_override(item: str, expected: tuple[str, object]) -> None:
    assert parse_override(item) == expected


def test_int_is_accepted_where_float_expected() -> None:
    cfg = load_config("smoke", ["train.lr=1"])
    assert isinstance(cfg.train.lr, float)


@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        ("train.nope=1", "valid keys: train.epochs (int)"),
        ("nosection.x=1", "valid keys: profile (str), data (section)"),
        ("train.epochs=abc", "train.epochs: expected int, got 'abc'"),
        ("train.epochs=2.5", "train.epochs: expected int"),
        ("train.amp=1", "train.amp: expected bool"),
        ("train.loss=focal", "expected one of 'ce', 'ohem'"),
        ("train=3", "train: expected a section"),
        ("gate.mode=on", "one of 'enabled', 'dry_run', 'manual'"),
    ],
)
def test_bad_keys_and_types_are_rejected_with_the_fix(override: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config("smoke", [override])
    assert fragment in str(info.value)


def test_malformed_override_and_unknown_profile() -> None:
    with pytest.raises(ConfigError, match="section.key=value"):
        load_config("smoke", ["train.lr"])
    with pytest.raises(ConfigError, match="available profiles in .*smoke"):
        load_config("nonexistent")


def test_bad_yaml_file_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("train:\n  epochs: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(path)
    path.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_config(path)


def test_flatten_gives_string_dot_keys() -> None:
    flat = flatten_config(load_config("smoke"))
    assert flat["train.lr"] == "0.002"
    assert flat["data.modalities"] == "rgb,depth,thermal"
    assert flat["model.name"] == "equiseg_tiny"
    assert flat["tune.search_space.train.lr.log"] == "True"
    assert all(isinstance(v, str) for v in flat.values())
    assert all("." in k or k == "profile" for k in flat)


def test_saved_config_round_trips_and_hash_is_stable(tmp_path: Path) -> None:
    cfg = load_config("cpu", ["train.lr=1e-3"])
    path = save_config(cfg, tmp_path / "out" / "config.yaml")
    assert load_config(path) == cfg
    assert config_hash(load_config(path)) == config_hash(cfg)
    assert config_hash(cfg.replace(**{"train.lr": 2e-3})) != config_hash(cfg)
    assert yaml.safe_load(path.read_text())["train"]["lr"] == pytest.approx(1e-3)


def test_replace_validates() -> None:
    cfg = load_config("smoke")
    assert cfg.replace(**{"train.epochs": 7}).train.epochs == 7
    with pytest.raises(ConfigError):
        cfg.replace(**{"train.epochs": "seven"})


def test_cli_config_show_and_errors() -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["config", "show", "--profile", "smoke", "--set", "train.lr=3e-4"])
    assert result.exit_code == 0, result.output
    assert yaml.safe_load(result.output)["train"]["lr"] == pytest.approx(3e-4)
    result = runner.invoke(cli, ["config", "show", "--set", "train.nope=1"])
    assert result.exit_code == 2
    assert "valid keys" in result.output and "train.lr (float)" in result.output
    result = runner.invoke(cli, ["config", "show", "--flat"])
    assert "train.lr=0.002" in result.output
    result = runner.invoke(cli, ["config", "validate"])
    assert result.exit_code == 0 and "smoke.yaml" in result.output


def test_cli_help_lists_existing_groups() -> None:
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    assert "config" in result.output
