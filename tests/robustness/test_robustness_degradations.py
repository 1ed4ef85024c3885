"""Every registered degradation: shape, dtype, range, determinism, identity at 0, damage growing with severity."""

from __future__ import annotations

import io
import itertools

import numpy as np
import pytest
import torch
from PIL import Image

from equiseg.modalities import channels_of, from_unit, to_unit
from equiseg.robustness import DEGRADATIONS, apply_degradation, degradations_for, jpeg_compress

SPARSE = ("lidar", "event")
CASES = [
    (name, modality)
    for modality in ("rgb", "depth", "thermal", "lidar", "event", "hha")
    for name in degradations_for(modality)
]


def scene(modality: str, size: int = 64, batch: int = 2) -> torch.Tensor:
    """Structured normalised input: gradients, rectangles at other levels, texture; sparse points for lidar/event."""
    g = torch.Generator().manual_seed(123)
    ys, xs = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    base = 0.2 + 0.4 * xs + 0.1 * torch.sin(12 * ys)
    base = base.expand(batch, channels_of(modality), size, size).clone()
    base[:, :, 11:29, 13:41] = 0.85  # odd edges: no resolution factor aligns with every edge
    base[:, :, 37:57, 31:59] = 0.1
    base = base + 0.05 * torch.rand(base.shape, generator=g)
    if channels_of(modality) == 3:
        base[:, 1] = base[:, 1] * 0.8
        base[:, 2] = 1 - base[:, 2]
    unit = base.clamp(0.02, 0.98)
    if modality in SPARSE:
        unit = unit * (torch.rand((batch, 1, size, size), generator=g) < 0.15)
    return from_unit(unit, modality)


def degrade(name: str, x: torch.Tensor, modality: str, severity: int, seed: int = 0) -> torch.Tensor:
    return apply_degradation(
        name, x, modality=modality, severity=severity, generator=torch.Generator().manual_seed(seed)
    )


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = torch.mean((a - b) ** 2).item()
    return float("inf") if mse == 0 else 10 * np.log10(1.0 / mse)


@pytest.mark.parametrize(("name", "modality"), CASES, ids=[f"{m}-{n}" for n, m in CASES])
def test_degradation_contract(name: str, modality: str) -> None:
    x = scene(modality, size=96)  # ImageNet-C resolution factors alias on smaller images
    assert degrade(name, x, modality, 0) is x  # severity 0 is the identity
    clean_unit = to_unit(x, modality).clamp(0, 1)
    scores = []
    for severity in range(1, 6):
        out = degrade(name, x, modality, severity)
        assert out.shape == x.shape and out.dtype == x.dtype and torch.isfinite(out).all()
        assert torch.equal(out, degrade(name, x, modality, severity))  # deterministic under a fixed generator
        unit = to_unit(out, modality)
        if DEGRADATIONS[name].image_space:
            assert unit.min() >= -1e-5 and unit.max() <= 1 + 1e-5, "image-space values leave [0, 1]"
        else:
            assert torch.count_nonzero(out) == 0
        scores.append(psnr(unit, clean_unit))
    if name == "missing":
        return
    assert all(later <= earlier + 1e-6 for earlier, later in itertools.pairwise(scores)), scores
    assert scores[-1] < scores[0] - 0.5, f"severity 5 should damage clearly more than severity 1: {scores}"


def test_random_degradations_depend_on_the_seed() -> None:
    x = scene("rgb")
    assert not torch.equal(
        degrade("gaussian_noise", x, "rgb", 3, seed=0), degrade("gaussian_noise", x, "rgb", 3, seed=1)
    )


def test_float16_input_keeps_its_dtype() -> None:
    x = scene("depth").half()
    assert degrade("holes", x, "depth", 2).dtype == torch.float16


def test_errors_say_what_is_valid() -> None:
    x = scene("rgb")
    with pytest.raises(KeyError, match="gaussian_noise"):
        degrade("snowstorm", x, "rgb", 1)
    with pytest.raises(ValueError, match="degradations for 'depth'"):
        degrade("fog", scene("depth"), "depth", 1)
    with pytest.raises(ValueError, match="0-5"):
        degrade("fog", x, "rgb", 6)


def test_jpeg_matches_pillow_encoder() -> None:
    """Our batched DCT quantisation is the JPEG corruption: close to PIL's real encode/decode round trip."""
    unit = to_unit(scene("rgb", size=64, batch=1), "rgb").clamp(0, 1)
    ours = jpeg_compress(unit, quality=25)[0]
    array = (unit[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="JPEG", quality=25)
    pil = torch.from_numpy(np.asarray(Image.open(buffer)).astype(np.float32) / 255).permute(2, 0, 1)
    ours_vs_pil = (ours - pil).abs().mean().item()
    damage = (pil - unit[0]).abs().mean().item()
    assert ours_vs_pil < 0.35 * damage, (ours_vs_pil, damage)


def test_holes_on_a_batch_larger_than_quantile_limit() -> None:
    """17 depth maps of 1024^2 (over 2^24 values): the hole share is still exact."""
    x = torch.full((17, 1, 1024, 1024), 0.5)
    out = degrade("holes", x, "depth", 3)
    hole = float(from_unit(torch.zeros(1, 1, 1), "depth"))  # no return: 0 in sensor space
    assert (out == hole).float().mean().item() == pytest.approx(0.20, abs=1e-3)
