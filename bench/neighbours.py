#!/usr/bin/env python
"""Benchmark: the k-nearest-neighbour graph over embeddings, winnow vs faiss (ANCHORS G7).

    .venv/bin/python bench/neighbours.py [--sizes 10000,50000,100000] [--dim 224] [--k 10]
        [--threads 2] [--markdown]

What is measured: the graph winnow's outlier check, the near-duplicate lookups and the
diversity terms of selection read - every embedding's ``k`` nearest other embeddings by cosine
similarity (:func:`winnow.quality.view.knn_graph`: exact, blocks of one matrix product each, no
index). Every point is a query, so queries/s = N / (build + search seconds).

Data (generated, seeded; no download): ``N`` unit vectors of ``--dim`` dimensions (224: the
default ``classical`` embedder's) drawn around ``N / 50`` random centres with a spread that makes
the clusters overlap (a mixture, as embeddings of real pictures are), float32.

Contenders, 2 threads each (``--threads``):

* ``winnow knn_graph`` as the outlier check calls it - exact below 20,000 rows, HNSW from there
  (``winnow.quality.view.ANN_FROM``; both in faiss, which winnow depends on) - and forced exact;
* ``faiss IndexFlatIP`` (exact) called directly;
* ``faiss IndexHNSWFlat`` called directly, the fastest of (M, efConstruction) = (16, 40) and
  (32, 80), each at the smallest ``efSearch`` of 16, 32, 64, 128, 256 whose recall@k against the
  exact graph is >= 0.95 (the goal's operating point); its build is timed (an ANN index must be
  built before it answers).

Correctness first: winnow's exact graph against numpy's brute force on 500 sampled rows, and its
distances against faiss flat's.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))

EF_SEARCH = (16, 32, 64, 128, 256)
HNSW_CONFIGS = ((16, 40), (32, 80))  # (M, efConstruction)


def embeddings(n: int, dim: int, seed: int = 7) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(max(n // 50, 1), dim)).astype(np.float32)
    x = centres[rng.integers(len(centres), size=n)] + rng.normal(scale=0.6, size=(n, dim)).astype(np.float32)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def recall(found: np.ndarray, exact: np.ndarray) -> float:
    k = exact.shape[1]
    hits = sum(len(set(a.tolist()) & set(b.tolist())) for a, b in zip(found, exact, strict=True))
    return hits / (len(exact) * k)


def run_winnow(x: np.ndarray, k: int, exact: bool | None) -> tuple[float, np.ndarray, np.ndarray]:
    from winnow.quality.view import knn_graph

    t0 = time.perf_counter()
    idx, dist = knn_graph(x, k, exact=exact)
    return time.perf_counter() - t0, idx, dist


def _drop_self(idx: np.ndarray, sims: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """faiss returns each point itself among its neighbours: drop it, keep ``k``."""
    rows = np.arange(len(idx))[:, None]
    keep = idx != rows
    out_i = np.zeros((len(idx), k), np.int64)
    out_s = np.zeros((len(idx), k), np.float32)
    for r in range(len(idx)):
        sel = keep[r]
        out_i[r] = idx[r][sel][:k]
        out_s[r] = sims[r][sel][:k]
    return out_i, out_s


def run_faiss_flat(x: np.ndarray, k: int) -> tuple[float, np.ndarray, np.ndarray]:
    import faiss

    t0 = time.perf_counter()
    index = faiss.IndexFlatIP(x.shape[1])
    index.add(x)
    sims, idx = index.search(x, k + 1)
    seconds = time.perf_counter() - t0
    idx, sims = _drop_self(idx, sims, k)
    return seconds, idx, 1.0 - sims


def run_faiss_hnsw(x: np.ndarray, k: int, exact: np.ndarray) -> dict:
    """The fastest of the HNSW configurations tried that reaches recall@k >= 0.95."""
    import faiss

    best = None
    for m, ef_construction in HNSW_CONFIGS:
        t0 = time.perf_counter()
        index = faiss.IndexHNSWFlat(x.shape[1], m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = ef_construction
        index.add(x)
        build = time.perf_counter() - t0
        for ef in EF_SEARCH:
            index.hnsw.efSearch = ef
            t0 = time.perf_counter()
            sims, idx = index.search(x, k + 1)
            search = time.perf_counter() - t0
            idx, _ = _drop_self(idx, sims, k)
            r = recall(idx, exact)
            if r >= 0.95:
                run = {"m": m, "ef_construction": ef_construction, "ef_search": ef, "build_seconds": build,
                       "search_seconds": search, "recall": r, "seconds": build + search}
                if best is None or run["seconds"] < best["seconds"]:
                    best = run
                break
    return best


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="10000,50000,100000")
    p.add_argument("--dim", type=int, default=224)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--markdown", action="store_true")
    args = p.parse_args(argv)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, str(args.threads))
    import faiss

    faiss.omp_set_num_threads(args.threads)
    rows = []
    for n in (int(v) for v in args.sizes.split(",")):
        x = embeddings(n, args.dim)
        w_s, w_idx, w_dist = run_winnow(x, args.k, exact=True)
        d_s, d_idx, _ = run_winnow(x, args.k, exact=None)  # what the outlier check gets
        f_s, f_idx, f_dist = run_faiss_flat(x, args.k)
        # correctness first: winnow's exact graph is numpy's brute force on a sample of rows
        sample = np.random.default_rng(0).choice(n, size=min(n, 500), replace=False)
        sims = x[sample] @ x.T
        sims[np.arange(len(sample)), sample] = -np.inf
        brute = np.argsort(-sims, axis=1)[:, : args.k]
        same = recall(w_idx[sample], brute)
        dist_err = float(np.abs(np.sort(w_dist, axis=1) - np.sort(f_dist, axis=1)).max())
        h = run_faiss_hnsw(x, args.k, w_idx)
        row = {"n": n, "winnow_s": w_s, "default_s": d_s, "default_recall": recall(d_idx, w_idx), "flat_s": f_s,
               "hnsw": h, "exact_agreement": same, "max_distance_diff": dist_err}
        rows.append(row)
        print(f"N={n:,}: winnow default {d_s:.2f} s (recall {row['default_recall']:.3f}), exact {w_s:.2f} s; "
              f"faiss flat {f_s:.2f} s; faiss HNSW (M {h['m']}, efConstruction {h['ef_construction']}) build "
              f"{h['build_seconds']:.2f} s + search {h['search_seconds']:.2f} s at efSearch {h['ef_search']} "
              f"(recall@{args.k} {h['recall']:.3f}); winnow's exact graph = brute force on {same:.4f} of a "
              f"sample's neighbours, distances within {dist_err:.1e} of faiss flat's", flush=True)
    if args.markdown:
        when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
        print(f"\nCommand: `.venv/bin/python bench/neighbours.py --sizes {args.sizes} --markdown`; {os.cpu_count()} cores, "
              f"{args.threads} threads each, Python {platform.python_version()}, numpy {np.__version__}, faiss "
              f"{faiss.__version__}, load average {os.getloadavg()[0]:.1f}, {when}; D = {args.dim}, k = {args.k}.\n")
        print("| N | winnow default s (recall@k) | default q/s | vs the fastest faiss HNSW | winnow exact s | "
              "faiss IndexFlatIP s | fastest faiss HNSW at recall >= 0.95: build + search s (M, efC, efSearch, recall@k) | "
              "winnow exact = brute force |")
        print("|---:|---:|---:|---:|---:|---:|---:|---:|")
        for r in rows:
            h = r["hnsw"]
            print(f"| {r['n']:,} | {r['default_s']:.2f} ({r['default_recall']:.3f}) | {r['n'] / r['default_s']:,.0f} | "
                  f"**{h['seconds'] / r['default_s']:.2f}x** | {r['winnow_s']:.2f} | {r['flat_s']:.2f} | "
                  f"{h['build_seconds']:.2f} + {h['search_seconds']:.2f} ({h['m']}, {h['ef_construction']}, "
                  f"{h['ef_search']}, {h['recall']:.3f}) | {r['exact_agreement']:.4f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
