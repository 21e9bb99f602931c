"""Judge noise and power / sample size: hand computations, published values, simulation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from assay.stats.noise import judge_noise
from assay.stats.power import (
    minimum_detectable_difference,
    noninferiority_power,
    paired_power,
    rows_needed,
    rows_needed_noninferiority,
)

# --- judge noise -------------------------------------------------------------------------


def test_judge_noise_by_hand() -> None:
    # Row 2's candidate output failed (no samples): it counts for spread, not for the pairs.
    baseline = [[7, 8], [5, 5], [6, 9]]
    candidate = [[8, 8], [6, 7], []]
    result = judge_noise(baseline, candidate, mean_diff=3.0)
    assert (result.k, result.outputs) == (2, 5)
    # Sample SDs: 0.7071, 0, 2.1213 | 0, 0.7071.
    assert result.mean_spread == pytest.approx((2 * math.sqrt(0.5) + math.sqrt(4.5)) / 5)
    assert result.disagreement_rate == pytest.approx(3 / 5)  # spans 1, 0, 3, 0, 1
    # Within variances: baseline mean(0.5, 0, 4.5) = 5/3, candidate mean(0, 0.5) = 0.25;
    # two paired rows, k = 2 on each: sqrt(5/3 / 2 + 0.25 / 2) / sqrt(2).
    expected_sd = math.sqrt(5 / 3 / 2 + 0.25 / 2) / math.sqrt(2)
    assert result.noise_sd_of_mean_diff == pytest.approx(expected_sd)
    assert result.noise_share == pytest.approx(1.96 * expected_sd / 3.0)
    assert judge_noise(baseline, candidate, mean_diff=-3.0).noise_share == result.noise_share
    assert judge_noise(baseline, candidate, mean_diff=0.5).noise_share == 1.0  # capped


def test_one_arm_without_repeats_borrows_the_other_arms_variance() -> None:
    # Baseline judged once per row (k_b = 1), candidate twice: the same judge's variance
    # (mean(0.5, 0) = 0.25) stands in for the baseline's.
    result = judge_noise([[7], [6]], [[7, 8], [6, 6]], mean_diff=0.5)
    assert (result.k, result.outputs) == (2, 2)
    expected = math.sqrt(0.25 / 1 + 0.25 / 2) / math.sqrt(2)
    assert result.noise_sd_of_mean_diff == pytest.approx(expected)


def test_uneven_samples_use_each_rows_count() -> None:
    # Row 0 has 3 baseline samples, row 1 has 2: mean(1/k_b) = (1/3 + 1/2) / 2.
    result = judge_noise([[4, 5, 6], [5, 6]], [[5, 5], [7, 7]], mean_diff=1.0)
    var_b = (1.0 + 0.5) / 2
    expected = math.sqrt(var_b * (1 / 3 + 1 / 2) / 2 + 0 * 0.5) / math.sqrt(2)
    assert result.k == 3
    assert result.noise_sd_of_mean_diff == pytest.approx(expected)


def test_no_repeated_samples_means_no_noise_estimate() -> None:
    result = judge_noise([[7], [6], []], [[8], [], [5]], mean_diff=1.0)
    assert (result.k, result.outputs) == (1, 0)
    assert result.mean_spread is None and result.disagreement_rate is None
    assert result.noise_sd_of_mean_diff is None and result.noise_share is None
    empty = judge_noise([], [], mean_diff=None)
    assert (empty.k, empty.outputs, empty.noise_sd_of_mean_diff) == (0, 0, None)


def test_noise_share_needs_a_nonzero_difference() -> None:
    for mean_diff in (None, 0.0):
        result = judge_noise([[7, 8]], [[7, 9]], mean_diff=mean_diff)
        assert result.noise_sd_of_mean_diff is not None
        assert result.noise_share is None


def test_perfectly_consistent_judge_explains_nothing() -> None:
    result = judge_noise([[7, 7, 7], [5, 5, 5]], [[8, 8, 8], [6, 6, 6]], mean_diff=1.0)
    assert (result.mean_spread, result.disagreement_rate) == (0.0, 0.0)
    assert (result.noise_sd_of_mean_diff, result.noise_share) == (0.0, 0.0)


def test_disagreement_threshold_is_one_point() -> None:
    result = judge_noise([[7.0, 7.9], [7.0, 8.0]], [[7.0, 7.0], [6.5, 7.5]], mean_diff=1.0)
    assert result.disagreement_rate == pytest.approx(2 / 4)


def test_noise_sd_matches_simulated_rejudging() -> None:
    """Fixed outputs, judged again and again: the spread of the paired mean difference across
    re-judgings is what noise_sd_of_mean_diff predicts (500 re-judgings, SD known to ~3 %)."""
    rng = np.random.default_rng(42)
    n, k, judge_sd = 200, 3, 0.9
    quality_b = rng.uniform(2, 9, n)
    quality_c = quality_b + rng.normal(0.3, 0.7, n)

    def judge(quality: np.ndarray) -> np.ndarray:
        noise = rng.normal(0, judge_sd, (n, k))
        return np.clip(np.round(quality[:, None] + noise), 1, 10)

    diffs, predicted = [], []
    for _ in range(500):
        samples_b, samples_c = judge(quality_b), judge(quality_c)
        mean_diff = float(samples_c.mean(axis=1).mean() - samples_b.mean(axis=1).mean())
        diffs.append(mean_diff)
        predicted.append(
            judge_noise(samples_b.tolist(), samples_c.tolist(), mean_diff).noise_sd_of_mean_diff
        )
    assert np.std(diffs, ddof=1) == pytest.approx(np.mean(predicted), rel=0.1)


@pytest.mark.parametrize(
    ("baseline", "candidate", "mean_diff", "message"),
    [
        ([[1, 2]], [], 0.0, "baseline_samples has 1 rows but candidate_samples has 0"),
        ([[1, float("nan")]], [[1]], 0.0, r"baseline_samples\[0\] has a non-finite score"),
        ([[1]], [["x"]], 0.0, r"candidate_samples\[0\] must be a sequence of scores"),
        ([[1]], [[1]], float("nan"), "mean_diff must be a finite number or None"),
        ([[1], "78"], [[1], [2]], 0.0, r"baseline_samples\[1\] must be a sequence of scores, not"),
        ([[1], [2]], [[1], 7], 0.0, r"candidate_samples\[1\] must be a sequence of scores"),
        ([[1], [2]], [[1], [[7]]], 0.0, r"candidate_samples\[1\] must be a sequence of scores"),
        ([[1], [2, 3], [4, 5, float("inf")]], [[1]] * 3, 0.0, r"baseline_samples\[2\] has a"),
    ],
)
def test_bad_noise_input_is_refused(
    baseline: list, candidate: list, mean_diff: float, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        judge_noise(baseline, candidate, mean_diff)


# --- power and sample size ---------------------------------------------------------------

# G*Power 3 "t tests - Means: difference from constant (one sample case)", two tails,
# alpha 0.05, power 0.80 (= statsmodels TTestPower().solve_power, rounded up):
# d = 0.2 -> 199 (actual power 0.8017), 0.5 -> 34 (0.8078), 0.8 -> 15 (0.8213).
GPOWER = [(0.2, 199, 0.8017), (0.5, 34, 0.8078), (0.8, 15, 0.8213)]


@pytest.mark.parametrize(("d", "n", "actual_power"), GPOWER)
def test_rows_needed_matches_gpower(d: float, n: int, actual_power: float) -> None:
    assert rows_needed(1.0, d) == n
    assert rows_needed(2.0, 2 * d) == n  # only the ratio delta / sd matters
    assert rows_needed(1.0, -d) == n  # the sign of the difference does not
    assert paired_power(d, 1.0, n) == pytest.approx(actual_power, abs=5e-5)
    assert paired_power(d, 1.0, n - 1) < 0.8


def test_minimum_detectable_difference_inverts_rows_needed() -> None:
    for d, n, _ in GPOWER:
        mdd = minimum_detectable_difference(1.0, n)
        assert mdd <= d < minimum_detectable_difference(1.0, n - 1)
        assert paired_power(mdd, 1.0, n) == pytest.approx(0.8, abs=1e-9)


@pytest.mark.parametrize("n", [10, 30, 100, 1000, 10_000])
def test_minimum_detectable_difference_close_to_closed_form(n: int) -> None:
    closed_form = (stats.t.ppf(0.975, n - 1) + stats.t.ppf(0.8, n - 1)) * 1.3 / math.sqrt(n)
    assert minimum_detectable_difference(1.3, n) == pytest.approx(closed_form, rel=2e-3)


def test_minimum_detectable_difference_options() -> None:
    base = minimum_detectable_difference(1.0, 100)
    assert minimum_detectable_difference(1.0, 100, power=0.9) > base
    assert minimum_detectable_difference(1.0, 100, alpha=0.01) > base
    assert minimum_detectable_difference(1.0, 400) == pytest.approx(base / 2, rel=0.01)
    assert minimum_detectable_difference(1.0, 2) > 10  # two rows detect almost nothing
    assert minimum_detectable_difference(1.0, 1) is None
    assert minimum_detectable_difference(0.0, 50) == 0.0


def test_paired_power_matches_simulated_t_tests() -> None:
    rng = np.random.default_rng(5)
    n, delta, sd = 25, 0.4, 1.0
    diffs = rng.normal(delta, sd, (40_000, n))
    t_stat = diffs.mean(axis=1) / (diffs.std(axis=1, ddof=1) / math.sqrt(n))
    simulated = np.mean(np.abs(t_stat) > stats.t.ppf(0.975, n - 1))
    assert simulated == pytest.approx(paired_power(delta, sd, n), abs=0.01)


def test_noninferiority_sample_size_and_simulation() -> None:
    # Margin 0.5 sd, truly equal: the one-sided test at 2.5 % needs the same 34 rows as the
    # two-sided 5 % test of d = 0.5 (the other tail is negligible).
    n = rows_needed_noninferiority(1.0, 0.5, 0.0)
    assert n == 34
    assert (
        noninferiority_power(1.0, 0.5, 0.0, n) >= 0.8 > noninferiority_power(1.0, 0.5, 0.0, n - 1)
    )
    rng = np.random.default_rng(6)

    def pass_rate(true_diff: float) -> float:
        diffs = rng.normal(true_diff, 1.0, (40_000, n))
        se = diffs.std(axis=1, ddof=1) / math.sqrt(n)
        lower = diffs.mean(axis=1) - stats.t.ppf(0.975, n - 1) * se
        return float(np.mean(lower > -0.5))

    assert pass_rate(0.0) == pytest.approx(noninferiority_power(1.0, 0.5, 0.0, n), abs=0.01)
    assert pass_rate(-0.5) == pytest.approx(0.025, abs=0.004)  # at the margin: alpha / 2
    assert noninferiority_power(1.0, 0.5, -0.5, n) == pytest.approx(0.025, abs=1e-9)
    assert pass_rate(-1.0) < 0.001  # worse by twice the margin


def test_noninferiority_options() -> None:
    equal = rows_needed_noninferiority(1.5, 0.25, 0.0)
    assert rows_needed_noninferiority(1.5, 0.25, 0.1) < equal  # a better candidate needs fewer
    assert rows_needed_noninferiority(1.5, 0.25, -0.1) > equal
    assert rows_needed_noninferiority(1.5, 0.25, 0.0, power=0.9) > equal
    assert rows_needed_noninferiority(1.5, 0.25, 0.0, alpha=0.1) < equal
    assert rows_needed_noninferiority(1.5, 0.25, -0.25) is None  # at the margin: never
    assert rows_needed_noninferiority(1.5, 0.25, -0.5) is None
    assert rows_needed_noninferiority(0.0, 0.25, 0.0) is None
    assert rows_needed_noninferiority(1.0, 0.0, 0.5) == rows_needed(1.0, 0.5)  # superiority


def test_degenerate_sizes() -> None:
    assert rows_needed(0.0, 0.5) is None
    assert rows_needed(1.0, 0.0) is None
    assert rows_needed(1.0, 100.0) == 2  # the smallest paired sample
    assert rows_needed(1.0, 1e-4) == pytest.approx(7.85e8, rel=0.01)  # huge, still computed
    assert paired_power(0.5, 1.0, 1) is None
    assert paired_power(0.5, 0.0, 10) is None
    assert paired_power(0.0, 1.0, 10) == pytest.approx(0.05)  # no difference: alpha


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: rows_needed(-1.0, 0.5), "sd_diff must be a finite number >= 0, got -1.0"),
        (lambda: rows_needed(float("nan"), 0.5), "sd_diff must be a finite number"),
        (lambda: rows_needed(1.0, float("inf")), "delta must be a finite number"),
        (lambda: rows_needed(1.0, 0.5, alpha=0), "alpha must be between 0 and 1"),
        (lambda: rows_needed(1.0, 0.5, power=1.0), "power must be between alpha/2 and 1"),
        (lambda: minimum_detectable_difference(1.0, 10, power=0.01), "power must be between"),
        (lambda: rows_needed_noninferiority(1.0, -0.1, 0.0), "margin must be a finite number >= 0"),
        (lambda: rows_needed_noninferiority(1.0, 0.1, float("nan")), "expected_diff must be"),
    ],
)
def test_bad_power_input_is_refused(call, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=message):
        call()
