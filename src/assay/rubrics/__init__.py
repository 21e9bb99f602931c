"""Rubrics: built-in templates, immutable versions, sandboxed rendering, the judge protocol.

Import from here; the modules behind it are internal and may move.
"""

from assay.rubrics.builtin import TemplateInfo, get_template, list_templates
from assay.rubrics.checkfile import parse_checks, parse_checks_text
from assay.rubrics.checks import CheckResult, ChecksSpec, run_checks
from assay.rubrics.judge import (
    JudgeParse,
    JudgePrompt,
    build_judge_prompt,
    judge_output_schema,
    parse_judge_output,
)
from assay.rubrics.service import (
    RubricInfo,
    RubricVersionInfo,
    create_rubric,
    edit_rubric,
    get_rubric,
    get_rubric_version,
    list_rubrics,
    list_versions,
    read_checks_file,
    read_text_file,
    render_for_row,
)
from assay.rubrics.transcript import RESPONSE_END, RESPONSE_START
from assay.rubrics.validate import validate_template

__all__ = [
    "RESPONSE_END",
    "RESPONSE_START",
    "CheckResult",
    "ChecksSpec",
    "JudgeParse",
    "JudgePrompt",
    "RubricInfo",
    "RubricVersionInfo",
    "TemplateInfo",
    "build_judge_prompt",
    "create_rubric",
    "edit_rubric",
    "get_rubric",
    "get_rubric_version",
    "get_template",
    "judge_output_schema",
    "list_rubrics",
    "list_templates",
    "list_versions",
    "parse_checks",
    "parse_checks_text",
    "parse_judge_output",
    "read_checks_file",
    "read_text_file",
    "render_for_row",
    "run_checks",
    "validate_template",
]
