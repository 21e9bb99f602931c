"""Calibrations on the rubric page and in the API (``/api/v1/rubrics/{name}/calibrations``,
``/api/v1/labels``), through the real app (TestClient) on SQLite and Postgres."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from assay.labels import import_labels
from assay.providers import add_model
from assay.rubrics import create_rubric
from assay.rubrics.calibrate import calibrate
from assay.store import Store
from assay.web import create_app
from support.labeljudge import LabelJudge
from tests_helpers import add_dataset, write

TEMPLATE = "Rate the answer.\n{{ conversation_context }}\n{{ eval_model_response }}\n"


@pytest.fixture
def client(store: Store) -> Iterator[TestClient]:
    with TestClient(create_app(store)) as test_client:
        yield test_client


@pytest.fixture
def calibrated(store: Store, tmp_path: Path) -> Iterator[None]:
    """Rubric ``fit`` (1-3) calibrated by the ``oracle`` judge on 12 human scores (one output
    the judge does not know and answers in prose: one label failed); ``bare`` never is."""
    judge = LabelJudge()
    try:
        add_dataset(store, "qa", [{"messages": [{"role": "user", "content": f"Q{i}?"}]}
                                  for i in range(12)])  # fmt: skip
        lines = []
        for i in range(12):
            text = f"Answer number {i}."
            score = 1 + i % 3
            if i != 5:
                judge.scores[text] = score
            lines.append({"row": i, "score": score, "output": text})
        import_labels(store, write(tmp_path / "human.jsonl", lines), "qa")
        create_rubric(store, "fit", text=TEMPLATE, score_min=1, score_max=3)
        create_rubric(store, "bare", text=TEMPLATE)
        add_model(store, "oracle", base_url=judge.base_url, model_id="oracle")
        asyncio.run(calibrate(store, "fit", labels="human", judge="oracle", resamples=200))
        yield
    finally:
        judge.close()


def test_rubric_page_lists_the_versions_calibrations(client: TestClient, calibrated: None) -> None:
    page = client.get("/rubrics/fit")
    assert page.status_code == 200
    html = page.text
    assert "Calibration against human labels" in html
    assert 'id="calibrations-table"' in html
    assert "oracle" in html and "human" in html and "pointwise" in html
    assert "11 / 12" in html and "1 failed" in html
    assert "spearman" in html and "<strong>1.000</strong>" in html
    assert "kappa" in html and "within_1" in html
    bare = client.get("/rubrics/bare").text
    assert "No judge has been calibrated on this version yet" in bare
    assert "assay rubric calibrate bare --labels LABELS --judge JUDGE" in bare


def test_api_calibrations_and_labels(client: TestClient, calibrated: None) -> None:
    found = client.get("/api/v1/rubrics/fit/calibrations")
    assert found.status_code == 200
    (one,) = found.json()
    assert (one["judge"], one["label_set"], one["rubric_version"]) == ("oracle", "human", 1)
    assert (one["labels_total"], one["labels_judged"], one["labels_failed"]) == (12, 11, 1)
    assert one["metrics"]["spearman"]["value"] == 1.0
    assert one["metrics"]["kappa"]["n"] == 11
    assert set(one["metrics"]) == {"spearman", "kendall", "exact", "within_1", "kappa"}
    assert client.get("/api/v1/rubrics/bare/calibrations").json() == []
    assert client.get("/api/v1/rubrics/fit/calibrations?version=2").status_code == 404
    assert client.get("/api/v1/rubrics/nope/calibrations").status_code == 404

    labels = client.get("/api/v1/labels").json()
    assert [(s["name"], s["dataset"], s["kind"], s["labels"]) for s in labels] == [
        ("human", "qa", "pointwise", 12)
    ]
    detail = client.get("/api/v1/labels/human").json()
    assert (detail["score_min"], detail["score_max"]) == (1, 3) and len(detail["first"]) == 10
    missing = client.get("/api/v1/labels/humna")
    assert missing.status_code == 404 and "did you mean 'human'?" in missing.json()["detail"]
