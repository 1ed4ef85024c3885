"""The claim experiment end to end, small ("one seed, two models, minutes"), so it cannot rot.

Real training, the full robustness suite, the two-level bootstrap, the report and MLflow (parent run plus one child
per model x seed), then the same runs on a simulated bare GPU box where none of the extras (``[mlops]``: mlflow,
optuna, great-expectations, dvc, psycopg2; ``[pipeline]``: kfp) can be imported.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from equiseg.config import load_config
from equiseg.experiments import run_claim

pytestmark = pytest.mark.slow

SMALL = (
    "data.samples=40",
    "data.image_size=32",
    "train.epochs=2",
    "train.eval_robustness_every=2",
    "robustness.batch_size=8",
    "experiment.bootstrap_samples=200",
)


def test_claim_smoke_trains_scores_reports_and_logs_every_run(tmp_path: Path) -> None:
    out, doc, store = tmp_path / "claim", tmp_path / "docs" / "results.md", tmp_path / "mlflow.db"
    cfg = load_config(
        "claim-smoke",
        [
            *SMALL,
            f"experiment.output_dir={out}",
            f"experiment.results_doc={doc}",
            f"tracking.uri=sqlite:///{store}",
            f"tracking.artifact_location={tmp_path / 'artifacts'}",
        ],
    )
    analysis = run_claim(cfg, progress=False, command="pytest")

    assert analysis.models == ["equiseg_tiny", "cmnext_like_tiny"] and analysis.seeds == [0]
    for model in analysis.models:
        metrics = analysis.metrics[model]
        assert {"clean", "emm_avg", "emm/depth-thermal", "miou_c_rgb", "rmm_avg", "nm_avg"} <= set(metrics)
        for estimate in metrics.values():
            assert estimate.low <= estimate.value + 1e-9 and estimate.value <= estimate.high + 1e-9
    targets = [o.name.split(" (")[0] for o in analysis.outcomes]
    assert targets == ["clean mIoU vs best baseline", "EMM avg vs cmnext_like_tiny"]
    saved = json.loads((out / "results.json").read_text())
    assert saved["format"] == "equiseg.claim/1" and saved["meta"]["command"] == "pytest"
    assert "## Profile `claim-smoke`" in doc.read_text()
    assert len(list((doc.parent / "results").glob("claim-smoke-*.png"))) == 5

    client = MlflowClient(tracking_uri=f"sqlite:///{store}")
    experiment = client.get_experiment_by_name(f"{cfg.tracking.experiment}-claim")
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if r.data.tags.get("equiseg.kind") == "claim-experiment"]
    children = [r for r in runs if r.data.tags.get("equiseg.kind") == "claim-run"]
    assert len(parents) == 1 and len(children) == 2
    parent = parents[0]
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parent.info.run_id}
    assert parent.data.metrics["targets_total"] == 2.0
    assert "delta_cmnext_like_tiny/emm_avg" in parent.data.metrics
    child = next(c for c in children if c.data.tags["equiseg.model"] == "equiseg_tiny")
    assert child.data.metrics["test/clean_miou"] == pytest.approx(analysis.metrics["equiseg_tiny"]["clean"].value)
    assert len(client.get_metric_history(child.info.run_id, "train_loss")) == 2  # one point per epoch
    artifacts = {a.path for a in client.list_artifacts(child.info.run_id, "evaluation")}
    assert {"evaluation/robustness.json", "evaluation/confusion.npz"} <= artifacts

    # a second invocation reuses the finished runs instead of training them again
    before = {p: p.stat().st_mtime_ns for p in out.glob("cells/*/train/best.pt")}
    again = run_claim(cfg, tracking=False, write_doc=False, progress=False)
    assert {p: p.stat().st_mtime_ns for p in out.glob("cells/*/train/best.pt")} == before
    assert again.differences["cmnext_like_tiny"]["emm_avg"] == analysis.differences["cmnext_like_tiny"]["emm_avg"]


BARE_BOX = textwrap.dedent(
    """
    import sys

    BLOCKED = {"mlflow", "kfp", "optuna", "great_expectations", "dvc", "psycopg2"}

    class Block:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError(f"not installed on the bare GPU box: {name}")
            return None

    sys.meta_path.insert(0, Block())
    from equiseg.config import load_config
    from equiseg.experiments.runs import run_cells

    records = run_cells(load_config("claim-smoke", sys.argv[1:]), progress=False)
    print(len(records), sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED))
    """
)


def test_runs_train_on_a_bare_gpu_box_without_the_tracking_stack(tmp_path: Path) -> None:
    only_equiseg = ["experiment.models=[equiseg_tiny]", "experiment.emm_margins={}"]
    overrides = [*SMALL, *only_equiseg, f"experiment.output_dir={tmp_path}"]
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    done = subprocess.run(
        [sys.executable, "-c", BARE_BOX, *overrides], capture_output=True, text=True, timeout=600, env=env, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "1 []"
    assert (tmp_path / "cells" / "equiseg_tiny-seed0" / "confusion.npz").is_file()
