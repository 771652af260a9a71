"""Embedders: the classical default and the ONNX loader, on small models the tests build."""

from __future__ import annotations

import pickle

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from tests.quality_helpers import textured
from winnow.embed.base import get_embedder
from winnow.errors import InvalidInputError, UnsafeInputError


def tiny_onnx(path, *, external: bool = False, location: str = "weights.bin"):
    """A real conv net: 3->4 channels 3x3 conv, ReLU, global average pool, flatten -> 4-d output."""
    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.normal(size=(4, 3, 3, 3)).astype(np.float32), "w")
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("GlobalAveragePool", ["r"], ["g"]),
        helper.make_node("Flatten", ["g"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 32, 32])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])],
        [weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    if external:
        onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True, location="weights.bin", size_threshold=0)
        if location != "weights.bin":
            m = onnx.load(str(path), load_external_data=False)
            for t in m.graph.initializer:
                for entry in t.external_data:
                    if entry.key == "location":
                        entry.value = location
            onnx.save_model(m, str(path))
    else:
        onnx.save_model(model, str(path))
    return path


def test_classical_embeddings_are_normalised_and_separate_different_images():
    e = get_embedder("classical")
    a, b = textured(1), textured(2)
    v = e.embed([a, a.resize((48, 36)), b])
    assert v.shape == (3, e.dim) and np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert v[0] @ v[1] > v[0] @ v[2], "a resized copy is closer than a different image"


def test_onnx_embedder_loads_a_real_model_and_matches_a_numpy_forward_pass(tmp_path):
    path = tiny_onnx(tmp_path / "m.onnx")
    e = get_embedder(f"onnx:{path}", input_size=32)
    assert e.dim == 4
    im = textured(3, size=(32, 32))
    got = e.embed([im])[0]
    x = (np.asarray(im, dtype=np.float32).transpose(2, 0, 1)[None] / 255.0 - e.mean) / e.std
    w = numpy_helper.to_array(onnx.load(str(path)).graph.initializer[0])
    xp = np.pad(x[0], ((0, 0), (1, 1), (1, 1)))
    conv = np.zeros((4, 32, 32), dtype=np.float64)
    for o in range(4):
        for i in range(3):
            for dy in range(3):
                for dx in range(3):
                    conv[o] += w[o, i, dy, dx] * xp[i, dy : dy + 32, dx : dx + 32]
    expected = np.maximum(conv, 0).mean(axis=(1, 2))
    expected /= np.linalg.norm(expected)
    assert np.allclose(got, expected, atol=1e-4)
    assert e.cache_key.startswith("onnx-") and len(e.embed([im, im, im])) == 3


def test_onnx_external_data_must_stay_in_the_model_folder(tmp_path):
    (tmp_path / "ok").mkdir()
    ok = tiny_onnx(tmp_path / "ok" / "m.onnx", external=True)
    assert (tmp_path / "ok" / "weights.bin").is_file()
    assert get_embedder(f"onnx:{ok}", input_size=32).dim == 4
    (tmp_path / "evil").mkdir()
    evil = tiny_onnx(tmp_path / "evil" / "m.onnx", external=True, location="../../etc/passwd")
    with pytest.raises(UnsafeInputError, match="outside the model folder"):
        get_embedder(f"onnx:{evil}")


def test_pickles_and_garbage_are_refused(tmp_path):
    pt = tmp_path / "model.pt"
    pt.write_bytes(pickle.dumps({"weights": [1, 2, 3]}))
    with pytest.raises(UnsafeInputError, match="pickle"):
        get_embedder(f"onnx:{pt}")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"this is not a protobuf \xff\xfe")
    with pytest.raises(InvalidInputError):
        get_embedder(f"onnx:{junk}")
    with pytest.raises(InvalidInputError, match="unknown embedder"):
        get_embedder("clip")


def test_project_view_uses_and_caches_a_plugged_in_embedder(tmp_path):
    from tests.quality_helpers import Item, build_view
    from winnow.quality.view import ProjectView

    path = tiny_onnx(tmp_path / "m.onnx")
    view = build_view(tmp_path, [Item(f"{i}.png", textured(i)) for i in range(5)])
    onnx_view = ProjectView(view.store, "p", embedder=f"onnx:{path}")
    emb = onnx_view.embeddings
    assert emb.shape == (5, 4)
    cache_dirs = [p.name for p in (view.store.home / "cache").iterdir()]
    assert any(name.startswith("emb-onnx-") for name in cache_dirs)
    again = ProjectView(view.store, "p", embedder=f"onnx:{path}").embeddings
    assert np.array_equal(emb, again)
    idx, dist = onnx_view.neighbours(2)
    assert idx.shape == (5, 2) and (dist >= -1e-6).all()
