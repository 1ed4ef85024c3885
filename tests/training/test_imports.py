"""The training loop must run on a bare GPU box: importing it pulls in neither mlflow, kfp nor optuna."""

from __future__ import annotations

import json
import subprocess
import sys


def test_training_package_imports_no_tracking_or_orchestration_stack() -> None:
    probe = (
        "import json, sys, equiseg.training, equiseg.training.loop;"
        "print(json.dumps(sorted(m for m in ('mlflow', 'kfp', 'optuna', 'matplotlib') if m in sys.modules)))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120)
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []
