"""How well a judge agrees with human labels: the statistics behind ``assay rubric calibrate``.

Pointwise labels (a human score per output) against the judge's scores:

* ``spearman``: Spearman rank correlation (Pearson correlation of average ranks); scale-free.
* ``kendall``: Kendall's tau-b (ties in either variable corrected); scale-free.
* ``exact``: share of labels where the judge's score equals the human's, after both are on
  the rubric's integer scale (see ``to_scale``).
* ``within_1``: share where they differ by at most one point on that scale.
* ``kappa``: Cohen's weighted kappa with **quadratic** weights over the rubric's integer
  categories: 1 is perfect agreement, 0 what chance would give, negative worse than chance.

Pairwise labels (a human preference between outputs A and B) against a judge asked in both
orders, each order's verdict already translated back to the original outputs:

* ``pairwise_accuracy``: share of labels where the judge's *combined* verdict equals the
  human's. Combined: when both orders prefer the same output, that output; when they
  disagree (the judge followed the position, not the content), or either says tie, a tie.
  A tie matches only a human tie, so an inconsistent judge never earns credit.
* ``order_accuracy``: share of single-order verdicts that equal the human's, over both orders
  (the "mean over both orders" accuracy papers report).
* ``consistency``: share of labels where the two orders give the same verdict.

Every metric carries a 95 % percentile bootstrap interval over labels (seeded, so the same
numbers give the same interval). Pure functions over plain numbers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel

DEFAULT_RESAMPLES = 2000
LEVEL = 0.95
POINTWISE_METRICS = ("spearman", "kendall", "exact", "within_1", "kappa")
PAIRWISE_METRICS = ("pairwise_accuracy", "order_accuracy", "consistency")
METRICS = POINTWISE_METRICS + PAIRWISE_METRICS
PREFERENCES = ("a", "b", "tie")


class Metric(BaseModel):
    """One agreement statistic with its bootstrap interval (None when undefined, e.g. a
    correlation where one side never varies)."""

    value: float | None
    low: float | None
    high: float | None
    n: int


# --- pointwise statistics ----------------------------------------------------------------------


def average_ranks(values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Ranks 1..n, tied values sharing the mean of their ranks."""
    x = np.asarray(values, dtype=float)
    order = np.argsort(x, kind="mergesort")
    sorted_x = x[order]
    ranks = np.empty(len(x), dtype=float)
    start = 0
    for end in range(1, len(x) + 1):
        if end == len(x) or sorted_x[end] != sorted_x[start]:
            ranks[order[start:end]] = (start + end + 1) / 2  # mean of ranks start+1..end
            start = end
    return ranks


def _pearson(x: np.ndarray, y: np.ndarray) -> float | None:
    dx, dy = x - x.mean(), y - y.mean()
    denominator = math.sqrt(float(dx @ dx) * float(dy @ dy))
    if denominator == 0:
        return None
    return float(dx @ dy) / denominator


def spearman(human: Sequence[float], judge: Sequence[float]) -> float | None:
    """Spearman's rho: the Pearson correlation of the average ranks."""
    if len(human) < 2:
        return None
    return _pearson(average_ranks(human), average_ranks(judge))


def kendall_tau_b(human: Sequence[float], judge: Sequence[float]) -> float | None:
    """Kendall's tau-b: (concordant - discordant) / sqrt((n0 - ties_x) (n0 - ties_y))."""
    x, y = np.asarray(human, dtype=float), np.asarray(judge, dtype=float)
    n = len(x)
    if n < 2:
        return None
    upper = np.triu_indices(n, k=1)
    sx = np.sign(x[:, None] - x[None, :])[upper]
    sy = np.sign(y[:, None] - y[None, :])[upper]
    pairs_x = float(np.count_nonzero(sx))  # pairs not tied in x
    pairs_y = float(np.count_nonzero(sy))
    if pairs_x == 0 or pairs_y == 0:
        return None
    return float(np.sum(sx * sy)) / math.sqrt(pairs_x * pairs_y)


def exact_agreement(human: Sequence[int], judge: Sequence[int]) -> float | None:
    if not human:
        return None
    return float(np.mean(np.asarray(human) == np.asarray(judge)))


def within_one(human: Sequence[int], judge: Sequence[int]) -> float | None:
    if not human:
        return None
    return float(np.mean(np.abs(np.asarray(human) - np.asarray(judge)) <= 1))


def weighted_kappa(human: Sequence[int], judge: Sequence[int], low: int, high: int) -> float | None:
    """Cohen's kappa with quadratic weights over the integer categories ``low..high``.

    ``1 - sum(w * observed) / sum(w * expected)`` with ``w_ij = (i - j)^2 / (k - 1)^2`` and
    ``expected`` the outer product of the two raters' marginal shares. None when the expected
    disagreement is zero (both raters used one and the same category throughout).
    """
    k = high - low + 1
    if not human or k < 2:
        return None
    h = np.asarray(human, dtype=int) - low
    j = np.asarray(judge, dtype=int) - low
    if h.min() < 0 or j.min() < 0 or h.max() >= k or j.max() >= k:
        raise ValueError(f"kappa needs integer scores within {low}-{high}")
    observed = np.zeros((k, k))
    np.add.at(observed, (h, j), 1.0)
    observed /= len(h)
    expected = np.outer(observed.sum(axis=1), observed.sum(axis=0))
    i = np.arange(k)
    weights = (i[:, None] - i[None, :]) ** 2 / (k - 1) ** 2
    disagreement = float(np.sum(weights * expected))
    if disagreement == 0:
        return None
    return 1.0 - float(np.sum(weights * observed)) / disagreement


def to_scale(value: float, source: tuple[float, float], target: tuple[int, int]) -> int:
    """Map ``value`` linearly from the ``source`` range onto the ``target`` integer range and
    round to the nearest integer (halves away from zero), clamped to the target."""
    s_low, s_high = source
    t_low, t_high = target
    mapped = t_low + (value - s_low) * (t_high - t_low) / (s_high - s_low)
    rounded = math.floor(mapped + 0.5)
    return min(max(rounded, t_low), t_high)


def pointwise_agreement(
    human: Sequence[float],
    judge: Sequence[float],
    *,
    human_range: tuple[float, float],
    scale: tuple[int, int],
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> dict[str, Metric]:
    """Every pointwise metric with its interval. ``human`` and ``judge`` are paired by index
    (labels the judge failed on are already left out). Correlations use the raw numbers;
    exact, within-1 and kappa use both mapped onto ``scale`` (the rubric's range), humans
    from ``human_range``, the judge (already on the scale) rounded to the nearest integer."""
    if len(human) != len(judge):
        raise ValueError("human and judge scores must pair up")
    h = np.asarray(human, dtype=float)
    j = np.asarray(judge, dtype=float)
    hi = np.asarray([to_scale(v, human_range, scale) for v in h], dtype=int)
    ji = np.asarray([to_scale(v, (scale[0], scale[1]), scale) for v in j], dtype=int)
    low, high = scale
    n = len(h)
    values = {
        "spearman": spearman(h, j),
        "kendall": kendall_tau_b(h, j),
        "exact": exact_agreement(hi.tolist(), ji.tolist()),
        "within_1": within_one(hi.tolist(), ji.tolist()),
        "kappa": weighted_kappa(hi.tolist(), ji.tolist(), low, high),
    }
    if n < 2:
        return {name: Metric(value=v, low=None, high=None, n=n) for name, v in values.items()}
    draws = np.random.default_rng(seed).integers(0, n, size=(resamples, n))
    samples = {
        "spearman": _spearman_resampled(h, j, draws),
        "kendall": _kendall_resampled(h, j, draws),
        "exact": np.mean(hi[draws] == ji[draws], axis=1),
        "within_1": np.mean(np.abs(hi[draws] - ji[draws]) <= 1, axis=1),
        "kappa": np.array(
            [_nan(weighted_kappa(hi[d].tolist(), ji[d].tolist(), low, high)) for d in draws]
        ),
    }
    return {name: _metric(values[name], samples[name], n) for name in values}


def _nan(value: float | None) -> float:
    return math.nan if value is None else value


def _spearman_resampled(h: np.ndarray, j: np.ndarray, draws: np.ndarray) -> np.ndarray:
    """Spearman's rho of every resample at once (rows of ``draws``), NaN where undefined."""
    from scipy.stats import rankdata

    return _rowwise_pearson(rankdata(h[draws], axis=1), rankdata(j[draws], axis=1))


def _rowwise_pearson(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    dx = x - x.mean(axis=1, keepdims=True)
    dy = y - y.mean(axis=1, keepdims=True)
    denominator = np.sqrt(np.sum(dx * dx, axis=1) * np.sum(dy * dy, axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, np.sum(dx * dy, axis=1) / denominator, np.nan)


_KENDALL_BUDGET = 4e9
"""Multiply-adds the Kendall interval may spend (resamples x n^2): with many labels it uses
fewer resamples (never under 200) rather than minutes."""


def _kendall_resampled(h: np.ndarray, j: np.ndarray, draws: np.ndarray) -> np.ndarray:
    """Tau-b of every resample without building it pair by pair: with ``w`` the times each
    label was drawn, concordant minus discordant pairs is ``w' P w / 2`` where
    ``P = sign(dx) sign(dy)``, and the pairs untied in x are ``w' |sign(dx)| w / 2``."""
    n = len(h)
    count = min(len(draws), max(200, int(_KENDALL_BUDGET // (n * n))))
    draws = draws[:count]
    weights = np.zeros((count, n))
    np.add.at(weights, (np.repeat(np.arange(count), n), draws.ravel()), 1.0)
    concordance = np.zeros(count)
    untied_x = np.zeros(count)
    untied_y = np.zeros(count)
    for start in range(0, n, 512):
        cols = slice(start, min(start + 512, n))
        sx = np.sign(h[:, None] - h[None, cols])
        sy = np.sign(j[:, None] - j[None, cols])
        block = weights[:, cols]
        concordance += np.sum((weights @ (sx * sy)) * block, axis=1)
        untied_x += np.sum((weights @ np.abs(sx)) * block, axis=1)
        untied_y += np.sum((weights @ np.abs(sy)) * block, axis=1)
    denominator = np.sqrt(untied_x * untied_y)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, concordance / denominator, np.nan)


# --- pairwise statistics -----------------------------------------------------------------------


def combine_orders(first: str, second: str) -> str:
    """One verdict from both orders (each on the original outputs): the output both prefer,
    otherwise a tie."""
    return first if first == second else "tie"


def pairwise_agreement(
    human: Sequence[str],
    first: Sequence[str],
    second: Sequence[str],
    *,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> dict[str, Metric]:
    """Accuracy of the combined verdict, accuracy per order and position-swap consistency.

    ``first`` is the judge's verdict with A shown first, ``second`` with B shown first, both
    already expressed on the original outputs (``"a"``, ``"b"`` or ``"tie"``).
    """
    if not len(human) == len(first) == len(second):
        raise ValueError("human and judge verdicts must pair up")
    for value in (*human, *first, *second):
        if value not in PREFERENCES:
            raise ValueError(f"a preference is 'a', 'b' or 'tie', not {value!r}")
    h = np.asarray(human)
    f = np.asarray(first)
    s = np.asarray(second)
    combined = np.where(f == s, f, "tie")
    n = len(h)
    per_label = {
        "pairwise_accuracy": (combined == h).astype(float),
        "order_accuracy": ((f == h).astype(float) + (s == h).astype(float)) / 2,
        "consistency": (f == s).astype(float),
    }
    if n == 0:
        return {name: Metric(value=None, low=None, high=None, n=0) for name in per_label}
    draws = np.random.default_rng(seed).integers(0, n, size=(resamples, n)) if n > 1 else None
    return {
        name: _metric(
            float(np.mean(hits)), np.mean(hits[draws], axis=1) if draws is not None else None, n
        )
        for name, hits in per_label.items()
    }


# --- intervals ---------------------------------------------------------------------------------


def _metric(value: float | None, samples: np.ndarray | None, n: int) -> Metric:
    """A statistic and the percentile interval of its bootstrap ``samples`` (undefined
    resamples, NaN, are left out)."""
    low = high = None
    if value is not None and samples is not None:
        finite = samples[np.isfinite(samples)]
        if finite.size:
            tail = (1 - LEVEL) / 2 * 100
            low, high = (float(q) for q in np.percentile(finite, [tail, 100 - tail]))
    return Metric(value=_round(value), low=_round(low), high=_round(high), n=n)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 12)
