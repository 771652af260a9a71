"""The timm classification backend: names in the registry, random init with no network (nothing
written to the Hugging Face cache), a few training steps that lower the loss, an ONNX export whose
probabilities match PyTorch's, pretrained weights read only from the local caches (``yes`` without
them is a clear error). And the optional ultralytics backend: listed, refused with the AGPL notice
when ultralytics is missing, and never imported before it is used."""

from __future__ import annotations

import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from winnow.core.types import Task
from winnow.errors import InvalidInputError, NotFoundError

torch = pytest.importorskip("torch")
pytest.importorskip("timm")

from winnow.train.base import get_backend, list_backends
from winnow.train.loop import FitConfig, fit

ARCH = "resnet10t"  # 4.9 M parameters, builds in ~40 ms


@pytest.fixture
def hf_home(tmp_path, monkeypatch):
    """Empty Hugging Face and torch caches, offline mode, and any network access an error."""
    home = tmp_path / "hf"
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HUGGINGFACE_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    return home


def _files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []


def _images(n: int, seed: int = 0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 255, (40 + 4 * i, 56, 3), dtype=np.uint8)) for i in range(n)]


# ----------------------------------------------------------------------------- registry


def test_timm_models_are_listed_by_name_and_any_other_resolves_as_timm_colon_arch():
    listed = {b.name: b for b in list_backends("classify")}
    assert {"timm:resnet10t", "timm:resnet18", "timm:mobilenetv3_small_050", "timm:efficientnet_b0"} <= set(listed)
    assert all(b.task is Task.CLASSIFY and b.licence.startswith("Apache-2.0") for n, b in listed.items() if n.startswith("timm:"))
    other = get_backend("timm:resnet18.a1_in1k")
    assert other.name == "timm:resnet18.a1_in1k" and other.arch == "resnet18.a1_in1k" and other.task is Task.CLASSIFY
    assert get_backend("timm:resnet18.a1_in1k") is other, "resolved once"
    assert "timm:resnet18.a1_in1k" not in {b.name for b in list_backends()}, "on-demand names do not grow the listing"
    with pytest.raises(NotFoundError, match="timm has no model 'not_a_net'"):
        get_backend("timm:not_a_net")
    with pytest.raises(NotFoundError, match=r"unknown model 'timmy'.*timm:ARCH"):
        get_backend("timmy")


# ----------------------------------------------------------------------------- building offline


def test_builds_offline_with_random_init_and_writes_nothing_to_the_hf_cache(hf_home):
    backend = get_backend(f"timm:{ARCH}")
    assert backend.resolve_pretrained("auto") is None, "nothing cached: random init"
    torch.manual_seed(0)
    a = backend.build(3, 64)
    torch.manual_seed(0)
    b = backend.build(3, 64)
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert ka == kb and torch.equal(va, vb), "seeded random init is reproducible"
    assert a.net.get_classifier().out_features == 3
    assert a(torch.rand(2, 3, 64, 64)).shape == (2, 3)
    assert _files(hf_home) == [], "no download, nothing cached"


def test_the_normalisation_is_the_models_own(hf_home):
    vit = get_backend("timm:vit_tiny_patch16_224").build(2, 64)  # mean/std 0.5; positional embeddings sized for 64 px
    assert torch.allclose(vit.mean.flatten(), torch.tensor([0.5, 0.5, 0.5]))
    assert vit(torch.rand(1, 3, 64, 64)).shape == (1, 2)
    res = get_backend(f"timm:{ARCH}").build(2, 64)
    assert torch.allclose(res.mean.flatten(), torch.tensor([0.485, 0.456, 0.406]))


def test_widths_and_bad_sizes_are_refused():
    backend = get_backend(f"timm:{ARCH}")
    with pytest.raises(InvalidInputError, match="no width multiplier"):
        backend.build(3, 64, width=0.5)
    with pytest.raises(InvalidInputError, match="multiple of 32"):
        backend.build(3, 50)


# ----------------------------------------------------------------------------- training and export


def test_a_few_steps_lower_the_loss_on_tiny_random_images(hf_home):
    backend = get_backend(f"timm:{ARCH}")
    rng = np.random.default_rng(0)
    items = []
    for i in range(12):
        label = i % 3
        pixels = rng.integers(0, 60, (3, 40, 40), dtype=np.uint8)
        pixels[label] += 150  # the class is the brightest channel
        items.append(backend.prepare(torch.from_numpy(pixels), label, 32))
    torch.manual_seed(0)
    net = backend.build(3, 32)
    before = backend.probabilities(net, _images(3), 32)
    log = fit(backend, net, items, FitConfig(epochs=6, batch_size=4, lr=3e-3, seed=0))
    assert log[-1]["loss"] < 0.7 * log[0]["loss"], [e["loss"] for e in log]
    assert set(log[0]["losses"]) == {"loss_classifier"}
    after = backend.probabilities(net, _images(3), 32)
    assert not np.allclose(before, after), "training changed the predictions"
    assert _files(hf_home) == []


def test_the_onnx_export_gives_pytorchs_probabilities(hf_home, tmp_path):
    from winnow.services.training import compare_predictions
    from winnow.train import onnx_io

    backend = get_backend(f"timm:{ARCH}")
    torch.manual_seed(0)
    net = backend.build(4, 64)
    # Batch norm statistics from a batch (as training sets them), so the outputs are spread out.
    net.train()
    with torch.no_grad():
        net(torch.rand(8, 3, 64, 64))
    net.eval()
    path = tmp_path / "model.onnx"
    info = backend.export_onnx(net, path, 64)
    assert info["outputs"] == "probabilities" and info["exporter"] == "dynamo" and info["backend"] == "timm:resnet10t"
    session = onnx_io.open_session(path)
    assert onnx_io.read_info(session)["image_size"] == 64
    images = _images(5)
    pa, pb = backend.probabilities(net, images, 64), backend.onnx_probabilities(session, images)
    assert pa.shape == pb.shape == (5, 4)
    np.testing.assert_allclose(pa, pb, atol=1e-5)
    np.testing.assert_allclose(pb.sum(axis=1), 1.0, atol=1e-5)
    assert compare_predictions(backend.onnx_predict_arrays(session, images), backend.predict_arrays(net, images, 64))["ok"]


# ----------------------------------------------------------------------------- pretrained: local caches only


def test_pretrained_yes_without_a_cached_file_names_the_hub_repo_and_the_cache(hf_home):
    backend = get_backend(f"timm:{ARCH}")
    with pytest.raises(InvalidInputError, match=r"never downloads.*timm/resnet10t\.c3_in1k.*--pretrained no") as err:
        backend.resolve_pretrained("yes")
    assert str(hf_home / "hub") in str(err.value)
    assert backend.resolve_pretrained("no") is None
    assert _files(hf_home) == []


def _plant_hub_file(home: Path, repo: str, state: dict) -> Path:
    """A Hugging Face cache entry as ``hf download`` leaves it: refs/main -> snapshots/<commit>/file."""
    from safetensors.torch import save_file

    folder = home / "hub" / ("models--" + repo.replace("/", "--"))
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text("0123abcd")
    snapshot = folder / "snapshots" / "0123abcd"
    snapshot.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(snapshot / "model.safetensors"))
    return snapshot / "model.safetensors"


def test_cached_hub_weights_are_loaded_offline_all_but_the_classifier(hf_home):
    import timm

    backend = get_backend(f"timm:{ARCH}")
    ref = timm.create_model(ARCH, pretrained=False, num_classes=1000).state_dict()  # ImageNet-shaped checkpoint
    planted = {k: (torch.full_like(v, 0.125) if k == "conv1.0.weight" else v) for k, v in ref.items()}
    path = _plant_hub_file(hf_home, "timm/resnet10t.c3_in1k", planted)
    before = set(_files(hf_home))

    found = backend.resolve_pretrained("auto")
    assert found is not None and found[1] == path and found[0].file == "timm/resnet10t.c3_in1k/model.safetensors"
    torch.manual_seed(0)
    net = backend.build(3, 64)
    info = backend.load_pretrained(net, *found)
    assert info["part"] == "net" and info["skipped"] == 2 and info["loaded"] == len(planted) - 2  # fc.weight, fc.bias
    assert info["licence"] == "apache-2.0"
    assert torch.all(net.net.conv1[0].weight == 0.125)
    assert net.net.fc.weight.shape == (3, net.net.fc.in_features), "a new head for the dataset's classes"
    assert set(_files(hf_home)) == before, "read, never written"


def test_a_cached_file_that_is_not_a_checkpoint_is_a_clear_error(hf_home):
    backend = get_backend(f"timm:{ARCH}")
    folder = hf_home / "hub" / "models--timm--resnet10t.c3_in1k"
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text("feed")
    (folder / "snapshots" / "feed").mkdir(parents=True)
    (folder / "snapshots" / "feed" / "model.safetensors").write_bytes(b"not a checkpoint")
    with pytest.raises(InvalidInputError, match="not a readable checkpoint"):
        backend.load_pretrained(backend.build(3, 64), *backend.resolve_pretrained("yes"))


# ----------------------------------------------------------------------------- ultralytics (AGPL, optional)


ULTRALYTICS = ("ultralytics:yolov8n", "ultralytics:yolo11n")


def test_ultralytics_backends_are_listed_as_agpl_detectors():
    listed = {b.name: b for b in list_backends("detect")}
    for name in ULTRALYTICS:
        assert listed[name].task is Task.DETECT and listed[name].licence.startswith("AGPL-3.0")
        assert listed[name].describe()["optional_extra"] == "agpl"


@pytest.mark.skipif(__import__("importlib").util.find_spec("ultralytics") is not None, reason="ultralytics is installed")
@pytest.mark.parametrize("name", [*ULTRALYTICS, "ultralytics:yolov8s"])
def test_asking_for_ultralytics_without_it_says_what_to_install_and_what_the_agpl_means(name):
    with pytest.raises(InvalidInputError) as err:
        get_backend(name)
    message = str(err.value)
    assert "pip install winnow[agpl]" in message and "AGPL-3.0" in message
    assert "serve" in message and "source" in message, "what the licence asks of someone serving it"
    with pytest.raises(NotFoundError, match="yolov8"):
        get_backend("ultralytics:yolov5n")


_PROBE = r"""
import sys
sys.path.insert(0, sys.argv[1])  # a stand-in package that raises when imported; find_spec sees it as installed
from winnow.train.base import get_backend, list_backends
names = [b.name for b in list_backends()]
backend = get_backend("ultralytics:yolov8n")  # installed: no refusal, and still not imported
get_backend("ultralytics:yolo11s")
backend.describe()
assert "ultralytics" not in sys.modules
print("ok", "ultralytics:yolov8n" in names, backend.licence)
"""


def test_nothing_imports_ultralytics_until_the_backend_is_used(tmp_path):
    fake = tmp_path / "site" / "ultralytics"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise RuntimeError('the stand-in ultralytics must never be imported')\n")
    out = subprocess.run([sys.executable, "-c", _PROBE, str(tmp_path / "site")], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["ok", "True", "AGPL-3.0", "(ultralytics;", "optional", "extra", "`agpl`)"]
