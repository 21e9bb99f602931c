"""Uploaded files, streamed to a temporary file with a size cap, then handed to a service that
reads paths (the importers stream from disk and validate every line)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from fastapi import UploadFile

from assay.errors import LimitExceededError, ValidationError

MAX_UPLOAD_BYTES = int(os.environ.get("ASSAY_MAX_UPLOAD_MB", "512")) * 1024 * 1024
UPLOAD_SUFFIXES = (".jsonl", ".ndjson", ".json")
CHUNK = 1024 * 1024
MAX_NAME_BYTES = 200  # file systems refuse names above 255 bytes


def check_upload_name(filename: str | None) -> str:
    """Only a bare file name with a JSONL suffix; the name is used in messages, never as a path."""
    name = Path(filename or "").name
    if len(name.encode()) > MAX_NAME_BYTES or any(ord(c) < 32 for c in name):
        raise ValidationError(
            f"upload file name {name[:60]!r}: at most {MAX_NAME_BYTES} bytes, no control "
            "characters; rename the file"
        )
    if not name.lower().endswith(UPLOAD_SUFFIXES):
        raise ValidationError(
            f"upload {name or '(no name)'!r}: expected a JSONL file ({', '.join(UPLOAD_SUFFIXES)})"
        )
    return name


@contextmanager
def saved_upload(upload: UploadFile, max_bytes: int = MAX_UPLOAD_BYTES) -> Iterator[Path]:
    """The upload on disk under its own name (so import errors name the user's file), removed
    afterwards. Refuses files above ``max_bytes`` without keeping any of them."""
    name = check_upload_name(upload.filename)
    with tempfile.TemporaryDirectory(prefix="assay-upload-") as folder:
        path = Path(folder) / name
        written = 0
        with path.open("wb") as out:
            while chunk := upload.file.read(CHUNK):
                written += len(chunk)
                if written > max_bytes:
                    raise LimitExceededError(
                        f"upload {name!r} is larger than the {max_bytes // (1024 * 1024)} MiB "
                        "limit (set ASSAY_MAX_UPLOAD_MB to change it, or import it with "
                        "`assay dataset import`)"
                    )
                out.write(chunk)
        yield path
