"""The persistent store: SQLite by default, Postgres for a team server."""

from assay.store.db import Store, open_store

__all__ = ["Store", "open_store"]
