"""SQLAlchemy models for every entity of DESIGN.md.

The schema is created and evolved only by the Alembic migrations in ``migrations/versions``;
these classes describe it for the ORM and for ``alembic revision --autogenerate``. A test checks
that the migrations and these models agree.

Conventions: integer primary keys; timestamps are timezone-aware UTC; JSON columns hold
provider payloads as they were received (JSONB on Postgres); every column a filter in the CLI or
UI uses has an index.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

# Same names on SQLite and Postgres, and stable across migrations.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# Python None is stored as SQL NULL (not JSON null), so ``IS NULL`` filters mean what they say.
JSONType = JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")
# SQLite only auto-increments INTEGER PRIMARY KEY; Postgres gets a 64-bit key for large tables.
BigIntPK = BigInteger().with_variant(Integer(), "sqlite")


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


# --- capture ---------------------------------------------------------------------------------


class Inference(Base):
    """One captured request/response pair (from the proxy or an imported log)."""

    __tablename__ = "inferences"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    # Client-generated id: replaying a spool file inserts each record at most once.
    uid: Mapped[str] = mapped_column(String(36), unique=True)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    environment: Mapped[str] = mapped_column(String(200), default="default")
    task: Mapped[str] = mapped_column(String(200), default="default")
    provider: Mapped[str] = mapped_column(String(50))
    model: Mapped[str | None] = mapped_column(String(200))
    method: Mapped[str] = mapped_column(String(10), default="POST")
    path: Mapped[str] = mapped_column(String(200))
    status_code: Mapped[int | None] = mapped_column(Integer)
    success: Mapped[bool] = mapped_column(Boolean)
    error: Mapped[str | None] = mapped_column(Text)
    streamed: Mapped[bool] = mapped_column(Boolean, default=False)
    duration_ms: Mapped[float | None] = mapped_column(Float)
    ttft_ms: Mapped[float | None] = mapped_column(Float)
    input_tokens: Mapped[int | None] = mapped_column(Integer)
    output_tokens: Mapped[int | None] = mapped_column(Integer)
    cost_usd: Mapped[float | None] = mapped_column(Float)
    prompt_hash: Mapped[str | None] = mapped_column(String(64))
    request_body: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    request_truncated: Mapped[bool] = mapped_column(Boolean, default=False)
    response_truncated: Mapped[bool] = mapped_column(Boolean, default=False)
    response_body: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSONType, default=dict)

    __table_args__ = (
        Index(None, "started_at"),
        Index(None, "environment", "started_at"),
        Index(None, "task", "started_at"),
        Index(None, "provider", "started_at"),
        Index(None, "model", "started_at"),
        Index(None, "status_code", "started_at"),
        Index(None, "success", "started_at"),
        Index(None, "prompt_hash"),
    )


class InferenceTag(Base):
    """One metadata key/value of an inference, so ``--metadata key=value`` filters use an index."""

    __tablename__ = "inference_tags"

    inference_id: Mapped[int] = mapped_column(
        ForeignKey("inferences.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    value: Mapped[str] = mapped_column(String(1000))

    __table_args__ = (Index(None, "key", "value"),)


# --- datasets --------------------------------------------------------------------------------


class Dataset(Base):
    __tablename__ = "datasets"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    type: Mapped[str] = mapped_column(String(20))  # eval | training
    provenance: Mapped[str] = mapped_column(String(20))  # upload | traffic | derived
    source: Mapped[str | None] = mapped_column(Text)  # file name, or a description of the origin
    source_format: Mapped[str | None] = mapped_column(String(20))  # chat | source
    # How a training dataset's rows read: None (a conversation and its reference), "sft" (the
    # reference is the target) or "preference" (reference = chosen; metadata holds rejected).
    row_format: Mapped[str | None] = mapped_column(String(20))
    filter: Mapped[dict[str, Any] | None] = mapped_column(JSONType)  # how it was built
    excluded_dataset_id: Mapped[int | None] = mapped_column(
        ForeignKey("datasets.id", ondelete="SET NULL")
    )
    row_count: Mapped[int] = mapped_column(Integer, default=0)
    duplicate_count: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    rows: Mapped[list[DatasetRow]] = relationship(
        back_populates="dataset", cascade="all, delete-orphan", passive_deletes=True
    )

    __table_args__ = (Index(None, "type"),)


class DatasetRow(Base):
    __tablename__ = "dataset_rows"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)  # 0-based order within the dataset
    messages: Mapped[list[Any]] = mapped_column(JSONType)  # the conversation context
    tools: Mapped[list[Any] | None] = mapped_column(JSONType)
    reference: Mapped[dict[str, Any] | None] = mapped_column(JSONType)  # last assistant turn
    params: Mapped[dict[str, Any] | None] = mapped_column(JSONType)  # other request fields
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSONType, default=dict)
    content_hash: Mapped[str] = mapped_column(String(64))
    inference_id: Mapped[int | None] = mapped_column(
        ForeignKey("inferences.id", ondelete="SET NULL")
    )

    dataset: Mapped[Dataset] = relationship(back_populates="rows")

    __table_args__ = (
        UniqueConstraint("dataset_id", "position"),
        Index(None, "dataset_id", "content_hash"),
        Index(None, "content_hash"),
        Index(None, "inference_id"),
    )


# --- rubrics ---------------------------------------------------------------------------------


class Rubric(Base):
    __tablename__ = "rubrics"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    description: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    versions: Mapped[list[RubricVersion]] = relationship(
        back_populates="rubric", order_by="RubricVersion.version", passive_deletes=True
    )


class RubricVersion(Base):
    """Immutable: editing a rubric adds a version, it never changes one."""

    __tablename__ = "rubric_versions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    rubric_id: Mapped[int] = mapped_column(ForeignKey("rubrics.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(20), default="pointwise")  # pointwise | pairwise
    template: Mapped[str] = mapped_column(Text)
    score_min: Mapped[int] = mapped_column(Integer, default=1)
    score_max: Mapped[int] = mapped_column(Integer, default=10)
    checks: Mapped[list[Any] | None] = mapped_column(JSONType)  # deterministic checks
    # How check results and the judge's score combine: {"mode": ..., "weight": ...}.
    combine: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    origin: Mapped[str | None] = mapped_column(String(300))  # "template:correctness", file name
    note: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    rubric: Mapped[Rubric] = relationship(back_populates="versions")

    __table_args__ = (UniqueConstraint("rubric_id", "version"),)


# --- models and evals ------------------------------------------------------------------------


class ModelEndpoint(Base):
    """A callable model. ``api_key_env`` names an environment variable; the key is never stored."""

    __tablename__ = "model_endpoints"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    provider: Mapped[str] = mapped_column(String(20))  # openai | anthropic | local
    base_url: Mapped[str | None] = mapped_column(String(500))
    model_id: Mapped[str] = mapped_column(String(300))
    api_key_env: Mapped[str | None] = mapped_column(String(200))
    params: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    options: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)  # provider-specific
    price_input_per_mtok: Mapped[float] = mapped_column(Float, default=0.0)
    price_output_per_mtok: Mapped[float] = mapped_column(Float, default=0.0)
    max_concurrency: Mapped[int | None] = mapped_column(Integer)
    rpm: Mapped[int | None] = mapped_column(Integer)
    tpm: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class EvalDefinition(Base):
    __tablename__ = "eval_definitions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="RESTRICT"))
    rubric_version_id: Mapped[int] = mapped_column(
        ForeignKey("rubric_versions.id", ondelete="RESTRICT")
    )
    judge_id: Mapped[int] = mapped_column(ForeignKey("model_endpoints.id", ondelete="RESTRICT"))
    baseline_id: Mapped[int | None] = mapped_column(
        ForeignKey("model_endpoints.id", ondelete="RESTRICT")
    )
    candidate_ids: Mapped[list[Any]] = mapped_column(JSONType, default=list)  # endpoint ids
    sample_size: Mapped[int | None] = mapped_column(Integer)
    seed: Mapped[int] = mapped_column(Integer, default=0)
    judge_samples: Mapped[int] = mapped_column(Integer, default=1)
    with_captured: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class RunGroup(Base):
    """One execution of an eval definition, with everything pinned. Status derives from runs."""

    __tablename__ = "run_groups"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    eval_id: Mapped[int | None] = mapped_column(
        ForeignKey("eval_definitions.id", ondelete="SET NULL")
    )
    name: Mapped[str | None] = mapped_column(String(200))
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="RESTRICT"))
    rubric_version_id: Mapped[int] = mapped_column(
        ForeignKey("rubric_versions.id", ondelete="RESTRICT")
    )
    judge_id: Mapped[int] = mapped_column(ForeignKey("model_endpoints.id", ondelete="RESTRICT"))
    sample_size: Mapped[int] = mapped_column(Integer)
    seed: Mapped[int] = mapped_column(Integer)
    judge_samples: Mapped[int] = mapped_column(Integer, default=1)
    # Rejudging links a new group to the one whose generations it scores again.
    parent_group_id: Mapped[int | None] = mapped_column(
        ForeignKey("run_groups.id", ondelete="SET NULL")
    )
    is_baseline: Mapped[bool] = mapped_column(Boolean, default=False)
    settings: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Set by the process executing the group; a stale heartbeat means it died (resume it).
    worker: Mapped[str | None] = mapped_column(String(200))
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (Index(None, "eval_id", "created_at"),)


class RunGroupRow(Base):
    """The seeded sample of a group: the same rows, in the same order, for every model."""

    __tablename__ = "run_group_rows"

    group_id: Mapped[int] = mapped_column(
        ForeignKey("run_groups.id", ondelete="CASCADE"), primary_key=True
    )
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    row_id: Mapped[int] = mapped_column(ForeignKey("dataset_rows.id", ondelete="RESTRICT"))

    __table_args__ = (UniqueConstraint("group_id", "row_id"),)


class Run(Base):
    """One model (or the captured outputs) inside a run group."""

    __tablename__ = "runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    group_id: Mapped[int] = mapped_column(ForeignKey("run_groups.id", ondelete="CASCADE"))
    endpoint_id: Mapped[int | None] = mapped_column(
        ForeignKey("model_endpoints.id", ondelete="RESTRICT")
    )  # None for the captured-production arm
    role: Mapped[str] = mapped_column(String(20))  # baseline | candidate
    label: Mapped[str] = mapped_column(String(200))  # model name, or "captured"
    status: Mapped[str] = mapped_column(String(20), default="pending")
    error: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (Index(None, "group_id"), Index(None, "status"))


class Generation(Base):
    """One output for one row in one run: a model call, or the captured reference."""

    __tablename__ = "generations"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    row_id: Mapped[int] = mapped_column(ForeignKey("dataset_rows.id", ondelete="RESTRICT"))
    status: Mapped[str] = mapped_column(String(30))  # completed | generation_failed
    output: Mapped[dict[str, Any] | None] = mapped_column(JSONType)  # assistant message
    error: Mapped[str | None] = mapped_column(Text)
    latency_ms: Mapped[float | None] = mapped_column(Float)
    input_tokens: Mapped[int | None] = mapped_column(Integer)
    output_tokens: Mapped[int | None] = mapped_column(Integer)
    cost_usd: Mapped[float | None] = mapped_column(Float)
    attempts: Mapped[int] = mapped_column(Integer, default=1)
    cached: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    __table_args__ = (
        UniqueConstraint("run_id", "row_id"),
        Index(None, "run_id", "status"),
        Index(None, "run_id", "latency_ms"),  # latency percentiles read at their ranks
    )


class Judgment(Base):
    """One judge verdict on one generation; ``sample_index`` allows k repeated judgments."""

    __tablename__ = "judgments"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    generation_id: Mapped[int] = mapped_column(ForeignKey("generations.id", ondelete="CASCADE"))
    group_id: Mapped[int] = mapped_column(ForeignKey("run_groups.id", ondelete="CASCADE"))
    rubric_version_id: Mapped[int] = mapped_column(
        ForeignKey("rubric_versions.id", ondelete="RESTRICT")
    )
    judge_id: Mapped[int] = mapped_column(ForeignKey("model_endpoints.id", ondelete="RESTRICT"))
    sample_index: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(30))  # scored | judge_failed | judge_unparseable
    score: Mapped[float | None] = mapped_column(Float)  # None unless status == scored
    # The judge's own score; ``score`` is the final one, after the version's checks combine.
    judge_score: Mapped[float | None] = mapped_column(Float)
    reasoning: Mapped[str | None] = mapped_column(Text)
    raw_output: Mapped[str | None] = mapped_column(Text)
    checks: Mapped[list[Any] | None] = mapped_column(JSONType)  # deterministic check results
    # Pairwise rubrics only: the baseline output this one was compared with, where the
    # candidate stood in the prompt ("A" or "B"), and what the judge preferred
    # ("candidate" | "baseline" | "tie"). Both orders are judged: see rubrics/pairwise.py.
    opponent_generation_id: Mapped[int | None] = mapped_column(
        ForeignKey("generations.id", ondelete="SET NULL")
    )
    candidate_position: Mapped[str | None] = mapped_column(String(1))
    preference: Mapped[str | None] = mapped_column(String(10))
    error: Mapped[str | None] = mapped_column(Text)
    latency_ms: Mapped[float | None] = mapped_column(Float)
    input_tokens: Mapped[int | None] = mapped_column(Integer)
    output_tokens: Mapped[int | None] = mapped_column(Integer)
    cost_usd: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    __table_args__ = (
        UniqueConstraint("generation_id", "rubric_version_id", "judge_id", "sample_index"),
        Index(None, "group_id", "status"),
    )


class ResponseCache(Base):
    """Provider responses keyed by (endpoint, model, params, messages, tools): never pay twice."""

    __tablename__ = "response_cache"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    endpoint_id: Mapped[int | None] = mapped_column(
        ForeignKey("model_endpoints.id", ondelete="CASCADE")
    )
    response: Mapped[dict[str, Any]] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    __table_args__ = (Index(None, "endpoint_id"),)


# --- gate ------------------------------------------------------------------------------------


class GatePolicy(Base):
    __tablename__ = "gate_policies"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    body: Mapped[dict[str, Any]] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Verdict(Base):
    """The decision reached for one candidate run of a group, with its evidence."""

    __tablename__ = "verdicts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    group_id: Mapped[int] = mapped_column(ForeignKey("run_groups.id", ondelete="CASCADE"))
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    policy: Mapped[dict[str, Any]] = mapped_column(JSONType)  # the policy as applied
    decision: Mapped[str] = mapped_column(String(20))  # PASS | FAIL | INCONCLUSIVE
    reasons: Mapped[list[Any]] = mapped_column(JSONType, default=list)
    evidence: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    __table_args__ = (Index(None, "group_id", "created_at"),)


# --- access ----------------------------------------------------------------------------------


class ApiToken(Base):
    """A credential for the web app and its API. Only the SHA-256 of the token is kept: the
    plaintext is shown once, at creation, and cannot be read back from here."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(8), index=True)  # shown in lists, finds the row
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


# --- human labels and calibration ------------------------------------------------------------


class LabelSet(Base):
    """Human judgments on rows of one dataset, imported from one file."""

    __tablename__ = "label_sets"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(20))  # pointwise | pairwise
    source: Mapped[str | None] = mapped_column(Text)
    label_count: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    __table_args__ = (Index(None, "dataset_id"),)


class Label(Base):
    """One human label: a score for the row's output, or a preference between two outputs."""

    __tablename__ = "labels"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    label_set_id: Mapped[int] = mapped_column(ForeignKey("label_sets.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)  # line order in the imported file
    row_id: Mapped[int] = mapped_column(ForeignKey("dataset_rows.id", ondelete="CASCADE"))
    # Pointwise: the output the human scored (None: the row's reference) and the score.
    output: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    score: Mapped[float | None] = mapped_column(Float)
    # Pairwise: two outputs and which one the human preferred ("a" | "b" | "tie").
    output_a: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    output_b: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    preferred: Mapped[str | None] = mapped_column(String(10))
    annotator: Mapped[str | None] = mapped_column(String(200))
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSONType, default=dict)

    __table_args__ = (
        UniqueConstraint("label_set_id", "position"),
        Index(None, "row_id"),
    )


class Calibration(Base):
    """How well one judge under one rubric version agrees with one label set."""

    __tablename__ = "calibrations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    rubric_version_id: Mapped[int] = mapped_column(
        ForeignKey("rubric_versions.id", ondelete="CASCADE")
    )
    judge_id: Mapped[int] = mapped_column(ForeignKey("model_endpoints.id", ondelete="CASCADE"))
    label_set_id: Mapped[int] = mapped_column(ForeignKey("label_sets.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(20))  # pointwise | pairwise
    judge_samples: Mapped[int] = mapped_column(Integer, default=1)
    labels_total: Mapped[int] = mapped_column(Integer, default=0)
    labels_judged: Mapped[int] = mapped_column(Integer, default=0)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)  # with intervals
    # Per label: the judge's score(s) or preference(s), reasoning, failures.
    results: Mapped[list[Any]] = mapped_column(JSONType, default=list)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    __table_args__ = (Index(None, "rubric_version_id", "judge_id", "created_at"),)


# --- deployment ------------------------------------------------------------------------------


class Alias(Base):
    """A deployment name (``prod-chat``) the proxy routes to its current model."""

    __tablename__ = "aliases"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    endpoint_id: Mapped[int] = mapped_column(ForeignKey("model_endpoints.id", ondelete="RESTRICT"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class AliasEvent(Base):
    """One change of an alias: who, when, why, on what evidence, and what it pointed to before."""

    __tablename__ = "alias_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    alias_id: Mapped[int] = mapped_column(ForeignKey("aliases.id", ondelete="CASCADE"))
    action: Mapped[str] = mapped_column(String(20))  # set | promote | rollback
    endpoint_id: Mapped[int] = mapped_column(ForeignKey("model_endpoints.id", ondelete="RESTRICT"))
    previous_endpoint_id: Mapped[int | None] = mapped_column(
        ForeignKey("model_endpoints.id", ondelete="SET NULL")
    )
    actor: Mapped[str] = mapped_column(String(200))
    reason: Mapped[str | None] = mapped_column(Text)
    group_id: Mapped[int | None] = mapped_column(ForeignKey("run_groups.id", ondelete="SET NULL"))
    decision: Mapped[str | None] = mapped_column(String(20))  # the gate verdict relied on
    forced: Mapped[bool] = mapped_column(Boolean, default=False)
    evidence: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    __table_args__ = (Index(None, "alias_id", "created_at"),)
