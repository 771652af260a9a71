"""The demo (`make demo`, `winnow demo`) runs the whole loop end to end.

The test runs the reduced configuration (``quick``: 60 images, a tiny SSDlite, 2 epochs) and
checks the loop's contract - the health check finds what was planted, production images are
captured through the API, a batch is selected, labelled and reviewed, the next version holds the
reviewed images, the test split is the same in every round, and the JSON and HTML files are
there. Whether the worst slice improves is measured on the full configuration
(``bench/demo.py``, docs/benchmarks.md); a 2-epoch model on 60 images is too noisy to assert it.
"""

import json

import pytest

from winnow.core.types import CAPTURED_TAG, UNLABELED_TAG
from winnow.services.datasets import load_dataset
from winnow.services.demo import PROJECT, QUICK, run_demo
from winnow.services.queue import show_batch
from winnow.services.versions import load_version
from winnow.store.db import Store


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WINNOW_THREADS", "1")  # two spinning OpenMP threads on two busy cores are slower
        root = tmp_path_factory.mktemp("demo")
        store = Store.open(root / "home")
        lines: list[str] = []
        summary = run_demo(store, root / "out", quick=True, echo=lines.append)
        yield store, summary, root / "out", lines
        store.close()


def test_the_health_check_finds_every_planted_defect_and_the_safe_ones_are_fixed(demo):
    _, summary, _, _ = demo
    by_check = summary["health"]["by_check"]
    for check in ("exact_duplicate", "near_duplicate", "split_leakage", "dark", "box_out_of_bounds", "class_imbalance"):
        assert by_check[check] >= 1, check
    assert summary["findings"]["total"] == summary["health"]["findings"] == sum(by_check.values())
    assert len(summary["findings"]["top"]) == 10
    assert len(summary["planted"]["wrong_class_box"]) == 4 and len(summary["planted"]["missing_box"]) == 4
    assert summary["roundtrip"]["max_box_error_px"] < 1e-6
    assert set(summary["exports"]) == {"coco", "createml", "csv", "labelme", "voc", "yolo"}
    assert summary["fix"]["images_removed"] and len(summary["fix"]["boxes_clipped"]) == 1
    version = summary["version"]
    assert version["splitting"]["moved"] == ["images/resized_second.png"], "the planted leak is repaired in the version"
    train = version["counts"]["splits"]["train"]["images"]
    assert version["export"]["splits"]["train"] == 2 * train, "each train image plus its augmented copy"


def test_production_images_are_captured_through_the_api_selected_labelled_and_reviewed(demo):
    store, summary, _, _ = demo
    assert summary["production"]["sent"] == QUICK.production
    assert summary["production"]["captured"] == QUICK.production
    records = load_dataset(store, PROJECT).images
    captured = [r for r in records if CAPTURED_TAG in r.tags]
    assert len(captured) == QUICK.production
    assert all(set(r.metadata) >= {"camera", "site", "time", "model"} for r in captured)
    picked = summary["selection"]["picked"]
    assert len(picked) == QUICK.budget and summary["selection"]["strategy"] == QUICK.strategy
    assert summary["labeling"]["labelled"] == summary["labeling"]["reviewed"] == QUICK.budget
    batch = show_batch(store, PROJECT, summary["selection"]["batch"])
    assert batch["state"] == "done"
    by_name = {r.name: r for r in records}
    for name in picked:  # reviewed: human labels, no longer unlabeled
        rec = by_name[name]
        assert UNLABELED_TAG not in rec.tags and rec.annotations and all(a.source.value == "human" for a in rec.annotations)
    left = [r for r in captured if r.name not in set(picked)]
    assert left and all(UNLABELED_TAG in r.tags for r in left), "images not selected stay unlabeled"


def test_the_next_version_holds_the_reviewed_images_and_the_test_split_is_constant(demo):
    store, summary, _, _ = demo
    v1, v2 = summary["versions"]
    assert v2["number"] == v1["number"] + 1
    m1 = load_version(store, PROJECT, v1["version"]).manifest
    m2 = load_version(store, PROJECT, v2["version"]).manifest
    splits2 = {r.name: r.split for r in m2.images}
    picked = summary["selection"]["picked"]
    assert set(picked) <= set(splits2), "the reviewed images are in the next version"
    assert {r.name for r in m1.images} < set(splits2)
    test1 = {r.name for r in m1.images if r.split == "test"}
    test2 = {n for n, s in splits2.items() if s == "test"}
    assert test1 <= test2 and summary["test_split"]["kept"], "the first version's test images stay in test"
    joined = test2 - test1  # new images only join test as near duplicates of test images
    assert sorted(joined) == summary["test_split"]["joined"] and all(n in picked for n in joined)
    assert all(splits2[n] in ("train", "valid") for n in set(picked) - joined), "new images go to train/valid"
    assert summary["rounds"][0]["test_images"] == summary["rounds"][1]["test_images"] == len(test1)


def test_the_json_document_has_the_rounds_and_the_files_are_written(demo):
    _, summary, out, lines = demo
    rounds = summary["rounds"]
    assert len(rounds) >= 2
    for r in rounds:
        assert {"version", "model", "score", "worst_slice", "slices"} <= set(r)
        assert 0.0 <= r["score"] <= 1.0 and r["test_images"] == summary["test_split"]["images"]
        assert "condition:dark" in r["slices"], "the edge case is a slice of every round"
    assert rounds[0]["model"] != rounds[1]["model"] and rounds[0]["version"] != rounds[1]["version"]
    assert rounds[1]["train_images"] > rounds[0]["train_images"]
    assert summary["before_after"][0]["slice"] == "overall"
    assert any(r["slice"] == "condition:dark" for r in summary["before_after"])
    assert set(summary["findings"]) >= {"total", "by_check", "top", "planted", "after_training"}
    on_disk = json.loads((out / "demo.json").read_text())
    assert on_disk["rounds"][1]["model"] == rounds[1]["model"]
    page = (out / "demo.html").read_text()
    assert page.startswith("<!doctype html>") and "Before / after by slice" in page and "<script" not in page
    assert page.count("data:image/png;base64,") >= 1, "the before/after plot is inline"
    assert page.count("data:image/jpeg;base64,") >= 1, "the selected images' thumbnails are inline"
    assert (out / "health.html").stat().st_size > 10_000
    assert any(line.startswith("12. before/after") for line in lines)


def test_demo_report_escapes_text():
    from winnow.services.demo_report import render

    doc = {"findings": {"total": 1, "by_check": {"<b>x</b>": 1}, "top": [
        {"severity": "warning", "check": "dark", "message": "<script>alert(1)</script>", "images": [], "score": 1.0}]},
        "rounds": [], "before_after": [{"slice": "<i>s</i>", "images": 3, "before": 0.1, "after": 0.2, "delta": 0.1}]}
    page = render(doc)
    assert "<script>" not in page and "&lt;script&gt;" in page and "&lt;i&gt;s&lt;/i&gt;" in page
