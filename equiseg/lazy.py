"""Package namespaces that load each public name's module on first use (PEP 562).

A KFP task runs in its own process and imports one step; a package ``__init__`` that imported every module would
make it pay for torch, mlflow, optuna or great-expectations it never uses (docs/training.md, "Speed").
``from equiseg.data import read_manifest`` still works: the package resolves the name from its table.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_namespace"]


def lazy_namespace(
    package: str, table: Mapping[str, str], namespace: dict[str, Any]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package``: ``table`` maps each public name to the module defining it.

    A resolved name is stored in ``namespace`` (the package's ``globals()``), so each is looked up once.
    """

    def __getattr__(name: str) -> Any:
        module = table.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*namespace, *table})

    return __getattr__, __dir__
