"""The floors inside ``equiseg/`` and the arrows between them, read from the source with ``ast`` (docs/design.md).

Every import in ``equiseg/`` counts, at module level and inside functions (relative imports resolved, imports under
``TYPE_CHECKING`` too): a module imports only its own package and packages on lower floors; siblings on one floor do
not import each other. Ground and core import only the standard library and the core's third-party packages. An
import inside a function body needs a comment on its line or the line above saying why (an optional heavy
dependency: ``# optional: the [mlops] extra``). ``components/*.py`` import only the standard library and kfp at
module top, as kubeflow/pipelines-components asks of its components. Files stay within 450 lines, functions 120.
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

#: (module prefix, package, rank). A package imports only itself and packages of a strictly lower rank.
FLOORS: tuple[tuple[str, str, int], ...] = (
    ("equiseg.config", "ground", 0),
    ("equiseg.modalities", "ground", 0),
    ("equiseg.provenance", "ground", 0),
    ("equiseg.figures", "ground", 0),
    ("equiseg.pages", "ground", 0),
    ("equiseg.process", "ground", 0),
    ("equiseg.lazy", "ground", 0),
    ("equiseg.models", "models", 10),
    ("equiseg.data", "data", 10),
    ("equiseg.robustness", "robustness", 11),
    ("equiseg.training", "training", 12),
    ("equiseg.tracking", "tracking", 20),
    ("equiseg.versioning", "versioning", 20),
    ("equiseg.expectations", "expectations", 20),
    ("equiseg.tuning", "tuning", 21),
    ("equiseg.promotion", "promotion", 21),
    ("equiseg.steps", "steps", 30),
    ("equiseg.experiments", "experiments", 30),
    ("equiseg.cli", "cli", 31),
)
FLOOR_OF_RANK = {0: "ground", 10: "core", 11: "core", 12: "core", 20: "adapters", 21: "adapters", 30: "application",
                 31: "application"}  # fmt: skip
#: Third-party packages ground and core may import (top-level import names).
CORE_THIRD_PARTY = frozenset({"torch", "numpy", "pyarrow", "PIL", "yaml", "tqdm", "matplotlib", "markdown_it"})
STDLIB = frozenset(sys.stdlib_module_names) | {"__future__"}
OUTER = frozenset({"components", "pipelines"})  # the floors above the library: equiseg never imports them
TOOL_DIRECTIVES = ("noqa", "type:", "fmt:", "pragma:")
MAX_FILE_LINES = 450
MAX_FUNCTION_LINES = 120


@dataclass(frozen=True)
class Violation:
    path: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}"


@dataclass(frozen=True)
class Import:
    target: str  # absolute dotted name, e.g. equiseg.tracking.load_model
    line: int
    in_function: bool
    commented: bool  # a comment on the import's line or the line above


def package_of(module: str) -> tuple[str, int] | None:
    """(package, rank) of an ``equiseg`` module; ``equiseg`` itself is ground; None for an unmapped module."""
    if module == "equiseg":
        return "ground", 0
    for prefix, package, rank in FLOORS:
        if module == prefix or module.startswith(prefix + "."):
            return package, rank
    return None


def read_imports(module: str, source: str, *, is_package: bool = False) -> list[Import]:
    """Every import of ``source`` (module ``module``), relative ones resolved to absolute dotted names.

    ``from a.b import c`` yields ``a.b.c`` (c may be a module or a name in ``a.b``; the floor is the same).
    """
    tree = ast.parse(source)
    lines = source.splitlines()
    parents: dict[ast.AST, ast.AST] = {}
    for node in ast.walk(tree):
        for child in ast.iter_child_nodes(node):
            parents[child] = node
    package = module if is_package else module.rpartition(".")[0]
    found: list[Import] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                anchor = ".".join(parts[: len(parts) - node.level + 1])
                base = f"{anchor}.{base}" if base else anchor
            targets = [f"{base}.{alias.name}" if alias.name != "*" else base for alias in node.names]
        else:
            continue
        in_function = _inside_function(node, parents)
        commented = _has_comment(lines, node.lineno)
        found += [Import(target, node.lineno, in_function, commented) for target in targets]
    return found


def _inside_function(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            return True
    return False


def _has_comment(lines: list[str], lineno: int) -> bool:
    """A comment saying why on the line or the line above (tool directives such as ``# noqa`` do not count)."""
    here = lines[lineno - 1] if lineno - 1 < len(lines) else ""
    above = lines[lineno - 2].strip() if lineno >= 2 else ""
    comments = [here.partition("#")[2].strip(), above[1:].strip() if above.startswith("#") else ""]
    return any(text and not text.startswith(TOOL_DIRECTIVES) for text in comments)


NO_FLOOR = "{target} is on no floor: add it to FLOORS in tests/code/test_layers.py and to the table in docs/design.md"
UNCOMMENTED = (
    "import of {target} inside a function body: move it to the module top; only an optional heavy dependency stays "
    "inside, with a comment saying why (e.g. `# optional: the [mlops] extra`)"
)
OUTWARD = "{module} imports {target}: equiseg never imports {top}/ (the arrows run {top}/ -> equiseg); pass it in"
THIRD_PARTY = (
    "{module} ({package}, {floor}) imports {top}: ground and core import only the standard library and "
    + ", ".join(sorted(CORE_THIRD_PARTY))
    + "; move this code to an adapter (equiseg.tracking, versioning, expectations, tuning, promotion)"
)
COMPONENT_TOP = (
    "component imports {target} at module top: import only the standard library and kfp there; call equiseg inside "
    "the component function"
)
ARROW = (
    "arrow goes {kind}: {package} ({floor}) imports {target} ({other}, {other_floor}). Move the shared code down to "
    "{package}'s floor or below, or pass it in from above as an argument or callable (docs/design.md)"
)


def check_module(module: str, source: str, *, path: str = "", is_package: bool = False) -> list[Violation]:
    """Layer violations of one ``equiseg`` module: upward or sideways arrows, third-party imports in ground/core,
    imports of ``components``/``pipelines``, and imports inside a function body without a comment saying why."""
    where = path or module.replace(".", "/") + ".py"
    own = package_of(module)
    if own is None:
        return [Violation(where, 1, NO_FLOOR.format(target=module))]
    package, rank = own
    found: list[Violation] = []
    for imp in read_imports(module, source, is_package=is_package):
        top = imp.target.split(".")[0]
        if imp.in_function and not imp.commented:
            found.append(Violation(where, imp.line, UNCOMMENTED.format(target=imp.target)))
        if top == "equiseg":
            message = _arrow_message(imp.target, package, rank)
        elif top in OUTER:
            message = OUTWARD.format(module=module, target=imp.target, top=top)
        elif rank < 20 and top not in STDLIB and top not in CORE_THIRD_PARTY:
            message = THIRD_PARTY.format(module=module, package=package, floor=FLOOR_OF_RANK[rank], top=top)
        else:
            message = ""
        if message:
            found.append(Violation(where, imp.line, message))
    return found


def _arrow_message(target: str, package: str, rank: int) -> str:
    """Why importing ``target`` from ``package`` breaks the floors; empty when it does not."""
    floor = package_of(target)
    if floor is None:
        name = target.split(".")
        is_module = (REPO / "equiseg" / name[1]).exists() or (REPO / "equiseg" / f"{name[1]}.py").exists()
        if len(name) == 2 and not is_module:
            return ""  # a name defined in equiseg/__init__.py, such as __version__
        return NO_FLOOR.format(target=target)
    other, other_rank = floor
    if other == package or other_rank < rank:
        return ""
    kind = "up" if other_rank > rank else "sideways"
    return ARROW.format(kind=kind, package=package, floor=FLOOR_OF_RANK[rank], target=target, other=other,
                        other_floor=FLOOR_OF_RANK[other_rank])  # fmt: skip


def _equiseg_modules() -> list[tuple[str, Path, bool]]:
    out = []
    for path in sorted((REPO / "equiseg").rglob("*.py")):
        rel = path.relative_to(REPO).with_suffix("")
        is_package = rel.name == "__init__"
        parts = rel.parts[:-1] if is_package else rel.parts
        out.append((".".join(parts), path, is_package))
    return out


def _report(violations: list[Violation], what: str) -> None:
    if violations:
        text = "\n".join(str(v) for v in sorted(violations, key=lambda v: (v.path, v.line)))
        pytest.fail(f"{len(violations)} {what}:\n{text}", pytrace=False)


# --------------------------------------------------------------------------------------------------------------------
# The repository
# --------------------------------------------------------------------------------------------------------------------


def test_equiseg_imports_point_down_the_floors() -> None:
    violations: list[Violation] = []
    for module, path, is_package in _equiseg_modules():
        rel = str(path.relative_to(REPO))
        violations += check_module(module, path.read_text(), path=rel, is_package=is_package)
    _report(violations, "layer violations in equiseg/ (docs/design.md, 'Floors')")


def test_components_import_only_stdlib_and_kfp_at_module_top() -> None:
    violations: list[Violation] = []
    for path in sorted((REPO / "components").glob("*.py")):
        rel = str(path.relative_to(REPO))
        violations += check_component(path.read_text(), path=rel)
    _report(violations, "component imports beyond the standard library and kfp at module top")


def check_component(source: str, *, path: str) -> list[Violation]:
    """Module-top imports of a component file other than the standard library, kfp and ``components`` itself."""
    found = []
    for imp in read_imports("components.x", source):
        top = imp.target.split(".")[0]
        if not imp.in_function and top not in STDLIB and top not in ("kfp", "components"):
            found.append(Violation(path, imp.line, COMPONENT_TOP.format(target=imp.target)))
    return found


def test_files_and_functions_stay_short() -> None:
    violations: list[Violation] = []
    for _module, path, _ in _equiseg_modules():
        rel = str(path.relative_to(REPO))
        violations += check_lengths(path.read_text(), path=rel)
    _report(violations, "files or functions over the length limits")


def check_lengths(source: str, *, path: str) -> list[Violation]:
    """Files over :data:`MAX_FILE_LINES` lines and functions over :data:`MAX_FUNCTION_LINES` (decorators excluded)."""
    found = []
    lines = len(source.splitlines())
    if lines > MAX_FILE_LINES:
        found.append(Violation(path, 1, f"{lines} lines (limit {MAX_FILE_LINES}): split the module by job"))
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            length = (node.end_lineno or node.lineno) - node.lineno + 1
            if length > MAX_FUNCTION_LINES:
                message = f"{node.name} is {length} lines (limit {MAX_FUNCTION_LINES}): split it by job"
                found.append(Violation(path, node.lineno, message))
    return found


# --------------------------------------------------------------------------------------------------------------------
# The checker on planted text
# --------------------------------------------------------------------------------------------------------------------


def _messages(module: str, source: str, **kwargs: bool) -> list[str]:
    return [v.message for v in check_module(module, source, **kwargs)]


def test_checker_flags_a_planted_upward_import_at_module_level_and_inside_a_function() -> None:
    assert any(
        "arrow goes up" in m for m in _messages("equiseg.training.loop", "from equiseg.tracking import Tracker\n")
    )
    source = "def f():\n    # optional: the [mlops] extra\n    from equiseg.tuning import run_study\n"
    messages = _messages("equiseg.robustness.evaluate", source)
    assert len(messages) == 1 and "arrow goes up" in messages[0] and "tuning" in messages[0]


def test_checker_resolves_relative_imports() -> None:
    messages = _messages("equiseg.models.encoder", "from ..tracking import load_model\n")
    assert len(messages) == 1 and "equiseg.tracking.load_model" in messages[0]
    assert _messages("equiseg.models", "from .encoder import Encoder\n", is_package=True) == []
    assert _messages("equiseg.training.loop", "from ..robustness import evaluate_robustness\n") == []


def test_checker_flags_sideways_imports_between_siblings() -> None:
    assert any("sideways" in m for m in _messages("equiseg.models.base", "import equiseg.data.dataset\n"))
    assert any("sideways" in m for m in _messages("equiseg.steps.train", "from equiseg.experiments import claim\n"))


def test_checker_accepts_downward_imports_and_commented_optional_ones() -> None:
    source = (
        "import torch\nfrom equiseg.config import EquisegConfig\nfrom equiseg.models import create_model\n"
        "from equiseg.robustness import evaluate_robustness\n"
    )
    assert _messages("equiseg.training.loop", source) == []
    source = "def f():\n    import mlflow  # optional: the [mlops] extra\n"
    assert _messages("equiseg.tracking.runs", source) == []
    assert _messages("equiseg.cli.main", "from equiseg.steps import run_train\nfrom equiseg import __version__\n") == []


def test_checker_flags_third_party_in_core_and_uncommented_function_imports() -> None:
    messages = _messages("equiseg.training.loop", "def f():\n    # optional: tuning\n    import optuna\n")
    assert len(messages) == 1 and "imports optuna" in messages[0]
    messages = _messages("equiseg.promotion.gate", "def f():\n    import json\n")
    assert len(messages) == 1 and "inside a function body" in messages[0]
    assert any("never imports" in m for m in _messages("equiseg.steps.train", "from components import train\n"))
    assert any("on no floor" in m for m in _messages("equiseg.newthing", "import os\n"))


def test_component_and_length_checkers_on_planted_text() -> None:
    source = (
        "import json\nfrom kfp import dsl\nfrom ._image import BASE_IMAGE\nimport equiseg\n\n"
        "def op():\n    from equiseg.steps import train\n"
    )
    (violation,) = check_component(source, path="components/x.py")
    assert violation.line == 4 and "equiseg" in violation.message
    long_function = "def f():\n" + "    x = 1\n" * MAX_FUNCTION_LINES
    assert [v.line for v in check_lengths(long_function, path="m.py")] == [1]
    assert len(check_lengths("x = 1\n" * (MAX_FILE_LINES + 1), path="m.py")) == 1


def test_checker_flags_an_upward_import_planted_in_a_real_module() -> None:
    source = (REPO / "equiseg" / "modalities.py").read_text()
    clean = {str(v) for v in check_module("equiseg.modalities", source)}
    planted = source + "\nfrom equiseg.tracking import load_model\n"
    new = [v for v in check_module("equiseg.modalities", planted) if str(v) not in clean]
    assert len(new) == 1 and new[0].line == len(planted.splitlines()) and "arrow goes up" in new[0].message
