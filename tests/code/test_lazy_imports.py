"""A KFP task or a command pays only for what it uses: the package inits of ``equiseg.steps`` and ``equiseg.models``
load their heavy modules on first use (docs/training.md, "Speed")."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("torch", "timm", "torchvision", "mlflow", "optuna", "great_expectations", "dvc")


def _loaded_after(code: str) -> list[str]:
    probe = f"import json, sys\n{code}\nprint(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=300)
    loaded: list[str] = json.loads(out.stdout.strip().splitlines()[-1])
    return loaded


def test_a_light_step_imports_no_other_steps_dependencies() -> None:
    assert _loaded_after("from equiseg.steps import version_data, write_run_summary, run_dir_for") == []


def test_model_names_need_no_torch_and_builders_still_load() -> None:
    assert _loaded_after("from equiseg.models import list_models, model_family, VARIANTS; list_models()") == []
    loaded = _loaded_after("from equiseg.models import create_model; create_model")
    assert "torch" in loaded and "mlflow" not in loaded


def test_building_and_running_a_model_needs_torch_alone() -> None:
    """The MiT is our own (equiseg.models.mit): timm would bring torchvision and torch._dynamo, seconds a task."""
    code = (
        "import torch\nfrom equiseg.models import create_model\n"
        "m = create_model('equiseg_tiny', num_classes=4, modalities=('rgb', 'depth'))\n"
        "m({'rgb': torch.zeros(1, 3, 32, 32), 'depth': torch.zeros(1, 1, 32, 32)})"
    )
    assert _loaded_after(code) == ["torch"]


def test_every_public_step_name_resolves() -> None:
    code = "import equiseg.steps as s\nfor n in s.__all__: getattr(s, n)"
    assert "torch" in _loaded_after(code)


def test_the_study_tasks_that_train_nothing_import_no_torch_or_mlflow() -> None:
    assert _loaded_after("from equiseg.steps import create_study, select_best_trial") == ["optuna"]
    assert "torch" in _loaded_after("from equiseg.tuning import run_study")


def test_data_preparation_and_the_package_inits_load_no_torch() -> None:
    assert _loaded_after("from equiseg.steps import prepare_data; import equiseg.steps.data") == []
    code = "import equiseg.data, equiseg.tracking, equiseg.promotion, equiseg.training, equiseg.robustness"
    assert _loaded_after(code) == []


def test_every_public_name_of_the_lazy_packages_resolves() -> None:
    packages = ("data", "tracking", "promotion", "training", "robustness", "tuning")
    code = "\n".join(f"import equiseg.{p} as m\nfor n in m.__all__: getattr(m, n)" for p in packages)
    assert "torch" in _loaded_after(code)


def test_the_validation_task_reads_the_champion_without_torch() -> None:
    assert "torch" not in _loaded_after("import equiseg.steps.validation")
