"""Shared fixtures. Every store-backed test runs on SQLite and, where reachable, on Postgres.

Postgres comes from ``ASSAY_TEST_POSTGRES_URL`` (set by ``.ci/run`` and ``make test``); each
test gets a schema of its own, dropped afterwards. Without a reachable server the Postgres
variants are skipped, and the summary says so; under ``CI=true`` they fail instead.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from typer.testing import CliRunner, Result

from assay.cli import app
from assay.store import Store, open_store

DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
POSTGRES_URL = os.environ.get("ASSAY_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL)


def _postgres_unreachable_reason() -> str | None:
    try:
        engine = create_engine(POSTGRES_URL, connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
    except Exception as exc:
        url = make_url(POSTGRES_URL).render_as_string(hide_password=True)
        return f"no PostgreSQL server reachable at {url} ({type(exc).__name__})"
    return None


_PG_SKIP_REASON = _postgres_unreachable_reason()


@pytest.fixture(scope="session")
def postgres_available() -> bool:
    return _PG_SKIP_REASON is None


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database URL: a SQLite file, or a private schema on Postgres."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'assay.db'}"
        return
    if _PG_SKIP_REASON:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{_PG_SKIP_REASON}; CI must provide one")
        pytest.skip(_PG_SKIP_REASON)
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_URL)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = make_url(POSTGRES_URL).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def assay_home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    return home


@pytest.fixture
def store(database_url: str, assay_home: Path) -> Iterator[Store]:
    with open_store(database_url, home=assay_home) as opened:
        yield opened


@dataclass
class Cli:
    """Runs ``assay`` in-process through Typer's runner, against the test's database."""

    env: dict[str, str]

    def __call__(self, *args: str, input: str | None = None) -> Result:
        runner = CliRunner()
        return runner.invoke(app, list(args), env=self.env, input=input, catch_exceptions=False)


@pytest.fixture
def cli(database_url: str, assay_home: Path, monkeypatch: pytest.MonkeyPatch) -> Cli:
    env = {"ASSAY_DATABASE_URL": database_url, "ASSAY_HOME": str(assay_home), "COLUMNS": "200"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return Cli(env)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _PG_SKIP_REASON:
        terminalreporter.write_line(
            f"Postgres tests SKIPPED: {_PG_SKIP_REASON}. Set ASSAY_TEST_POSTGRES_URL to run them.",
            yellow=True,
        )


from support.fixtures import *  # noqa: E402, F403
