"""`winnow fix` applies the safe suggestions as one change, and `winnow undo` restores every row."""

from __future__ import annotations

import pytest

from tests.quality_helpers import Item, build_view, encode, textured
from winnow.core.types import Annotation
from winnow.errors import NotFoundError
from winnow.services.datasets import load_dataset
from winnow.services.fixes import apply_fixes, list_changes, undo


def state(store, project="p"):
    ds = load_dataset(store, project)
    return sorted(
        (
            r.name,
            r.split,
            tuple(sorted(r.tags)),
            tuple(sorted(r.metadata.items())),
            tuple(sorted((a.id, a.label, a.bbox) for a in r.annotations)),
        )
        for r in ds.images
    )


@pytest.fixture
def view(tmp_path):
    same = encode(textured(1))
    items = [
        Item("a.png", same, [Annotation("cat", bbox=(5, 5, 30, 30))], split="train"),
        Item("b.png", same, [Annotation("cat", bbox=(5, 5, 30, 30))], split="train", tags=["from-b"], metadata={"camera": "c2"}),
        Item("c.png", textured(2), [Annotation("dog", bbox=(60, 40, 120, 70))], split="train"),  # leaves a 96x72 image
        Item("d.png", textured(3), [Annotation("dog", bbox=(10, 10, 40, 40))], split="train"),
    ]
    return build_view(tmp_path, items)


def test_fix_merges_exact_duplicates_and_clips_boxes_then_undo_restores_everything(view):
    store = view.store
    before = state(store)

    dry = apply_fixes(store, "p", dry_run=True)
    assert dry.change_id is None and len(dry.images_removed) == 1 and len(dry.boxes_clipped) == 1
    assert state(store) == before, "a dry run changes nothing"

    report = apply_fixes(store, "p")
    assert report.change_id is not None
    assert len(report.images_removed) == 1 and report.images_removed[0] in {"a.png", "b.png"}
    after = {row[0]: row for row in state(store)}
    assert len(after) == 3
    kept = "a.png" if "a.png" in after else "b.png"
    assert "from-b" in after[kept][2] and ("camera", "c2") in after[kept][3], "tags and metadata are merged into the kept record"
    clipped = [a for row in after.values() for a in row[4] if a[1] == "dog" and a[2][2] > 90]
    assert clipped and clipped[0][2] == (60.0, 40.0, 96.0, 70.0)

    assert [c["id"] for c in list_changes(store, "p")] == [report.change_id]
    result = undo(store, "p")
    assert result["change_id"] == report.change_id
    assert state(store) == before, "undo restores rows, ids, tags and metadata exactly"
    assert list_changes(store, "p")[0]["undone_at"] is not None
    with pytest.raises(NotFoundError):
        undo(store, "p")


def test_fix_with_nothing_to_do_records_no_change(tmp_path):
    view = build_view(tmp_path, [Item("a.png", textured(5), [Annotation("cat", bbox=(1, 1, 20, 20))])])
    report = apply_fixes(view.store, "p")
    assert report.change_id is None and report.findings_applied == 0
    assert list_changes(view.store, "p") == []
