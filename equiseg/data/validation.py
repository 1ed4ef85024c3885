"""Dataset validation: manifest rules plus a streaming pixel validator, quarantine with reasons (docs/data.md).

Flow: read the manifest (an empty one or missing columns is a :class:`ManifestError`, not a quarantine) → the
manifest rules (schema, nulls, unique ids, splits, sizes, relative paths; ``manifest_checks``, by default
:func:`~equiseg.data.manifest_rules.check_manifest_rules`, or ``equiseg.expectations.run_manifest_suite`` for a
great-expectations checkpoint with Data Docs), whose failing rows become quarantine reasons → every remaining row
is checked by :func:`check_sample` in worker processes → dataset statistics, drift against a reference profile (the
``stats.json`` of the last accepted version) → ``validated.parquet``, ``quarantine.parquet``, ``stats.json``,
``report.html`` (and ``gx_docs/`` from the GX checker). Invariant: rows in = validated + quarantined.
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from equiseg.data.drift import drift_distances, hist_summary
from equiseg.data.io import DEFAULT_MAX_PIXELS
from equiseg.data.manifest import (
    ManifestError,
    check_columns,
    manifest_data_root,
    manifest_info,
    manifest_modalities,
    read_manifest,
)
from equiseg.data.manifest_rules import ManifestChecker, ManifestChecks, check_manifest_rules, ingest_reasons
from equiseg.data.pixelcheck import REASON_CODES, SampleCheck, check_sample
from equiseg.data.readers import spec_for
from equiseg.data.report import write_report
from equiseg.data.specs import DatasetSpec
from equiseg.data.synthetic import CLASS_NAMES, SYNTHETIC_CLASS_SET

__all__ = ["ValidationResult", "default_workers", "drift_distances", "validate_dataset"]

logger = logging.getLogger(__name__)

Reasons = dict[int, list[tuple[str, str]]]


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
# Streaming pixel validation
# --------------------------------------------------------------------------------------------------------------------

_WORKER_CONTEXT: dict[str, Any] = {}


def _worker_init(
    root: str, modalities: tuple[str, ...], num_classes: int, ignore: int, spec: DatasetSpec | None, max_pixels: int
) -> None:
    _WORKER_CONTEXT.update(root=Path(root), modalities=modalities, num_classes=num_classes, ignore=ignore)
    _WORKER_CONTEXT.update(spec=spec, max_pixels=max_pixels)


def _worker_check(item: tuple[int, dict[str, Any]]) -> SampleCheck:
    ctx = _WORKER_CONTEXT
    return check_sample(
        item[0],
        item[1],
        ctx["root"],
        ctx["modalities"],
        ctx["num_classes"],
        ctx["ignore"],
        spec=ctx["spec"],
        max_pixels=ctx["max_pixels"],
    )


def _iter_checks(
    rows: Sequence[tuple[int, dict[str, Any]]],
    data_root: Path,
    modalities: tuple[str, ...],
    num_classes: int,
    ignore_index: int,
    workers: int,
    spec: DatasetSpec | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> Iterator[SampleCheck]:
    init_args = (str(data_root), modalities, num_classes, ignore_index, spec, max_pixels)
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
# The public entry point
# --------------------------------------------------------------------------------------------------------------------


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _open_manifest(manifest: Path, num_classes: int) -> tuple[Path, pa.Table, tuple[str, ...]]:
    """The manifest file, its table and modalities; a clear :class:`ManifestError` where it cannot be validated."""
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
    return manifest, table, modalities


@dataclass
class _PixelTotals:
    """Sums over the samples that passed the pixel checks."""

    class_hist: np.ndarray
    ignore_pixels: int = 0
    bytes_read: int = 0
    channel_hist: dict[str, np.ndarray] = field(default_factory=dict)
    channel_min: dict[str, np.ndarray] = field(default_factory=dict)
    channel_max: dict[str, np.ndarray] = field(default_factory=dict)

    def add(self, check: SampleCheck) -> None:
        if check.class_hist is not None:
            self.class_hist += check.class_hist
            self.ignore_pixels += check.ignore_pixels
        for modality, hist in check.channel_hist.items():
            if modality in self.channel_hist and self.channel_hist[modality].shape == hist.shape:
                self.channel_hist[modality] += hist
                self.channel_min[modality] = np.minimum(self.channel_min[modality], check.channel_min[modality])
                self.channel_max[modality] = np.maximum(self.channel_max[modality], check.channel_max[modality])
            elif modality not in self.channel_hist:
                self.channel_hist[modality] = hist.copy()
                self.channel_min[modality] = check.channel_min[modality].copy()
                self.channel_max[modality] = check.channel_max[modality].copy()


def _scan_pixels(
    rows: list[dict[str, Any]],
    reasons: Reasons,
    data_root: Path,
    modalities: tuple[str, ...],
    *,
    num_classes: int,
    ignore_index: int,
    workers: int,
    progress: bool,
    spec: DatasetSpec | None,
    max_pixels: int,
) -> _PixelTotals:
    """Pixel-check every row not yet quarantined; adds the failures to ``reasons``, sums the rest."""
    to_check = [(i, row) for i, row in enumerate(rows) if i not in reasons]
    totals = _PixelTotals(class_hist=np.zeros(num_classes, dtype=np.int64))
    checks = _iter_checks(to_check, data_root, modalities, num_classes, ignore_index, workers, spec, max_pixels)
    for check in tqdm(checks, total=len(to_check), desc="validate", unit="sample", disable=not progress, leave=False):
        totals.bytes_read += check.bytes_read
        if check.reasons:
            reasons[check.index] = check.reasons
        else:
            totals.add(check)
    return totals


@dataclass(frozen=True)
class _Split:
    """The rows that passed and the quarantined rows with their reason codes and messages."""

    validated: list[int]
    quarantined: list[int]
    codes: list[list[str]]
    messages: list[str]

    def reason_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for code_list in self.codes:
            for code in code_list:
                counts[code] = counts.get(code, 0) + 1
        return dict(sorted(counts.items()))


def _write_split(table: pa.Table, reasons: Reasons, validated_path: Path, quarantine_path: Path) -> _Split:
    """``validated.parquet`` and ``quarantine.parquet`` (with ``reason_codes`` and ``reason_message`` columns)."""
    quarantined = sorted(reasons)
    validated = [i for i in range(table.num_rows) if i not in reasons]
    assert len(quarantined) + len(validated) == table.num_rows  # the invariant, by construction
    pq.write_table(table.take(pa.array(validated, type=pa.int64())), validated_path)
    codes = [sorted({code for code, _ in reasons[i]}) for i in quarantined]
    messages = ["; ".join(msg for _, msg in reasons[i]) for i in quarantined]
    quarantine = table.take(pa.array(quarantined, type=pa.int64()))
    quarantine = quarantine.append_column("reason_codes", pa.array(codes, type=pa.list_(pa.string())))
    quarantine = quarantine.append_column("reason_message", pa.array(messages, type=pa.string()))
    pq.write_table(quarantine, quarantine_path)
    return _Split(validated, quarantined, codes, messages)


def _dataset_stats(
    manifest: Path, table: pa.Table, split: _Split, totals: _PixelTotals, *, num_classes: int, ignore_index: int
) -> dict[str, Any]:
    """The ``stats.json`` profile of the validated samples (the drift reference of the next version)."""
    splits = table.column("split").to_pylist()
    conditions = table.column("conditions").to_pylist()
    split_counts: dict[str, int] = {}
    condition_counts: dict[str, int] = {}
    for i in split.validated:
        split_counts[str(splits[i])] = split_counts.get(str(splits[i]), 0) + 1
        for tag in conditions[i] or ():
            condition_counts[tag] = condition_counts.get(tag, 0) + 1
    return {
        "manifest": str(manifest),
        "manifest_sha256": _sha256(manifest),
        "class_set": manifest_info(table).class_set,
        "num_classes": num_classes,
        "ignore_index": ignore_index,
        "rows_in": table.num_rows,
        "rows_validated": len(split.validated),
        "rows_quarantined": len(split.quarantined),
        "bytes_read": totals.bytes_read,
        "split_counts": dict(sorted(split_counts.items())),
        "condition_counts": dict(sorted(condition_counts.items())),
        "reason_counts": split.reason_counts(),
        "class_histogram": {str(c): int(n) for c, n in enumerate(totals.class_hist.tolist())},
        "ignore_pixels": totals.ignore_pixels,
        "modalities": {
            m: {
                **hist_summary(totals.channel_hist[m]),
                "min": [round(float(v), 6) for v in totals.channel_min[m]],
                "max": [round(float(v), 6) for v in totals.channel_max[m]],
            }
            for m in manifest_modalities(table)
            if m in totals.channel_hist
        },
    }


def _blocking_rules(
    stats: Mapping[str, Any],
    checks: ManifestChecks,
    *,
    max_quarantine_fraction: float,
    reference_profile: Path | None,
    drift_threshold: float,
) -> tuple[list[str], dict[str, float]]:
    """The blocking rules that fired, and the drift distances to the reference profile."""
    blocking: list[str] = list(checks.table_failures)
    rows_in, quarantined = stats["rows_in"], stats["rows_quarantined"]
    fraction = quarantined / rows_in
    if fraction > max_quarantine_fraction:
        blocking.append(
            f"quarantined {quarantined}/{rows_in} samples ({fraction:.1%}) > policy {max_quarantine_fraction:.1%}"
        )
    if not stats["rows_validated"]:
        blocking.append("no sample passed validation")
    drift: dict[str, float] = {}
    if reference_profile is not None:
        drift = drift_distances(stats, json.loads(Path(reference_profile).read_text()))
        for name, distance in drift.items():
            if distance > drift_threshold:
                blocking.append(f"drift in {name}: distance {distance:.3f} > threshold {drift_threshold:.3f}")
    return blocking, drift


def _summary_text(stats: Mapping[str, Any], blocking: Sequence[str], drift: Mapping[str, float]) -> str:
    rows_in, quarantined = stats["rows_in"], stats["rows_quarantined"]
    lines = [
        f"data validation {'FAILED' if blocking else 'PASSED'}: {stats['rows_validated']} validated, {quarantined} "
        f"quarantined of {rows_in} samples ({quarantined / rows_in:.1%})",
    ]
    if stats["reason_counts"]:
        lines.append("quarantine reasons: " + ", ".join(f"{k}={v}" for k, v in stats["reason_counts"].items()))
    if drift:
        lines.append("drift: " + ", ".join(f"{k}={v:.3f}" for k, v in drift.items()))
    lines += [f"BLOCKING: {b}" for b in blocking]
    return "\n".join(lines)


def _sample_files(row: dict[str, Any], modalities: Sequence[str], root: Path) -> dict[str, str]:
    return {m: str(root / row[f"{m}_path"]) for m in (*modalities, "label") if row.get(f"{m}_path")}


def validate_dataset(
    manifest: Path,
    data_root: Path | None,
    report_dir: Path,
    *,
    num_classes: int,
    ignore_index: int = 255,
    max_quarantine_fraction: float = 0.05,
    reference_profile: Path | None = None,
    drift_threshold: float = 0.25,
    workers: int = 2,
    progress: bool = True,
    manifest_checks: ManifestChecker = check_manifest_rules,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> ValidationResult:
    """Validate a manifest and its files; quarantine bad samples with reasons; write the report.

    Blocking rules (``passed`` is False): a table-level rule fails (e.g. no rows), the quarantined share is above
    ``max_quarantine_fraction``, no sample survives, or a statistic drifts further than ``drift_threshold`` from
    ``reference_profile`` (a ``stats.json`` of the last accepted version). ``manifest_checks`` applies the manifest
    rules; ``equiseg.expectations.run_manifest_suite`` runs them as a great-expectations suite with Data Docs.
    ``data_root`` None: the root the manifest records. Rows a reader marked at ingestion are quarantined with its
    reason codes; every other file is checked against the dataset's file spec (``equiseg.data.readers.SPECS``).

    Raises:
        ManifestError: the manifest is missing, empty or lacks required columns, or its recorded data root is gone
            (a clear error, not a quarantine).
    """
    manifest, table, modalities = _open_manifest(Path(manifest), num_classes)
    data_root = Path(data_root) if data_root is not None else manifest_data_root(manifest, table)
    report_dir = Path(report_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    docs_dir = report_dir / "gx_docs"
    marked = ingest_reasons(table)  # the reader's codes; the manifest rules see only the other rows
    kept = [i for i in range(table.num_rows) if i not in marked]
    checked = table.take(pa.array(kept, type=pa.int64())) if marked else table
    checks = manifest_checks(checked, modalities, docs_dir)
    reasons: Reasons = {kept[i]: list(r) for i, r in checks.row_reasons.items()}
    reasons.update(marked)
    rows = table.to_pylist()
    totals = _scan_pixels(
        rows,
        reasons,
        Path(data_root),
        modalities,
        num_classes=num_classes,
        ignore_index=ignore_index,
        workers=workers,
        progress=progress,
        spec=spec_for(manifest_info(table).source),
        max_pixels=max_pixels,
    )
    validated_path, quarantine_path = report_dir / "validated.parquet", report_dir / "quarantine.parquet"
    split = _write_split(table, reasons, validated_path, quarantine_path)
    stats = _dataset_stats(manifest, table, split, totals, num_classes=num_classes, ignore_index=ignore_index)
    blocking, drift = _blocking_rules(
        stats,
        checks,
        max_quarantine_fraction=max_quarantine_fraction,
        reference_profile=reference_profile,
        drift_threshold=drift_threshold,
    )
    passed = not blocking
    stats.update(
        passed=passed,
        blocking=blocking,
        drift=drift,
        drift_threshold=drift_threshold,
        max_quarantine_fraction=max_quarantine_fraction,
        reference_profile=str(reference_profile) if reference_profile else None,
        gx_success=checks.success,
        expectations=checks.expectations,
    )
    stats_path = report_dir / "stats.json"
    stats_path.write_text(json.dumps(stats, indent=2, default=str) + "\n")
    summary = _summary_text(stats, blocking, drift)
    quarantine_rows = [
        {"sample_id": rows[i]["sample_id"], "split": rows[i]["split"], "codes": split.codes[k], "message": message}
        | {"files": _sample_files(rows[i], modalities, Path(data_root))}  # the report shows their thumbnails
        for k, (i, message) in enumerate(zip(split.quarantined, split.messages, strict=True))
    ]
    class_set = stats["class_set"] or ""
    report_path = write_report(
        report_dir / "report.html",
        stats=stats,
        quarantine_rows=quarantine_rows,
        summary=summary,
        reason_descriptions=REASON_CODES,
        class_names=CLASS_NAMES if class_set.startswith(SYNTHETIC_CLASS_SET) else None,
    )
    logger.info("%s", summary)
    return ValidationResult(
        passed=passed,
        summary=summary,
        rows_in=table.num_rows,
        rows_validated=len(split.validated),
        rows_quarantined=len(split.quarantined),
        validated_path=validated_path,
        quarantine_path=quarantine_path,
        stats_path=stats_path,
        report_path=report_path,
        gx_docs_dir=docs_dir,
        gx_success=checks.success,
        blocking=tuple(blocking),
        reason_counts=split.reason_counts(),
        drift=drift,
        manifest_sha256=stats["manifest_sha256"],
    )


def default_workers() -> int:
    """Worker processes for the pixel validator: up to 2, never more than the CPUs available."""
    return max(1, min(2, os.cpu_count() or 1))
