"""Two-sample tests on per-seed values: Welch's t, an exact permutation test and a seed bootstrap (docs/results.md).

The study compares arms trained with independent seeds, one value per run, so each comparison is a two-sample
problem with small ``n``. Three views, reported side by side:

* **Welch's t-test** (unequal variances; Welch 1947), two-sided, with Welch-Satterthwaite degrees of freedom. The
  Student-t tail comes from the regularised incomplete beta function (continued fraction, Numerical Recipes §6.4),
  so scipy is not needed; ``tests/experiments/test_significance.py`` checks it against scipy where installed.
* **Permutation test** of the difference of means, two-sided: every one of the ``C(n1 + n2, n1)`` relabellings when
  there are at most :data:`EXACT_LIMIT` (exact; with 3 runs against 3 the smallest p is 2/20 = 0.1), else a seeded
  Monte Carlo sample of relabellings with the (count + 1) / (draws + 1) estimate.
* **Bootstrap** percentile interval of the difference of means, resampling each arm's runs with replacement.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

__all__ = [
    "EXACT_LIMIT",
    "Comparison",
    "bootstrap_interval",
    "compare",
    "percentile_interval",
    "permutation_test",
    "student_t_sf",
    "welch_test",
]

#: Relabellings enumerated exactly up to this count (10 runs against 10: 184,756).
EXACT_LIMIT = 250_000
_MONTE_CARLO_DRAWS = 100_000


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz)."""
    tiny, eps = 1e-300, 3e-16
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 500):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < eps:
            break
    return h


def _betainc(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta ``I_x(a, b)``."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _betacf(a, b, x) / a
    return 1.0 - math.exp(log_front) * _betacf(b, a, 1.0 - x) / b


def student_t_sf(t: float, df: float) -> float:
    """Upper tail ``P(T > t)`` of Student's t with ``df`` (possibly fractional) degrees of freedom."""
    if math.isnan(t) or df <= 0:
        return math.nan
    tail = 0.5 * _betainc(df / 2.0, 0.5, df / (df + t * t))
    return tail if t >= 0 else 1.0 - tail


def welch_test(a: Sequence[float], b: Sequence[float]) -> tuple[float, float, float]:
    """Welch's two-sided t-test of ``mean(a) - mean(b)``: ``(t, df, p)``; NaN where a sample has < 2 values or
    both have zero variance."""
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if x.size < 2 or y.size < 2:
        return math.nan, math.nan, math.nan
    vx, vy = float(x.var(ddof=1)) / x.size, float(y.var(ddof=1)) / y.size
    if vx + vy == 0.0:
        return math.nan, math.nan, math.nan
    t = (float(x.mean()) - float(y.mean())) / math.sqrt(vx + vy)
    df = (vx + vy) ** 2 / (vx**2 / (x.size - 1) + vy**2 / (y.size - 1))
    return t, df, min(1.0, 2.0 * student_t_sf(abs(t), df))


def permutation_test(a: Sequence[float], b: Sequence[float], *, seed: int = 0) -> tuple[float, bool, int]:
    """Two-sided permutation test of the difference of means: ``(p, exact, relabellings)``.

    ``p`` is the share of relabellings whose ``|mean difference|`` reaches the observed one (with a 1e-12 tolerance
    for float ties); the observed labelling is one of them, so ``p >= 1 / relabellings``.
    """
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if x.size < 1 or y.size < 1:
        return math.nan, True, 0
    pooled = np.concatenate([x, y])
    n, k = pooled.size, x.size
    total = pooled.sum()
    observed = abs(float(x.mean()) - float(y.mean()))
    count = math.comb(n, k)
    if count <= EXACT_LIMIT:
        groups = np.fromiter(itertools.chain.from_iterable(itertools.combinations(range(n), k)), dtype=np.int64)
        sums = pooled[groups.reshape(count, k)].sum(axis=1)
        diffs = np.abs(sums / k - (total - sums) / (n - k))
        return float(np.count_nonzero(diffs >= observed - 1e-12)) / count, True, count
    rng = np.random.default_rng(seed)
    draws = np.argsort(rng.random((_MONTE_CARLO_DRAWS, n)), axis=1)[:, :k]
    sums = pooled[draws].sum(axis=1)
    diffs = np.abs(sums / k - (total - sums) / (n - k))
    hits = int(np.count_nonzero(diffs >= observed - 1e-12))
    return (hits + 1) / (_MONTE_CARLO_DRAWS + 1), False, _MONTE_CARLO_DRAWS


def percentile_interval(samples: np.ndarray, level: float) -> tuple[float, float]:
    """Percentile interval of a 1-D sample (NaN when every sample is NaN)."""
    finite = samples[np.isfinite(samples)]
    if finite.size == 0:
        return math.nan, math.nan
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(finite, [alpha, 1.0 - alpha])
    return float(low), float(high)


def bootstrap_interval(
    a: Sequence[float], b: Sequence[float], *, level: float = 0.95, replicates: int = 10_000, seed: int = 0
) -> tuple[float, float]:
    """Percentile interval of ``mean(a) - mean(b)``, resampling each arm's runs with replacement."""
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if x.size < 1 or y.size < 1:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    mx = x[rng.integers(0, x.size, size=(replicates, x.size))].mean(axis=1)
    my = y[rng.integers(0, y.size, size=(replicates, y.size))].mean(axis=1)
    return percentile_interval(mx - my, level)


@dataclass(frozen=True)
class Comparison:
    """``mean(a) - mean(b)`` with its bootstrap interval and both tests' p-values."""

    difference: float
    low: float
    high: float
    welch_t: float
    welch_df: float
    welch_p: float
    permutation_p: float
    permutation_exact: bool
    n_a: int
    n_b: int

    def to_dict(self) -> dict[str, float | int | bool]:
        return asdict(self)


def compare(
    a: Sequence[float], b: Sequence[float], *, level: float = 0.95, replicates: int = 10_000, seed: int = 0
) -> Comparison:
    """All three views of ``mean(a) - mean(b)`` (see the module docstring)."""
    t, df, p = welch_test(a, b)
    perm_p, exact, _ = permutation_test(a, b, seed=seed)
    low, high = bootstrap_interval(a, b, level=level, replicates=replicates, seed=seed)
    diff = float(np.mean(a) - np.mean(b)) if len(a) and len(b) else math.nan
    return Comparison(diff, low, high, t, df, p, perm_p, exact, len(a), len(b))
