"""Human labels: scores or pairwise preferences for dataset rows, to calibrate judges against.

Import from here; the modules behind it are internal and may move.
"""

from assay.labels.importer import LabelImportReport, import_labels
from assay.labels.service import (
    LabelInfo,
    LabelSetDetail,
    LabelSetInfo,
    get_label_set,
    label_set_by_name,
    list_label_sets,
)

__all__ = [
    "LabelImportReport",
    "LabelInfo",
    "LabelSetDetail",
    "LabelSetInfo",
    "get_label_set",
    "import_labels",
    "label_set_by_name",
    "list_label_sets",
]
