"""Image-processing primitives the degradations are built from: depth-wise filtering and the JPEG round trip.

All work on batched ``(B, C, H, W)`` tensors on their own device, so a whole batch is processed at once (GPU or CPU).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["depthwise_filter", "fast_fft_len", "gaussian_blur", "gaussian_kernel1d", "jpeg_compress"]


def gaussian_kernel1d(sigma: float, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Normalised 1-D Gaussian taps of radius ``ceil(3 sigma)``."""
    radius = max(1, math.ceil(3 * sigma))
    t = torch.arange(-radius, radius + 1, device=device, dtype=dtype)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    return k / k.sum()


def fast_fft_len(n: int) -> int:
    """Smallest 5-smooth length >= n (FFTs of 2^a 3^b 5^c points are fast; 268 = 4 x 67 is not)."""
    while True:
        m = n
        for p in (2, 3, 5):
            while m % p == 0:
                m //= p
        if m == 1:
            return n
        n += 1


def depthwise_filter(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Same odd-sized 2-D kernel ``(kh, kw)`` on every channel, replicate padding ("nearest" border).

    Kernels under 64 taps are applied as a sum of shifted, weighted copies (a single-channel ``conv2d`` is far
    slower on CPU); larger ones as an FFT product of the padded image and the kernel (same result up to float
    rounding, cost independent of the kernel size: defocus radius 10 has 441 taps).
    """
    b, c, h, w = x.shape
    kh, kw = kernel.shape
    padded = F.pad(x.reshape(b * c, h, w).unsqueeze(1), (kw // 2, kw // 2, kh // 2, kh // 2), mode="replicate")
    padded = padded.squeeze(1)
    if kh * kw < 64:
        out = torch.zeros((b * c, h, w), device=x.device, dtype=x.dtype)
        for i in range(kh):
            for j in range(kw):
                weight = float(kernel[i, j])
                if weight != 0.0:
                    out.add_(padded[:, i : i + h, j : j + w], alpha=weight)
        return out.view(b, c, h, w)
    ph, pw = padded.shape[-2:]
    size = (fast_fft_len(ph), fast_fft_len(pw))
    spectrum = torch.fft.rfft2(padded.float(), s=size) * torch.fft.rfft2(kernel.flip(0, 1).float(), s=size)
    full = torch.fft.irfft2(spectrum, s=size)  # linear convolution (size >= padded); valid part from (kh-1, kw-1)
    return full[:, kh - 1 : kh - 1 + h, kw - 1 : kw - 1 + w].reshape(b, c, h, w).to(x.dtype)


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of every channel (replicate border)."""
    k = gaussian_kernel1d(sigma, x.device, x.dtype)
    x = depthwise_filter(x, k.view(1, -1))
    return depthwise_filter(x, k.view(-1, 1))


_JPEG_LUMA = (
    (16, 11, 10, 16, 24, 40, 51, 61),
    (12, 12, 14, 19, 26, 58, 60, 55),
    (14, 13, 16, 24, 40, 57, 69, 56),
    (14, 17, 22, 29, 51, 87, 80, 62),
    (18, 22, 37, 56, 68, 109, 103, 77),
    (24, 35, 55, 64, 81, 104, 113, 92),
    (49, 64, 78, 87, 103, 121, 120, 101),
    (72, 92, 95, 98, 112, 100, 103, 99),
)
_JPEG_CHROMA = (
    (17, 18, 24, 47, 99, 99, 99, 99),
    (18, 21, 26, 66, 99, 99, 99, 99),
    (24, 26, 56, 99, 99, 99, 99, 99),
    (47, 66, 99, 99, 99, 99, 99, 99),
    *((99,) * 8 for _ in range(4)),
)


def _jpeg_table(base: tuple[tuple[int, ...], ...], quality: int, like: torch.Tensor) -> torch.Tensor:
    """IJG quality scaling of a base quantisation table (what libjpeg / PIL do)."""
    scale = 5000 / quality if quality < 50 else 200 - 2 * quality
    table = torch.tensor(base, device=like.device, dtype=like.dtype)
    return ((table * scale + 50) // 100).clamp(1, 255)


def _dct_matrix(like: torch.Tensor) -> torch.Tensor:
    n = torch.arange(8, device=like.device, dtype=like.dtype)
    basis = torch.cos((2 * n.view(1, -1) + 1) * n.view(-1, 1) * math.pi / 16)
    scale = torch.full((8, 1), math.sqrt(2 / 8), device=like.device, dtype=like.dtype)
    scale[0, 0] = math.sqrt(1 / 8)
    return basis * scale  # orthonormal DCT-II, rows = frequencies


def _quantise_blocks(plane: torch.Tensor, table: torch.Tensor, dct: torch.Tensor) -> torch.Tensor:
    """8x8 block DCT -> quantise -> dequantise -> inverse DCT of a ``(B, H, W)`` plane (H, W multiples of 8)."""
    b, h, w = plane.shape
    blocks = plane.view(b, h // 8, 8, w // 8, 8).permute(0, 1, 3, 2, 4)  # (B, h8, w8, 8, 8)
    coeffs = dct @ blocks @ dct.T
    coeffs = torch.round(coeffs / table) * table
    restored = dct.T @ coeffs @ dct
    return restored.permute(0, 1, 3, 2, 4).reshape(b, h, w)


def jpeg_compress(x: torch.Tensor, quality: int) -> torch.Tensor:
    """Baseline JPEG round trip of ``(B, 3|1, H, W)`` images in [0, 1] at IJG ``quality`` (1-100).

    YCbCr (JFIF) with 4:2:0 chroma subsampling for colour images, 8x8 DCT, IJG-scaled standard tables, rounding;
    entropy coding is lossless and skipped. Matches PIL's encoder up to its integer DCT and chroma upsampling.
    """
    _, c, h, w = x.shape
    pad_h, pad_w = (-h) % 16, (-w) % 16
    img = F.pad(x.clamp(0, 1) * 255.0, (0, pad_w, 0, pad_h), mode="replicate")
    dct = _dct_matrix(img)
    luma_table = _jpeg_table(_JPEG_LUMA, quality, img)
    if c == 1:
        y = _quantise_blocks(img[:, 0] - 128.0, luma_table, dct) + 128.0
        return (y.unsqueeze(1)[..., :h, :w] / 255.0).clamp(0, 1)
    if c != 3:
        raise ValueError(f"jpeg_compress needs 1 or 3 channels, got {c}")
    r, g, bl = img[:, 0], img[:, 1], img[:, 2]
    y = 0.299 * r + 0.587 * g + 0.114 * bl
    cb = -0.168736 * r - 0.331264 * g + 0.5 * bl + 128.0
    cr = 0.5 * r - 0.418688 * g - 0.081312 * bl + 128.0
    chroma_table = _jpeg_table(_JPEG_CHROMA, quality, img)
    y = _quantise_blocks(y - 128.0, luma_table, dct) + 128.0
    planes = []
    for plane in (cb, cr):
        small = F.avg_pool2d(plane.unsqueeze(1), 2).squeeze(1)
        small = _quantise_blocks(small - 128.0, chroma_table, dct) + 128.0
        up = F.interpolate(small.unsqueeze(1), scale_factor=2, mode="bilinear", align_corners=False).squeeze(1)
        planes.append(up)
    cb, cr = planes
    rgb = torch.stack(
        (y + 1.402 * (cr - 128.0), y - 0.344136 * (cb - 128.0) - 0.714136 * (cr - 128.0), y + 1.772 * (cb - 128.0)),
        dim=1,
    )
    return (rgb[..., :h, :w] / 255.0).clamp(0, 1)
