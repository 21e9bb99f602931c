"""Assay: a self-hosted release gate for LLM applications.

The public Python API. Everything here is a thin, typed name for a service the CLI uses too::

    import assay

    store = assay.open_store()  # ~/.assay/assay.db, or ASSAY_DATABASE_URL
    report = assay.import_dataset(store, "support.jsonl", "support-eval", type="eval")
    assay.create_rubric(store, "support-correctness", template="correctness")
    prompt = assay.render_for_row(store, "support-correctness", "support-eval", position=0)

Names are imported lazily, so ``import assay`` stays cheap for the CLI; import from here,
not from the modules behind it, which may move.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    # store
    "Store": "assay.store",
    "open_store": "assay.store",
    # errors
    "AssayError": "assay.errors",
    "NotFoundError": "assay.errors",
    "AlreadyExistsError": "assay.errors",
    "ValidationError": "assay.errors",
    "ImportFileError": "assay.errors",
    "LimitExceededError": "assay.errors",
    "TemplateError": "assay.errors",
    "StoreError": "assay.errors",
    # datasets
    "DatasetInfo": "assay.datasets",
    "DatasetRowInfo": "assay.datasets",
    "ImportReport": "assay.datasets",
    "import_dataset": "assay.datasets",
    "list_datasets": "assay.datasets",
    "get_dataset": "assay.datasets",
    "dataset_rows": "assay.datasets",
    "iter_rows": "assay.datasets",
    "export_dataset": "assay.datasets",
    "delete_dataset": "assay.datasets",
    "content_hash": "assay.datasets",
    # rubrics
    "TemplateInfo": "assay.rubrics",
    "RubricInfo": "assay.rubrics",
    "RubricVersionInfo": "assay.rubrics",
    "JudgePrompt": "assay.rubrics",
    "JudgeParse": "assay.rubrics",
    "list_templates": "assay.rubrics",
    "create_rubric": "assay.rubrics",
    "edit_rubric": "assay.rubrics",
    "get_rubric": "assay.rubrics",
    "get_rubric_version": "assay.rubrics",
    "list_rubrics": "assay.rubrics",
    "list_versions": "assay.rubrics",
    "render_for_row": "assay.rubrics",
    "validate_template": "assay.rubrics",
    "build_judge_prompt": "assay.rubrics",
    "parse_judge_output": "assay.rubrics",
    "CheckResult": "assay.rubrics",
    "ChecksSpec": "assay.rubrics",
    "parse_checks": "assay.rubrics",
    "read_checks_file": "assay.rubrics",
    "run_checks": "assay.rubrics",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'assay' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


if TYPE_CHECKING:
    from assay.datasets import (
        DatasetInfo,
        DatasetRowInfo,
        ImportReport,
        content_hash,
        dataset_rows,
        delete_dataset,
        export_dataset,
        get_dataset,
        import_dataset,
        iter_rows,
        list_datasets,
    )
    from assay.errors import (
        AlreadyExistsError,
        AssayError,
        ImportFileError,
        LimitExceededError,
        NotFoundError,
        StoreError,
        TemplateError,
        ValidationError,
    )
    from assay.rubrics import (
        CheckResult,
        ChecksSpec,
        JudgeParse,
        JudgePrompt,
        RubricInfo,
        RubricVersionInfo,
        TemplateInfo,
        build_judge_prompt,
        create_rubric,
        edit_rubric,
        get_rubric,
        get_rubric_version,
        list_rubrics,
        list_templates,
        list_versions,
        parse_checks,
        parse_judge_output,
        read_checks_file,
        render_for_row,
        run_checks,
        validate_template,
    )
    from assay.store import Store, open_store
