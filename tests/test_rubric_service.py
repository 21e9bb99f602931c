"""Rubric services on a real store (SQLite and Postgres): versions, validation, rendering a row."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from assay.errors import AlreadyExistsError, NotFoundError, TemplateError, ValidationError
from assay.rubrics import (
    RESPONSE_END,
    RESPONSE_START,
    create_rubric,
    edit_rubric,
    get_rubric,
    get_rubric_version,
    list_rubrics,
    list_versions,
    read_text_file,
    render_for_row,
)
from assay.store import Store
from tests_helpers import add_dataset, rubric_counts

TEMPLATE = "Context:\n{{ conversation_context }}\nAnswer:\n{{ eval_model_response }}\n"


ROWS = [
    {
        "messages": [{"role": "user", "content": "Capital of France?"}],
        "reference": {"role": "assistant", "content": "Paris."},
        "metadata": {"difficulty": "easy"},
    },
    {"messages": [{"role": "user", "content": "Say hi"}], "reference": None, "metadata": {}},
]


def test_create_from_builtin_template(store: Store) -> None:
    created = create_rubric(store, "support-correctness", template="correctness")
    assert created.rubric == "support-correctness"
    assert created.version == 1
    assert (created.score_min, created.score_max) == (1, 10)
    assert created.origin == "template:correctness"
    assert created.kind == "pointwise"
    assert created.checks is None
    assert created.created_at.tzinfo is not None
    assert "{{ eval_model_response }}" in created.template
    info = get_rubric(store, "support-correctness")
    assert info.latest_version == 1
    assert info.description and info.description.startswith("Is the answer right?")
    assert rubric_counts(store) == (1, 1)


def test_create_from_text_with_range_and_description(store: Store) -> None:
    created = create_rubric(
        store, "r1", text=TEMPLATE, origin="file:r1.jinja", score_min=0, score_max=100,
        description="  Grades answers  ",
    )  # fmt: skip
    assert (created.score_min, created.score_max, created.origin) == (0, 100, "file:r1.jinja")
    assert created.template == TEMPLATE
    assert get_rubric(store, "r1").description == "Grades answers"


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"text": TEMPLATE, "score_min": 5, "score_max": 5}, ValidationError, "must be lower"),
        ({"text": TEMPLATE, "score_min": 7, "score_max": 3}, ValidationError, "must be lower"),
        ({"text": TEMPLATE, "score_max": 101}, ValidationError, "at most 100, got 101"),
        ({"text": TEMPLATE, "score_min": -1}, ValidationError, "0 or more, got -1"),
        ({"text": TEMPLATE, "score_min": 1.5}, ValidationError, "must be an integer, got 1.5"),
        ({"text": TEMPLATE, "score_max": True}, ValidationError, "must be an integer"),
        ({}, ValidationError, "exactly one of a built-in template or a template text"),
        ({"text": TEMPLATE, "template": "tone"}, ValidationError, "exactly one of"),
        ({"template": "nope"}, NotFoundError, "no built-in template named 'nope'; available:"),
        ({"text": ""}, TemplateError, "the template is empty"),
        ({"text": "{{ conversation_context }}"}, TemplateError, "must contain"),
        ({"text": "{{ eval_model_response }}\n{{ oops }}"}, TemplateError, "'oops' (line 2)"),
        ({"text": "{{ eval_model_response }}\n{% if %}"}, TemplateError, "error on line 2"),
        ({"text": "{{ eval_model_response.__class__ }}"}, TemplateError, "sandbox forbids"),
        ({"text": TEMPLATE, "description": "x" * 2001}, ValidationError, "longer than 2000"),
    ],
)
def test_bad_create_writes_nothing(
    store: Store, kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error) as caught:
        create_rubric(store, "r", **kwargs)
    assert message in str(caught.value)
    assert rubric_counts(store) == (0, 0)


@pytest.mark.parametrize("name", ["", "-x", "has space", "a/b", "x" * 201, "é"])
def test_invalid_names_are_refused(store: Store, name: str) -> None:
    with pytest.raises(ValidationError, match="invalid rubric name"):
        create_rubric(store, name, text=TEMPLATE)
    assert rubric_counts(store) == (0, 0)


def test_taken_name_is_refused(store: Store) -> None:
    create_rubric(store, "r", text=TEMPLATE)
    with pytest.raises(AlreadyExistsError, match="a rubric named 'r' already exists"):
        create_rubric(store, "r", template="tone")
    # Even with an invalid template, the taken name is what the user hears about first.
    with pytest.raises(AlreadyExistsError):
        create_rubric(store, "r", text="{{ nope }}")
    assert rubric_counts(store) == (1, 1)


def test_edit_adds_a_version_and_leaves_the_old_one_alone(store: Store) -> None:
    v1 = create_rubric(store, "r", template="correctness")
    new_text = TEMPLATE + "Be strict.\n"
    v2 = edit_rubric(store, "r", text=new_text, origin="file:new.jinja")
    assert v2.version == 2
    assert v2.template == new_text
    assert (v2.score_min, v2.score_max) == (1, 10)
    assert v2.origin == "file:new.jinja"
    assert v2.note == "from v1: template from file:new.jinja"
    v3 = edit_rubric(store, "r", score_max=5)
    assert (v3.version, v3.template, v3.score_max) == (3, new_text, 5)
    assert v3.origin == "file:new.jinja"
    assert v3.note == "from v2: range 1-10 -> 1-5"
    assert get_rubric_version(store, "r", 1) == v1
    assert get_rubric_version(store, "r", 2) == v2
    assert get_rubric_version(store, "r") == v3
    assert [v.version for v in list_versions(store, "r")] == [1, 2, 3]
    assert get_rubric(store, "r").latest_version == 3
    v4 = edit_rubric(store, "r", text=TEMPLATE)
    assert (v4.origin, v4.note) == (None, "from v3: template changed")
    assert rubric_counts(store) == (1, 4)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({}, ValidationError, "nothing to change: give a new template (--file)"),
        ({"text": TEMPLATE}, ValidationError, "identical to version 1 of 'r'; no version was"),
        ({"score_min": 1, "score_max": 10}, ValidationError, "identical to version 1"),
        ({"score_min": 10}, ValidationError, "score-min (10) must be lower than score-max (10)"),
        ({"score_max": 1000}, ValidationError, "at most 100"),
        ({"text": "{{ x }}"}, TemplateError, "unknown template variable: 'x'"),
        ({"text": "no response here"}, TemplateError, "must contain"),
    ],
)
def test_bad_edit_writes_nothing(
    store: Store, kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    create_rubric(store, "r", text=TEMPLATE)
    with pytest.raises(error) as caught:
        edit_rubric(store, "r", **kwargs)
    assert message in str(caught.value)
    assert rubric_counts(store) == (1, 1)
    assert get_rubric_version(store, "r").template == TEMPLATE


def test_missing_rubric_and_version(store: Store) -> None:
    with pytest.raises(NotFoundError, match="no rubric named 'ghost'"):
        get_rubric(store, "ghost")
    with pytest.raises(NotFoundError, match="no rubric named 'ghost'"):
        edit_rubric(store, "ghost", score_max=5)
    with pytest.raises(NotFoundError, match="no rubric named 'ghost'"):
        list_versions(store, "ghost")
    create_rubric(store, "r", text=TEMPLATE)
    with pytest.raises(NotFoundError, match=r"rubric 'r' has no version 4 \(latest is 1\)"):
        get_rubric_version(store, "r", 4)
    assert rubric_counts(store) == (1, 1)


def test_list_rubrics_shows_latest_versions_by_name(store: Store) -> None:
    assert list_rubrics(store) == []
    create_rubric(store, "zeta", text=TEMPLATE)
    create_rubric(store, "alpha", template="tone", score_max=5)
    edit_rubric(store, "zeta", score_min=0)
    edit_rubric(store, "zeta", score_max=20)
    listed = list_rubrics(store)
    assert [(r.name, r.latest_version, r.score_min, r.score_max) for r in listed] == [
        ("alpha", 1, 1, 5),
        ("zeta", 3, 0, 20),
    ]
    assert set(listed[0].model_dump()) >= {"id", "name", "description", "latest_version"}


def test_render_for_row_uses_the_reference_by_default(store: Store) -> None:
    create_rubric(store, "r", text=TEMPLATE + "{{ metadata.difficulty }}")
    add_dataset(store, "qa", ROWS)
    prompt = render_for_row(store, "r", "qa")
    assert prompt.user == (
        f"Context:\n[user]\nCapital of France?\nAnswer:\n{RESPONSE_START}\nParis.\n"
        f"{RESPONSE_END}\neasy"
    )
    assert "from 1 (worst) to 10 (best)" in prompt.system
    other = render_for_row(store, "r", "qa", 0, response="Lyon.")
    assert f"{RESPONSE_START}\nLyon.\n{RESPONSE_END}" in other.user


def test_render_for_row_pins_a_version(store: Store) -> None:
    create_rubric(store, "r", text=TEMPLATE)
    edit_rubric(store, "r", text="NEW {{ eval_model_response }}", score_max=5)
    add_dataset(store, "qa", ROWS)
    assert render_for_row(store, "r", "qa").user.startswith("NEW ")
    old = render_for_row(store, "r", "qa", version=1)
    assert old.user.startswith("Context:")
    assert "to 10 (best)" in old.system


def test_render_for_row_errors(store: Store) -> None:
    create_rubric(store, "r", text=TEMPLATE + "{{ metadata.difficulty }}")
    add_dataset(store, "qa", ROWS)
    with pytest.raises(NotFoundError, match="no dataset named 'nope'"):
        render_for_row(store, "r", "nope")
    with pytest.raises(NotFoundError, match=r"no row at position 7 \(2 rows: positions 0-1\)"):
        render_for_row(store, "r", "qa", 7)
    with pytest.raises(ValidationError, match="row position must be 0 or more"):
        render_for_row(store, "r", "qa", -1)
    with pytest.raises(NotFoundError, match="no rubric named 'ghost'"):
        render_for_row(store, "ghost", "qa")
    with pytest.raises(NotFoundError, match="has no version 9"):
        render_for_row(store, "r", "qa", version=9)
    with pytest.raises(ValidationError, match="row 1 of dataset 'qa' has no reference response"):
        render_for_row(store, "r", "qa", 1)
    with pytest.raises(TemplateError, match="no attribute 'difficulty'; this row's metadata keys"):
        render_for_row(store, "r", "qa", 1, response="hi")
    add_dataset(store, "empty", [])
    with pytest.raises(NotFoundError, match=r"no row at position 0 \(0 rows: no rows\)"):
        render_for_row(store, "r", "empty")


def test_read_text_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="template file not found: "):
        read_text_file(tmp_path / "missing.jinja")
    with pytest.raises(ValidationError, match="is a directory"):
        read_text_file(tmp_path)
    empty = tmp_path / "empty.jinja"
    empty.write_text("  \n")
    with pytest.raises(ValidationError, match=r"empty\.jinja is empty"):
        read_text_file(empty)
    assert read_text_file(empty, "response file", allow_empty=True) == "  \n"
    latin = tmp_path / "latin.jinja"
    latin.write_bytes("ok\ncaf\xe9 {{ eval_model_response }}".encode("latin-1"))
    with pytest.raises(ValidationError, match=r"not valid UTF-8: byte 0xe9 at offset 6 \(line 2\)"):
        read_text_file(latin)
    bom = tmp_path / "bom.jinja"
    bom.write_bytes(b"\xef\xbb\xbf{{ eval_model_response }}")
    assert read_text_file(bom) == "{{ eval_model_response }}"
