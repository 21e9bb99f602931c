"""Paired comparisons of a candidate against the baseline, row by row.

Every row of an eval dataset is answered by both arms, so the honest unit of comparison is the
per-row difference ``candidate - baseline``: row difficulty cancels out and the interval is
much narrower than comparing two averages. Two comparisons live here:

* :func:`paired_comparison` over the scored rows: mean difference with a paired bootstrap
  percentile interval, win/tie/loss counts, a signed-rank (or sign) test and effect sizes.
* :func:`failure_comparison` over all rows: the paired difference in failure rate with
  Newcombe's score interval and the exact McNemar test.

Pure functions over plain numbers; deterministic given the seed. ``docs/statistics.md``
explains every field for a release decision.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel
from scipy import stats

DECIMALS = 9
"""Differences are rounded to this many decimals, so float noise never turns a tie into a win."""

_CHUNK_ELEMENTS = 500_000
"""Upper bound on the temporary arrays of one bootstrap chunk (4 MB of int64): small chunks
stay in cache, which measured faster than large ones, and memory stays flat whatever n."""


class PairedComparison(BaseModel):
    """Candidate vs baseline on the rows both arms scored (differences are candidate - baseline)."""

    n_pairs: int
    mean_baseline: float | None
    mean_candidate: float | None
    mean_diff: float | None
    sd_diff: float | None
    ci_low: float | None
    ci_high: float | None
    ci_level: float
    resamples: int
    seed: int
    wins: int
    ties: int
    losses: int
    test: str  # "wilcoxon", "sign" or "none"
    p_value: float | None
    effect_size: float | None  # d_z = mean_diff / sd_diff
    rank_biserial: float | None  # matched-pairs rank-biserial correlation, in [-1, 1]


class FailureComparison(BaseModel):
    """Candidate vs baseline failure rates on the same rows (rate_diff is candidate - baseline)."""

    n_rows: int
    baseline_failed: int
    candidate_failed: int
    baseline_rate: float | None
    candidate_rate: float | None
    rate_diff: float | None
    ci_low: float | None  # Newcombe (1998) method 10, hybrid score interval for paired data
    ci_high: float | None
    ci_level: float
    p_value: float | None  # exact McNemar: two-sided binomial test on the discordant rows
    test: str  # "mcnemar_exact" or "none"


def paired_comparison(
    baseline: Sequence[float],
    candidate: Sequence[float],
    *,
    resamples: int = 10_000,
    seed: int = 0,
    level: float = 0.95,
) -> PairedComparison:
    """Compare two arms on rows already aligned (``baseline[i]`` and ``candidate[i]`` = row i).

    - ``resamples``: bootstrap resamples for the interval (10,000 keeps the percentile
      endpoints stable to about 0.01 points on typical data).
    - ``seed``: seeds ``numpy.random.default_rng``; the same inputs and seed give the same CI.
    - ``level``: confidence level of the two-sided percentile interval.

    The test is the Wilcoxon signed-rank test (two-sided, ``zero_method="pratt"``: tied rows
    take part in the ranking but add to neither side) unless more than half the rows are tied,
    where the exact two-sided sign test on wins vs losses is used instead. ``test`` is "none"
    (p_value None) with fewer than two rows or when every row is tied.

    Raises ValueError when the lengths differ, a value is not finite, or an option is invalid.
    """
    _check_options(resamples, level)
    base = _finite_array(baseline, "baseline")
    cand = _finite_array(candidate, "candidate")
    if base.size != cand.size:
        raise ValueError(
            f"baseline has {base.size} rows but candidate has {cand.size}: "
            "the scores must be aligned row by row"
        )
    n = int(base.size)
    diffs = np.round(cand - base, DECIMALS)
    wins, losses = int((diffs > 0).sum()), int((diffs < 0).sum())
    result = PairedComparison(
        n_pairs=n,
        mean_baseline=float(base.mean()) if n else None,
        mean_candidate=float(cand.mean()) if n else None,
        mean_diff=float(diffs.mean()) if n else None,
        sd_diff=None,
        ci_low=None,
        ci_high=None,
        ci_level=level,
        resamples=resamples,
        seed=seed,
        wins=wins,
        ties=n - wins - losses,
        losses=losses,
        test="none",
        p_value=None,
        effect_size=None,
        rank_biserial=_rank_biserial(diffs),
    )
    if n < 2:
        return result
    sd = float(diffs.std(ddof=1))
    result.sd_diff = sd
    if sd > 10.0**-DECIMALS:
        result.effect_size = result.mean_diff / sd  # type: ignore[operator]
    means = bootstrap_means(diffs, resamples, np.random.default_rng(seed))
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    result.ci_low, result.ci_high = float(low), float(high)
    if wins + losses == 0:
        return result
    if 2 * result.ties > n:
        result.test = "sign"
        result.p_value = float(stats.binomtest(wins, wins + losses, 0.5).pvalue)
    else:
        result.test = "wilcoxon"
        result.p_value = _wilcoxon_p(diffs)
    return result


def bootstrap_means(
    diffs: np.ndarray, resamples: int, rng: np.random.Generator, *, strategy: str | None = None
) -> np.ndarray:
    """Means of ``resamples`` paired bootstrap resamples (rows drawn with replacement).

    Two equivalent ways to draw, picked for speed (``strategy`` forces one, for tests):

    * "indices": draw n row indices per resample and average those rows' differences.
    * "counts": when few distinct differences exist (integer judge scores give at most 19),
      drawing n rows with replacement is the same as drawing how many times each distinct
      value is picked, Multinomial(n, share of each value): same distribution, ~100x faster.

    Work is chunked so no temporary array exceeds ~500,000 elements, whatever n.
    """
    n = diffs.size
    values, counts = np.unique(diffs, return_counts=True)
    if strategy is None:
        strategy = "counts" if values.size * 16 <= n else "indices"
    out = np.empty(resamples)
    if strategy == "counts":
        shares = counts / n
        chunk = max(1, _CHUNK_ELEMENTS // values.size)
        for start in range(0, resamples, chunk):
            stop = min(resamples, start + chunk)
            picks = rng.multinomial(n, shares, size=stop - start)
            out[start:stop] = picks @ values / n
    elif strategy == "indices":
        chunk = max(1, _CHUNK_ELEMENTS // n)
        for start in range(0, resamples, chunk):
            stop = min(resamples, start + chunk)
            rows = rng.integers(0, n, size=(stop - start, n))
            out[start:stop] = diffs[rows].mean(axis=1)
    else:
        raise ValueError(f"unknown bootstrap strategy {strategy!r}: use 'counts' or 'indices'")
    return out


def failure_comparison(
    baseline_failed: Sequence[bool],
    candidate_failed: Sequence[bool],
    *,
    level: float = 0.95,
) -> FailureComparison:
    """Compare failure rates on the same rows (a row failed for an arm = any failure status).

    The interval is Newcombe's method 10 for paired proportions (Wilson score intervals of
    both rates, combined with the correlation between the arms), which stays inside [-1, 1]
    and behaves at rates near 0 where the Wald interval collapses. The p-value is the exact
    McNemar test: only rows where exactly one arm failed carry evidence, and under "no
    difference" each is equally likely to be either arm's failure (binomial, p = 1/2).
    """
    _check_level(level)
    base = _bool_array(baseline_failed, "baseline_failed")
    cand = _bool_array(candidate_failed, "candidate_failed")
    if base.size != cand.size:
        raise ValueError(
            f"baseline_failed has {base.size} rows but candidate_failed has {cand.size}: "
            "the outcomes must be aligned row by row"
        )
    n = int(base.size)
    both = int((base & cand).sum())
    cand_only = int((cand & ~base).sum())
    base_only = int((base & ~cand).sum())
    result = FailureComparison(
        n_rows=n,
        baseline_failed=both + base_only,
        candidate_failed=both + cand_only,
        baseline_rate=None,
        candidate_rate=None,
        rate_diff=None,
        ci_low=None,
        ci_high=None,
        ci_level=level,
        p_value=None,
        test="none",
    )
    if n == 0:
        return result
    result.baseline_rate = (both + base_only) / n
    result.candidate_rate = (both + cand_only) / n
    result.rate_diff = (cand_only - base_only) / n
    result.ci_low, result.ci_high = newcombe_paired_interval(
        both, cand_only, base_only, n - both - cand_only - base_only, level
    )
    if cand_only + base_only:
        result.test = "mcnemar_exact"
        result.p_value = float(stats.binomtest(cand_only, cand_only + base_only, 0.5).pvalue)
    return result


def newcombe_paired_interval(
    both: int, first_only: int, second_only: int, neither: int, level: float
) -> tuple[float, float]:
    """Newcombe (1998) method 10 interval for p_first - p_second on paired binary data.

    p_first = (both + first_only) / n, p_second = (both + second_only) / n. The correlation
    estimate uses Newcombe's correction (numerator AD - BC reduced by n/2 when positive, floored
    at 0), as in the paper and in Fagerland, Lydersen & Laake, *Statistical Analysis of
    Contingency Tables* (2017), chapter 8.
    """
    n = both + first_only + second_only + neither
    z = float(stats.norm.ppf(0.5 + level / 2.0))
    p1, p2 = (both + first_only) / n, (both + second_only) / n
    l1, u1 = wilson_interval(both + first_only, n, z)
    l2, u2 = wilson_interval(both + second_only, n, z)
    margins = (
        (both + first_only)
        * (second_only + neither)
        * (both + second_only)
        * (first_only + neither)
    )
    phi = 0.0
    if margins > 0:
        cross = both * neither - first_only * second_only
        if cross > n / 2:
            phi = (cross - n / 2) / math.sqrt(margins)
        elif cross < 0:
            phi = cross / math.sqrt(margins)
    diff = p1 - p2
    low = diff - math.sqrt(
        max(0.0, (p1 - l1) ** 2 + (u2 - p2) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2))
    )
    high = diff + math.sqrt(
        max(0.0, (p2 - l2) ** 2 + (u1 - p1) ** 2 - 2 * phi * (p2 - l2) * (u1 - p1))
    )
    return max(-1.0, low), min(1.0, high)


def wilson_interval(successes: int, n: int, z: float) -> tuple[float, float]:
    """Wilson score interval for one proportion (z = the normal quantile of the level)."""
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def _wilcoxon_p(diffs: np.ndarray) -> float | None:
    """Two-sided signed-rank p-value; scipy picks exact/permutation/normal by size and ties."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p = float(stats.wilcoxon(diffs, zero_method="pratt", alternative="two-sided").pvalue)
    return p if math.isfinite(p) else None


def _rank_biserial(diffs: np.ndarray) -> float | None:
    """Matched-pairs rank-biserial r = (R+ - R-) / (R+ + R-) over the non-tied rows (Kerby 2014).

    +1: every non-tied row favours the candidate; -1: every one favours the baseline.
    """
    nonzero = diffs[diffs != 0]
    if nonzero.size == 0:
        return None
    ranks = stats.rankdata(np.abs(nonzero))
    positive = float(ranks[nonzero > 0].sum())
    return (2 * positive - float(ranks.sum())) / float(ranks.sum())


def _finite_array(values: Sequence[float], name: str) -> np.ndarray:
    try:
        array = np.asarray(values, dtype=float)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a sequence of numbers ({exc})") from None
    if array.ndim != 1:
        raise ValueError(f"{name} must be a flat sequence of numbers, got shape {array.shape}")
    bad = np.flatnonzero(~np.isfinite(array))
    if bad.size:
        raise ValueError(
            f"{name} has a non-finite value ({array[bad[0]]}) at row {int(bad[0])}: "
            "failed rows have no score and must be left out of both arms"
        )
    return array


def _bool_array(values: Sequence[bool], name: str) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{name} must be a flat sequence of booleans, got shape {array.shape}")
    if array.dtype != bool:
        if array.size and not (array.dtype.kind in "iuf" and np.isin(array, (0, 1)).all()):
            raise ValueError(f"{name} must contain only booleans (True = the row failed)")
        array = array.astype(bool)
    return array


def _check_options(resamples: int, level: float) -> None:
    if isinstance(resamples, bool) or not isinstance(resamples, int) or resamples < 1:
        raise ValueError(f"resamples must be a positive integer, got {resamples!r}")
    _check_level(level)


def _check_level(level: float) -> None:
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be between 0 and 1 (e.g. 0.95), got {level!r}")
