"""The real server: a customer proposes its reviewed labels back to the base (its own key, its
own workspace), the base team lists, accepts (one undoable change, no byte copied) and rejects;
each side gets 404 for the other's project."""

from __future__ import annotations

import pytest

from winnow import synthetic
from winnow.services import forks, ingest, queue, schema, versions

BASE_WS, CUST_WS = "base-ws", "acme-ws"


@pytest.fixture
def world(server, tmp_path):
    """Base ``base`` (v1) in ``base-ws``, its fork ``acme`` in ``acme-ws`` (``circle`` renamed
    ``ring``) with 3 images of its own, 2 of them reviewed; the keys of both sides."""
    store = server.store
    from winnow.services.projects import create_project

    create_project(store, "base", "detect", BASE_WS)
    ingest.import_records(store, "base", synthetic.generate(tmp_path / "b", 8, seed=1), tmp_path / "b", workspace=BASE_WS)
    versions.create_version(store, "base", workspace=BASE_WS, split="train=0.7,valid=0.3")
    forks.fork_project(store, "base", "v1", "acme", workspace=CUST_WS, base_workspace=BASE_WS)
    ingest.import_records(store, "acme", synthetic.generate(tmp_path / "c", 3, seed=5, prefix="cust"), tmp_path / "c", workspace=CUST_WS)
    schema.rename_class(store, "acme", "circle", "ring", workspace=CUST_WS)
    names = ["images/cust_00000.png", "images/cust_00001.png"]
    batch = queue.create_batch(store, "acme", [queue.QueueItemIn(n) for n in names], workspace=CUST_WS)
    for item in queue.show_batch(store, "acme", batch.id, workspace=CUST_WS)["items"]:
        queue.submit(store, "acme", item["id"], decision="corrected", annotations=[{"label": "ring", "bbox": [1, 1, 20, 20]}], user="lab", workspace=CUST_WS)
        queue.review(store, "acme", item["id"], approve=True, user="rev", workspace=CUST_WS)
    return {
        "base": server.key(BASE_WS, "admin", name="base-admin"),
        "base_labeler": server.key(BASE_WS, "labeler", name="base-lab"),
        "cust": server.key(CUST_WS, "labeler", name="cust-lab"),
        "cust_admin": server.key(CUST_WS, "admin", name="cust-admin"),
    }


def images_of(client, project: str) -> dict[str, dict]:
    r = client.get(f"/projects/{project}/images", params={"limit": 1000})
    assert r.status_code == 200, r.text
    return {i["name"]: i for i in r.json()["images"]}


def test_propose_accept_undo_over_the_api(server, world):
    keys = world
    with server.client(keys["cust"]) as cust, server.client(keys["base"]) as base, server.client(keys["cust_admin"]) as cust_admin:
        r = cust.post("/projects/acme/merge-requests", json={"title": "night shift"})
        assert r.status_code == 201, r.text
        mr = r.json()
        assert mr["state"] == "open" and mr["counts"] == {"add": 2, "relabel": 0} and mr["title"] == "night shift"
        assert {a["label"] for i in mr["items"] for a in i["annotations"]} == {"circle"}, "the base's class names"
        again = cust.post("/projects/acme/merge-requests")
        assert again.status_code == 422 and "not yet proposed" in again.json()["error"]
        assert cust.post("/projects/acme/merge-requests", json={"images": ["x.png"], "force": True}).status_code == 422

        # each side is 404 on the other's project
        assert base.post("/projects/acme/merge-requests").status_code == 404
        assert cust.get("/projects/base/merge-requests").status_code == 404
        assert cust_admin.post(f"/projects/base/merge-requests/{mr['id']}/accept").status_code == 404
        assert cust_admin.post(f"/projects/base/merge-requests/{mr['id']}/reject").status_code == 404

        listed = base.get("/projects/base/merge-requests", params={"state": "open"}).json()
        assert [x["id"] for x in listed["merge_requests"]] == [mr["id"]] and listed["merge_requests"][0]["source"] == f"{CUST_WS}/acme"
        shown = base.get(f"/projects/base/merge-requests/{mr['id']}").json()
        assert shown["items"] == mr["items"]
        assert base.get("/projects/base/merge-requests/999").status_code == 404

        with server.client(keys["base_labeler"]) as labeler:
            assert labeler.post(f"/projects/base/merge-requests/{mr['id']}/accept").status_code == 403

        before = images_of(base, "base")
        blobs = sorted(server.store.blobs.iter_shas())
        r = base.post(f"/projects/base/merge-requests/{mr['id']}/accept", json={})
        assert r.status_code == 200, r.text
        done = r.json()
        assert done["state"] == "accepted" and done["decided_by"] == "key:base-admin" and done["report"]["added"] == 2
        after = images_of(base, "base")
        new = {f"{CUST_WS}/acme/images/cust_00000.png", f"{CUST_WS}/acme/images/cust_00001.png"}
        assert set(after) - set(before) == new
        assert sorted(server.store.blobs.iter_shas()) == blobs, "the same blobs, no byte copied"
        added = base.get(f"/projects/base/images/{CUST_WS}/acme/images/cust_00000.png")
        assert added.status_code == 200, added.text
        assert [a["label"] for a in added.json()["annotations"]] == ["circle"]
        assert added.json()["metadata"]["proposed_by"] == f"{CUST_WS}/acme"

        assert base.post(f"/projects/base/merge-requests/{mr['id']}/accept").status_code == 409
        assert base.post(f"/projects/base/merge-requests/{mr['id']}/reject").status_code == 409

        r = base.post("/projects/base/undo", json={"change": done["change_id"]})
        assert r.status_code == 200, r.text
        assert set(images_of(base, "base")) == set(before)
        assert base.get(f"/projects/base/merge-requests/{mr['id']}").json()["reverted_at"] is not None


def test_reject_over_the_api_leaves_the_base_as_it_was(server, world):
    keys = world
    with server.client(keys["cust"]) as cust, server.client(keys["base"]) as base:
        mr = cust.post("/projects/acme/merge-requests", json={"images": ["images/cust_00002.png"]}).json()
        assert [i["name"] for i in mr["items"]] == ["images/cust_00002.png"], "named images need no review"
        before = images_of(base, "base")
        r = base.post(f"/projects/base/merge-requests/{mr['id']}/reject", json={"reason": "out of scope"})
        assert r.status_code == 200 and r.json()["state"] == "rejected" and r.json()["report"]["reason"] == "out of scope"
        assert images_of(base, "base") == before
        mine = cust.get("/projects/acme/merge-requests", params={"proposed": "true"}).json()["merge_requests"]
        assert [(x["id"], x["state"]) for x in mine] == [(mr["id"], "rejected")], "the customer sees the base's decision"
        assert cust.get("/projects/acme/merge-requests").json()["merge_requests"] == []  # none proposed *to* acme
        assert base.post(f"/projects/base/merge-requests/{mr['id']}/accept", json={"force": True}).status_code == 409
        assert base.post(f"/projects/base/merge-requests/{mr['id']}/reject", json={"why": "x"}).status_code == 422
        assert base.get("/projects/base/merge-requests", params={"state": "merged"}).status_code == 422
