"""A procedural multimodal world whose modalities complement each other (docs/data.md).

A top-down camera looks at textured ground with objects on it. One height field drives every sensor, so geometry
is consistent and occlusion-correct (the highest surface wins, as seen from above):

* RGB: albedo × texture × Lambert shading from the height-field normals, sensor noise; night darkens it, fog
  blends it towards grey with depth.
* depth: camera distance to the surface (a tilted ground plane minus object height), 16-bit PNG in millimetres.
* thermal: per-class temperature + low-frequency variation + noise, 8-bit like an AGC'd FLIR frame.
* lidar (optional): sparse depth on scan lines; event (optional): edges of log luminance plus noise events;
  hha (optional): disparity, height above ground, angle to vertical.

The classes are designed so no modality suffices: ``lane_marking`` is flat paint at ground temperature (RGB only),
``plinth`` is ground-coloured and ambient but raised (depth only), ``heated_plate`` is flush and ground-coloured
but warm (thermal only); the rest show in several. Output is byte-identical per seed: every sample draws from
``numpy.random.default_rng([seed, index])`` and PNGs are written with fixed settings. The renderer uses only
IEEE-exact array arithmetic (+ − × ÷ √, interpolation); transcendental functions are evaluated by ``math`` on
scalars or tabulated, never by NumPy's CPU-dispatched SIMD ufuncs (``np.exp``, ``np.sin`` ... may differ in the last
bit between AVX2 and AVX-512 machines, which would change PNG bytes and the DVC hash).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from equiseg.data.dominance import attenuate, class_gains
from equiseg.data.procedural import derived_sensors, object_mask, pixel_grid, sensor_noise, to_uint8, value_noise

__all__ = [
    "CLASS_NAMES",
    "CLASS_TABLE",
    "DEPTH_MAX_MM",
    "SYNTHETIC_CLASS_SET",
    "SYNTHETIC_MODALITIES",
    "SyntheticClass",
    "render_sample",
]

SYNTHETIC_CLASS_SET = "equiseg-synthetic-v1"
SYNTHETIC_MODALITIES: tuple[str, ...] = ("rgb", "depth", "thermal", "lidar", "event", "hha")
DEPTH_MAX_MM = 20000  # depth and lidar: raw millimetres × 1/20000 = [0, 1]
_THERMAL_MIN_C, _THERMAL_MAX_C = -20.0, 60.0  # 8-bit thermal spans this temperature range
_SCENE_METRES = 24.0  # side of the square ground patch seen by the camera
_CAMERA_HEIGHT_M = 12.0


@dataclass(frozen=True)
class SyntheticClass:
    """One class of the synthetic world and the modalities that reveal it."""

    id: int
    name: str
    reveals: tuple[str, ...]
    description: str
    colour: tuple[int, int, int]  # visualisation palette


CLASS_TABLE: tuple[SyntheticClass, ...] = (
    SyntheticClass(0, "ground", ("rgb", "depth", "thermal"), "textured soil, flat, ambient temperature", (0, 0, 0)),
    SyntheticClass(
        1, "lane_marking", ("rgb",), "flat white or yellow paint, ground height and temperature", (255, 255, 255)
    ),
    SyntheticClass(2, "plinth", ("depth",), "raised block with the ground's colour and temperature", (128, 64, 0)),
    SyntheticClass(
        3, "heated_plate", ("thermal",), "flush plate with the ground's colour, 12-25 °C warmer", (255, 0, 0)
    ),
    SyntheticClass(
        4, "vehicle", ("rgb", "depth", "thermal"), "saturated paint, 1.5 m rounded body, warm engine", (0, 0, 255)
    ),
    SyntheticClass(
        5, "tree", ("rgb", "depth", "thermal"), "green dome crown 3-6 m tall, cooler than the air", (0, 160, 0)
    ),
    SyntheticClass(6, "puddle", ("rgb", "thermal"), "flat dark water, colder than the ground", (0, 200, 255)),
    SyntheticClass(
        7, "pole", ("rgb", "depth"), "thin grey metal column 4-8 m tall, ambient temperature", (200, 200, 0)
    ),
)
CLASS_NAMES: tuple[str, ...] = tuple(c.name for c in CLASS_TABLE)

# Relative frequency of each object class (index = class id; ground is the background, never placed).
_CLASS_WEIGHTS = np.array([0.0, 0.16, 0.16, 0.16, 0.14, 0.14, 0.10, 0.14])


def render_sample(
    rng: np.random.Generator,
    size: int,
    modalities: Sequence[str],
    *,
    night: bool = False,
    fog: bool = False,
    num_classes: int = len(CLASS_TABLE),
    dominant: str = "",
    dominance: float = 0.0,
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Render one scene: ``({modality: uint8/uint16 (H, W[, C])}, label uint8 (H, W))``.

    ``dominant`` / ``dominance``: the dominance dial (:func:`equiseg.data.dominance.class_gains`); the defaults
    render the balanced world byte for byte as before the dial existed.
    """
    gains = class_gains([c.reveals for c in CLASS_TABLE], dominant, dominance)
    dialled = bool(dominant) and dominance > 0.0
    # per-pixel share of the object's height seen by RGB shading and by the range sensors (1 without the dial)
    rgb_height_gain = np.ones((size, size), dtype=np.float32) if dialled else None
    depth_height_gain = np.ones((size, size), dtype=np.float32) if dialled else None
    yy, xx = pixel_grid(size)
    # Ground: one albedo + texture shared by ground, plinths and heated plates (so RGB cannot tell them apart).
    ground_rgb = (np.array([0.46, 0.42, 0.36]) + rng.uniform(-0.06, 0.06, size=3)).astype(np.float32)
    texture = 1.0 + 0.14 * value_noise(rng, size, (max(4, size // 8), max(8, size // 4)))
    fine = 1.0 + sensor_noise(rng, (size, size), 0.035)  # per-pixel albedo grain of paint, leaves, metal
    ambient_c = rng.uniform(8.0, 26.0) - (7.0 if night else 0.0)

    height = np.zeros((size, size), dtype=np.float32)
    order = np.full((size, size), -1.0, dtype=np.float32)  # z-buffer key: height plus a small per-object layer term
    label = np.zeros((size, size), dtype=np.uint8)
    albedo = ground_rgb[None, None, :] * texture[:, :, None]
    temperature = ambient_c + 1.2 * value_noise(rng, size, (3,))
    # the ground as it would look without objects: what the dial blends a class's signature back towards
    ground_albedo = albedo.copy() if dialled else albedo
    ground_temp = temperature.copy() if dialled else temperature

    weights = _CLASS_WEIGHTS[:num_classes] / sum(_CLASS_WEIGHTS[:num_classes].tolist())
    n_objects = int(rng.integers(4, 10))
    classes = rng.choice(num_classes, size=n_objects, p=weights)
    for layer, cls in enumerate(classes.tolist()):
        mask, obj_height, box = object_mask(cls, rng, xx, yy, size)
        key = obj_height + 1e-3 * (layer + 1)
        visible = mask & (key > order[box])
        if not visible.any():
            continue
        order[box][visible] = key[visible]
        height[box][visible] = obj_height[visible]
        label[box][visible] = cls
        region_albedo = albedo[box]
        region_temp = temperature[box]
        if cls == 1:
            paint = np.array([0.92, 0.92, 0.9]) if rng.random() < 0.6 else np.array([0.93, 0.8, 0.2])
            region_albedo[visible] = paint * fine[box][visible][:, None]
        elif cls == 4:
            hue = rng.uniform(0.0, 1.0)
            paint = np.array([0.5 + 0.45 * math.cos(2 * math.pi * (hue + k / 3)) for k in range(3)])
            region_albedo[visible] = paint * fine[box][visible][:, None]
            region_temp[visible] = ambient_c + rng.uniform(10.0, 20.0)
        elif cls == 5:
            leaf = np.array([0.16, 0.42, 0.12]) + rng.uniform(-0.04, 0.04, size=3)
            region_albedo[visible] = leaf * texture[box][visible][:, None] * fine[box][visible][:, None]
            region_temp[visible] = ambient_c - rng.uniform(4.0, 7.0)
        elif cls == 6:
            region_albedo[visible] = np.array([0.12, 0.16, 0.24]) * fine[box][visible][:, None]
            region_temp[visible] = ambient_c - rng.uniform(4.0, 8.0)
        elif cls == 7:
            region_albedo[visible] = np.array([0.66, 0.67, 0.72]) * fine[box][visible][:, None]
        elif cls == 3:
            region_temp[visible] = ambient_c + rng.uniform(12.0, 25.0)
        # cls 2 (plinth) keeps the ground's albedo and temperature: only its height differs.
        if dialled:
            attenuate(cls, gains, box, visible, region_albedo, region_temp, ground_albedo, ground_temp)
            assert rgb_height_gain is not None and depth_height_gain is not None
            rgb_height_gain[box][visible] = gains["rgb"][cls]
            depth_height_gain[box][visible] = gains["depth"][cls]

    # Geometry shared by all sensors: depth along a tilted view, normals from the height field.
    metres_per_px = _SCENE_METRES / size
    tilt = 1.0 + 0.3 * (1.0 - yy / max(size - 1, 1))
    depth_m = (_CAMERA_HEIGHT_M - (height if depth_height_gain is None else height * depth_height_gain)) * tilt
    gy, gx = np.gradient(height if rgb_height_gain is None else height * rgb_height_gain, metres_per_px)
    norm = np.sqrt(gx**2 + gy**2 + 1.0)
    azimuth, elevation = rng.uniform(0, 2 * np.pi), rng.uniform(0.6, 1.2)
    # Python floats (not numpy float64 scalars) keep the arrays float32 under NumPy 2 promotion rules.
    lx = math.cos(azimuth) * math.cos(elevation)
    ly = math.sin(azimuth) * math.cos(elevation)
    lz = math.sin(elevation)
    lambert = np.clip((-gx * lx - gy * ly + lz) / norm, 0.0, None)
    shade = 0.35 + (0.75 / lz) * lambert  # flat ground gets 1.1 whatever the sun elevation

    out: dict[str, np.ndarray] = {}
    rgb = albedo * shade[:, :, None]
    if night:
        rgb = rgb * rng.uniform(0.1, 0.22) + sensor_noise(rng, rgb.shape, 0.02)
    else:
        rgb = rgb + sensor_noise(rng, rgb.shape, 0.012)
    if fog:
        beta = rng.uniform(0.08, 0.16)
        grid = np.arange(0.0, 25.01, 0.01)
        table = np.array([math.exp(-beta * d) for d in grid.tolist()])  # libm, not a SIMD ufunc
        transmission = np.interp(depth_m, grid, table).astype(np.float32)[:, :, None]
        rgb = rgb * transmission + 0.72 * (1.0 - transmission)
        temperature = temperature * 0.85 + 0.15 * ambient_c
    if "rgb" in modalities:
        out["rgb"] = to_uint8(rgb * 255.0)
    depth_mm = depth_m * 1000.0 + sensor_noise(rng, depth_m.shape, 8.0)
    depth_u16 = np.clip(np.round(depth_mm), 1, DEPTH_MAX_MM).astype(np.uint16)
    if "depth" in modalities:
        out["depth"] = depth_u16
    if "thermal" in modalities:
        thermal = temperature + sensor_noise(rng, temperature.shape, 0.5)
        scaled = (thermal - _THERMAL_MIN_C) / (_THERMAL_MAX_C - _THERMAL_MIN_C) * 255.0
        out["thermal"] = to_uint8(scaled)
    out.update(derived_sensors(rng, size, modalities, depth_u16, depth_m, rgb, height, norm))
    return out, label
