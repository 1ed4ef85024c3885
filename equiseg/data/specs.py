"""Per-dataset file specs and the checks of a decoded file against them (docs/data.md, "File specs").

A reader module declares one :class:`DatasetSpec` next to its reader: for each modality the PIL modes, bit depth,
channels, value range and formats the dataset ships, and for the label how class ids are stored (single-channel
ids, ids in channel 0, or a declared colour palette). The validator checks every decoded file against it, so a file
that decodes fine but is encoded the wrong way for the dataset (a colour label, 16-bit depth where 8-bit is
shipped, a colour-mapped thermal) is quarantined with its own reason code instead of training on garbage.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from equiseg.data.io import ImageHeader

__all__ = ["DatasetSpec", "FileSpec", "LabelSpec", "check_file", "check_label", "palette_to_ids"]

Reason = tuple[str, str]


@dataclass(frozen=True)
class FileSpec:
    """How a dataset stores one modality file.

    Attributes:
        modes: PIL modes the dataset ships (``array`` for NPY/NPZ).
        dtype: bit depth as the decoded numpy dtype (``uint8``, ``uint16``, ``float32``).
        channels: channels of an NPY/NPZ array (for images the mode fixes the channels).
        formats: file formats (``png``, ``jpeg``, ``tiff``, ``npy``, ``npz``).
        value_range: inclusive raw value range, None for the dtype's full range.
        replicated: a multi-channel file whose channels must be identical (AGC thermal or depth stored ×3).
    """

    modes: tuple[str, ...]
    dtype: str
    channels: int
    formats: tuple[str, ...] = ("png",)
    value_range: tuple[float, float] | None = None
    replicated: bool = False


@dataclass(frozen=True)
class LabelSpec:
    """How a dataset stores labels: raw ids ``0..max_id`` plus ``extra_ids`` (e.g. 255 = ignore).

    ``channel0``: ids live in channel 0 of a multi-channel image (DeLiVER). ``palette``: the colour of each id, for
    datasets whose labels may come colour-coded; the reader then records ``label_encoding="palette"`` and the colours
    are converted explicitly (a colour outside the palette is quarantined).
    """

    max_id: int
    modes: tuple[str, ...] = ("L", "P")
    dtype: str = "uint8"
    extra_ids: tuple[int, ...] = (255,)
    formats: tuple[str, ...] = ("png",)
    channel0: bool = False
    palette: tuple[tuple[int, int, int], ...] | None = None


@dataclass(frozen=True)
class DatasetSpec:
    """The file specs of one dataset layout (``name`` is the ingest format, ``source`` the manifest's source)."""

    name: str
    source: str
    class_set: str
    num_classes: int
    files: Mapping[str, FileSpec]
    label: LabelSpec


def _format_mode_depth(
    what: str,
    header: ImageHeader,
    array: np.ndarray,
    modes: tuple[str, ...],
    dtype: str,
    formats: tuple[str, ...],
    dataset: str,
) -> list[Reason]:
    reasons: list[Reason] = []
    if header.kind not in formats:
        reasons.append(
            ("format_mismatch", f"{what}: a {header.kind.upper()} file; {dataset} ships {'/'.join(formats)}")
        )
    if str(array.dtype) != dtype:
        reasons.append(("bit_depth_mismatch", f"{what}: {array.dtype} pixels; {dataset} ships {dtype}"))
    elif header.mode not in modes:
        reasons.append(("mode_mismatch", f"{what}: image mode {header.mode}; {dataset} ships {'/'.join(modes)}"))
    return reasons


def check_file(modality: str, header: ImageHeader, array: np.ndarray, spec: FileSpec, dataset: str) -> list[Reason]:
    """Reasons the decoded ``(H, W, C)`` file of ``modality`` breaks the dataset's spec (empty when it conforms)."""
    reasons = _format_mode_depth(modality, header, array, spec.modes, spec.dtype, spec.formats, dataset)
    if reasons:
        return reasons
    if header.mode == "array" and array.shape[2] != spec.channels:  # PIL files: the mode fixes the channels
        return [("channel_mismatch", f"{modality}: {array.shape[2]} channel(s); {dataset} ships {spec.channels}")]
    if spec.value_range is not None:
        low, high = spec.value_range
        lowest, highest = array.min(), array.max()
        if lowest < low or highest > high:
            reasons.append(
                ("value_out_of_range", f"{modality}: values {lowest}..{highest} outside {dataset}'s {low}..{high}")
            )
    if spec.replicated and array.shape[2] > 1:
        first = array[:, :, :1]
        if not all(np.array_equal(first[:, :, 0], array[:, :, c]) for c in range(1, array.shape[2])):
            reasons.append(
                (
                    "channels_not_replicated",
                    f"{modality}: the {array.shape[2]} channels differ (a colour-mapped image?); {dataset} ships "
                    "one sensor value copied to every channel",
                )
            )
    return reasons


def palette_to_ids(array: np.ndarray, palette: tuple[tuple[int, int, int], ...]) -> np.ndarray | None:
    """Colour label ``(H, W, 3)`` → ids ``(H, W, 1)`` uint8 by exact palette match; None if any colour is off it."""
    keys = np.array([(r << 16) | (g << 8) | b for r, g, b in palette], dtype=np.int64)
    order = np.argsort(keys)
    sorted_keys = keys[order]
    pixels = (array[:, :, 0].astype(np.int64) << 16) | (array[:, :, 1].astype(np.int64) << 8) | array[:, :, 2]
    index = np.clip(np.searchsorted(sorted_keys, pixels), 0, len(keys) - 1)
    if not np.array_equal(sorted_keys[index], pixels):
        return None
    return order[index].astype(np.uint8)[:, :, None]


def check_label(
    header: ImageHeader, array: np.ndarray, spec: LabelSpec, encoding: str, dataset: str
) -> tuple[list[Reason], np.ndarray | None]:
    """Check a decoded label against the spec; returns the reasons and the raw id image ``(H, W, 1)`` if usable."""
    if encoding == "palette":
        if spec.palette is None:
            return [("bad_declaration", f"label: palette encoding, but {dataset} declares no palette")], None
        if header.kind not in spec.formats or header.mode != "RGB":
            return [
                ("label_mode_mismatch", f"label: a {header.kind} {header.mode} image; palette labels are RGB")
            ], None
        ids = palette_to_ids(array, spec.palette)
        if ids is None:
            return [
                ("label_not_in_palette", f"label: colours outside {dataset}'s {len(spec.palette)}-colour palette")
            ], None
        return [], ids
    if header.kind not in spec.formats:
        return [
            ("format_mismatch", f"label: a {header.kind.upper()} file; {dataset} ships {'/'.join(spec.formats)}")
        ], None
    if str(array.dtype) != spec.dtype:
        return [("bit_depth_mismatch", f"label: {array.dtype} pixels; {dataset} stores {spec.dtype} class ids")], None
    if header.mode not in spec.modes:
        what = "a colour" if header.mode in ("RGB", "RGBA", "LA") else f"a {header.mode}"
        return [
            ("label_mode_mismatch", f"label: {what} image; {dataset} stores class ids as {'/'.join(spec.modes)}")
        ], None
    if spec.channel0 and array.shape[2] > 1:
        return [], array[:, :, :1]
    return [], array
