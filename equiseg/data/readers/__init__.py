"""Readers that turn real dataset layouts into a manifest (docs/data.md, "Real datasets").

Readers never copy or convert pixels: the manifest points into the dataset root and records how to decode each
file (``bands``, ``scale``) and how to map label ids (``label_encoding``). One module per dataset, each with its
:class:`~equiseg.data.specs.DatasetSpec` (the file specs the validator checks every file against). A reader never
raises on one sample's files: every problem becomes a reason code on that sample's row (``ingest_codes``), and
validation quarantines it. Only a missing root or an unrecognised layout fails ingestion.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from equiseg.data.io import DEFAULT_MAX_PIXELS
from equiseg.data.manifest import MANIFEST_NAME, rows_to_table, write_manifest
from equiseg.data.readers._intake import Intake, LayoutError
from equiseg.data.readers.deliver import SPEC as DELIVER_SPEC
from equiseg.data.readers.deliver import read_deliver
from equiseg.data.readers.mfnet import SPEC as MFNET_SPEC
from equiseg.data.readers.mfnet import SPEC_CMX as MFNET_CMX_SPEC
from equiseg.data.readers.mfnet import read_mfnet, read_mfnet_cmx
from equiseg.data.readers.muses import SPEC as MUSES_SPEC
from equiseg.data.readers.muses import read_muses
from equiseg.data.readers.nyuv2 import SPEC as NYUV2_SPEC
from equiseg.data.readers.nyuv2 import read_nyuv2
from equiseg.data.readers.pst900 import SPEC as PST900_SPEC
from equiseg.data.readers.pst900 import read_pst900
from equiseg.data.specs import DatasetSpec

__all__ = [
    "DATASET_CLASSES",
    "READERS",
    "SPECS",
    "IngestResult",
    "LayoutError",
    "ingest",
    "ingest_dataset",
    "list_formats",
    "spec_for",
]

logger = logging.getLogger(__name__)

Reader = Callable[[Intake, Sequence[str] | None], list[str]]

READERS: dict[str, Reader] = {
    "mfnet": read_mfnet,
    "mfnet_cmx": read_mfnet_cmx,
    "pst900": read_pst900,
    "nyuv2": read_nyuv2,
    "deliver": read_deliver,
    "muses": read_muses,
}
#: The file specs per ingest format.
SPECS: dict[str, DatasetSpec] = {
    spec.name: spec for spec in (MFNET_SPEC, MFNET_CMX_SPEC, PST900_SPEC, NYUV2_SPEC, DELIVER_SPEC, MUSES_SPEC)
}
#: Classes per dataset as evaluated (docs/data.md, "Real datasets").
DATASET_CLASSES: dict[str, int] = {name: spec.num_classes for name, spec in SPECS.items()}


def spec_for(name: str | None) -> DatasetSpec | None:
    """The spec of an ingest format (a manifest's ``source`` metadata), None for the synthetic world or unknown."""
    return SPECS.get(name or "")


def list_formats() -> list[str]:
    """Formats ``ingest_dataset`` understands."""
    return sorted(READERS)


@dataclass(frozen=True)
class IngestResult:
    """Where the manifest went and the counts: every sample found = kept for validation + marked for quarantine."""

    manifest: Path
    modalities: tuple[str, ...]
    samples_found: int
    samples_marked: int
    reason_counts: dict[str, int]

    @property
    def samples_ok(self) -> int:
        return self.samples_found - self.samples_marked


def ingest(
    fmt: str,
    root: Path,
    out_dir: Path,
    *,
    modalities: Sequence[str] | None = None,
    progress: bool = True,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    workers: int | None = None,
) -> IngestResult:
    """Read a dataset in layout ``fmt`` under ``root``; write ``out_dir/manifest.parquet`` with every sample found.

    Files are probed (read once: SHA-256, PNG CRCs, header, pixel limit) in ``workers`` processes (default: up to
    2, never more than the CPUs).

    Raises:
        KeyError: unknown format (the message lists the valid ones).
        LayoutError: the root is missing, the layout is not there, or it holds no sample at all.
    """
    try:
        reader = READERS[fmt]
    except KeyError:
        raise KeyError(f"unknown dataset format {fmt!r}; valid formats: {', '.join(list_formats())}") from None
    root = Path(root)
    if not root.is_dir():
        raise LayoutError(f"dataset root {root} is not a folder; pass the dataset's top folder as --root")
    workers = workers if workers is not None else max(1, min(2, os.cpu_count() or 1))
    intake = Intake(fmt, root, SPECS[fmt], max_pixels=max_pixels, progress=progress, workers=workers)
    mods = reader(intake, modalities)
    if not intake.rows:
        raise LayoutError(f"{fmt}: found no samples under {root}; check --format and --root")
    table = rows_to_table(intake.rows, mods, num_classes=DATASET_CLASSES[fmt], source=fmt, ingest_columns=True)
    manifest = write_manifest(table, Path(out_dir) / MANIFEST_NAME, data_root=root)
    counts: dict[str, int] = {}
    for row in intake.rows:
        for code in row.ingest_codes:
            counts[code] = counts.get(code, 0) + 1
    marked = sum(1 for row in intake.rows if row.ingest_codes)
    logger.info(
        "ingested %d %s samples (%d marked for quarantine) from %s into %s",
        len(intake.rows),
        fmt,
        marked,
        root,
        manifest,
    )
    return IngestResult(manifest, tuple(mods), len(intake.rows), marked, dict(sorted(counts.items())))


def ingest_dataset(
    fmt: str,
    root: Path,
    out_dir: Path,
    *,
    modalities: Sequence[str] | None = None,
    progress: bool = True,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    workers: int | None = None,
) -> Path:
    """:func:`ingest`, returning only the manifest path."""
    result = ingest(
        fmt, root, out_dir, modalities=modalities, progress=progress, max_pixels=max_pixels, workers=workers
    )
    return result.manifest
