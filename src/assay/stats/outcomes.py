"""Row outcomes as SQL: one line per generation with its place in the failure taxonomy.

Every reader of a group (summary, rows table, row detail, comparisons) starts from this select,
so the rule that turns generations and judgments into ``scored`` / ``generation_failed`` /
``judge_failed`` / ``judge_unparseable`` / ``pending`` is written once, and large groups are
aggregated by the database instead of in Python.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Integer, and_, case, cast, func, literal, select
from sqlalchemy.orm import Session, aliased
from sqlalchemy.sql import ColumnElement, Select

from assay.store.models import Generation, Judgment, RubricVersion, RunGroup


def outcome_select(group_id: int, judge_samples: int, run_ids: Sequence[int]) -> Select:
    """Columns: run_id, row_id, generation_id, status, score (mean of the scored judgments),
    latency_ms, input_tokens, output_tokens, cost_usd, judge_input_tokens,
    judge_output_tokens, judge_cost_usd.

    With one judgment per output (the common case) a generation meets at most one judgment of
    the group, so the rule reads that judgment directly, with no grouping: the database can
    then join the select into larger queries through its indexes.
    """
    scored = Judgment.status == "scored"
    if judge_samples == 1:
        status, score = _single(Generation, Judgment)
        judge_columns = [Judgment.input_tokens, Judgment.output_tokens, Judgment.cost_usd]
    else:
        n_scored = func.coalesce(func.sum(cast(scored, Integer)), 0)
        unparseable = Judgment.status == "judge_unparseable"
        status = case(
            (Generation.status != "completed", literal("generation_failed")),
            (n_scored > 0, literal("scored")),
            (func.count(Judgment.id) < judge_samples, literal("pending")),
            (func.coalesce(func.sum(cast(unparseable, Integer)), 0) > 0, "judge_unparseable"),
            else_=literal("judge_failed"),
        )
        score = func.avg(case((scored, Judgment.score)))
        judge_columns = [
            func.sum(Judgment.input_tokens),
            func.sum(Judgment.output_tokens),
            func.sum(Judgment.cost_usd),
        ]
    judge_in, judge_out, judge_cost = judge_columns
    query = (
        select(
            Generation.run_id.label("run_id"),
            Generation.row_id.label("row_id"),
            Generation.id.label("generation_id"),
            status.label("status"),
            score.label("score"),
            Generation.latency_ms.label("latency_ms"),
            func.coalesce(Generation.input_tokens, 0).label("input_tokens"),
            func.coalesce(Generation.output_tokens, 0).label("output_tokens"),
            func.coalesce(Generation.cost_usd, 0.0).label("cost_usd"),
            func.coalesce(judge_in, 0).label("judge_input_tokens"),
            func.coalesce(judge_out, 0).label("judge_output_tokens"),
            func.coalesce(judge_cost, 0.0).label("judge_cost_usd"),
        )
        .outerjoin(
            Judgment, and_(Judgment.generation_id == Generation.id, Judgment.group_id == group_id)
        )
        .where(Generation.run_id.in_(list(run_ids)))
    )
    return query if judge_samples == 1 else query.group_by(Generation.id)


def judgments_per_output(session: Session, group: RunGroup) -> int:
    """The judgments a judged output has in a group: ``judge_samples``, twice that with a
    pairwise rubric (both orders); pass it as ``judge_samples`` to the selects here."""
    version = session.get(RubricVersion, group.rubric_version_id)
    both_orders = version is not None and version.kind == "pairwise"
    return group.judge_samples * (2 if both_orders else 1)


def _single(generation: Any, judgment: Any) -> tuple[ColumnElement[str], ColumnElement[Any]]:
    """Outcome and score of a generation that has at most one judgment in the group (a
    missing generation, as from an outer join, is pending)."""
    status = case(
        (generation.id.is_(None), literal("pending")),
        (generation.status != "completed", literal("generation_failed")),
        (judgment.id.is_(None), literal("pending")),
        else_=judgment.status,
    )
    return status, case((judgment.status == "scored", judgment.score))


def join_outcome(
    query: Select, group_id: int, judge_samples: int, run_ids: Sequence[int], run: Any, row: Any
) -> tuple[Select, ColumnElement[str], ColumnElement[Any], ColumnElement[Any]]:
    """``query`` outer-joined to the outcome of (``run``, ``row``), each a column of it; with
    the outcome's status, score and generation id as columns to select, filter and sort on.

    With one judgment per output the generation and its judgment are joined directly, so the
    database walks its indexes and can stop at a LIMIT; with several they are aggregated in a
    subquery first.
    """
    if judge_samples == 1:
        g, j = aliased(Generation), aliased(Judgment)
        query = query.outerjoin(g, and_(g.run_id == run, g.row_id == row)).outerjoin(
            j, and_(j.generation_id == g.id, j.group_id == group_id)
        )
        status, score = _single(g, j)
        return query, status, score, g.id
    o = outcome_select(group_id, judge_samples, run_ids).subquery()
    query = query.outerjoin(o, and_(o.c.run_id == run, o.c.row_id == row))
    return query, func.coalesce(o.c.status, literal("pending")), o.c.score, o.c.generation_id
