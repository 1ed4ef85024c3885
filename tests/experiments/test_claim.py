"""The claim experiment's statistics, analysis, report and bookkeeping (docs/results.md), on scripted models.

The "models" here are callables with known behaviour, scored by the real robustness runner: ``balanced`` reads the
label from any modality that is present, ``rgb_dominant`` only from RGB. Their runs are written to disk exactly as
``run_cell`` writes them, so the analysis, CLI and report are tested on the real file formats without training.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from equiseg.cli.main import cli
from equiseg.config import ConfigError, EquisegConfig, load_config
from equiseg.experiments import analyse, load_cells, validate_experiment
from equiseg.experiments.plan import cell_config, eval_hash, train_hash
from equiseg.experiments.report import update_document, write_claim_report
from equiseg.experiments.runs import CellRecord, score_run
from equiseg.experiments.stats import cell_replicates, headline_metrics, image_weights, seed_bootstrap
from equiseg.robustness.metrics import miou
from equiseg.robustness.result import RobustnessResult

NUM_CLASSES = 4
MODALITIES = ("rgb", "depth", "thermal")
BALANCED, DOMINANT = "equiseg_tiny", "cmnext_like_tiny"  # registered names; the scripted callables stand in


def _batches(num_images: int = 12, size: int = 16, seed: int = 0) -> list[dict[str, object]]:
    """Every modality carries the label (as a level), so a model can read it from whichever is present."""
    g = torch.Generator().manual_seed(seed)
    label = torch.randint(0, NUM_CLASSES, (num_images, size, size), generator=g)
    level = (label.float() + 1.0) / NUM_CLASSES
    inputs = {"rgb": level[:, None].repeat(1, 3, 1, 1), "depth": level[:, None], "thermal": level[:, None]}
    return [
        {
            "inputs": {m: x[i : i + 4] for m, x in inputs.items()},
            "label": label[i : i + 4],
            "sample_id": [f"s{j:03d}" for j in range(i, min(i + 4, num_images))],
            "conditions": [() for _ in range(i, min(i + 4, num_images))],
        }
        for i in range(0, num_images, 4)
    ]


class Scripted(torch.nn.Module):
    """Reads the label from the first usable modality in ``reads``; flips a fixed share of pixels to class 0."""

    def __init__(self, reads: tuple[str, ...], noise: float, seed: int) -> None:
        super().__init__()
        self.reads, self.noise, self.seed = reads, noise, seed

    def forward(self, inputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        source = next((m for m in self.reads if m in inputs and inputs[m].abs().amax() > 0.05), None)
        x = next(iter(inputs.values()))
        if source is None:
            pred = torch.zeros(x.shape[0], *x.shape[-2:], dtype=torch.long)
        else:
            level = inputs[source][:, 0].clamp(0.0, 1.0)
            pred = (level * NUM_CLASSES - 1.0).round().long().clamp(0, NUM_CLASSES - 1)
        g = torch.Generator().manual_seed(self.seed)
        flip = torch.rand(pred.shape, generator=g) < self.noise
        pred = torch.where(flip, torch.zeros_like(pred), pred)
        return torch.nn.functional.one_hot(pred, NUM_CLASSES).permute(0, 3, 1, 2).float()


def _experiment_config(out: Path, models: tuple[str, ...] = (BALANCED, DOMINANT), seeds=(0, 1)) -> EquisegConfig:
    return load_config(
        "claim-smoke",
        [
            f"experiment.output_dir={out}",
            f"experiment.models=[{','.join(models)}]",
            f"experiment.seeds=[{','.join(str(s) for s in seeds)}]",
            f"experiment.candidate={models[0]}",
            "experiment.ablation=''",
            f"experiment.emm_margins={{{models[1]}: 5.0}}",
            "experiment.bootstrap_samples=300",
            f"data.num_classes={NUM_CLASSES}",
            "robustness.suite=quick",
            "robustness.missing=zero",
            "robustness.bootstrap_samples=0",
        ],
    )


def _write_run(cfg: EquisegConfig, model: str, seed: int, net: torch.nn.Module) -> CellRecord:
    """Score ``net`` and write the run folder exactly as ``run_cell`` does after training."""
    history = [{"epoch": 1.0, "train_loss": 1.0}]
    run_cfg = cell_config(cfg, model, seed)
    return score_run(run_cfg, net, _batches(), device="cpu", train_seconds=1.0, best_epoch=1, history=history)


@pytest.fixture
def claim_runs(tmp_path: Path) -> EquisegConfig:
    cfg = _experiment_config(tmp_path / "claim")
    for seed in (0, 1):
        _write_run(cfg, BALANCED, seed, Scripted(MODALITIES, noise=0.05 + 0.02 * seed, seed=seed))
        _write_run(cfg, DOMINANT, seed, Scripted(("rgb",), noise=0.05 + 0.02 * seed, seed=10 + seed))
    return cfg


# ------------------------------------------------------------------------------------------------------------------
# statistics
# ------------------------------------------------------------------------------------------------------------------


def test_replicate_with_every_image_once_reproduces_the_evaluation(claim_runs: EquisegConfig) -> None:
    record = load_cells(claim_runs)[0]
    result = RobustnessResult.from_json(record.robustness_path)
    confusion = RobustnessResult.load_confusion(record.confusion_path)
    num_images = len(result.slices["clean"].sample_ids)
    [replicate] = cell_replicates(confusion, result.slices, MODALITIES, np.ones((1, num_images)), absent_as_zero=True)
    expected = headline_metrics(result.aggregates)
    assert replicate.keys() == expected.keys()
    for key, value in expected.items():
        assert replicate[key] == pytest.approx(value, abs=1e-9), key


def test_replicates_are_dataset_level_miou_of_the_resampled_images() -> None:
    rng = np.random.default_rng(0)
    hists = rng.integers(0, 50, size=(6, NUM_CLASSES, NUM_CLASSES))
    weights = image_weights(6, 5, rng)
    assert weights.sum(axis=1).tolist() == [6.0] * 5
    summed = np.einsum("bn,nij->bij", weights, hists)
    for b in range(5):
        manual = sum(int(weights[b, n]) * hists[n] for n in range(6))
        assert miou(summed[b]) == pytest.approx(miou(manual))


def test_seed_bootstrap_stays_within_the_seeds_range() -> None:
    per_seed = [[{"m": 10.0}] * 50, [{"m": 20.0}] * 50, [{"m": 30.0}] * 50]
    reps = seed_bootstrap(per_seed, ["m"], np.random.default_rng(0))[:, 0]
    assert reps.min() >= 10.0 and reps.max() <= 30.0
    assert 15.0 < reps.mean() < 25.0
    assert len(set(reps.round(6).tolist())) > 3  # the seeds really are resampled


# ------------------------------------------------------------------------------------------------------------------
# analysis
# ------------------------------------------------------------------------------------------------------------------


def test_analysis_finds_the_balanced_model_better_when_rgb_is_missing(claim_runs: EquisegConfig) -> None:
    analysis = analyse(claim_runs, load_cells(claim_runs))
    delta = analysis.differences[DOMINANT]
    assert delta["emm_avg"].value > 20.0 and delta["emm_avg"].low > 0.0
    assert delta["emm/depth-thermal"].low > 20.0  # the dominant model is blind without RGB
    assert abs(delta["clean"].value) < 5.0 and delta["clean"].low < delta["clean"].value < delta["clean"].high
    assert analysis.metrics[BALANCED]["balance_ratio"].value > 0.9 > analysis.metrics[DOMINANT]["balance_ratio"].value
    emm = next(o for o in analysis.outcomes if o.name.startswith("EMM avg"))
    assert emm.met and emm.confident and emm.threshold == 5.0
    assert analysis.per_seed[BALANCED]["clean"][0] > analysis.per_seed[BALANCED]["clean"][1]  # more noise at seed 1


def test_a_model_compared_with_an_identical_copy_differs_by_nothing(tmp_path: Path) -> None:
    cfg = _experiment_config(tmp_path / "claim", models=(BALANCED, "equiseg_nosgm_tiny"), seeds=(0,))
    _write_run(cfg, BALANCED, 0, Scripted(MODALITIES, noise=0.1, seed=3))
    _write_run(cfg, "equiseg_nosgm_tiny", 0, Scripted(MODALITIES, noise=0.1, seed=3))
    delta = analyse(cfg, load_cells(cfg)).differences["equiseg_nosgm_tiny"]["emm_avg"]
    assert delta.value == 0.0 and delta.low == 0.0 and delta.high == 0.0


def test_runs_scored_on_different_images_are_not_compared(claim_runs: EquisegConfig) -> None:
    records = load_cells(claim_runs)
    raw = json.loads(records[0].robustness_path.read_text())
    raw["slices"][0]["sample_ids"] = [f"other{i}" for i in range(len(raw["slices"][0]["sample_ids"]))]
    records[0].robustness_path.write_text(json.dumps(raw))
    with pytest.raises(ValueError, match="different test images"):
        analyse(claim_runs, records)


# ------------------------------------------------------------------------------------------------------------------
# bookkeeping: config checks, finished-run reuse, CLI
# ------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("experiment.models=[equiseg_tiny,not_a_model_tiny]", "unknown model"),
        ("experiment.candidate=mean_fusion_tiny", "candidate"),
        ("experiment.ablation=mean_fusion_tiny", "ablation"),
        ("experiment.emm_margins={early_fusion_tiny: 3.0}", "emm_margins"),
        ("data.test_fraction=0.0", "test_fraction"),
        ("experiment.seeds=[0,0]", "must not repeat"),
    ],
)
def test_bad_experiment_config_is_refused_with_the_fix(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        validate_experiment(load_config("claim-smoke", [override]))


def test_missing_runs_are_named_and_analyse_only_exits_with_a_usage_error(tmp_path: Path) -> None:
    cfg = _experiment_config(tmp_path / "claim")
    with pytest.raises(FileNotFoundError, match="equiseg_tiny-seed0.*without --analyse-only"):
        load_cells(cfg)
    result = CliRunner().invoke(
        cli,
        ["experiment", "claim", "--profile", "claim-smoke", "--analyse-only", "--no-track", "-q",
         "--set", f"experiment.output_dir={tmp_path / 'claim'}"],
    )  # fmt: skip
    assert result.exit_code == 2
    assert "unfinished runs" in result.output


def test_runs_scored_with_another_robustness_config_are_not_mixed_in(claim_runs: EquisegConfig) -> None:
    other = claim_runs.replace(**{"robustness.seed": 7})
    with pytest.raises(ConfigError, match="scored with another config"):
        load_cells(other)
    retrained = claim_runs.replace(**{"train.lr": 0.5})
    with pytest.raises(ConfigError, match="trained with another config"):
        load_cells(retrained)
    # batching and report options do not change a run's scores, so they do not invalidate it
    assert len(load_cells(claim_runs.replace(**{"robustness.batch_size": 3, "data.num_workers": 2}))) == 4


def test_auto_modes_resolve_per_model_in_the_run_config(tmp_path: Path) -> None:
    cfg = load_config("claim-cpu-natural", [f"experiment.output_dir={tmp_path}"])
    natural = {m: cell_config(cfg, m, 0) for m in cfg.experiment.models}
    assert natural["equiseg_tiny"].train.modality_dropout_mode == "drop"
    assert natural["equiseg_tiny"].robustness.missing == "drop"
    assert natural["early_fusion_tiny"].train.modality_dropout_mode == "zero"
    assert natural["cmnext_like_tiny"].robustness.missing == "zero"
    uniform = load_config("claim-cpu", [f"experiment.output_dir={tmp_path}"])
    # a zero-filling model's run is the same run under either profile, so its results can be shared
    assert train_hash(cell_config(uniform, "early_fusion_tiny", 0)) == train_hash(natural["early_fusion_tiny"])
    assert eval_hash(cell_config(uniform, "early_fusion_tiny", 0)) == eval_hash(natural["early_fusion_tiny"])
    assert train_hash(cell_config(uniform, "equiseg_tiny", 0)) != train_hash(natural["equiseg_tiny"])


# ------------------------------------------------------------------------------------------------------------------
# report
# ------------------------------------------------------------------------------------------------------------------


def test_report_updates_its_own_section_and_keeps_the_rest(claim_runs: EquisegConfig, tmp_path: Path) -> None:
    doc = tmp_path / "docs" / "results.md"
    doc.parent.mkdir()
    other = "<!-- claim:other:begin -->\nkeep me\n<!-- claim:other:end -->\n"
    doc.write_text(f"# Results\n\nHand-written analysis above.\n\n{other}")
    analysis = analyse(claim_runs, load_cells(claim_runs))
    analysis.meta.update({"command": "equiseg experiment claim --profile claim-smoke", "git_commit": "abc123"})
    for _ in range(2):  # idempotent: a rerun replaces the section instead of appending another
        paths = write_claim_report(analysis, claim_runs, out_dir=Path(claim_runs.experiment.output_dir), doc_path=doc)
    text = doc.read_text()
    assert text.count("<!-- claim:claim-smoke:begin -->") == 1
    assert "Hand-written analysis above." in text and "keep me" in text
    assert "equiseg experiment claim --profile claim-smoke" in text and "abc123" in text
    assert "| EMM avg vs cmnext_like_tiny |" in text
    figures = sorted(p.name for p in (doc.parent / "results").iterdir())
    assert figures == sorted(f"claim-smoke-{p.name}" for k, p in paths.items() if k in _FIGURES)
    for name in figures:
        assert f"](results/{name})" in text
        assert (doc.parent / "results" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


_FIGURES = ("emm_subsets", "summary_heatmap", "corruption_severity", "differences", "training_curves")


def test_update_document_creates_a_missing_file(tmp_path: Path) -> None:
    doc = tmp_path / "new" / "results.md"
    update_document(doc, "p", "## Profile p\n")
    assert doc.read_text().startswith("# Results") and "<!-- claim:p:end -->" in doc.read_text()


def test_the_experiments_package_imports_without_the_tracking_stack() -> None:
    """The runs go to a bare GPU box; mlflow is imported only when a finished experiment is logged."""
    extras = ("mlflow", "kfp", "optuna", "great_expectations", "dvc")
    probe = (
        "import json, sys, equiseg.experiments, equiseg.experiments.runs;"
        f"print(json.dumps(sorted(m for m in {extras!r} if m in sys.modules)))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120)
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []
