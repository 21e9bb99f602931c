"""The store: migrations apply on first use, match the models, and reopen without work."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text

from assay.errors import StoreError
from assay.store import Store, open_store
from assay.store.migrate import current_revision, head_revision
from assay.store.models import Base


def test_migrations_reach_head_and_match_models(store: Store) -> None:
    assert current_revision(store.engine) == head_revision()
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == [], f"models and migrations disagree: {diff}"


def test_every_entity_has_a_table(store: Store) -> None:
    tables = set(inspect(store.engine).get_table_names())
    expected = {
        "inferences", "inference_tags", "datasets", "dataset_rows", "rubrics", "rubric_versions",
        "model_endpoints", "eval_definitions", "run_groups", "run_group_rows", "runs",
        "generations", "judgments", "response_cache", "gate_policies", "verdicts",
    }  # fmt: skip
    assert expected <= tables


def test_head_constant_matches_alembic() -> None:
    from assay.store.migrate import HEAD

    assert head_revision() == HEAD, "update HEAD in store/migrate.py with each new migration"


def test_reopening_is_idempotent(database_url: str, tmp_path: Path) -> None:
    for _ in range(2):
        with open_store(database_url, home=tmp_path) as store:
            assert current_revision(store.engine) == head_revision()


def test_sqlite_default_lives_under_assay_home_in_wal_mode(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ASSAY_DATABASE_URL", raising=False)
    monkeypatch.setenv("ASSAY_HOME", str(tmp_path / "h"))
    with open_store() as store:
        assert store.dialect == "sqlite"
        with store.engine.connect() as conn:
            assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
            assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
    assert (tmp_path / "h" / "assay.db").exists()


def test_filters_are_indexed(store: Store) -> None:
    insp = inspect(store.engine)
    indexed = {tuple(ix["column_names"]) for ix in insp.get_indexes("inferences")}
    for column in ("environment", "task", "provider", "model", "status_code", "success"):
        assert (column, "started_at") in indexed
    row_indexes = {tuple(ix["column_names"]) for ix in insp.get_indexes("dataset_rows")}
    assert ("dataset_id", "content_hash") in row_indexes


def test_unsupported_url_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="unsupported database URL"):
        open_store("mysql://localhost/x", home=tmp_path)


def test_unreachable_postgres_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="cannot open the database"):
        open_store("postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=2", home=tmp_path)
