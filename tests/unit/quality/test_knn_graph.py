"""The neighbour graph the outlier check reads: exact (faiss, or numpy without it) and HNSW."""

import importlib.util

import numpy as np
import pytest

import winnow.quality.view as view_mod
from winnow.quality.view import faiss_graph, knn_graph


def clustered(n: int, dim: int = 32, seed: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(max(n // 40, 1), dim))
    x = centres[rng.integers(len(centres), size=n)] + rng.normal(scale=0.5, size=(n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def brute_force(x: np.ndarray, k: int) -> np.ndarray:
    sims = x.astype(np.float64) @ x.T.astype(np.float64)
    np.fill_diagonal(sims, -np.inf)
    return np.argsort(-sims, axis=1, kind="stable")[:, :k]


def overlap(a: np.ndarray, b: np.ndarray) -> float:
    return sum(len(set(p) & set(q)) for p, q in zip(a.tolist(), b.tolist(), strict=True)) / a.size


def well_formed(x: np.ndarray, idx: np.ndarray, dist: np.ndarray, k: int) -> None:
    n = len(x)
    assert idx.shape == dist.shape == (n, k)
    assert not (idx == np.arange(n)[:, None]).any(), "a row is never its own neighbour"
    assert ((idx >= 0) & (idx < n)).all()
    assert (np.diff(dist, axis=1) >= -1e-6).all(), "nearest first"
    assert np.abs(dist - (1.0 - np.take_along_axis(x @ x.T, idx, axis=1))).max() < 1e-5


def without_faiss(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(view_mod.importlib.util, "find_spec", lambda name, *a: None if name == "faiss" else real(name, *a))


@pytest.mark.parametrize("engine", ["faiss", "numpy"])
def test_the_exact_graph_is_the_brute_force_one(monkeypatch, engine):
    if engine == "numpy":
        without_faiss(monkeypatch)
    x = clustered(1500)
    idx, dist = knn_graph(x, 10, block=256, exact=True)  # numpy: several blocks
    well_formed(x, idx, dist, 10)
    assert overlap(idx, brute_force(x, 10)) > 0.999  # ties aside


def test_hnsw_finds_at_least_95_percent_of_the_exact_neighbours():
    x = clustered(3000)
    idx, dist = knn_graph(x, 10, exact=False)
    well_formed(x, idx, dist, 10)
    assert overlap(idx, brute_force(x, 10)) >= 0.95


def test_large_sets_go_to_hnsw_small_ones_and_sets_without_faiss_stay_exact(monkeypatch):
    x = clustered(600)
    exact = faiss_graph(x, 5, exact=True)
    approx = faiss_graph(x, 5, exact=False)
    same = lambda a, b: all(np.array_equal(p, q) for p, q in zip(a, b, strict=True))  # noqa: E731
    assert same(knn_graph(x, 5), exact)  # under ANN_FROM
    monkeypatch.setattr(view_mod, "ANN_FROM", 100)
    assert same(knn_graph(x, 5), approx)
    without_faiss(monkeypatch)
    assert overlap(knn_graph(x, 5)[0], exact[0]) > 0.999  # exact, in numpy


def test_tiny_inputs():
    idx, dist = knn_graph(np.ones((1, 4), np.float32), 10)
    assert idx.shape == (1, 0) and dist.shape == (1, 0)
    x = clustered(3, dim=4)
    for exact in (True, False):
        idx, dist = knn_graph(x, 10, exact=exact)
        well_formed(x, idx, dist, 2)
