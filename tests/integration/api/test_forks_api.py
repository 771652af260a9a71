"""Customer projects over the real server: a base team in workspace ``team`` forks its project
``base`` into the customers' workspaces ``acme`` and ``globex``; each customer key sees only its
own project, reads the base through its fork (summary, inherited images and their bytes, ready
models) and can write nothing of it; the base team sees its customers and no one else's; uploads
and captured production images stay in the customer's project; rebase reports a planted conflict;
a class rename changes the fork's class map and its next version."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.integration.api.conftest import start_server
from tests.integration.api.test_auth_uploads import png
from winnow.api.limits import Limits
from winnow.core.types import Task
from winnow.services import annotations as ann_svc
from winnow.services import forks
from winnow.services.auth import create_key
from winnow.services.datasets import load_dataset
from winnow.services.ingest import import_records
from winnow.services.projects import create_project, show_project
from winnow.services.versions import create_version, load_version
from winnow.store import models as m
from winnow.store.db import Store
from winnow.synthetic import generate

TEAM = "team"


def seed(store: Store, root: Path, project: str, workspace: str, n: int, *, seed: int = 1, task: Task = Task.DETECT) -> str:
    """``project`` in ``workspace`` with ``n`` generated images and a version v1 (60/20/20)."""
    ds = generate(root / f"{workspace}-{project}", n, seed=seed, task=task)
    create_project(store, project, task.value, workspace)
    import_records(store, project, ds, root / f"{workspace}-{project}", workspace=workspace)
    split = "train=0.6,valid=0.2,test=0.2" if task is Task.DETECT else "train=0.75,valid=0.25"
    return create_version(store, project, split=split, seed=1, workspace=workspace).version


def register_model(store: Store, project: str, workspace: str, name: str, status: str) -> str:
    """A model row in the registry (no training: the base views only read the registry)."""
    model_id = hashlib.sha256(name.encode()).hexdigest()
    with store.write() as session:
        from winnow.services.projects import get_project

        proj = get_project(session, project, workspace)
        version = session.query(m.Version).filter_by(project_id=proj.id).first()
        session.add(m.Model(
            project_id=proj.id, model_id=model_id, name=name, version_id=version.version_id, backend="ssdlite",
            task="detect", classes=["circle", "square", "triangle"], params={}, recipe={}, code_version="test",
            metrics={"mAP50": 0.5}, status=status,
        ))
    return model_id


def inherited_names(store: Store, project: str = "base", workspace: str = TEAM, ref: str = "v1") -> dict[str, str]:
    """``base/<name>`` -> sha256 of the base version's images a fork inherits (all but test)."""
    manifest = load_version(store, project, ref, workspace=workspace).manifest
    return {"base/" + r.name: r.sha256 for r in manifest.images if r.split != "test"}


def image_count(store: Store, project: str, workspace: str) -> int:
    return show_project(store, project, workspace).images


def error(r, status: int, kind: str | None = None) -> dict:
    assert r.status_code == status, (r.request.method, str(r.request.url), r.status_code, r.text)
    doc = r.json()
    assert set(doc) >= {"error", "type"} and doc["error"], doc
    if kind is not None:
        assert doc["type"] == kind, doc
    return doc


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The base team (``team/base``, 20 images, v1; a ready and a failed model), two customers
    forked over HTTP (``acme/acme-proj``, ``globex/globex-proj``), a rival team (``rival/base``)
    with a customer ``initech/ini-proj``, and a plain project ``initech/plain``."""
    root = tmp_path_factory.mktemp("forks")
    store = Store.open(root / "home")
    seed(store, root, "base", TEAM, 20)
    register_model(store, "base", TEAM, "base-model", "ready")
    register_model(store, "base", TEAM, "base-broken", "failed")
    seed(store, root, "base", "rival", 4, seed=9)
    forks.fork_project(store, "base", "v1", "ini-proj", workspace="initech", base_workspace="rival")
    create_project(store, "plain", "detect", "initech")
    limits = Limits(max_upload_bytes=2 * 1024 * 1024, max_predict_bytes=1024 * 1024, max_body_bytes=256 * 1024,
                    rates={"upload": (1000, 1000), "predict": (1000, 1000)})
    srv, uv, thread = start_server(store, limits)
    keys = SimpleNamespace(
        team=create_key(store, TEAM, "admin").key, team_viewer=create_key(store, TEAM, "viewer").key,
        rival=create_key(store, "rival", "admin").key,
    )
    with srv.client(keys.team) as c:  # the customers are made over HTTP, before their keys exist
        for name, ws in (("acme-proj", "acme"), ("globex-proj", "globex")):
            r = c.post("/projects/base/forks", json={"name": name, "workspace": ws, "version": "v1"})
            assert r.status_code == 201, r.text
    keys.acme = create_key(store, "acme", "admin").key
    keys.acme_viewer = create_key(store, "acme", "viewer").key
    keys.acme_labeler = create_key(store, "acme", "labeler").key
    keys.globex = create_key(store, "globex", "admin").key
    keys.initech = create_key(store, "initech", "admin").key
    yield SimpleNamespace(server=srv, store=store, keys=keys, root=root)
    uv.should_exit = True
    thread.join(10)
    store.close()


def client(world, key: str):
    return world.server.client(getattr(world.keys, key))


# ----------------------------------------------------------------------------- the base team


def test_fork_over_http_and_the_base_teams_view_of_its_customers(world):
    with client(world, "team") as c:
        listed = c.get("/projects/base/forks")
        assert listed.status_code == 200, listed.text
        docs = listed.json()["forks"]
        assert [(f["workspace"], f["project"]) for f in docs] == [("acme", "acme-proj"), ("globex", "globex-proj")]
        assert all(f["base_project"] == "base" and f["base_workspace"] == TEAM and f["base_ref"] == "base@v1" for f in docs)

        one = c.get("/projects/base/forks/acme/acme-proj")
        assert one.status_code == 200, one.text
        assert one.json()["project"]["name"] == "acme-proj" and one.json()["project"]["workspace"] == "acme"
        assert one.json()["fork"]["base_version_number"] == 1 and one.json()["fork"]["behind"] is False

        # not a fork of team/base (a rival's fork of its own "base", a plain project, nothing): the same 404
        answers = [error(c.get(f"/projects/base/forks/{ws}/{p}"), 404, "NotFoundError")["error"]
                   for ws, p in (("initech", "ini-proj"), ("initech", "plain"), ("acme", "nope"), ("nowhere", "acme-proj"))]
        assert all("has no fork" in a for a in answers), answers

        # a workspace that holds someone else's projects is not the team's to fork into
        error(c.post("/projects/base/forks", json={"name": "sneaky", "workspace": "initech"}), 409, "ConflictError")
        error(c.post("/projects/base/forks", json={"name": "acme-proj", "workspace": "acme"}), 409, "ConflictError")
        error(c.post("/projects/base/forks", json={"name": "x", "workspace": "hooli", "version": "v9"}), 404, "NotFoundError")
        for bad in ({}, {"name": "x"}, {"name": "x", "workspace": "hooli", "colour": "red"}, {"name": "x" * 101, "workspace": "w"},
                    {"name": "x", "workspace": "w" * 101}, {"name": "", "workspace": "w"}, {"name": "x", "workspace": 3}):
            assert "details" in error(c.post("/projects/base/forks", json=bad), 422, "InvalidInputError"), bad
        error(c.post("/projects/base/forks", json={"name": "x", "workspace": "bad/ws"}), 422, "InvalidInputError")
        error(c.post("/projects/base/forks", json={"name": "bad@name", "workspace": "hooli"}), 422, "InvalidInputError")
        error(c.delete("/projects/base"), 409, "ConflictError")  # its customers read its versions
    with client(world, "team_viewer") as c:
        assert c.get("/projects/base/forks").status_code == 200
        error(c.post("/projects/base/forks", json={"name": "v", "workspace": "hooli"}), 403, "PermissionDeniedError")
    with client(world, "rival") as c:  # the rival team sees its own customer, not the team's
        assert [f["project"] for f in c.get("/projects/base/forks").json()["forks"]] == ["ini-proj"]
        assert c.get("/projects/base/forks/initech/ini-proj").status_code == 200
        error(c.get("/projects/base/forks/acme/acme-proj"), 404)
    with world.store.read() as session:  # nothing was made by the refused forks
        names = {p.name for p in session.query(m.Project).all()}
    assert not names & {"sneaky", "x", "v", "bad@name"}


# ----------------------------------------------------------------------------- the customer


def test_a_customer_key_sees_only_its_project_and_the_base_through_its_fork(world):
    expected = inherited_names(world.store)
    with client(world, "acme") as c:
        assert [p["name"] for p in c.get("/projects").json()] == ["acme-proj"]
        for path in ("/projects/base", "/projects/globex-proj", "/projects/ini-proj", "/projects/globex-proj/base",
                     "/projects/globex-proj/base/images", "/projects/globex-proj/fork", "/projects/base/forks",
                     "/projects/base/forks/acme/acme-proj", "/projects/base/forks/globex/globex-proj",
                     "/projects/base/images", "/projects/base/versions", "/projects/base/models", "/projects/base/classes"):
            error(c.get(path), 404, "NotFoundError")

        fork = c.get("/projects/acme-proj/fork").json()
        assert fork["base_project"] == "base" and fork["base_workspace"] == TEAM and fork["base_version_number"] == 1

        base = c.get("/projects/acme-proj/base")
        assert base.status_code == 200, base.text
        b = base.json()
        v1 = load_version(world.store, "base", "v1", workspace=TEAM)
        assert (b["project"], b["workspace"], b["version"], b["version_number"]) == ("base", TEAM, v1.version_id, 1)
        assert b["classes"] == ["circle", "square", "triangle"] == b["customer_classes"] and b["counts"]["images"] == 20
        assert b["behind"] is False and b["class_map"] == {c: c for c in b["classes"]}

        seen, offset = [], 0
        while True:
            page = c.get("/projects/acme-proj/base/images", params={"limit": 7, "offset": offset}).json()
            seen += page["images"]
            offset += 7
            if not page["more"]:
                break
        assert page["total"] == len(expected) < 20
        assert {i["name"]: i["sha256"] for i in seen} == expected
        assert all(i["name"].startswith("base/") and i["split"] in ("train", "valid") and not i["adopted"] for i in seen)
        assert all(sum(i["labels"].values()) == len(i["annotations"]) >= 1 for i in seen)

        name, sha = min(expected.items())
        for ref in (name, name.removeprefix("base/")):
            r = c.get(f"/projects/acme-proj/base/images/{ref}/file")
            assert r.status_code == 200, r.text
            assert r.content == world.store.blobs.path(sha).read_bytes() and hashlib.sha256(r.content).hexdigest() == sha
            assert r.headers["content-type"] == "image/png" and r.headers["x-content-type-options"] == "nosniff"
        test_image = next(r.name for r in v1.manifest.images if r.split == "test")
        error(c.get(f"/projects/acme-proj/base/images/base/{test_image}/file"), 404)  # the base's test set is not inherited
        error(c.get("/projects/acme-proj/base/images/base/nope.png/file"), 404)

        models = c.get("/projects/acme-proj/base/models").json()
        assert [x["name"] for x in models["models"]] == ["base-model"] and models["models"][0]["metrics"] == {"mAP50": 0.5}
        assert models["base_project"] == "base"
        error(c.get("/projects/acme-proj/models/base-model"), 404)  # the base's models are not the customer's
        error(c.post("/projects/acme-proj/deploy", json={"model": "base-model"}), 404)  # deploy never reaches the base

    with client(world, "initech") as c:  # a project that is no fork has no base
        for path in ("/projects/plain/base", "/projects/plain/base/images", "/projects/plain/base/models", "/projects/plain/fork"):
            error(c.get(path), 404)
        assert c.get("/projects/ini-proj/base").json()["workspace"] == "rival"
    with client(world, "globex") as c:
        assert [p["name"] for p in c.get("/projects").json()] == ["globex-proj"]
        error(c.get("/projects/acme-proj/base"), 404)
        error(c.get(f"/projects/acme-proj/base/images/{name}/file"), 404)


def _path(template: str, project: str) -> str:
    return re.sub(r"\{(\w+)(:path)?\}", lambda mt: project if mt[1] == "project" else "1", template)


def _base_state(store: Store) -> tuple:
    with store.read() as session:
        versions = session.query(m.Version).count()
        models = session.query(m.Model).count()
        migrations = session.query(m.ClassMigration).count()
    summary = show_project(store, "base", TEAM).as_dict()
    return versions, models, migrations, summary, [f.project for f in forks.list_forks(store, "base", workspace=TEAM)]


def test_no_route_lets_a_customer_touch_the_base_or_another_customer(world):
    """Every route with a ``{project}`` (all methods), aimed at the base and at another
    customer's project by an acme admin: 404, or 422 for a body refused before the project is
    looked up; then the writes again with bodies the customer's own project would take: 404; and
    the base and the other customer are unchanged."""
    before = _base_state(world.store)
    globex_before = image_count(world.store, "globex-proj", "globex")
    spec = world.server.client().get(world.server.url + "/openapi.json").json()
    routes = [(method.upper(), path.removeprefix("/api/v1")) for path, ops in spec["paths"].items() if "{project}" in path
              for method in ops]
    assert len(routes) > 40 and ("POST", "/projects/{project}/rebase") in routes
    outcomes = {}
    with client(world, "acme") as c:
        for target in ("base", "globex-proj"):
            for method, template in routes:
                r = c.request(method, _path(template, target), json={} if method in ("POST", "PUT", "PATCH") else None)
                outcomes[(method, template, target)] = r.status_code
                # 422: a body (or query) refused before the project is looked up; never 2xx, 403, 409 or 500
                assert r.status_code in (404, 422), (method, template, target, r.status_code, r.text)
        # the writes again with bodies that would be accepted in the customer's own project
        writes = [
            ("POST", "/projects/{p}/images", {"content": png(1), "params": {"name": "x.png"}}),
            ("POST", "/projects/{p}/versions", {"json": {}}),
            ("POST", "/projects/{p}/classes", {"json": {"op": "add", "name": "planted"}}),
            ("POST", "/projects/{p}/classes", {"json": {"op": "rename", "old": "circle", "new": "ring"}}),
            ("POST", "/projects/{p}/forks", {"json": {"name": "stolen", "workspace": "acme"}}),
            ("POST", "/projects/{p}/rebase", {"json": {}}),
            ("POST", "/projects/{p}/adopt", {"json": {"images": ["x"]}}),
            ("PUT", "/projects/{p}/capture", {"json": {"mode": "all"}}),
            ("POST", "/projects/{p}/deploy", {"json": {"model": "base-model"}}),
            ("POST", "/projects/{p}/undo", {"json": {}}),
            ("POST", "/projects/{p}/fixes", {"json": {"dry_run": False}}),
            ("DELETE", "/projects/{p}", {}),
        ]
        for target in ("base", "globex-proj"):
            for method, template, kw in writes:
                error(c.request(method, template.format(p=target), **kw), 404, "NotFoundError")
    assert _base_state(world.store) == before
    assert image_count(world.store, "globex-proj", "globex") == globex_before
    assert sum(1 for s in outcomes.values() if s == 404) > len(outcomes) // 2


def test_roles_in_a_customer_workspace(world):
    some = sorted(inherited_names(world.store))[:1]
    with client(world, "acme_viewer") as c:
        assert c.get("/projects/acme-proj/base/images").status_code == 200
        error(c.post("/projects/acme-proj/rebase", json={"dry_run": True}), 403, "PermissionDeniedError")
        error(c.post("/projects/acme-proj/adopt", json={"images": some}), 403, "PermissionDeniedError")
        error(c.post("/projects/acme-proj/classes", json={"op": "add", "name": "x"}), 403, "PermissionDeniedError")
        error(c.post("/projects/acme-proj/forks", json={"name": "x", "workspace": "acme-lab"}), 403, "PermissionDeniedError")
    with client(world, "acme_labeler") as c:
        error(c.post("/projects/acme-proj/rebase", json={}), 403, "PermissionDeniedError")
    with client(world, "acme") as c:
        # an admin forks only its own workspace's projects, and never into another tenant's workspace
        error(c.post("/projects/base/forks", json={"name": "mine", "workspace": "acme"}), 404)
        error(c.post("/projects/acme-proj/forks", json={"name": "mine", "workspace": "globex"}), 409, "ConflictError")
        error(c.post("/projects/acme-proj/forks", json={"name": "mine", "workspace": "team"}), 409, "ConflictError")
    with client(world, "globex") as c:
        assert [p["name"] for p in c.get("/projects").json()] == ["globex-proj"]


def test_uploads_stay_in_the_customer_project(world):
    base_images = image_count(world.store, "base", TEAM)
    inherited = len(inherited_names(world.store))
    with client(world, "team") as c:  # a customer of its own for this test
        assert c.post("/projects/base/forks", json={"name": "up", "workspace": "hooli"}).status_code == 201
    key = create_key(world.store, "hooli", "labeler").key
    admin = create_key(world.store, "hooli", "admin").key
    with world.server.client(key) as c:
        r = c.post("/projects/up/images", files=[("file", ("a.png", png(11), "image/png")), ("file", ("b.png", png(12), "image/png"))])
        assert r.status_code == 201, r.text
        names = [i["name"] for i in c.get("/projects/up/images").json()["images"]]
        assert sorted(names) == ["a.png", "b.png"]
        assert c.get("/projects/up/base/images").json()["total"] == inherited  # the base view is the base's
        r = c.post("/projects/up/images/a.png/annotations", json={"label": "dent", "bbox": [2, 2, 20, 20]})
        assert r.status_code == 201, r.text
    with world.store.write() as session:  # a.png is labelled: what a reviewed queue item does to its tag
        image = session.query(m.Image).join(m.Project).filter(m.Project.name == "up", m.Image.name == "a.png").one()
        ann_svc.remove_tag(session, image.id, "unlabeled", [])
    assert image_count(world.store, "base", TEAM) == base_images
    assert image_count(world.store, "acme-proj", "acme") == 0
    with world.server.client(admin) as c:
        v = c.post("/projects/up/versions", json={"split": "train=0.5,valid=0.5", "resplit": True})
        assert v.status_code == 201, v.text
        # the labelled upload and the inherited images (b.png, unlabelled, waits for its labels)
        assert v.json()["counts"]["images"] == 1 + inherited and v.json()["recipe"]["base"]["number"] == 1
        assert v.json()["classes"] == ["circle", "square", "triangle", "dent"]
    with client(world, "team") as c:
        assert c.get("/projects/base").json()["images"] == base_images
        assert c.get("/projects/base/forks/hooli/up").json()["project"]["images"] == 2


def _by_bbox(anns) -> list:
    return sorted(anns, key=lambda a: tuple(a.bbox))


def test_rebase_over_http_reports_a_planted_conflict(world):
    store = world.store
    seed(store, world.root, "rbase", TEAM, 12, seed=4)
    with client(world, "team") as c:
        assert c.post("/projects/rbase/forks", json={"name": "rb", "workspace": "umbrella"}).status_code == 201
    admin = create_key(store, "umbrella", "admin").key
    labeler = create_key(store, "umbrella", "labeler").key
    base_records = {r.name: r for r in load_dataset(store, "rbase", workspace=TEAM).images}
    inherited = inherited_names(store, "rbase")
    two = [n.removeprefix("base/") for n in sorted(inherited) if len(base_records[n.removeprefix("base/")].annotations) >= 2]
    contested = two[0]
    followed = next(n.removeprefix("base/") for n in sorted(inherited) if n.removeprefix("base/") != contested)
    with world.server.client(labeler) as c:
        r = c.post("/projects/rb/adopt", json={"images": [f"base/{contested}", followed]})
        assert r.status_code == 200, r.text
        assert sorted(r.json()["adopted"]) == sorted([f"base/{contested}", f"base/{followed}"])
        assert c.post("/projects/rb/adopt", json={"images": [followed]}).json()["already_adopted"] == [f"base/{followed}"]
        error(c.post("/projects/rb/adopt", json={"images": ["nope.png"]}), 404)
        error(c.post("/projects/rb/adopt", json={"images": []}), 422)
        adopted = {i["name"]: i["adopted"] for i in c.get("/projects/rb/base/images", params={"limit": 1000}).json()["images"]}
        assert adopted[f"base/{contested}"] and adopted[f"base/{followed}"] and sum(adopted.values()) == 2

    # plant: the customer deletes the first box of the contested image, the base its last one;
    # the base also deletes a box of the image only it changes
    own = {r.name: r for r in load_dataset(store, "rb", workspace="umbrella").images}
    ann_svc.delete_annotation(store, "rb", _by_bbox(own[f"base/{contested}"].annotations)[0].id, workspace="umbrella")
    ann_svc.delete_annotation(store, "rbase", _by_bbox(base_records[contested].annotations)[-1].id, workspace=TEAM)
    ann_svc.delete_annotation(store, "rbase", base_records[followed].annotations[0].id, workspace=TEAM)
    create_version(store, "rbase", workspace=TEAM)

    with world.server.client(admin) as c:
        assert c.get("/projects/rb/fork").json()["behind"] is True
        dry = c.post("/projects/rb/rebase", json={"dry_run": True})
        assert dry.status_code == 200, dry.text
        d = dry.json()
        assert d["dry_run"] is True and (d["from_number"], d["to_number"]) == (1, 2) and d["strategy"] == "ours"
        assert [x["image"] for x in d["conflicts"]] == [f"base/{contested}"] and d["conflicts"][0]["kept"] == "ours"
        assert d["followed"] == [f"base/{followed}"] and d["base_changes"]["annotations"]
        assert c.get("/projects/rb/fork").json()["base_version_number"] == 1  # a dry run changes nothing
        for bad in ({"theirs": "maybe"}, {"dry_run": True, "force": True}, {"version": ""}):
            assert "details" in error(c.post("/projects/rb/rebase", json=bad), 422, "InvalidInputError"), bad
        error(c.post("/projects/rb/rebase", json={"version": "v9"}), 404)

        done = c.post("/projects/rb/rebase", json={})
        assert done.status_code == 200 and done.json()["dry_run"] is False and len(done.json()["conflicts"]) == 1
        fork = c.get("/projects/rb/fork").json()
        assert fork["base_version_number"] == 2 and fork["behind"] is False and fork["adopted"] == 2
        assert c.get("/projects/rb/base").json()["version_number"] == 2
        mine = c.get(f"/projects/rb/images/base/{contested}").json()
        assert len(mine["annotations"]) == len(base_records[contested].annotations) - 1  # ours kept
    with client(world, "initech") as c:
        error(c.post("/projects/plain/rebase", json={}), 422, "InvalidInputError")  # no fork: nothing to rebase


def test_class_rename_over_http_changes_the_fork_map_and_its_next_version(world):
    with client(world, "team") as c:
        assert c.post("/projects/base/forks", json={"name": "cl", "workspace": "wayne"}).status_code == 201
        base_schema = c.get("/projects/base/classes").json()
    admin = create_key(world.store, "wayne", "admin").key
    with world.server.client(admin) as c:
        r = c.post("/projects/cl/classes", json={"op": "rename", "old": "circle", "new": "ring"})
        assert r.status_code == 201, r.text
        mig = r.json()
        assert mig["op"] == "rename" and mig["params"] == {"old": "circle", "new": "ring"} and mig["inherited_classes"] == 1
        assert mig["seq"] == 1 and "ring" in mig["classes"] and "circle" not in mig["classes"]
        schema = c.get("/projects/cl/classes").json()
        assert schema["class_map"]["circle"] == "ring" and schema["classes"][0] == "ring" and schema["seq"] == 1
        assert c.get("/projects/cl/fork").json()["class_map"]["circle"] == "ring"
        assert c.get("/projects/cl/base").json()["customer_classes"] == ["ring", "square", "triangle"]
        labels = set().union(*(i["labels"] for i in c.get("/projects/cl/base/images", params={"limit": 1000}).json()["images"]))
        assert "ring" in labels and "circle" not in labels

        v = c.post("/projects/cl/versions", json={})
        assert v.status_code == 201, v.text
        assert "ring" in v.json()["classes"] and "circle" not in v.json()["classes"]
        assert v.json()["recipe"]["base"]["class_map"]["circle"] == "ring"

        added = c.post("/projects/cl/classes", json={"op": "add", "name": "dent"})
        assert added.status_code == 201 and added.json()["seq"] == 2 and added.json()["classes"][-1] == "dent"
        dropped = c.post("/projects/cl/classes", json={"op": "drop", "base_class": "triangle"})
        assert dropped.status_code == 201 and "triangle" not in dropped.json()["classes"]
        split = c.post("/projects/cl/classes", json={"op": "split", "source": "square", "into": ["big", "small"], "by": "size"})
        assert split.status_code == 201, split.text
        assert c.get("/projects/cl/fork").json()["class_map"]["square"] == {"by": "size", "into": ["big", "small"], "default": "big"}
        merged = c.post("/projects/cl/classes", json={"op": "merge", "sources": ["big", "small"], "into": "square"})
        assert merged.status_code == 201 and merged.json()["seq"] == 5

        error(c.post("/projects/cl/classes", json={"op": "rename", "old": "nope", "new": "x"}), 404, "NotFoundError")
        error(c.post("/projects/cl/classes", json={"op": "rename", "old": "ring", "new": "square"}), 409, "ConflictError")
        error(c.post("/projects/cl/classes", json={"op": "split", "source": "ring", "into": ["a", "a"], "by": "k"}), 422)
        for bad in ({}, {"op": "explode"}, {"op": "rename", "old": "ring"}, {"op": "add", "name": "x", "extra": 1},
                    {"op": "add", "name": "x" * 101}, {"op": "split", "source": "ring", "into": ["a"]},
                    {"op": "merge", "sources": [], "into": "x"}, {"op": "drop"}):
            assert "details" in error(c.post("/projects/cl/classes", json=bad), 422, "InvalidInputError"), bad
    viewer = create_key(world.store, "wayne", "viewer").key
    with world.server.client(viewer) as c:
        assert c.get("/projects/cl/classes").status_code == 200
        error(c.post("/projects/cl/classes", json={"op": "add", "name": "x"}), 403)
    with client(world, "team") as c:  # the base's schema is the base's
        assert c.get("/projects/base/classes").json() == base_schema
        error(c.post("/projects/base/classes", json={"op": "drop", "base_class": "circle"}), 404)  # the base is no fork


@pytest.mark.slow
def test_captured_production_images_stay_in_the_customer_project(world, one_torch_thread):
    """A customer trains on its version (its inherited base images), deploys, and predicts with
    capture on: the image lands in the customer project; the base is unchanged."""
    from winnow.services.training import train_model

    store = world.store
    seed(store, world.root, "cbase", TEAM, 8, seed=3, task=Task.CLASSIFY)
    with client(world, "team") as c:
        assert c.post("/projects/cbase/forks", json={"name": "cam", "workspace": "stark"}).status_code == 201
    admin = create_key(store, "stark", "admin").key
    camera = create_key(store, "stark", "viewer").key
    with world.server.client(admin) as c:
        version = c.post("/projects/cam/versions", json={}).json()
        assert version["counts"]["images"] == 8
    model = train_model(store, "cam", version["version"], image_size=32, width=0.25, epochs=1, batch_size=8, lr=0.01,
                        seed=0, name="cam-model", workspace="stark")
    base_images = image_count(store, "cbase", TEAM)
    with world.server.client(admin) as c:
        assert c.post("/projects/cam/deploy", json={"model": "cam-model"}).status_code == 200
        assert c.put("/projects/cam/capture", json={"mode": "all"}).status_code == 200
    with world.server.client(camera) as c:
        r = c.post("/projects/cam/predict", content=png(21), params={"camera": "door"})
        assert r.status_code == 200, r.text
        doc = r.json()
        assert doc["model"] == model.model and doc["captured"] is True and doc["image"].startswith("captured/")
        error(c.post("/projects/cbase/predict", content=png(22)), 404)  # the base is not the camera's to call
        own = {i["name"]: i for i in c.get("/projects/cam/images").json()["images"]}
        assert set(own) == {doc["image"]} and "captured" in own[doc["image"]]["tags"]
    assert image_count(store, "cbase", TEAM) == base_images
    assert not any(r.name.startswith("captured/") for r in load_dataset(store, "cbase", workspace=TEAM).images)
