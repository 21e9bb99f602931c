"""The demo's own ASSAY_HOME: created fresh on every run, and never a folder the demo did not
make.

A folder the demo made carries a marker file; only such a folder is ever wiped. An existing
folder without the marker (a user's own data, a typo in ``--home``) is refused, with nothing
touched.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from assay.errors import ValidationError

MARKER = ".assay-demo"
DEFAULT_HOME = Path("~/.assay-demo")
_MARKER_TEXT = "Made by `assay demo`: the next `assay demo` with this --home deletes this folder.\n"


def prepare_home(path: str | Path) -> Path:
    """An empty demo home at ``path`` (absolute), wiping the previous demo's if there is one.

    Raises ``ValidationError`` when ``path`` exists but is not a demo home: a file, or a
    folder without the marker that is not empty.
    """
    home = Path(path).expanduser().resolve()
    if home.exists():
        if not home.is_dir():
            raise ValidationError(f"--home {home} is a file, not a folder; choose another path")
        if (home / MARKER).is_file():
            shutil.rmtree(home)
        elif any(home.iterdir()):
            raise ValidationError(
                f"--home {home} already exists and was not made by `assay demo` (it has no "
                f"{MARKER} marker file), so the demo will not delete it: choose another "
                "folder, or remove this one yourself"
            )
    home.mkdir(parents=True, exist_ok=True)
    (home / MARKER).write_text(_MARKER_TEXT, encoding="utf-8")
    return home
