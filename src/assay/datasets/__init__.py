"""Datasets: JSONL import/export (chat and source-backed formats), browsing, content hashes.

Import from here; the modules behind it are internals that may move.
"""

from assay.datasets.export import EXPORT_FORMATS, export_dataset
from assay.datasets.formats import LineError, ParsedRow, content_hash, parse_line
from assay.datasets.importer import (
    MAX_EVAL_ROWS,
    MAX_FILE_LINES,
    MAX_TRAINING_ROWS,
    ProgressCallback,
    import_dataset,
)
from assay.datasets.service import (
    DATASET_TYPES,
    DatasetInfo,
    DatasetRowInfo,
    ImportReport,
    LineIssue,
    dataset_rows,
    delete_dataset,
    get_dataset,
    iter_rows,
    list_datasets,
)

__all__ = [
    "DATASET_TYPES",
    "EXPORT_FORMATS",
    "MAX_EVAL_ROWS",
    "MAX_FILE_LINES",
    "MAX_TRAINING_ROWS",
    "DatasetInfo",
    "DatasetRowInfo",
    "ImportReport",
    "LineError",
    "LineIssue",
    "ParsedRow",
    "ProgressCallback",
    "content_hash",
    "dataset_rows",
    "delete_dataset",
    "export_dataset",
    "get_dataset",
    "import_dataset",
    "iter_rows",
    "list_datasets",
    "parse_line",
]
