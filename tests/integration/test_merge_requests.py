"""Merge requests on a real store: a customer's reviewed labels proposed back to its base (in the
base's class names), accepted on the same blobs as one undoable change, conflicts, rejection,
workspace isolation, and the ``winnow propose`` / ``winnow mr`` commands."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from winnow import synthetic
from winnow.cli.main import app
from winnow.errors import ConflictError, InvalidInputError, NotFoundError
from winnow.services import annotations as ann_svc
from winnow.services import forks, ingest, queue, schema, versions
from winnow.services import merge_requests as mrs
from winnow.services.datasets import get_image, load_dataset
from winnow.services.fixes import snapshot_row, undo
from winnow.services.projects import create_project, get_project
from winnow.store import models as m
from winnow.store.db import Store

BASE_WS, CUST_WS = "base-ws", "acme-ws"
runner = CliRunner()


def review(store, project: str, labels: dict[str, list[dict]], workspace: str = CUST_WS) -> None:
    """Label (``corrected``) and approve ``labels`` per image through the customer's queue."""
    batch = queue.create_batch(store, project, [queue.QueueItemIn(n) for n in labels], workspace=workspace)
    for item in queue.show_batch(store, project, batch.id, workspace=workspace)["items"]:
        queue.submit(store, project, item["id"], decision="corrected", annotations=labels[item["image"]], user="lab", workspace=workspace)
        queue.review(store, project, item["id"], approve=True, user="rev", workspace=workspace)


def base_rows(store) -> dict[str, list[dict]]:
    """Every row of the base project an accept may touch, as it is stored."""
    with store.read() as s:
        pid = get_project(s, "base", BASE_WS).id
        images = s.scalars(select(m.Image).where(m.Image.project_id == pid).order_by(m.Image.id)).all()
        ids = [im.id for im in images]
        return {
            "images": [snapshot_row(r) for r in images],
            "annotations": [snapshot_row(r) for r in s.scalars(select(m.Annotation).where(m.Annotation.image_id.in_(ids)).order_by(m.Annotation.id))],
            "metadata": sorted((r.image_id, r.key, json.dumps(r.value)) for r in s.scalars(select(m.ImageMetadata).where(m.ImageMetadata.image_id.in_(ids)))),
            "tags": sorted((r.image_id, r.tag) for r in s.scalars(select(m.ImageTag).where(m.ImageTag.image_id.in_(ids)))),
            "classes": [snapshot_row(r) for r in s.scalars(select(m.ProjectClass).where(m.ProjectClass.project_id == pid).order_by(m.ProjectClass.id))],
        }


def labels_of(store, project: str, image: str, workspace: str) -> list[tuple]:
    return sorted((a.label, tuple(round(v, 3) for v in a.bbox)) for a in get_image(store, project, image, workspace=workspace).annotations)


@pytest.fixture
def world(tmp_path):
    """A base (12 images, v1) in ``base-ws``; its fork ``acme`` in ``acme-ws`` that renamed
    ``circle`` to ``ring``, has 4 images of its own (2 reviewed, one with a customer-only class
    ``scratch``) and adopted 2 base images whose corrected labels were reviewed too."""
    store = Store.open()
    create_project(store, "base", "detect", BASE_WS)
    ingest.import_records(store, "base", synthetic.generate(tmp_path / "b", 12, seed=1), tmp_path / "b", workspace=BASE_WS)
    versions.create_version(store, "base", workspace=BASE_WS, split="train=0.7,valid=0.3")
    forks.fork_project(store, "base", "v1", "acme", workspace=CUST_WS, base_workspace=BASE_WS)
    ingest.import_records(store, "acme", synthetic.generate(tmp_path / "c", 4, seed=5, prefix="cust"), tmp_path / "c", workspace=CUST_WS)
    schema.rename_class(store, "acme", "circle", "ring", workspace=CUST_WS)
    train = [r.name for r in versions.load_version(store, "base", "v1", workspace=BASE_WS).manifest.images if r.split == "train"]
    adopted = train[:2]
    forks.adopt_images(store, "acme", adopted, workspace=CUST_WS)
    review(store, "acme", {
        "images/cust_00000.png": [{"label": "ring", "bbox": [1, 1, 20, 20]}, {"label": "scratch", "bbox": [30, 30, 50, 40]}],
        "images/cust_00001.png": [{"label": "square", "bbox": [5, 5, 25, 25]}],
        "base/" + adopted[0]: [{"label": "ring", "bbox": [2, 2, 30, 30]}],
        "base/" + adopted[1]: [{"label": "triangle", "bbox": [10, 10, 40, 40]}],
    })
    return store, adopted


# ------------------------------------------------------------------------------- propose


def test_propose_takes_approved_labels_in_base_class_names(world):
    store, adopted = world
    mr = mrs.propose(store, "acme", workspace=CUST_WS, user="lab").as_dict()
    assert mr["state"] == "open" and mr["source"] == f"{CUST_WS}/acme" and mr["base_project"] == "base"
    assert mr["counts"] == {"add": 2, "relabel": 2}
    items = {i["name"]: i for i in mr["items"]}
    assert set(items) == {"images/cust_00000.png", "images/cust_00001.png", *("base/" + n for n in adopted)}, "only reviewed images"

    add = items["images/cust_00000.png"]
    own = get_image(store, "acme", "images/cust_00000.png", workspace=CUST_WS)
    assert add["kind"] == "add" and add["sha256"] == own.sha256 and (add["width"], add["height"]) == (own.width, own.height)
    assert sorted(a["label"] for a in add["annotations"]) == ["circle", "scratch"], "ring goes back as the base's circle"
    assert [a["bbox"] for a in add["annotations"] if a["label"] == "circle"] == [[1.0, 1.0, 20.0, 20.0]]
    assert [a["label"] for a in items["images/cust_00001.png"]["annotations"]] == ["square"]

    relabel = items["base/" + adopted[0]]
    with store.read() as s:
        override = s.scalar(select(m.ForkOverride).where(m.ForkOverride.base_name == adopted[0]))
        assert relabel["base_revision"] == override.base_revision
    assert relabel["kind"] == "relabel" and relabel["base_name"] == adopted[0]
    assert [a["label"] for a in relabel["annotations"]] == ["circle"]
    assert mr["report"]["new_classes"] == ["scratch"] and mr["report"]["renamed"] == {"ring": "circle"}

    with pytest.raises(InvalidInputError, match="not yet proposed"):
        mrs.propose(store, "acme", workspace=CUST_WS)  # nothing is proposed twice by default
    assert [r.id for r in mrs.list_requests(store, "base", workspace=BASE_WS, state="open")] == [mr["id"]]


def test_explicit_images_and_refusals(world, tmp_path):
    store, adopted = world
    mr = mrs.propose(store, "acme", workspace=CUST_WS, images=["images/cust_00002.png"], title="one more")
    assert mr.title == "one more" and [i["name"] for i in mr.items] == ["images/cust_00002.png"]

    cust3 = get_image(store, "acme", "images/cust_00003.png", workspace=CUST_WS)
    for a in cust3.annotations:
        ann_svc.delete_annotation(store, "acme", a.id, workspace=CUST_WS)
    with pytest.raises(InvalidInputError, match="has no labels"):
        mrs.propose(store, "acme", workspace=CUST_WS, images=["images/cust_00003.png"])
    with pytest.raises(NotFoundError, match="of its own"):
        mrs.propose(store, "acme", workspace=CUST_WS, images=["images/nope.png"])
    base_only = next(r.name for r in load_dataset(store, "base", workspace=BASE_WS).images if r.name not in adopted)
    with pytest.raises(NotFoundError, match="adopting"):
        mrs.propose(store, "acme", workspace=CUST_WS, images=["base/" + base_only])  # inherited, not adopted
    with pytest.raises(InvalidInputError, match="not a fork"):
        mrs.propose(store, "base", workspace=BASE_WS)
    with pytest.raises(InvalidInputError, match="title"):
        mrs.propose(store, "acme", workspace=CUST_WS, title="two\nlines")


def test_workspaces_are_isolated(world):
    store, _ = world
    mr = mrs.propose(store, "acme", workspace=CUST_WS)
    with pytest.raises(NotFoundError):
        mrs.propose(store, "acme", workspace=BASE_WS)  # the base team cannot propose from the customer's project
    with pytest.raises(NotFoundError):
        mrs.list_requests(store, "base", workspace=CUST_WS)
    with pytest.raises(NotFoundError):
        mrs.accept(store, "base", mr.id, workspace=CUST_WS, user="cust")  # a customer never decides its own request
    with pytest.raises(NotFoundError):
        mrs.show_request(store, "base", mr.id + 1, workspace=BASE_WS)
    create_project(store, "other", "detect", BASE_WS)
    with pytest.raises(NotFoundError):
        mrs.show_request(store, "other", mr.id, workspace=BASE_WS)  # a request is only found under its base


# ------------------------------------------------------------------------------- accept, undo, reject


def test_accept_adds_on_the_same_blob_relabels_and_a_new_version_has_them(world):
    store, adopted = world
    mr = mrs.propose(store, "acme", workspace=CUST_WS, user="lab")
    blobs = sorted(store.blobs.iter_shas())
    done = mrs.accept(store, "base", mr.id, workspace=BASE_WS, user="boss").as_dict()
    assert done["state"] == "accepted" and done["decided_by"] == "boss" and done["change_id"] is not None
    assert done["report"]["added"] == 2 and done["report"]["relabelled"] == 2 and done["report"]["conflicts"] == []
    assert done["report"]["classes_created"] == ["scratch"]
    assert sorted(store.blobs.iter_shas()) == blobs, "no byte is copied"

    name = f"{CUST_WS}/acme/images/cust_00000.png"
    added = get_image(store, "base", name, workspace=BASE_WS)
    assert added.sha256 == get_image(store, "acme", "images/cust_00000.png", workspace=CUST_WS).sha256
    assert added.metadata["proposed_by"] == f"{CUST_WS}/acme" and added.metadata["merge_request"] == mr.id
    assert labels_of(store, "base", name, BASE_WS) == [("circle", (1.0, 1.0, 20.0, 20.0)), ("scratch", (30.0, 30.0, 50.0, 40.0))]
    assert labels_of(store, "base", adopted[0], BASE_WS) == [("circle", (2.0, 2.0, 30.0, 30.0))]
    assert labels_of(store, "base", adopted[1], BASE_WS) == [("triangle", (10.0, 10.0, 40.0, 40.0))]

    v2 = versions.create_version(store, "base", workspace=BASE_WS)
    manifest = {r.name: r for r in versions.load_version(store, "base", v2.version, workspace=BASE_WS).manifest.images}
    assert {name, f"{CUST_WS}/acme/images/cust_00001.png"} <= set(manifest) and "scratch" in v2.classes
    assert sorted(a.label for a in manifest[name].annotations) == ["circle", "scratch"]
    assert [a.label for a in manifest[adopted[1]].annotations] == ["triangle"]

    with pytest.raises(ConflictError, match="already accepted"):
        mrs.accept(store, "base", mr.id, workspace=BASE_WS, user="boss")
    with pytest.raises(ConflictError, match="already accepted"):
        mrs.reject(store, "base", mr.id, workspace=BASE_WS, user="boss")


def test_a_conflicting_relabel_is_skipped_and_reported_then_forced(world):
    store, adopted = world
    mr = mrs.propose(store, "acme", workspace=CUST_WS)
    moved = get_image(store, "base", adopted[1], workspace=BASE_WS)
    ann_svc.delete_annotation(store, "base", moved.annotations[0].id, workspace=BASE_WS)  # the base changes it meanwhile
    theirs = labels_of(store, "base", adopted[1], BASE_WS)

    done = mrs.accept(store, "base", mr.id, workspace=BASE_WS, user="boss")
    [conflict] = done.report["conflicts"]
    assert conflict["name"] == "base/" + adopted[1] and conflict["kind"] == "relabel" and "changed" in conflict["reason"]
    assert "forced" not in conflict and "base/" + adopted[1] not in done.report["applied"]
    assert done.report["relabelled"] == 1 and labels_of(store, "base", adopted[1], BASE_WS) == theirs

    again = mrs.propose(store, "acme", workspace=CUST_WS)  # the skipped image was not applied: it can go again
    assert [i["name"] for i in again.items] == ["base/" + adopted[1]]
    with pytest.raises(ConflictError, match="force"):
        mrs.accept(store, "base", again.id, workspace=BASE_WS, user="boss")  # nothing applies: the request stays open
    forced = mrs.accept(store, "base", again.id, workspace=BASE_WS, user="boss", force=True)
    assert forced.report["conflicts"][0]["forced"] is True and forced.report["applied"] == ["base/" + adopted[1]]
    assert labels_of(store, "base", adopted[1], BASE_WS) == [("triangle", (10.0, 10.0, 40.0, 40.0))]


def test_after_a_rebase_relabels_are_checked_against_the_new_base_version(world):
    """The base renames a class of an adopted image and makes v2; the customer rebases. Its
    proposal for that image is checked against v2's labels (no conflict), and undoing the
    rebase puts the image's recorded base revision back."""
    store, adopted = world
    target = "base/" + adopted[0]
    with store.read() as s:
        override = s.scalar(select(m.ForkOverride).where(m.ForkOverride.base_name == adopted[0]))
        v1_revision = override.base_revision
    renamed = get_image(store, "base", adopted[0], workspace=BASE_WS).annotations[0].label
    schema.rename_class(store, "base", renamed, renamed + "-v2", workspace=BASE_WS)
    versions.create_version(store, "base", workspace=BASE_WS)
    report = forks.rebase(store, "acme", "v2", workspace=CUST_WS)
    assert report.conflicts == [] and target not in report.followed  # a rename is no change in the customer's names

    mr = mrs.propose(store, "acme", workspace=CUST_WS, images=[target])
    assert mr.items[0]["base_revision"] != v1_revision
    done = mrs.accept(store, "base", mr.id, workspace=BASE_WS, user="boss")
    assert done.report["conflicts"] == [] and done.report["applied"] == [target]

    undo(store, "acme", workspace=CUST_WS)  # the rebase
    with store.read() as s:
        assert s.scalar(select(m.ForkOverride).where(m.ForkOverride.base_name == adopted[0])).base_revision == v1_revision


def test_undo_of_the_accept_restores_the_base_exactly(world):
    store, _ = world
    before = base_rows(store)
    mr = mrs.propose(store, "acme", workspace=CUST_WS)
    done = mrs.accept(store, "base", mr.id, workspace=BASE_WS, user="boss")
    assert base_rows(store) != before
    undone = undo(store, "base", done.change_id, workspace=BASE_WS)
    assert undone["change_id"] == done.change_id
    assert base_rows(store) == before, "image, annotation, metadata and class rows as they were"
    shown = mrs.show_request(store, "base", mr.id, workspace=BASE_WS)
    assert shown.state == "accepted" and shown.reverted_at is not None
    assert mrs.propose(store, "acme", workspace=CUST_WS).counts == {"add": 2, "relabel": 2}, "undone: they can be proposed again"


def test_reject_leaves_the_base_untouched(world):
    store, _ = world
    before = base_rows(store)
    mr = mrs.propose(store, "acme", workspace=CUST_WS)
    done = mrs.reject(store, "base", mr.id, workspace=BASE_WS, user="boss", reason="blurry")
    assert done.state == "rejected" and done.report["reason"] == "blurry" and done.change_id is None
    assert base_rows(store) == before
    with pytest.raises(ConflictError, match="already rejected"):
        mrs.accept(store, "base", mr.id, workspace=BASE_WS, user="boss")
    assert [r.state for r in mrs.list_requests(store, "base", workspace=BASE_WS)] == ["rejected"]
    with pytest.raises(InvalidInputError):
        mrs.list_requests(store, "base", workspace=BASE_WS, state="merged")


def test_the_inverse_class_map():
    class_map = {"circle": "ring", "square": "shape", "triangle": "shape", "dot": None, "bar": {"by": "k", "into": ["x", "y"], "default": "y"}}
    inverse = mrs.inverse_class_map(class_map)
    assert mrs.base_label(inverse, "ring") == ("circle", ["circle"])
    assert mrs.base_label(inverse, "x") == ("bar", ["bar"])
    assert mrs.base_label(inverse, "shape") == ("shape", ["square", "triangle"]), "merged: ambiguous, kept"
    assert mrs.base_label(inverse, "scratch") == ("scratch", []), "customer-only: kept"
    assert mrs.base_label(mrs.inverse_class_map({"circle": "circle", "square": "circle"}), "circle")[0] == "circle"


# ------------------------------------------------------------------------------- the CLI


def cli(*args: str, code: int = 0) -> dict:
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == code, result.output
    return json.loads(result.stdout)


def test_cli_propose_list_show_accept_reject(world):
    store, _ = world
    proposed = cli("propose", "acme", "--image", "images/cust_00000.png", "--title", "edge cases", "-w", CUST_WS, "--user", "lab")
    assert proposed["state"] == "open" and proposed["title"] == "edge cases" and proposed["counts"] == {"add": 1, "relabel": 0}
    second = cli("propose", "acme", "-w", CUST_WS)
    assert second["counts"] == {"add": 1, "relabel": 2}, "the default leaves out what an open request has"

    listed = cli("mr", "list", "base", "-w", BASE_WS)["merge_requests"]
    assert [r["id"] for r in listed] == [proposed["id"], second["id"]] and "items" not in listed[0]
    shown = cli("mr", "show", "base", str(proposed["id"]), "-w", BASE_WS)
    assert [a["label"] for a in shown["items"][0]["annotations"]] == ["circle", "scratch"]

    accepted = cli("mr", "accept", "base", str(proposed["id"]), "-w", BASE_WS, "--user", "boss")
    assert accepted["state"] == "accepted" and accepted["decided_by"] == "boss"
    assert labels_of(store, "base", f"{CUST_WS}/acme/images/cust_00000.png", BASE_WS)[0][0] == "circle"
    rejected = cli("mr", "reject", "base", str(second["id"]), "--reason", "later", "-w", BASE_WS)
    assert rejected["state"] == "rejected" and rejected["report"]["reason"] == "later"
    assert [r["id"] for r in cli("mr", "list", "base", "--state", "open", "-w", BASE_WS)["merge_requests"]] == []

    twice = cli("mr", "accept", "base", str(proposed["id"]), "-w", BASE_WS, code=1)
    assert twice["type"] == "ConflictError"
    assert cli("mr", "accept", "base", str(second["id"]), "-w", CUST_WS, code=1)["type"] == "NotFoundError"

    text = runner.invoke(app, ["mr", "show", "base", str(proposed["id"]), "-w", BASE_WS])
    assert text.exit_code == 0 and "ring -> circle" in text.output and "scratch" in text.output


def test_gc_keeps_the_blobs_an_open_request_proposes(world):
    """The customer deletes its project after proposing: ``gc`` keeps the proposed images' bytes
    while the request is open, so the base team can still accept it."""
    from winnow.services.maintenance import verify
    from winnow.services.projects import delete_project

    store, _ = world
    mr = mrs.propose(store, "acme", workspace=CUST_WS, images=["images/cust_00001.png"])
    sha = mr.items[0]["sha256"]
    delete_project(store, "acme", CUST_WS)
    report = verify(store, gc=True, grace_seconds=0)
    assert sha not in report.unreferenced and store.blobs.exists(sha)
    done = mrs.accept(store, "base", mr.id, workspace=BASE_WS, user="boss")
    assert done.state == "accepted"
    added = [n for n in load_dataset(store, "base", workspace=BASE_WS).images if n.sha256 == sha]
    assert len(added) == 1 and added[0].name.endswith("images/cust_00001.png")
