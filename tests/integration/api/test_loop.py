"""The whole loop over HTTP, as a team runs it against the real server: upload labelled data,
version, train (a job), deploy, predict with capture, select the captured images, label them
(one key) and review them (another), version again and retrain on the reviewed labels."""

from __future__ import annotations

import io
import shutil
import time
import zipfile
from pathlib import Path

import pytest

from winnow.core.types import Task
from winnow.formats import get_format
from winnow.services.versions import load_version
from winnow.synthetic import generate

pytest.importorskip("torch")

TRAIN = {"image_size": 32, "width": 0.25, "epochs": 1, "batch_size": 8, "lr": 0.01}


def zipped(folder: Path) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for p in sorted(folder.rglob("*")):
            if p.is_file():
                zf.write(p, p.relative_to(folder).as_posix())
    return buf.getvalue()


def wait(client, job: dict, timeout: float = 240) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        job = client.get(f"/jobs/{job['id']}").json()
        if job["status"] in ("succeeded", "failed", "cancelled"):
            assert job["status"] == "succeeded", job
            return job["result"]
        assert time.monotonic() < deadline, job
        time.sleep(0.2)


def test_capture_select_label_review_and_retrain_on_the_reviewed_labels(server, tmp_path, monkeypatch):
    monkeypatch.setenv("WINNOW_THREADS", "1")
    admin = server.key("acme", "admin", name="ops")
    labeler = server.key("acme", "labeler", name="ann")
    reviewer = server.key("acme", "labeler", name="rev")
    camera = server.key("acme", "viewer", name="cam-north")

    labelled = generate(tmp_path / "first", 16, seed=3, task=Task.CLASSIFY)
    get_format("folders").write(labelled, tmp_path / "folders", lambda rec, path: shutil.copyfile(rec.file, path))
    production = generate(tmp_path / "production", 5, seed=11, task=Task.CLASSIFY)
    truth = {}

    with server.client(admin) as ops:
        assert ops.post("/projects", json={"name": "loop", "task": "classify"}).status_code == 201
        up = ops.post("/projects/loop/images", files={"file": ("first.zip", zipped(tmp_path / "folders"))})
        assert up.status_code == 201 and up.json()["images_added"] == 16, up.text
        v1 = ops.post("/projects/loop/versions", json={"split": "train=0.75,valid=0.25", "seed": 1}).json()
        job = ops.post("/projects/loop/models", json={"version": v1["version"], "name": "m1", **TRAIN})
        assert job.status_code == 202, job.text
        m1 = wait(ops, job.json())
        assert m1["version"] == v1["version"]
        assert ops.post("/projects/loop/deploy", json={"model": "m1"}).status_code == 200
        assert ops.put("/projects/loop/capture", json={"mode": "all"}).status_code == 200

    with server.client(camera) as cam:  # production: a camera with a viewer key
        for rec in production.images:
            r = cam.post(
                "/projects/loop/predict",
                params={"camera": "north", "time": "2026-11-29T08:00:00+01:00"},
                content=rec.file.read_bytes(),
            )
            assert r.status_code == 200, r.text
            body = r.json()
            assert body["captured"] is True and body["model"] == m1["model"] and body["predictions"]
            truth[body["image"]] = rec.annotations[0].label

    with server.client(admin) as ops:
        captured = ops.get("/projects/loop/images", params={"tag": "captured"}).json()["images"]
        assert sorted(i["name"] for i in captured) == sorted(truth)
        assert all("unlabeled" in i["tags"] and i["metadata"]["camera"] == "north" for i in captured)
        assert all(i["metadata"]["time"] == "2026-11-29T07:00:00Z" or i["metadata"]["time"].startswith("2026-11-29T07:00:00") for i in captured)
        picked = ops.post("/projects/loop/select", json={"budget": 3, "strategy": "margin"})
        assert picked.status_code == 201, picked.text
        picked = picked.json()
        batch = picked["batch"]["name"]
        chosen = [p["image"] for p in picked["picked"]]
        assert len(chosen) == 3 and set(chosen) <= set(truth)
        assert all(p["prelabels"] for p in picked["picked"])  # the model's guesses ride along

    with server.client(labeler) as ann:
        done = []
        while (item := ann.post(f"/projects/loop/queue/batches/{batch}/next").json()["item"]) is not None:
            answer = [{"label": truth[item["image"]]}]
            r = ann.post(f"/projects/loop/queue/items/{item['id']}/submit", json={"decision": "corrected", "annotations": answer})
            assert r.status_code == 200, r.text
            done.append(item)
        assert sorted(i["image"] for i in done) == sorted(chosen)
        own = ann.post(f"/projects/loop/queue/items/{done[0]['id']}/review", json={"approve": True})
        assert own.status_code == 403  # nobody reviews their own labels

    with server.client(reviewer) as rev:
        for item in done:
            r = rev.post(f"/projects/loop/queue/items/{item['id']}/review", json={"approve": True})
            assert r.status_code == 200, r.text
        state = rev.get(f"/projects/loop/queue/batches/{batch}").json()
        assert state["state"] == "done"
        for name in chosen:
            image = rev.get(f"/projects/loop/images/{name}").json()
            assert "unlabeled" not in image["tags"]
            assert [(a["label"], a["source"]) for a in image["annotations"]] == [(truth[name], "human")]

    with server.client(admin) as ops:
        v2 = ops.post("/projects/loop/versions", json={"split": "train=0.75,valid=0.25", "seed": 1}).json()
        assert v2["number"] == 2 and v2["counts"]["images"] == 16 + 3
        diff = ops.get(f"/projects/loop/versions/{v1['version']}/diff/{v2['version']}").json()
        assert sorted(diff["images_added"]) == sorted(chosen) and diff["images_removed"] == []
        m2 = wait(ops, ops.post("/projects/loop/models", json={"version": v2["version"], "name": "m2", **TRAIN}).json())
        assert m2["version"] == v2["version"]
    # the retrained model learnt from the reviewed labels: they are in its version's manifest
    loaded = load_version(server.store, "loop", v2["version"], workspace="acme")
    by_name = {r.name: r for r in loaded.manifest.images}
    for name in chosen:
        assert [a.label for a in by_name[name].annotations] == [truth[name]]
        assert by_name[name].split in ("train", "valid")
    unreviewed = set(truth) - set(chosen)
    assert not unreviewed & set(by_name)  # still-unlabeled captures stay out of versions
