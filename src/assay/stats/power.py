"""Power and sample size for paired comparisons: what a run of n rows can and cannot show.

An INCONCLUSIVE verdict is only useful with the number of rows that would settle it. All
functions here model the per-row difference as having standard deviation ``sd_diff`` and use
the paired t-test's exact power (noncentral t, df = n - 1), the same model as G*Power's
"one-sample / matched pairs t-test" and statsmodels' ``TTestPower``. The textbook closed form

    MDD ~= (t_{1-alpha/2, n-1} + t_{power, n-1}) * sd_diff / sqrt(n)

is within 0.2 % of the exact answer from n = 10 on, but 5 % low at n = 3 and 14 % low at
n = 2; the exact form is used because it is cheap and has no small-n error.

``alpha`` is always 1 - the confidence level of the two-sided interval the gate reads (0.05 =
the 95 % CI), so these numbers match a :func:`assay.stats.paired.paired_comparison` run with
``level = 1 - alpha``. The bootstrap percentile interval the gate actually uses is slightly
narrower than the t interval at small n, so these predictions are, if anything, conservative
(``docs/statistics.md`` compares them with simulation).
"""

from __future__ import annotations

import math

from scipy import optimize, stats


def paired_power(delta: float, sd_diff: float, n: int, *, alpha: float = 0.05) -> float | None:
    """Probability that a two-sided paired test at ``alpha`` detects a true difference ``delta``.

    None for n < 2 or sd_diff 0 (no sampling variability to model).
    """
    _check(alpha=alpha)
    _check_sd(sd_diff)
    _check_finite(delta=delta)
    if n < 2 or sd_diff == 0:
        return None
    df = n - 1
    critical = stats.t.ppf(1 - alpha / 2, df)
    shift = abs(delta) * math.sqrt(n) / sd_diff
    # The far tail (a significant result in the wrong direction) is negligible whenever scipy
    # cannot evaluate it (NaN at very large shifts with tiny df).
    wrong_way = float(stats.nct.cdf(-critical, df, shift))
    return _probability(stats.nct.sf(critical, df, shift)) + (
        wrong_way if math.isfinite(wrong_way) else 0.0
    )


def noninferiority_power(
    sd_diff: float, margin: float, expected_diff: float, n: int, *, alpha: float = 0.05
) -> float | None:
    """Probability that the lower bound of the (1 - alpha) CI clears ``-margin`` with n rows.

    That is the one-sided test of "the candidate is worse by at least ``margin``" at level
    alpha / 2, when the true mean difference is ``expected_diff``. None for n < 2 or sd 0.
    """
    _check(alpha=alpha)
    _check_sd(sd_diff)
    _check_margin(margin)
    _check_finite(expected_diff=expected_diff)
    if n < 2 or sd_diff == 0:
        return None
    df = n - 1
    critical = stats.t.ppf(1 - alpha / 2, df)
    shift = (expected_diff + margin) * math.sqrt(n) / sd_diff
    return _probability(stats.nct.sf(critical, df, shift))


def minimum_detectable_difference(
    sd_diff: float, n: int, *, alpha: float = 0.05, power: float = 0.8
) -> float | None:
    """Smallest true |mean difference| that n rows detect with probability ``power``.

    Two-sided paired t-test at ``alpha``. None for n < 2; 0.0 when sd_diff is 0.
    """
    _check(alpha=alpha, power=power)
    _check_sd(sd_diff)
    if n < 2:
        return None
    if sd_diff == 0:
        return 0.0
    df = n - 1

    def shortfall(delta: float) -> float:
        return paired_power(delta, sd_diff, n, alpha=alpha) - power  # type: ignore[operator]

    high = (stats.t.ppf(1 - alpha / 2, df) + stats.t.ppf(power, df)) * sd_diff / math.sqrt(n)
    while shortfall(high) < 0:
        high *= 2
    return float(optimize.brentq(shortfall, 0.0, high, xtol=1e-12 * max(1.0, high)))


def rows_needed(
    sd_diff: float, delta: float, *, alpha: float = 0.05, power: float = 0.8
) -> int | None:
    """Smallest n whose two-sided paired test at ``alpha`` detects |delta| with ``power``.

    None when sd_diff or delta is 0 (nothing to size).
    """
    _check(alpha=alpha, power=power)
    _check_sd(sd_diff)
    _check_finite(delta=delta)
    if sd_diff == 0 or delta == 0:
        return None
    z = stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)
    return _smallest_n(
        lambda n: paired_power(delta, sd_diff, n, alpha=alpha), power, (z * sd_diff / delta) ** 2
    )


def rows_needed_noninferiority(
    sd_diff: float,
    margin: float,
    expected_diff: float,
    *,
    alpha: float = 0.05,
    power: float = 0.8,
) -> int | None:
    """Smallest n for which the (1 - alpha) CI's lower bound clears -margin with ``power``.

    ``expected_diff`` is the true candidate - baseline difference assumed (0 = "as good").
    None when sd_diff is 0, or when expected_diff <= -margin (no n can show non-inferiority of
    a candidate at least as bad as the margin).
    """
    _check(alpha=alpha, power=power)
    _check_sd(sd_diff)
    _check_margin(margin)
    _check_finite(expected_diff=expected_diff)
    distance = expected_diff + margin
    if sd_diff == 0 or distance <= 0:
        return None
    z = stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)
    return _smallest_n(
        lambda n: noninferiority_power(sd_diff, margin, expected_diff, n, alpha=alpha),
        power,
        (z * sd_diff / distance) ** 2,
    )


def _probability(value: float) -> float:
    value = float(value)
    if not math.isfinite(value):
        raise ValueError("power could not be computed for these inputs (numerical overflow)")
    return value


def _smallest_n(power_at, target: float, normal_n: float) -> int:
    """Walk from the normal-theory answer (a lower bound: the t-test never has more power)."""
    n = max(2, math.ceil(normal_n))
    while power_at(n) < target:
        n += 1
    while n > 2 and power_at(n - 1) >= target:
        n -= 1
    return n


def _check(*, alpha: float, power: float | None = None) -> None:
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be between 0 and 1 (e.g. 0.05), got {alpha!r}")
    if power is not None and not alpha / 2 < power < 1.0:
        raise ValueError(f"power must be between alpha/2 and 1 (e.g. 0.8), got {power!r}")


def _check_sd(sd_diff: float) -> None:
    if not math.isfinite(sd_diff) or sd_diff < 0:
        raise ValueError(f"sd_diff must be a finite number >= 0, got {sd_diff!r}")


def _check_margin(margin: float) -> None:
    if not math.isfinite(margin) or margin < 0:
        raise ValueError(f"margin must be a finite number >= 0 (in score points), got {margin!r}")


def _check_finite(**values: float) -> None:
    for name, value in values.items():
        if not math.isfinite(value):
            raise ValueError(f"{name} must be a finite number, got {value!r}")
