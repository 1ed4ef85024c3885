"""Optuna tuning: a real study on SQLite with nested MLflow runs, the best-params overlay, and config checks."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient

from equiseg.cli.train_cmd import resolve_with_overlays
from equiseg.config import ConfigError, EquisegConfig, load_config
from equiseg.tracking import Tracker
from equiseg.tuning import load_overlay, run_study, validate_search_space, write_overlay


def test_sqlite_study_records_nested_runs_and_writes_an_overlay_train_accepts(
    tiny_data: tuple[Path, Path],
    tiny_cfg: Callable[..., EquisegConfig],
    tiny_overrides: tuple[str, ...],
    tmp_path: Path,
) -> None:
    manifest, root = tiny_data
    cfg = tiny_cfg(
        "model.name=mean_fusion_tiny",
        "train.batch_size=6",
        "tune.pruner=none",
        f"tracking.uri=sqlite:///{tmp_path}/mlflow.db",
        f"tracking.artifact_location={tmp_path}/artifacts",
        "tracking.log_system_metrics=false",
    )
    tracker = Tracker(cfg.tracking)
    result = run_study(cfg, manifest=manifest, data_root=root, out_dir=tmp_path / "tune", trials=2, tracker=tracker)

    assert result.n_trials == 2
    assert result.storage == f"sqlite:///{tmp_path / 'tune' / 'optuna.db'}"
    study = optuna.load_study(study_name=cfg.tune.study_name, storage=result.storage)
    values = [t.value for t in study.trials]
    assert result.best_value == max(v for v in values if v is not None)
    assert set(result.best_params) == {"train.lr", "train.modality_dropout"}
    assert 1e-4 <= result.best_params["train.lr"] <= 3e-3
    for trial in study.trials:  # the trial's own training wrote its checkpoints in its own folder
        assert (tmp_path / "tune" / f"trial_{trial.number:04d}" / "best.pt").is_file()
        assert "clean_miou" in trial.user_attrs and "emm_avg" in trial.user_attrs

    # The overlay: a profile plus best.yaml gives the best parameters; --set still wins over it.
    tuned = load_config("smoke", (*tiny_overrides, *load_overlay(result.overlay_path)))
    assert tuned.train.lr == pytest.approx(result.best_params["train.lr"])
    assert tuned.train.modality_dropout == pytest.approx(result.best_params["train.modality_dropout"])
    assert "equiseg train --profile" in result.overlay_path.read_text()

    client = MlflowClient(tracker.uri)
    runs = client.search_runs([client.get_experiment_by_name(cfg.tracking.experiment).experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1 and len(children) == 2
    parent = parents[0]
    assert all(c.data.tags["mlflow.parentRunId"] == parent.info.run_id for c in children)
    assert {c.data.tags["optuna.state"] for c in children} == {"COMPLETE"}
    assert sorted(c.data.metrics["trial_objective"] for c in children) == pytest.approx(sorted(values))
    assert float(parent.data.params["best.train.lr"]) == pytest.approx(result.best_params["train.lr"])
    assert parent.data.metrics["n_trials"] == 2
    assert "best.yaml" in {a.path for a in client.list_artifacts(parent.info.run_id)}


def test_overlay_sits_between_profile_and_set(tmp_path: Path) -> None:
    overlay = write_overlay(
        {"train.lr": 0.00123, "train.loss": "ohem", "model.drop_path_rate": 0.2}, tmp_path / "b.yaml"
    )
    cfg = resolve_with_overlays("smoke", (overlay,), ("train.lr=0.5",))
    assert cfg.train.lr == 0.5  # --set wins
    assert cfg.train.loss == "ohem" and cfg.model.drop_path_rate == 0.2  # overlay beats the profile
    with pytest.raises(ConfigError, match="does not exist"):
        load_overlay(tmp_path / "missing.yaml")


def test_bad_search_spaces_and_sqlite_workers_are_refused_before_any_trial(
    tiny_data: tuple[Path, Path], tiny_cfg: Callable[..., EquisegConfig], tmp_path: Path
) -> None:
    manifest, root = tiny_data
    typo = tiny_cfg("tune.search_space={train.lrr: {type: float, low: 0.001, high: 0.01}}")
    with pytest.raises(ConfigError, match=r"unknown key\(s\) train.lrr"):
        validate_search_space(typo)
    bad_type = tiny_cfg("tune.search_space={train.lr: {type: uniform, low: 0.001, high: 0.01}}")
    with pytest.raises(ConfigError, match="float, int or categorical"):
        validate_search_space(bad_type)
    wrong_value = tiny_cfg("tune.search_space={train.loss: {type: categorical, choices: [ce, dice]}}")
    validate_search_space(wrong_value)  # the first choice is valid; the bad one is caught when drawn
    with pytest.raises(ConfigError, match="server database"):
        run_study(tiny_cfg(), manifest=manifest, data_root=root, out_dir=tmp_path, trials=4, workers=2)
    assert not (tmp_path / "optuna.db").exists()


def test_tpe_sampler_is_seeded() -> None:
    from equiseg.tuning.study import _sampler

    cfg = load_config("smoke")

    def proposals() -> list[float]:
        study = optuna.create_study(direction="maximize", sampler=_sampler(cfg, 8, 0))
        study.optimize(lambda t: -((t.suggest_float("x", 0, 1) - 0.3) ** 2), n_trials=8)
        return [t.params["x"] for t in study.trials]

    assert proposals() == proposals()
