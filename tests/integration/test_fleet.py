"""The fleet view (``services.fleet.fleet``, ``winnow fleet``, ``GET /projects/{p}/fleet``) on a real
store: a tiny base detection project with one tiny model, two customers forked from it in their
own workspaces, each with a few own images (train and test), one fine-tuned from the base model."""

from __future__ import annotations

import json
import time
from types import SimpleNamespace

import pytest

torch = pytest.importorskip("torch")

from winnow.errors import NotFoundError
from winnow.services import fleet as fleet_svc
from winnow.services.evaluation import evaluate_model
from winnow.services.forks import fork_project
from winnow.services.ingest import import_records
from winnow.services.projects import create_project
from winnow.services.training import train_model
from winnow.services.versions import create_version
from winnow.store.db import Store
from winnow.synthetic import generate

pytestmark = pytest.mark.usefixtures("one_torch_thread")

#: The fastest settings that train a real SSDlite (tests/integration/test_train.py).
TINY = {"image_size": 64, "width": 0.25, "batch_size": 4, "lr": 3e-3, "pretrained": "no"}


def _add_customer(store: Store, root, project: str, workspace: str, seed: int) -> None:
    fork_project(store, "base", "v1", project, workspace=workspace)
    train = generate(root / f"{project}-train", 6, seed=seed, prefix=f"{project}-train")
    test = generate(root / f"{project}-test", 5, seed=seed + 100, prefix=f"{project}-test")
    import_records(store, project, train, root / f"{project}-train", workspace=workspace, split="train")
    import_records(store, project, test, root / f"{project}-test", workspace=workspace, split="test")
    create_version(store, project, workspace=workspace)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("fleet")
    store = Store.open(root / "home")
    base = generate(root / "base", 20, seed=0)
    create_project(store, "base", "detect")
    import_records(store, "base", base, root / "base")
    base_v = create_version(store, "base", split="train=0.6,valid=0.2,test=0.2", seed=1)
    base_model = train_model(store, "base", base_v.version, epochs=2, name="base-m", **TINY)
    _add_customer(store, root, "acme", "acme-ws", seed=11)
    _add_customer(store, root, "zeta", "zeta-ws", seed=22)
    acme_model = train_model(store, "acme", None, workspace="acme-ws", epochs=1, init_from="base-m", base_mix=0.5, name="acme-m")
    return SimpleNamespace(store=store, root=root, base_v=base_v, base_model=base_model, acme_model=acme_model)


@pytest.fixture(scope="module")
def first(world):
    """The first fleet call (every evaluation runs), timed."""
    t0 = time.perf_counter()
    doc = fleet_svc.fleet(world.store, "base")
    return SimpleNamespace(doc=doc, seconds=time.perf_counter() - t0)


def _by_project(doc):
    return {c["project"]: c for c in doc["customers"]}


def test_the_fleet_lists_both_customers_with_their_fields(world, first):
    doc = first.doc
    assert doc["base"]["project"] == "base" and doc["base"]["version"]["number"] == 1
    assert doc["base"]["model"]["model"] == world.base_model.model and doc["base"]["model"]["source"] == "newest"
    rows = _by_project(doc)
    assert [(c["workspace"], c["project"]) for c in doc["customers"]] == [("acme-ws", "acme"), ("zeta-ws", "zeta")]
    for c in rows.values():
        assert c["base_version"] == {"number": 1, "version": world.base_v.version, "latest": 1, "behind": False}
        assert c["version"]["number"] == 1 and c["version"]["base_number"] == 1
        assert c["test_images"] == 5 and c["metric"] == "map50"
        assert c["base_score"] is not None and 0.0 <= c["base_score"] <= 1.0
        labels = c["labels"]
        base_counts = world.base_v.counts
        base_train = sum(base_counts["splits"].get(s, {}).get("images", 0) for s in ("train", "valid"))
        assert (labels["own_images"], labels["own_train_images"], labels["own_test_images"]) == (11, 6, 5)
        assert labels["base_images"] == 20 and labels["base_train_images"] == base_train
        assert labels["share"] == round(6 / base_train, 4) and labels["own_train_boxes"] > 0
        assert doc["base"]["scores"][f"{c['workspace']}/{c['project']}"] == c["base_score"]
    acme, zeta = rows["acme"], rows["zeta"]
    assert acme["model"]["model"] == world.acme_model.model and acme["model"]["source"] == "newest"
    assert acme["score"] is not None and acme["delta"] == round(acme["score"] - acme["base_score"], 6)
    gain = acme["score"] - acme["base_score"]
    assert acme["verdict"] == (fleet_svc.CUSTOMISED if gain >= fleet_svc.MIN_GAIN else fleet_svc.BASE_IS_ENOUGH)
    assert zeta["model"] is None and zeta["score"] is None and zeta["delta"] is None
    assert zeta["verdict"] == fleet_svc.NO_MODEL and zeta["error"] is None
    assert doc["evaluations"]["run"] == 3 and doc["evaluations"]["cached"] == 0


def test_scores_are_those_evaluate_model_gives(world, first):
    rows = _by_project(first.doc)
    for project, ws, model, key in (
        ("acme", "acme-ws", world.acme_model.model, "score"),
        ("acme", "acme-ws", world.base_model.model, "base_score"),
        ("zeta", "zeta-ws", world.base_model.model, "base_score"),
    ):
        row = rows[project]
        direct = evaluate_model(world.store, model, project, row["version"]["version"], split="test", workspace=ws)
        assert row[key] == pytest.approx(direct.report.metrics["map50"], abs=1e-12)
        assert row[key] == direct.report.slices.overall
        worst = direct.report.slices.worst_slices
        got = row["worst_slice"] if key == "score" else row["base_worst_slice"]
        assert got == (None if not worst else {"name": worst[0].name, "score": worst[0].score, "images": worst[0].images,
                                                "significant": worst[0].significant})


def test_a_second_call_reads_the_cache_and_predicts_nothing(world, first, monkeypatch):
    from winnow.services import training

    calls = []
    real = training.predict
    monkeypatch.setattr(training, "predict", lambda *a, **k: calls.append(a) or real(*a, **k))
    t0 = time.perf_counter()
    again = fleet_svc.fleet(world.store, "base")
    seconds = time.perf_counter() - t0
    assert calls == [] and again["evaluations"]["run"] == 0 and again["evaluations"]["cached"] == 3
    assert seconds < first.seconds / 2, (seconds, first.seconds)
    strip = lambda d: {k: v for k, v in d.items() if k != "evaluations"}  # noqa: E731
    assert strip(again) == strip(first.doc)
    acme = _by_project(first.doc)["acme"]
    path = fleet_svc.cache_path(world.store, world.acme_model.model, acme["version"]["version"], "test")
    assert json.loads(path.read_text())["score"] == acme["score"]
    # the base model: one entry per customer version (the version records the class map it reads through)
    cached = sorted(p.name for p in (world.store.home / "cache" / fleet_svc.CACHE_TABLE / world.base_model.model).iterdir())
    assert cached == sorted(f"{c['version']['version']}-test.json" for c in first.doc["customers"])


def test_a_given_base_model_must_be_the_base_projects(world):
    doc = fleet_svc.fleet(world.store, "base", base_model="base-m")
    assert doc["base"]["model"]["source"] == "given" and doc["evaluations"]["run"] == 0
    with pytest.raises(NotFoundError):
        fleet_svc.fleet(world.store, "base", base_model="acme-m")  # another workspace's model
    create_project(world.store, "other", "detect")
    with pytest.raises(NotFoundError):
        fleet_svc.fleet(world.store, "nope")
    assert fleet_svc.fleet(world.store, "other")["customers"] == []


def test_a_customer_without_test_images_says_no_test_set(world):
    fork_project(world.store, "base", "v1", "empty", workspace="empty-ws")
    doc = fleet_svc.fleet(world.store, "base")
    empty = _by_project(doc)["empty"]
    assert empty["verdict"] == fleet_svc.NO_TEST_SET and empty["version"] is None and empty["labels"] is None
    create_version(world.store, "empty", workspace="empty-ws")  # inherited images only: no test split
    empty = _by_project(fleet_svc.fleet(world.store, "base"))["empty"]
    assert empty["verdict"] == fleet_svc.NO_TEST_SET and empty["test_images"] == 0 and empty["labels"]["own_images"] == 0
    from winnow.services.projects import delete_project

    delete_project(world.store, "empty", "empty-ws")


def test_the_cli_prints_the_table_and_the_json(world, first, monkeypatch):
    from typer.testing import CliRunner

    from winnow.cli.main import app

    monkeypatch.setenv("WINNOW_HOME", str(world.store.home))
    runner = CliRunner()
    res = runner.invoke(app, ["fleet", "base", "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["customers"] == first.doc["customers"] and doc["evaluations"]["run"] == 0
    from winnow.cli import _common

    monkeypatch.setattr(_common.out, "_width", 200)  # one table row per customer
    res = runner.invoke(app, ["fleet", "base"])
    assert res.exit_code == 0, res.output
    for text in ("acme-ws/acme", "zeta-ws/zeta", "no model", "acme-m (newest)", "base map50", "6 (40.0%)"):
        assert text in res.stdout, res.stdout
    res = runner.invoke(app, ["fleet", "nope", "--json"])
    assert res.exit_code == 1 and "error" in json.loads(res.stdout)


def test_the_api_answers_the_base_team_and_404s_a_customer(world, first):
    from tests.integration.api.conftest import start_server
    from winnow.services.auth import create_key

    srv, uv, thread = start_server(world.store)
    try:
        base_key = create_key(world.store, "default", "viewer").key
        acme_key = create_key(world.store, "acme-ws", "admin").key
        with srv.client(base_key) as client:
            res = client.get("/projects/base/fleet")
            assert res.status_code == 200, res.text
            body = res.json()
            assert body["customers"] == json.loads(json.dumps(first.doc["customers"])) and body["evaluations"]["run"] == 0
            assert body["base"] == json.loads(json.dumps(first.doc["base"]))
            assert client.get("/projects/base/fleet", params={"base_model": "base-m"}).json()["base"]["model"]["source"] == "given"
            assert client.get("/projects/nope/fleet").status_code == 404
        with srv.client(acme_key) as client:
            assert client.get("/projects/base/fleet").status_code == 404
            own = client.get("/projects/acme/fleet")
            assert own.status_code == 200 and own.json()["customers"] == []
    finally:
        uv.should_exit = True
        thread.join(10)


def test_the_verdict_rule():
    v = fleet_svc._verdict
    assert v(True, {}, {}, 0.6, 0.5, None) == fleet_svc.CUSTOMISED
    assert v(True, {}, {}, 0.5, 0.5, None) == fleet_svc.BASE_IS_ENOUGH
    assert v(True, {}, {}, 0.5 + fleet_svc.MIN_GAIN / 2, 0.5, None) == fleet_svc.BASE_IS_ENOUGH  # a tie in all but noise
    assert v(True, {}, {}, 0.5 + fleet_svc.MIN_GAIN, 0.5, None) == fleet_svc.CUSTOMISED
    assert v(True, {}, {}, 0.4, 0.5, None) == fleet_svc.BASE_IS_ENOUGH
    assert v(True, None, {}, None, 0.5, None) == fleet_svc.NO_MODEL
    assert v(False, {}, {}, None, None, None) == fleet_svc.NO_TEST_SET
    assert v(True, {}, None, 0.5, None, None) == fleet_svc.NO_BASE_MODEL
    assert v(True, {}, {}, None, None, "boom") == fleet_svc.ERROR


def test_a_base_model_is_scored_in_the_customers_class_names(tmp_path):
    """A customer that renamed a base class (``circle`` -> ``disc``): the base model still predicts
    ``circle``, and its evaluation on the customer's test set reads it as ``disc`` through the
    fork's class map, so it scores exactly what it scores on a twin customer that kept the name."""
    from winnow.services.schema import rename_class

    store = Store.open(tmp_path / "home")
    base = generate(tmp_path / "base", 12, seed=0)
    create_project(store, "base", "detect")
    import_records(store, "base", base, tmp_path / "base")
    create_version(store, "base", split="train=0.7,valid=0.3,test=0", seed=1)
    train_model(store, "base", None, epochs=1, name="base-m", **TINY)
    test = generate(tmp_path / "cust", 6, seed=5, prefix="cust")
    for ws in ("kept-ws", "renamed-ws"):
        fork_project(store, "base", "v1", "cust", workspace=ws)
        import_records(store, "cust", test, tmp_path / "cust", workspace=ws, split="test")
    rename_class(store, "cust", "circle", "disc", workspace="renamed-ws")
    for ws in ("kept-ws", "renamed-ws"):
        create_version(store, "cust", workspace=ws)

    kept = evaluate_model(store, "base-m", "cust", None, workspace="kept-ws", n_bootstrap=50)
    renamed = evaluate_model(store, "base-m", "cust", None, workspace="renamed-ws", n_bootstrap=50)
    names = lambda ev: {s.name for s in ev.report.slices.slices if s.kind == "class"}  # noqa: E731
    assert "class:disc" in names(renamed) and "class:circle" not in names(renamed)
    assert "class:circle" in names(kept)
    assert renamed.report.slices.overall == pytest.approx(kept.report.slices.overall, abs=1e-9)
    assert renamed.report.slices.overall > 0  # the tiny model finds something, so the mapping matters
    # renamed again after v1 was made: v1 is still scored with the map it was made with
    rename_class(store, "cust", "disc", "ring", workspace="renamed-ws")
    again = evaluate_model(store, "base-m", "cust", "v1", workspace="renamed-ws", n_bootstrap=50)
    assert again.report.slices.overall == pytest.approx(kept.report.slices.overall, abs=1e-9)


def test_winnow_compare_puts_the_base_model_and_the_customer_model_side_by_side(world, first, monkeypatch):
    """``winnow compare BASE_MODEL CUSTOMER_MODEL CUSTOMER@latest`` from the customer's workspace:
    the base model is read through the fork, and both overall scores are the fleet's."""
    from typer.testing import CliRunner

    from winnow.cli.main import app

    monkeypatch.setenv("WINNOW_HOME", str(world.store.home))
    res = CliRunner().invoke(app, ["compare", "base-m", "acme-m", "acme@latest", "-w", "acme-ws", "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    acme = _by_project(first.doc)["acme"]
    assert doc["metric"] == "map50" and doc["split"] == "test"
    assert doc["a"]["overall"] == pytest.approx(acme["base_score"]) and doc["b"]["overall"] == pytest.approx(acme["score"])
    assert {r["name"] for r in doc["slices"]} and all(r["verdict"] in ("better", "worse", "same") for r in doc["slices"])
    res = CliRunner().invoke(app, ["compare", "base-m", "acme-m", "acme@latest", "-w", "zeta-ws", "--json"])
    assert res.exit_code == 1  # zeta has no project acme: the workspace is the boundary
