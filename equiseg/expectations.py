"""The manifest rules (``equiseg.data.manifest_rules``) as a great-expectations 1.x suite, with Data Docs.

:func:`run_manifest_suite` is a ``ManifestChecker``: pass it to :func:`equiseg.data.validate_dataset` as
``manifest_checks`` and the manifest table is checked by an ephemeral GX checkpoint whose unexpected rows become
quarantine reasons, and whose Data Docs land in ``<report dir>/gx_docs/`` (docs/data.md).
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa

from equiseg.data.manifest import ALLOWED_SPLITS, LABEL_ENCODINGS, unsafe_path_reason
from equiseg.data.manifest_rules import ALLOWED_DTYPES, UNSAFE_PATH_REGEX, ManifestChecks, rule_columns

__all__ = ["run_manifest_suite"]


def _manifest_frame(table: pa.Table, modalities: Sequence[str]) -> Any:
    """GX copies the frame per expectation: keep it to the columns the rules read."""
    return table.select(rule_columns(modalities)).to_pandas()


def _build_suite(gx: Any, gxe: Any, modalities: Sequence[str]) -> Any:
    """The manifest suite; each expectation's meta names the reason code its unexpected rows are quarantined for."""
    suite = gx.ExpectationSuite(name="manifest")

    def add(expectation: Any, reason: str = "", column: str = "") -> None:
        # The reason code travels in the expectation's meta, so results map back without relying on order.
        expectation.meta = {"equiseg_reason": reason, "equiseg_column": column}
        suite.add_expectation(expectation)

    add(gxe.ExpectTableRowCountToBeBetween(min_value=1))
    required = [c for c in rule_columns(modalities) if c != "label_path"]  # label_path may be null (unlabelled)
    add(gxe.ExpectTableColumnsToMatchSet(column_set=rule_columns(modalities), exact_match=True))
    for column in required:
        add(gxe.ExpectColumnValuesToNotBeNull(column=column), "null_field", column)
    add(gxe.ExpectColumnValuesToBeUnique(column="sample_id"), "duplicate_id", "sample_id")
    add(gxe.ExpectColumnValuesToBeInSet(column="split", value_set=list(ALLOWED_SPLITS)), "unknown_split", "split")
    add(gxe.ExpectColumnValuesToBeInSet(column="label_encoding", value_set=list(LABEL_ENCODINGS)), "bad_declaration")
    for column in ("height", "width"):
        add(gxe.ExpectColumnValuesToBeBetween(column=column, min_value=1, max_value=65535), "bad_declaration", column)
    for modality in modalities:
        add(
            gxe.ExpectColumnValuesToNotMatchRegex(column=f"{modality}_path", regex=UNSAFE_PATH_REGEX),
            "path",
            f"{modality}_path",
        )
        add(
            gxe.ExpectColumnValuesToBeBetween(column=f"{modality}_channels", min_value=1, max_value=16),
            "bad_declaration",
            f"{modality}_channels",
        )
        add(
            gxe.ExpectColumnValuesToBeInSet(column=f"{modality}_dtype", value_set=list(ALLOWED_DTYPES)),
            "bad_declaration",
            f"{modality}_dtype",
        )
    add(gxe.ExpectColumnValuesToNotMatchRegex(column="label_path", regex=UNSAFE_PATH_REGEX), "path", "label_path")
    return suite


def _drop_default_docs_site(ctx: Any) -> None:
    """Remove the ephemeral context's ``local_site`` and the temporary folder GX created for it."""
    site = (ctx.variables.data_docs_sites or {}).get("local_site")
    if not site:
        return
    base = Path(str(site.get("store_backend", {}).get("base_directory", "")))
    with contextlib.suppress(Exception):
        ctx.delete_data_docs_site("local_site")
    if base.name.startswith("tmp") and base.parent == Path(tempfile.gettempdir()) and base.is_dir():
        shutil.rmtree(base, ignore_errors=True)


def _checkpoint(modalities: Sequence[str], docs_dir: Path) -> Any:
    """An ephemeral GX context with the manifest suite, a Data Docs site in ``docs_dir`` and a checkpoint."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            import great_expectations as gx  # optional: the [mlops] extra; slow to import
            import great_expectations.expectations as gxe  # optional: the [mlops] extra
            from great_expectations.data_context.types.base import ProgressBarsConfig  # optional: the [mlops] extra
        except ImportError as exc:
            raise ImportError(
                "the manifest suite needs great-expectations: pip install 'equiseg[mlops]' "
                "(or validate with the plain-Python rules: `equiseg data validate --no-gx`)"
            ) from exc

    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    ctx = gx.get_context(mode="ephemeral")
    ctx.variables.progress_bars = ProgressBarsConfig(globally=False)
    _drop_default_docs_site(ctx)
    batch_definition = (
        ctx.data_sources.add_pandas(name="equiseg")
        .add_dataframe_asset(name="manifest")
        .add_batch_definition_whole_dataframe("whole_manifest")
    )
    suite = ctx.suites.add(_build_suite(gx, gxe, modalities))
    docs_dir.mkdir(parents=True, exist_ok=True)
    ctx.add_data_docs_site(
        site_name="equiseg_docs",
        site_config={
            "class_name": "SiteBuilder",
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir.resolve())},
        },
    )
    definition = ctx.validation_definitions.add(
        gx.ValidationDefinition(name="manifest_validation", data=batch_definition, suite=suite)
    )
    return ctx.checkpoints.add(
        gx.Checkpoint(
            name="manifest_checkpoint",
            validation_definitions=[definition],
            actions=[gx.checkpoint.UpdateDataDocsAction(name="update_docs", site_names=["equiseg_docs"])],
            result_format={"result_format": "COMPLETE"},
        )
    )


def _outcome(result: Any, frame: Any, docs_dir: Path) -> ManifestChecks:
    """Map the checkpoint result back to expectations, per-row quarantine reasons and table-level failures."""
    row_reasons: dict[int, list[tuple[str, str]]] = {}
    expectations: list[dict[str, Any]] = []
    table_failures: list[str] = []
    first_index: dict[str, int] = {}
    for position, sample_id in enumerate(frame["sample_id"].tolist()):
        first_index.setdefault(sample_id, position)
    validation = next(iter(result.run_results.values()))
    for item in validation.results:
        config = item.expectation_config
        if config is None:  # pragma: no cover - GX always attaches the configuration
            continue
        meta = config.meta or {}
        reason, column = str(meta.get("equiseg_reason", "")), str(meta.get("equiseg_column", ""))
        unexpected = item.result.get("unexpected_index_list") or []
        expectations.append(
            {
                "expectation": config.type,
                "column": config.kwargs.get("column", ""),
                "success": bool(item.success),
                "unexpected": int(item.result.get("unexpected_count") or len(unexpected)),
                "observed": item.result.get("observed_value"),
            }
        )
        if item.success:
            continue
        if not reason:
            table_failures.append(f"{config.type} failed (observed {item.result.get('observed_value')!r})")
            continue
        for position in unexpected:
            position = int(position)
            value = frame.iloc[position][column] if column else None
            code = reason
            if reason == "path":
                code = unsafe_path_reason(str(value)) or "path_parent_escape"
            if reason == "duplicate_id" and first_index.get(str(value)) == position:
                continue  # the first occurrence of a duplicated id is kept
            row_reasons.setdefault(position, []).append((code, f"{column}={value!r} fails {config.type}"))
    return ManifestChecks(bool(result.success), expectations, row_reasons, table_failures, docs_dir)


def run_manifest_suite(table: pa.Table, modalities: Sequence[str], docs_dir: Path) -> ManifestChecks:
    """Run the manifest suite in an ephemeral GX context and build its Data Docs under ``docs_dir``."""
    checkpoint = _checkpoint(modalities, docs_dir)
    frame = _manifest_frame(table, modalities)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = checkpoint.run(batch_parameters={"dataframe": frame})
    return _outcome(result, frame, docs_dir)
