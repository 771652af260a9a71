"""The real server: annotation edits (recorded with who and when, IDOR-safe, role-checked), the
labeling queue end to end, and many clients writing at once with nothing lost."""

from __future__ import annotations

import json
import threading

import pytest
from sqlalchemy import func, select

from tests.integration.api.conftest import start_server
from tests.integration.api.test_auth_uploads import png
from winnow.api.limits import Limits
from winnow.core.types import UNLABELED_TAG
from winnow.services.versions import create_version, load_version
from winnow.store import models as m
from winnow.store.db import Store


@pytest.fixture
def server(tmp_path):
    """The conftest server, with upload rates high enough for the concurrency test."""
    store = Store.open(tmp_path / "home")
    limits = Limits(max_upload_bytes=2 * 1024 * 1024, max_body_bytes=256 * 1024, rates={"upload": (10_000.0, 10_000.0)})
    srv, uv, thread = start_server(store, limits)
    yield srv
    uv.should_exit = True
    thread.join(10)
    store.close()


@pytest.fixture
def keys(server):
    """admin, two labelers and a viewer of workspace acme, with project ``parts`` and three
    uploaded (unlabeled) 32x32 images."""
    k = {
        "admin": server.key("acme", "admin", name="boss"),
        "ann": server.key("acme", "labeler", name="ann"),
        "bob": server.key("acme", "labeler", name="bob"),
        "viewer": server.key("acme", "viewer", name="cam"),
    }
    with server.client(k["admin"]) as c:
        assert c.post("/projects", json={"name": "parts", "task": "detect"}).status_code == 201
        for i in range(3):
            r = c.post("/projects/parts/images", params={"name": f"img{i}.png"}, content=png(i))
            assert r.status_code == 201, r.text
    return k


def image(client, name="img0.png"):
    r = client.get(f"/projects/parts/images/{name}")
    assert r.status_code == 200
    return r.json()


# ----------------------------------------------------------------------------------- annotations


def test_annotation_crud_and_the_changes_list_shows_who_and_when(server, keys):
    with server.client(keys["ann"]) as c:
        r = c.post("/projects/parts/images/img0.png/annotations", json={"label": "bolt", "bbox": [1, 2, 10, 12]})
        assert r.status_code == 201, r.text
        made = r.json()
        assert made["source"] == "human" and made["created_by"] == "key:ann" and made["bbox"] == [1.0, 2.0, 10.0, 12.0]
        r = c.patch(f"/projects/parts/annotations/{made['id']}", json={"bbox": [0, 0, 50, 8]})
        assert r.status_code == 200 and r.json()["bbox"] == [0.0, 0.0, 32.0, 8.0], "clipped to the 32x32 image"
        assert [a["label"] for a in image(c)["annotations"]] == ["bolt"]
    with server.client(keys["bob"]) as c:
        assert c.delete(f"/projects/parts/annotations/{made['id']}").status_code == 200
        assert image(c)["annotations"] == []
        assert c.delete(f"/projects/parts/annotations/{made['id']}").status_code == 404
        changes = c.get("/projects/parts/changes").json()["changes"]
    assert [(x["kind"], x["created_by"]) for x in changes[:3]] == [
        ("annotation_delete", "key:bob"), ("annotation_update", "key:ann"), ("annotation_create", "key:ann"),
    ]
    assert all(x["created_at"].endswith("Z") for x in changes)


def test_bad_geometry_is_422_and_stores_nothing(server, keys):
    with server.client(keys["ann"]) as c:
        bad_bodies = [
            '{"label": "bolt", "bbox": [NaN, 0, 5, 5]}',
            '{"label": "bolt", "bbox": [0, 0, Infinity, 5]}',
            '{"label": "bolt", "bbox": [10, 10, 5, 20]}',
            '{"label": "bolt", "bbox": [0, 0, 5]}',
            '{"label": "bolt", "bbox": [100, 100, 200, 200]}',
            '{"label": "", "bbox": [0, 0, 5, 5]}',
            json.dumps({"label": "x" * 501, "bbox": [0, 0, 5, 5]}),
            '{"label": "bolt"}',
            '{"label": "bolt", "bbox": [0, 0, 5, 5], "extra": 1}',
        ]
        for body in bad_bodies:
            r = c.post("/projects/parts/images/img0.png/annotations", content=body, headers={"content-type": "application/json"})
            assert r.status_code == 422, (body, r.status_code, r.text)
        assert image(c)["annotations"] == []
        assert c.post("/projects/parts/images/nope.png/annotations", json={"label": "a", "bbox": [0, 0, 1, 1]}).status_code == 404


def test_another_workspaces_annotation_is_404_and_unchanged(server, keys):
    with server.client(keys["ann"]) as c:
        a_id = c.post("/projects/parts/images/img0.png/annotations", json={"label": "bolt", "bbox": [1, 1, 9, 9]}).json()["id"]
    intruder = server.key("evil", "admin", name="evil")
    with server.client(intruder) as c:
        assert c.post("/projects", json={"name": "parts", "task": "detect"}).status_code == 201
        assert c.patch(f"/projects/parts/annotations/{a_id}", json={"label": "pwned"}).status_code == 404
        assert c.delete(f"/projects/parts/annotations/{a_id}").status_code == 404
        assert c.get("/projects/parts/changes").json()["changes"] == []
    with server.client(keys["admin"]) as c:  # and another project of the same workspace
        assert c.post("/projects", json={"name": "other", "task": "detect"}).status_code == 201
        assert c.patch(f"/projects/other/annotations/{a_id}", json={"label": "pwned"}).status_code == 404
        anns = image(c)["annotations"]
    assert [(a["id"], a["label"]) for a in anns] == [(a_id, "bolt")]


def test_a_viewer_cannot_edit_or_work_the_queue(server, keys):
    with server.client(keys["ann"]) as c:
        a_id = c.post("/projects/parts/images/img0.png/annotations", json={"label": "bolt", "bbox": [1, 1, 9, 9]}).json()["id"]
    with server.client(keys["viewer"]) as c:
        assert c.post("/projects/parts/images/img1.png/annotations", json={"label": "a", "bbox": [0, 0, 4, 4]}).status_code == 403
        assert c.patch(f"/projects/parts/annotations/{a_id}", json={"label": "nut"}).status_code == 403
        assert c.delete(f"/projects/parts/annotations/{a_id}").status_code == 403
        assert c.post("/projects/parts/queue/batches", json={"images": [{"image": "img1.png"}]}).status_code == 403
        assert c.post("/projects/parts/queue/from-findings", json={}).status_code == 403
        assert c.get("/projects/parts/queue/batches").status_code == 200
        assert c.get("/projects/parts/changes").status_code == 200
        assert [a["label"] for a in image(c)["annotations"]] == ["bolt"]


# ----------------------------------------------------------------------------------- the queue


def test_queue_flow_submit_review_send_back_and_version(server, keys):
    with server.client(keys["admin"]) as c:
        r = c.post("/projects/parts/queue/batches", json={"name": "round-1", "images": [
            {"image": "img0.png", "score": 0.9, "prelabels": [{"label": "bolt", "bbox": [2, 2, 20, 20], "score": 0.7}]},
            {"image": "img1.png", "score": 0.4, "prelabels": [{"label": "nut", "bbox": [1, 1, 5, 5], "score": 0.6}]},
        ]})
        assert r.status_code == 201, r.text
        assert c.post("/projects/parts/queue/batches", json={"images": [{"image": "img0.png"}]}).status_code == 409

    ann, bob = server.client(keys["ann"]), server.client(keys["bob"])
    with ann, bob:
        first = ann.post("/projects/parts/queue/batches/round-1/next").json()["item"]
        second = bob.post("/projects/parts/queue/batches/round-1/next").json()["item"]
        assert (first["image"], second["image"]) == ("img0.png", "img1.png")
        assert first["assignee"] == "key:ann"

        r = ann.post(f"/projects/parts/queue/items/{first['id']}/submit", json={"decision": "accepted"})
        assert r.status_code == 200 and r.json()["state"] == "in_review"
        assert ann.post(f"/projects/parts/queue/items/{first['id']}/submit", json={"decision": "accepted"}).status_code == 409
        assert UNLABELED_TAG in image(ann)["tags"], "labels are written at approval, not at submit"
        assert ann.post(f"/projects/parts/queue/items/{first['id']}/review", json={"approve": True}).status_code == 403
        r = bob.post(f"/projects/parts/queue/items/{first['id']}/review", json={"approve": True})
        assert r.status_code == 200 and r.json()["state"] == "done" and r.json()["reviewed_by"] == "key:bob"
        assert bob.post(f"/projects/parts/queue/items/{first['id']}/review", json={"approve": True}).status_code == 409
        img0 = image(ann)
        assert UNLABELED_TAG not in img0["tags"]
        assert [(a["label"], a["bbox"], a["source"]) for a in img0["annotations"]] == [("bolt", [2.0, 2.0, 20.0, 20.0], "human")]

        corrected = {"decision": "corrected", "annotations": [{"label": "nut", "bbox": [0, 0, 8, 8]}]}
        assert bob.post(f"/projects/parts/queue/items/{second['id']}/submit", json=corrected).status_code == 200
        r = ann.post(f"/projects/parts/queue/items/{second['id']}/review", json={"approve": False, "comment": "missed one"})
        assert r.status_code == 200 and r.json()["state"] == "to_label" and r.json()["review"]["comment"] == "missed one"
        corrected["annotations"].append({"label": "nut", "bbox": [10, 10, 20, 20]})
        assert bob.post(f"/projects/parts/queue/items/{second['id']}/submit", json=corrected).status_code == 200
        assert ann.post(f"/projects/parts/queue/items/{second['id']}/review", json={"approve": True}).status_code == 200
        img1 = image(ann, "img1.png")
        assert sorted(a["bbox"] for a in img1["annotations"]) == [[0.0, 0.0, 8.0, 8.0], [10.0, 10.0, 20.0, 20.0]]
        assert UNLABELED_TAG not in img1["tags"]

        shown = ann.get("/projects/parts/queue/batches/round-1").json()
        assert shown["state"] == "done" and [i["decision"] for i in shown["items"]] == ["accepted", "corrected"]
        assert ann.get("/projects/parts/queue/batches", params={"state": "done"}).json()["batches"][0]["name"] == "round-1"
        kinds = [x["kind"] for x in ann.get("/projects/parts/changes").json()["changes"]]
        assert kinds.count("queue_review") == 2

    version = create_version(server.store, "parts", workspace="acme", user="boss")
    included = {r.name: r for r in load_version(server.store, "parts", version.version, workspace="acme").manifest.images}
    assert set(included) == {"img0.png", "img1.png"}, "reviewed images are in the version, the unlabeled one is not"
    assert len(included["img1.png"].annotations) == 2


def test_other_projects_queue_items_are_404(server, keys):
    with server.client(keys["admin"]) as c:
        c.post("/projects/parts/queue/batches", json={"name": "b", "images": [{"image": "img2.png"}]})
        item = c.post("/projects/parts/queue/batches/b/next").json()["item"]
    with server.client(server.key("evil", "admin", name="evil")) as c:
        assert c.post("/projects", json={"name": "parts", "task": "detect"}).status_code == 201
        assert c.post(f"/projects/parts/queue/items/{item['id']}/submit", json={"decision": "rejected"}).status_code == 404
        assert c.get("/projects/parts/queue/batches/b").status_code == 404
    with server.client(keys["ann"]) as c:
        assert c.get(f"/projects/parts/queue/items/{item['id']}").json()["state"] == "to_label"


def test_findings_become_a_check_batch(server, keys):
    with server.client(keys["ann"]) as c:
        for _ in range(2):  # the same box twice: a duplicate_box finding
            c.post("/projects/parts/images/img0.png/annotations", json={"label": "bolt", "bbox": [1, 1, 9, 9]})
        r = c.post("/projects/parts/queue/from-findings", json={"checks": ["duplicate_box"], "name": "dups"})
        assert r.status_code == 201, r.text
        assert r.json()["batch"]["kind"] == "check" and r.json()["items"] == 1
        item = c.get("/projects/parts/queue/batches/dups").json()["items"][0]
        assert item["image"] == "img0.png" and item["reason"]["check"] == "duplicate_box" and len(item["prelabels"]) == 2
        assert c.post("/projects/parts/queue/from-findings", json={"checks": ["no_such_check"]}).status_code == 422


# ----------------------------------------------------------------------------------- concurrency


def test_many_clients_at_once_lose_nothing(server, keys):
    """8 clients x 25 requests: annotation creates and edits on one project, plus raw uploads."""
    threads, per_thread = 8, 25
    created: list[list[int]] = [[] for _ in range(threads)]
    edited: list[dict[int, str]] = [{} for _ in range(threads)]
    uploaded: list[list[str]] = [[] for _ in range(threads)]
    failures: list[str] = []
    start = threading.Barrier(threads)

    def work(t: int) -> None:
        with server.client(keys["ann"] if t % 2 else keys["bob"]) as c:
            start.wait()
            for j in range(per_thread):
                if j % 5 == 4:
                    name = f"t{t}-{j}.png"
                    r = c.post("/projects/parts/images", params={"name": name}, content=png(1000 + t * 100 + j, size=16))
                    (uploaded[t].append(name) if r.status_code == 201 else failures.append(f"upload {r.status_code} {r.text}"))
                elif j % 5 == 3 and created[t]:
                    a_id, label = created[t][-1], f"edited-{t}-{j}"
                    r = c.patch(f"/projects/parts/annotations/{a_id}", json={"label": label})
                    (edited[t].__setitem__(a_id, label) if r.status_code == 200 else failures.append(f"patch {r.status_code} {r.text}"))
                else:
                    body = {"label": f"c{t}", "bbox": [t, j % 10, t + 5, j % 10 + 5]}
                    r = c.post(f"/projects/parts/images/img{j % 3}.png/annotations", json=body)
                    (created[t].append(r.json()["id"]) if r.status_code == 201 else failures.append(f"create {r.status_code} {r.text}"))

    pool = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for th in pool:
        th.start()
    for th in pool:
        th.join(120)
    assert not failures, failures[:5]

    ids = [i for ids in created for i in ids]
    names = [n for ns in uploaded for n in ns]
    assert len(ids) == threads * 15 and len(names) == threads * 5
    with server.store.read() as s:
        rows = dict(
            s.execute(select(m.Annotation.id, m.ProjectClass.name).join(m.ProjectClass, m.ProjectClass.id == m.Annotation.class_id)).all()
        )
        images = set(s.scalars(select(m.Image.name)))
        n_changes = s.scalar(select(func.count()).select_from(m.Change))
    assert set(ids) <= set(rows) and len(rows) == len(ids), "every created annotation is there, once"
    for t in range(threads):
        for a_id, label in edited[t].items():
            assert rows[a_id] == label, "every edit is there"
    assert images == {"img0.png", "img1.png", "img2.png", *names}, "every uploaded image is there"
    assert n_changes == len(ids) + sum(len(e) for e in edited)
