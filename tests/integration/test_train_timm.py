"""A timm classifier end to end: trained on a tiny digits project (scikit-learn's bundled digits,
no download) through ``train_model``, registered with an ONNX export that matches PyTorch, and
served by ``services.training.predict`` on both engines; the Hugging Face cache stays empty."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("timm")

from winnow.services.ingest import import_dataset
from winnow.services.projects import create_project
from winnow.services.training import load_model, predict, train_model
from winnow.services.versions import create_version
from winnow.store.db import Store

CLASSES = 3
PER_CLASS = 12


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """``timm:resnet10t`` trained 2 epochs at 32 px on 36 digits (0, 1, 2), random init, offline."""
    from PIL import Image
    from sklearn.datasets import load_digits

    root = tmp_path_factory.mktemp("timm")
    src = root / "digits"
    data = load_digits()
    for label in range(CLASSES):
        folder = src / str(label)
        folder.mkdir(parents=True)
        for i in np.nonzero(data.target == label)[0][:PER_CLASS]:
            im = Image.fromarray(np.uint8(data.images[i] * 255 / 16), "L").resize((32, 32), Image.Resampling.BILINEAR)
            im.convert("RGB").save(folder / f"{i:04d}.png")
    store = Store.open(root / "home")
    create_project(store, "digits", "classify")
    import_dataset(store, "digits", src, format="folders")
    version = create_version(store, "digits", split="train=0.75,valid=0.25", resplit=True, seed=0)
    hf = root / "hf"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HOME", str(hf))
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("TORCH_HOME", str(root / "torch"))
        mp.setenv("WINNOW_THREADS", "1")
        before = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            summary = train_model(store, "digits", version.version, model="timm:resnet10t", epochs=2, image_size=32, batch_size=9, lr=3e-3)
        finally:
            torch.set_num_threads(before)
    return SimpleNamespace(store=store, version=version, summary=summary, src=src, hf=hf)


def test_the_timm_model_is_registered_with_a_verified_onnx_export(digits):
    s = digits.summary
    assert s.status == "ready" and s.backend == "timm:resnet10t" and s.task == "classify"
    assert s.name == "timm-resnet10t-v1", "a model name cannot hold ':'"
    assert s.classes == [str(i) for i in range(CLASSES)]
    assert s.params["pretrained"] == {"requested": "auto", "file": None} and s.metrics["pretrained"] is None
    assert s.files["onnx"]["outputs"] == "probabilities" and s.files["onnx"]["verified"]["ok"], s.files["onnx"]["verified"]
    valid = s.metrics["valid"]
    assert valid["split"] == "valid" and valid["images"] == digits.version.counts["splits"]["valid"]["images"]
    assert 0.0 <= valid["accuracy"] <= 1.0 and [e["epoch"] for e in s.metrics["epochs"]] == [1, 2]
    assert not digits.hf.exists() or not any(p.is_file() for p in digits.hf.rglob("*")), "nothing downloaded"


def test_predict_serves_it_on_onnx_and_pytorch_alike(digits):
    files = sorted(Path(digits.src).rglob("*.png"))[::6]
    on_onnx = predict(digits.store, digits.summary.name, files, min_score=0.0)
    on_torch = predict(digits.store, digits.summary.name, files, engine="torch", min_score=0.0)
    assert [p.image for p in on_onnx] == [str(f) for f in files]
    for a, b in zip(on_onnx, on_torch, strict=True):
        assert (a.width, a.height) == (32, 32) and len(a.predictions) == len(b.predictions) == 1
        assert a.predictions[0]["label"] == b.predictions[0]["label"] and a.predictions[0]["label"] in digits.summary.classes
        assert a.predictions[0]["score"] == pytest.approx(b.predictions[0]["score"], abs=1e-4)
    loaded = load_model(digits.store, digits.summary.model[:12])
    assert loaded.engine == "onnx" and loaded.backend.name == "timm:resnet10t"


def test_a_backend_with_its_own_trainer_trains_on_an_export_of_the_version(digits, monkeypatch, tmp_path):
    """The hook the ultralytics backend uses (untestable here without ultralytics): the service
    exports the version for the backend's trainer, then evaluates, logs, exports and registers."""
    from winnow.train import base
    from winnow.train.timm_classification import TimmClassifier

    seen: dict = {}

    class OwnTrainer(TimmClassifier):
        own_trainer = True

        def train_step(self, model, images, targets):
            raise AssertionError("winnow's loop must not run")

        def fit_version(self, model, *, export, config, image_size, work):
            export("folders", work / "data")
            seen["files"] = sorted(p.relative_to(work / "data").parts[:2] for p in (work / "data").rglob("*.png"))
            seen["config"] = (config.epochs, config.batch_size, image_size)
            with torch.no_grad():
                model.net.get_classifier().bias.add_(1.0)  # "training"
            return [{"epoch": 1, "loss": 2.0}, {"epoch": 2, "loss": 1.5}]

    backend = OwnTrainer("resnet10t")
    backend.name = "test:own"
    monkeypatch.setitem(base._REGISTRY, backend.name, backend)
    logs: list[dict] = []
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    s = train_model(digits.store, "digits", digits.version.version, model="test:own", epochs=2, image_size=32, batch_size=9, log=logs.append)
    counts = digits.version.counts["splits"]
    assert len(seen["files"]) == counts["train"]["images"] + counts["valid"]["images"]
    assert {split for split, _ in seen["files"]} == {"train", "valid"} and seen["config"] == (2, 9, 32)
    assert s.name == "test-own-v1" and s.status == "ready" and s.files["onnx"]["verified"]["ok"]
    assert [e["epoch"] for e in s.metrics["epochs"]] == [1, 2] and s.metrics["valid"]["split"] == "valid"
    assert logs == s.metrics["epochs"] and "valid" in logs[-1] and "valid" not in logs[0]
