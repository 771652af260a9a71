"""Backends: the registry, building without any network, pretrained weights from the local cache
only, training steps that lower the loss, and the export wrappers' decode against torchvision."""

from __future__ import annotations

import socket
import urllib.request

import numpy as np
import pytest
from PIL import Image

from winnow.core.types import Task
from winnow.errors import InvalidInputError, NotFoundError

torch = pytest.importorskip("torch")

from tests.unit.train._match import assert_same_detections
from winnow.synthetic import generate
from winnow.train.base import DEFAULT_BACKEND, get_backend, list_backends, to_input
from winnow.train.loop import FitConfig, fit

LIGHT = ("ssdlite", "fasterrcnn_mobilenet", "maskrcnn_mobilenet", "mobilenet_v3_small", "resnet18")


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to download (torch hub, urllib, a socket) fails the test."""
    calls = []

    def refuse(*args, **kwargs):
        calls.append(args)
        raise AssertionError(f"network access attempted: {args!r}")

    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    return calls


def test_registry_names_every_backend_with_its_task_and_refuses_an_unknown_one():
    names = {b.name: b.task for b in list_backends()}
    assert names == {
        "ssdlite": Task.DETECT,
        "fasterrcnn_mobilenet": Task.DETECT,
        "retinanet": Task.DETECT,
        "fcos": Task.DETECT,
        "maskrcnn": Task.SEGMENT,
        "maskrcnn_mobilenet": Task.SEGMENT,
        "mobilenet_v3_small": Task.CLASSIFY,
        "resnet18": Task.CLASSIFY,
        **{f"timm:{a}": Task.CLASSIFY for a in ("resnet10t", "resnet18", "mobilenetv3_small_050", "mobilenetv3_large_100", "efficientnet_b0", "convnext_atto")},
        "ultralytics:yolov8n": Task.DETECT,  # listed without ultralytics installed (AGPL, optional)
        "ultralytics:yolo11n": Task.DETECT,
    }
    assert {b.name for b in list_backends("classify") if ":" not in b.name} == {"mobilenet_v3_small", "resnet18"}
    assert {b.name for b in list_backends() if b.heavy} == {"retinanet", "fcos", "maskrcnn"}
    for task, name in DEFAULT_BACKEND.items():
        assert get_backend(name).task is task
    with pytest.raises(NotFoundError, match="unknown model 'yolo'.*ssdlite"):
        get_backend("yolo")


def test_bad_sizes_and_widths_are_refused_with_the_rule():
    with pytest.raises(InvalidInputError, match="multiple of 32"):
        get_backend("ssdlite").build(3, 100)
    with pytest.raises(InvalidInputError, match="no width multiplier"):
        get_backend("resnet18").build(3, 64, width=0.5)


def _shapes_items(tmp_path, backend, n=8, size=64, task=Task.DETECT):
    from winnow.media import decode

    ds = generate(tmp_path / "gen", n, seed=5, task=task)
    index = {c: i for i, c in enumerate(ds.classes)}
    items = []
    for rec in ds.images:
        pixels = np.array(decode(rec.file.read_bytes(), rec.name, "RGB")).transpose(2, 0, 1)
        if task is Task.CLASSIFY:
            target = index[rec.annotations[0].label]
        else:
            target = {
                "boxes": torch.tensor([a.bbox for a in rec.annotations], dtype=torch.float32),
                "labels": torch.tensor([index[a.label] + 1 for a in rec.annotations]),
            }
        items.append(backend.prepare(torch.from_numpy(pixels), target, size))
    return items


def test_a_tiny_detector_lowers_its_loss_in_a_few_steps_on_generated_images(tmp_path):
    backend = get_backend("ssdlite")
    items = _shapes_items(tmp_path, backend)
    x, y = items[0]
    assert tuple(x.shape) == (3, 64, 64) and float(x.max()) <= 1.0
    assert float(y["boxes"].max()) <= 64 and float(y["boxes"][:, 2:].min()) > 0, "boxes are scaled to the 64x64 input"
    torch.manual_seed(0)
    net = backend.build(3, 64, width=0.25)
    log = fit(backend, net, items, FitConfig(epochs=6, batch_size=4, lr=3e-3, seed=0))
    assert [e["epoch"] for e in log] == list(range(1, 7)) and all(e["steps"] == 2 for e in log)
    assert log[-1]["loss"] < 0.8 * log[0]["loss"], [e["loss"] for e in log]
    assert set(log[0]["losses"]) == {"bbox_regression", "classification"}
    assert log[-1]["lr"] < 1e-4, "the cosine schedule ends near zero"


def test_a_tiny_classifier_lowers_its_loss_and_the_fit_is_reproducible(tmp_path):
    backend = get_backend("mobilenet_v3_small")
    items = _shapes_items(tmp_path, backend, n=12, size=32, task=Task.CLASSIFY)

    def run():
        torch.manual_seed(1)
        net = backend.build(3, 32, width=0.25)
        return fit(backend, net, items, FitConfig(epochs=8, batch_size=4, lr=1e-2, seed=3))

    first, second = run(), run()
    assert first[-1]["loss"] < 0.7 * first[0]["loss"], [e["loss"] for e in first]
    np.testing.assert_allclose([e["loss"] for e in first], [e["loss"] for e in second], rtol=1e-5)


def test_the_fit_uses_winnow_threads_and_restores_the_setting(monkeypatch):
    seen = []

    class Probe:
        def train_step(self, model, images, targets):
            seen.append(torch.get_num_threads())
            out = model(torch.stack(images))
            return ((out - torch.stack(targets)) ** 2).mean(), {}

    before = torch.get_num_threads()
    monkeypatch.setenv("WINNOW_THREADS", "1")
    model = torch.nn.Linear(2, 1)
    items = [(torch.randn(2), torch.randn(1)) for _ in range(6)]
    log = fit(Probe(), model, items, FitConfig(epochs=3, batch_size=2, lr=0.05, optimizer="sgd"))
    assert set(seen) == {1} and torch.get_num_threads() == before
    assert log[-1]["loss"] < log[0]["loss"]
    monkeypatch.setenv("WINNOW_THREADS", "lots")
    with pytest.raises(InvalidInputError, match="WINNOW_THREADS"):
        fit(Probe(), model, items, FitConfig(epochs=1, batch_size=2, lr=0.05))


def test_fit_refuses_bad_hyper_parameters():
    model = torch.nn.Linear(2, 1)
    with pytest.raises(InvalidInputError, match="epochs"):
        fit(None, model, [(0, 0)], FitConfig(epochs=0, batch_size=2, lr=0.1))
    with pytest.raises(InvalidInputError, match="optimizer"):
        fit(None, model, [(0, 0)], FitConfig(epochs=1, batch_size=2, lr=0.1, optimizer="lion"))
    with pytest.raises(InvalidInputError, match="train split is empty"):
        fit(None, model, [], FitConfig(epochs=1, batch_size=2, lr=0.1))


@pytest.mark.parametrize("name", ["fasterrcnn_mobilenet", "maskrcnn_mobilenet", "resnet18", "retinanet", "fcos", "maskrcnn"])
def test_every_backend_builds_offline_trains_a_step_and_predicts(name, no_network):
    backend = get_backend(name)
    torch.manual_seed(0)
    net = backend.build(3, 64)
    image = torch.randint(0, 255, (3, 48, 80), dtype=torch.uint8)
    if backend.task is Task.CLASSIFY:
        target = 2
    else:
        target = {"boxes": torch.tensor([[5.0, 5.0, 40.0, 30.0]]), "labels": torch.tensor([1])}
        if backend.task is Task.SEGMENT:
            target["masks"] = torch.zeros(1, 48, 80, dtype=torch.uint8)
            target["masks"][0, 5:30, 5:40] = 1
    x, y = backend.prepare(image, target, 64)
    loss, parts = backend.train_step(net, [x, x], [y, y])
    loss.backward()
    assert torch.isfinite(loss) and parts
    pred = backend.predict_arrays(net, [Image.fromarray(np.zeros((48, 80, 3), np.uint8))], 64)[0]
    assert pred.boxes.shape[1:] == (4,) and len(pred.scores) == len(pred.class_ids)
    assert set(pred.class_ids.tolist()) <= {0, 1, 2}, "class indices, background removed"
    if backend.task is not Task.CLASSIFY and len(pred):
        assert pred.boxes[:, 0::2].max() <= 80 + 1e-3 and pred.boxes[:, 1::2].max() <= 48 + 1e-3, "boxes are in the original image's pixels"
    if backend.task is Task.SEGMENT:
        assert pred.masks is not None and pred.masks.shape == (len(pred), 48, 80)
    assert not no_network


@pytest.mark.parametrize("name", ["ssdlite", "retinanet", "fcos"])
def test_the_dense_export_wrapper_plus_numpy_decode_gives_torchvisions_detections(name):
    """What the ONNX graph computes (run here in PyTorch) + the serving decode = the model's own output."""
    from winnow.train.decode import decode_dense
    from winnow.train.torchvision_detection import _Dense

    backend = get_backend(name)
    torch.manual_seed(0)
    net = backend.build(3, 64, width=0.5 if backend.widths else 1.0).eval()
    net.score_thresh = 0.01  # keep many detections to compare
    wrapper = _Dense(net, 64, backend.kind)
    # A random init's activations fade to constants (then scores tie and their order is arbitrary):
    # set batch norm statistics from a batch, as training would.
    for m in net.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None
    wrapper.train()
    with torch.no_grad():
        wrapper(torch.rand(4, 3, 64, 64))
    wrapper.eval()
    cfg = backend._decode_cfg(net, wrapper)
    rng = np.random.default_rng(0)
    x = torch.from_numpy(to_input(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8), 64))
    with torch.no_grad():
        expected = net([x])[0]
        boxes, scores = wrapper(x[None])
    b, s, lab = decode_dense(boxes[0].numpy(), scores[0].numpy(), cfg)
    assert len(s) >= 5
    assert len(np.unique(s)) > len(s) // 2, "scores are spread, so the comparison is about decoding, not tie order"
    assert_same_detections(b, s, lab, expected["boxes"], expected["scores"], expected["labels"], box_rtol=1e-4, score_atol=1e-5)


# ----------------------------------------------------------------------------- pretrained weights


def test_cached_pretrained_weights_are_loaded_and_mismatched_layers_keep_their_init(tmp_path, monkeypatch, no_network):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    backend = get_backend("ssdlite")
    source = backend.weights_sources()[0]
    assert source.file.startswith("ssdlite320_mobilenet_v3_large_coco")
    net = backend.build(3, 64)
    state = net.state_dict()
    conv = "backbone.features.0.0.0.weight"
    cls = next(k for k in state if k.startswith("head.classification_head") and k.endswith("weight"))
    planted = {conv: torch.full_like(state[conv], 0.125), cls: torch.zeros(7, *state[cls].shape[1:])}  # 91-class head: other shape
    assert backend.resolve_pretrained("auto") is None, "nothing cached yet"
    path = tmp_path / "torch" / "hub" / "checkpoints" / source.file
    path.parent.mkdir(parents=True)
    torch.save(planted, path)

    found = backend.resolve_pretrained("auto")
    assert found is not None and found[1] == path
    info = backend.load_pretrained(net, *found)
    assert info["file"] == source.file and info["loaded"] == 1 and info["skipped"] == 1
    assert torch.all(net.state_dict()[conv] == 0.125)
    assert not torch.equal(net.state_dict()[cls], torch.zeros_like(state[cls]))
    assert backend.resolve_pretrained("auto", width=0.5) is None, "a width multiplier cannot use full-width weights"
    assert backend.resolve_pretrained("no") is None
    assert not no_network


def test_classifier_imagenet_weights_load_into_the_wrapped_network(tmp_path, monkeypatch, no_network):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    backend = get_backend("mobilenet_v3_small")
    net = backend.build(5, 32)
    key = "features.0.0.weight"  # torchvision's key, without winnow's wrapper prefix
    path = tmp_path / "torch" / "hub" / "checkpoints" / backend.weights_sources()[0].file
    path.parent.mkdir(parents=True)
    torch.save({key: torch.full_like(net.net.state_dict()[key], -0.5), "classifier.3.weight": torch.zeros(1000, 1024)}, path)
    info = backend.load_pretrained(net, *backend.resolve_pretrained("yes"))
    assert info["loaded"] == 1 and info["part"] == "net"
    assert torch.all(net.net.state_dict()[key] == -0.5)


def test_a_cache_miss_means_random_init_and_yes_names_the_missing_file(tmp_path, monkeypatch, no_network):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    for name in LIGHT:
        backend = get_backend(name)
        assert backend.resolve_pretrained("auto") is None
        backend.build(3, 64)  # random init, no download
    with pytest.raises(InvalidInputError, match=r"never downloads.*hub/checkpoints/ssdlite320_mobilenet_v3_large_coco"):
        get_backend("ssdlite").resolve_pretrained("yes")
    with pytest.raises(InvalidInputError, match="pretrained must be one of"):
        get_backend("ssdlite").resolve_pretrained("maybe")
    assert not no_network
