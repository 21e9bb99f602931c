"""Captured traffic: importing logs as inferences, exploring them, building datasets from them.

Import from here; the modules behind it are internals that may move.
"""

from assay.traffic.explore import (
    InferenceDetail,
    InferenceSummary,
    TrafficFilter,
    TrafficStats,
    get_inference,
    list_inferences,
    parse_filter,
    traffic_stats,
)
from assay.traffic.importer import TrafficImportReport, import_traffic, prompt_hash
from assay.traffic.to_dataset import (
    OverlapReport,
    TrafficDatasetReport,
    create_dataset_from_traffic,
    dataset_overlap,
)

__all__ = [
    "InferenceDetail",
    "InferenceSummary",
    "OverlapReport",
    "TrafficDatasetReport",
    "TrafficFilter",
    "TrafficImportReport",
    "TrafficStats",
    "create_dataset_from_traffic",
    "dataset_overlap",
    "get_inference",
    "import_traffic",
    "list_inferences",
    "parse_filter",
    "prompt_hash",
    "traffic_stats",
]
