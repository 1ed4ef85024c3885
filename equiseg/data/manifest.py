"""The sample manifest: one Parquet row per multimodal sample, paths relative to a data root.

Columns are fixed for every dataset plus four per modality (``<m>_path``, ``<m>_channels``, ``<m>_dtype``,
``<m>_sha256``) and two decoding hints (``<m>_bands``: a ``start:stop`` channel slice of the file, empty for all
channels, so MFNet's single 4-channel RGB+T PNG serves two modalities; ``<m>_scale``: raw value × scale = [0, 1]).
The schema version, modality list and class set live in the Parquet key-value metadata (docs/data.md).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

__all__ = [
    "ALLOWED_SPLITS",
    "BASE_COLUMNS",
    "INGEST_COLUMNS",
    "LABEL_ENCODINGS",
    "MANIFEST_NAME",
    "SCHEMA_VERSION",
    "ManifestError",
    "ManifestInfo",
    "ManifestRow",
    "PathEscapeError",
    "file_sha256",
    "manifest_data_root",
    "manifest_modalities",
    "manifest_schema",
    "modality_columns",
    "read_manifest",
    "resolve_in_root",
    "rows_to_table",
    "unsafe_path_reason",
    "write_manifest",
]

SCHEMA_VERSION = "1"
MANIFEST_NAME = "manifest.parquet"
ALLOWED_SPLITS: tuple[str, ...] = ("train", "val", "test")
#: How raw label ids map to training ids: identity (MFNet, PST900, MUSES: 255 stays ignore), shift1 (NYUv2:
#: 0 → ignore, id − 1), deliver (raw 0 and 255 → ignore, id − 1), palette (colour label → ids by the dataset's
#: declared palette, then identity).
LABEL_ENCODINGS: tuple[str, ...] = ("identity", "shift1", "deliver", "palette")

_META_VERSION = b"equiseg.schema_version"
_META_MODALITIES = b"equiseg.modalities"
_META_CLASS_SET = b"equiseg.class_set"
_META_NUM_CLASSES = b"equiseg.num_classes"
_META_SOURCE = b"equiseg.source"
_META_DATA_ROOT = b"equiseg.data_root"
#: Columns a reader adds: the reason codes (and their details) of a sample marked for quarantine at ingestion.
INGEST_COLUMNS: tuple[tuple[str, pa.DataType], ...] = (
    ("ingest_codes", pa.list_(pa.string())),
    ("ingest_detail", pa.string()),
)

BASE_COLUMNS: tuple[tuple[str, pa.DataType], ...] = (
    ("sample_id", pa.string()),
    ("split", pa.string()),
    ("source", pa.string()),
    ("conditions", pa.list_(pa.string())),
    ("height", pa.int32()),
    ("width", pa.int32()),
    ("class_set", pa.string()),
    ("label_path", pa.string()),
    ("label_sha256", pa.string()),
    ("label_encoding", pa.string()),
)
_MODALITY_FIELDS: tuple[tuple[str, pa.DataType], ...] = (
    ("path", pa.string()),
    ("channels", pa.int32()),
    ("dtype", pa.string()),
    ("sha256", pa.string()),
    ("bands", pa.string()),
    ("scale", pa.float64()),
)


class ManifestError(ValueError):
    """The manifest itself is unusable (empty, missing columns, unreadable); the message says how to fix it."""


class PathEscapeError(ValueError):
    """A manifest path is absolute, contains ``..`` or resolves (through a symlink) outside the data root."""


@dataclass(frozen=True)
class ManifestRow:
    """One sample as a reader or the synthetic generator describes it (paths relative to the data root)."""

    sample_id: str
    split: str
    source: str
    height: int
    width: int
    class_set: str
    files: Mapping[str, Mapping[str, Any]]  # modality -> {path, channels, dtype, sha256, bands, scale}
    label_path: str | None = None
    label_sha256: str | None = None
    label_encoding: str = "identity"
    conditions: tuple[str, ...] = field(default_factory=tuple)
    ingest_codes: tuple[str, ...] = ()  # reason codes found at ingestion: the row is quarantined by validation
    ingest_detail: str = ""


@dataclass(frozen=True)
class ManifestInfo:
    """Manifest-level metadata stored in the Parquet footer."""

    schema_version: str
    modalities: tuple[str, ...]
    class_set: str
    num_classes: int | None
    source: str


def modality_columns(modality: str) -> list[str]:
    """The per-modality column names, e.g. ``rgb_path``, ``rgb_channels`` ... ``rgb_scale``."""
    return [f"{modality}_{name}" for name, _ in _MODALITY_FIELDS]


def manifest_schema(
    modalities: Sequence[str],
    *,
    class_set: str = "",
    num_classes: int | None = None,
    source: str = "",
    ingest_columns: bool = False,
) -> pa.Schema:
    """The Arrow schema of a manifest over ``modalities``, with the schema version in its metadata (and the
    :data:`INGEST_COLUMNS` of a reader's manifest when ``ingest_columns``)."""
    fields = [pa.field(name, dtype) for name, dtype in BASE_COLUMNS + (INGEST_COLUMNS if ingest_columns else ())]
    for modality in modalities:
        fields += [pa.field(f"{modality}_{name}", dtype) for name, dtype in _MODALITY_FIELDS]
    metadata = {
        _META_VERSION: SCHEMA_VERSION.encode(),
        _META_MODALITIES: json.dumps(list(modalities)).encode(),
        _META_CLASS_SET: class_set.encode(),
        _META_NUM_CLASSES: json.dumps(num_classes).encode(),
        _META_SOURCE: source.encode(),
    }
    return pa.schema(fields, metadata=metadata)


def rows_to_table(
    rows: Sequence[ManifestRow],
    modalities: Sequence[str],
    *,
    num_classes: int | None = None,
    source: str | None = None,
    ingest_columns: bool = False,
) -> pa.Table:
    """Build the manifest table from rows; every row not marked at ingestion must hold every modality.

    ``ingest_columns``: add the :data:`INGEST_COLUMNS` (a reader's manifest); the synthetic world leaves them out.
    """
    columns: dict[str, list[Any]] = {name: [] for name, _ in BASE_COLUMNS + INGEST_COLUMNS}
    for modality in modalities:
        for col in modality_columns(modality):
            columns[col] = []
    for row in rows:
        columns["sample_id"].append(row.sample_id)
        columns["split"].append(row.split)
        columns["source"].append(row.source)
        columns["conditions"].append(list(row.conditions))
        columns["height"].append(row.height)
        columns["width"].append(row.width)
        columns["class_set"].append(row.class_set)
        columns["label_path"].append(row.label_path)
        columns["label_sha256"].append(row.label_sha256)
        columns["label_encoding"].append(row.label_encoding)
        columns["ingest_codes"].append(list(row.ingest_codes))
        columns["ingest_detail"].append(row.ingest_detail or None)
        for modality in modalities:
            if modality not in row.files and not row.ingest_codes:
                raise ValueError(f"sample {row.sample_id!r} has no {modality!r} file; every row needs {modalities}")
            spec = row.files.get(modality, {})
            for name, _ in _MODALITY_FIELDS:
                default: Any = "" if name == "bands" else None
                columns[f"{modality}_{name}"].append(spec.get(name, default))
    class_set = rows[0].class_set if rows else ""
    schema = manifest_schema(
        modalities,
        class_set=class_set,
        num_classes=num_classes,
        source=source or (rows[0].source if rows else ""),
        ingest_columns=ingest_columns,
    )
    return pa.table({f.name: pa.array(columns[f.name], type=f.type) for f in schema}, schema=schema)


def write_manifest(table: pa.Table, path: Path, *, data_root: Path | None = None) -> Path:
    """Write a manifest deterministically (no timestamps; fixed compression and statistics settings).

    ``data_root``: the folder the paths are relative to, recorded in the metadata relative to the manifest's folder
    (so the two can move together) and as an absolute fallback; :func:`manifest_data_root` reads it back.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    if data_root is not None:
        absolute = Path(os.path.abspath(data_root))
        relative = os.path.relpath(absolute, os.path.abspath(path.parent))
        metadata = dict(table.schema.metadata or {})
        metadata[_META_DATA_ROOT] = json.dumps(
            {"relative": Path(relative).as_posix(), "absolute": str(absolute)}
        ).encode()
        table = table.replace_schema_metadata(metadata)
    pq.write_table(table, path, compression="zstd", compression_level=3, write_statistics=True)
    return path


def read_manifest(path: Path | str) -> pa.Table:
    """Read a manifest, checking its schema version and required columns.

    Raises:
        ManifestError: the file is missing, not Parquet, from another schema version, or lacks columns.
    """
    path = Path(path)
    if path.is_dir():
        path = path / MANIFEST_NAME
    if not path.is_file():
        raise ManifestError(f"manifest {path} does not exist; create one with `equiseg data synth` or `data ingest`")
    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise ManifestError(f"{path} is not a readable Parquet manifest ({exc}); regenerate it") from exc
    meta = table.schema.metadata or {}
    version = meta.get(_META_VERSION, b"").decode()
    if version and version != SCHEMA_VERSION:
        raise ManifestError(
            f"{path} has manifest schema version {version}, this equiseg reads version {SCHEMA_VERSION}; "
            "regenerate the manifest with this version"
        )
    check_columns(table, source=str(path))
    return table


def manifest_data_root(manifest: Path | str, table: pa.Table) -> Path:
    """The data root a manifest records (relative to its folder first, then the absolute path it was written with);
    a manifest without one resolves against its own folder (the synthetic layout).

    Raises:
        ManifestError: the manifest records a root that exists neither relative to it nor at its absolute path.
    """
    manifest = Path(manifest)
    folder = manifest if manifest.is_dir() else manifest.parent
    raw = (table.schema.metadata or {}).get(_META_DATA_ROOT)
    if not raw:
        return folder
    recorded = json.loads(raw)
    for candidate in (folder / recorded.get("relative", ""), Path(recorded.get("absolute", ""))):
        if recorded.get("relative") is not None and candidate.is_dir():
            return candidate
    raise ManifestError(
        f"the data root recorded in {manifest} ({recorded.get('relative')} relative to it, or "
        f"{recorded.get('absolute')}) does not exist; pass --data-root with the dataset folder"
    )


def manifest_modalities(table: pa.Table) -> tuple[str, ...]:
    """Modalities of a manifest: from its metadata, else inferred from the ``<m>_path`` columns."""
    meta = table.schema.metadata or {}
    if _META_MODALITIES in meta:
        return tuple(json.loads(meta[_META_MODALITIES]))
    base = {name for name, _ in BASE_COLUMNS}
    return tuple(c[: -len("_path")] for c in table.column_names if c.endswith("_path") and c not in base)


def manifest_info(table: pa.Table) -> ManifestInfo:
    """Manifest-level metadata (schema version, modalities, class set, number of classes, source)."""
    meta = table.schema.metadata or {}
    raw_classes = meta.get(_META_NUM_CLASSES)
    return ManifestInfo(
        schema_version=meta.get(_META_VERSION, b"").decode(),
        modalities=manifest_modalities(table),
        class_set=meta.get(_META_CLASS_SET, b"").decode(),
        num_classes=json.loads(raw_classes) if raw_classes else None,
        source=meta.get(_META_SOURCE, b"").decode(),
    )


def check_columns(table: pa.Table, *, source: str = "manifest", modalities: Iterable[str] | None = None) -> None:
    """Raise :class:`ManifestError` naming the missing columns (a manifest-level error, not a quarantine)."""
    mods = tuple(modalities) if modalities is not None else manifest_modalities(table)
    required = [name for name, _ in BASE_COLUMNS]
    for modality in mods:
        required += modality_columns(modality)
    missing = [c for c in required if c not in table.column_names]
    if missing:
        raise ManifestError(
            f"{source} lacks required column(s) {', '.join(missing)}; a manifest needs {', '.join(required)} "
            "(regenerate it with `equiseg data synth` / `equiseg data ingest`)"
        )
    if not mods:
        raise ManifestError(f"{source} declares no modalities (no <modality>_path columns)")


def unsafe_path_reason(rel: str | None) -> str | None:
    """Reason code when a manifest path is lexically unsafe (absolute or with ``..``), else None."""
    if rel is None or rel == "":
        return None
    if rel.startswith(("/", "\\")) or PurePosixPath(rel).is_absolute() or (len(rel) > 1 and rel[1] == ":"):
        return "path_absolute"
    if ".." in PurePosixPath(rel.replace("\\", "/")).parts:
        return "path_parent_escape"
    return None


@functools.lru_cache(maxsize=64)
def _real_root(root: str) -> Path:
    return Path(os.path.realpath(root))


def resolve_in_root(root: Path, rel: str) -> Path:
    """Join a manifest path to the data root, rejecting absolute paths, ``..`` and symlinks leading outside.

    Raises:
        PathEscapeError: with the reason code as ``args[0]`` prefix (``path_absolute: ...``).
    """
    reason = unsafe_path_reason(rel)
    if reason:
        raise PathEscapeError(f"{reason}: {rel!r} must be relative to the data root without '..'")
    real_root = _real_root(str(root))
    candidate = real_root / rel
    # Fast path: no component below the root is a symlink (one lstat per component instead of a full realpath).
    probe = real_root
    for part in PurePosixPath(rel).parts:
        probe = probe / part
        if probe.is_symlink():
            break
    else:
        return candidate
    resolved = Path(os.path.realpath(candidate))
    if resolved != real_root and real_root not in resolved.parents:
        raise PathEscapeError(f"path_symlink_escape: {rel!r} resolves to {resolved}, outside the data root {root}")
    return resolved


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()
