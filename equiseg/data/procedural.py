"""Procedural primitives of the synthetic world: value noise, object shapes, sensor noise (docs/data.md).

Bit-exact on any CPU: only IEEE-exact array arithmetic (+ − × ÷ √, interpolation) runs on arrays; transcendental
functions are evaluated by ``math`` on scalars (see :mod:`equiseg.data.synthetic`).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import numpy as np

__all__ = ["derived_sensors", "lerp_coords", "object_mask", "pixel_grid", "sensor_noise", "to_uint8", "value_noise"]


def lerp_coords(size: int, cells: int) -> tuple[np.ndarray, np.ndarray]:
    """Lower grid index and fraction of ``size`` samples spread over ``cells`` grid intervals."""
    pos = np.linspace(0.0, cells, size, dtype=np.float64)
    lo = np.minimum(np.floor(pos).astype(np.int64), cells - 1)
    return lo, (pos - lo).astype(np.float32)


def value_noise(rng: np.random.Generator, size: int, cells: tuple[int, ...]) -> np.ndarray:
    """Smooth noise in about [-1, 1]: a sum of octaves of bilinearly upsampled random grids.

    Interpolation is elementwise (no BLAS matrix product), so the result is bit-identical on any CPU and thread count.
    """
    out = np.zeros((size, size), dtype=np.float32)
    amplitude, total = 1.0, 0.0
    for n in cells:
        grid = rng.uniform(-1.0, 1.0, size=(n + 1, n + 1)).astype(np.float32)
        lo, frac = lerp_coords(size, n)
        rows = grid[lo] * (1.0 - frac)[:, None] + grid[lo + 1] * frac[:, None]  # (size, n + 1)
        out += np.float32(amplitude) * (rows[:, lo] * (1.0 - frac)[None, :] + rows[:, lo + 1] * frac[None, :])
        total += amplitude
        amplitude *= 0.5
    return out / np.float32(total)


def object_mask(
    cls: int, rng: np.random.Generator, xx: np.ndarray, yy: np.ndarray, size: int
) -> tuple[np.ndarray, np.ndarray, tuple[slice, slice]]:
    """Mask and height (metres) of one object inside its bounding box, and the box slices."""
    cx, cy = rng.uniform(0.05, 0.95, size=2) * size
    angle = rng.uniform(0.0, np.pi)
    if cls == 1:  # lane marking: long thin stripe
        half = (rng.uniform(0.2, 0.45) * size, rng.uniform(0.012, 0.025) * size + 0.8)
    elif cls == 2:  # plinth: square-ish block
        half = (rng.uniform(0.06, 0.13) * size, rng.uniform(0.06, 0.13) * size)
    elif cls == 3:  # heated plate
        half = (rng.uniform(0.05, 0.11) * size, rng.uniform(0.05, 0.11) * size)
    elif cls == 4:  # vehicle
        half = (rng.uniform(0.09, 0.14) * size, rng.uniform(0.045, 0.065) * size)
    elif cls == 5:  # tree crown
        r = rng.uniform(0.07, 0.14) * size
        half = (r, r)
    elif cls == 6:  # puddle
        half = (rng.uniform(0.06, 0.14) * size, rng.uniform(0.04, 0.1) * size)
    else:  # pole
        r = rng.uniform(0.018, 0.03) * size + 1.0
        half = (r, r)
    reach = math.hypot(*half) + 2.0
    y0, y1 = max(0, int(cy - reach)), min(size, int(cy + reach) + 1)
    x0, x1 = max(0, int(cx - reach)), min(size, int(cx + reach) + 1)
    box = (slice(y0, y1), slice(x0, x1))
    dx, dy = xx[box] - cx, yy[box] - cy
    cos_a, sin_a = math.cos(angle), math.sin(angle)
    u = (dx * cos_a + dy * sin_a) / half[0]
    v = (-dx * sin_a + dy * cos_a) / half[1]
    if cls in (1, 2, 3):  # rectangles
        mask = (np.abs(u) <= 1.0) & (np.abs(v) <= 1.0)
        height = np.full(u.shape, rng.uniform(0.4, 1.2) if cls == 2 else 0.0)
    elif cls == 4:  # rounded box with a cambered roof
        super_r = u**4 + v**4
        mask = super_r <= 1.0
        height = 1.5 * np.sqrt(np.clip(1.0 - 0.35 * super_r, 0.0, None))
    elif cls == 6:  # irregular blob
        # Radius modulated by the 3rd and 5th angular harmonics, from cos/sin of the polar angle by the
        # multiple-angle polynomials (arithmetic only: see the module docstring).
        r = np.sqrt(u**2 + v**2) + 1e-6
        c, s = u / r, v / r
        cos3, sin3 = 4 * c**3 - 3 * c, 3 * s - 4 * s**3
        cos5, sin5 = 16 * c**5 - 20 * c**3 + 5 * c, 16 * s**5 - 20 * s**3 + 5 * s
        p3, p5 = rng.uniform(0, 2 * math.pi), rng.uniform(0, 2 * math.pi)
        wobble = (
            1.0 + 0.18 * (sin3 * math.cos(p3) + cos3 * math.sin(p3)) + 0.1 * (sin5 * math.cos(p5) + cos5 * math.sin(p5))
        )
        mask = u**2 + v**2 <= wobble**2
        height = np.zeros(u.shape)
    else:  # discs: tree dome, pole column
        r2 = u**2 + v**2
        mask = r2 <= 1.0
        top = rng.uniform(3.0, 6.0) if cls == 5 else rng.uniform(4.0, 8.0)
        height = top * np.sqrt(np.clip(1.0 - r2, 0.0, None)) if cls == 5 else np.full(u.shape, top)
    return mask, height, box


def sensor_noise(rng: np.random.Generator, shape: tuple[int, ...], std: float) -> np.ndarray:
    """Zero-mean uniform sensor noise with standard deviation ``std`` (5x cheaper to draw than Gaussian)."""
    noise = rng.random(size=shape, dtype=np.float32)
    noise -= 0.5
    noise *= std * math.sqrt(12.0)
    return noise


def to_uint8(values: np.ndarray) -> np.ndarray:
    """Round half up and saturate to uint8 (in place on the float temporary)."""
    values += 0.5
    np.clip(values, 0.0, 255.0, out=values)
    return values.astype(np.uint8)


@functools.lru_cache(maxsize=8)
def pixel_grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Row and column coordinates (float32, read-only), cached per image size."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    yy.flags.writeable = False
    xx.flags.writeable = False
    return yy, xx


def derived_sensors(
    rng: np.random.Generator,
    size: int,
    modalities: Sequence[str],
    depth_u16: np.ndarray,
    depth_m: np.ndarray,
    rgb: np.ndarray,
    height: np.ndarray,
    norm: np.ndarray,
) -> dict[str, np.ndarray]:
    """LiDAR, events and HHA from the rendered depth, RGB and geometry (drawn in this order: byte-stable)."""
    out: dict[str, np.ndarray] = {}
    if "lidar" in modalities:
        step = max(2, size // 32)
        rows = (np.arange(size) % step == 0)[:, None]
        keep = rows & (rng.random(size=(size, size), dtype=np.float32) < 0.7)
        out["lidar"] = np.where(keep, depth_u16, 0).astype(np.uint16)
    if "event" in modalities:
        # Events fire where log luminance changes: |grad log L| = |grad L| / L > 0.12 (compared squared).
        luminance = np.clip((rgb[:, :, 0] + rgb[:, :, 1] + rgb[:, :, 2]) / 3.0, 1e-3, None) + 0.05
        ey, ex = np.gradient(luminance)
        edges = ex**2 + ey**2 > (0.12 * luminance) ** 2
        noise = rng.random(size=(size, size), dtype=np.float32) < 0.003
        out["event"] = np.where(edges | noise, 255, 0).astype(np.uint8)
    if "hha" in modalities:
        disparity = np.clip(3.0 / depth_m, 0.0, 1.0)  # 3 m .. 20 m -> 1 .. 0.15
        above = np.clip(height / 8.0, 0.0, 1.0)
        angle = 1.0 - 1.0 / norm  # 1 - cos(surface tilt): 0 flat, -> 1 vertical
        hha = np.stack([disparity, above, angle], axis=2) + sensor_noise(rng, (size, size, 3), 0.004)
        out["hha"] = to_uint8(hha * 255.0)  # sensor noise: never a dead channel
    return out
