"""Training end to end on a real store: tiny models trained for a few steps on generated data, the
registry row and its blobs, validation on the right split, ONNX predictions that match PyTorch,
pre-labels stored as one undoable change, the CLI, and bad inputs."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from sqlalchemy import select

import winnow
from winnow.core.types import Task
from winnow.errors import InvalidInputError, NotFoundError
from winnow.store import models as m

torch = pytest.importorskip("torch")

from tests.integration.test_versions import synthetic_store
from tests.unit.train._match import assert_same_detections
from winnow.formats import get_format
from winnow.services.ingest import import_dataset
from winnow.services.maintenance import verify
from winnow.services.projects import create_project
from winnow.services.training import (
    list_models,
    load_model,
    model_id_for,
    predict,
    show_model,
    store_predictions,
    train_model,
    undo_predictions,
)
from winnow.services.versions import create_version
from winnow.store.db import Store
from winnow.synthetic import generate


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def det(tmp_path_factory):
    """A tiny SSDlite (width 0.25, 64 px input) trained 3 epochs on 20 generated images."""
    root = tmp_path_factory.mktemp("det")
    store = synthetic_store(root, n=20, seed=0)
    version = create_version(store, "shapes", split="train=0.7,valid=0.3", resplit=True, seed=1)
    logs: list[dict] = []
    summary = train_model(
        store, "shapes", version.version, epochs=3, image_size=64, width=0.25, batch_size=4, lr=3e-3,
        name="tiny-det", eval_every=1, log=logs.append,
    )
    return SimpleNamespace(store=store, version=version, summary=summary, logs=logs, root=root)


def _images(store: Store, split: str | None = None):
    from winnow.services.datasets import load_dataset

    return load_dataset(store, "shapes", split=split).images


# ----------------------------------------------------------------------------- registry


def test_the_registry_row_has_every_field_and_its_files_are_blobs(det):
    s, v = det.summary, det.version
    assert s.created and s.status == "ready" and s.name == "tiny-det" and s.backend == "ssdlite" and s.task == "detect"
    with det.store.read() as session:
        row = session.scalar(select(m.Model).where(m.Model.model_id == s.model))
        session.expunge(row)
    assert row.version_id == v.version and row.recipe == v.recipe and row.classes == v.classes
    assert row.deployed is False and row.created_at is not None and row.finished_at >= row.created_at
    assert row.code_version.startswith(winnow.__version__)
    p = row.params
    assert (p["epochs"], p["image_size"], p["batch_size"], p["lr"], p["seed"], p["width"]) == (3, 64, 4, 3e-3, 0, 0.25)
    assert p["optimizer"] == "adamw" and p["pretrained"] == {"requested": "auto", "file": None}
    assert row.model_id == model_id_for(v.version, "ssdlite", p) and len(row.model_id) == 64
    assert [e["epoch"] for e in row.metrics["epochs"]] == [1, 2, 3] and row.metrics["epochs"] == det.logs
    assert row.metrics["pretrained"] is None, "no cached weights at width 0.25: random init"

    weights, onnx_file = row.files["weights"], row.files["onnx"]
    for f in (weights, onnx_file):
        assert det.store.blobs.verify(f["sha256"]) and det.store.blobs.path(f["sha256"]).stat().st_size == f["size"]
    state = torch.load(det.store.blobs.path(weights["sha256"]), weights_only=True)
    assert any(k.startswith("head.classification_head") for k in state)
    import onnx

    meta = {p.key: p.value for p in onnx.load(str(det.store.blobs.path(onnx_file["sha256"]))).metadata_props}
    info = json.loads(meta["winnow"])
    assert info["classes"] == v.classes and info["image_size"] == 64 and info["decode"]["mode"] == "per_class"

    again = train_model(det.store, "shapes", v.version, epochs=3, image_size=64, width=0.25, batch_size=4, lr=3e-3, eval_every=1)
    assert not again.created and again.model == s.model, "same version + backend + params: the registered model"
    assert [r.model for r in list_models(det.store, "shapes")] == [s.model]
    assert show_model(det.store, "tiny-det").model == show_model(det.store, s.model[:8]).model == s.model


def test_validation_metrics_are_computed_on_the_valid_split(det):
    metrics, counts = det.summary.metrics, det.version.counts["splits"]
    assert metrics["split"] == "valid"
    assert metrics["train_images"] == counts["train"]["images"] and metrics["valid_images"] == counts["valid"]["images"]
    for entry in det.logs:  # eval_every=1: every epoch evaluated on the same split
        valid = entry["valid"]
        assert valid["split"] == "valid" and valid["images"] == counts["valid"]["images"]
        assert valid["annotations"] == counts["valid"]["annotations"]
        assert 0.0 <= valid["map"] <= valid["map50"] <= 1.0
    assert metrics["valid"] == det.logs[-1]["valid"]


def test_onnx_and_pytorch_predictions_match_for_the_default_detector(det, tmp_path):
    from PIL import Image

    files = det.summary.files["onnx"]
    assert files["exporter"] == "dynamo" and files["outputs"] == "dense" and files["verified"]["ok"]
    on_torch = load_model(det.store, "tiny-det", engine="torch")
    on_onnx = load_model(det.store, "tiny-det", engine="onnx")
    assert load_model(det.store, "tiny-det").engine == "onnx", "auto serves the verified ONNX file"
    fresh = generate(tmp_path / "fresh", 3, seed=9, size=(128, 96))  # another size: boxes scale back to it
    images = [Image.open(r.file).convert("RGB") for r in fresh.images]
    images += [Image.open(r.file).convert("RGB") for r in _images(det.store, "valid")]
    a, b = on_torch.predict_arrays(images), on_onnx.predict_arrays(images)
    assert sum(len(p) for p in a) > 20, "a real comparison: the model predicts boxes"
    for pa, pb in zip(a, b, strict=True):
        assert_same_detections(pa.boxes, pa.scores, pa.class_ids, pb.boxes, pb.scores, pb.class_ids, box_rtol=1e-3, score_atol=1e-4)
    big = a[0]
    assert big.boxes[:, 0::2].max() <= 128 + 1e-3 and big.boxes[:, 1::2].max() <= 96 + 1e-3 and big.boxes[:, 2].max() > 64

    results = predict(det.store, "tiny-det", [fresh.images[0].file], min_score=0.0)
    assert len(results) == 1 and (results[0].width, results[0].height) == (128, 96)
    assert len(results[0].predictions) == len(a[0])
    assert all(set(p) == {"label", "score", "bbox"} and p["label"] in det.version.classes for p in results[0].predictions)


def test_gc_keeps_the_model_files_and_removes_a_stray_blob(det):
    stray = det.store.blobs.put(b"left by a crashed process")
    report = verify(det.store, gc=True, grace_seconds=0)
    assert report.ok and report.removed >= 1 and not det.store.blobs.exists(stray)
    for f in det.summary.files.values():
        assert det.store.blobs.verify(f["sha256"]) and f["sha256"] not in report.unreferenced


# ----------------------------------------------------------------------------- pre-labels


def _annotations(store: Store):
    with store.read() as session:
        return [(a.id, a.image_id, a.source, a.score, dict(a.attributes or {})) for a in session.scalars(select(m.Annotation).order_by(m.Annotation.id))]


def test_stored_predictions_are_model_annotations_with_scores_and_can_be_undone(det):
    store, model = det.store, det.summary.model
    before = _annotations(store)
    names = [r.name for r in _images(store)[:2]]
    first = store_predictions(store, "shapes", "tiny-det", images=names, min_score=0.0)
    expected = sum(len(r.predictions) for r in predict(store, "tiny-det", _images(store)[:2], min_score=0.0))
    assert first.change_id is not None and first.images == 2 and first.annotations_added == expected > 0
    added = [a for a in _annotations(store) if a[2] == "model"]
    assert len(added) == expected and all(a[3] is not None and 0 <= a[3] <= 1 and a[4] == {"model": model} for a in added)
    assert [a for a in _annotations(store) if a[2] != "model"] == before, "the existing labels are untouched"

    second = store_predictions(store, "shapes", "tiny-det", images=names, min_score=0.0)
    assert second.annotations_replaced == expected and len([a for a in _annotations(store) if a[2] == "model"]) == expected

    undo_predictions(store, "shapes")  # the second run: the first run's predictions come back, same ids
    assert [a for a in _annotations(store) if a[2] == "model"] == added
    undo_predictions(store, "shapes")
    assert _annotations(store) == before
    with store.read() as session:
        undone = [c.undone_at for c in session.scalars(select(m.Change).where(m.Change.kind == "predict"))]
    assert len(undone) == 2 and None not in undone
    with pytest.raises(NotFoundError, match="no prediction change"):
        undo_predictions(store, "shapes")


def test_by_default_only_unlabelled_images_are_pre_labelled(det):
    store = det.store
    target = _images(store)[3]
    assert store_predictions(store, "shapes", "tiny-det", min_score=0.0).images == 0, "every image has labels"
    with store.write() as session:
        session.add(m.ImageTag(image_id=target.id, tag="unlabeled"))
    try:
        report = store_predictions(store, "shapes", "tiny-det", min_score=0.0)
        assert report.images == 1
        assert {a[1] for a in _annotations(store) if a[2] == "model"} == {target.id}
        undo_predictions(store, "shapes", report.change_id)
    finally:
        with store.write() as session:
            session.execute(m.ImageTag.__table__.delete().where(m.ImageTag.image_id == target.id))


# ----------------------------------------------------------------------------- bad inputs


def test_bad_inputs_give_errors_that_say_what_to_do(det, tmp_path):
    store, v = det.store, det.version.version
    with pytest.raises(NotFoundError, match="unknown model 'yolov99'.*ssdlite"):
        train_model(store, "shapes", v, model="yolov99")
    with pytest.raises(InvalidInputError, match="'resnet18' is a classify model"):
        train_model(store, "shapes", v, model="resnet18")
    with pytest.raises(InvalidInputError, match="multiple of 32"):
        train_model(store, "shapes", v, image_size=100)
    no_train = create_version(store, "shapes", split="valid=1", resplit=True, name="valid-only")
    with pytest.raises(InvalidInputError, match="no train images.*--split train="):
        train_model(store, "shapes", no_train.version)
    notes = tmp_path / "notes.txt"
    notes.write_text("not a picture")
    with pytest.raises(InvalidInputError, match="notes.txt.*image"):
        predict(store, "tiny-det", [notes])
    with pytest.raises(NotFoundError, match="no such file"):
        predict(store, "tiny-det", [tmp_path / "missing.png"])
    with pytest.raises(NotFoundError, match="no model 'nope'"):
        predict(store, "nope", [notes])
    with pytest.raises(InvalidInputError, match="engine"):
        load_model(store, "tiny-det", engine="tensorrt")
    assert len(list_models(store)) == 1, "no row for a training that never started"


def test_without_a_valid_split_the_test_split_is_used():
    from winnow.core.types import ImageRecord
    from winnow.services.training import _split_plan

    recs = [ImageRecord(name=str(i), split=s) for i, s in enumerate(["train", "test", "train", "test"])]
    assert _split_plan(recs, "p@v") == ([0, 2], [1, 3], "test")
    recs[1].split = "valid"
    assert _split_plan(recs, "p@v") == ([0, 2], [1], "valid")


# ----------------------------------------------------------------------------- the command line


def _cli_app():
    import typer

    from winnow.cli.train import model_app, predict_cmd, train_cmd

    app = typer.Typer()
    app.command("train")(train_cmd)
    app.command("predict")(predict_cmd)
    app.add_typer(model_app, name="model")
    return app


@pytest.fixture(scope="module")
def cls(tmp_path_factory):
    """A tiny MobileNetV3-Small trained through ``winnow train`` on 24 generated one-shape images."""
    from typer.testing import CliRunner

    root = tmp_path_factory.mktemp("cls")
    src = root / "src"
    ds = generate(src, 24, seed=3, task=Task.CLASSIFY)
    get_format("folders").write(ds, src / "folders", lambda rec, path: path.write_bytes(rec.file.read_bytes()))
    home = root / "home"
    store = Store.open(home)
    create_project(store, "cls", "classify")
    import_dataset(store, "cls", src / "folders", format="folders")
    version = create_version(store, "cls", split="train=0.75,valid=0.25", resplit=True, seed=1)
    log = root / "train.jsonl"
    runner = CliRunner()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WINNOW_HOME", str(home))
        result = runner.invoke(
            _cli_app(),
            ["train", "cls@latest", "--image-size", "32", "--width", "0.25", "--epochs", "3", "--batch-size", "8",
             "--lr", "0.01", "--log", str(log), "--json"],
        )
    assert result.exit_code == 0, result.output
    return SimpleNamespace(store=store, home=home, version=version, summary=json.loads(result.stdout), log=log, runner=runner, src=src)


def _run(cls, *args, ok=True, monkeypatch):
    monkeypatch.setenv("WINNOW_HOME", str(cls.home))
    result = cls.runner.invoke(_cli_app(), list(args))
    if ok:
        assert result.exit_code == 0, result.output
    return result


def test_cli_train_registers_the_model_and_logs_each_epoch(cls, monkeypatch):
    s = cls.summary
    assert s["backend"] == "mobilenet_v3_small" and s["status"] == "ready" and s["created"] and s["ref"] == s["model"][:12]
    assert s["version"] == cls.version.version and s["name"] == "mobilenet_v3_small-v1"
    lines = [json.loads(x) for x in cls.log.read_text().splitlines()]
    assert [e["epoch"] for e in lines] == [1, 2, 3] and lines == s["metrics"]["epochs"]
    valid = s["metrics"]["valid"]
    assert valid["split"] == "valid" and valid["images"] == cls.version.counts["splits"]["valid"]["images"]
    assert 0 <= valid["correct"] <= valid["images"] and valid["accuracy"] == pytest.approx(valid["correct"] / valid["images"], abs=1e-6)

    listed = json.loads(_run(cls, "model", "list", "--json", monkeypatch=monkeypatch).stdout)
    assert [r["model"] for r in listed] == [s["model"]]
    shown = json.loads(_run(cls, "model", "show", s["name"], "--json", monkeypatch=monkeypatch).stdout)
    assert shown["model"] == s["model"] and shown["files"]["onnx"]["verified"]["ok"] and not shown["created"]
    text = _run(cls, "model", "show", s["ref"], monkeypatch=monkeypatch).stdout
    assert "matches PyTorch: yes" in text and "model.onnx" in text and "random init" in text


def test_onnx_and_pytorch_agree_for_the_classifier(cls):
    from PIL import Image

    on_torch = load_model(cls.store, cls.summary["name"], engine="torch")
    on_onnx = load_model(cls.store, cls.summary["name"], engine="onnx")
    images = [Image.open(p).convert("RGB") for p in sorted((cls.src / "images").glob("*.png"))[:10]]
    pa = on_torch.backend.probabilities(on_torch.runner, images, 32)
    pb = on_onnx.backend.onnx_probabilities(on_onnx.runner, images)
    assert pa.shape == (10, 3)
    np.testing.assert_allclose(pa, pb, atol=1e-5)
    a, b = on_torch.predict_arrays(images), on_onnx.predict_arrays(images)
    assert [int(p.class_ids[0]) for p in a] == [int(p.class_ids[0]) for p in b]
    np.testing.assert_allclose([p.scores[0] for p in a], [p.scores[0] for p in b], atol=1e-4)


def test_cli_predict_prints_writes_and_stores_predictions(cls, tmp_path, monkeypatch):
    name = cls.summary["name"]
    image = min((cls.src / "images").glob("*.png"))
    doc = json.loads(_run(cls, "predict", name, str(image), "--json", "--min-score", "0", monkeypatch=monkeypatch).stdout)
    assert len(doc) == 1 and doc[0]["image"] == str(image) and (doc[0]["width"], doc[0]["height"]) == (96, 72)
    assert len(doc[0]["predictions"]) == 1 and doc[0]["predictions"][0]["label"] in cls.summary["classes"]
    out = tmp_path / "preds.json"
    _run(cls, "predict", name, str(cls.src / "images"), "--out", str(out), "--min-score", "0", monkeypatch=monkeypatch)
    assert len(json.loads(out.read_text())) == 24

    stored = json.loads(_run(cls, "predict", name, "--store", "--all", "--min-score", "0", "--json", monkeypatch=monkeypatch).stdout)
    assert stored["images"] == 24 and stored["annotations_added"] == 24 and stored["change_id"] is not None
    with cls.store.read() as session:
        rows = [(r.x1, r.score) for r in session.scalars(select(m.Annotation).where(m.Annotation.source == "model"))]
    assert len(rows) == 24 and all(x1 is None and score is not None for x1, score in rows), "image-level labels with scores"
    undo_predictions(cls.store, "cls", stored["change_id"])


def test_cli_errors_are_one_line_and_exit_1(cls, tmp_path, monkeypatch):
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    r = _run(cls, "predict", cls.summary["name"], str(notes), ok=False, monkeypatch=monkeypatch)
    assert r.exit_code == 1 and "error:" in r.output and "notes.txt" in r.output and "Traceback" not in r.output
    r = _run(cls, "predict", "no-such-model", str(notes), "--json", ok=False, monkeypatch=monkeypatch)
    assert r.exit_code == 1 and json.loads(r.stdout)["type"] == "NotFoundError"
    r = _run(cls, "train", "cls@latest", "--model", "ssdlite", ok=False, monkeypatch=monkeypatch)
    assert r.exit_code == 1 and "is a detect model" in r.output
    r = _run(cls, "train", "cls@latest", "--model", "nope", ok=False, monkeypatch=monkeypatch)
    assert r.exit_code == 1 and "unknown model 'nope'" in r.output
    r = _run(cls, "predict", cls.summary["name"], ok=False, monkeypatch=monkeypatch)
    assert r.exit_code == 1 and "--store" in r.output


# ----------------------------------------------------------------------------- segmentation


def test_a_segmenter_trains_exports_whole_and_predicts_masks(tmp_path):
    """Mask R-CNN: masks in the targets, segm metrics, the TorchScript export checked against PyTorch."""
    src = tmp_path / "src"
    ds = generate(src, 12, seed=2, task=Task.SEGMENT)
    get_format("coco").write(ds, src / "coco", lambda rec, path: path.write_bytes(rec.file.read_bytes()))
    store = Store.open(tmp_path / "home")
    create_project(store, "seg", "segment")
    import_dataset(store, "seg", src / "coco", format="coco")
    v = create_version(store, "seg", split="train=0.67,valid=0.33", resplit=True, seed=0)
    s = train_model(store, "seg", v.version, epochs=2, image_size=64, batch_size=4)
    assert s.backend == "maskrcnn_mobilenet" and s.status == "ready"
    valid = s.metrics["valid"]
    assert valid["images"] == v.counts["splits"]["valid"]["images"] and {"map50", "mask_map", "mask_map50"} <= set(valid)
    onnx_file = s.files["onnx"]
    assert onnx_file["exporter"] == "torchscript" and onnx_file["outputs"] == "detections"
    assert onnx_file["verified"]["images"] == valid["images"] and onnx_file["verified"]["ok"], onnx_file["verified"]
    result = predict(store, s.name, [ds.images[0].file], min_score=0.0, engine="onnx")[0]
    assert result.predictions and all(p["rle"]["size"] == [72, 96] and len(p["bbox"]) == 4 for p in result.predictions)


# ----------------------------------------------------------------------------- evaluate and compare registered models


def test_a_registered_model_is_evaluated_by_slice_on_the_split_asked_for(det):
    from winnow.services.evaluation import compare_models, evaluate_model

    result = evaluate_model(det.store, "tiny-det", "shapes", det.version.version, split="valid", n_bootstrap=50)
    doc = result.as_dict()
    valid = det.version.counts["splits"]["valid"]
    assert doc["split"] == "valid" and doc["version"] == det.version.version
    assert doc["counts"]["images"] == valid["images"], "evaluated on exactly the valid split"
    assert doc["counts"]["annotations"] == valid["annotations"]
    assert len(doc["stats"]) == 12 and 0.0 <= doc["map50"] <= 1.0
    slices = doc["slices"]
    assert abs(slices["overall"] - doc["map50"]) < 1e-9, "the slice metric is mAP50 on the same predictions"
    assert {s["kind"] for s in slices["slices"]} >= {"class", "split"}
    with pytest.raises(InvalidInputError, match="no 'test' images"):
        evaluate_model(det.store, "tiny-det", "shapes", det.version.version, split="test")

    same = compare_models(det.store, "tiny-det", "tiny-det", "shapes", det.version.version, split="valid")
    assert same["slices"] and all(r["delta"] == 0 and r["verdict"] == "same" for r in same["slices"])
    assert same["better"] == same["worse"] == []


def test_cli_eval_and_compare_a_registered_model(det):
    from typer.testing import CliRunner

    from winnow.cli.main import app

    env = {"WINNOW_HOME": str(det.store.home)}
    ref = f"shapes@{det.version.version[:10]}"
    html = det.root / "eval.html"
    res = CliRunner().invoke(app, ["eval", "tiny-det", ref, "--split", "valid", "--json", "--html", str(html)], env=env)
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["model"] == "tiny-det" and doc["split"] == "valid" and len(doc["stats"]) == 12
    page = html.read_text()
    assert "<script" not in page and "http" not in page.replace("http-equiv", ""), "self-contained, no scripts"
    assert page.count("data:image/png") >= 3, "PR curves, confusion matrix and slices"
    errors = doc["errors"]
    shown = sum(min(len(errors[k]), 12) for k in ("false_negatives", "false_positives", "confusions", "low_iou"))
    assert shown and page.count("data:image/jpeg") == shown, "every error shown has a preview with its boxes"
    res = CliRunner().invoke(app, ["compare", "tiny-det", "tiny-det", ref, "--split", "valid", "--json"], env=env)
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["worse"] == []
    res = CliRunner().invoke(app, ["eval", "tiny-det"], env=env)
    assert res.exit_code == 1 and "PROJECT@VERSION" in res.stderr


def test_an_unreadable_file_in_a_folder_is_reported_and_skipped_not_fatal(det, tmp_path):
    from PIL import Image as PILImage

    folder = tmp_path / "incoming"
    folder.mkdir()
    PILImage.new("RGB", (64, 48), (90, 120, 60)).save(folder / "a_good.png")
    (folder / "b_broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    PILImage.new("RGB", (32, 32), (10, 10, 10)).save(folder / "c_good.png")
    results = predict(det.store, "tiny-det", [folder])
    assert [Path(r.image).name for r in results] == ["a_good.png", "b_broken.jpg", "c_good.png"], "input order is kept"
    broken = results[1]
    assert broken.error and "b_broken.jpg" in broken.error and broken.predictions == []
    assert results[0].error is None and (results[0].width, results[0].height) == (64, 48)
    assert results[2].error is None and (results[2].width, results[2].height) == (32, 32)
