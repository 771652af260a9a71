"""The real server: versions (create/list/show/diff), models (scoped to project and workspace),
checks/fixes/undo, a training job run to completion, evaluations with ``worst_slices``, jobs,
and the roles (a viewer gets 403 on what needs ``manage``)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from winnow.services.ingest import import_dataset
from winnow.synthetic import generate


@pytest.fixture(scope="module")
def coco(tmp_path_factory) -> Path:
    """24 generated images with boxes, as a COCO folder to import."""
    from winnow.formats import get_format

    src = tmp_path_factory.mktemp("shapes")
    get_format("coco").write(generate(src, 24, seed=0), src / "coco", lambda rec, path: path.write_bytes(rec.file.read_bytes()))
    return src / "coco"


@pytest.fixture
def shapes(server, coco):
    """Workspace acme: project shapes with 24 labelled images; keys of each role, and one of workspace other."""
    admin = server.key("acme", "admin")
    with server.client(admin) as c:
        assert c.post("/projects", json={"name": "shapes", "task": "detect"}).status_code == 201
        assert c.post("/projects", json={"name": "empty", "task": "detect"}).status_code == 201
    import_dataset(server.store, "shapes", coco, format="coco", workspace="acme")
    return {"admin": admin, "viewer": server.key("acme", "viewer"), "labeler": server.key("acme", "labeler"),
            "other": server.key("other", "admin")}


def wait_for(client, job_id: str, timeout: float = 240) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        job = client.get(f"/jobs/{job_id}").json()
        if job["status"] in ("succeeded", "failed", "cancelled") or time.monotonic() > deadline:
            return job
        time.sleep(0.2)


# ----------------------------------------------------------------------------- versions


def test_versions_create_list_show_diff(server, shapes):
    with server.client(shapes["admin"]) as c:
        r = c.post("/projects/shapes/versions", json={"split": {"train": 0.7, "valid": 0.3}, "seed": 1, "name": "first", "resplit": True})
        assert r.status_code == 201, r.text
        v1 = r.json()
        assert v1["created"] and v1["number"] == 1 and v1["name"] == "first" and len(v1["version"]) == 64
        assert v1["counts"]["images"] == 24 and v1["recipe"]["split"] == {"train": 0.7, "valid": 0.3, "test": 0.0}

        again = c.post("/projects/shapes/versions", json={"split": "train=0.7,valid=0.3", "seed": 1, "resplit": True})
        assert again.status_code == 200 and not again.json()["created"] and again.json()["version"] == v1["version"]

        r = c.post("/projects/shapes/versions", json={"split": "60/20/20", "seed": 2, "resplit": True, "preprocess": "auto-orient,resize=64x64"})
        assert r.status_code == 201, r.text
        v2 = r.json()
        assert v2["number"] == 2 and v2["parent"] == v1["version"]

        listed = c.get("/projects/shapes/versions").json()
        assert [v["number"] for v in listed["versions"]] == [1, 2] and listed["more"] is False
        page = c.get("/projects/shapes/versions", params={"limit": 1, "offset": 1}).json()
        assert [v["number"] for v in page["versions"]] == [2] and page["more"] is False
        assert c.get("/projects/shapes/versions", params={"limit": 1}).json()["more"] is True

        for ref in ("v1", "1", "first", v1["version"][:10]):
            assert c.get(f"/projects/shapes/versions/{ref}").json()["version"] == v1["version"], ref
        assert c.get("/projects/shapes/versions/latest").json()["version"] == v2["version"]

        diff = c.get("/projects/shapes/versions/v1/diff/v2")
        assert diff.status_code == 200, diff.text
        d = diff.json()
        assert d["identical"] is False and d["a"] == f"shapes@{v1['version'][:12]}" and d["b"] == f"shapes@{v2['version'][:12]}"
        assert d["moved"] and "preprocess" in d["recipe"] and d["split_sizes"]["test"]["b"] > 0 == d["split_sizes"]["test"]["a"]
        assert c.get("/projects/shapes/versions/v1/diff/v1").json()["identical"] is True

        missing = c.get("/projects/shapes/versions/v9")
        assert missing.status_code == 404 and missing.json()["type"] == "NotFoundError"
        assert c.get("/projects/shapes/versions/v1/diff/v9").status_code == 404
        for bad in ({"split": "train=abc"}, {"seed": -1}, {"colour": "red"}, {"name": "x" * 101}, {"group_by": ["k"] * 11},
                    {"augment": "flip=sideways"}):
            r = c.post("/projects/shapes/versions", json=bad)
            assert r.status_code == 422 and set(r.json()) >= {"error", "type"}, (bad, r.text)
        dup = c.post("/projects/shapes/versions", json={"split": "50/50", "seed": 3, "resplit": True, "name": "first"})
        assert dup.status_code == 409
    with server.client(shapes["other"]) as c:
        assert c.get("/projects/shapes/versions").status_code == 404
        assert c.post("/projects/shapes/versions", json={}).status_code == 404
    with server.client(shapes["viewer"]) as c:
        assert c.get("/projects/shapes/versions/v1").status_code == 200


# ----------------------------------------------------------------------------- checks, fixes, undo


def test_checks_run_returns_findings_and_fixes_can_be_undone(server, shapes):
    from winnow.services.datasets import load_dataset
    from winnow.services.ingest import import_records

    # plant an exact duplicate with the same labels: exact_duplicate finds it, fix merges it
    ds = load_dataset(server.store, "shapes", workspace="acme")
    rec = ds.images[0]
    copy = type(rec)(name="copy/" + rec.name.split("/")[-1], annotations=list(rec.annotations), file=rec.file)
    ds.images = [copy]
    import_records(server.store, "shapes", ds, Path(rec.file).parent, workspace="acme")

    with server.client(shapes["viewer"]) as c:  # checks only read: a viewer may run them
        r = c.post("/projects/shapes/checks", json={"only": ["exact_duplicate", "dark"]})
        assert r.status_code == 200, r.text
        doc = r.json()
        assert doc["summary"]["checks_run"] == ["exact_duplicate", "dark"] and doc["summary"]["images"] == 25
        dup = [f for f in doc["findings"] if f["check"] == "exact_duplicate"]
        assert len(dup) == 1 and sorted(dup[0]["images"]) == sorted([rec.name, copy.name])
        assert set(dup[0]) >= {"severity", "message", "evidence", "suggestion", "score", "impact"}

        everything = c.post("/projects/shapes/checks", json={"skip": ["label_error"], "params": {"dark": {"max_mean": 10}}})
        assert everything.status_code == 200 and "production_drift" in everything.json()["summary"]["checks_run"]
        assert any(ch["id"] == "production_drift" for ch in c.get("/checks").json())

        for bad in ({"only": ["nope"]}, {"params": {"dark": {"nope": 1}}}, {"params": {"nope": {"x": 1}}}, {"only": "dark"}):
            r = c.post("/projects/shapes/checks", json=bad)
            assert r.status_code == 422 and r.json()["type"] == "InvalidInputError", (bad, r.text)

        assert c.post("/projects/shapes/fixes", json={}).status_code == 403
        assert c.post("/projects/shapes/undo", json={}).status_code == 403

    with server.client(shapes["admin"]) as c:
        dry = c.post("/projects/shapes/fixes", json={"dry_run": True}).json()
        assert dry["dry_run"] and dry["change_id"] is None and len(dry["images_removed"]) == 1
        fixed = c.post("/projects/shapes/fixes", json={"checks": ["exact_duplicate"]})
        assert fixed.status_code == 200, fixed.text
        change = fixed.json()["change_id"]
        assert change and fixed.json()["findings_applied"] == 1
        assert c.get("/projects/shapes/images").json()["images"].__len__() == 24

        undone = c.post("/projects/shapes/undo", json={"change": change})
        assert undone.status_code == 200 and undone.json()["change_id"] == change
        assert len(c.get("/projects/shapes/images").json()["images"]) == 25
        assert c.post("/projects/shapes/undo").status_code == 404, "nothing left to undo"
    with server.client(shapes["other"]) as c:
        assert c.post("/projects/shapes/checks", json={}).status_code == 404


# ----------------------------------------------------------------------------- roles


def test_a_viewer_or_labeler_gets_403_on_what_needs_manage(server, shapes):
    posts = [
        ("/projects/shapes/versions", {}),
        ("/projects/shapes/models", {"epochs": 1}),
        ("/projects/shapes/fixes", {}),
        ("/projects/shapes/undo", {}),
        ("/jobs/0123456789abcdef/cancel", None),
    ]
    for role in ("viewer", "labeler"):
        with server.client(shapes[role]) as c:
            for path, body in posts:
                r = c.post(path, json=body)
                assert r.status_code == 403 and r.json()["type"] == "PermissionDeniedError", (role, path, r.text)
    with server.client() as c:
        assert c.post("/projects/shapes/versions", json={}).status_code == 401
        assert c.get("/jobs/0123456789abcdef").status_code == 401


# ----------------------------------------------------------------------------- training, models, evaluation, jobs


def test_a_training_job_runs_to_completion_and_the_model_evaluates(server, shapes, monkeypatch):
    pytest.importorskip("torch")
    monkeypatch.setenv("WINNOW_THREADS", "1")
    tiny = {"epochs": 1, "image_size": 64, "width": 0.25, "batch_size": 8, "lr": 3e-3, "name": "tiny"}
    with server.client(shapes["admin"]) as c:
        assert c.post("/projects/shapes/models", json=tiny).status_code == 404, "no version yet"
        assert c.post("/projects/shapes/versions", json={"split": "60/20/20", "seed": 0, "resplit": True}).status_code == 201
        assert c.post("/projects/shapes/models", json=tiny | {"model": "nope"}).status_code == 422
        assert c.post("/projects/shapes/models", json=tiny | {"model": "mobilenet_v3_small"}).status_code == 422, "a classifier"
        assert c.post("/projects/shapes/models", json=tiny | {"epochs": 0}).status_code == 422

        r = c.post("/projects/shapes/models", json=tiny)
        assert r.status_code == 202, r.text
        job = r.json()
        assert r.headers["location"] == f"/api/v1/jobs/{job['id']}" and job["kind"] == "train" and job["project"] == "shapes"
        assert job["status"] in ("queued", "running")
        assert c.post("/projects/shapes/models", json=tiny).status_code == 409, "the same training is under way"

        done = wait_for(c, job["id"])
        assert done["status"] == "succeeded", done
        assert done["progress"]["done"] == done["progress"]["total"] > 0 and [e["epoch"] for e in done["log"]] == [1]
        model = done["result"]
        assert model["status"] == "ready" and model["name"] == "tiny" and model["project"] == "shapes" and model["created"]
        assert [j["id"] for j in c.get("/jobs", params={"kind": "train"}).json()["jobs"]] == [job["id"]]

        listed = c.get("/projects/shapes/models").json()["models"]
        assert [m["model"] for m in listed] == [model["model"]]
        for ref in ("tiny", model["model"][:8]):
            assert c.get(f"/projects/shapes/models/{ref}").json()["model"] == model["model"]
        assert c.get("/projects/empty/models/tiny").status_code == 404, "another project of the workspace"
        assert c.get("/projects/empty/models").json()["models"] == []
        assert c.get("/projects/shapes/models/nope").status_code == 404

        r = c.post("/projects/shapes/evaluations", json={"model": "tiny", "version": "latest", "split": "test", "n_bootstrap": 20})
        assert r.status_code == 200, r.text
        ev = r.json()
        assert ev["model"] == "tiny" and ev["split"] == "test" and isinstance(ev["worst_slices"], list)
        assert ev["slices"]["worst_slices"] == ev["worst_slices"] and "map50" in ev and ev["counts"]["images"] > 0

        bg = c.post("/projects/shapes/evaluations", json={"model": model["model"][:12], "split": "valid", "n_bootstrap": 10, "background": True})
        assert bg.status_code == 202, bg.text
        finished = wait_for(c, bg.json()["id"])
        assert finished["status"] == "succeeded" and "worst_slices" in finished["result"], finished

        cmp = c.post("/projects/shapes/compare", json={"a": "tiny", "b": "tiny", "split": "test"})
        assert cmp.status_code == 200 and cmp.json()["worse"] == [] and cmp.json()["metric"] == "map50"
        assert c.post("/projects/shapes/evaluations", json={"model": "nope"}).status_code == 404
        assert c.post("/projects/shapes/evaluations", json={"model": "tiny", "split": "dev"}).status_code == 422

    with server.client(shapes["viewer"]) as c:  # evaluations only read
        assert c.get(f"/jobs/{job['id']}").json()["status"] == "succeeded"
        assert c.get("/projects/shapes/models/tiny").status_code == 200
    with server.client(shapes["other"]) as c:  # another workspace sees none of it
        assert c.post("/projects", json={"name": "shapes"}).status_code == 201
        assert c.get("/projects/shapes/models").json()["models"] == []
        assert c.get("/projects/shapes/models/tiny").status_code == 404
        assert c.get(f"/projects/shapes/models/{model['model'][:12]}").status_code == 404
        assert c.get(f"/jobs/{job['id']}").status_code == 404
        assert c.get("/jobs").json()["jobs"] == []
        assert c.post("/projects/shapes/evaluations", json={"model": "tiny"}).status_code == 404


def test_the_image_list_can_carry_each_images_annotations(server, shapes):
    """``annotations=true`` (what the web grid asks for): every row lists the annotations the
    image page gives, so a thumbnail needs no request of its own; without it, only the count."""
    with server.client(shapes["viewer"]) as c:
        plain = c.get("/projects/shapes/images?limit=5").json()["images"]
        rich = c.get("/projects/shapes/images?limit=5&annotations=true").json()["images"]
        assert [r["name"] for r in rich] == [r["name"] for r in plain] and len(rich) == 5
        assert all("annotation_list" not in r for r in plain)
        assert c.get("/projects/shapes/images?limit=5").json()["total"] == 24  # every image, not the page
        assert c.get("/projects/shapes/images?split=test").json()["total"] == 0
        for row in rich:
            detail = c.get(f"/projects/shapes/images/{row['name']}").json()
            assert row["annotation_list"] == detail["annotations"] and len(row["annotation_list"]) == row["annotations"] > 0
