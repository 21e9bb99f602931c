"""Settings read from the environment (``ASSAY_*``), with defaults under ``~/.assay``."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Settings:
    home: Path
    database_url: str

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


def load_settings(home: str | Path | None = None, database_url: str | None = None) -> Settings:
    """Explicit arguments win over ``ASSAY_HOME`` / ``ASSAY_DATABASE_URL``; then the defaults."""
    default_home = Path.home() / ".assay"
    resolved_home = Path(home or os.environ.get("ASSAY_HOME") or default_home).expanduser()
    url = database_url or os.environ.get("ASSAY_DATABASE_URL") or ""
    if not url:
        url = f"sqlite:///{resolved_home / 'assay.db'}"
    return Settings(home=resolved_home, database_url=url)
