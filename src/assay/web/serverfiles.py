"""Files on the server that an API request may name: only inside one folder of ASSAY_HOME.

The API is reachable by other machines once tokens protect it; a request naming any path
would let a client read (or probe for) files the server's user can read. So a path in a
request is resolved against ``ASSAY_HOME/<folder>``, symlinks followed, and refused unless it
stays inside.
"""

from __future__ import annotations

from pathlib import Path

from assay.errors import ValidationError


def server_file(home: Path, folder: str, given: str, what: str) -> Path:
    """``given`` (relative to ``home/folder``, or absolute inside it) as a resolved path."""
    root = (home / folder).resolve()
    if not given.strip() or "\x00" in given:
        raise ValidationError(f"{what}: expected a file name under {root}")
    resolved = (root / given).resolve()
    if not resolved.is_relative_to(root) or resolved == root:
        raise ValidationError(
            f"{what} {given[:200]!r}: the API reads files only under ASSAY_HOME/{folder} on "
            f"the server ({root}); put the file there and name it relative to that folder"
        )
    return resolved
