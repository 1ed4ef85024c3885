"""Components import only the standard library and kfp at module top; the equiseg call sits in the function body."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

from components._image import DEFAULT_IMAGE
from equiseg.config import PipelineConfig

COMPONENTS = Path(__file__).resolve().parents[2] / "components"
ALLOWED = set(sys.stdlib_module_names) | {"__future__", "kfp", "components"}


def _top_level_imports(path: Path) -> list[str]:
    names = []
    for node in ast.parse(path.read_text()).body:  # module level only, not function bodies
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
    return names


def test_components_import_only_stdlib_and_kfp_at_module_top() -> None:
    files = sorted(COMPONENTS.glob("*.py"))
    assert len(files) > 5
    wrong = {
        f"{path.name}: {name}"
        for path in files
        for name in _top_level_imports(path)
        if name.split(".")[0] not in ALLOWED
    }
    assert not wrong, f"move these imports into the component function body: {sorted(wrong)}"


def test_default_image_is_the_configured_one() -> None:
    assert PipelineConfig().image == DEFAULT_IMAGE
