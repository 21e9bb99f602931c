"""Paired score and failure comparisons: checked against scipy, hand computations, a published
reference value and a coverage simulation."""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Iterator

import numpy as np
import pytest
from scipy import optimize, stats

from assay.stats.paired import (
    bootstrap_means,
    failure_comparison,
    paired_comparison,
)

# Forty rows of integer judge scores (1-10) with ties, wins and losses: the typical input.
BASELINE = [7, 8, 6, 9, 5, 7, 8, 6, 7, 9, 4, 8, 7, 6, 8, 7, 9, 5, 6, 8,
            7, 7, 8, 6, 9, 8, 5, 7, 6, 8, 7, 9, 6, 7, 8, 5, 7, 8, 6, 7]  # fmt: skip
CANDIDATE = [8, 8, 7, 9, 6, 6, 9, 7, 7, 9, 6, 8, 8, 6, 9, 7, 8, 6, 7, 9,
             7, 8, 9, 6, 9, 9, 6, 7, 7, 8, 8, 9, 7, 7, 9, 6, 7, 9, 7, 8]  # fmt: skip


@contextlib.contextmanager
def _no_warnings() -> Iterator[None]:
    """Any warning (scipy's small-sample or zero-variance ones included) fails the test."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


# --- the score comparison ----------------------------------------------------------------


def test_summary_fields_match_direct_computation() -> None:
    result = paired_comparison(BASELINE, CANDIDATE)
    diffs = np.array(CANDIDATE, float) - np.array(BASELINE, float)
    assert result.n_pairs == 40
    assert result.mean_baseline == pytest.approx(np.mean(BASELINE))
    assert result.mean_candidate == pytest.approx(np.mean(CANDIDATE))
    assert result.mean_diff == pytest.approx(diffs.mean())
    assert result.sd_diff == pytest.approx(diffs.std(ddof=1))
    assert (result.wins, result.ties, result.losses) == (
        int((diffs > 0).sum()),
        int((diffs == 0).sum()),
        int((diffs < 0).sum()),
    )
    assert result.wins + result.ties + result.losses == 40
    assert result.effect_size == pytest.approx(diffs.mean() / diffs.std(ddof=1))
    assert (result.ci_level, result.resamples, result.seed) == (0.95, 10_000, 0)
    assert result.ci_low < result.mean_diff < result.ci_high


def test_wilcoxon_p_value_matches_scipy_with_pratt_zeros() -> None:
    result = paired_comparison(BASELINE, CANDIDATE)
    assert result.ties * 2 <= result.n_pairs  # ties do not dominate: signed-rank test
    assert result.test == "wilcoxon"
    expected = stats.wilcoxon(CANDIDATE, BASELINE, zero_method="pratt").pvalue
    assert result.p_value == pytest.approx(expected, rel=1e-12)
    # Pratt keeps zeros in the ranking; dropping them ("wilcox") gives a different answer.
    dropped = stats.wilcoxon(CANDIDATE, BASELINE, zero_method="wilcox").pvalue
    assert result.p_value != pytest.approx(dropped, rel=1e-6)


def test_wilcoxon_exact_p_values_by_hand() -> None:
    # All eight differences positive and distinct: P = 2 * (1/2)^8.
    result = paired_comparison([0] * 8, [1, 2, 3, 4, 5, 6, 7, 8])
    assert result.p_value == pytest.approx(2 / 256)
    # d = -1, 2, 3, 4, 5: W- = 1; P(W- <= 1) = 2/32 under H0, two-sided 4/32.
    result = paired_comparison([0] * 5, [-1, 2, 3, 4, 5])
    assert result.test == "wilcoxon"
    assert result.p_value == pytest.approx(4 / 32)


def test_sign_test_when_ties_dominate() -> None:
    # 6 ties of 11 rows: more than half, so the exact sign test on 5 wins vs 0 losses.
    baseline = [5] * 11
    candidate = [5] * 6 + [6, 7, 6, 8, 6]
    result = paired_comparison(baseline, candidate)
    assert (result.wins, result.ties, result.losses) == (5, 6, 0)
    assert result.test == "sign"
    assert result.p_value == pytest.approx(2 / 32)  # 2 * (1/2)^5, by hand
    assert result.p_value == pytest.approx(stats.binomtest(5, 5, 0.5).pvalue)
    # Exactly half tied is not "more than half": back to the signed-rank test.
    result = paired_comparison([5] * 10, [5] * 5 + [6, 7, 6, 8, 6])
    assert result.test == "wilcoxon"


def test_rank_biserial_by_hand() -> None:
    # d = 1, -2, 3, 4 (and a tie, ignored): ranks 1..4; R+ = 8, R- = 2, r = (8 - 2) / 10.
    result = paired_comparison([5, 5, 5, 5, 5], [6, 3, 8, 9, 5])
    assert result.rank_biserial == pytest.approx(0.6)
    flipped = paired_comparison([6, 3, 8, 9, 5], [5, 5, 5, 5, 5])
    assert flipped.rank_biserial == pytest.approx(-0.6)
    assert flipped.mean_diff == pytest.approx(-result.mean_diff)


def test_float_noise_is_a_tie_not_a_win() -> None:
    result = paired_comparison([0.1 + 0.2, 7.0, 6.0], [0.3, 7.0, 6.0])
    assert (result.wins, result.ties, result.losses) == (0, 3, 0)
    assert result.test == "none"


def test_bootstrap_ci_close_to_scipy_bootstrap() -> None:
    """Same estimator as scipy.stats.bootstrap(paired=True, method="percentile"), different
    random draws: the endpoints agree within Monte Carlo error. With 10,000 resamples a
    2.5 % percentile has a standard error of about 0.027 bootstrap SDs, so two independent
    runs differ by ~0.04 SD; the tolerance is 0.15 SD (~4 standard errors)."""
    result = paired_comparison(BASELINE, CANDIDATE)
    reference = stats.bootstrap(
        (np.array(BASELINE, float), np.array(CANDIDATE, float)),
        lambda b, c, axis: np.mean(c - b, axis=axis),
        paired=True,
        vectorized=True,
        method="percentile",
        n_resamples=10_000,
        confidence_level=0.95,
        rng=np.random.default_rng(12345),
    )
    tolerance = 0.15 * reference.standard_error
    assert result.ci_low == pytest.approx(reference.confidence_interval.low, abs=tolerance)
    assert result.ci_high == pytest.approx(reference.confidence_interval.high, abs=tolerance)


def test_bootstrap_ci_close_to_t_interval_on_large_sample() -> None:
    rng = np.random.default_rng(7)
    baseline = rng.integers(1, 11, 2000).astype(float)
    candidate = np.clip(baseline + rng.integers(-2, 4, 2000), 1, 10)
    result = paired_comparison(baseline, candidate)
    diffs = candidate - baseline
    half = stats.t.ppf(0.975, 1999) * diffs.std(ddof=1) / math.sqrt(2000)
    assert result.ci_low == pytest.approx(diffs.mean() - half, abs=0.1 * half)
    assert result.ci_high == pytest.approx(diffs.mean() + half, abs=0.1 * half)


@pytest.mark.parametrize("level", [0.8, 0.9, 0.99])
def test_level_sets_the_percentiles(level: float) -> None:
    narrow = paired_comparison(BASELINE, CANDIDATE, level=level)
    wide = paired_comparison(BASELINE, CANDIDATE, level=0.95)
    assert narrow.ci_level == level
    if level < 0.95:
        assert wide.ci_low <= narrow.ci_low and narrow.ci_high <= wide.ci_high
    else:
        assert narrow.ci_low <= wide.ci_low and wide.ci_high <= narrow.ci_high


def test_both_bootstrap_strategies_draw_the_same_distribution() -> None:
    """Drawing row indices and drawing multinomial counts of the distinct values are two ways
    of resampling the same rows: their bootstrap means agree in mean and spread."""
    diffs = np.round(np.array(CANDIDATE, float) - np.array(BASELINE, float), 9)
    by_index = bootstrap_means(diffs, 40_000, np.random.default_rng(1), strategy="indices")
    by_count = bootstrap_means(diffs, 40_000, np.random.default_rng(2), strategy="counts")
    se = diffs.std(ddof=0) / math.sqrt(diffs.size)  # exact SD of the bootstrap mean
    for means in (by_index, by_count):
        assert means.mean() == pytest.approx(diffs.mean(), abs=0.02 * se)
        assert means.std() == pytest.approx(se, rel=0.02)
    assert np.quantile(by_index, 0.025) == pytest.approx(np.quantile(by_count, 0.025), abs=0.1 * se)
    with pytest.raises(ValueError, match="unknown bootstrap strategy 'other'"):
        bootstrap_means(diffs, 10, np.random.default_rng(0), strategy="other")


def test_deterministic_given_the_seed() -> None:
    rng = np.random.default_rng(3)
    baseline = rng.normal(6, 2, 500).tolist()  # continuous scores: the index strategy
    candidate = (np.array(baseline) + rng.normal(0.2, 1, 500)).tolist()
    first = paired_comparison(baseline, candidate, seed=11)
    assert paired_comparison(baseline, candidate, seed=11) == first
    other = paired_comparison(baseline, candidate, seed=12)
    assert (other.ci_low, other.ci_high) != (first.ci_low, first.ci_high)
    assert other.ci_low == pytest.approx(first.ci_low, abs=0.02)
    integer = paired_comparison(BASELINE * 50, CANDIDATE * 50, seed=5)  # the counts strategy
    assert paired_comparison(BASELINE * 50, CANDIDATE * 50, seed=5) == integer


# --- edge cases --------------------------------------------------------------------------


def test_no_rows() -> None:
    with _no_warnings():
        result = paired_comparison([], [])
    assert result.n_pairs == 0
    assert (result.wins, result.ties, result.losses) == (0, 0, 0)
    assert result.test == "none"
    for field in ("mean_baseline", "mean_candidate", "mean_diff", "sd_diff", "ci_low",
                  "ci_high", "p_value", "effect_size", "rank_biserial"):  # fmt: skip
        assert getattr(result, field) is None, field


def test_one_row() -> None:
    with _no_warnings():
        result = paired_comparison([6.0], [8.0])
    assert (result.n_pairs, result.mean_diff, result.wins) == (1, 2.0, 1)
    assert result.test == "none"
    assert result.sd_diff is None and result.ci_low is None and result.ci_high is None
    assert result.p_value is None and result.effect_size is None


def test_all_rows_equal() -> None:
    with _no_warnings():
        result = paired_comparison([7, 5, 9], [7, 5, 9])
    assert (result.mean_diff, result.sd_diff, result.ci_low, result.ci_high) == (0, 0, 0, 0)
    assert (result.ties, result.test, result.p_value) == (3, "none", None)
    assert result.effect_size is None and result.rank_biserial is None


def test_constant_shift_has_no_effect_size_but_a_test() -> None:
    with _no_warnings():
        result = paired_comparison([3, 4, 5, 6], [4, 5, 6, 7])
    assert (result.mean_diff, result.sd_diff, result.ci_low, result.ci_high) == (1, 0, 1, 1)
    assert result.effect_size is None  # d_z undefined when every row moved by the same amount
    assert result.test == "wilcoxon"
    assert result.p_value == pytest.approx(2 / 16)  # exact, four tied positive ranks


def test_two_rows_with_a_tie_does_not_warn() -> None:
    with _no_warnings():
        result = paired_comparison([3, 3], [3, 4])
    assert result.test == "wilcoxon" and result.p_value is not None


@pytest.mark.parametrize(
    ("baseline", "candidate", "message"),
    [
        ([1, 2, 3], [1, 2], "baseline has 3 rows but candidate has 2"),
        ([1, float("nan")], [1, 2], r"baseline has a non-finite value \(nan\) at row 1"),
        ([1, 2], [float("inf"), 2], r"candidate has a non-finite value \(inf\) at row 0"),
        ([1, None], [1, 2], "baseline has a non-finite value"),
        (["a", 2], [1, 2], "baseline must be a sequence of numbers"),
        ([[1, 2]], [[1, 2]], "baseline must be a flat sequence"),
    ],
)
def test_bad_scores_are_refused(baseline: list, candidate: list, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        paired_comparison(baseline, candidate)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"resamples": 0}, "resamples must be a positive integer, got 0"),
        ({"resamples": 10.5}, "resamples must be a positive integer"),
        ({"level": 1.0}, "level must be between 0 and 1"),
        ({"level": 95}, "level must be between 0 and 1"),
    ],
)
def test_bad_options_are_refused(options: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        paired_comparison(BASELINE, CANDIDATE, **options)


# --- failure rates -----------------------------------------------------------------------


def _rows(both: int, cand_only: int, base_only: int, neither: int) -> tuple[list, list]:
    baseline = [True] * both + [False] * cand_only + [True] * base_only + [False] * neither
    candidate = [True] * both + [True] * cand_only + [False] * base_only + [False] * neither
    return baseline, candidate


def test_failure_interval_matches_published_reference() -> None:
    """Fagerland, Lydersen & Laake (2017), ch. 8, Cavo et al. (2012) table [[59, 6], [16, 80]]:
    Newcombe square-and-add estimate -0.0621, 95 % CI -0.1186 to -0.0046 (for first - second;
    here the first classification is the candidate)."""
    result = failure_comparison(*_rows(both=59, cand_only=6, base_only=16, neither=80))
    assert (result.n_rows, result.baseline_failed, result.candidate_failed) == (161, 75, 65)
    assert result.rate_diff == pytest.approx(-0.0621, abs=5e-5)
    assert result.ci_low == pytest.approx(-0.1186, abs=5e-5)
    assert result.ci_high == pytest.approx(-0.0046, abs=5e-5)
    assert result.test == "mcnemar_exact"
    assert result.p_value == pytest.approx(stats.binomtest(6, 22, 0.5).pvalue, rel=1e-12)
    # Swapping the arms mirrors everything.
    swapped = failure_comparison(*reversed(_rows(59, 6, 16, 80)))
    assert swapped.rate_diff == pytest.approx(0.0621, abs=5e-5)
    assert (swapped.ci_low, swapped.ci_high) == pytest.approx((0.0046, 0.1186), abs=5e-5)


def test_mcnemar_exact_by_hand() -> None:
    # 1 row only the candidate failed, 5 only the baseline: P(X <= 1 | 6, 1/2) = 7/64, x2.
    result = failure_comparison(*_rows(both=3, cand_only=1, base_only=5, neither=41))
    assert result.p_value == pytest.approx(14 / 64)
    assert result.rate_diff == pytest.approx(-4 / 50)
    assert result.baseline_rate == pytest.approx(8 / 50)
    assert result.candidate_rate == pytest.approx(4 / 50)


def test_failure_comparison_edges() -> None:
    empty = failure_comparison([], [])
    assert (empty.n_rows, empty.test, empty.p_value, empty.rate_diff) == (0, "none", None, None)
    assert empty.ci_low is None and empty.baseline_rate is None
    same = failure_comparison([True, False, False], [True, False, False])
    assert (same.rate_diff, same.test, same.p_value) == (0.0, "none", None)
    assert same.ci_low < 0 < same.ci_high  # no discordant rows is not proof of equality
    none_failed = failure_comparison([False] * 20, [False] * 20)
    assert (none_failed.baseline_rate, none_failed.candidate_rate) == (0.0, 0.0)
    assert none_failed.ci_low < 0 < none_failed.ci_high
    worst = failure_comparison([False] * 20, [True] * 20)
    assert worst.rate_diff == 1.0 and 0 < worst.ci_low < worst.ci_high <= 1.0
    assert worst.p_value == pytest.approx(2 * 0.5**20)
    assert failure_comparison([0, 1], [1, 1]).candidate_failed == 2  # 0/1 accepted


@pytest.mark.parametrize(
    ("baseline", "candidate", "message"),
    [
        ([True], [True, False], "baseline_failed has 1 rows but candidate_failed has 2"),
        ([True, "yes"], [True, False], "baseline_failed must contain only booleans"),
        ([0, 2], [0, 1], "baseline_failed must contain only booleans"),
        ([True], [float("nan")], "candidate_failed must contain only booleans"),
    ],
)
def test_bad_failure_flags_are_refused(baseline: list, candidate: list, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        failure_comparison(baseline, candidate)


# --- simulation: does the interval mean what it says? ------------------------------------

ROW_MEAN, ROW_SD, JUDGE_SD = 6.5, 1.5, 1.0


def _expected_score(shift: float) -> float:
    """E[clip(round(X), 1, 10)], X ~ N(ROW_MEAN + shift, sqrt(ROW_SD^2 + JUDGE_SD^2)):
    the score is 1 plus the number of thresholds 1.5, 2.5, ..., 9.5 that X exceeds."""
    sd = math.hypot(ROW_SD, JUDGE_SD)
    return 1 + sum(stats.norm.sf((k + 0.5 - ROW_MEAN - shift) / sd) for k in range(1, 10))


def _simulate(shift: float, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """n rows: shared row quality, independent judge noise per arm, integer scores 1-10."""
    quality = rng.normal(ROW_MEAN, ROW_SD, n)
    baseline = np.clip(np.round(quality + rng.normal(0, JUDGE_SD, n)), 1, 10)
    candidate = np.clip(np.round(quality + shift + rng.normal(0, JUDGE_SD, n)), 1, 10)
    return baseline, candidate


@pytest.mark.slow
def test_simulated_coverage_and_false_positive_rate() -> None:
    """400 datasets of 100 rows: the 95 % CI covers the true difference 92-98 % of the time,
    and at a true difference of 0 the test rejects at most ~7 % of the time."""
    trials, n = 400, 100
    shift = optimize.brentq(lambda s: _expected_score(s) - _expected_score(0) - 0.5, 0, 2)
    rng = np.random.default_rng(2024)
    covered = rejected_null = covered_null = 0
    for trial in range(trials):
        result = paired_comparison(*_simulate(shift, n, rng), seed=trial)
        covered += result.ci_low <= 0.5 <= result.ci_high
        null = paired_comparison(*_simulate(0.0, n, rng), seed=trial)
        rejected_null += null.p_value is not None and null.p_value < 0.05
        covered_null += null.ci_low <= 0 <= null.ci_high
    assert 0.92 <= covered / trials <= 0.98, covered / trials
    assert 0.92 <= covered_null / trials <= 0.98, covered_null / trials
    assert rejected_null / trials <= 0.07, rejected_null / trials
