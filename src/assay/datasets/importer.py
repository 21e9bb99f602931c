"""Streaming import of a JSONL file into a new dataset.

The file is read line by line and rows are inserted in batches (SQLAlchemy Core executemany),
so memory stays flat whatever the file size: nothing holds every row, and duplicates are found
by asking the database (the rows already inserted in this transaction) rather than by keeping
a set of hashes. The whole import is one transaction: a failure at any point, a limit check
included, leaves nothing behind.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import IO

from sqlalchemy import Connection, insert, select, update
from sqlalchemy.exc import IntegrityError, OperationalError

from assay.datasets.formats import (
    FORMAT_LABELS,
    LineError,
    ParsedRow,
    line_format,
    load_line,
    parse_object,
)
from assay.datasets.service import (
    DatasetInfo,
    ImportReport,
    LineIssue,
    check_type,
    count_rows,
    dataset_by_name,
)
from assay.errors import (
    AlreadyExistsError,
    ImportFileError,
    LimitExceededError,
    StoreError,
    ValidationError,
)
from assay.store import Store
from assay.store.db import describe_failure
from assay.store.models import Dataset, DatasetRow

MAX_EVAL_ROWS = 10_000
MAX_TRAINING_ROWS = 1_000_000
MAX_FILE_LINES = 1_000_000
MAX_REPORTED_ERRORS = 10
MAX_NAME_LENGTH = 200
BATCH_ROWS = 1000
BATCH_BYTES = 8 * 1024 * 1024  # a few huge rows (images) also flush early

ProgressCallback = Callable[[int, int], None]
"""Called as ``progress(bytes_read, total_bytes)`` after each batch."""

_datasets = Dataset.__table__
_rows = DatasetRow.__table__

# None is stored as SQL NULL (the models' JSON type says so), so ``reference IS NULL`` works.
_INSERT_ROWS = insert(_rows)


def max_rows(type: str) -> int:
    """The row limit of a dataset type (read at call time, so tests can lower it)."""
    return MAX_EVAL_ROWS if type == "eval" else MAX_TRAINING_ROWS


def import_dataset(
    store: Store,
    path: str | Path,
    name: str,
    type: str = "eval",
    *,
    limit: int | None = None,
    dedupe: bool = False,
    progress: ProgressCallback | None = None,
) -> ImportReport:
    """Import a JSONL file (chat or source-backed format) as a new dataset named ``name``.

    Invalid lines are skipped and reported (the first ``MAX_REPORTED_ERRORS`` with their
    reason); the import fails, writing nothing, when no line is valid, when the file mixes
    the two formats, or when it exceeds a limit (``MAX_EVAL_ROWS`` / ``MAX_TRAINING_ROWS``
    rows, ``MAX_FILE_LINES`` lines). ``limit`` imports the first rows only, as asked; ``dedupe``
    drops rows whose content hash repeats an earlier row instead of only counting them.
    """
    path = Path(path)
    name = _check_name(name)
    check_type(type)
    cap = max_rows(type)
    if limit is not None:
        if limit < 1:
            raise ValidationError(f"--limit must be at least 1, got {limit}")
        if limit > cap:
            raise LimitExceededError(
                f"--limit {limit:,} is above the maximum of {cap:,} rows for {_a(type)} dataset"
            )
        cap = limit
    total_bytes = _check_file(path)
    try:
        with store.engine.begin() as conn:
            dataset_id = _create_dataset(conn, name, type, path.name)
            run = _Import(conn, path, dataset_id, type, cap, limit is not None, dedupe)
            with path.open("rb") as file:
                run.read(file, total_bytes, progress)
            rows, duplicates = count_rows(conn, dataset_id)
            conn.execute(
                update(_datasets)
                .where(_datasets.c.id == dataset_id)
                .values(row_count=rows, duplicate_count=duplicates, source_format=run.format)
            )
            info: DatasetInfo = dataset_by_name(conn, name)
    except OperationalError as exc:  # disk full, connection lost, locked: all rolled back
        failure = describe_failure(exc, store.engine)
        raise StoreError(f"dataset '{name}' was not imported: {failure}") from exc
    return ImportReport(
        dataset=info,
        rows_imported=rows,
        lines_read=run.lines_read,
        lines_skipped=run.skipped,
        errors=run.errors,
        duplicates=duplicates,
        duplicates_dropped=run.dropped,
        truncated=run.truncated,
    )


def _a(type: str) -> str:
    return f"an {type}" if type[:1] in "aeiou" else f"a {type}"


def _check_name(name: str) -> str:
    name = name.strip()
    if not name:
        raise ValidationError("a dataset needs a name (--name)")
    if len(name) > MAX_NAME_LENGTH:
        raise ValidationError(f"dataset name is too long ({len(name)} > {MAX_NAME_LENGTH})")
    if "\x00" in name or _has_surrogate(name):
        raise ValidationError("a dataset name cannot contain a NUL character or a lone surrogate")
    return name


def _has_surrogate(text: str) -> bool:
    """Lone surrogates (from JSON escapes) cannot be encoded, so no database can store them."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _check_file(path: Path) -> int:
    if not path.exists():
        raise ImportFileError(f"file not found: {path}")
    if not path.is_file():
        raise ImportFileError(f"not a file: {path}")
    size = path.stat().st_size
    if size == 0:
        raise ImportFileError(f"{path.name} is empty: expected one JSON object per line")
    with path.open("rb") as file:
        head = file.read(4)
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise ImportFileError(f"{path.name} is UTF-16 encoded; save it as UTF-8")
    if head.startswith(b"\x1f\x8b"):
        raise ImportFileError(f"{path.name} is gzip-compressed; decompress it first")
    return size


def _create_dataset(conn: Connection, name: str, type: str, source: str) -> int:
    taken = conn.execute(select(_datasets.c.id).where(_datasets.c.name == name)).first()
    message = (
        f"a dataset named '{name}' already exists; choose another --name "
        f"or delete it first (`assay dataset delete {name}`)"
    )
    if taken is not None:
        raise AlreadyExistsError(message)
    values = {"name": name, "type": type, "provenance": "upload", "source": source}
    try:
        result = conn.execute(insert(_datasets).values(**values, row_count=0, duplicate_count=0))
    except IntegrityError as exc:  # another import took the name meanwhile
        raise AlreadyExistsError(message) from exc
    return int(result.inserted_primary_key[0])


class _Import:
    """The state of one import while the file streams through it."""

    def __init__(
        self,
        conn: Connection,
        path: Path,
        dataset_id: int,
        type: str,
        cap: int,
        limited: bool,
        dedupe: bool,
    ) -> None:
        self.conn, self.path, self.dataset_id = conn, path, dataset_id
        self.type, self.cap, self.limited, self.dedupe = type, cap, limited, dedupe
        self.format: str | None = None
        self.format_line = 0
        self.lines_read = 0
        self.nonblank = 0
        self.stored = 0
        self.skipped = 0
        self.dropped = 0
        self.truncated = False
        self.errors: list[LineIssue] = []
        self.pending: list[ParsedRow] = []
        self.pending_bytes = 0

    def read(self, file: IO[bytes], total: int, progress: ProgressCallback | None) -> None:
        done = 0
        for line_no, raw in enumerate(file, start=1):
            self.lines_read = line_no
            done += len(raw)
            if raw.isspace():
                continue
            if line_no > MAX_FILE_LINES:
                raise LimitExceededError(
                    f"{self.path.name} has more than {MAX_FILE_LINES:,} lines, the maximum "
                    "for one import; split the file or import a part with --limit"
                )
            self.nonblank += 1
            row = self._parse(raw, line_no)
            if row is None:
                continue
            if self.stored + len(self.pending) >= self.cap:
                self._flush()  # with --dedupe, flushing may free room
                if self.stored >= self.cap:
                    if self.dedupe and self._stored_hashes([row.content_hash]):
                        self.dropped += 1  # would be dropped anyway: not over the limit
                        continue
                    if not self.limited:
                        raise self._too_many_rows()
                    self.truncated = True
                    break
            self.pending.append(row)
            self.pending_bytes += len(raw)
            if len(self.pending) >= BATCH_ROWS or self.pending_bytes >= BATCH_BYTES:
                self._flush()
                if progress is not None:
                    progress(done, total)
        self._flush()
        if progress is not None:
            progress(total if not self.truncated else done, total)
        if self.stored == 0:
            raise ImportFileError(self._nothing_valid())

    def _parse(self, raw: bytes, line_no: int) -> ParsedRow | None:
        try:
            obj = load_line(raw)
            fmt = line_format(obj)
        except LineError as exc:
            self._skip(line_no, exc.reason)
            return None
        if self.format is None:
            self.format, self.format_line = fmt, line_no
        elif fmt != self.format:
            raise ImportFileError(
                f"{self.path.name} mixes formats: line {self.format_line} is "
                f"{FORMAT_LABELS[self.format]} but line {line_no} is {FORMAT_LABELS[fmt]}; "
                "a file must use one format"
            )
        try:
            return parse_object(obj, fmt)
        except LineError as exc:
            self._skip(line_no, exc.reason)
            return None

    def _too_many_rows(self) -> LimitExceededError:
        hint = " or --type training" if self.type == "eval" else ""
        return LimitExceededError(
            f"{self.path.name} has more than {self.cap:,} valid rows, the maximum for "
            f"{_a(self.type)} dataset; import the first ones with --limit {self.cap}{hint}"
        )

    def _skip(self, line_no: int, reason: str) -> None:
        self.skipped += 1
        if len(self.errors) < MAX_REPORTED_ERRORS:
            self.errors.append(LineIssue(line=line_no, reason=reason))

    def _flush(self) -> None:
        rows, self.pending, self.pending_bytes = self.pending, [], 0
        if not rows:
            return
        if self.dedupe:
            seen = self._stored_hashes([row.content_hash for row in rows])
            kept = []
            for row in rows:
                if row.content_hash in seen:
                    self.dropped += 1
                else:
                    seen.add(row.content_hash)
                    kept.append(row)
            rows = kept
        if not rows:
            return
        params = [
            {
                "dataset_id": self.dataset_id,
                "position": self.stored + i,
                "messages": row.messages,
                "tools": row.tools,
                "reference": row.reference,
                "params": row.params,
                "metadata": row.metadata,
                "content_hash": row.content_hash,
            }
            for i, row in enumerate(rows)
        ]
        self.conn.execute(_INSERT_ROWS, params)
        self.stored += len(rows)

    def _stored_hashes(self, hashes: list[str]) -> set[str]:
        """Which of these hashes this import already inserted (same transaction: visible)."""
        query = select(_rows.c.content_hash).where(
            _rows.c.dataset_id == self.dataset_id, _rows.c.content_hash.in_(set(hashes))
        )
        return set(self.conn.execute(query).scalars())

    def _nothing_valid(self) -> str:
        if self.nonblank == 0:
            return f"{self.path.name} is empty: expected one JSON object per line"
        lines = "1 line" if self.skipped == 1 else f"all {self.skipped:,} lines"
        shown = "\n".join(f"  line {e.line}: {e.reason}" for e in self.errors)
        rest = self.skipped - len(self.errors)
        more = f"\n  ... and {rest:,} more" if rest > 0 else ""
        return f"no valid rows in {self.path.name} ({lines} rejected):\n{shown}{more}"
