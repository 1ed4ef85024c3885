"""Report files: JSON round trip, Markdown, self-contained HTML and real PNG figures."""

from __future__ import annotations

import json

import pytest
from robustness_reference import NUM_CLASSES, SingleModalityModel, make_batches

from equiseg.robustness import RobustnessResult, collect_examples, evaluate_robustness, write_robustness_report

MODS = ("rgb", "depth")


@pytest.fixture(scope="module")
def result_and_examples() -> tuple[RobustnessResult, list]:
    batches = make_batches(MODS, num_images=6, batch_size=3)
    model = SingleModalityModel("rgb")
    result = evaluate_robustness(
        model,
        batches,
        num_classes=NUM_CLASSES,
        modalities=MODS,
        severities=[1, 3],
        bootstrap_samples=50,
        progress=False,
    )
    examples = collect_examples(model, batches, modalities=MODS, slices=("clean", "emm/depth", "corrupt/rgb/fog/s3"))
    return result, examples


def test_report_writes_every_artifact(tmp_path, result_and_examples) -> None:
    result, examples = result_and_examples
    assert {e.conditions for e in examples} == {("night",), ("fog",), ()}  # one sample per condition
    assert set(examples[0].predictions) == {"clean", "emm/depth", "corrupt/rgb/fog/s3"}
    paths = write_robustness_report(result, tmp_path / "report", examples=examples)
    assert set(paths) == {"json", "markdown", "html", "heatmap", "emm_subsets", "examples"}
    for key in ("heatmap", "emm_subsets", "examples"):
        assert paths[key].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    raw = json.loads(paths["json"].read_text())
    assert raw["summary"]["drop_without_depth"] == 0.0
    assert {s["name"] for s in raw["slices"]} == set(result.slices)
    assert all(s["ci_low"] is None or s["ci_low"] <= s["miou"] + 1e-9 for s in raw["slices"])
    md = paths["markdown"].read_text()
    assert "## Corruption matrix (mIoU)" in md and "| rgb | fog |" in md
    # Slices are named by what is kept; the drop from clean is shown next to each value.
    emm_depth = next(line for line in md.splitlines() if line.startswith("| kept depth |"))
    drop = result.slices["emm/depth"].miou - result.clean_miou
    assert drop < -10 and f"| {drop:.2f} |" in emm_depth  # the RGB-only model collapses without RGB
    assert "## Change from clean (mIoU points)" in md
    page = paths["html"].read_text()
    assert page.count("data:image/png;base64,") == 3
    assert "src='http" not in page and "<script" not in page  # self-contained
    assert RobustnessResult.from_json(paths["json"]).summary_metrics() == pytest.approx(
        result.summary_metrics(), nan_ok=True
    )


def test_clean_suite_report_has_no_matrix_figures(tmp_path) -> None:
    result = evaluate_robustness(
        SingleModalityModel("rgb"),
        make_batches(MODS, num_images=4),
        num_classes=NUM_CLASSES,
        modalities=MODS,
        suite="clean",
        progress=False,
    )
    paths = write_robustness_report(result, tmp_path)
    assert "heatmap" not in paths and "emm_subsets" not in paths
    assert set(result.summary_metrics()) >= {"clean_miou", "worst_slice_miou", "cond_night_miou"}
    assert "emm_avg" not in result.summary_metrics()


def test_report_names_the_classes(tmp_path, result_and_examples) -> None:
    result, _ = result_and_examples
    names = [f"class{i}" for i in range(NUM_CLASSES)]
    paths = write_robustness_report(result, tmp_path, class_names=names)
    md = paths["markdown"].read_text()
    assert all(f"| {i} class{i} |" in md for i in range(NUM_CLASSES))
