"""Dataset validation: a Great Expectations suite on the manifest plus a streaming pixel validator (issue 3, item 5).

Flow: read the manifest (an empty one or missing columns is a :class:`ManifestError`, not a quarantine) → GX 1.x
ephemeral checkpoint over the manifest table (schema, nulls, unique ids, splits, sizes, relative paths), whose
unexpected rows become quarantine reasons → every remaining row is checked by :func:`check_sample` in worker
processes → dataset statistics, drift against a reference profile (the ``stats.json`` of the last accepted
version) → ``validated.parquet``, ``quarantine.parquet``, ``stats.json``, ``report.html``, ``gx_docs/``.
Invariant: rows in = validated + quarantined.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import multiprocessing
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from equiseg.data.manifest import (
    ALLOWED_SPLITS,
    LABEL_ENCODINGS,
    ManifestError,
    check_columns,
    manifest_info,
    manifest_modalities,
    read_manifest,
    unsafe_path_reason,
)
from equiseg.data.pixelcheck import REASON_CODES, SampleCheck, check_sample
from equiseg.data.synthetic import CLASS_NAMES, SYNTHETIC_CLASS_SET

__all__ = ["ValidationResult", "drift_distances", "validate_dataset"]

logger = logging.getLogger(__name__)

_ALLOWED_DTYPES = ("uint8", "uint16", "int32", "float32", "float64", "bool")
_UNSAFE_PATH_REGEX = r"(^[/\\]|^[A-Za-z]:|(^|[/\\])\.\.([/\\]|$))"


@dataclass(frozen=True)
class ValidationResult:
    """What :func:`validate_dataset` decided and where it wrote its outputs."""

    passed: bool
    summary: str
    rows_in: int
    rows_validated: int
    rows_quarantined: int
    validated_path: Path
    quarantine_path: Path
    stats_path: Path
    report_path: Path
    gx_docs_dir: Path
    gx_success: bool
    blocking: tuple[str, ...] = ()
    reason_counts: dict[str, int] = field(default_factory=dict)
    drift: dict[str, float] = field(default_factory=dict)
    manifest_sha256: str = ""


# --------------------------------------------------------------------------------------------------------------------
# Manifest checks with Great Expectations
# --------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _GxOutcome:
    success: bool
    expectations: list[dict[str, Any]]  # type, column, success, unexpected count, severity
    row_reasons: dict[int, list[tuple[str, str]]]
    table_failures: list[str]


def _gx_columns(modalities: Sequence[str]) -> list[str]:
    """The manifest columns the GX suite reads (GX copies the frame per expectation: keep it narrow)."""
    columns = ["sample_id", "split", "source", "height", "width", "label_encoding", "label_path"]
    for modality in modalities:
        columns += [f"{modality}_path", f"{modality}_channels", f"{modality}_dtype"]
    return columns


def _manifest_frame(table: pa.Table, modalities: Sequence[str]) -> Any:
    return table.select(_gx_columns(modalities)).to_pandas()


def _build_suite(gx: Any, gxe: Any, modalities: Sequence[str]) -> Any:
    """The manifest suite; each expectation's meta names the reason code its unexpected rows are quarantined for."""
    suite = gx.ExpectationSuite(name="manifest")

    def add(expectation: Any, reason: str = "", column: str = "") -> None:
        # The reason code travels in the expectation's meta, so results map back without relying on order.
        expectation.meta = {"equiseg_reason": reason, "equiseg_column": column}
        suite.add_expectation(expectation)

    add(gxe.ExpectTableRowCountToBeBetween(min_value=1))
    required = [c for c in _gx_columns(modalities) if c != "label_path"]  # label_path may be null (unlabelled)
    add(gxe.ExpectTableColumnsToMatchSet(column_set=_gx_columns(modalities), exact_match=True))
    for column in required:
        add(gxe.ExpectColumnValuesToNotBeNull(column=column), "null_field", column)
    add(gxe.ExpectColumnValuesToBeUnique(column="sample_id"), "duplicate_id", "sample_id")
    add(gxe.ExpectColumnValuesToBeInSet(column="split", value_set=list(ALLOWED_SPLITS)), "unknown_split", "split")
    add(gxe.ExpectColumnValuesToBeInSet(column="label_encoding", value_set=list(LABEL_ENCODINGS)), "bad_declaration")
    for column in ("height", "width"):
        add(gxe.ExpectColumnValuesToBeBetween(column=column, min_value=1, max_value=65535), "bad_declaration", column)
    for modality in modalities:
        add(
            gxe.ExpectColumnValuesToNotMatchRegex(column=f"{modality}_path", regex=_UNSAFE_PATH_REGEX),
            "path",
            f"{modality}_path",
        )
        add(
            gxe.ExpectColumnValuesToBeBetween(column=f"{modality}_channels", min_value=1, max_value=16),
            "bad_declaration",
            f"{modality}_channels",
        )
        add(
            gxe.ExpectColumnValuesToBeInSet(column=f"{modality}_dtype", value_set=list(_ALLOWED_DTYPES)),
            "bad_declaration",
            f"{modality}_dtype",
        )
    add(gxe.ExpectColumnValuesToNotMatchRegex(column="label_path", regex=_UNSAFE_PATH_REGEX), "path", "label_path")
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


def _run_gx(table: pa.Table, modalities: Sequence[str], docs_dir: Path) -> _GxOutcome:
    """Run the manifest suite in an ephemeral GX context and build its Data Docs under ``docs_dir``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import great_expectations as gx
        import great_expectations.expectations as gxe
        from great_expectations.data_context.types.base import ProgressBarsConfig

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
    checkpoint = ctx.checkpoints.add(
        gx.Checkpoint(
            name="manifest_checkpoint",
            validation_definitions=[definition],
            actions=[gx.checkpoint.UpdateDataDocsAction(name="update_docs", site_names=["equiseg_docs"])],
            result_format={"result_format": "COMPLETE"},
        )
    )
    frame = _manifest_frame(table, modalities)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = checkpoint.run(batch_parameters={"dataframe": frame})
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
    return _GxOutcome(bool(result.success), expectations, row_reasons, table_failures)


# --------------------------------------------------------------------------------------------------------------------
# Streaming pixel validation
# --------------------------------------------------------------------------------------------------------------------

_WORKER_CONTEXT: dict[str, Any] = {}


def _worker_init(root: str, modalities: tuple[str, ...], num_classes: int, ignore: int) -> None:
    _WORKER_CONTEXT.update(root=Path(root), modalities=modalities, num_classes=num_classes, ignore=ignore)


def _worker_check(item: tuple[int, dict[str, Any]]) -> SampleCheck:
    ctx = _WORKER_CONTEXT
    return check_sample(item[0], item[1], ctx["root"], ctx["modalities"], ctx["num_classes"], ctx["ignore"])


def _iter_checks(
    rows: Sequence[tuple[int, dict[str, Any]]],
    data_root: Path,
    modalities: tuple[str, ...],
    num_classes: int,
    ignore_index: int,
    workers: int,
) -> Iterator[SampleCheck]:
    init_args = (str(data_root), modalities, num_classes, ignore_index)
    if workers <= 1 or len(rows) < 4:
        _worker_init(*init_args)
        yield from (_worker_check(item) for item in rows)
        return
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    context = multiprocessing.get_context(method)
    chunksize = max(1, min(32, len(rows) // (workers * 8)))
    with context.Pool(workers, initializer=_worker_init, initargs=init_args) as pool:
        yield from pool.imap_unordered(_worker_check, rows, chunksize=chunksize)


# --------------------------------------------------------------------------------------------------------------------
# Statistics and drift
# --------------------------------------------------------------------------------------------------------------------


def _hist_summary(hist: np.ndarray) -> dict[str, Any]:
    """Mean, std and a 32-bin normalised histogram from per-channel 256-bin counts in [0, 1] units."""
    centres = (np.arange(hist.shape[-1]) + 0.5) / hist.shape[-1]
    channels = []
    for counts in hist:
        total = counts.sum()
        if total == 0:
            channels.append({"mean": 0.0, "std": 0.0, "hist32": [0.0] * 32})
            continue
        mean = float((counts * centres).sum() / total)
        std = float(np.sqrt(max(0.0, (counts * (centres - mean) ** 2).sum() / total)))
        folded = counts.reshape(32, -1).sum(axis=1) / total
        channels.append({"mean": round(mean, 6), "std": round(std, 6), "hist32": [round(float(v), 6) for v in folded]})
    return {"channels": channels}


def _total_variation(p: Sequence[float], q: Sequence[float]) -> float:
    a, b = np.asarray(p, dtype=np.float64), np.asarray(q, dtype=np.float64)
    if a.shape != b.shape or a.sum() == 0 or b.sum() == 0:
        return 1.0
    return float(0.5 * np.abs(a / a.sum() - b / b.sum()).sum())


def drift_distances(stats: Mapping[str, Any], reference: Mapping[str, Any]) -> dict[str, float]:
    """Total-variation distance (0 = same, 1 = disjoint) per statistic between two ``stats.json`` profiles.

    Statistics: ``class_histogram`` and ``<modality>_intensity`` (mean over channels of the 32-bin histograms).
    Statistics absent from either profile are skipped.
    """
    distances: dict[str, float] = {}
    ours, theirs = stats.get("class_histogram", {}), reference.get("class_histogram", {})
    if ours and theirs:
        classes = sorted(set(ours) | set(theirs), key=int)
        distances["class_histogram"] = _total_variation(
            [ours.get(c, 0) for c in classes], [theirs.get(c, 0) for c in classes]
        )
    for modality, summary in stats.get("modalities", {}).items():
        ref = reference.get("modalities", {}).get(modality)
        if not ref or len(ref["channels"]) != len(summary["channels"]):
            continue
        per_channel = [
            _total_variation(a["hist32"], b["hist32"])
            for a, b in zip(summary["channels"], ref["channels"], strict=True)
        ]
        distances[f"{modality}_intensity"] = round(float(np.mean(per_channel)), 6)
    return {k: round(v, 6) for k, v in distances.items()}


# --------------------------------------------------------------------------------------------------------------------
# The public entry point
# --------------------------------------------------------------------------------------------------------------------


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def validate_dataset(
    manifest: Path,
    data_root: Path,
    report_dir: Path,
    *,
    num_classes: int,
    ignore_index: int = 255,
    max_quarantine_fraction: float = 0.05,
    reference_profile: Path | None = None,
    drift_threshold: float = 0.25,
    workers: int = 2,
    progress: bool = True,
) -> ValidationResult:
    """Validate a manifest and its files; quarantine bad samples with reasons; write the report.

    Blocking rules (``passed`` is False): a table-level expectation fails (e.g. no rows), the quarantined share is
    above ``max_quarantine_fraction``, no sample survives, or a statistic drifts further than ``drift_threshold``
    from ``reference_profile`` (a ``stats.json`` of the last accepted version).

    Raises:
        ManifestError: the manifest is missing, empty or lacks required columns (a clear error, not a quarantine).
    """
    from equiseg.data.report import write_report

    manifest, data_root, report_dir = Path(manifest), Path(data_root), Path(report_dir)
    if manifest.is_dir():
        manifest = manifest / "manifest.parquet"
    table = read_manifest(manifest)
    if table.num_rows == 0:
        raise ManifestError(
            f"manifest {manifest} has no rows; regenerate it (`equiseg data synth` / `equiseg data ingest`) "
            "or point --manifest at the right file"
        )
    modalities = manifest_modalities(table)
    check_columns(table, source=str(manifest), modalities=modalities)
    if num_classes < 1:
        raise ValueError(f"num_classes must be positive, got {num_classes}")
    report_dir.mkdir(parents=True, exist_ok=True)
    docs_dir = report_dir / "gx_docs"

    gx_outcome = _run_gx(table, modalities, docs_dir)
    reasons: dict[int, list[tuple[str, str]]] = {i: list(r) for i, r in gx_outcome.row_reasons.items()}

    rows = table.to_pylist()
    to_check = [(i, row) for i, row in enumerate(rows) if i not in reasons]
    class_hist = np.zeros(num_classes, dtype=np.int64)
    ignore_pixels = 0
    channel_hist: dict[str, np.ndarray] = {}
    channel_min: dict[str, np.ndarray] = {}
    channel_max: dict[str, np.ndarray] = {}
    bytes_read = 0
    checks = _iter_checks(to_check, data_root, modalities, num_classes, ignore_index, workers)
    for check in tqdm(checks, total=len(to_check), desc="validate", unit="sample", disable=not progress, leave=False):
        bytes_read += check.bytes_read
        if check.reasons:
            reasons[check.index] = check.reasons
            continue
        if check.class_hist is not None:
            class_hist += check.class_hist
            ignore_pixels += check.ignore_pixels
        for modality, hist in check.channel_hist.items():
            if modality in channel_hist and channel_hist[modality].shape == hist.shape:
                channel_hist[modality] += hist
                channel_min[modality] = np.minimum(channel_min[modality], check.channel_min[modality])
                channel_max[modality] = np.maximum(channel_max[modality], check.channel_max[modality])
            elif modality not in channel_hist:
                channel_hist[modality] = hist.copy()
                channel_min[modality] = check.channel_min[modality].copy()
                channel_max[modality] = check.channel_max[modality].copy()

    quarantined_idx = sorted(reasons)
    validated_idx = [i for i in range(table.num_rows) if i not in reasons]
    assert len(quarantined_idx) + len(validated_idx) == table.num_rows  # the invariant, by construction

    validated_path = report_dir / "validated.parquet"
    quarantine_path = report_dir / "quarantine.parquet"
    pq.write_table(table.take(pa.array(validated_idx, type=pa.int64())), validated_path)
    quarantine = table.take(pa.array(quarantined_idx, type=pa.int64()))
    codes = [sorted({code for code, _ in reasons[i]}) for i in quarantined_idx]
    messages = ["; ".join(msg for _, msg in reasons[i]) for i in quarantined_idx]
    quarantine = quarantine.append_column("reason_codes", pa.array(codes, type=pa.list_(pa.string())))
    quarantine = quarantine.append_column("reason_message", pa.array(messages, type=pa.string()))
    pq.write_table(quarantine, quarantine_path)

    reason_counts: dict[str, int] = {}
    for code_list in codes:
        for code in code_list:
            reason_counts[code] = reason_counts.get(code, 0) + 1

    info = manifest_info(table)
    splits = table.column("split").to_pylist()
    conditions = table.column("conditions").to_pylist()
    split_counts: dict[str, int] = {}
    condition_counts: dict[str, int] = {}
    for i in validated_idx:
        split_counts[str(splits[i])] = split_counts.get(str(splits[i]), 0) + 1
        for tag in conditions[i] or ():
            condition_counts[tag] = condition_counts.get(tag, 0) + 1
    stats: dict[str, Any] = {
        "manifest": str(manifest),
        "manifest_sha256": _sha256(manifest),
        "class_set": info.class_set,
        "num_classes": num_classes,
        "ignore_index": ignore_index,
        "rows_in": table.num_rows,
        "rows_validated": len(validated_idx),
        "rows_quarantined": len(quarantined_idx),
        "bytes_read": bytes_read,
        "split_counts": dict(sorted(split_counts.items())),
        "condition_counts": dict(sorted(condition_counts.items())),
        "reason_counts": dict(sorted(reason_counts.items())),
        "class_histogram": {str(c): int(n) for c, n in enumerate(class_hist.tolist())},
        "ignore_pixels": ignore_pixels,
        "modalities": {
            m: {
                **_hist_summary(channel_hist[m]),
                "min": [round(float(v), 6) for v in channel_min[m]],
                "max": [round(float(v), 6) for v in channel_max[m]],
            }
            for m in modalities
            if m in channel_hist
        },
    }

    blocking: list[str] = list(gx_outcome.table_failures)
    fraction = len(quarantined_idx) / table.num_rows
    if fraction > max_quarantine_fraction:
        blocking.append(
            f"quarantined {len(quarantined_idx)}/{table.num_rows} samples ({fraction:.1%}) > policy "
            f"{max_quarantine_fraction:.1%}"
        )
    if not validated_idx:
        blocking.append("no sample passed validation")
    drift: dict[str, float] = {}
    if reference_profile is not None:
        reference = json.loads(Path(reference_profile).read_text())
        drift = drift_distances(stats, reference)
        for name, distance in drift.items():
            if distance > drift_threshold:
                blocking.append(f"drift in {name}: distance {distance:.3f} > threshold {drift_threshold:.3f}")
    passed = not blocking
    stats.update(
        passed=passed,
        blocking=blocking,
        drift=drift,
        drift_threshold=drift_threshold,
        max_quarantine_fraction=max_quarantine_fraction,
        reference_profile=str(reference_profile) if reference_profile else None,
        gx_success=gx_outcome.success,
        expectations=gx_outcome.expectations,
    )
    stats_path = report_dir / "stats.json"
    stats_path.write_text(json.dumps(stats, indent=2, default=str) + "\n")

    verdict = "PASSED" if passed else "FAILED"
    summary_lines = [
        f"data validation {verdict}: {len(validated_idx)} validated, {len(quarantined_idx)} quarantined "
        f"of {table.num_rows} samples ({fraction:.1%})",
    ]
    if reason_counts:
        summary_lines.append("quarantine reasons: " + ", ".join(f"{k}={v}" for k, v in sorted(reason_counts.items())))
    if drift:
        summary_lines.append("drift: " + ", ".join(f"{k}={v:.3f}" for k, v in drift.items()))
    summary_lines += [f"BLOCKING: {b}" for b in blocking]
    summary = "\n".join(summary_lines)

    quarantine_rows = [
        {"sample_id": rows[i]["sample_id"], "split": rows[i]["split"], "codes": codes[k], "message": messages[k]}
        for k, i in enumerate(quarantined_idx)
    ]
    report_path = write_report(
        report_dir / "report.html",
        stats=stats,
        quarantine_rows=quarantine_rows,
        summary=summary,
        reason_descriptions=REASON_CODES,
        class_names=CLASS_NAMES if info.class_set.startswith(SYNTHETIC_CLASS_SET) else None,
    )
    logger.info("%s", summary)
    return ValidationResult(
        passed=passed,
        summary=summary,
        rows_in=table.num_rows,
        rows_validated=len(validated_idx),
        rows_quarantined=len(quarantined_idx),
        validated_path=validated_path,
        quarantine_path=quarantine_path,
        stats_path=stats_path,
        report_path=report_path,
        gx_docs_dir=docs_dir,
        gx_success=gx_outcome.success,
        blocking=tuple(blocking),
        reason_counts=dict(sorted(reason_counts.items())),
        drift=drift,
        manifest_sha256=stats["manifest_sha256"],
    )


def default_workers() -> int:
    """Worker processes for the pixel validator: up to 2, never more than the CPUs available."""
    return max(1, min(2, os.cpu_count() or 1))
