"""Deterministic checks in rubrics: a version stores how its checks combine with the judge's
score, and a judgment keeps the judge's own score beside the final one.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("rubric_versions") as batch_op:
        batch_op.add_column(
            sa.Column(
                "combine",
                sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
                nullable=True,
            )
        )
    with op.batch_alter_table("judgments") as batch_op:
        batch_op.add_column(sa.Column("judge_score", sa.Float(), nullable=True))
    # Judgments made before checks existed: the final score was the judge's own.
    op.execute("UPDATE judgments SET judge_score = score WHERE score IS NOT NULL")


def downgrade() -> None:
    with op.batch_alter_table("judgments") as batch_op:
        batch_op.drop_column("judge_score")
    with op.batch_alter_table("rubric_versions") as batch_op:
        batch_op.drop_column("combine")
