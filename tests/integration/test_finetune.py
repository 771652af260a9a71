"""Fine-tuning (``train_model(init_from=..., base_mix=...)``, ``winnow train --from --base-mix``, the
API's ``init_from``/``base_mix``) end to end on a real store: a tiny MobileNetV3-Small classifier
(width 0.25, 32 px) trained on a "base" project, then fine-tuned on the same version and on a
"customer" project with one more class and half its images inherited from the base (metadata
``origin: base``)."""

from __future__ import annotations

import hashlib
import json
from types import SimpleNamespace

import numpy as np
import pytest
from sqlalchemy import func, select

from winnow.core.types import ORIGIN_BASE, ORIGIN_KEY, ImageRecord, Task
from winnow.errors import InvalidInputError, NotFoundError
from winnow.store import models as m

torch = pytest.importorskip("torch")

from winnow.formats import get_format
from winnow.services.ingest import import_dataset
from winnow.services.projects import create_project
from winnow.services.training import load_model, mix_plan, model_id_for, train_model
from winnow.services.versions import create_version, load_version
from winnow.store.db import Store
from winnow.synthetic import generate

pytestmark = pytest.mark.usefixtures("one_torch_thread")

#: Hyper-parameters of every training here (a few seconds each on one thread).
TINY = {"image_size": 32, "width": 0.25, "batch_size": 8}
#: A learning rate at which a fine-tune leaves the weights where they started (AdamW steps ~ lr).
FROZEN_LR = 1e-9
#: The keys of a plain training's params: using neither option must not add one (model ids unchanged).
PLAIN_KEYS = {
    "epochs", "batch_size", "lr", "optimizer", "weight_decay", "momentum", "warmup", "grad_clip", "bn_momentum", "seed",
    "image_size", "width", "pretrained", "eval_every",
}
HEAD = ("net.classifier.3.weight", "net.classifier.3.bias")  # MobileNetV3's last Linear: one row per class


def _import_classify(store: Store, project: str, root, n: int, seed: int, star_every: int = 0) -> None:
    """A classification project of ``n`` generated one-shape images; every ``star_every``-th image
    relabelled ``star`` (a class the base does not have)."""
    ds = generate(root / "gen", n, seed=seed, task=Task.CLASSIFY)
    if star_every:
        for i, rec in enumerate(ds.images):
            if i % star_every == 0:
                rec.annotations[0].label = "star"
        ds.classes = [*ds.classes, "star"]
    get_format("folders").write(ds, root / "folders", lambda rec, path: path.write_bytes(rec.file.read_bytes()))
    create_project(store, project, "classify")
    import_dataset(store, project, root / "folders", format="folders")


def _mark_inherited(store: Store, project: str, every: int = 2) -> set[str]:
    """Give every ``every``-th image of ``project`` (by name) the metadata a fork gives inherited images."""
    with store.write() as session:
        proj = session.scalar(select(m.Project).where(m.Project.name == project))
        images = list(session.scalars(select(m.Image).where(m.Image.project_id == proj.id).order_by(m.Image.name)))
        marked = images[::every]
        for im in marked:
            session.add(m.ImageMetadata(image_id=im.id, key=ORIGIN_KEY, value=ORIGIN_BASE))
        return {im.name for im in marked}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("finetune")
    store = Store.open(root / "home")
    _import_classify(store, "base", root / "base", 24, seed=3)
    base_v = create_version(store, "base", split="train=0.75,valid=0.25", resplit=True, seed=1)
    a = train_model(store, "base", base_v.version, epochs=20, lr=0.01, name="base-a", pretrained="no", **TINY)
    _import_classify(store, "cust", root / "cust", 24, seed=5, star_every=4)
    inherited = _mark_inherited(store, "cust")
    cust_v = create_version(store, "cust", split="train=0.75,valid=0.25", resplit=True, seed=1)
    return SimpleNamespace(store=store, root=root, base_v=base_v, a=a, cust_v=cust_v, inherited=inherited)


def _weights(store: Store, summary) -> dict[str, torch.Tensor]:
    return torch.load(store.blobs.path(summary.files["weights"]["sha256"]), weights_only=True)


def _probs(store: Store, ref: str, images) -> np.ndarray:
    loaded = load_model(store, ref, engine="torch")
    return loaded.backend.probabilities(loaded.runner, images, loaded.image_size)


def _images(store: Store, project: str):
    from winnow.services.datasets import load_dataset
    from winnow.services.training import decode_record

    return [decode_record(r) for r in load_dataset(store, project).images]


def _model_count(store: Store) -> int:
    with store.read() as session:
        return session.scalar(select(func.count()).select_from(m.Model))


# ----------------------------------------------------------------------------- same classes


@pytest.fixture(scope="module")
def same(world):
    """A fine-tune of base-a on its own version at a learning rate that cannot move the weights,
    and the same training from random init."""
    s, v = world.store, world.base_v.version
    ft = train_model(s, "base", v, epochs=1, lr=FROZEN_LR, init_from="base-a", name="ft-same")
    scratch = train_model(s, "base", v, epochs=1, lr=FROZEN_LR, name="scratch", pretrained="no", **TINY)
    return SimpleNamespace(ft=ft, scratch=scratch)


def test_a_fine_tune_starts_from_the_init_models_weights(world, same):
    a, ft, scratch = world.a, same.ft, same.scratch
    assert ft.backend == a.backend and ft.params["width"] == 0.25 and ft.params["image_size"] == 32, "inherited from base-a"
    wa, wft, wscratch = _weights(world.store, a), _weights(world.store, ft), _weights(world.store, scratch)
    params = {name for name, _ in load_model(world.store, "base-a", engine="torch").runner.named_parameters()}
    assert params and params <= set(wa)
    for name in params:  # learnt tensors: where base-a left them (the batch-norm statistics may drift a little)
        torch.testing.assert_close(wft[name], wa[name], atol=1e-6, rtol=0)
    assert max(float((wscratch[k] - wa[k]).abs().max()) for k in params) > 1e-2, "from random init (the same seed) they differ"

    images = _images(world.store, "base")
    pa, pft, pscratch = (_probs(world.store, r.name, images) for r in (a, ft, scratch))
    assert pa.max(axis=1).mean() > 0.5, "base-a has learnt something: a real comparison"
    gap_ft, gap_scratch = np.abs(pft - pa).max(), np.abs(pscratch - pa).max()
    assert gap_ft < 0.1 and gap_scratch > 0.3, (gap_ft, gap_scratch)  # gap_ft: batch-norm statistics updated by one epoch
    assert (pft.argmax(1) == pa.argmax(1)).mean() >= 0.9


def test_with_the_same_classes_every_tensor_loads_and_the_metrics_say_so(world, same):
    init, total = same.ft.metrics["init"], len(_weights(world.store, world.a))
    assert init["model"] == world.a.model and init["name"] == "base-a" and init["project"] == "base"
    assert init["loaded"] == init["total"] == total and init["skipped"] == [] and init["remapped"] == []
    assert init["classes_matched"] == world.a.classes
    assert init["pretrained_requested"] == "auto" and same.ft.metrics["pretrained"] is None, "init_from wins over a checkpoint"
    assert "mix" not in same.ft.metrics, "no inherited image, no base_mix: no mix entry"


def test_init_from_enters_the_model_id_and_a_plain_training_keeps_its_id(world, same):
    v = world.base_v.version
    ft, scratch = same.ft, same.scratch
    assert ft.params["init_from"] == world.a.model and "base_mix" not in ft.params
    assert ft.model == model_id_for(v, ft.backend, ft.params)
    assert set(scratch.params) == PLAIN_KEYS and set(world.a.params) == PLAIN_KEYS, "no new key in a plain training's params"
    assert scratch.model == model_id_for(v, scratch.backend, scratch.params)
    without = {k: v for k, v in ft.params.items() if k != "init_from"}
    assert ft.model != model_id_for(v, ft.backend, without) and ft.model != scratch.model
    again = train_model(world.store, "base", v, epochs=1, lr=FROZEN_LR, init_from=world.a.model[:10])
    assert not again.created and again.model == ft.model, "by id prefix: the registered fine-tune"


# ----------------------------------------------------------------------------- another class list, inherited images


@pytest.fixture(scope="module")
def cust(world):
    """base-a fine-tuned on the customer's version (one more class; half the images inherited)."""
    return train_model(world.store, "cust", world.cust_v.version, epochs=1, lr=FROZEN_LR, init_from="base-a", name="ft-cust")


def test_with_another_class_list_the_backbone_loads_and_the_head_is_remapped_by_name(world, cust):
    a = world.a
    assert "star" in cust.classes and "star" not in a.classes and set(a.classes) < set(cust.classes)
    init, wa, wc = cust.metrics["init"], _weights(world.store, a), _weights(world.store, cust)
    assert init["remapped"] == list(HEAD) and init["skipped"] == []
    assert init["loaded"] == init["total"] - len(HEAD) == len(wa) - len(HEAD)
    assert init["classes_matched"] == [c for c in cust.classes if c in a.classes]
    for name in HEAD:
        assert wa[name].shape[0] == len(a.classes) and wc[name].shape[0] == len(cust.classes)
        for c in a.classes:  # each shared class keeps its own row, wherever the new list puts it
            torch.testing.assert_close(wc[name][cust.classes.index(c)], wa[name][a.classes.index(c)], atol=1e-6, rtol=0)
    star = cust.classes.index("star")
    assert all(float((wc[HEAD[0]][star] - wa[HEAD[0]][i]).abs().max()) > 1e-3 for i in range(len(a.classes))), "a new row"
    torch.testing.assert_close(wc["net.features.0.0.weight"], wa["net.features.0.0.weight"], atol=1e-6, rtol=0)


def test_a_class_dependent_tensor_is_remapped_when_it_has_a_row_per_class_else_skipped():
    """Same shapes, another class order: never loaded as is; rows copied by class name when the
    backend lays them out one per class (``offset``), else skipped (random init)."""
    from winnow.services.training import load_init_weights

    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Linear(8, 3))
    other = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Linear(8, 3))
    state = other.state_dict()
    info = load_init_weights(net, state, old_classes=["a", "b", "c"], new_classes=["c", "b", "a"], per_class={"1.weight", "1.bias"}, offset=None)
    assert info["loaded"] == 2 and info["skipped"] == ["1.weight", "1.bias"] and info["remapped"] == []
    torch.testing.assert_close(net[0].weight, other[0].weight)
    assert not torch.equal(net[1].weight, other[1].weight), "same shape, other classes: not loaded as is"
    info = load_init_weights(net, state, old_classes=["a", "b", "c"], new_classes=["c", "b", "a"], per_class={"1.weight", "1.bias"}, offset=0)
    assert info["remapped"] == ["1.weight", "1.bias"]
    torch.testing.assert_close(net[1].weight, other[1].weight.flip(0))
    torch.testing.assert_close(net[1].bias, other[1].bias.flip(0))


def test_a_detectors_anchor_interleaved_class_head_is_skipped_and_the_rest_loads():
    """SSDlite's classification head has anchors x (classes + 1) channels (not one row per class):
    another class list skips exactly those tensors; the same list loads everything."""
    from winnow.services.training import class_dependent_tensors, load_init_weights
    from winnow.train.base import get_backend

    backend = get_backend("ssdlite")
    torch.manual_seed(1)
    old = backend.build(3, 64, width=0.25).state_dict()
    torch.manual_seed(2)
    net = backend.build(3, 64, width=0.25)
    per_class = class_dependent_tensors(backend, net, 3, 64, 0.25)
    assert per_class and all(k.startswith("head.classification_head.") for k in per_class)
    info = load_init_weights(net, old, old_classes=["a", "b", "c"], new_classes=["b", "c", "d"], per_class=per_class, offset=1)
    assert sorted(info["skipped"]) == sorted(per_class) and info["remapped"] == [] and info["classes_matched"] == ["b", "c"]
    assert info["loaded"] == info["total"] - len(per_class) == len(old) - len(per_class)
    state = net.state_dict()
    assert all(torch.equal(state[k], old[k]) for k in old if k not in per_class)
    assert not any(torch.equal(state[k], old[k]) for k in per_class if k.endswith("weight"))
    info = load_init_weights(net, old, old_classes=["a", "b", "c"], new_classes=["a", "b", "c"], per_class=per_class, offset=1)
    assert info["loaded"] == len(old) and info["skipped"] == []


def test_all_inherited_images_are_used_by_default_and_the_mix_is_recorded(world, cust):
    counts = world.cust_v.counts["splits"]["train"]["images"]
    manifest = load_version(world.store, "cust", world.cust_v.version).manifest
    train = [r for r in manifest.images if r.split == "train"]
    base = [r for r in train if r.metadata.get(ORIGIN_KEY) == ORIGIN_BASE]
    assert base and len(base) < len(train) and {r.name for r in base} <= world.inherited
    mix = cust.metrics["mix"]
    assert mix == {
        "own_train_images": len(train) - len(base), "base_train_images_available": len(base),
        "base_train_images_used": len(base), "base_mix": 1.0,
    }
    assert cust.metrics["train_images"] == counts and "base_mix" not in cust.params, "None: all of them, not in the id"


@pytest.mark.parametrize("fraction", [0.0, 0.5])
def test_base_mix_trains_on_that_share_of_the_inherited_images(world, cust, fraction):
    s = train_model(world.store, "cust", world.cust_v.version, epochs=1, lr=0.01, init_from="base-a", base_mix=fraction)
    full = cust.metrics["mix"]
    expected = int(np.floor(fraction * full["base_train_images_available"] + 0.5))
    assert s.metrics["mix"] == full | {"base_train_images_used": expected, "base_mix": fraction}
    assert s.metrics["train_images"] == full["own_train_images"] + expected
    assert s.metrics["valid_images"] == cust.metrics["valid_images"], "validation keeps the whole valid split"
    assert s.params["base_mix"] == fraction and s.model == model_id_for(s.version, s.backend, s.params)
    assert s.model != cust.model


def test_the_share_is_a_seeded_draw_of_the_inherited_train_images():
    recs = [ImageRecord(name=f"b{i:02d}", split="train", metadata={ORIGIN_KEY: ORIGIN_BASE}) for i in range(10)]
    recs += [ImageRecord(name="own", split="train"), ImageRecord(name="bv", split="valid", metadata={ORIGIN_KEY: ORIGIN_BASE})]
    plan = mix_plan(recs, 0.3, 7, "p@v")
    assert len(plan.inherited) == 10 and len(plan.left_out) == 7 and "bv" not in plan.inherited
    assert mix_plan(recs, 0.3, 7, "p@v") == plan and mix_plan(recs, 0.3, 8, "p@v").left_out != plan.left_out
    assert mix_plan(recs, 0.25, 0, "p@v").left_out.__len__() == 7, "2.5 rounds half up to 3 kept"
    assert mix_plan(recs, None, 0, "p@v").left_out == frozenset() and mix_plan(recs, None, 0, "p@v").base_mix == 1.0
    assert mix_plan(recs[10:11], None, 0, "p@v") is None, "no inherited image, no base_mix: no plan"
    assert mix_plan(recs[10:11], 0.5, 0, "p@v").inherited == frozenset()
    # the outputs of a source image (augmented copies) go together
    outputs = [ImageRecord(name=f"{r.name}{s}", split=r.split, metadata={"source": r.name}) for r in recs for s in ("", "_aug1")]
    idx, counts = plan.apply(outputs, [i for i, r in enumerate(outputs) if r.split == "train"])
    assert counts == {"own_train_images": 2, "base_train_images_available": 20, "base_train_images_used": 6, "base_mix": 0.3}
    kept = {outputs[i].metadata["source"] for i in idx}
    assert kept == {"own"} | (plan.inherited - plan.left_out) and len(idx) == 8
    with pytest.raises(InvalidInputError, match="leaves nothing to train on"):
        mix_plan(recs[:10], 0.0, 0, "p@v")
    for bad in (1.5, -0.1, float("nan"), True, "0.5"):
        with pytest.raises(InvalidInputError, match=r"base mix .*\[0, 1\]"):
            mix_plan(recs, bad, 0, "p@v")


# ----------------------------------------------------------------------------- bad inputs


def _fake_model(store: Store, project: str, name: str, **kw) -> None:
    with store.write() as session:
        proj = session.scalar(select(m.Project).where(m.Project.name == project))
        fields = {
            "model_id": hashlib.sha256(name.encode()).hexdigest(), "name": name, "version_id": "0" * 64,
            "backend": "mobilenet_v3_small", "task": "classify", "classes": ["circle", "square", "triangle"],
            "params": {"image_size": 32, "width": 0.25}, "recipe": {}, "code_version": "test", "metrics": {}, "files": {},
            "status": "ready",
        }
        session.add(m.Model(project_id=proj.id, **(fields | kw)))


def test_bad_init_models_and_mixes_are_refused_before_any_row_is_written(world):
    s, v = world.store, world.base_v.version
    weights = world.a.files
    _fake_model(s, "base", "still-training", status="training", files=weights)
    _fake_model(s, "base", "broken", status="failed")
    _fake_model(s, "base", "a-detector", task="detect", backend="ssdlite", files=weights)
    _fake_model(s, "base", "a-resnet", backend="resnet18", files=weights)
    _fake_model(s, "base", "no-weights", files={"weights": {"name": "weights.pt", "sha256": "f" * 64, "size": 1}})
    before = _model_count(s)
    cases = [
        (NotFoundError, "no model 'nope'", {"init_from": "nope"}),
        (InvalidInputError, r"'still-training' .* is training, not ready", {"init_from": "still-training"}),
        (InvalidInputError, r"'broken' .* is failed, not ready", {"init_from": "broken"}),
        (InvalidInputError, r"'a-detector' .* is a detect model; version base@.* is classify", {"init_from": "a-detector"}),
        (InvalidInputError, r"'a-resnet' .* is a 'resnet18' model; .* not 'mobilenet_v3_small'", {"init_from": "a-resnet", "model": "mobilenet_v3_small"}),
        (NotFoundError, r"'no-weights'.*weights.pt is missing", {"init_from": "no-weights"}),
        (InvalidInputError, r"'base-a' has width 0.25", {"init_from": "base-a", "width": 0.5}),
        (InvalidInputError, r"base mix .*\[0, 1\]; got 1.5", {"base_mix": 1.5}),
        (InvalidInputError, r"base mix .*\[0, 1\]; got -0.5", {"init_from": "base-a", "base_mix": -0.5}),
    ]
    for error, message, kw in cases:
        with pytest.raises(error, match=message):
            train_model(s, "base", v, epochs=1, lr=0.01, **kw)
    assert _model_count(s) == before, "no row for a training that never started"
    with s.write() as session:  # leave the registry as the other tests expect it
        session.execute(m.Model.__table__.delete().where(m.Model.name.in_(["still-training", "broken", "a-detector", "a-resnet", "no-weights"])))


# ----------------------------------------------------------------------------- the command line and the API


def test_cli_train_from_a_model_with_a_base_mix(world, monkeypatch):
    from typer.testing import CliRunner

    from winnow.cli.main import app

    monkeypatch.setenv("WINNOW_HOME", str(world.store.home))
    runner = CliRunner()
    r = runner.invoke(app, ["train", "cust@latest", "--from", "base-a", "--base-mix", "0.25", "--epochs", "1", "--lr", "0.01",
                            "--seed", "3", "--name", "cli-ft", "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["created"] and doc["params"]["init_from"] == world.a.model and doc["params"]["base_mix"] == 0.25
    assert doc["backend"] == "mobilenet_v3_small" and doc["params"]["width"] == 0.25, "backend and width from base-a"
    init, mix = doc["metrics"]["init"], doc["metrics"]["mix"]
    assert init["model"] == world.a.model and init["remapped"] == list(HEAD) and init["classes_matched"]
    assert mix["base_mix"] == 0.25 and mix["base_train_images_used"] == int(np.floor(0.25 * mix["base_train_images_available"] + 0.5))
    assert doc["metrics"]["train_images"] == mix["own_train_images"] + mix["base_train_images_used"]
    text = runner.invoke(app, ["model", "show", "cli-ft"]).stdout
    assert "weights: from model base-a" in text and f"{init['loaded']} of {init['total']} tensors loaded, 2 remapped" in text
    assert f"mix: {mix['own_train_images']} own + {mix['base_train_images_used']} of {mix['base_train_images_available']}" in text
    r = runner.invoke(app, ["train", "cust@latest", "--from", "base-a", "--base-mix", "2", "--json"])
    assert r.exit_code == 1 and json.loads(r.stdout)["type"] == "InvalidInputError"


def test_api_train_passes_init_from_and_base_mix_through(world):
    from tests.integration.api.conftest import start_server
    from tests.integration.api.test_resources import wait_for
    from winnow.config import DEFAULT_WORKSPACE

    srv, uv, thread = start_server(world.store)
    try:
        with srv.client(srv.key(DEFAULT_WORKSPACE, "admin")) as c:
            body = {"version": world.cust_v.version, "epochs": 1, "lr": 0.01, "seed": 4, "init_from": "base-a", "base_mix": 0.5}
            assert c.post("/projects/cust/models", json=body | {"base_mix": 1.5}).status_code == 422
            assert c.post("/projects/cust/models", json=body | {"init_from": "nope"}).status_code == 404
            assert c.post("/projects/cust/models", json=body | {"model": "resnet18"}).status_code == 422
            r = c.post("/projects/cust/models", json=body)
            assert r.status_code == 202, r.text
            done = wait_for(c, r.json()["id"])
        assert done["status"] == "succeeded", done
        model = done["result"]
        assert model["params"]["init_from"] == world.a.model and model["params"]["base_mix"] == 0.5 and model["params"]["seed"] == 4
        assert model["metrics"]["init"]["model"] == world.a.model and model["metrics"]["mix"]["base_mix"] == 0.5
    finally:
        uv.should_exit = True
        thread.join(10)


def test_a_base_models_classes_are_read_in_the_forks_names():
    """A fork that renamed ``circle`` to ``ring``: the base model's ``circle`` head row is the
    customer's ``ring`` (so it is copied, not re-learnt); dropped or split classes match nothing."""
    from winnow.services.training import InitModel, _as_customer_names

    init = InitModel("m" * 64, "base-m", "base", "torchvision:mobilenet_v3_small", ["circle", "square", "triangle", "star"], 32, 0.25, "")
    split = {"by": "size", "into": ["big", "small"], "default": "big"}
    recipe = {"base": {"project": "base", "class_map": {"circle": "ring", "square": "square", "triangle": None, "star": split}}}
    assert _as_customer_names(init, recipe) == ["ring", "square", "triangle", "star"]
    assert _as_customer_names(init, {}) == init.classes  # not a fork version
    other = {"base": {"project": "another", "class_map": {"circle": "ring"}}}
    assert _as_customer_names(init, other) == init.classes  # a fork of another project
