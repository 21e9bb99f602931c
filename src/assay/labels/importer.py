"""Streaming import of human labels (JSONL) for the rows of one dataset.

One line per label. Pointwise (a human score for one output)::

    {"row": 3, "score": 4, "output": "the text the human scored", "annotator": "ann1"}

Pairwise (a human preference between two outputs)::

    {"row_id": 812, "output_a": "...", "output_b": {"role": "assistant", "content": "..."},
     "preferred": "b"}

``row`` is the 0-based position in the dataset, ``row_id`` the database id of the row; give
exactly one. ``output`` (optional; default the row's reference), ``output_a`` and ``output_b``
are text or an assistant message. ``preferred`` is ``"a"``, ``"b"`` or ``"tie"`` (``"A"``,
``"B"``, ``1`` and ``2`` are read as a and b). ``annotator`` (text) and ``metadata`` (an
object) are optional. The kind is read from the first line; every line must be that kind.

Every bad line is reported with its line number, field and what was expected, and then
nothing is stored: the whole import is one transaction.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from pydantic import BaseModel
from sqlalchemy import Connection, insert, select, update
from sqlalchemy.exc import IntegrityError

from assay.datasets.formats import LineError, check_message, clean_reference, load_line
from assay.datasets.importer import MAX_FILE_LINES
from assay.errors import AlreadyExistsError, ImportFileError, LimitExceededError, ValidationError
from assay.store import Store
from assay.store.models import Dataset, DatasetRow, Label, LabelSet

BATCH_LABELS = 1000
MAX_REPORTED_ERRORS = 20
KINDS = ("pointwise", "pairwise")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")
_PREFERENCES: dict[Any, str] = {"a": "a", "b": "b", "tie": "tie", 1: "a", 2: "b"}
_POINTWISE_KEYS = frozenset({"row", "row_id", "score", "output", "annotator", "metadata"})
_PAIRWISE_KEYS = frozenset(
    {"row", "row_id", "output_a", "output_b", "preferred", "annotator", "metadata"}
)

ProgressCallback = Callable[[int, int], None]
"""Called as ``progress(bytes_read, total_bytes)`` after each batch."""


class LabelImportReport(BaseModel):
    name: str
    dataset: str
    kind: str
    labels: int
    source: str


class _ParsedLabel(BaseModel):
    line: int
    row: int | None  # position
    row_id: int | None
    values: dict[str, Any]


def check_label_set_name(name: str) -> str:
    if not _NAME.fullmatch(name or ""):
        raise ValidationError(
            f"invalid label set name {name!r}: use 1-200 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit (pass --name)"
        )
    return name


def import_labels(
    store: Store,
    path: str | Path,
    dataset: str,
    *,
    name: str | None = None,
    progress: ProgressCallback | None = None,
) -> LabelImportReport:
    """Import a label file for ``dataset`` as a new label set (default name: the file stem)."""
    file = Path(path)
    if not file.exists():
        raise ImportFileError(f"label file not found: {path}")
    if file.is_dir():
        raise ImportFileError(f"label file {path} is a directory, not a file")
    name = check_label_set_name(name if name is not None else file.stem)
    total = file.stat().st_size
    with store.engine.begin() as conn:
        found = conn.execute(
            select(Dataset.id, Dataset.row_count).where(Dataset.name == dataset)
        ).first()
        if found is None:
            from assay.store.lookup import not_found

            names = conn.execute(select(Dataset.name)).scalars()
            raise not_found("dataset", dataset, names, "assay dataset list")
        if conn.execute(select(LabelSet.id).where(LabelSet.name == name)).first():
            raise AlreadyExistsError(
                f"a label set named {name!r} already exists; pass --name to choose another"
            )
        try:
            set_id = conn.execute(
                insert(LabelSet).values(
                    name=name,
                    dataset_id=found.id,
                    kind="pointwise",
                    source=file.name,
                    label_count=0,
                )
            ).inserted_primary_key[0]
        except IntegrityError as exc:
            raise AlreadyExistsError(f"a label set named {name!r} already exists") from exc
        job = _Import(conn, file, int(set_id), found.id, found.row_count)
        with file.open("rb") as handle:
            job.read(handle, total, progress)
        conn.execute(
            update(LabelSet)
            .where(LabelSet.id == set_id)
            .values(kind=job.kind, label_count=job.stored)
        )
    return LabelImportReport(
        name=name, dataset=dataset, kind=str(job.kind), labels=job.stored, source=file.name
    )


class _Import:
    """One import while the file streams through it: parse, resolve rows by batch, insert."""

    def __init__(
        self, conn: Connection, path: Path, set_id: int, dataset_id: int, row_count: int
    ) -> None:
        self.conn, self.path, self.set_id = conn, path, set_id
        self.dataset_id, self.row_count = dataset_id, row_count
        self.kind: str | None = None
        self.kind_line = 0
        self.stored = 0
        self.position = 0
        self.errors: list[str] = []
        self.error_count = 0
        self.pending: list[_ParsedLabel] = []

    def read(self, file: IO[bytes], total: int, progress: ProgressCallback | None) -> None:
        done = 0
        for line_no, raw in enumerate(file, start=1):
            done += len(raw)
            if raw.isspace():
                continue
            if line_no > MAX_FILE_LINES:
                raise LimitExceededError(
                    f"{self.path.name} has more than {MAX_FILE_LINES:,} lines, the maximum "
                    "for one label import; split the file"
                )
            try:
                self.pending.append(self._parse(load_line(raw), line_no))
            except LineError as exc:
                self._error(line_no, exc.reason)
            if len(self.pending) >= BATCH_LABELS:
                self._flush()
                if progress is not None:
                    progress(done, total)
        self._flush()
        if progress is not None:
            progress(total, total)
        if self.error_count:
            shown = "\n".join(self.errors)
            more = self.error_count - len(self.errors)
            tail = f"\n... and {more} more" if more > 0 else ""
            raise ImportFileError(
                f"{self.path.name}: {self.error_count} invalid line(s); nothing was imported:\n"
                f"{shown}{tail}"
            )
        if self.stored == 0:
            raise ImportFileError(f"{self.path.name} holds no labels")

    def _error(self, line_no: int, reason: str) -> None:
        self.error_count += 1
        if len(self.errors) < MAX_REPORTED_ERRORS:
            self.errors.append(f"{self.path.name} line {line_no}: {reason}")

    # --- one line ----------------------------------------------------------------------

    def _parse(self, obj: dict[str, Any], line_no: int) -> _ParsedLabel:
        kind = _kind_of(obj)
        if self.kind is None:
            self.kind, self.kind_line = kind, line_no
        elif kind != self.kind:
            raise LineError(
                f"a {kind} label, but line {self.kind_line} made this a {self.kind} label "
                f"file (expected {_kind_fields(self.kind)})"
            )
        known = _POINTWISE_KEYS if kind == "pointwise" else _PAIRWISE_KEYS
        unknown = sorted(set(obj) - known)
        if unknown:
            raise LineError(
                f"{unknown[0]}: unknown field for a {kind} label "
                f"(known: {', '.join(sorted(known))})"
            )
        position, row_id = _row_reference(obj)
        values: dict[str, Any] = {
            "annotator": _annotator(obj.get("annotator")),
            "metadata": _metadata(obj.get("metadata")),
        }
        if kind == "pointwise":
            values["score"] = _score(obj["score"])
            values["output"] = _output(obj.get("output"), "output", required=False)
        else:
            values["output_a"] = _output(obj.get("output_a"), "output_a", required=True)
            values["output_b"] = _output(obj.get("output_b"), "output_b", required=True)
            values["preferred"] = _preferred(obj["preferred"])
        return _ParsedLabel(line=line_no, row=position, row_id=row_id, values=values)

    # --- a batch -----------------------------------------------------------------------

    def _flush(self) -> None:
        labels, self.pending = self.pending, []
        if not labels:
            return
        positions = {x.row for x in labels if x.row is not None}
        ids = {x.row_id for x in labels if x.row_id is not None}
        by_position: dict[int, int] = {}
        known_ids: set[int] = set()
        rows = DatasetRow.__table__
        if positions:
            by_position = dict(
                self.conn.execute(
                    select(rows.c.position, rows.c.id).where(
                        rows.c.dataset_id == self.dataset_id, rows.c.position.in_(positions)
                    )
                ).all()
            )
        if ids:
            known_ids = set(
                self.conn.execute(
                    select(rows.c.id).where(
                        rows.c.dataset_id == self.dataset_id, rows.c.id.in_(ids)
                    )
                ).scalars()
            )
        params = []
        for label in labels:
            if label.row is not None:
                row_id = by_position.get(label.row)
                if row_id is None:
                    self._error(
                        label.line,
                        f"row: the dataset has no row {label.row} (expected a position "
                        f"0-{self.row_count - 1})",
                    )
                    continue
            else:
                row_id = label.row_id
                if row_id not in known_ids:
                    self._error(label.line, f"row_id: no row with id {row_id} in this dataset")
                    continue
            params.append(
                {
                    "label_set_id": self.set_id,
                    "position": self.position,
                    "row_id": row_id,
                    "output": None,
                    "score": None,
                    "output_a": None,
                    "output_b": None,
                    "preferred": None,
                    **label.values,
                }
            )
            self.position += 1
        if params and not self.error_count:  # after an error nothing will be kept anyway
            self.conn.execute(insert(Label.__table__), params)
            self.stored += len(params)


# --- fields ------------------------------------------------------------------------------------


def _kind_of(obj: dict[str, Any]) -> str:
    pointwise = "score" in obj
    pairwise = "preferred" in obj
    if pointwise and pairwise:
        raise LineError(
            "has both 'score' (a pointwise label) and 'preferred' (a pairwise label); give one"
        )
    if pointwise:
        return "pointwise"
    if pairwise:
        return "pairwise"
    raise LineError(
        "missing 'score' (a pointwise label) or 'preferred' (a pairwise label, with "
        "'output_a' and 'output_b')"
    )


def _kind_fields(kind: str) -> str:
    return "'score'" if kind == "pointwise" else "'output_a', 'output_b' and 'preferred'"


def _row_reference(obj: dict[str, Any]) -> tuple[int | None, int | None]:
    if ("row" in obj) == ("row_id" in obj):
        raise LineError(
            "give exactly one of 'row' (0-based position in the dataset) or 'row_id' "
            "(the row's database id)"
        )
    field = "row" if "row" in obj else "row_id"
    value = obj[field]
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise LineError(f"{field}: expected a non-negative integer, got {_show(value)}")
    return (value, None) if field == "row" else (None, value)


def _score(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise LineError(f"score: expected a number, got {_show(value)}")
    if not math.isfinite(value):
        raise LineError(f"score: expected a finite number, got {value}")
    return float(value)


def _preferred(value: Any) -> str:
    key = value.strip().lower() if isinstance(value, str) else value
    if isinstance(value, bool) or key not in _PREFERENCES:
        raise LineError(
            f'preferred: expected "a", "b" or "tie" (or "A", "B", 1, 2), got {_show(value)}'
        )
    return _PREFERENCES[key]


def _output(value: Any, field: str, *, required: bool) -> dict[str, Any] | None:
    if value is None:
        if required:
            raise LineError(f"{field}: missing (expected text or an assistant message)")
        return None
    if isinstance(value, str):
        return {"role": "assistant", "content": value}
    if isinstance(value, dict):
        check_message(value, field)
        if value.get("role") != "assistant":
            raise LineError(f"{field}.role: expected 'assistant', got {_show(value.get('role'))}")
        return clean_reference(value)
    raise LineError(f"{field}: expected text or an assistant message, got {_show(value)}")


def _annotator(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > 200:
        raise LineError(f"annotator: expected text of at most 200 characters, got {_show(value)}")
    return value


def _metadata(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise LineError(f"metadata: expected an object, got {_show(value)}")
    return value


def _show(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
