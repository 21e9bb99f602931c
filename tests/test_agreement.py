"""Agreement statistics (``stats.agreement``) against scipy and hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from assay.stats.agreement import (
    kendall_tau_b,
    pairwise_agreement,
    pointwise_agreement,
    spearman,
    to_scale,
    weighted_kappa,
)

HUMAN = [1, 2, 2, 3, 3, 3, 4, 5, 5, 1, 2, 4, 3, 2, 5]
JUDGE = [2, 2, 3, 3, 4, 2, 4, 5, 4, 1, 1, 5, 3, 3, 5]


def test_spearman_and_kendall_match_scipy_with_ties() -> None:
    assert spearman(HUMAN, JUDGE) == pytest.approx(stats.spearmanr(HUMAN, JUDGE).statistic)
    assert kendall_tau_b(HUMAN, JUDGE) == pytest.approx(stats.kendalltau(HUMAN, JUDGE).statistic)


def test_correlations_match_scipy_on_fractional_scores() -> None:
    rng = np.random.default_rng(7)
    human = np.round(rng.uniform(1, 3, 200) * 3) / 3  # means of three 1-3 ratings
    judge = np.clip(np.round(human + rng.normal(0, 0.6, 200), 1), 1, 3)
    assert spearman(human, judge) == pytest.approx(stats.spearmanr(human, judge).statistic)
    assert kendall_tau_b(human, judge) == pytest.approx(
        stats.kendalltau(human, judge, variant="b").statistic
    )


def test_correlation_undefined_when_one_side_is_constant() -> None:
    assert spearman([1, 2, 3], [2, 2, 2]) is None
    assert kendall_tau_b([1, 2, 3], [2, 2, 2]) is None


def test_quadratic_kappa_hand_computed() -> None:
    # Categories 1-3. Pairs: (1,1) (1,2) (2,2) (3,3) (3,2) (2,3).
    # Observed shares: [1,1]=1/6 [1,2]=1/6 [2,2]=1/6 [2,3]=1/6 [3,2]=1/6 [3,3]=1/6.
    # Weights (i-j)^2/4: off by one 0.25. Observed disagreement = 3 * 1/6 * 0.25 = 0.125.
    # Marginals: human (2/6, 2/6, 2/6), judge (1/6, 3/6, 2/6).
    # Expected disagreement = sum p_i q_j w_ij
    #   = 1/3 * [(3/6)*.25 + (2/6)*1] + 1/3 * [(1/6)*.25 + (2/6)*.25] + 1/3 * [(1/6)*1 + (3/6)*.25]
    #   = 1/3 * [0.125 + 0.3333 + 0.04167 + 0.08333 + 0.16667 + 0.125] = 0.29167
    # kappa = 1 - 0.125 / 0.291667 = 0.571428...
    human = [1, 1, 2, 3, 3, 2]
    judge = [1, 2, 2, 3, 2, 3]
    assert weighted_kappa(human, judge, 1, 3) == pytest.approx(1 - 0.125 / (7 / 24))
    assert weighted_kappa(human, human, 1, 3) == pytest.approx(1.0)
    assert weighted_kappa([2, 2], [2, 2], 1, 3) is None  # no expected disagreement


def test_to_scale_maps_linearly_and_rounds() -> None:
    assert to_scale(1, (1, 3), (1, 10)) == 1
    assert to_scale(3, (1, 3), (1, 10)) == 10
    assert to_scale(2, (1, 3), (1, 10)) == 6  # 5.5 rounds up
    assert to_scale(2.3333333333, (1, 3), (1, 3)) == 2
    assert to_scale(2.6666666667, (1, 3), (1, 3)) == 3
    assert to_scale(0.5, (0, 1), (1, 5)) == 3


def test_pointwise_agreement_values_and_intervals() -> None:
    result = pointwise_agreement(HUMAN, JUDGE, human_range=(1, 5), scale=(1, 5), seed=3)
    assert result["spearman"].value == pytest.approx(stats.spearmanr(HUMAN, JUDGE).statistic)
    assert result["exact"].value == pytest.approx(np.mean(np.array(HUMAN) == np.array(JUDGE)))
    assert result["within_1"].value == pytest.approx(
        np.mean(np.abs(np.array(HUMAN) - np.array(JUDGE)) <= 1)
    )
    for metric in result.values():
        assert metric.n == len(HUMAN)
        assert metric.low is not None and metric.high is not None
        assert metric.low <= metric.value <= metric.high
    again = pointwise_agreement(HUMAN, JUDGE, human_range=(1, 5), scale=(1, 5), seed=3)
    assert again == result  # seeded: the same interval every time


def test_kendall_interval_matches_scipy_on_the_same_resamples() -> None:
    from assay.stats.agreement import _kendall_resampled

    rng = np.random.default_rng(0)
    h = np.array(HUMAN, dtype=float)
    j = np.array(JUDGE, dtype=float)
    draws = rng.integers(0, len(h), size=(5, len(h)))
    fast = _kendall_resampled(h, j, draws)
    slow = [stats.kendalltau(h[d], j[d]).statistic for d in draws]
    assert fast == pytest.approx(slow)


def test_pairwise_always_a_judge() -> None:
    human = ["a"] * 42 + ["b"] * 58
    result = pairwise_agreement(human, ["a"] * 100, ["b"] * 100)  # A first -> a, B first -> b
    assert result["pairwise_accuracy"].value == 0.0  # always inconsistent: a tie, never right
    assert result["order_accuracy"].value == pytest.approx(0.5)
    assert result["consistency"].value == 0.0


def test_pairwise_ties_match_only_ties() -> None:
    human = ["a", "b", "tie", "tie"]
    first = ["a", "a", "tie", "a"]
    second = ["a", "b", "tie", "b"]
    result = pairwise_agreement(human, first, second, resamples=100)
    # combined: a (right), tie (wrong), tie (right), tie (right: inconsistent reads as tie)
    assert result["pairwise_accuracy"].value == pytest.approx(0.75)
    assert result["consistency"].value == pytest.approx(0.5)
    with pytest.raises(ValueError, match="preference"):
        pairwise_agreement(["x"], ["a"], ["a"])
