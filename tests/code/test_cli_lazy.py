"""The CLI imports a command's module only when that command runs, and names the extra a missing dependency needs."""

from __future__ import annotations

import subprocess
import sys
import textwrap

BLOCK = textwrap.dedent(
    """
    import importlib.abc, sys

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in {blocked!r}:
                raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
            return None

    sys.meta_path.insert(0, Block())
    from click.testing import CliRunner
    from equiseg.cli.main import cli

    result = CliRunner().invoke(cli, {args!r})
    print("EXIT", result.exit_code)
    print(result.output)
    heavy = sorted(m for m in ("mlflow", "optuna", "great_expectations", "dvc", "torch") if m in sys.modules)
    print("LOADED", heavy)
    """
)


def _run(args: list[str], blocked: set[str]) -> str:
    code = BLOCK.format(blocked=blocked, args=args)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300).stdout


def test_root_help_lists_every_command_without_importing_them() -> None:
    out = _run(["--help"], set())
    for name in ("train", "tune", "evaluate", "registry", "data", "model", "experiment"):
        assert f"  {name} " in out
    assert "LOADED []" in out, out


def test_missing_optional_dependency_names_the_extra() -> None:
    out = _run(["tune", "--help"], {"optuna"})
    assert "EXIT 1" in out
    assert "equiseg tune needs optuna, from the [mlops] extra: pip install 'equiseg[mlops]'" in out


def test_commands_of_the_core_run_without_the_extras() -> None:
    out = _run(["model", "list", "--json"], {"mlflow", "optuna", "great_expectations", "dvc", "kfp"})
    assert "EXIT 0" in out and "equiseg_tiny" in out, out


def test_model_list_imports_no_torch() -> None:
    """``equiseg model list`` reads the torch-free catalog: it must not pay seconds for torch."""
    out = _run(["model", "list"], set())
    assert "EXIT 0" in out and "equiseg_b2" in out and "mean_fusion" in out, out
    assert "LOADED []" in out, out
