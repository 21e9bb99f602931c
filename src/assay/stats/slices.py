"""Per-slice paired comparisons, corrected for looking at many slices at once.

A candidate that is better on average can still be worse on one task or one customer tier.
Testing twenty slices at the 5 % level finds about one "regression" by chance alone, so the
p-values are adjusted with Holm's step-down method, which controls the family-wise error rate
(the chance of flagging any slice by mistake) at ``alpha`` without assuming independence.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from pydantic import BaseModel

from assay.stats.paired import PairedComparison, paired_comparison


class SliceComparison(BaseModel):
    """The paired comparison on one slice (rows whose metadata ``key`` equals ``value``)."""

    key: str
    value: str
    comparison: PairedComparison
    p_adjusted: float | None  # Holm-adjusted across every slice compared together
    regresses: bool


def holm(p_values: Sequence[float | None]) -> list[float | None]:
    """Holm-Bonferroni adjusted p-values, in input order; None entries stay None.

    With the m non-None p-values sorted ascending, p_(1) <= ... <= p_(m), the adjusted value
    of p_(i) is max over j <= i of min(1, (m - j + 1) * p_(j)). Rejecting where the adjusted
    value is < alpha is exactly Holm's step-down procedure at family-wise level alpha.
    """
    present = []
    for index, p in enumerate(p_values):
        if p is None:
            continue
        if not (isinstance(p, int | float) and math.isfinite(p) and 0.0 <= p <= 1.0):
            raise ValueError(f"p-value at position {index} must be between 0 and 1, got {p!r}")
        present.append((float(p), index))
    present.sort()
    m = len(present)
    adjusted: list[float | None] = [None] * len(p_values)
    running = 0.0
    for rank, (p, index) in enumerate(present):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[index] = running
    return adjusted


def slice_comparisons(
    slices: Mapping[tuple[str, str], tuple[Sequence[float], Sequence[float]]],
    *,
    resamples: int = 10_000,
    seed: int = 0,
    level: float = 0.95,
    alpha: float = 0.05,
) -> list[SliceComparison]:
    """Compare every slice, adjust the p-values together, flag the regressions.

    ``slices`` maps (key, value) to (baseline scores, candidate scores) aligned by row. Each
    slice is bootstrapped with the same ``seed``, so a slice's interval does not depend on
    which other slices were compared. A slice ``regresses`` when the candidate is
    significantly worse after Holm (adjusted p < alpha and mean_diff < 0) or when its whole
    confidence interval lies below 0 (ci_high < 0; that interval is not adjusted for
    multiplicity, so this second rule is the more sensitive, less conservative one).
    Sorted by key, then value.
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be between 0 and 1 (e.g. 0.05), got {alpha!r}")
    ordered = sorted(slices.items(), key=lambda item: (str(item[0][0]), str(item[0][1])))
    comparisons = []
    for (key, value), (baseline, candidate) in ordered:
        try:
            comparison = paired_comparison(
                baseline, candidate, resamples=resamples, seed=seed, level=level
            )
        except ValueError as exc:
            raise ValueError(f"slice {key}={value}: {exc}") from None
        comparisons.append((str(key), str(value), comparison))
    adjusted = holm([c.p_value for _, _, c in comparisons])
    results = []
    for (key, value, comparison), p_adjusted in zip(comparisons, adjusted, strict=True):
        significant_drop = (
            p_adjusted is not None
            and p_adjusted < alpha
            and comparison.mean_diff is not None
            and comparison.mean_diff < 0
        )
        below_zero = comparison.ci_high is not None and comparison.ci_high < 0
        results.append(
            SliceComparison(
                key=key,
                value=value,
                comparison=comparison,
                p_adjusted=p_adjusted,
                regresses=significant_drop or below_zero,
            )
        )
    return results
