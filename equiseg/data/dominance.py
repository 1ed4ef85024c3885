"""The synthetic world's dominance dial: which sensor alone carries which classes, and how far (docs/data.md).

:func:`class_gains` turns ``(dominant, dominance)`` into the share of each class's signature every sensor keeps;
:func:`attenuate` applies it to one rendered object's colour and temperature (its height is scaled by the renderer).
Arithmetic only (+ - x), so the world stays byte-identical on any CPU (:mod:`equiseg.data.synthetic`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["DOMINANT_MODALITIES", "attenuate", "class_gains"]

#: Modalities the dominance dial can favour: the three that carry class signal of their own.
DOMINANT_MODALITIES: tuple[str, ...] = ("rgb", "depth", "thermal")


def class_gains(reveals: Sequence[tuple[str, ...]], dominant: str, dominance: float) -> dict[str, np.ndarray]:
    """Per sensor, the share of each class's signature it still shows (index = class id; ``reveals[c]``: the sensors
    that show class ``c`` in the balanced world).

    With ``dominance`` d towards ``dominant`` D, every object class D reveals keeps its full signature in D and only
    ``1 - d`` of it in the other sensors (colour blended towards the ground's, temperature offset and height scaled).
    So d = 0 is the balanced world, and at d = 1 D alone carries every class it reveals (for RGB: lane, vehicle, tree,
    puddle, pole; depth: plinth, vehicle, tree, pole; thermal: heated plate, vehicle, tree, puddle), while the others
    keep only the classes D cannot see.
    """
    gains = {m: np.ones(len(reveals)) for m in DOMINANT_MODALITIES}
    if not dominant or dominance <= 0.0:
        return gains
    for cls, sensors in enumerate(reveals):
        if cls > 0 and dominant in sensors:  # class 0 is the background
            for modality in DOMINANT_MODALITIES:
                if modality != dominant:
                    gains[modality][cls] = 1.0 - dominance
    return gains


def attenuate(
    cls: int,
    gains: dict[str, np.ndarray],
    box: tuple[slice, slice],
    visible: np.ndarray,
    region_albedo: np.ndarray,
    region_temp: np.ndarray,
    ground_albedo: np.ndarray,
    ground_temp: np.ndarray,
) -> None:
    """Blend one object's colour and temperature back towards the ground's by the dial's gains (in place)."""
    g_rgb, g_thermal = float(gains["rgb"][cls]), float(gains["thermal"][cls])
    if g_rgb < 1.0:
        region_albedo[visible] = region_albedo[visible] * g_rgb + ground_albedo[box][visible] * (1.0 - g_rgb)
    if g_thermal < 1.0:
        region_temp[visible] = region_temp[visible] * g_thermal + ground_temp[box][visible] * (1.0 - g_thermal)
