"""The annotation and queue services on a real store: edits recorded and undoable, IDOR-safe
lookups, the label -> review -> done flow, and findings turned into a check batch."""

from __future__ import annotations

import math

import pytest
from sqlalchemy import select

from tests.quality_helpers import Item, build_view, textured
from winnow.core.types import UNLABELED_TAG, Annotation
from winnow.errors import ConflictError, InvalidInputError, NotFoundError, PermissionDeniedError
from winnow.quality.base import Finding, Suggestion
from winnow.services import annotations as ann_svc
from winnow.services import queue
from winnow.services.datasets import get_image, load_dataset
from winnow.services.fixes import list_changes, undo
from winnow.services.projects import class_names, create_project, get_project
from winnow.services.versions import create_version, load_version
from winnow.store import models as m


def labels(store, image, project="p"):
    rec = get_image(store, project, image)
    return sorted((a.label, a.bbox, a.source.value) for a in rec.annotations), sorted(rec.tags)


@pytest.fixture
def store(tmp_path):
    items = [
        Item("a.png", textured(1), [Annotation("cat", bbox=(5, 5, 30, 30))], split="train"),
        Item("b.png", textured(2), [], tags=[UNLABELED_TAG]),
        Item("c.png", textured(3), [], tags=[UNLABELED_TAG]),
        Item("d.png", textured(4), [Annotation("dog", bbox=(10, 10, 40, 40))], split="train"),
    ]
    view = build_view(tmp_path, items, classes=["cat", "dog"])
    # a second project in another workspace, for IDOR checks
    create_project(view.store, "other", "detect", "elsewhere")
    return view.store


# ------------------------------------------------------------------------------- annotations


def test_create_update_delete_are_recorded_and_each_undoes(store):
    before = labels(store, "b.png")
    made = ann_svc.create_annotation(store, "p", "b.png", label="cat", bbox=[1, 2, 20, 30], user="alice")
    assert made["source"] == "human" and made["created_by"] == "alice" and made["bbox"] == [1.0, 2.0, 20.0, 30.0]
    edited = ann_svc.update_annotation(store, "p", made["id"], label="bird", bbox=[2, 2, 10, 10], user="bob")
    assert edited["label"] == "bird" and edited["bbox"] == [2.0, 2.0, 10.0, 10.0]
    with store.read() as s:
        assert "bird" in class_names(s, get_project(s, "p").id), "an unknown label creates the class"
    ann_svc.delete_annotation(store, "p", made["id"], user="carol")
    assert labels(store, "b.png") == before

    changes = list_changes(store, "p")
    assert [(c["kind"], c["created_by"]) for c in changes[-3:]] == [
        ("annotation_create", "alice"), ("annotation_update", "bob"), ("annotation_delete", "carol"),
    ]
    undo(store, "p")  # the delete
    assert labels(store, "b.png")[0] == [("bird", (2.0, 2.0, 10.0, 10.0), "human")]
    undo(store, "p")  # the update: back to cat, and the class it created goes away
    assert labels(store, "b.png")[0] == [("cat", (1.0, 2.0, 20.0, 30.0), "human")]
    with store.read() as s:
        assert "bird" not in class_names(s, get_project(s, "p").id)
    undo(store, "p")  # the create
    assert labels(store, "b.png") == before


def test_geometry_is_validated_and_clipped(store):
    for bad in ([math.nan, 0, 5, 5], [0, 0, math.inf, 5], [10, 10, 5, 20], [0, 0, 5], [None, 1, 2, 3], "x"):
        with pytest.raises(InvalidInputError):
            ann_svc.create_annotation(store, "p", "b.png", label="cat", bbox=bad, user="u")
    with pytest.raises(InvalidInputError, match="outside"):
        ann_svc.create_annotation(store, "p", "b.png", label="cat", bbox=[500, 500, 600, 600], user="u")
    with pytest.raises(InvalidInputError, match="needs a bbox"):
        ann_svc.create_annotation(store, "p", "b.png", label="cat", user="u")
    for bad_label in ("", "   ", "x" * 501, "a\x00b", 5):
        with pytest.raises(InvalidInputError):
            ann_svc.create_annotation(store, "p", "b.png", label=bad_label, bbox=[1, 1, 5, 5], user="u")
    clipped = ann_svc.create_annotation(store, "p", "b.png", label="cat", bbox=[-5, 10, 200, 50], user="u")
    assert clipped["bbox"] == [0.0, 10.0, 96.0, 50.0], "a box past the edge is clipped to the 96x72 image"
    poly = ann_svc.create_annotation(store, "p", "b.png", label="cat", polygon=[[10, 10, 120, 10, 10, 60]], user="u")
    assert max(poly["polygon"][0][0::2]) <= 96 and poly["bbox"][2] <= 96
    assert labels(store, "b.png")[0].count(("cat", (0.0, 10.0, 96.0, 50.0), "human")) == 1


def test_annotations_of_another_project_are_not_found_and_untouched(store):
    other = create_project(store, "q", "detect")
    assert other.name == "q"
    with store.read() as s:
        a_id = s.scalar(select(m.Annotation.id).join(m.Image).where(m.Image.name == "a.png"))
    before = labels(store, "a.png")
    for call in (
        lambda: ann_svc.update_annotation(store, "q", a_id, label="dog"),
        lambda: ann_svc.delete_annotation(store, "q", a_id),
        lambda: ann_svc.update_annotation(store, "other", a_id, label="dog", workspace="elsewhere"),
        lambda: ann_svc.create_annotation(store, "q", "a.png", label="cat", bbox=[1, 1, 4, 4]),
    ):
        with pytest.raises(NotFoundError):
            call()
    assert labels(store, "a.png") == before


# ------------------------------------------------------------------------------- the queue


def _batch(store, **kw):
    items = [
        queue.QueueItemIn("b.png", 0.9, {"strategy": "entropy"}, [{"label": "cat", "bbox": [3, 3, 20, 20], "score": 0.8}]),
        queue.QueueItemIn("c.png", 0.5, None, [{"label": "dog", "bbox": [1, 1, 9, 9], "score": 0.6}]),
    ]
    return queue.create_batch(store, "p", items, name="round-1", user="admin", **kw)


def test_label_flow_accept_correct_review_and_version(store):
    _batch(store)
    first = queue.next_item(store, "p", "round-1", user="alice")
    assert first.image == "b.png" and first.assignee == "alice"
    second = queue.next_item(store, "p", "round-1", user="bob")
    assert second.image == "c.png", "a claimed item is not handed to someone else"
    assert queue.next_item(store, "p", "round-1", user="alice").id == first.id, "alice picks up where she left"

    queue.submit(store, "p", first.id, decision="accepted", user="alice")
    with pytest.raises(ConflictError):
        queue.submit(store, "p", first.id, decision="accepted", user="alice")
    got = queue.submit(store, "p", second.id, decision="corrected", annotations=[{"label": "dog", "bbox": [2, 2, 30, 30]}], user="bob")
    assert got.state == "in_review" and got.submitted == [{"label": "dog", "bbox": [2.0, 2.0, 30.0, 30.0]}]
    assert labels(store, "b.png") == ([], [UNLABELED_TAG]), "nothing is written before review"

    with pytest.raises(PermissionDeniedError):
        queue.review(store, "p", first.id, approve=True, user="alice")
    done = queue.review(store, "p", first.id, approve=True, user="bob")
    assert done.state == "done" and done.reviewed_by == "bob"
    assert labels(store, "b.png") == ([("cat", (3.0, 3.0, 20.0, 20.0), "human")], [])
    with pytest.raises(ConflictError):
        queue.review(store, "p", first.id, approve=True, user="bob")

    sent = queue.review(store, "p", second.id, approve=False, user="alice", comment="box too big")
    assert sent.state == "to_label" and sent.review["comment"] == "box too big" and sent.decision is None
    queue.submit(store, "p", second.id, decision="corrected", annotations=[{"label": "dog", "bbox": [2, 2, 12, 12]}], user="bob")
    queue.review(store, "p", second.id, approve=True, user="alice")
    assert labels(store, "c.png") == ([("dog", (2.0, 2.0, 12.0, 12.0), "human")], [])

    shown = queue.show_batch(store, "p", "round-1")
    assert shown["state"] == "done" and [i["state"] for i in shown["items"]] == ["done", "done"]
    assert shown["items"][0]["reason"] == {"strategy": "entropy"}
    assert [b.name for b in queue.list_batches(store, "p", state="done")] == ["round-1"]
    assert queue.list_batches(store, "p", state="to_label") == []

    version = create_version(store, "p", user="admin")
    included = {rec.name: rec for rec in load_version(store, "p", version.version).manifest.images}
    assert {"b.png", "c.png"} <= set(included), "approved images reach the next version"
    assert [a.label for a in included["c.png"].annotations] == ["dog"]

    # the review is one change; undoing it puts the pre-review state back
    assert list_changes(store, "p")[-1]["kind"] == "queue_review"
    undo(store, "p")
    assert labels(store, "c.png") == ([], [UNLABELED_TAG])
    assert queue.get_item(store, "p", second.id).state == "in_review"


def test_rejected_tags_the_image_and_leaves_labels(store):
    _batch(store)
    item = queue.next_item(store, "p", "round-1", user="alice")
    with pytest.raises(InvalidInputError):
        queue.submit(store, "p", item.id, decision="maybe", user="alice")
    with pytest.raises(InvalidInputError):
        queue.submit(store, "p", item.id, decision="corrected", user="alice")
    queue.submit(store, "p", item.id, decision="rejected", user="alice")
    queue.review(store, "p", item.id, approve=True, user="bob")
    assert labels(store, "b.png") == ([], sorted([UNLABELED_TAG, "rejected"]))


def test_queue_items_of_another_project_are_not_found(store):
    _batch(store)
    item = queue.next_item(store, "p", "round-1", user="alice")
    create_project(store, "q", "detect")
    with pytest.raises(NotFoundError):
        queue.submit(store, "q", item.id, decision="rejected", user="alice")
    with pytest.raises(NotFoundError):
        queue.show_batch(store, "q", "round-1")
    assert queue.get_item(store, "p", item.id).state == "to_label"


def test_assign_and_list_by_assignee(store):
    summary = _batch(store)
    queue.assign(store, "p", summary.id, assignee="carol")
    assert [b.name for b in queue.list_batches(store, "p", assignee="carol")] == ["round-1"]
    assert queue.next_item(store, "p", "round-1", user="dave") is None, "every item is carol's"
    assert queue.next_item(store, "p", "round-1", user="carol").image == "b.png"


def test_findings_become_a_check_batch_with_the_suggested_relabel(store):
    with store.read() as s:
        a_id = s.scalar(select(m.Annotation.id).join(m.Image).where(m.Image.name == "a.png"))
    findings = [
        Finding("label_error", "warning", "a.png is labelled 'cat' but looks like 'dog'", images=["a.png"], annotations=[a_id],
                suggestion=Suggestion("relabel", "relabel as 'dog'", {"to": "dog"}), score=0.9),
        Finding("class_imbalance", "info", "dog is rare", images=[]),
        Finding("label_error", "warning", "ghost", images=["nope.png"], score=0.5),
    ]
    result = queue.findings_to_queue(store, "p", findings, user="admin")
    assert result.items == 1 and result.batch.kind == "check"
    assert {s["why"] for s in result.skipped} == {"the finding is about no single image", "no such image in the project"}
    item = queue.show_batch(store, "p", result.batch.name)["items"][0]
    assert item["reason"]["check"] == "label_error" and item["reason"]["suggestion"]["params"] == {"to": "dog"}
    assert item["prelabels"][0]["label"] == "dog" and item["prelabels"][0]["relabeled_from"] == "cat"
    again = queue.findings_to_queue(store, "p", findings, user="admin")
    assert again.batch is None and any(s["why"] == "already waiting in a check batch" for s in again.skipped)

    queue.submit(store, "p", item["id"], decision="accepted", user="alice")
    queue.review(store, "p", item["id"], approve=True, user="bob")
    assert labels(store, "a.png")[0] == [("dog", (5.0, 5.0, 30.0, 30.0), "human")]


def test_findings_from_a_real_check_run(store):
    ann_svc.create_annotation(store, "p", "d.png", label="dog", bbox=[10, 10, 40, 40], user="u")  # a duplicate box
    result = queue.findings_to_queue(store, "p", checks=["duplicate_box"], user="admin")
    assert result.items == 1 and result.batch is not None
    assert queue.show_batch(store, "p", result.batch.id)["items"][0]["image"] == "d.png"
    assert load_dataset(store, "p")  # still readable
