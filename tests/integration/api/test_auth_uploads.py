"""The real server: keys and roles (401/403/404), and uploads of every bad input in
BAD_INPUTS.md (4xx, nothing stored)."""

from __future__ import annotations

import io
import json
import struct
import zipfile
import zlib

import httpx
import numpy as np
import pytest
from PIL import Image
from sqlalchemy import func, select

from winnow.services.auth import revoke_key
from winnow.store import models as m


def png(seed: int = 0, size: int = 32) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def png_claiming(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")


def zip_of(entries: list[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries:
            zf.writestr(name, data)
    return buf.getvalue()


def state(server) -> tuple[int, int, list[str]]:
    """Images and blobs in the store, and the blob files on disk: what an upload may change."""
    with server.store.read() as session:
        images = session.scalar(select(func.count()).select_from(m.Image))
        blobs = session.scalar(select(func.count()).select_from(m.Blob))
    files = sorted(p.name for p in (server.store.home / "blobs").rglob("*") if p.is_file())
    return images, blobs, files


@pytest.fixture
def project(server):
    admin = server.key("acme", "admin")
    with server.client(admin) as c:
        assert c.post("/projects", json={"name": "parts", "task": "detect"}).status_code == 201
    return admin


# ----------------------------------------------------------------------------------- auth


def test_health_needs_no_key_but_everything_else_does(server):
    assert httpx.get(server.url + "/api/v1/health").json()["status"] == "ok"
    with server.client() as c:
        r = c.get("/projects")
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    with server.client("wn_" + "x" * 43) as c:
        assert c.get("/projects").status_code == 401
    with server.client("not-a-key") as c:
        assert c.get("/projects").status_code == 401


def test_a_revoked_key_is_refused(server):
    key = server.key("acme", "viewer", name="cam-1")
    with server.client(key) as c:
        assert c.get("/projects").status_code == 200
        revoke_key(server.store, "cam-1")
        assert c.get("/projects").status_code == 401


def test_x_api_key_header_works_and_the_key_names_its_workspace(server):
    key = server.key("acme", "labeler", name="ann")
    r = httpx.get(server.url + "/api/v1/workspace", headers={"X-API-Key": key})
    assert r.json() == {"workspace": "acme", "role": "labeler", "key": "ann"}


def test_another_workspace_project_is_404_exactly_like_a_missing_one(server, project):
    other = server.key("globex", "admin")
    with server.client(other) as c:
        hidden = c.get("/projects/parts")
        missing = c.get("/projects/no-such-project")
        assert hidden.status_code == missing.status_code == 404
        assert "acme" not in hidden.text
        assert hidden.json()["error"].replace("parts", "X") == missing.json()["error"].replace("no-such-project", "X")
        assert c.get("/projects").json() == []
        for method, path in [("get", "/projects/parts/images"), ("delete", "/projects/parts"), ("post", "/projects/parts/images")]:
            assert c.request(method, path, content=png()).status_code == 404, path
    with server.client(project) as c:  # untouched
        assert c.get("/projects/parts").status_code == 200


def test_roles(server, project):
    viewer, labeler = server.key("acme", "viewer"), server.key("acme", "labeler")
    with server.client(viewer) as c:
        assert c.get("/projects/parts").status_code == 200
        r = c.post("/projects", json={"name": "new"})
        assert r.status_code == 403 and "viewer" in r.json()["error"]
        assert c.post("/projects/parts/images?name=a.png", content=png()).status_code == 403
    with server.client(labeler) as c:
        assert c.delete("/projects/parts").status_code == 403
        assert c.post("/projects/parts/images?name=a.png", content=png()).status_code == 201
    with server.client(project) as c:
        assert c.delete("/projects/parts").status_code == 204
        assert c.get("/projects/parts").status_code == 404


def test_openapi_and_docs_are_served(server):
    spec = httpx.get(server.url + "/openapi.json").json()
    assert "/api/v1/projects/{project}/images" in spec["paths"]
    assert httpx.get(server.url + "/docs").status_code == 200


# ----------------------------------------------------------------------------------- uploads


def test_upload_single_images_with_metadata_and_list_and_get(server, project):
    with server.client(project) as c:
        files = [("file", ("cam/a.png", png(1), "image/png")), ("file", ("b.jpg", png(2), "application/octet-stream"))]
        r = c.post("/projects/parts/images", files=files, data={"metadata": json.dumps({"camera": "north"}), "tag": "night"})
        assert r.status_code == 201, r.text
        assert r.json()["images_added"] == 2
        listing = c.get("/projects/parts/images", params={"tag": "night"}).json()
        assert [i["name"] for i in listing["images"]] == ["a.png", "b.jpg"]  # no path survives
        one = c.get("/projects/parts/images/a.png").json()
        assert one["metadata"] == {"camera": "north"} and "unlabeled" in one["tags"] and one["annotations"] == []
        raw = c.get("/projects/parts/images/a.png/file")
        assert raw.content == png(1) and raw.headers["content-type"] == "image/png"
        assert raw.headers["x-content-type-options"] == "nosniff"
        page = c.get("/projects/parts/images", params={"limit": 1}).json()
        assert len(page["images"]) == 1 and page["more"] is True


def test_upload_a_zip_of_plain_images_and_a_yolo_zip(server, project):
    with server.client(project) as c:
        r = c.post("/projects/parts/images?name=batch.zip", content=zip_of([("imgs/x.png", png(3)), ("imgs/y.png", png(4))]))
        assert r.status_code == 201, r.text
        assert r.json()["images_added"] == 2
        yolo = zip_of([
            ("ds/data.yaml", b"names: [bolt, nut]\n"),
            ("ds/train/images/z.png", png(5)),
            ("ds/train/labels/z.txt", b"1 0.5 0.5 0.2 0.2\n"),
        ])
        r = c.post("/projects/parts/images", files={"file": ("ds.zip", yolo)})
        assert r.status_code == 201, r.text
        assert r.json()["source"] == "ds.zip"  # no server path in the report
        z = c.get("/projects/parts/images/z.png").json()
        assert [a["label"] for a in z["annotations"]] == ["nut"] and z["split"] == "train"


BAD = {
    "zero-byte": (b"", 422),
    "truncated-png": (png(6)[:60], 422),
    "html-polyglot": (b"<!DOCTYPE html><script>alert(1)</script>", 415),
    "svg": (b"<svg xmlns='http://www.w3.org/2000/svg'><script>alert(1)</script></svg>", 415),
    "pdf": (b"%PDF-1.4 ...", 415),
    "bomb-100k": (png_claiming(100_000, 100_000), 422),
    "zip-slip": (zip_of([("../../evil.png", png(7))]), 422),
    "zip-absolute": (zip_of([("/etc/evil.png", png(7))]), 422),
    "zip-one-bad-image": (zip_of([("ok.png", png(8)), ("bad.png", b"\x89PNG\r\n\x1a\nxx")]), 422),
    "zip-no-images": (zip_of([("readme.txt", b"hello")]), 422),
    "zip-bomb": (zip_of([("big.png", b"\0" * (3 * 1024 * 1024))]), 422),
}


@pytest.mark.parametrize("name", list(BAD))
def test_bad_uploads_are_refused_and_store_nothing(server, project, name):
    data, status = BAD[name]
    before = state(server)
    with server.client(project) as c:
        r = c.post("/projects/parts/images", files={"file": (f"{name}.png", data)})
        assert r.status_code == status, r.text
        assert r.json()["error"]
        r2 = c.post(f"/projects/parts/images?name={name}.png", content=data)
        assert r2.status_code == status
    assert state(server) == before
    assert not any((server.store.home / "tmp").rglob("*.png"))  # staging cleaned up


def test_an_oversized_body_is_413_declared_or_streamed(server, project):
    big = b"\0" * (3 * 1024 * 1024)
    before = state(server)
    with server.client(project) as c:
        assert c.post("/projects/parts/images?name=x.png", content=big).status_code == 413

        def chunks():
            for _ in range(48):
                yield b"\0" * 65536

        r = c.post("/projects/parts/images?name=x.png", content=chunks())  # chunked: no Content-Length
        assert r.status_code == 413
        assert c.post("/projects", content=b"{" + b" " * 300_000 + b"}", headers={"content-type": "application/json"}).status_code == 413
    assert state(server) == before


def test_bad_fields_are_422(server, project):
    with server.client(project) as c:
        assert c.post("/projects/parts/images?name=a.png&metadata=[1]", content=png()).status_code == 422
        assert c.post("/projects/parts/images?name=a.png&split=holdout", content=png()).status_code == 422
        assert c.post("/projects/parts/images?name=..", content=png()).status_code == 422
        assert c.post("/projects", json={"name": "<script>", "task": "detect"}).status_code == 422
        assert c.post("/projects", json={"name": "x", "task": "paint"}).status_code == 422
        assert c.get("/projects/parts/images", params={"limit": 0}).status_code == 422


def test_uploads_are_rate_limited_per_key(tmp_path):
    from tests.integration.api.conftest import start_server
    from winnow.api.limits import Limits
    from winnow.store.db import Store

    store = Store.open(tmp_path / "rl")
    srv, uv, thread = start_server(store, Limits(rates={"upload": (0.5, 2.0), "predict": (100, 100)}))
    try:
        key = srv.key("acme", "admin")
        with srv.client(key) as c:
            c.post("/projects", json={"name": "p"})
            codes = [c.post(f"/projects/p/images?name={i}.png", content=png(i)).status_code for i in range(3)]
            assert codes == [201, 201, 429]
            r = c.post("/projects/p/images?name=9.png", content=png(9))
            assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
        with srv.client(srv.key("acme", "admin")) as c:  # another key has its own bucket
            assert c.post("/projects/p/images?name=7.png", content=png(7)).status_code == 201
    finally:
        uv.should_exit = True
        thread.join(10)
        store.close()
