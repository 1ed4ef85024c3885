"""What every reader shares: probing one file without ever raising, and collecting rows (docs/data.md).

A reader lists samples and their files; :class:`Intake` probes each file once (one read feeds the SHA-256 and the
header check) and turns every problem into a reason code on the sample's row, so one bad file never stops
ingestion. Only dataset-level problems (root missing, layout not recognised) raise :class:`LayoutError`.
"""

from __future__ import annotations

import functools
import hashlib
import multiprocessing
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from tqdm import tqdm

from equiseg.data.io import DEFAULT_MAX_PIXELS, ImageDecodeError, ImageHeader, read_header
from equiseg.data.manifest import ManifestRow
from equiseg.data.specs import DatasetSpec

__all__ = ["IMAGE_SUFFIXES", "Intake", "LayoutError", "Probe", "find", "probe_file", "read_split_lists", "select"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".npz", ".npy", ".tif", ".tiff")
T = TypeVar("T")


class LayoutError(FileNotFoundError):
    """A dataset-level problem: the root is missing or the layout is not the one asked for (one-line message)."""


@dataclass(frozen=True)
class Probe:
    """One probed file: its manifest path, header and SHA-256, or the reason it cannot be used."""

    rel: str
    header: ImageHeader | None = None
    sha256: str | None = None
    problem: tuple[str, str] | None = None


def _default_scale(dtype: str) -> float:
    return {"uint8": 1.0 / 255.0, "uint16": 1.0 / 65535.0, "bool": 1.0}.get(dtype, 1.0)


def find(folder: Path, stem: str) -> Path | None:
    """The file ``folder/stem.<image suffix>`` (a dangling or escaping symlink counts: probing reports it)."""
    for suffix in IMAGE_SUFFIXES:
        candidate = folder / f"{stem}{suffix}"
        if os.path.lexists(candidate):
            return candidate
    return None


def read_split_lists(root: Path, splits: Sequence[str], fmt: str) -> dict[str, list[str]]:
    """Names per split list; lines may be bare names or paths (``RGB/12.jpg Label/12.png``): first token's stem."""
    lists: dict[str, list[str]] = {}
    for split in splits:
        path = root / f"{split}.txt"
        if path.is_file():
            lines = path.read_text(errors="replace").splitlines()
            lists[split] = [Path(line.split()[0]).stem for line in lines if line.strip()]
    if not lists:
        raise LayoutError(
            f"{fmt}: no {' / '.join(s + '.txt' for s in splits)} split list in {root}; is --root the dataset top?"
        )
    return lists


def select(found: Sequence[str], requested: Sequence[str] | None, fmt: str) -> list[str]:
    """The modalities to ingest: ``requested`` (each must be available) or all ``found``."""
    if requested is None:
        return list(found)
    missing = [m for m in requested if m not in found]
    if missing:
        raise LayoutError(f"{fmt}: modalities {missing} not available here; this layout provides {list(found)}")
    return list(requested)


def probe_file(root: Path, real_root: Path, max_pixels: int, path: Path) -> Probe:
    """Probe one file (a module-level function, so worker processes receive only these small arguments)."""
    rel = path.relative_to(root).as_posix()
    if path.is_symlink():
        target = Path(os.path.realpath(path))
        if target != real_root and real_root not in target.parents:
            return Probe(rel, problem=("path_symlink_escape", f"{rel} links to {target}, outside the data root"))
    if not path.exists():
        return Probe(rel, problem=("missing_modality", f"{rel} is a dangling link"))
    if not path.is_file():
        return Probe(rel, problem=("not_a_file", f"{rel} is a folder or device, not a file"))
    try:
        data = path.read_bytes()
    except OSError as exc:
        return Probe(rel, problem=("unreadable", f"{rel} cannot be read ({exc.strerror or exc})"))
    if not data:
        return Probe(rel, problem=("empty_file", f"{rel} is empty (0 bytes)"))
    try:
        header = read_header(data, rel, max_pixels=max_pixels)
    except ImageDecodeError as exc:
        return Probe(rel, problem=(exc.code, str(exc)))
    return Probe(rel, header=header, sha256=hashlib.sha256(data).hexdigest())


@dataclass
class Intake:
    """Collects the rows of one ingestion; every sample found on disk becomes exactly one row."""

    fmt: str
    root: Path
    spec: DatasetSpec
    max_pixels: int = DEFAULT_MAX_PIXELS
    progress: bool = False
    workers: int = 1
    rows: list[ManifestRow] = field(default_factory=list)
    claimed: set[str] = field(default_factory=set)
    _ids: set[str] = field(default_factory=set)
    _probed: dict[Path, Probe] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.real_root = Path(os.path.realpath(self.root))

    def track(self, items: Iterable[T], total: int | None = None) -> Iterator[T]:
        """``items`` with a progress bar (when enabled)."""
        yield from tqdm(
            items, total=total, desc=f"ingest {self.fmt}", unit="sample", disable=not self.progress, leave=False
        )

    def rel(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    def prefetch_indexed(self, indexes: Iterable[dict[Any, list[Path]]]) -> None:
        """:meth:`prefetch` every file of some :meth:`index` results, in one pool."""
        self.prefetch([p for index in indexes for paths in index.values() for p in paths])

    def prefetch(self, paths: Sequence[Path]) -> None:
        """Probe many files ahead in ``workers`` processes (the reader's own calls then find them done)."""
        todo = [p for p in paths if p not in self._probed]
        if self.workers <= 1 or len(todo) < 64:
            return
        method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
        work = functools.partial(probe_file, self.root, self.real_root, self.max_pixels)
        with multiprocessing.get_context(method).Pool(self.workers) as pool:
            probes = pool.map(work, todo, chunksize=max(1, min(64, len(todo) // (self.workers * 8))))
        self._probed.update(zip(todo, probes, strict=True))

    def probe(self, path: Path | None, what: str, expected: str = "") -> Probe:
        """Read one file once: escape, existence, type, size, header and pixel-limit checks; never raises."""
        if path is None:
            return Probe("", problem=("missing_modality", f"{what}: no file {expected} on disk"))
        self.claimed.add(self.rel(path))
        probe = self._probed.pop(path, None) or self._probe_file(path)
        if probe.problem is not None:
            code, detail = probe.problem
            return Probe(probe.rel, problem=(code, f"{what}: {detail}"))
        return probe

    def _probe_file(self, path: Path) -> Probe:
        return probe_file(self.root, self.real_root, self.max_pixels, path)

    def file_spec(self, probe: Probe, *, bands: str = "", channels: int | None = None) -> dict[str, Any]:
        """Manifest fields of a probed modality file."""
        assert probe.header is not None
        return {
            "path": probe.rel,
            "channels": probe.header.channels if channels is None else channels,
            "dtype": probe.header.dtype,
            "sha256": probe.sha256,
            "bands": bands,
            "scale": _default_scale(probe.header.dtype),
        }

    def single_channel(self, probe: Probe) -> dict[str, Any]:
        """Spec for a sensor that is one channel: 3 identical channels (AGC thermal, ×3 depth) → channel 0."""
        assert probe.header is not None
        if probe.header.channels > 1:
            return self.file_spec(probe, bands="0:1", channels=1)
        return self.file_spec(probe)

    def add(
        self,
        sample_id: str,
        split: str,
        files: dict[str, dict[str, Any]],
        problems: list[tuple[str, str]],
        *,
        size: tuple[int, int] | None,
        label: Probe | None = None,
        label_encoding: str = "identity",
        conditions: tuple[str, ...] = (),
    ) -> None:
        """Append one sample; ``problems`` (plus a duplicate id or a broken label) mark it for quarantine."""
        problems = list(problems)
        if sample_id in self._ids:
            problems.append(("duplicate_id", f"sample id {sample_id} was already found earlier in this dataset"))
        self._ids.add(sample_id)
        label_path = label_sha = None
        if label is not None:
            if label.problem is not None:
                code, detail = label.problem
                problems.append(
                    (
                        "missing_label" if code == "missing_modality" else code,
                        detail.replace("missing", "missing label"),
                    )
                )
            label_path, label_sha = label.rel or None, label.sha256
            if label.header is not None and label.header.mode == "RGB" and self.spec.label.palette is not None:
                label_encoding = "palette"  # a colour-coded label of a dataset that declares its palette
        self.rows.append(
            ManifestRow(
                sample_id=sample_id,
                split=split,
                source=self.spec.source,
                height=size[0] if size else 0,
                width=size[1] if size else 0,
                class_set=self.spec.class_set,
                files=files,
                label_path=label_path,
                label_sha256=label_sha,
                label_encoding=label_encoding,
                conditions=conditions,
                ingest_codes=tuple(sorted({code for code, _ in problems})),
                ingest_detail="; ".join(detail for _, detail in problems),
            )
        )

    def pick(self, candidates: Sequence[Path], what: str, problems: list[tuple[str, str]]) -> Path | None:
        """The one file of a sample's modality; two (``a.png`` and ``a.jpg``) make the sample id a duplicate."""
        if len(candidates) > 1:
            names = ", ".join(self.rel(c) for c in candidates)
            problems.append(("duplicate_id", f"{what}: several files for one sample ({names}); keep one"))
            self.claimed.update(self.rel(c) for c in candidates)
        return candidates[0] if candidates else None

    def add_modalities(
        self,
        paths: dict[str, Path | None],
        single: Sequence[str] = (),
        bands: dict[str, tuple[str, int]] | None = None,
        problems: list[tuple[str, str]] | None = None,
    ) -> tuple[dict[str, dict[str, Any]], list[tuple[str, str]], tuple[int, int] | None]:
        """Probe each modality file; returns the manifest file specs, the problems and the first file's (H, W)."""
        files: dict[str, dict[str, Any]] = {}
        problems = [] if problems is None else problems
        size = None
        probes: dict[str, Probe] = {}
        for modality, path in paths.items():
            key = self.rel(path) if path is not None else f"?{modality}"
            probe = probes.get(key) or self.probe(path, modality, f"for {modality}")
            probes[key] = probe
            if probe.problem is not None:
                problems.append(probe.problem)
                continue
            assert probe.header is not None
            size = size or (probe.header.height, probe.header.width)
            if bands and modality in bands:
                files[modality] = self.file_spec(probe, bands=bands[modality][0], channels=bands[modality][1])
            elif modality in single:
                files[modality] = self.single_channel(probe)
            else:
                files[modality] = self.file_spec(probe)
        return files, problems, size

    def index(self, folder: Path, pattern: str, key: Any) -> dict[Any, list[Path]]:
        """Image files under ``folder`` matching ``pattern`` grouped by ``key(path)`` (a sample's files pair by it)."""
        found: dict[Any, list[Path]] = {}
        if folder.is_dir():
            for path in sorted(folder.glob(pattern)):
                if path.suffix.lower() in IMAGE_SUFFIXES:
                    found.setdefault(key(path), []).append(path)
        return found

    def strays(self, folders: Iterable[Path], split: str = "train") -> None:
        """Every file under ``folders`` no sample claimed becomes a quarantined ``stray_file`` row."""
        for folder in folders:
            if not folder.is_dir():
                continue
            for path in sorted(folder.rglob("*")):
                if path.is_dir() and not path.is_symlink():
                    continue
                rel = self.rel(path)
                if rel in self.claimed:
                    continue
                detail = f"{rel} belongs to no sample (no matching frame or split-list entry); move it out of the root"
                self.add(f"stray:{rel}", split, {}, [("stray_file", detail)], size=None)
