"""The study's statistics and analysis (docs/results.md, "Study"): tests on hand-made per-run summaries, and the
committed smoke run's summaries reproducing every number of its section in docs/results.md."""

from __future__ import annotations

import itertools
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from equiseg.cli.main import cli
from equiseg.config import ConfigError, EquisegConfig, load_config
from equiseg.experiments.plan import cell_config, eval_hash, train_hash
from equiseg.experiments.runs import run_lock
from equiseg.experiments.significance import (
    EXACT_LIMIT,
    bootstrap_interval,
    compare,
    permutation_test,
    student_t_sf,
    welch_test,
)
from equiseg.experiments.study import (
    EXIT_BUSY,
    STUDY_FORMAT,
    analyse_study,
    level_config,
    load_summaries,
    study_markdown,
    summary_path,
)
from equiseg.experiments.study_figures import figure_names

REPO = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------------------------------------------------- tests


def _brute_force_p(a: list[float], b: list[float]) -> float:
    pooled = a + b
    observed = abs(np.mean(a) - np.mean(b))
    hits = total = 0
    for group in itertools.combinations(range(len(pooled)), len(a)):
        x = [pooled[i] for i in group]
        y = [pooled[i] for i in range(len(pooled)) if i not in group]
        hits += abs(np.mean(x) - np.mean(y)) >= observed - 1e-12
        total += 1
    return hits / total


def test_permutation_p_is_exact_for_small_samples() -> None:
    # 3 runs against 3, fully separated: only the observed labelling and its mirror reach |diff| -> 2 / C(6, 3)
    p, exact, count = permutation_test([30.0, 31.0, 32.0], [20.0, 21.0, 22.0])
    assert (p, exact, count) == (pytest.approx(2 / 20), True, 20)
    rng = np.random.default_rng(0)
    for n_a, n_b in ((4, 5), (2, 7), (5, 5)):
        a, b = rng.normal(1.0, 1.0, n_a).tolist(), rng.normal(0.0, 1.0, n_b).tolist()
        assert permutation_test(a, b)[0] == pytest.approx(_brute_force_p(a, b))
    # ties: identical samples give p = 1
    assert permutation_test([1.0, 1.0], [1.0, 1.0])[0] == 1.0


def test_permutation_falls_back_to_monte_carlo_beyond_the_exact_limit() -> None:
    assert math.comb(24, 12) > EXACT_LIMIT
    rng = np.random.default_rng(1)
    a, b = rng.normal(0.5, 1.0, 12).tolist(), rng.normal(0.0, 1.0, 12).tolist()
    p, exact, draws = permutation_test(a, b, seed=3)
    assert not exact and draws > 10_000 and 0 < p <= 1
    assert p == permutation_test(a, b, seed=3)[0]  # seeded


def test_welch_matches_scipy() -> None:
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(2)
    for n_a, n_b in ((3, 3), (10, 10), (4, 11)):
        a, b = rng.normal(2.0, 1.0, n_a), rng.normal(0.0, 3.0, n_b)
        t, _, p = welch_test(a.tolist(), b.tolist())
        ref = stats.ttest_ind(a, b, equal_var=False)
        assert t == pytest.approx(ref.statistic, rel=1e-12)
        assert p == pytest.approx(ref.pvalue, rel=1e-9, abs=1e-14)
    for t_value, df_value in ((0.3, 2.5), (4.0, 1.2), (-2.0, 30.0), (8.0, 17.3)):
        assert student_t_sf(t_value, df_value) == pytest.approx(stats.t.sf(t_value, df_value), rel=1e-9, abs=1e-15)


def test_welch_and_bootstrap_edge_cases() -> None:
    assert all(math.isnan(v) for v in welch_test([1.0], [2.0, 3.0]))  # one run: no variance
    assert all(math.isnan(v) for v in welch_test([1.0, 1.0], [2.0, 2.0]))  # no variance at all
    low, high = bootstrap_interval([3.0, 4.0, 5.0], [1.0, 1.5, 2.0], replicates=2000)
    assert low <= 2.5 <= high
    comp = compare([3.0, 4.0, 5.0], [1.0, 1.5, 2.0], replicates=500)
    assert comp.difference == pytest.approx(2.5) and comp.n_a == comp.n_b == 3 and comp.permutation_exact


# ------------------------------------------------------------------------------------------- hand-made summaries

SCORES = {  # (model, dominance) -> per-seed (clean, EMM avg, balance ratio)
    ("equiseg_tiny", 0.0): [(50.0, 30.0, 0.60), (51.0, 31.0, 0.62), (52.0, 32.0, 0.64)],
    ("cmnext_like_tiny", 0.0): [(50.5, 28.0, 0.50), (51.5, 29.0, 0.52), (52.5, 27.0, 0.48)],
    ("equiseg_tiny", 0.8): [(45.0, 26.0, 0.50), (46.0, 27.0, 0.52), (47.0, 28.0, 0.54)],
    ("cmnext_like_tiny", 0.8): [(45.5, 16.0, 0.20), (46.5, 17.0, 0.22), (47.5, 18.0, 0.24)],
}


def _study_overrides(tmp_path: Path) -> tuple[str, ...]:
    return (
        "experiment.seeds=[0, 1, 2]",
        f"experiment.summary_dir={tmp_path / 'summaries'}",
        f"experiment.output_dir={tmp_path / 'runs'}",
        f"experiment.results_doc={tmp_path / 'results.md'}",
        "experiment.bootstrap_samples=500",
    )


def _study_cfg(tmp_path: Path) -> EquisegConfig:
    return load_config("study-smoke", _study_overrides(tmp_path))


SUBSET_OFFSETS = {"rgb-depth": 6.0, "rgb-thermal": 4.0, "depth-thermal": 2.0, "rgb": -2.0, "depth": -4.0}
SUBSET_OFFSETS["thermal"] = -6.0  # the offsets average to 0, so the subsets average to the EMM avg


def _subsets(clean: float, emm: float) -> dict[str, float]:
    """Per-subset scores whose mean is ``emm``, and the drops they imply (clean minus the subset without m)."""
    scores = {f"miou/emm/{k}": emm + offset for k, offset in SUBSET_OFFSETS.items()}
    without = {"rgb": "depth-thermal", "depth": "rgb-thermal", "thermal": "rgb-depth"}
    return scores | {f"drop_without_{m}": clean - scores[f"miou/emm/{k}"] for m, k in without.items()}


def _write_summaries(cfg: EquisegConfig) -> None:
    for (model, level), rows in SCORES.items():
        for seed, (clean, emm, balance) in enumerate(rows):
            run_cfg = cell_config(level_config(cfg, level), model, seed)
            path = summary_path(cfg, level, model, seed)
            path.parent.mkdir(parents=True, exist_ok=True)
            summary = {
                "format": STUDY_FORMAT,
                "profile": cfg.profile,
                "model": model,
                "seed": seed,
                "dominant_modality": "rgb",
                "dominance": level,
                "train_hash": train_hash(run_cfg),
                "eval_hash": eval_hash(run_cfg),
                "params": 1_751_160 if model == "equiseg_tiny" else 947_852,
                "device": "cpu",
                "train_seconds": 1.0,
                "eval_seconds": 1.0,
                "best_epoch": 2,
                "epochs_run": 3,
                "epochs_max": 3,
                "early_stopped": seed == 0,
                "scores": {"clean_miou": clean, "emm_avg": emm, "balance_ratio": balance, **_subsets(clean, emm)},
                "curve": [{"epoch": 1.0, "val_miou": clean - 5}],
            }
            path.write_text(json.dumps(summary))


def test_analysis_of_hand_made_summaries(tmp_path: Path) -> None:
    stats = pytest.importorskip("scipy.stats")
    cfg = _study_cfg(tmp_path)
    _write_summaries(cfg)
    analysis = analyse_study(cfg, load_summaries(cfg))
    assert list(analysis["levels"]) == ["0", "0.8"]
    strong = analysis["levels"]["0.8"]
    arm = strong["arms"]["equiseg_tiny"]
    assert (arm["n"], arm["params"], arm["early_stopped"]) == (3, 1_751_160, 1)
    assert arm["emm_avg"] == pytest.approx(27.0)
    emm = next(c for c in strong["comparisons"] if c["metric"] == "emm_avg")
    assert emm["difference"] == pytest.approx(10.0)
    ref = stats.ttest_ind([26.0, 27.0, 28.0], [16.0, 17.0, 18.0], equal_var=False)
    assert emm["welch_p"] == pytest.approx(ref.pvalue, rel=1e-9)
    assert emm["permutation_p"] == pytest.approx(0.1) and emm["permutation_exact"]
    assert emm["low"] <= 10.0 <= emm["high"]
    targets = {row["name"].split(":")[0]: row["met"] for row in analysis["targets"]}
    # +10 EMM points but 3 runs against 3 cannot reach permutation p < 0.05: the target is honestly not met
    assert targets == {"EMM avg": False, "clean mIoU": True, "balance ratio": True}
    text = study_markdown(cfg, analysis)
    assert "### Dominance 0.8" in text and "+10.0 [" in text and "| 0.100 |" in text
    assert "| equiseg_tiny | 1.75 | 3 | 3.0 | 1 | n/a | n/a | 46.0 | 27.0 | 0.520 |" in text  # curves too short
    # where the EMM avg comes from: each kept subset's mean, largest subsets first, and the cost of losing each
    assert "| arm (mIoU by kept modalities) | only rgb-depth | only rgb-thermal | only depth-thermal |" in text
    assert "| equiseg_tiny | 33.0 | 31.0 | 29.0 | 25.0 | 23.0 | 21.0 | 17.0 | 15.0 | 13.0 |" in text


def test_the_arm_table_shows_each_arms_best_validation_objective_and_its_jitter(tmp_path: Path) -> None:
    cfg = _study_cfg(tmp_path)
    _write_summaries(cfg)
    objectives = {0: [40.0, 50.0, 52.0, 56.0, 54.0, 58.0], 1: [40.0, 50.0, 50.0, 50.0, 50.0, 50.0]}
    for seed, values in objectives.items():
        path = summary_path(cfg, 0.8, "equiseg_tiny", seed)
        raw = json.loads(path.read_text())
        raw["curve"] = [{"epoch": float(i + 1), "objective": v} for i, v in enumerate(values)]
        path.write_text(json.dumps(raw))
    arm = analyse_study(cfg, load_summaries(cfg))["levels"]["0.8"]["arms"]["equiseg_tiny"]
    # seed 0: second half 56, 54, 58 -> steps -2, +4 -> sd 3; seed 1: flat -> 0; seed 2 has no objective: left out
    assert arm["val_objective_best"] == pytest.approx((58.0 + 50.0) / 2)
    assert arm["val_objective_jitter"] == pytest.approx(1.5)
    assert "| equiseg_tiny | 1.75 | 3 | 3.0 | 1 | 54.0 | 1.50 | 46.0 | 27.0 | 0.520 |" in study_markdown(
        cfg, analyse_study(cfg, load_summaries(cfg))
    )


def test_summaries_that_do_not_match_the_config_are_refused(tmp_path: Path) -> None:
    cfg = _study_cfg(tmp_path)
    _write_summaries(cfg)
    with pytest.raises(ConfigError, match="another config"):
        load_summaries(cfg.replace(**{"train.lr": 0.5}))
    summary_path(cfg, 0.8, "cmnext_like_tiny", 2).unlink()
    with pytest.raises(FileNotFoundError, match="without --analyse-only"):
        load_summaries(cfg)


def test_cli_analyse_only_rebuilds_tables_and_figure(tmp_path: Path) -> None:
    cfg = _study_cfg(tmp_path)
    _write_summaries(cfg)
    sets = [f"--set={item}" for item in _study_overrides(tmp_path)]
    result = CliRunner().invoke(cli, ["experiment", "study", "--profile", "study-smoke", *sets, "--analyse-only"])
    assert result.exit_code == 0, result.output
    doc = (tmp_path / "results.md").read_text()
    assert "<!-- study:study-smoke:begin -->" in doc and "![EMM lead" in doc and "![EMM avg of every run" in doc
    assert (tmp_path / "results" / "study-smoke-lead.png").stat().st_size > 1000
    assert (tmp_path / "results" / "study-smoke-arms.png").stat().st_size > 1000
    arms = json.loads((tmp_path / "summaries" / "analysis.json").read_text())["levels"]["0.8"]["arms"]
    assert arms["equiseg_tiny"]["seeds"] == [0, 1, 2]
    assert arms["equiseg_tiny"]["per_run"]["emm_avg"] == [26.0, 27.0, 28.0]
    assert json.loads((tmp_path / "summaries" / "analysis.json").read_text())["profile"] == "study-smoke"


def test_an_interim_analysis_reports_where_the_study_stands_and_judges_nothing(tmp_path: Path) -> None:
    cfg = _study_cfg(tmp_path)
    _write_summaries(cfg)
    for seed in range(3):  # no run at dominance 0 yet, and one arm at 0.8 has a single seed
        summary_path(cfg, 0.0, "equiseg_tiny", seed).unlink()
        summary_path(cfg, 0.0, "cmnext_like_tiny", seed).unlink()
    summary_path(cfg, 0.8, "cmnext_like_tiny", 1).unlink()
    summary_path(cfg, 0.8, "cmnext_like_tiny", 2).unlink()
    with pytest.raises(FileNotFoundError):
        load_summaries(cfg)
    analysis = analyse_study(cfg, load_summaries(cfg, interim=True))
    assert (analysis["runs"], analysis["planned_runs"], analysis["complete"]) == (4, 12, False)
    assert list(analysis["levels"]) == ["0.8"] and analysis["targets"] == []
    emm = next(c for c in analysis["levels"]["0.8"]["comparisons"] if c["metric"] == "emm_avg")
    assert (emm["n_a"], emm["n_b"]) == (3, 1) and emm["difference"] == pytest.approx(11.0)
    text = study_markdown(cfg, analysis)
    assert "**Interim: 4 of 12 planned runs.**" in text and "--analyse-only --interim`" in text
    assert "Pre-registered targets" not in text and "### Dominance 0\n" not in text
    assert "### Dominance 0.8 (interim: 4 of 6 runs)" in text
    complete = analyse_study(cfg.replace(**{"experiment.seeds": [0]}), load_summaries(cfg, interim=True))
    assert complete["complete"] is False  # seed 0 at dominance 0 is still missing


def test_targets_are_judged_once_the_strongest_setting_is_complete(tmp_path: Path) -> None:
    cfg = _study_cfg(tmp_path)
    _write_summaries(cfg)
    summary_path(cfg, 0.0, "cmnext_like_tiny", 2).unlink()
    analysis = analyse_study(cfg, load_summaries(cfg, interim=True))
    assert analysis["complete"] is False and analysis["levels"]["0.8"]["complete"]
    assert {row["level"] for row in analysis["targets"]} == {"0.8"} and len(analysis["targets"]) == 3
    text = study_markdown(cfg, analysis)
    assert "### Dominance 0 (interim: 5 of 6 runs)" in text and "### Dominance 0.8\n" in text
    assert "### Pre-registered targets at dominance 0.8" in text


def test_an_exploratory_study_judges_no_targets_and_a_single_setting_draws_no_dial(tmp_path: Path) -> None:
    cfg = _study_cfg(tmp_path)
    _write_summaries(cfg)
    exploratory = cfg.replace(**{"experiment.preregistered": False, "experiment.dominance_levels": [0.8]})
    analysis = analyse_study(exploratory, load_summaries(exploratory))
    assert analysis["complete"] and analysis["targets"] == [] and list(analysis["levels"]) == ["0.8"]
    text = study_markdown(exploratory, analysis)
    assert "Pre-registered targets" not in text
    assert "smallest exact permutation p is 2 / C(6, 3) = 0.1," in text
    alone = exploratory.replace(**{"experiment.models": ["equiseg_tiny"], "experiment.emm_margins": {}})
    alone_text = study_markdown(alone, analyse_study(alone, load_summaries(alone)))
    assert "| equiseg_tiny | 1.75 | 3 |" in alone_text and "minus | metric" not in alone_text  # nothing to compare
    sets = [f"--set={item}" for item in _study_overrides(tmp_path)]
    sets += ["--set=experiment.preregistered=false", "--set=experiment.dominance_levels=[0.8]"]
    result = CliRunner().invoke(cli, ["experiment", "study", "--profile", "study-smoke", *sets, "--analyse-only"])
    assert result.exit_code == 0, result.output
    doc = (tmp_path / "results.md").read_text()
    assert "![EMM lead" not in doc and "![EMM avg of every run" in doc
    assert not (tmp_path / "results" / "study-smoke-lead.png").exists()


def test_cli_interim_needs_analyse_only_and_writes_an_interim_section(tmp_path: Path) -> None:
    cfg = _study_cfg(tmp_path)
    _write_summaries(cfg)
    summary_path(cfg, 0.8, "equiseg_tiny", 2).unlink()  # the strongest setting is not complete
    sets = [f"--set={item}" for item in _study_overrides(tmp_path)]
    command = ["experiment", "study", "--profile", "study-smoke", *sets]
    refused = CliRunner().invoke(cli, [*command, "--interim"])
    assert refused.exit_code == 2 and "use it with --analyse-only" in refused.output
    missing = CliRunner().invoke(cli, [*command, "--analyse-only"])
    assert missing.exit_code == 2 and "1 run summaries missing" in missing.output
    result = CliRunner().invoke(cli, [*command, "--analyse-only", "--interim", "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)
    assert (payload["runs"], payload["planned_runs"], payload["complete"], payload["targets"]) == (11, 12, False, [])
    assert "**Interim: 11 of 12 planned runs.**" in (tmp_path / "results.md").read_text()


# ------------------------------------------------------------------------------------------- committed summaries


def _study_sections() -> list[str]:
    return re.findall(r"<!-- study:([\w-]+):begin -->", (REPO / "docs" / "results.md").read_text())


def test_results_doc_has_the_smoke_study_section() -> None:
    assert "study-smoke" in _study_sections(), "docs/results.md has no study-smoke section; run its analysis"


@pytest.mark.parametrize("profile", _study_sections())
def test_committed_summaries_reproduce_the_results_doc(profile: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every study section of docs/results.md is exactly what its committed per-run files give (an interim section
    from the runs committed so far)."""
    monkeypatch.chdir(REPO)  # the profiles' summary_dir is relative to the repository root
    cfg = load_config(profile, ())
    doc = (REPO / "docs" / "results.md").read_text()
    section = re.search(rf"<!-- study:{profile}:begin -->\n(.*?)\n<!-- study:{profile}:end -->", doc, re.DOTALL)
    assert section is not None
    summaries = load_summaries(cfg, interim="**Interim:" in section.group(1))
    analysis = analyse_study(cfg, summaries)
    figures = {key: f"results/{name}" for key, name in figure_names(cfg, analysis).items()}
    expected = study_markdown(cfg, analysis, figures).rstrip()
    assert section.group(1) == expected


@pytest.mark.slow
def test_gpu_study_bench_runs_a_tiny_study_on_cpu(tmp_path: Path) -> None:
    sets = [
        "data.samples=16", "data.image_size=32", "train.epochs=1", "robustness.suite=quick",
        "robustness.severities=[3]", "experiment.seeds=[0]", "experiment.dominance_levels=[0.5]",
        f"experiment.output_dir={tmp_path / 'runs'}", f"experiment.summary_dir={tmp_path / 'summaries'}",
        "train.device=cpu",
    ]  # fmt: skip
    command = [sys.executable, str(REPO / "bench" / "gpu_study.py"), "--profile", "study-smoke", "--jobs", "2"]
    command += [f"--set={item}" for item in sets] + ["--out", str(tmp_path / "out")]
    subprocess.run(command, check=True, cwd=REPO, timeout=600)
    report = json.loads((tmp_path / "out" / "gpu_study.json").read_text())
    assert len(report["runs"]) == 2 and all(run["exit"] == 0 for run in report["runs"]) and report["not_started"] == 0
    copied = sorted(p.name for p in (tmp_path / "out" / "summaries" / "dominance-0.5").iterdir())
    assert copied == ["cmnext_like_tiny-seed0.json", "equiseg_tiny-seed0.json"]


def test_a_run_held_by_another_process_is_refused_and_left_untouched(tmp_path: Path) -> None:
    """Two schedulers launching the same run: the second stops at once with its own exit status, and the first
    run's folder is not reset under it."""
    sets = [
        "data.samples=16", "data.image_size=32", "experiment.seeds=[0]", "experiment.dominance_levels=[0.5]",
        f"experiment.output_dir={tmp_path / 'runs'}", f"experiment.summary_dir={tmp_path / 'summaries'}",
    ]  # fmt: skip
    cfg = load_config("study-smoke", sets)
    folder = Path(cell_config(level_config(cfg, 0.5), "equiseg_tiny", 0).train.output_dir).parent
    (folder / "train").mkdir(parents=True)
    (folder / "train" / "last.pt").write_bytes(b"the first scheduler's checkpoint")
    holder = subprocess.Popen(
        [sys.executable, "-c", f"import sys, time\nfrom equiseg.experiments.runs import run_lock\nfrom pathlib import "
         f"Path\nwith run_lock(Path({str(folder)!r})):\n    print('held', flush=True)\n    time.sleep(120)"],
        stdout=subprocess.PIPE, text=True, cwd=REPO,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        command = [sys.executable, "-m", "equiseg.experiments.study", "--profile", "study-smoke", "--no-progress"]
        command += [f"--set={item}" for item in sets] + ["--only", "0.5,equiseg_tiny,0"]
        second = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=300)
        cli_sets = [f"--set={item}" for item in sets]  # equiseg_tiny seed 0 is the first run
        study = ["experiment", "study", "--profile", "study-smoke", "--no-progress"]
        by_cli = CliRunner().invoke(cli, [*study, *cli_sets])
    finally:
        holder.kill()
        holder.wait()
    assert second.returncode == EXIT_BUSY, second.stderr
    assert f"in progress in another process (pid {holder.pid})" in second.stderr
    assert by_cli.exit_code == 2 and "in progress in another process" in by_cli.output  # a one-line usage error
    assert (folder / "train" / "last.pt").read_bytes() == b"the first scheduler's checkpoint"
    assert not summary_path(cfg, 0.5, "equiseg_tiny", 0).exists()
    with run_lock(folder):  # released when its holder died, however it died
        pass


def test_study_module_runs_without_mlflow_kfp_or_click() -> None:
    """``python -m equiseg.experiments.study`` is what a bare GPU box runs."""
    code = (
        "import sys, equiseg.experiments.study; bad = {'mlflow', 'kfp', 'click', 'optuna'} & set(sys.modules); "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)
