"""The gate's paired bootstrap: per-image differences matched by sample id, resampled by image (docs/gate.md)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from equiseg.promotion.verdict import SliceLike

__all__ = ["align_per_image", "paired_bootstrap_lower_bounds"]


def align_per_image(candidate: SliceLike, champion: SliceLike, slice_name: str) -> tuple[np.ndarray, np.ndarray]:
    """Per-image mIoU of both results in the candidate's sample order, matched by sample id.

    Raises:
        ValueError: the two were not scored on the same images (the gate must re-score the champion on exactly
            the candidate's data), ids repeat, lengths disagree or a value is not finite.
    """
    arrays = []
    for who, s in (("candidate", candidate), ("champion", champion)):
        ids, values = list(s.sample_ids), np.asarray(s.per_image_miou, dtype=np.float64)
        if len(ids) != len(values):
            raise ValueError(
                f"slice {slice_name!r} of the {who}: {len(ids)} sample ids but {len(values)} per-image values"
            )
        if len(set(ids)) != len(ids):
            raise ValueError(f"slice {slice_name!r} of the {who}: sample ids repeat; each image must appear once")
        if not np.all(np.isfinite(values)):
            raise ValueError(f"slice {slice_name!r} of the {who}: per-image mIoU holds NaN or inf")
        arrays.append(dict(zip(ids, values.tolist(), strict=True)))
    cand, champ = arrays
    if set(cand) != set(champ):
        only_c, only_b = sorted(set(cand) - set(champ)), sorted(set(champ) - set(cand))
        raise ValueError(
            f"slice {slice_name!r}: candidate and champion were scored on different images "
            f"(only candidate: {only_c[:5]}, only champion: {only_b[:5]}); re-score the champion on the "
            "candidate's evaluation data"
        )
    order = list(candidate.sample_ids)
    return np.array([cand[i] for i in order]), np.array([champ[i] for i in order])


def paired_bootstrap_lower_bounds(
    differences: Mapping[str, Mapping[str, float]], *, samples: int, ci_level: float, seed: int
) -> dict[str, float]:
    """One-sided lower confidence bounds of the mean paired difference, one per slice.

    Images are the resampling unit: B resamples of the union of image ids are drawn (with replacement) from
    ``numpy.random.Generator(PCG64(seed))``, and every slice is averaged over the SAME resample, weighting each of
    its images by how often it was drawn. A slice that covers only some images (e.g. a condition subset) uses its
    own images of the resample; a resample that draws none of them is skipped for that slice. The bound is the
    ``(1 - ci_level) / 2`` quantile of the resampled means (the lower end of the two-sided ``ci_level`` percentile
    interval), so the result is exact and repeatable.

    Args:
        differences: slice name -> {sample id: candidate - champion per-image mIoU}.
        samples: bootstrap resamples B.
        ci_level: two-sided confidence level, e.g. 0.95.
        seed: resampling seed.
    """
    if samples < 1:
        raise ValueError(f"bootstrap samples must be >= 1, got {samples}")
    if not 0.0 < ci_level < 1.0:
        raise ValueError(f"ci_level must be in (0, 1), got {ci_level}")
    universe: dict[str, int] = {}
    for per_image in differences.values():
        for sample_id in per_image:
            universe.setdefault(sample_id, len(universe))
    if not differences:
        return {}
    n = len(universe)
    if n == 0:
        raise ValueError("no images to compare: the evaluation data is empty")
    rng = np.random.Generator(np.random.PCG64(seed))
    idx = rng.integers(0, n, size=(samples, n))
    counts = np.zeros((samples, n), dtype=np.float64)
    np.add.at(counts, (np.arange(samples)[:, None], idx), 1.0)
    q = (1.0 - ci_level) / 2.0
    bounds = {}
    for name, per_image in differences.items():
        if not per_image:
            raise ValueError(f"slice {name!r} has no images")
        pos = np.array([universe[i] for i in per_image])
        values = np.array(list(per_image.values()), dtype=np.float64)
        weight = counts[:, pos]
        total = weight.sum(axis=1)
        keep = total > 0
        means = (weight[keep] @ values) / total[keep]
        bounds[name] = float(np.quantile(means, q))
    return bounds
