"""Who made a deployment change: recorded with every alias event, so history answers "who"."""

from __future__ import annotations

import getpass
import os

from assay.errors import ValidationError

MAX_ACTOR = 200  # the width of ``alias_events.actor``


def resolve_actor(explicit: str | None = None) -> str:
    """``explicit`` (``--actor``), else ``ASSAY_ACTOR``, else the operating-system user name.

    CI pipelines set ``ASSAY_ACTOR`` (e.g. to the pipeline and commit) so their promotions are
    told apart from a person's."""
    for candidate in (explicit, os.environ.get("ASSAY_ACTOR")):
        if candidate is not None and candidate.strip():
            actor = candidate.strip()
            break
    else:
        try:
            actor = getpass.getuser()
        except (KeyError, OSError):  # no passwd entry (some containers) and no USER variable
            actor = "unknown"
    if len(actor) > MAX_ACTOR:
        raise ValidationError(f"actor {actor[:40]!r}... is longer than {MAX_ACTOR} characters")
    return actor
