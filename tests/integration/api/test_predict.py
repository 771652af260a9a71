"""Deploy and predict on the real server: the deployed model's predictions (the same as `winnow
predict`), capture policies, the bad inputs of BAD_INPUTS.md row 29 (oversized body, 0-byte,
HTML, 0x0, bombs, grayscale/RGBA/16-bit), a burst of concurrent requests batched together, and a
model hot-swapped mid-stream without a failed request."""

from __future__ import annotations

import io
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import select

from tests.integration.api.conftest import start_server
from tests.integration.api.test_auth_uploads import png, png_claiming
from winnow.api.limits import Limits
from winnow.core.types import Task
from winnow.serve.inference import InferencePool, PoolConfig
from winnow.services import deploy as svc
from winnow.services.auth import create_key
from winnow.services.training import predict as predict_files
from winnow.store import models as m

torch = pytest.importorskip("torch")


def _train(store, version: str, seed: int, name: str) -> str:
    from winnow.services.training import train_model

    return train_model(
        store, "cls", version, image_size=32, width=0.25, epochs=1, batch_size=8, lr=0.01, seed=seed, name=name, workspace="acme"
    ).model


def _clone(store, model: str, name: str) -> str:
    """Register a second model with ``model``'s files under a new id (training takes seconds;
    the server only needs two deployable models it can tell apart)."""
    import hashlib

    with store.write() as session:
        row = session.scalar(select(m.Model).where(m.Model.model_id == model))
        new_id = hashlib.sha256(name.encode()).hexdigest()
        cols = {c.key: getattr(row, c.key) for c in m.Model.__table__.columns if c.key != "id"}
        session.add(m.Model(**(cols | {"model_id": new_id, "name": name, "deployed": False})))
    return new_id


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """A tiny classifier (1 epoch, 32 px, MobileNetV3 at width 0.25) on 12 generated images,
    registered twice (models A and B), and a server over the store with a batching pool and high rate limits."""
    from winnow.formats import get_format
    from winnow.services.ingest import import_dataset
    from winnow.services.projects import create_project
    from winnow.services.versions import create_version
    from winnow.store.db import Store
    from winnow.synthetic import generate

    root = tmp_path_factory.mktemp("predict")
    ds = generate(root / "src", 12, seed=3, task=Task.CLASSIFY)
    get_format("folders").write(ds, root / "src" / "folders", lambda rec, path: path.write_bytes(rec.file.read_bytes()))
    store = Store.open(root / "home")
    create_project(store, "cls", "classify", "acme")
    create_project(store, "empty", "classify", "acme")
    import_dataset(store, "cls", root / "src" / "folders", format="folders", workspace="acme")
    version = create_version(store, "cls", split="train=0.75,valid=0.25", resplit=True, seed=1, workspace="acme")
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # one thread: two spinning OpenMP threads on two busy cores are slower
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WINNOW_THREADS", "1")
        a = _train(store, version.version, 0, "model-a")
    torch.set_num_threads(before)
    b = _clone(store, a, "model-b")
    limits = Limits(max_upload_bytes=2 * 1024 * 1024, max_predict_bytes=1024 * 1024, max_body_bytes=256 * 1024,
                    rates={"predict": (10_000.0, 10_000.0), "upload": (100.0, 100.0)})
    srv, uv, thread = start_server(store, limits)
    srv.app.state.inference = InferencePool(PoolConfig(max_batch=16, max_wait_ms=20, max_queue=256, check_interval=0.5))
    admin = create_key(store, "acme", "admin").key
    viewer = create_key(store, "acme", "viewer").key
    images = sorted((root / "src" / "images").glob("*.png"))
    yield SimpleNamespace(store=store, server=srv, a=a, b=b, admin=admin, viewer=viewer, images=images, root=root)
    uv.should_exit = True
    thread.join(10)
    store.close()


@pytest.fixture
def admin(env):
    with env.server.client(env.admin) as c:
        yield c


def _deploy(c, model: str) -> dict:
    r = c.post("/projects/cls/deploy", json={"model": model})
    assert r.status_code == 200, r.text
    return r.json()


def _policy(c, **policy) -> dict:
    r = c.put("/projects/cls/capture", json=policy)
    assert r.status_code == 200, r.text
    return r.json()


def _png(image: Image.Image, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt)
    return buf.getvalue()


def _captured(env) -> dict[str, dict]:
    """The project's captured images, by name, as the API shows them."""
    from winnow.services.datasets import image_dict, load_dataset

    return {r.name: image_dict(r) for r in load_dataset(env.store, "cls", workspace="acme").images if "captured" in r.tags}


# ----------------------------------------------------------------------------- deploy + predict


def test_deploy_then_predict_gives_the_same_predictions_as_winnow_predict(env, admin):
    d = _deploy(admin, env.a)
    assert d["model"] == env.a and d["name"] == "model-a" and d["active"] and d["deployment"]
    _policy(admin, mode="off")
    got = admin.get("/projects/cls/deployment").json()
    assert got["model"] == env.a and got["deployment"] == d["deployment"]
    with env.store.read() as session:
        rows = {r.model_id: r.deployed for r in session.scalars(select(m.Model))}
    assert rows == {env.a: True, env.b: False}

    for path in env.images[:3]:
        expected = predict_files(env.store, env.a, [path], min_score=0.25, workspace="acme")[0]
        raw = admin.post("/projects/cls/predict", content=path.read_bytes())
        assert raw.status_code == 200, raw.text
        doc = raw.json()
        assert doc["model"] == env.a and doc["captured"] is False and doc["image"] is None
        assert (doc["width"], doc["height"]) == (expected.width, expected.height) == (96, 72)
        assert doc["predictions"] == expected.predictions and doc["predictions"], "same label and score as `winnow predict`"
        multi = admin.post("/projects/cls/predict", files={"file": (path.name, path.read_bytes(), "image/png")}, data={"min_score": "0"})
        assert multi.status_code == 200 and multi.json()["predictions"][0] == expected.predictions[0]

    # a viewer key (a camera) may predict but not deploy or set the policy
    with env.server.client(env.viewer) as v:
        assert v.post("/projects/cls/predict", content=env.images[0].read_bytes()).status_code == 200
        assert v.post("/projects/cls/deploy", json={"model": env.b}).status_code == 403
        assert v.put("/projects/cls/capture", json={"mode": "all"}).status_code == 403
    stats = admin.get("/projects/cls/deployment").json()["stats"]
    assert stats["model"] == env.a and stats["requests"] >= 7 and stats["failed"] == 0


def test_no_deployed_model_is_409_and_bad_deploys_are_refused(env, admin):
    assert admin.post("/projects/empty/predict", content=png(1)).status_code == 409
    assert admin.get("/projects/empty/deployment").json()["active"] is False
    assert admin.post("/projects/nope/predict", content=png(1)).status_code == 404
    assert admin.post("/projects/empty/deploy", json={"model": env.a}).status_code == 422, "model of another project"
    assert admin.post("/projects/cls/deploy", json={"model": "no-such-model"}).status_code == 404
    assert admin.post("/projects/cls/deploy", json={"model": env.a, "extra": 1}).status_code == 422
    with env.store.write() as session:  # a model whose ONNX export was not verified cannot be deployed
        row = session.scalar(select(m.Model).where(m.Model.model_id == env.b))
        saved = dict(row.files)
        row.files = saved | {"onnx": saved["onnx"] | {"verified": {"ok": False}}}
    try:
        r = admin.post("/projects/cls/deploy", json={"model": env.b})
        assert r.status_code == 422 and "ONNX" in r.json()["error"]
    finally:
        with env.store.write() as session:
            session.scalar(select(m.Model).where(m.Model.model_id == env.b)).files = saved

    _deploy(admin, env.a)
    assert admin.delete("/projects/cls/deployment").status_code == 200
    r = admin.post("/projects/cls/predict", content=env.images[0].read_bytes())
    assert r.status_code == 409 and "deploy" in r.json()["error"]
    assert admin.delete("/projects/cls/deployment").status_code == 409
    _deploy(admin, env.a)
    assert admin.post("/projects/cls/predict", content=env.images[0].read_bytes()).status_code == 200


# ----------------------------------------------------------------------------- capture


def test_capture_all_stores_the_image_with_metadata_and_model_prelabels(env, admin):
    _deploy(admin, env.a)
    assert _policy(admin, mode="all")["mode"] == "all"
    data = _png(Image.open(env.images[4]).convert("RGB").transpose(Image.Transpose.FLIP_LEFT_RIGHT))
    r = admin.post(
        "/projects/cls/predict", content=data,
        params={"camera": "cam-7", "site": "dock 2", "time": "2024-05-01T14:03:00+02:00", "min_score": "0"},
    )
    assert r.status_code == 200, r.text
    doc = r.json()
    import hashlib

    sha = hashlib.sha256(data).hexdigest()
    today = datetime.now(UTC).strftime("%Y-%m-%d")
    assert doc["captured"] is True and doc["image"] == f"captured/{today}/{sha[:16]}.png"
    rec = _captured(env)[doc["image"]]
    assert set(rec["tags"]) == {"unlabeled", "captured"} and rec["sha256"] == sha
    meta = rec["metadata"]
    assert (meta["camera"], meta["site"], meta["time"], meta["model"]) == ("cam-7", "dock 2", "2024-05-01T12:03:00Z", env.a)
    assert meta["captured_at"].startswith(today) and meta["captured_at"].endswith("Z")
    anns = rec["annotations"]
    assert [(a["label"], a["score"], a["source"], a["attributes"]) for a in anns] == [
        (p["label"], p["score"], "model", {"model": env.a}) for p in doc["predictions"]
    ]
    # the same bytes again: the same record, not a second one
    again = admin.post("/projects/cls/predict", content=data, params={"camera": "cam-8"}).json()
    assert again["captured"] is True and again["image"] == doc["image"]
    assert sum(1 for r in _captured(env).values() if r["sha256"] == sha) == 1
    # bad metadata is refused before anything runs or is stored
    n = len(_captured(env))
    for params in ({"time": "yesterday"}, {"time": "2024-05-01T12:00:00"}, {"camera": ""}, {"site": "x" * 300}):
        r = admin.post("/projects/cls/predict", content=png(99), params=params)
        assert r.status_code == 422, (params, r.text)
    assert len(_captured(env)) == n


def test_capture_off_client_flag_and_invalid_policies(env, admin):
    _deploy(admin, env.a)
    n = len(_captured(env))

    def send(seed: int, flag: str | None = None) -> bool:
        r = admin.post("/projects/cls/predict", content=png(seed), params={} if flag is None else {"capture": flag})
        assert r.status_code == 200, r.text
        return r.json()["captured"]

    _policy(admin, mode="off")
    assert not send(200) and not send(201, "true"), "off: nothing, even when the client asks"
    _policy(admin, mode="client")
    assert not send(202) and not send(203, "false") and send(204, "true")
    _policy(admin, mode="all")
    assert not send(205, "false"), "a client may opt out"
    assert len(_captured(env)) == n + 1
    assert admin.post("/projects/cls/predict", content=png(206), params={"capture": "maybe"}).status_code == 422
    for bad in ({"mode": "most"}, {"mode": "fraction", "fraction": 0}, {"threshold": 2}, {"rare_classes": ["unicorn"]},
                {"rare_classes": "circle"}, {"max_per_day": -1}, {"colour": "red"}, {"fraction": True}):
        r = admin.put("/projects/cls/capture", json=bad)
        assert r.status_code == 422, (bad, r.text)
    assert admin.get("/projects/cls/capture").json()["mode"] == "all", "a refused policy changes nothing"
    _policy(admin, mode="all", max_per_day=len(_captured(env)))  # today's cap is already reached
    r = admin.post("/projects/cls/predict", content=png(207)).json()
    assert r["captured"] is False and "cap" in r["capture_note"]
    _policy(admin, mode="off")


def test_capture_fraction_keeps_the_images_its_seeded_draw_picks(env, admin):
    import hashlib

    _deploy(admin, env.a)
    _policy(admin, mode="fraction", fraction=0.3, seed=7)
    datas = [png(1000 + i, size=16) for i in range(40)]
    with ThreadPoolExecutor(8) as ex:
        docs = list(ex.map(lambda d: admin.post("/projects/cls/predict", content=d).json(), datas))
    kept = [d["captured"] for d in docs]
    expected = [svc.fraction_draw(hashlib.sha256(d).hexdigest(), 7) < 0.3 for d in datas]
    assert kept == expected, "deterministic: the draw comes from the image's bytes and the seed"
    assert 4 <= sum(kept) <= 20, "about 30% of 40 (binomial, far beyond 3 sigma otherwise)"
    _policy(admin, mode="off")


def test_capture_low_confidence_and_rare_class(env, admin):
    _deploy(admin, env.a)
    _policy(admin, mode="off")
    datas = [_png(Image.open(p).convert("RGB").transpose(Image.Transpose.ROTATE_180)) for p in env.images]
    tops = [max(p["score"] for p in admin.post("/projects/cls/predict", content=d, params={"min_score": "0"}).json()["predictions"]) for d in datas]
    levels = sorted(set(tops))
    # a tiny 1-epoch model scores every image nearly alike: check both sides of its scores, and
    # the split between two of them when there are several
    thresholds = [levels[0] - 1e-6, levels[-1] + 1e-6]
    if len(levels) > 1:
        thresholds.append((levels[len(levels) // 2 - 1] + levels[len(levels) // 2]) / 2)
    for threshold in thresholds:
        _policy(admin, mode="low_confidence", threshold=threshold)
        got = [admin.post("/projects/cls/predict", content=d).json()["captured"] for d in datas]
        assert got == [t < threshold for t in tops], (threshold, tops)
    # the captures above are stored once: capturing again returns the earlier record
    _policy(admin, mode="low_confidence", threshold=1.0)
    assert all(admin.post("/projects/cls/predict", content=d).json()["image"] for d in datas)

    label = admin.post("/projects/cls/predict", content=png(4000)).json()["predictions"][0]["label"]
    others = [c for c in ("circle", "square", "triangle") if c != label]
    _policy(admin, mode="rare_class", rare_classes=others)
    assert admin.post("/projects/cls/predict", content=png(4000)).json()["captured"] is False
    _policy(admin, mode="rare_class", rare_classes=[label])
    assert admin.post("/projects/cls/predict", content=png(4000)).json()["captured"] is True
    _policy(admin, mode="off")


# ----------------------------------------------------------------------------- bad inputs (row 29)


def test_bad_inputs_are_refused_and_odd_images_accepted(env, admin):
    _deploy(admin, env.a)
    _policy(admin, mode="all")
    n = len(_captured(env))
    big = b"\x89PNG\r\n\x1a\n" + b"\0" * (1024 * 1024 + 10)
    assert admin.post("/projects/cls/predict", content=big).status_code == 413
    assert admin.post("/projects/cls/predict", files={"file": ("big.png", big, "image/png")}).status_code == 413

    def chunks():
        for _ in range(40):
            yield b"\0" * 65536

    assert admin.post("/projects/cls/predict", content=chunks()).status_code == 413, "a chunked body cannot sneak by"
    cases = {
        "empty": (b"", 422),
        "html": (b"<!DOCTYPE html><html><body>hi</body></html>", 415),
        "svg": (b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>', 415),
        "zero": (png_claiming(0, 0), 422),
        "bomb": (png_claiming(60000, 60000), 422),
        "truncated": (png(5)[:60], 422),
        "noise": (b"\x00\x01garbage" * 10, 422),
    }
    for what, (data, status) in cases.items():
        r = admin.post("/projects/cls/predict", content=data)
        assert r.status_code == status, (what, r.text)
        assert r.json()["error"]
    assert admin.post("/projects/cls/predict", files={"other": ("x.png", png(1), "image/png")}).status_code == 422
    assert admin.post("/projects/cls/predict", content=png(1), params={"min_score": "2"}).status_code == 422
    assert len(_captured(env)) == n, "nothing stored for a refused request"

    rgb = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    odd = {
        "1x1": Image.new("RGB", (1, 1), (200, 10, 10)),
        "gray": Image.fromarray(rgb[..., 0], "L"),
        "rgba": Image.fromarray(np.dstack([rgb, np.full((20, 30), 128, np.uint8)]), "RGBA"),
        "gray16": Image.fromarray(rgb[..., 0].astype(np.uint16) * 257),
        "palette": Image.fromarray(rgb, "RGB").convert("P"),
    }
    for what, im in odd.items():
        r = admin.post("/projects/cls/predict", content=_png(im))
        assert r.status_code == 200, (what, r.text)
        doc = r.json()
        assert (doc["width"], doc["height"]) == im.size and doc["captured"] is True, what
    jpeg = admin.post("/projects/cls/predict", content=_png(Image.fromarray(rgb), "JPEG")).json()
    assert jpeg["captured"] and jpeg["image"].endswith(".jpg")
    _policy(admin, mode="off")


# ----------------------------------------------------------------------------- load


def test_a_burst_of_32_concurrent_requests_all_succeed_and_are_batched(env, admin):
    _deploy(admin, env.a)
    _policy(admin, mode="off")
    before = admin.get("/projects/cls/deployment").json()["stats"] or {"requests": 0, "batches": 0}
    data = env.images[0].read_bytes()
    gate = threading.Barrier(32)

    def one(_):
        with env.server.client(env.viewer) as c:
            gate.wait()
            return c.post("/projects/cls/predict", content=data)

    with ThreadPoolExecutor(32) as ex:
        results = list(ex.map(one, range(32)))
    assert [r.status_code for r in results] == [200] * 32
    assert len({str(r.json()["predictions"]) for r in results}) == 1
    stats = admin.get("/projects/cls/deployment").json()["stats"]
    requests, batches = stats["requests"] - before["requests"], stats["batches"] - before["batches"]
    assert requests == 32 and batches < 32 and stats["max_batch"] > 1, stats
    assert stats["failed"] == 0 and stats["rejected"] == 0 and stats["queued"] == 0


def test_hot_swap_mid_stream_drops_nothing_and_switches_models(env, admin):
    _deploy(admin, env.a)
    _policy(admin, mode="off")
    data = env.images[1].read_bytes()
    stop = threading.Event()
    seen: list[list[tuple[float, int, str | None]]] = [[] for _ in range(6)]

    def stream(k: int) -> None:
        with env.server.client(env.viewer) as c:
            while not stop.is_set():
                sent = time.monotonic()
                r = c.post("/projects/cls/predict", content=data)
                seen[k].append((sent, r.status_code, r.json().get("model") if r.status_code == 200 else r.text))

    threads = [threading.Thread(target=stream, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    while sum(map(len, seen)) < 60:
        time.sleep(0.01)
    swapped = _deploy(admin, env.b)
    deployed_at = time.monotonic()
    assert swapped["previous"] == env.a and swapped["model"] == env.b
    count = sum(map(len, seen))
    while sum(map(len, seen)) < count + 60:
        time.sleep(0.01)
    stop.set()
    for t in threads:
        t.join(30)
    flat = [x for s in seen for x in s]
    assert all(status == 200 for _, status, _ in flat), [x for x in flat if x[1] != 200][:3]
    assert {model for *_, model in flat} == {env.a, env.b}
    for s in seen:  # per connection: A, then B, never back
        models = [model for *_, model in s]
        assert models == sorted(models, key=lambda x: x == env.b), "a connection went back to the old model"
    late = [model for t, _, model in flat if t > deployed_at]
    assert late and set(late) == {env.b}, "requests sent after the deploy answered run on the new model"
    stats = admin.get("/projects/cls/deployment").json()["stats"]
    assert stats["model"] == env.b and stats["swaps"] >= 1 and stats["failed"] == 0

    # a deploy from another process (the CLI) is noticed within the re-check interval
    svc.deploy(env.store, env.a, workspace="acme", user="cli")
    deadline = time.monotonic() + 5
    while admin.post("/projects/cls/predict", content=data).json()["model"] != env.a:
        assert time.monotonic() < deadline, "the server never picked up the CLI's deploy"
        time.sleep(0.05)


def test_cli_deploy_undeploy_and_capture(env, monkeypatch):
    import json

    from typer.testing import CliRunner

    from winnow.cli.main import app

    monkeypatch.setenv("WINNOW_HOME", str(env.store.home))
    runner = CliRunner()

    def run(*args, code=0):
        result = runner.invoke(app, list(args))
        assert result.exit_code == code, result.output
        return result

    doc = json.loads(run("deploy", "model-b", "-w", "acme", "--json").stdout)
    assert doc["model"] == env.b and doc["active"] and doc["project"] == "cls"
    assert "already the active model" in run("deploy", "model-b", "-w", "acme").stdout
    assert json.loads(run("deploy", "model-b", "--undeploy", "-w", "acme", "--json").stdout)["active"] is False
    assert "not deployed" in run("deploy", "model-b", "--undeploy", "-w", "acme", code=1).stderr
    assert "deployed model-a" in run("deploy", "model-a", "-w", "acme").stdout

    shown = json.loads(run("capture", "cls", "-w", "acme", "--json").stdout)
    assert set(shown) == {"mode", "fraction", "threshold", "rare_classes", "max_per_day", "seed"}
    doc = json.loads(run("capture", "cls", "--mode", "fraction", "--fraction", "0.2", "--max-per-day", "50", "-w", "acme", "--json").stdout)
    assert (doc["mode"], doc["fraction"], doc["max_per_day"]) == ("fraction", 0.2, 50)
    doc = json.loads(run("capture", "cls", "--threshold", "0.3", "-w", "acme", "--json").stdout)
    assert (doc["mode"], doc["fraction"], doc["threshold"]) == ("fraction", 0.2, 0.3), "other fields stay"
    assert "got 1.5" in run("capture", "cls", "--fraction", "1.5", "-w", "acme", code=1).stderr
    assert "a fraction 0.2" in run("capture", "cls", "-w", "acme").stdout
    run("capture", "cls", "--mode", "off", "--max-per-day", "-1", "-w", "acme")
