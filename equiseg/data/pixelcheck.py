"""Per-sample pixel checks run in worker processes by the streaming validator (docs/data.md).

Each file is read once: its bytes feed the SHA-256 and the decoder. A sample fails with one or more reason codes;
a passing sample contributes compact statistics (a 256-bin histogram per modality channel in [0, 1] units and the
label's class histogram), so the parent aggregates millions of pixels without holding images.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from equiseg.data.io import (
    DEFAULT_MAX_PIXELS,
    ImageDecodeError,
    ImageHeader,
    apply_label_encoding,
    decode_image,
    select_bands,
)
from equiseg.data.manifest import PathEscapeError, resolve_in_root
from equiseg.data.specs import DatasetSpec, check_file, check_label

__all__ = ["REASON_CODES", "SampleCheck", "check_sample"]

#: Every reason a sample can be quarantined for, with what it means.
REASON_CODES: dict[str, str] = {
    "missing_file": "a modality or label file does not exist",
    "empty_file": "a file has zero bytes",
    "not_an_image": "a file is no PNG/JPEG/TIFF/NPY/NPZ (bad magic bytes)",
    "truncated_file": "an image file ends early",
    "decode_error": "an image file is corrupt or in an unsupported mode",
    "size_mismatch": "a modality's H×W differs from the declared height/width",
    "label_size_mismatch": "the label's H×W differs from the declared height/width",
    "channel_mismatch": "a modality has another channel count than declared",
    "dtype_mismatch": "a modality has another dtype than declared (e.g. 16-bit where 8-bit is declared)",
    "label_out_of_range": "the label holds ids outside the class set and not the ignore index",
    "label_not_integer": "the label decodes to a non-integer type (class ids are read from channel 0)",
    "nan_values": "a float modality holds NaN",
    "inf_values": "a float modality holds ±inf",
    "dead_channel": "a modality channel is constant (dead sensor)",
    "checksum_mismatch": "a file's SHA-256 differs from the manifest",
    "duplicate_id": "the sample id appeared earlier in the manifest",
    "unknown_split": "the split is not train, val or test",
    "path_absolute": "a path is absolute",
    "path_parent_escape": "a path contains '..'",
    "path_symlink_escape": "a path resolves through a symlink outside the data root",
    "null_field": "a required field is empty",
    "bad_declaration": "declared size, channels, dtype, bands or label encoding are invalid",
    # Found by the reader at ingestion (docs/data.md, "Reason codes").
    "missing_modality": "a modality file of the sample is not on disk",
    "missing_label": "the dataset has labels but this sample's label file is not on disk",
    "not_a_file": "a folder or device sits where a file is expected",
    "unreadable": "a file exists but cannot be read (permissions, I/O error)",
    "too_large": "the header claims more pixels than the decode limit (decompression bomb or wrong file)",
    "stray_file": "a file in a dataset folder that belongs to no sample",
    # Integrity and the dataset's file spec.
    "crc_mismatch": "a PNG chunk's or NPZ member's CRC-32 is wrong (flipped bytes: the pixels cannot be trusted)",
    "archive_corrupt": "an NPZ archive's structure is damaged (zip headers or directory unreadable)",
    "format_mismatch": "the file format (PNG, JPEG, ...) is not one the dataset ships",
    "mode_mismatch": "the image mode (L, RGB, RGBA, ...) is not the one the dataset ships for this modality",
    "bit_depth_mismatch": "the bit depth (8/16-bit, float) is not the one the dataset ships",
    "value_out_of_range": "values lie outside the range the dataset's spec declares",
    "channels_not_replicated": "a one-sensor file stored as 3 channels has differing channels (colour-mapped?)",
    "label_mode_mismatch": "the label is a colour/RGBA image where the dataset stores class ids",
    "label_not_in_palette": "a colour-coded label holds colours outside the dataset's palette",
}

_HIST_BINS = 256


@dataclass
class SampleCheck:
    """Outcome of checking one sample."""

    index: int
    reasons: list[tuple[str, str]] = field(default_factory=list)  # (code, message)
    channel_hist: dict[str, np.ndarray] = field(default_factory=dict)  # modality -> (C, 256) int64
    channel_min: dict[str, np.ndarray] = field(default_factory=dict)
    channel_max: dict[str, np.ndarray] = field(default_factory=dict)
    class_hist: np.ndarray | None = None  # (num_classes,) pixel counts; ignore pixels excluded
    ignore_pixels: int = 0
    bytes_read: int = 0
    trusted: bool = False  # the manifest's checksums were taken after a CRC check (this reader or the generator)
    unverified: bool = True  # the file just read did not match such a checksum: PNG CRCs are checked on decode


def _read(root: Path, rel: str, expected_sha: str | None, check: SampleCheck, what: str) -> bytes | None:
    try:
        path = resolve_in_root(root, rel)
    except PathEscapeError as exc:
        code = str(exc).split(":", 1)[0]
        check.reasons.append((code, f"{what}: {exc}"))
        return None
    if not path.is_file():
        check.reasons.append(("missing_file", f"{what}: {rel} does not exist under the data root"))
        return None
    data = path.read_bytes()
    check.bytes_read += len(data)
    if not data:
        check.reasons.append(("empty_file", f"{what}: {rel} is empty (0 bytes)"))
        return None
    check.unverified = not (expected_sha and check.trusted)
    if expected_sha and hashlib.sha256(data).hexdigest() != expected_sha:
        check.reasons.append(("checksum_mismatch", f"{what}: {rel} SHA-256 differs from the manifest"))
        check.unverified = True
    return data


def _decode(
    data: bytes, rel: str, check: SampleCheck, what: str, max_pixels: int
) -> tuple[np.ndarray, ImageHeader] | None:
    try:  # bytes whose SHA-256 matched the manifest were CRC-checked when the checksum was taken
        return decode_image(data, rel, max_pixels=max_pixels, check_crc=check.unverified)
    except ImageDecodeError as exc:
        check.reasons.append((exc.code, f"{what}: {exc}"))
        return None


def _integer_stats(array: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(unit histograms (C, 256), raw minima (C,), raw maxima (C,)) of a uint8/uint16 ``(H, W, C)`` array."""
    if array.dtype == np.uint8 and abs(scale * 255.0 - 1.0) < 1e-9:
        # 8-bit at 1/255: the raw counts are the unit histogram, and min/max are its first and last non-empty bins.
        counts = np.stack([np.bincount(array[:, :, c].ravel(), minlength=256) for c in range(array.shape[2])])
        present = counts > 0
        lows = np.argmax(present, axis=1)
        highs = 255 - np.argmax(present[:, ::-1], axis=1)
        return counts.astype(np.int64), lows, highs
    hists, lows_list, highs_list = [], [], []
    for c in range(array.shape[2]):
        channel = array[:, :, c]
        lows_list.append(int(channel.min()))
        highs_list.append(int(channel.max()))
        index = (channel.astype(np.float32) * np.float32(scale * _HIST_BINS)).astype(np.int32)
        np.clip(index, 0, _HIST_BINS - 1, out=index)
        hists.append(np.bincount(index.ravel(), minlength=_HIST_BINS))
    return np.stack(hists).astype(np.int64), np.array(lows_list), np.array(highs_list)


def _float_stats(array: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Same as :func:`_integer_stats` for float (or other) arrays; non-finite values are left out."""
    hists, lows, highs = [], [], []
    for c in range(array.shape[2]):
        values = array[:, :, c].astype(np.float64).ravel()
        values = values[np.isfinite(values)]
        if values.size == 0:
            hists.append(np.zeros(_HIST_BINS, np.int64))
            lows.append(np.nan)
            highs.append(np.nan)
            continue
        idx = np.clip((values * scale * _HIST_BINS).astype(np.int64), 0, _HIST_BINS - 1)
        hists.append(np.bincount(idx, minlength=_HIST_BINS).astype(np.int64))
        lows.append(values.min())
        highs.append(values.max())
    return np.stack(hists), np.array(lows), np.array(highs)


def _check_modality(row: Mapping[str, Any], modality: str, array: np.ndarray, check: SampleCheck) -> None:
    declared_channels = row.get(f"{modality}_channels")
    declared_dtype = row.get(f"{modality}_dtype")
    try:
        array = select_bands(array, row.get(f"{modality}_bands") or "")
    except ValueError as exc:
        check.reasons.append(("bad_declaration", f"{modality}: {exc}"))
        return
    height, width, channels = array.shape
    if (height, width) != (row["height"], row["width"]):
        check.reasons.append(
            ("size_mismatch", f"{modality}: {height}×{width} but the sample declares {row['height']}×{row['width']}")
        )
    if channels == 0 or (declared_channels is not None and channels != declared_channels):
        check.reasons.append(("channel_mismatch", f"{modality}: {channels} channel(s), declared {declared_channels}"))
    if declared_dtype and str(array.dtype) != declared_dtype:
        check.reasons.append(("dtype_mismatch", f"{modality}: dtype {array.dtype}, declared {declared_dtype}"))
    if channels == 0:
        return
    if np.issubdtype(array.dtype, np.floating):
        if np.isnan(array).any():
            check.reasons.append(("nan_values", f"{modality}: {int(np.isnan(array).sum())} NaN value(s)"))
        if np.isinf(array).any():
            check.reasons.append(("inf_values", f"{modality}: {int(np.isinf(array).sum())} infinite value(s)"))
    scale = row.get(f"{modality}_scale")
    if scale is None:
        scale = 1.0 / float(np.iinfo(array.dtype).max) if np.issubdtype(array.dtype, np.integer) else 1.0
    # Statistics come from every other row and column (a quarter of the pixels: plenty for histograms and drift,
    # and the validator keeps pace with bare decoding); a channel that looks constant there is confirmed in full.
    sample = array[::2, ::2] if height * width >= 4096 else array
    if array.dtype in (np.uint8, np.uint16):
        hist, lows, highs = _integer_stats(sample, float(scale))
    else:
        hist, lows, highs = _float_stats(sample, float(scale))
    dead = [c for c in range(channels) if lows[c] == highs[c] and bool((array[:, :, c] == array[0, 0, c]).all())]
    if dead:
        check.reasons.append(("dead_channel", f"{modality}: channel(s) {dead} constant at {lows[dead[0]]}"))
    if check.reasons:
        return
    check.channel_hist[modality] = hist
    check.channel_min[modality] = lows.astype(np.float64) * float(scale)
    check.channel_max[modality] = highs.astype(np.float64) * float(scale)


def _check_label(row: Mapping[str, Any], array: np.ndarray, num_classes: int, ignore: int, check: SampleCheck) -> None:
    if not np.issubdtype(array.dtype, np.integer):  # multi-channel labels use channel 0 (DeLiVER convention)
        check.reasons.append(("label_not_integer", f"label: dtype {array.dtype}, class ids need an integer image"))
        return
    if array.shape[:2] != (row["height"], row["width"]):
        check.reasons.append(
            (
                "label_size_mismatch",
                f"label: {array.shape[0]}×{array.shape[1]} but the sample declares {row['height']}×{row['width']}",
            )
        )
    encoding = row.get("label_encoding") or "identity"
    encoding = "identity" if encoding == "palette" else encoding  # colours were mapped to ids against the spec
    raw = array[:, :, 0]
    if encoding == "identity" and raw.dtype in (np.uint8, np.uint16):  # fast path: no int64 copy
        label = raw
        counts = np.bincount(raw.ravel(), minlength=max(num_classes, ignore + 1))
    else:
        try:
            label = apply_label_encoding(raw, encoding, ignore)
        except ValueError as exc:
            check.reasons.append(("bad_declaration", f"label: {exc}"))
            return
        counts = np.bincount(label.ravel().clip(0, None), minlength=max(num_classes, ignore + 1))
    bad = [i for i in np.flatnonzero(counts).tolist() if i >= num_classes and i != ignore]
    if (label < 0).any():
        bad.insert(0, int(label.min()))
    if bad:
        check.reasons.append(
            ("label_out_of_range", f"label: ids {bad[:8]} outside 0..{num_classes - 1} and not ignore {ignore}")
        )
        return
    check.class_hist = counts[:num_classes].astype(np.int64)
    check.ignore_pixels = int(counts[ignore]) if ignore < counts.size else 0


def check_sample(
    index: int,
    row: Mapping[str, Any],
    root: Path,
    modalities: Sequence[str],
    num_classes: int,
    ignore_index: int = 255,
    *,
    spec: DatasetSpec | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> SampleCheck:
    """Check every file of one manifest row (against the dataset's ``spec`` where given); returns reasons (empty
    when the sample is good) and statistics."""
    check = SampleCheck(index=index)
    check.trusted = row.get("ingest_codes") is not None or row.get("source") == "synthetic"
    for modality in modalities:
        rel = row.get(f"{modality}_path")
        if not rel:
            check.reasons.append(("null_field", f"{modality}_path is empty"))
            continue
        data = _read(root, rel, row.get(f"{modality}_sha256"), check, modality)
        decoded = None if data is None else _decode(data, rel, check, modality, max_pixels)
        if decoded is None:
            continue
        array, header = decoded
        if spec is not None and modality in spec.files:
            mismatches = check_file(modality, header, array, spec.files[modality], spec.name)
            if mismatches:
                check.reasons += mismatches
                continue
        _check_modality(row, modality, array, check)
    label_rel = row.get("label_path")
    if label_rel:
        data = _read(root, label_rel, row.get("label_sha256"), check, "label")
        decoded = None if data is None else _decode(data, label_rel, check, "label", max_pixels)
        if decoded is not None:
            array, header = decoded
            problems: list[tuple[str, str]] = []
            if spec is not None:
                problems, ids = check_label(header, array, spec.label, row.get("label_encoding") or "", spec.name)
                check.reasons += problems
                array = ids if ids is not None else array
            if not problems:
                _check_label(row, array, num_classes, ignore_index, check)
    if check.reasons:
        check.channel_hist.clear()
        check.class_hist = None
    return check
