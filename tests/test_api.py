"""The public Python API: one import, the same services as the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import assay


def test_every_exported_name_resolves() -> None:
    for name in assay.__all__:
        assert getattr(assay, name) is not None, name


def test_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no_such_thing"):
        _ = assay.no_such_thing  # type: ignore[attr-defined]


def test_workflow_through_the_api(database_url: str, tmp_path: Path) -> None:
    source = tmp_path / "rows.jsonl"
    rows = [
        {
            "id": f"r{i}",
            "messages": [
                {"role": "user", "content": f"What is {i} + {i}?"},
                {"role": "assistant", "content": str(2 * i)},
            ],
        }
        for i in range(3)
    ]
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with assay.open_store(database_url, home=tmp_path) as store:
        report = assay.import_dataset(store, source, "sums", type="eval")
        assert report.dataset.row_count == 3
        assert [d.name for d in assay.list_datasets(store)] == ["sums"]
        version = assay.create_rubric(store, "sums-correct", template="correctness")
        assert version.version == 1
        prompt = assay.render_for_row(store, "sums-correct", "sums", position=2)
        assert "What is 2 + 2?" in prompt.user
        with pytest.raises(assay.NotFoundError, match="no dataset named 'nope'"):
            assay.get_dataset(store, "nope")
