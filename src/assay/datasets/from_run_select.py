"""The selection rule of ``from_run``: which rows of a group to learn from, and from what.

Pure logic over row outcomes already read from the store, so the rule reads in one place.
"""

from __future__ import annotations

from dataclasses import dataclass

from assay.stats.summary import RowOutcome


@dataclass(frozen=True)
class Arm:
    run_id: int
    label: str
    role: str
    order: int  # baseline first, then run order: breaks ties between equal scores
    outcomes: dict[int, RowOutcome]
    captured: bool  # the arm judged the rows' own references (no model behind it)


@dataclass(frozen=True)
class Source:
    """One output taken into a row: an arm's generation, or the row's (unscored) reference."""

    model: str  # arm label, or "reference"
    role: str
    score: float | None
    generation_id: int | None
    reason: str


@dataclass(frozen=True)
class Pick:
    row_id: int
    chosen: Source
    rejected: Source  # the low-scoring output (an SFT row keeps it in its provenance only)


@dataclass(frozen=True)
class Rule:
    target: Arm  # the arm whose low scores select rows
    arms: list[Arm]
    threshold: float
    use_reference: bool
    min_gap: float


class Counts:
    """How many rows fell out at each step (the report shows every one)."""

    def __init__(self) -> None:
        self.considered = self.failed = self.below_threshold = 0
        self.no_target = self.overlap_removed = 0


def choose(rule: Rule, row_id: int, has_reference: bool, counts: Counts) -> Pick | None:
    """The chosen and rejected outputs for one row, or None (and the reason counted)."""
    low = rule.target.outcomes.get(row_id)
    if low is None or low.status != "scored" or low.score is None:
        counts.failed += 1  # a failure is not a low score
        return None
    threshold = rule.threshold
    if low.score >= threshold:
        return None
    counts.below_threshold += 1
    rejected = Source(
        rule.target.label,
        rule.target.role,
        low.score,
        low.generation_id,
        f"scored {low.score:g}, below {threshold:g}",
    )
    qualifying: list[tuple[Arm, RowOutcome, float]] = []
    reference_judged_low = False
    for arm in rule.arms:
        outcome = arm.outcomes.get(row_id)
        if arm is rule.target or outcome is None or outcome.score is None:
            continue
        if outcome.status != "scored":
            continue
        if outcome.score < threshold or outcome.score - low.score < rule.min_gap:
            reference_judged_low |= arm.captured and outcome.score < threshold
            continue
        qualifying.append((arm, outcome, outcome.score))
    if qualifying:
        best = max(score for _, _, score in qualifying)
        tied = [(arm, outcome) for arm, outcome, score in qualifying if score == best]
        arm, outcome = min(tied, key=lambda pair: pair[0].order)
        reason = f"highest score among the group's outputs ({best:g} ≥ {threshold:g})"
        if len(tied) > 1:
            reason += "; tied, so the baseline arm first, then run order"
        chosen = Source(arm.label, arm.role, best, outcome.generation_id, reason)
        return Pick(row_id, chosen, rejected)
    if rule.use_reference and has_reference and not reference_judged_low:
        reason = f"the row's reference (not scored in this group): no output scored ≥ {threshold:g}"
        return Pick(row_id, Source("reference", "reference", None, None, reason), rejected)
    counts.no_target += 1
    return None


def nothing_to_write(counts: Counts, model: str, threshold: float, keep_eval: str | None) -> str:
    """Why a build wrote nothing, step by step."""
    detail = (
        f"{counts.considered:,} rows considered, {counts.failed:,} without a score for "
        f"{model!r}, {counts.below_threshold:,} below {threshold:g}, {counts.no_target:,} "
        f"without an output scoring ≥ {threshold:g} to learn from, {counts.overlap_removed:,} "
        f"also in '{keep_eval}'"
    )
    return f"no row qualifies, so no dataset was created ({detail})"
