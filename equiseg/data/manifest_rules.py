"""The manifest-table rules of data validation (docs/data.md): which rows are quarantined before any pixel is read.

:func:`check_manifest_rules` applies them in plain Python. ``equiseg.expectations.run_manifest_suite`` applies the
same rules as a great-expectations suite (and writes its Data Docs); both return :class:`ManifestChecks`, and
:func:`equiseg.data.validate_dataset` takes either as its ``manifest_checks``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from equiseg.data.manifest import ALLOWED_SPLITS, LABEL_ENCODINGS, unsafe_path_reason

__all__ = [
    "ALLOWED_DTYPES",
    "UNSAFE_PATH_REGEX",
    "ManifestChecker",
    "ManifestChecks",
    "check_manifest_rules",
    "ingest_reasons",
    "rule_columns",
]

ALLOWED_DTYPES = ("uint8", "uint16", "int32", "float32", "float64", "bool")
UNSAFE_PATH_REGEX = r"(^[/\\]|^[A-Za-z]:|(^|[/\\])\.\.([/\\]|$))"
_MAX_SIDE, _MAX_CHANNELS = 65535, 16


@dataclass(frozen=True)
class ManifestChecks:
    """The outcome of the manifest rules.

    ``expectations`` lists one dict per rule (expectation, column, success, unexpected, observed); ``row_reasons``
    maps a row position to its ``(reason code, message)`` pairs; ``table_failures`` are table-level failures
    (blocking); ``docs_dir`` holds rendered docs of the check, if the checker wrote any.
    """

    success: bool
    expectations: list[dict[str, Any]]
    row_reasons: dict[int, list[tuple[str, str]]]
    table_failures: list[str] = field(default_factory=list)
    docs_dir: Path | None = None


#: ``(manifest table, modalities, docs folder) -> ManifestChecks``.
ManifestChecker = Callable[[pa.Table, Sequence[str], Path], ManifestChecks]


def rule_columns(modalities: Sequence[str]) -> list[str]:
    """The manifest columns the rules read."""
    columns = ["sample_id", "split", "source", "height", "width", "label_encoding", "label_path"]
    for modality in modalities:
        columns += [f"{modality}_path", f"{modality}_channels", f"{modality}_dtype"]
    return columns


class _Rules:
    """Collects each rule's result the way the great-expectations suite reports it."""

    def __init__(self) -> None:
        self.expectations: list[dict[str, Any]] = []
        self.row_reasons: dict[int, list[tuple[str, str]]] = {}

    def apply(self, expectation: str, column: str, values: list[Any], bad: Callable[[Any], str | None]) -> None:
        """``bad(value)`` returns the reason code of a failing non-null value, else None."""
        unexpected = 0
        for position, value in enumerate(values):
            code = bad(value)
            if code:
                unexpected += 1
                self.row_reasons.setdefault(position, []).append((code, f"{column}={value!r} fails {expectation}"))
        self.expectations.append(
            {"expectation": expectation, "column": column, "success": not unexpected, "unexpected": unexpected}
        )


def _outside(low: int, high: int, code: str) -> Callable[[Any], str | None]:
    return lambda v: code if v is not None and not low <= v <= high else None


def _not_in(allowed: Sequence[str], code: str) -> Callable[[Any], str | None]:
    return lambda v: code if v is not None and v not in allowed else None


def _unsafe(value: Any) -> str | None:
    if value is None or not re.search(UNSAFE_PATH_REGEX, str(value)):
        return None
    return unsafe_path_reason(str(value)) or "path_parent_escape"


def check_manifest_rules(table: pa.Table, modalities: Sequence[str], docs_dir: Path | None = None) -> ManifestChecks:
    """Apply the manifest rules in plain Python; ``docs_dir`` is unused (no docs are rendered)."""
    columns = {name: table.column(name).to_pylist() for name in rule_columns(modalities)}
    rules = _Rules()
    for name in rule_columns(modalities):
        if name != "label_path":  # label_path may be null (unlabelled)
            rules.apply(
                "expect_column_values_to_not_be_null",
                name,
                columns[name],
                lambda v: "null_field" if v is None else None,
            )
    seen: set[Any] = set()

    def duplicate(value: Any) -> str | None:  # the first occurrence of a duplicated id is kept
        if value is None:
            return None
        if value in seen:
            return "duplicate_id"
        seen.add(value)
        return None

    rules.apply("expect_column_values_to_be_unique", "sample_id", columns["sample_id"], duplicate)
    rules.apply(
        "expect_column_values_to_be_in_set", "split", columns["split"], _not_in(ALLOWED_SPLITS, "unknown_split")
    )
    in_set = "expect_column_values_to_be_in_set"
    rules.apply(in_set, "label_encoding", columns["label_encoding"], _not_in(LABEL_ENCODINGS, "bad_declaration"))
    for name in ("height", "width"):
        rules.apply(
            "expect_column_values_to_be_between", name, columns[name], _outside(1, _MAX_SIDE, "bad_declaration")
        )
    for modality in modalities:
        rules.apply("expect_column_values_to_not_match_regex", f"{modality}_path", columns[f"{modality}_path"], _unsafe)
        channels = columns[f"{modality}_channels"]
        rules.apply(
            "expect_column_values_to_be_between",
            f"{modality}_channels",
            channels,
            _outside(1, _MAX_CHANNELS, "bad_declaration"),
        )
        dtypes = columns[f"{modality}_dtype"]
        rules.apply(in_set, f"{modality}_dtype", dtypes, _not_in(ALLOWED_DTYPES, "bad_declaration"))
    rules.apply("expect_column_values_to_not_match_regex", "label_path", columns["label_path"], _unsafe)
    failures = [] if table.num_rows else ["expect_table_row_count_to_be_between failed (observed 0)"]
    success = not failures and all(e["success"] for e in rules.expectations)
    return ManifestChecks(success, rules.expectations, rules.row_reasons, failures)


def ingest_reasons(table: pa.Table) -> dict[int, list[tuple[str, str]]]:
    """Rows a reader marked for quarantine at ingestion, with their reason codes (``ingest_codes``) and details.

    These replace any manifest-rule reasons of the row: a missing modality file also leaves its path null, and the
    reader's code is the specific one.
    """
    if "ingest_codes" not in table.column_names:
        return {}
    details = table.column("ingest_detail").to_pylist() if "ingest_detail" in table.column_names else None
    reasons: dict[int, list[tuple[str, str]]] = {}
    for position, codes in enumerate(table.column("ingest_codes").to_pylist()):
        if codes:
            detail = (details[position] if details else None) or ", ".join(codes)
            reasons[position] = [(code, detail) for code in codes]
    return reasons
