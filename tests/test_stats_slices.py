"""Per-slice comparisons and the Holm correction."""

from __future__ import annotations

import pytest
from scipy import stats

from assay.stats.paired import paired_comparison
from assay.stats.slices import holm, slice_comparisons

# --- Holm --------------------------------------------------------------------------------


def test_holm_by_hand() -> None:
    # Sorted: 0.005 x4 = 0.02, 0.01 x3 = 0.03, 0.03 x2 = 0.06, 0.04 x1 = 0.04 -> max(0.06).
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])


def test_holm_known_values() -> None:
    # statsmodels.stats.multitest.multipletests([...], method="holm")[1] gives these values.
    assert holm([0.01, 0.02, 0.03, 0.04, 0.05]) == pytest.approx([0.05, 0.08, 0.09, 0.09, 0.09])
    assert holm([0.001, 0.5, 0.02]) == pytest.approx([0.003, 0.5, 0.04])


def test_holm_is_not_benjamini_hochberg() -> None:
    """scipy's false_discovery_control is BH (false discovery rate), a weaker guarantee:
    its adjusted values are never larger than Holm's and here strictly smaller."""
    p = [0.01, 0.02, 0.03, 0.04, 0.05]
    bh = stats.false_discovery_control(p)
    assert list(bh) == pytest.approx([0.05] * 5)
    assert all(b < h for b, h in zip(bh[1:], holm(p)[1:], strict=True))


def test_holm_keeps_none_and_caps_at_one() -> None:
    # Two p-values count (m = 2): 0.5 x2 = 1.0, 0.9 x1 = 0.9 -> monotone max 1.0.
    assert holm([0.5, None, 0.9]) == [1.0, None, 1.0]
    assert holm([None, None]) == [None, None]
    assert holm([]) == []
    assert holm([0.2]) == [0.2]
    assert holm([0.0, 0.0]) == [0.0, 0.0]


@pytest.mark.parametrize("bad", [1.5, -0.1, float("nan"), "0.1"])
def test_holm_refuses_values_outside_0_1(bad: object) -> None:
    with pytest.raises(ValueError, match="p-value at position 1 must be between 0 and 1"):
        holm([0.1, bad])  # type: ignore[list-item]


# --- slice comparisons -------------------------------------------------------------------

SLICES = {
    # Much worse: significant even after Holm.
    ("task", "summarise"): ([7] * 12 + [8] * 8, [5] * 12 + [6] * 6 + [8] * 2),
    # A little worse: raw sign-test p = 0.039, Holm-adjusted 0.117, but the CI is below 0.
    ("task", "extract"): ([7] * 20, [6] * 8 + [7] * 11 + [8] * 1),
    ("task", "chat"): ([6, 7, 8, 7, 6, 8, 7, 6, 7, 8], [7, 7, 8, 6, 6, 9, 7, 7, 7, 8]),
    # One row: no test, no interval, never flagged.
    ("lang", "fr"): ([7], [5]),
    ("lang", "en"): ([6, 7, 8, 7, 6, 8, 7, 6, 7, 8] * 3, [7, 7, 8, 6, 6, 9, 7, 7, 7, 8] * 3),
}


def test_slices_sorted_adjusted_and_flagged() -> None:
    results = slice_comparisons(SLICES)
    assert [(r.key, r.value) for r in results] == [
        ("lang", "en"),
        ("lang", "fr"),
        ("task", "chat"),
        ("task", "extract"),
        ("task", "summarise"),
    ]
    by_value = {r.value: r for r in results}
    raw = [r.comparison.p_value for r in results]
    assert [r.p_adjusted for r in results] == pytest.approx(holm(raw))
    assert raw.count(None) == 1 and by_value["fr"].p_adjusted is None

    summarise = by_value["summarise"]
    assert summarise.comparison.mean_diff == pytest.approx(-1.8)
    assert summarise.p_adjusted < 0.05 and summarise.regresses

    extract = by_value["extract"]
    assert extract.comparison.test == "sign"
    assert extract.comparison.p_value == pytest.approx(stats.binomtest(1, 9).pvalue)
    assert extract.comparison.p_value < 0.05 <= extract.p_adjusted
    assert extract.comparison.ci_high < 0
    assert extract.regresses  # by the interval rule alone

    for value in ("en", "fr", "chat"):
        assert not by_value[value].regresses, value


def test_each_slice_is_the_plain_paired_comparison() -> None:
    results = slice_comparisons(SLICES, resamples=2000, seed=9, level=0.9)
    chat = next(r for r in results if r.value == "chat")
    assert chat.comparison == paired_comparison(
        *SLICES[("task", "chat")], resamples=2000, seed=9, level=0.9
    )
    # A slice's result does not depend on which other slices were compared with it.
    alone = slice_comparisons(
        {("task", "chat"): SLICES[("task", "chat")]}, resamples=2000, seed=9, level=0.9
    )
    assert alone[0].comparison == chat.comparison
    assert alone[0].p_adjusted == chat.comparison.p_value  # m = 1: no adjustment


def test_improvement_is_never_a_regression() -> None:
    better = {("task", "x"): ([5] * 20, [7] * 18 + [6] * 2)}
    (result,) = slice_comparisons(better)
    assert result.p_adjusted < 0.05 and result.comparison.mean_diff > 0
    assert not result.regresses


def test_test_rule_follows_alpha_even_when_the_interval_straddles_zero() -> None:
    """Fifteen rows lose a point, one gains nine: the signed-rank test sees a consistent loss
    (p = 0.003) while the mean's interval still straddles 0. Flagged at alpha 0.05, not at
    alpha 0.001."""
    code = {("task", "code"): ([9] * 15 + [1], [8] * 15 + [10])}
    (loose,) = slice_comparisons(code, alpha=0.05)
    assert loose.comparison.ci_low < 0 < loose.comparison.ci_high
    assert loose.p_adjusted == pytest.approx(0.00286, abs=1e-5)
    assert loose.regresses
    (strict,) = slice_comparisons(code, alpha=0.001)
    assert not strict.regresses


def test_no_slices() -> None:
    assert slice_comparisons({}) == []


def test_bad_slice_names_the_slice() -> None:
    with pytest.raises(
        ValueError, match="slice task=chat: baseline has 2 rows but candidate has 1"
    ):
        slice_comparisons({("task", "chat"): ([1, 2], [1])})
    with pytest.raises(ValueError, match="alpha must be between 0 and 1"):
        slice_comparisons(SLICES, alpha=5)
