"""A run group's arms compared with its baseline, with everything a verdict needs.

Per non-baseline arm: the paired score comparison on the rows both arms scored, the failure
comparison on every row both arms finished, per-slice comparisons, judge noise (k >= 2
samples), the minimum detectable difference and the rows needed. Scores come from
``row_outcomes`` (aggregated in SQL, one line per generation); outputs are never loaded.

With ``against_baseline`` the arms of a group are compared with the baseline arm of the
*accepted baseline group* of the same eval (``assay run baseline``), row by row on the dataset
rows both groups sampled; dataset, rubric version and judge must be the same, else the
scores are not comparable and this refuses.
"""

from __future__ import annotations

from pydantic import BaseModel

from assay.errors import ValidationError
from assay.stats import noise, paired, power, slices
from assay.stats.compare_load import (
    Arm,
    accepted_baseline,
    baseline_run,
    group_runs,
    header_fields,
    load_arm,
    require_complete,
    require_finished,
    sampled_rows,
    slice_values,
)
from assay.stats.pairwise import PairwiseStats
from assay.store import Store
from assay.store.lookup import run_group_by_id

FAILED = ("generation_failed", "judge_failed", "judge_unparseable")
DEFAULT_SLICES = ("task", "environment")
"""Sliced by default when the rows carry more than one value; other keys via ``slice_by``."""
TOP_REGRESSIONS = 10
MAX_SLICE_VALUES = 200
"""A key with more distinct values is an identifier, not a slice: comparing each would take
long and, after the multiplicity correction, show nothing."""


class ArmCounts(BaseModel):
    """One arm's row outcomes over the compared rows."""

    model: str
    role: str
    run_id: int
    group_id: int
    rows: int
    scored: int
    generation_failed: int
    judge_failed: int
    judge_unparseable: int
    mean_score: float | None  # over all its scored rows


class RowDiff(BaseModel):
    row: int  # the dataset row's position: `assay run row GROUP ROW`
    baseline_score: float
    candidate_score: float
    diff: float


class CandidateComparison(BaseModel):
    """One arm against the baseline arm."""

    arm: ArmCounts
    paired: paired.PairedComparison
    failures: paired.FailureComparison
    slices: list[slices.SliceComparison]
    noise: noise.JudgeNoise | None
    mde: float | None  # smallest difference these paired rows detect at 80 % power
    rows_needed: int | None  # paired rows to detect the observed difference at 80 % power
    top_regressions: list[RowDiff]
    # Pairwise rubrics (gate/pairwise.py): the win rate against the baseline; ``paired`` then
    # holds it as a difference from 0.5 (mean_candidate = win rate, mean_diff = win rate - 0.5).
    pairwise: PairwiseStats | None = None


class GroupHeader(BaseModel):
    """What was compared: the group, the baseline, the pinned dataset, rubric and judge."""

    group_id: int
    baseline_group_id: int  # == group_id unless compared against the accepted baseline
    eval: str | None
    dataset: str
    dataset_rows: int
    rubric: str
    rubric_version: int
    score_min: int
    score_max: int
    judge: str
    judge_samples: int
    sample_size: int
    compared_rows: int  # rows sampled by both groups (== sample_size within one group)
    seed: int
    resamples: int
    level: float
    slice_keys: list[str]
    missing_slice_keys: list[str]  # requested keys that no compared row has
    baseline: ArmCounts


class GroupComparison(GroupHeader):
    candidates: list[CandidateComparison]

    def header(self) -> GroupHeader:
        return GroupHeader(**{name: getattr(self, name) for name in GroupHeader.model_fields})


def compare_group(
    store: Store,
    group_id: int,
    *,
    slice_by: list[str] | tuple[str, ...] = (),
    against_baseline: bool = False,
    resamples: int = 10_000,
    seed: int = 0,
    level: float = 0.95,
) -> GroupComparison:
    """Compare every non-baseline arm of a finished group with the baseline (see module doc)."""
    if resamples < 100:
        raise ValidationError(f"--resamples must be at least 100, got {resamples}")
    with store.session() as session:
        group = run_group_by_id(session, group_id)
        require_finished(session, group)
        runs = group_runs(session, group)
        if against_baseline:
            base_group = accepted_baseline(session, group)
            require_finished(session, base_group)
            base_run = baseline_run(session, base_group)
            others = runs
        else:
            base_group = group
            base_run = baseline_run(session, group)
            others = [r for r in runs if r.id != base_run.id]
            if not others:
                raise ValidationError(f"run group {group.id} has no arm besides its baseline")
        rows = sampled_rows(session, group)
        if base_group.id != group.id:
            base_rows = sampled_rows(session, base_group)
            rows = {row_id: pos for row_id, pos in rows.items() if row_id in base_rows}
        noisy = min(group.judge_samples, base_group.judge_samples) >= 2
        baseline = load_arm(session, base_group, base_run, noisy)
        arms = [load_arm(session, group, run, noisy) for run in others]
        for arm in [baseline, *arms]:
            require_complete(arm, rows)
        keys = list(dict.fromkeys([*slice_by, *DEFAULT_SLICES]))
        values = slice_values(session, list(rows), keys)
        present = {key for by_row in values.values() for key in by_row}
        # task/environment are sliced unasked only when they split the rows at all.
        keys = _useful_keys(keys, set(slice_by), values)
        header = header_fields(session, group)
        candidates = [
            _compare(arm, baseline, rows, values, keys, resamples, seed, level) for arm in arms
        ]
        return GroupComparison(
            **header,
            group_id=group.id,
            baseline_group_id=base_group.id,
            compared_rows=len(rows),
            seed=seed,
            resamples=resamples,
            level=level,
            slice_keys=keys,
            missing_slice_keys=[k for k in keys if k not in present],
            baseline=_counts(baseline, rows),
            candidates=candidates,
        )


def _useful_keys(
    keys: list[str], requested: set[str], values: dict[int, dict[str, str]]
) -> list[str]:
    """Requested keys (refused past MAX_SLICE_VALUES); default ones only if they split."""
    useful = []
    for key in keys:
        distinct = len({v[key] for v in values.values() if key in v})
        if distinct > MAX_SLICE_VALUES:
            if key in requested:
                raise ValidationError(
                    f"slice key {key!r} has {distinct} distinct values in the compared rows; at "
                    f"most {MAX_SLICE_VALUES} can be compared: slice by a coarser key"
                )
            continue
        if key in requested or distinct > 1:
            useful.append(key)
    return useful


def _compare(
    arm: Arm,
    baseline: Arm,
    rows: dict[int, int],
    values: dict[int, dict[str, str]],
    keys: list[str],
    resamples: int,
    seed: int,
    level: float,
) -> CandidateComparison:
    both = sorted(
        (rows[row_id], row_id)
        for row_id in rows
        if baseline.outcomes[row_id].score is not None and arm.outcomes[row_id].score is not None
    )
    base_scores = [_score(baseline, row_id) for _, row_id in both]
    cand_scores = [_score(arm, row_id) for _, row_id in both]
    comparison = paired.paired_comparison(
        base_scores, cand_scores, resamples=resamples, seed=seed, level=level
    )
    ordered = sorted(rows, key=rows.__getitem__)
    failures = paired.failure_comparison(
        [baseline.outcomes[r].status in FAILED for r in ordered],
        [arm.outcomes[r].status in FAILED for r in ordered],
        level=level,
    )
    groups: dict[tuple[str, str], tuple[list[float], list[float]]] = {}
    for (_, row_id), b, c in zip(both, base_scores, cand_scores, strict=True):
        for key in keys:
            value = values.get(row_id, {}).get(key)
            if value is not None:
                pair = groups.setdefault((key, value), ([], []))
                pair[0].append(b)
                pair[1].append(c)
    sliced = (
        slices.slice_comparisons(groups, resamples=resamples, seed=seed, level=level)
        if groups
        else []
    )
    judge_noise = None
    if baseline.samples or arm.samples:
        judge_noise = noise.judge_noise(
            [baseline.samples.get(row_id, []) for _, row_id in both],
            [arm.samples.get(row_id, []) for _, row_id in both],
            comparison.mean_diff,
        )
    sd, n = comparison.sd_diff, comparison.n_pairs
    mde = power.minimum_detectable_difference(sd, n) if sd is not None and n >= 2 else None
    needed = None
    if sd is not None and comparison.mean_diff:
        needed = power.rows_needed(sd, abs(comparison.mean_diff))
    diffs = [
        RowDiff(row=pos, baseline_score=b, candidate_score=c, diff=c - b)
        for (pos, _), b, c in zip(both, base_scores, cand_scores, strict=True)
        if c < b
    ]
    diffs.sort(key=lambda d: (d.diff, d.row))
    return CandidateComparison(
        arm=_counts(arm, rows),
        paired=comparison,
        failures=failures,
        slices=sliced,
        noise=judge_noise,
        mde=mde,
        rows_needed=needed,
        top_regressions=diffs[:TOP_REGRESSIONS],
    )


def _score(arm: Arm, row_id: int) -> float:
    score = arm.outcomes[row_id].score
    assert score is not None
    return score


def _counts(arm: Arm, rows: dict[int, int]) -> ArmCounts:
    outcomes = [arm.outcomes[row_id] for row_id in rows]
    scores = [o.score for o in outcomes if o.score is not None]
    return ArmCounts(
        model=arm.run.label,
        role=arm.run.role,
        run_id=arm.run.id,
        group_id=arm.group.id,
        rows=len(outcomes),
        scored=len(scores),
        generation_failed=sum(o.status == "generation_failed" for o in outcomes),
        judge_failed=sum(o.status == "judge_failed" for o in outcomes),
        judge_unparseable=sum(o.status == "judge_unparseable" for o in outcomes),
        mean_score=sum(scores) / len(scores) if scores else None,
    )
