"""Domain exceptions. Messages are written for the user: what went wrong, where, what to do.

The shells translate them in one place each: the CLI into an exit code, the web app into an
HTTP status.
"""

from __future__ import annotations


class AssayError(Exception):
    """Base class for every error Assay reports to a user."""


class NotFoundError(AssayError):
    """A named thing (dataset, rubric, ...) does not exist."""


class AlreadyExistsError(AssayError):
    """A name is already taken."""


class ValidationError(AssayError):
    """Input was rejected; nothing was written."""


class ImportFileError(ValidationError):
    """A JSONL file could not be imported; nothing was written."""


class LimitExceededError(ValidationError):
    """A size limit (rows, lines) was exceeded."""


class TemplateError(ValidationError):
    """A rubric template is invalid or tried to leave the sandbox."""


class StoreError(AssayError):
    """The database could not be opened, migrated or written."""
