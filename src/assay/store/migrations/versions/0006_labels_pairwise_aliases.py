"""Human labels and calibrations, pairwise judgments, deployment aliases and their history,
training-set row formats, and a flag for captured responses stored truncated.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-27
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
BIGINT_PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("inferences") as batch_op:
        batch_op.add_column(
            sa.Column("response_truncated", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    with op.batch_alter_table("datasets") as batch_op:
        batch_op.add_column(sa.Column("row_format", sa.String(length=20), nullable=True))
    with op.batch_alter_table("judgments") as batch_op:
        batch_op.add_column(sa.Column("opponent_generation_id", BIGINT_PK, nullable=True))
        batch_op.add_column(sa.Column("candidate_position", sa.String(length=1), nullable=True))
        batch_op.add_column(sa.Column("preference", sa.String(length=10), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_judgments_opponent_generation_id_generations"),
            "generations",
            ["opponent_generation_id"],
            ["id"],
            ondelete="SET NULL",
        )

    op.create_table(
        "label_sets",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("dataset_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("source", sa.Text(), nullable=True),
        sa.Column("label_count", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["dataset_id"],
            ["datasets.id"],
            name=op.f("fk_label_sets_dataset_id_datasets"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_label_sets")),
        sa.UniqueConstraint("name", name=op.f("uq_label_sets_name")),
    )
    op.create_index(op.f("ix_label_sets_dataset_id"), "label_sets", ["dataset_id"])

    op.create_table(
        "labels",
        sa.Column("id", BIGINT_PK, nullable=False),
        sa.Column("label_set_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("row_id", BIGINT_PK, nullable=False),
        sa.Column("output", JSON, nullable=True),
        sa.Column("score", sa.Float(), nullable=True),
        sa.Column("output_a", JSON, nullable=True),
        sa.Column("output_b", JSON, nullable=True),
        sa.Column("preferred", sa.String(length=10), nullable=True),
        sa.Column("annotator", sa.String(length=200), nullable=True),
        sa.Column("metadata", JSON, nullable=False),
        sa.ForeignKeyConstraint(
            ["label_set_id"],
            ["label_sets.id"],
            name=op.f("fk_labels_label_set_id_label_sets"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["row_id"],
            ["dataset_rows.id"],
            name=op.f("fk_labels_row_id_dataset_rows"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_labels")),
        sa.UniqueConstraint(
            "label_set_id", "position", name=op.f("uq_labels_label_set_id_position")
        ),
    )
    op.create_index(op.f("ix_labels_row_id"), "labels", ["row_id"])

    op.create_table(
        "calibrations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("rubric_version_id", sa.Integer(), nullable=False),
        sa.Column("judge_id", sa.Integer(), nullable=False),
        sa.Column("label_set_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("judge_samples", sa.Integer(), nullable=False),
        sa.Column("labels_total", sa.Integer(), nullable=False),
        sa.Column("labels_judged", sa.Integer(), nullable=False),
        sa.Column("metrics", JSON, nullable=False),
        sa.Column("results", JSON, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["rubric_version_id"],
            ["rubric_versions.id"],
            name=op.f("fk_calibrations_rubric_version_id_rubric_versions"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["judge_id"],
            ["model_endpoints.id"],
            name=op.f("fk_calibrations_judge_id_model_endpoints"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["label_set_id"],
            ["label_sets.id"],
            name=op.f("fk_calibrations_label_set_id_label_sets"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_calibrations")),
    )
    op.create_index(
        op.f("ix_calibrations_rubric_version_id_judge_id_created_at"),
        "calibrations",
        ["rubric_version_id", "judge_id", "created_at"],
    )

    op.create_table(
        "aliases",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("endpoint_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["endpoint_id"],
            ["model_endpoints.id"],
            name=op.f("fk_aliases_endpoint_id_model_endpoints"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_aliases")),
        sa.UniqueConstraint("name", name=op.f("uq_aliases_name")),
    )

    op.create_table(
        "alias_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("alias_id", sa.Integer(), nullable=False),
        sa.Column("action", sa.String(length=20), nullable=False),
        sa.Column("endpoint_id", sa.Integer(), nullable=False),
        sa.Column("previous_endpoint_id", sa.Integer(), nullable=True),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("group_id", sa.Integer(), nullable=True),
        sa.Column("decision", sa.String(length=20), nullable=True),
        sa.Column("forced", sa.Boolean(), nullable=False),
        sa.Column("evidence", JSON, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["alias_id"],
            ["aliases.id"],
            name=op.f("fk_alias_events_alias_id_aliases"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["endpoint_id"],
            ["model_endpoints.id"],
            name=op.f("fk_alias_events_endpoint_id_model_endpoints"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["previous_endpoint_id"],
            ["model_endpoints.id"],
            name=op.f("fk_alias_events_previous_endpoint_id_model_endpoints"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["group_id"],
            ["run_groups.id"],
            name=op.f("fk_alias_events_group_id_run_groups"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alias_events")),
    )
    op.create_index(
        op.f("ix_alias_events_alias_id_created_at"), "alias_events", ["alias_id", "created_at"]
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_alias_events_alias_id_created_at"), table_name="alias_events")
    op.drop_table("alias_events")
    op.drop_table("aliases")
    op.drop_index(
        op.f("ix_calibrations_rubric_version_id_judge_id_created_at"), table_name="calibrations"
    )
    op.drop_table("calibrations")
    op.drop_index(op.f("ix_labels_row_id"), table_name="labels")
    op.drop_table("labels")
    op.drop_index(op.f("ix_label_sets_dataset_id"), table_name="label_sets")
    op.drop_table("label_sets")
    with op.batch_alter_table("judgments") as batch_op:
        batch_op.drop_constraint(
            batch_op.f("fk_judgments_opponent_generation_id_generations"), type_="foreignkey"
        )
        batch_op.drop_column("preference")
        batch_op.drop_column("candidate_position")
        batch_op.drop_column("opponent_generation_id")
    with op.batch_alter_table("datasets") as batch_op:
        batch_op.drop_column("row_format")
    with op.batch_alter_table("inferences") as batch_op:
        batch_op.drop_column("response_truncated")
