"""The training loop must run on a bare GPU box: importing it pulls in neither mlflow, kfp nor optuna."""

from __future__ import annotations

import json
import subprocess
import sys

#: packages of the [mlops] and [pipeline] extras (matplotlib is a core dependency: the reports draw with it)
EXTRAS = ("mlflow", "kfp", "optuna", "great_expectations", "dvc", "psycopg2", "sqlalchemy")


def test_training_package_imports_no_tracking_or_orchestration_stack() -> None:
    probe = (
        "import json, sys, equiseg.training, equiseg.training.loop;"
        f"EXTRAS = {EXTRAS!r};"
        "print(json.dumps(sorted(m for m in EXTRAS if m in sys.modules)))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120)
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []
