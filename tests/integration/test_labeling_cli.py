"""`winnow import --match-existing` (YOLO and COCO label files for images already in a project)
and the `winnow queue` commands."""

from __future__ import annotations

import json
import unicodedata

import pytest
from typer.testing import CliRunner

from tests.quality_helpers import Item, build_view, textured
from winnow.cli.main import app
from winnow.core.types import UNLABELED_TAG, Annotation
from winnow.services import queue
from winnow.services.datasets import load_dataset

runner = CliRunner()


def run(*args: str, ok: bool = True):
    result = runner.invoke(app, list(args))
    if ok:
        assert result.exit_code == 0, result.output
    return result


def run_json(*args: str, ok: bool = True):
    return json.loads(run(*args, "--json", ok=ok).stdout)


def state(store):
    return {
        r.name: (sorted((a.label, tuple(round(v, 3) for v in a.bbox) if a.bbox else None) for a in r.annotations), sorted(r.tags))
        for r in load_dataset(store, "p").images
    }


@pytest.fixture
def store(tmp_path, monkeypatch):
    items = [
        Item("a.png", textured(1), [Annotation("cat", bbox=(5, 5, 30, 30))]),
        Item("sub/b.png", textured(2), [], tags=[UNLABELED_TAG]),
        Item("café.png", textured(3), [], tags=[UNLABELED_TAG]),  # NFC in the project
    ]
    view = build_view(tmp_path, items, classes=["cat", "dog"])
    monkeypatch.setenv("WINNOW_HOME", str(tmp_path / "home"))
    return view.store


def test_match_existing_yolo_labels_only(store, tmp_path):
    before = state(store)
    root = tmp_path / "yolo"
    (root / "labels" / "sub").mkdir(parents=True)
    (root / "data.yaml").write_text("names: [cat, dog]\n")
    (root / "labels" / "a.txt").write_text("1 0.5 0.5 0.5 0.5\n")
    (root / "labels" / "sub" / "b.txt").write_text("0 0.25 0.25 0.5 0.5\r\n")
    (root / "labels" / unicodedata.normalize("NFD", "café.txt")).write_text("")  # no objects
    (root / "labels" / "ghost.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    (root / "labels" / "bad.txt").write_text("7 0.5 0.5 0.1 0.1\n")  # unmatched, reported

    report = run_json("import", "p", str(root), "--format", "yolo", "--match-existing")
    assert report["images_relabeled"] == 3 and report["images_added"] == 0 and report["unmatched"] == 2
    assert report["annotations_added"] == 2 and report["annotations_removed"] == 1 and report["change_id"]
    assert any(p["record"] == "ghost" and p["level"] == "error" for p in report["problems"])
    after = state(store)
    assert set(after) == set(before), "no image is created"
    assert after["a.png"] == ([("dog", (24.0, 18.0, 72.0, 54.0))], []), "scaled by the stored 96x72 size"
    assert after["sub/b.png"] == ([("cat", (0.0, 0.0, 48.0, 36.0))], [])
    assert after["café.png"] == ([], []), "an empty label file: labelled, no objects"

    run("undo", "p")
    assert state(store) == before


def test_match_existing_coco_by_name_and_base_name(store, tmp_path):
    before = state(store)
    doc = {
        "images": [
            {"id": 1, "file_name": "a.png", "width": 96, "height": 72},
            {"id": 2, "file_name": "missing.png", "width": 96, "height": 72},
            {"id": 3, "file_name": "elsewhere/b.png", "width": 96, "height": 72},  # base name of sub/b.png
        ],
        "categories": [{"id": 1, "name": "bird"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 10, 10]},
            {"id": 2, "image_id": 3, "category_id": 1, "bbox": [2, 2, 5, 5]},
            {"id": 3, "image_id": 3, "category_id": 1, "bbox": [90, 60, 20, 20]},  # leaves the image: clipped with --clip
        ],
    }
    path = tmp_path / "labels.json"
    path.write_text(json.dumps(doc))
    report = run_json("import", "p", str(path), "--match-existing", "--clip")
    assert report["format"] == "coco" and report["images_relabeled"] == 2 and report["unmatched"] == 1
    assert report["classes_added"] == ["bird"] and report["boxes_clipped"] == 1
    after = state(store)
    assert set(after) == set(before)
    assert after["a.png"] == ([("bird", (1.0, 1.0, 11.0, 11.0))], [])
    assert after["sub/b.png"] == ([("bird", (2.0, 2.0, 7.0, 7.0)), ("bird", (90.0, 60.0, 96.0, 72.0))], [])
    assert after["café.png"] == before["café.png"]

    bad = run_json("import", "p", str(path), "--match-existing", "--format", "voc", ok=False)
    assert "coco and yolo" in bad["error"]
    run("undo", "p")
    assert state(store) == before


def test_queue_commands(store, tmp_path):
    queue.create_batch(store, "p", [queue.QueueItemIn("sub/b.png", 0.5, None, [{"label": "dog", "bbox": [1, 1, 9, 9]}])], name="r1")
    listed = run_json("queue", "list", "p")
    assert [b["name"] for b in listed["batches"]] == ["r1"]
    item = run_json("queue", "next", "p", "r1", "--user", "alice")["item"]
    assert item["image"] == "sub/b.png" and item["assignee"] == "alice"

    labels = tmp_path / "labels.json"
    labels.write_text(json.dumps([{"label": "dog", "bbox": [2, 2, 20, 20]}]))
    assert run("queue", "submit", "p", str(item["id"]), "--accept", "--reject", ok=False).exit_code == 1
    got = run_json("queue", "submit", "p", str(item["id"]), "--labels", str(labels), "--user", "alice")
    assert got["decision"] == "corrected" and got["state"] == "in_review"
    again = run_json("queue", "submit", "p", str(item["id"]), "--accept", "--user", "alice", ok=False)
    assert again["type"] == "ConflictError"
    own = run_json("queue", "review", "p", str(item["id"]), "--approve", "--user", "alice", ok=False)
    assert own["type"] == "PermissionDeniedError"
    run("queue", "review", "p", str(item["id"]), "--approve", "--user", "bob")
    assert state(store)["sub/b.png"] == ([("dog", (2.0, 2.0, 20.0, 20.0))], [])
    shown = run_json("queue", "show", "p", "r1")
    assert shown["state"] == "done" and shown["items"][0]["reviewed_by"] == "bob"
    assert "r1" in run("queue", "show", "p", "r1").stdout


def test_queue_from_findings_reads_a_check_report(store, tmp_path):
    report = tmp_path / "check.json"
    report.write_text(json.dumps({"findings": [
        {"check": "label_error", "severity": "warning", "message": "a.png looks like a dog", "images": ["a.png"],
         "annotations": [], "suggestion": {"action": "relabel", "text": "relabel", "params": {"to": "dog"}}, "score": 0.8},
    ]}))
    made = run_json("queue", "from-findings", "p", "--from", str(report), "--name", "checks")
    assert made["items"] == 1 and made["batch"]["kind"] == "check"
    item = queue.show_batch(store, "p", "checks")["items"][0]
    assert item["prelabels"] == [{"id": item["prelabels"][0]["id"], "label": "dog", "bbox": [5.0, 5.0, 30.0, 30.0], "relabeled_from": "cat"}]
