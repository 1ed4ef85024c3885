"""Real-layout dataset trees built from the frames in ../shared/realdata, and the damage done to them in tests.

Every reader gets a tree in its dataset's on-disk layout whose pixels are crops of the real PST900 and MFNet frames
(distinct crops per sample). ``Tree.files[sample_id]`` maps ``rgb`` / ``thermal`` / ... / ``label`` to the file's
path relative to the root. Damage functions change one file the way real datasets break.
"""

from __future__ import annotations

import io
import os
import shutil
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

H, W = 40, 56  # crop size: small enough for many hypothesis examples, real pixels all the same


@dataclass
class Tree:
    fmt: str
    root: Path
    files: dict[str, dict[str, str]] = field(default_factory=dict)
    modalities: tuple[str, ...] = ()
    num_classes: int = 0


class Frames:
    """Crops of the real frames: PST900 RGB / AGC thermal / label ids (1280×720) and MFNet RGB+T (640×480)."""

    def __init__(self, realdata: Path) -> None:
        pst = realdata / "pst900"
        self.rgb = np.asarray(Image.open(pst / "utils_rgb_loader.png").convert("RGB"))
        self.thermal = np.asarray(Image.open(pst / "utils_thermal_loader.png"))[:, :, 0]
        self.label = np.asarray(Image.open(pst / "utils_label_ids.png"))
        self.rgbt = [np.asarray(Image.open(realdata / "mfnet" / f"{n}.png")) for n in ("01234N", "01477D")]

    def _offset(self, i: int, height: int, width: int) -> tuple[int, int]:
        # Crops along the labelled objects of the PST900 frame (rows 330..620) so labels hold several classes.
        return 300 + (i * 37) % (height - 300 - H), 430 + (i * 61) % (width - 430 - W)

    def pst(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        y, x = self._offset(i, 720, 1280)
        crop = (slice(y, y + H), slice(x, x + W))
        return self.rgb[crop].copy(), self.thermal[crop].copy(), self.label[crop].copy()

    def mfnet(self, i: int) -> np.ndarray:
        frame = self.rgbt[i % 2]
        y, x = (i * 29) % (480 - H), (i * 53) % (640 - W)
        return frame[y : y + H, x : x + W].copy()


def save(path: Path, array: np.ndarray, **kwargs: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, **kwargs)


def build_pst900(root: Path, frames: Frames, n: int = 6) -> Tree:
    tree = Tree("pst900", root, modalities=("rgb", "thermal", "depth"), num_classes=5)
    for i in range(n):
        split = "train" if i % 3 else "test"
        name = f"31_bag1a_rect_rgb_frame{i:010d}"
        rgb, thermal, label = frames.pst(i)
        paths = {m: f"{split}/{m}/{name}.png" for m in ("rgb", "thermal", "depth")}
        paths["label"] = f"{split}/labels/{name}.png"
        save(root / paths["rgb"], rgb)
        save(root / paths["thermal"], np.repeat(thermal[:, :, None], 3, axis=2))  # AGC thermal ×3, as shipped
        save(root / paths["depth"], (thermal.astype(np.uint16) * 97 + 1000).astype(np.uint16))
        save(root / paths["label"], label)
        tree.files[f"{split}/{name}"] = paths
    return tree


def build_mfnet(root: Path, frames: Frames, n: int = 6) -> Tree:
    tree = Tree("mfnet", root, modalities=("rgb", "thermal"), num_classes=9)
    lists: dict[str, list[str]] = {"train": [], "test": []}
    for i in range(n):
        name = f"{i:05d}{'DN'[i % 2]}"
        save(root / "images" / f"{name}.png", frames.mfnet(i))
        save(root / "labels" / f"{name}.png", frames.pst(i)[2])
        lists["train" if i % 3 else "test"].append(name)
        tree.files[name] = {"rgb": f"images/{name}.png", "thermal": f"images/{name}.png", "label": f"labels/{name}.png"}
    for split, names in lists.items():
        (root / f"{split}.txt").write_text("".join(f"{n}\n" for n in names))
    return tree


def build_mfnet_cmx(root: Path, frames: Frames, n: int = 6) -> Tree:
    tree = Tree("mfnet_cmx", root, modalities=("rgb", "thermal"), num_classes=9)
    names = []
    for i in range(n):
        name = f"{i:05d}{'DN'[i % 2]}"
        rgbt = frames.mfnet(i)
        save(root / "rgb" / f"{name}.png", rgbt[:, :, :3])
        save(root / "ther" / f"{name}.png", rgbt[:, :, 3])
        save(root / "labels" / f"{name}.png", frames.pst(i)[2])
        names.append(name)
        tree.files[name] = {"rgb": f"rgb/{name}.png", "thermal": f"ther/{name}.png", "label": f"labels/{name}.png"}
    (root / "train.txt").write_text("".join(f"{n}\n" for n in names[:-2]))
    (root / "val.txt").write_text("".join(f"{n}.png\n" for n in names[-2:]))
    return tree


def build_nyuv2(root: Path, frames: Frames, n: int = 6) -> Tree:
    """The DFormer layout (``RGB/ Depth/ Label/``); labels are raw NYU ids (0 = unlabelled, 1..40)."""
    tree = Tree("nyuv2", root, modalities=("rgb", "depth"), num_classes=40)
    for i in range(n):
        rgb, thermal, label = frames.pst(i)
        save(root / "RGB" / f"{i}.png", rgb)
        save(root / "Depth" / f"{i}.png", thermal)
        save(root / "Label" / f"{i}.png", (label * 9 + 1).astype(np.uint8))  # ids 1, 10, 19, 28
        tree.files[str(i)] = {"rgb": f"RGB/{i}.png", "depth": f"Depth/{i}.png", "label": f"Label/{i}.png"}
    (root / "train.txt").write_text("".join(f"RGB/{i}.png Label/{i}.png\n" for i in range(n - 2)))
    (root / "test.txt").write_text("".join(f"{i}\n" for i in range(n - 2, n)))
    return tree


_DELIVER = {"rgb": ("img", "rgb"), "hha": ("hha", "depth"), "depth": ("depth", "depth")}
_DELIVER.update({"event": ("event", "event"), "lidar": ("lidar", "lidar"), "label": ("semantic", "semantic")})


def build_deliver(root: Path, frames: Frames, n: int = 6) -> Tree:
    tree = Tree("deliver", root, modalities=("rgb", "hha", "depth", "event", "lidar"), num_classes=25)
    for i in range(n):
        cond, split = ("night", "val") if i % 2 else ("sun", "train")
        frame = f"{i:06d}" + ("_overexposure" if i == 3 else "")
        rgb, thermal, label = frames.pst(i)
        arrays = {"rgb": rgb, "hha": rgb[:, :, ::-1].copy(), "depth": thermal, "event": 255 - thermal}
        arrays["lidar"] = thermal // 2
        arrays["label"] = np.repeat((label + 1)[:, :, None], 3, axis=2).astype(np.uint8)  # raw ids 1..4 in ch 0
        paths = {}
        for key, (folder, kind) in _DELIVER.items():
            paths[key] = f"{folder}/{cond}/{split}/MAP_{i}/{frame}_{kind}_front.png"
            save(root / paths[key], arrays[key])
        tree.files[f"{cond}/{split}/MAP_{i}/{frame}"] = paths
    return tree


def build_muses(root: Path, frames: Frames, n: int = 6) -> Tree:
    tree = Tree("muses", root, modalities=("rgb", "event", "lidar"), num_classes=19)
    for i in range(n):
        split, weather, time = ("train", "fog", "day") if i % 2 else ("val", "snow", "night")
        stem = f"REC{i:04d}_frame_{i:06d}"
        base = f"{split}/{weather}/{time}"
        rgb, thermal, label = frames.pst(i)
        paths = {
            "rgb": f"frame_camera/{base}/{stem}_frame_camera.png",
            "event": f"event_camera/{base}/{stem}_event_camera.png",
            "lidar": f"lidar/{base}/{stem}_lidar.npz",
            "label": f"gt_semantic/{base}/{stem}_gt_labelTrainIds.png",
        }
        save(root / paths["rgb"], rgb)
        save(root / paths["event"], 255 - thermal)
        (root / paths["lidar"]).parent.mkdir(parents=True, exist_ok=True)
        np.savez(root / paths["lidar"], (thermal.astype(np.float32) / 10.0))
        save(root / paths["label"], np.where(label == 3, 255, label * 6).astype(np.uint8))
        tree.files[f"{base}/{stem}"] = paths
    return tree


BUILDERS: dict[str, Callable[[Path, Frames], Tree]] = {
    "mfnet": build_mfnet,
    "mfnet_cmx": build_mfnet_cmx,
    "pst900": build_pst900,
    "nyuv2": build_nyuv2,
    "deliver": build_deliver,
    "muses": build_muses,
}


# ---------------------------------------------------------------------------------------------------------------------
# Damage: each function changes the file at ``path`` (inside the tree ``root``); ``arg`` is a drawn integer.
# ---------------------------------------------------------------------------------------------------------------------


def _decoded(path: Path) -> np.ndarray:
    if path.suffix == ".npz":
        with np.load(path) as npz:
            return npz[npz.files[0]]
    with Image.open(path) as img:
        return np.asarray(img)


def _rewrite(path: Path, array: np.ndarray, **kwargs: object) -> None:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=kwargs.pop("format", "PNG"), **kwargs)  # type: ignore[arg-type]
    path.write_bytes(buffer.getvalue())


def truncate(path: Path, arg: int, root: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: 1 + arg % (len(data) - 1)])


def flip_byte(path: Path, arg: int, root: Path) -> None:
    data = bytearray(path.read_bytes())
    data[arg % len(data)] ^= 1 + (arg // len(data)) % 255
    path.write_bytes(bytes(data))


def empty(path: Path, arg: int, root: Path) -> None:
    path.write_bytes(b"")


def delete(path: Path, arg: int, root: Path) -> None:
    path.unlink()


def not_an_image(path: Path, arg: int, root: Path) -> None:
    path.write_text("<html>404 Not Found</html>\n")


def to_folder(path: Path, arg: int, root: Path) -> None:
    path.unlink()
    path.mkdir()


def symlink_out(path: Path, arg: int, root: Path) -> None:
    outside = root.parent / f"outside_{arg}_{path.name}"
    shutil.copy(path, outside)
    path.unlink()
    os.symlink(outside, path)


def dangling_link(path: Path, arg: int, root: Path) -> None:
    path.unlink()
    os.symlink(path.parent / "does_not_exist.png", path)


def add_alpha(path: Path, arg: int, root: Path) -> None:
    array = _decoded(path)
    array = (array >> 8).astype(np.uint8) if array.dtype == np.uint16 else array
    gray = array if array.ndim == 2 else array[:, :, 0]
    rgb = np.repeat(gray[:, :, None], 3, axis=2) if array.ndim == 2 else array[:, :, :3]
    _rewrite(path, np.dstack([rgb, np.full(gray.shape, 255, np.uint8)]))


def to_gray(path: Path, arg: int, root: Path) -> None:
    array = _decoded(path)
    _rewrite(path, array if array.ndim == 2 else array[:, :, 0].copy())


def drop_alpha(path: Path, arg: int, root: Path) -> None:
    array = _decoded(path)
    _rewrite(path, array[:, :, :3].copy() if array.ndim == 3 else array)


def to_16bit(path: Path, arg: int, root: Path) -> None:
    array = _decoded(path)
    gray = array if array.ndim == 2 else array[:, :, 0]
    _rewrite(path, gray.astype(np.uint16) * 257)


def to_8bit(path: Path, arg: int, root: Path) -> None:
    _rewrite(path, (_decoded(path) >> 8).astype(np.uint8))


def resize_pixel(path: Path, arg: int, root: Path) -> None:
    array = _decoded(path)
    if arg % 2:
        resized = array[:-1] if arg % 4 == 1 else np.concatenate([array, array[-1:]], axis=0)
    else:
        resized = array[:, :-1] if arg % 4 == 0 else np.concatenate([array, array[:, -1:]], axis=1)
    if path.suffix == ".npz":
        np.savez(path, np.ascontiguousarray(resized))
        return
    _rewrite(path, np.ascontiguousarray(resized))


def as_jpeg(path: Path, arg: int, root: Path) -> None:
    array = _decoded(path)
    array = (array >> 8).astype(np.uint8) if array.dtype == np.uint16 else array
    _rewrite(path, array[:, :, :3] if array.ndim == 3 else array, format="JPEG", quality=90)


def as_tiff(path: Path, arg: int, root: Path) -> None:
    _rewrite(path, _decoded(path), format="TIFF")


def as_bmp(path: Path, arg: int, root: Path) -> None:
    array = _decoded(path)
    array = (array >> 8).astype(np.uint8) if array.dtype == np.uint16 else array
    _rewrite(path, array[:, :, :3] if array.ndim == 3 else array, format="BMP")


def colour_map(path: Path, arg: int, root: Path) -> None:
    """A one-sensor image replaced by a false-colour rendering (channels differ)."""
    array = _decoded(path)
    array = (array >> 8).astype(np.uint8) if array.dtype == np.uint16 else array
    gray = (array if array.ndim == 2 else array[:, :, 0]).astype(np.int32)
    _rewrite(path, np.dstack([gray, 255 - gray, (gray // 2 + 1 + arg) % 256]).astype(np.uint8))


def label_palette(palette: tuple[tuple[int, int, int], ...]) -> Callable[[Path, int, Path], None]:
    def damage(path: Path, arg: int, root: Path) -> None:
        ids = _decoded(path)
        _rewrite(path, np.asarray(palette, np.uint8)[ids])

    return damage


def label_off_palette(path: Path, arg: int, root: Path) -> None:
    ids = _decoded(path)
    colours = np.stack([ids * 50 + 7, ids * 30 + 3, ids * 20 + 1], axis=2).astype(np.uint8)
    _rewrite(path, colours)


def label_out_of_range(path: Path, arg: int, root: Path) -> None:
    ids = _decoded(path).copy()
    ids[0, : 1 + arg % 5] = 200
    _rewrite(path, ids)


def bomb(path: Path, arg: int, root: Path) -> None:
    """A PNG whose header claims 100 000 × 100 000 pixels (valid chunks: only the size is absurd)."""
    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 0, 0, 0, 0)
    chunks = b""
    for kind, body in ((b"IHDR", ihdr), (b"IDAT", zlib.compress(b"\0" * 1024)), (b"IEND", b"")):
        chunks += struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunks)


def npz_nan(path: Path, arg: int, root: Path) -> None:
    array = _decoded(path).copy()
    array.flat[arg % array.size] = np.nan
    np.savez(path, array)


def npz_float64(path: Path, arg: int, root: Path) -> None:
    np.savez(path, _decoded(path).astype(np.float64))


#: Every damage by name (``label_palette(...)`` is built per dataset).
DAMAGE: dict[str, Callable[[Path, int, Path], None]] = {
    "truncate": truncate,
    "flip_byte": flip_byte,
    "empty": empty,
    "delete": delete,
    "not_an_image": not_an_image,
    "to_folder": to_folder,
    "symlink_out": symlink_out,
    "dangling_link": dangling_link,
    "add_alpha": add_alpha,
    "to_gray": to_gray,
    "drop_alpha": drop_alpha,
    "to_16bit": to_16bit,
    "to_8bit": to_8bit,
    "resize_pixel": resize_pixel,
    "as_jpeg": as_jpeg,
    "as_tiff": as_tiff,
    "as_bmp": as_bmp,
    "colour_map": colour_map,
    "label_off_palette": label_off_palette,
    "label_out_of_range": label_out_of_range,
    "bomb": bomb,
    "npz_nan": npz_nan,
    "npz_float64": npz_float64,
}
