"""Benchmarks of the robustness runner and degradations (results in docs/robustness.md).

1. ``suite``: time spent degrading inputs / time spent in model inference, over the quick and the full suite, for
   ``equiseg_tiny`` (or a small conv net if the model registry is unavailable) on synthetic RGB-D-T batches. The
   runner measures both itself (``result.meta["timing"]``), so the ratio compares work done in the same run.
   Target: <= 0.25.
2. ``numpy``: our batched torch RGB corruptions vs a per-image numpy / PIL implementation of the same corruption on
   the same images: speed ratio (numpy time / torch time, > 1 means batched torch is faster) and the numeric
   difference (max and mean absolute, in [0, 1] image units) showing they are the same corruption. The references
   are independent where possible: PIL's JPEG encoder, PIL BOX resampling (ImageNet-C pixelate), matplotlib's
   HSV conversion (ImageNet-C brightness), scipy.ndimage filters (ImageNet-C defocus), numpy contrast.

Usage: ``.venv/bin/python bench/bench_robustness.py [--part suite|numpy|all] [--images 16] [--size 64]
[--repeats 3] [--threads 1]``. One torch thread by default: the numpy references are single-threaded, and on a
shared machine idle-spinning intra-op threads distort both measurements.
"""

from __future__ import annotations

import argparse
import io
import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from matplotlib.colors import hsv_to_rgb, rgb_to_hsv
from PIL import Image
from scipy import ndimage

from equiseg.modalities import channels_of, from_unit
from equiseg.robustness import apply_degradation, evaluate_robustness

MODALITIES = ("rgb", "depth", "thermal")
NUM_CLASSES = 8


def synthetic_batches(images: int, size: int, batch_size: int, seed: int = 0) -> list[dict[str, Any]]:
    """Smooth random scenes: blocky labels, every modality a noisy function of the label."""
    g = torch.Generator().manual_seed(seed)
    batches = []
    for start in range(0, images, batch_size):
        n = min(batch_size, images - start)
        coarse = torch.randint(0, NUM_CLASSES, (n, 1, size // 8, size // 8), generator=g).float()
        label = torch.nn.functional.interpolate(coarse, size=(size, size), mode="nearest")
        inputs = {}
        for m in MODALITIES:
            c = channels_of(m)
            unit = (label / NUM_CLASSES).expand(n, c, size, size) + 0.1 * torch.rand((n, c, size, size), generator=g)
            inputs[m] = from_unit(unit.clamp(0, 1), m)
        batches.append(
            {
                "inputs": inputs,
                "label": label.squeeze(1).long(),
                "sample_id": [f"b{start + i}" for i in range(n)],
                "conditions": [("night",) if (start + i) % 4 == 0 else () for i in range(n)],
            }
        )
    return batches


def build_model() -> tuple[torch.nn.Module, str]:
    try:
        from equiseg.models import create_model

        return create_model("equiseg_tiny", num_classes=NUM_CLASSES, modalities=MODALITIES).eval(), "equiseg_tiny"
    except (ImportError, KeyError):

        class SmallNet(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.net = torch.nn.Sequential(
                    torch.nn.Conv2d(5, 32, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(32, NUM_CLASSES, 1)
                )

            def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
                return self.net(torch.cat([inputs[m] for m in MODALITIES], dim=1))

        return SmallNet().eval(), "small conv net (equiseg.models unavailable)"


def bench_suite(images: int, size: int, batch_size: int) -> None:
    model, name = build_model()
    batches = synthetic_batches(images, size, batch_size)
    print(f"model: {name}; {images} images of {size}x{size}, batch {batch_size}, modalities {'-'.join(MODALITIES)}")
    print("| suite | slices | degrade (s) | inference (s) | total (s) | degrade / inference |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for suite in ("quick", "full"):
        result = evaluate_robustness(
            model,
            batches,
            num_classes=NUM_CLASSES,
            modalities=MODALITIES,
            suite=suite,  # type: ignore[arg-type]
            bootstrap_samples=0,
            progress=False,
        )
        t = result.meta["timing"]
        print(
            f"| {suite} | {result.meta['num_slices']} | {t['degrade_s']:.3f} | {t['inference_s']:.3f} | "
            f"{t['total_s']:.2f} | {t['degrade_s'] / t['inference_s']:.3f} |",
            flush=True,
        )


# --------------------------------------------------------------------------------------------------------------------
# Per-image numpy / PIL references (H, W, 3) float in [0, 1]
# --------------------------------------------------------------------------------------------------------------------


def np_contrast(img: np.ndarray, severity: int) -> np.ndarray:
    c = (0.4, 0.3, 0.2, 0.1, 0.05)[severity - 1]
    means = img.mean(axis=(0, 1), keepdims=True)
    return np.clip((img - means) * c + means, 0, 1)


def np_brightness(img: np.ndarray, severity: int) -> np.ndarray:
    c = (0.1, 0.2, 0.3, 0.4, 0.5)[severity - 1]
    hsv = rgb_to_hsv(img)
    hsv[..., 2] = np.clip(hsv[..., 2] + c, 0, 1)
    return np.clip(hsv_to_rgb(hsv), 0, 1)


def np_pixelate(img: np.ndarray, severity: int) -> np.ndarray:
    c = (0.6, 0.5, 0.4, 0.3, 0.25)[severity - 1]
    h, w = img.shape[:2]
    out = np.empty_like(img)
    for ch in range(3):  # float32 'F' images keep full precision through PIL's resampling
        pil = Image.fromarray(img[..., ch].astype(np.float32), mode="F")
        small = pil.resize((int(w * c), int(h * c)), Image.Resampling.BOX)
        out[..., ch] = np.asarray(small.resize((w, h), Image.Resampling.BOX))
    return np.clip(out, 0, 1)


def np_jpeg(img: np.ndarray, severity: int) -> np.ndarray:
    quality = (25, 18, 15, 10, 7)[severity - 1]
    buffer = io.BytesIO()
    Image.fromarray((img * 255).round().astype(np.uint8)).save(buffer, format="JPEG", quality=quality)
    return np.asarray(Image.open(buffer)).astype(np.float32) / 255


def np_defocus(img: np.ndarray, severity: int) -> np.ndarray:
    radius, alias = ((3, 0.1), (4, 0.5), (6, 0.5), (8, 0.5), (10, 0.5))[severity - 1]
    t = np.arange(-radius, radius + 1)
    disk = ((t[:, None] ** 2 + t[None, :] ** 2) <= radius**2).astype(np.float64)
    disk /= disk.sum()
    out = np.empty_like(img)
    truncate = max(1, math.ceil(3 * alias)) / alias
    for ch in range(3):
        blurred = ndimage.convolve(img[..., ch].astype(np.float64), disk, mode="nearest")
        out[..., ch] = ndimage.gaussian_filter(blurred, alias, mode="nearest", truncate=truncate)
    return np.clip(out, 0, 1)


REFERENCES: dict[str, tuple[str, Callable[[np.ndarray, int], np.ndarray]]] = {
    "contrast": ("numpy (ImageNet-C formula)", np_contrast),
    "overexposure": ("matplotlib HSV (ImageNet-C brightness)", np_brightness),
    "pixelate": ("PIL BOX resize (ImageNet-C)", np_pixelate),
    "jpeg": ("PIL JPEG encoder", np_jpeg),
    "defocus_blur": ("scipy.ndimage (ImageNet-C disk)", np_defocus),
}


def _best_time(fn: Callable[[], Any], repeats: int) -> float:
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def bench_numpy(images: int, size: int, repeats: int, severity: int = 3) -> None:
    g = torch.Generator().manual_seed(0)
    ys, xs = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    base = torch.stack((0.2 + 0.6 * xs, 0.5 + 0.3 * torch.sin(9 * ys), 1 - 0.7 * xs * ys))
    unit = (base.expand(images, 3, size, size) + 0.2 * torch.rand((images, 3, size, size), generator=g)).clamp(0, 1)
    x = from_unit(unit, "rgb")
    arrays = [u.permute(1, 2, 0).numpy().astype(np.float32) for u in unit]
    print(f"{images} RGB images of {size}x{size}, severity {severity}, best of {repeats}")
    print("| corruption | reference | numpy per-image (ms) | torch batched (ms) | speed-up | max diff | mean diff |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    from equiseg.modalities import to_unit

    for name, (label, ref) in REFERENCES.items():

        def ours(name: str = name) -> torch.Tensor:
            return apply_degradation(name, x, modality="rgb", severity=severity, generator=torch.Generator())

        def theirs(ref: Callable[[np.ndarray, int], np.ndarray] = ref) -> list[np.ndarray]:
            return [ref(a, severity) for a in arrays]

        t_ours = _best_time(ours, repeats)
        t_ref = _best_time(theirs, repeats)
        out = to_unit(ours(), "rgb").permute(0, 2, 3, 1).numpy()
        diff = np.abs(out - np.stack(theirs()))
        print(
            f"| {name} | {label} | {1000 * t_ref:.1f} | {1000 * t_ours:.1f} | {t_ref / t_ours:.1f}x | "
            f"{diff.max():.4f} | {diff.mean():.5f} |",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=("suite", "numpy", "all"), default="all")
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (numpy references are single-threaded)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.part in ("suite", "all"):
        bench_suite(args.images, args.size, args.batch_size)
    if args.part in ("numpy", "all"):
        bench_numpy(args.images, args.size, args.repeats)


if __name__ == "__main__":
    main()
