"""Training datasets from a run group's failures: SFT targets or preference pairs.

A row is *low-scoring* when one model of the group (``model``, default: the baseline arm, the
model in production) scored it below a threshold (default: the middle of the rubric's range).
For each such row:

* **sft**: the target is the best-scoring output of the group's other arms, provided it
  scored at or above the threshold (ties: the baseline arm first, then run order). With
  ``use_reference``, a row no output rescues takes the row's own reference instead, unless
  the group judged that reference (the captured arm) and it scored below the threshold.
* **preference**: the same chosen output, paired with the low-scoring output as rejected;
  the pair needs a score gap of at least ``min_gap`` (always > 0: chosen ≥ threshold >
  rejected). The reference fallback, being unscored, enters only with ``use_reference``.

Rows whose output for ``model`` has no score (generation or judge failure) are counted and
left out: a failure is not a low score. Every written row carries ``metadata["provenance"]``:
the group, the source row, every arm's status and score, which output was taken and why, the
judge's reasoning for the chosen and the rejected output, the rubric version and the judge.

Zero overlap: the contexts of these rows *are* rows of the group's eval dataset, so training
on them spends that eval set. A build therefore names another eval dataset to keep clean
(``keep_eval``); rows also in it (same inference or same normalised conversation) are removed
and counted. The whole build is one transaction: a refusal leaves nothing behind.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from assay.datasets.from_run_select import Arm, Counts, Pick, Rule, choose, nothing_to_write
from assay.datasets.from_run_write import Plan, ProgressCallback, write_dataset
from assay.datasets.importer import _check_name
from assay.datasets.service import DatasetInfo, row_fingerprints
from assay.errors import NotFoundError, StoreError, ValidationError
from assay.stats.summary import row_outcomes
from assay.store import Store
from assay.store.db import describe_failure
from assay.store.lookup import not_found, run_group_by_id
from assay.store.models import (
    Dataset,
    DatasetRow,
    ModelEndpoint,
    Rubric,
    RubricVersion,
    Run,
    RunGroup,
    RunGroupRow,
)

ROW_FORMATS = ("sft", "preference")


class FromRunReport(BaseModel):
    """What a build did, counted at each step. Field names are stable (``--json``, API)."""

    dataset: DatasetInfo
    row_format: str
    group_id: int
    model: str  # the arm whose low scores select the rows
    below: float  # the threshold
    considered: int  # rows of the group's sample
    failed: int  # the model's output has no score (generation or judge failure)
    below_threshold: int  # scored below the threshold: the rows to learn from
    no_target: int  # of those, no output (or reference) good enough to learn from
    overlap_removed: int  # of the rest, also in the kept eval dataset
    written: int


def create_dataset_from_run(
    store: Store,
    group_id: int,
    name: str,
    *,
    row_format: str = "sft",
    model: str | None = None,
    below: float | None = None,
    keep_eval: str | None = None,
    use_reference: bool = False,
    min_gap: float = 0.0,
    progress: ProgressCallback | None = None,
) -> FromRunReport:
    """Build training dataset ``name`` from the low-scoring rows of run group ``group_id``."""
    name = _check_name(name)
    if row_format not in ROW_FORMATS:
        raise ValidationError(
            f"unknown row format {row_format!r} (expected {' or '.join(ROW_FORMATS)})"
        )
    if min_gap < 0:
        raise ValidationError(f"--min-gap must be 0 or more, got {min_gap:g}")
    counts = Counts()
    picks: list[Pick] = []
    with store.session() as session:
        group = run_group_by_id(session, group_id)
        version = session.get(RubricVersion, group.rubric_version_id)
        own = session.get(Dataset, group.dataset_id)
        assert version is not None and own is not None
        _check_group(session, group, version)
        arms = _arms(session, group)
        rule = Rule(_target_arm(arms, model), arms, _threshold(below, version), use_reference,
                    min_gap)  # fmt: skip
        kept_id, kept_ids, kept_hashes = _kept_eval(session, keep_eval, own, group.id)
        group_fields = _group_fields(session, group, version, own)
        for row_id, content_hash, inference_id, has_reference in _sample(session, group):
            counts.considered += 1
            pick = choose(rule, row_id, has_reference, counts)
            if pick is None:
                continue
            if inference_id in kept_ids or content_hash in kept_hashes:
                counts.overlap_removed += 1
                continue
            picks.append(pick)
    label, threshold = rule.target.label, rule.threshold
    if not picks:
        raise ValidationError(nothing_to_write(counts, label, threshold, keep_eval))
    stored_filter = {
        "group": group_id,
        "model": label,
        "below": threshold,
        "format": row_format,
        "keep_eval": keep_eval,
        **({"use_reference": True} if use_reference else {}),
        **({"min_gap": min_gap} if min_gap else {}),
    }
    plan = Plan(name, row_format, stored_filter, kept_id, group_fields, arms, threshold, label)
    try:
        info = write_dataset(store, plan, picks, progress)
    except OperationalError as exc:  # disk full, connection lost, locked: all rolled back
        failure = describe_failure(exc, store.engine)
        raise StoreError(f"dataset '{name}' was not created: {failure}") from exc
    return FromRunReport(
        dataset=info,
        row_format=row_format,
        group_id=group_id,
        model=label,
        below=threshold,
        considered=counts.considered,
        failed=counts.failed,
        below_threshold=counts.below_threshold,
        no_target=counts.no_target,
        overlap_removed=counts.overlap_removed,
        written=len(picks),
    )


# --- checks and lookups ------------------------------------------------------------------------


def _check_group(session: Session, group: RunGroup, version: RubricVersion) -> None:
    from assay.engine.groups import derive_status  # the engine is only needed for this rule

    if version.kind == "pairwise":
        raise ValidationError(
            f"run group {group.id} was judged with a pairwise rubric, which says which of two "
            "outputs is better but gives no score per output; building training data needs "
            "pointwise scores. Rejudge it with a pointwise version of its rubric "
            f"(`assay run rejudge {group.id} --rubric-version N`), or run an eval with a "
            "pointwise rubric, and build from that group"
        )
    statuses = list(session.scalars(select(Run.status).where(Run.group_id == group.id)))
    status = derive_status(statuses, group.heartbeat_at, group.worker)
    if status not in ("completed", "failed"):
        raise ValidationError(
            f"run group {group.id} is not finished (status {status}); finish it with "
            f"`assay run resume {group.id}` first, so every row has its scores"
        )


def _arms(session: Session, group: RunGroup) -> list[Arm]:
    runs = list(session.scalars(select(Run).where(Run.group_id == group.id).order_by(Run.id)))
    ordered = sorted(runs, key=lambda r: (r.role != "baseline", r.id))
    return [
        Arm(
            run.id,
            run.label,
            run.role,
            ordered.index(run),
            row_outcomes(session, group, run.id),
            captured=run.endpoint_id is None,
        )
        for run in runs
    ]


def _target_arm(arms: list[Arm], model: str | None) -> Arm:
    if model is None:
        baseline = next((a for a in arms if a.role == "baseline"), None)
        if baseline is None:
            raise ValidationError("this run group has no baseline arm; name one with --model")
        return baseline
    for arm in arms:
        if arm.label == model:
            return arm
    names = ", ".join(a.label for a in arms)
    raise NotFoundError(f"no model {model!r} in this run group (models: {names})")


def _threshold(below: float | None, version: RubricVersion) -> float:
    low, high = version.score_min, version.score_max
    if below is None:
        return (low + high) / 2
    if not low < below <= high:
        raise ValidationError(
            f"--below {below:g} is outside the rubric's range: expected more than {low} and "
            f"at most {high} (a threshold at {low} would select nothing)"
        )
    return below


def _kept_eval(
    session: Session, keep_eval: str | None, own: Dataset, group_id: int
) -> tuple[int, set[int], set[str]]:
    """The eval dataset kept clean: its id, and its rows' inference ids and content hashes."""
    if keep_eval is None:
        raise ValidationError(
            f"the rows of run group {group_id} are rows of eval dataset '{own.name}': training "
            f"on them leaks that eval into training, and a model trained on this set can no "
            f"longer be judged fairly on '{own.name}'. Name the eval dataset you will judge it "
            "on instead with --keep-eval EVAL (its rows are kept out of the training set), and "
            f"treat '{own.name}' as spent for that model"
        )
    found = session.scalar(select(Dataset).where(Dataset.name == keep_eval))
    if found is None:
        names = session.scalars(select(Dataset.name))
        raise not_found("dataset", keep_eval, names, "assay dataset list")
    if found.id == own.id:
        raise ValidationError(
            f"--keep-eval {keep_eval}: that is the group's own eval dataset, whose rows are the "
            "very rows this builds from; name a different eval dataset to keep clean"
        )
    if found.type != "eval":
        raise ValidationError(
            f"--keep-eval {keep_eval}: expected an eval dataset, it is {found.type}"
        )
    return (found.id, *row_fingerprints(session, found.id))


def _group_fields(
    session: Session, group: RunGroup, version: RubricVersion, dataset: Dataset
) -> dict[str, Any]:
    rubric = session.get(Rubric, version.rubric_id)
    judge = session.get(ModelEndpoint, group.judge_id)
    return {
        "group_id": group.id,
        "group_name": group.name,
        "dataset": dataset.name,
        "rubric": rubric.name if rubric else None,
        "rubric_version": version.version,
        "score_range": [version.score_min, version.score_max],
        "judge": judge.name if judge else None,
        "judge_samples": group.judge_samples,
    }


def _sample(session: Session, group: RunGroup) -> list[tuple[int, str, int | None, bool]]:
    """(row id, content hash, inference id, has a reference) of each sampled row, in order."""
    query = (
        select(
            DatasetRow.id,
            DatasetRow.content_hash,
            DatasetRow.inference_id,
            DatasetRow.reference.is_not(None),
        )
        .join(RunGroupRow, RunGroupRow.row_id == DatasetRow.id)
        .where(RunGroupRow.group_id == group.id)
        .order_by(RunGroupRow.position)
    )
    return [(r[0], r[1], r[2], bool(r[3])) for r in session.execute(query)]
