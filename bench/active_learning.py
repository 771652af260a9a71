#!/usr/bin/env python
"""Benchmark: labels each active-learning strategy needs to reach a target accuracy, vs random.

    .venv/bin/python bench/active_learning.py [--seeds 5] [--initial 20] [--batch 10]
        [--max-labels 600] [--target 0.95] [--strategies random,uncertainty,...]
        [--plot docs/img/active_learning_digits.png] [--docs docs/benchmarks.md] [--no-docs]

Pool-based simulation on scikit-learn's ``digits`` (1,797 8x8 images, 10 classes, bundled with
scikit-learn, no download):

* per seed, a stratified 70/30 split: the 1,257 pool images are the "unlabeled" candidates, the
  540 test images are only used to measure accuracy;
* ``--initial`` pool images drawn at random (seeded) start labeled; the model is scikit-learn's
  ``LogisticRegression`` on the 64 pixels (scaled to [0, 1]);
* each round, the strategy picks ``--batch`` images through :func:`winnow.select.select` - the
  same core ``winnow select`` runs, with its defaults (near-duplicate exclusion at cosine 0.995,
  class quotas x2) - they are "labeled" (their true class revealed), the model is refitted, and
  its test accuracy recorded, until ``--max-labels``;
* the pool's embeddings are the pixel vectors, centred per image and L2-normalised; probabilities
  are the model's ``predict_proba``; the ``slice`` strategy's slices are the predicted classes,
  scored by the precision of 3-fold cross-validated predictions on the labeled images (what the
  model would measure on its own labeled data, no test labels).

Reported, per strategy: labels needed = the first labeled count at which test accuracy reaches
``--target``, mean over seeds (a seed that never reaches it counts as ``--max-labels`` and is
flagged); the ratio to random's mean; the accuracy at a few label counts. The goal: the best
strategy needs at most 60% of random's labels. BLAS runs on one thread (the fits are tiny).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
import warnings
from datetime import UTC, datetime
from pathlib import Path

# One BLAS thread: the fits are tiny, and spinning BLAS threads on a busy machine made them 50x slower.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from _active import labels_needed, plot, results_table  # bench/ is on sys.path when a script runs
from _docs import write_block

STRATEGIES = ("random", "uncertainty", "margin", "entropy", "diversity", "hybrid", "slice")
BEGIN, END = "<!-- bench:active_learning:begin -->", "<!-- bench:active_learning:end -->"


def _model():
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=1.0, max_iter=300)


def _embed(x: np.ndarray) -> np.ndarray:
    e = x - x.mean(axis=1, keepdims=True)
    return e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)


def _slice_scores(x: np.ndarray, y: np.ndarray, k: int) -> dict[str, float]:
    """Precision of each predicted class, from 3-fold cross-validated predictions on the labeled set."""
    from sklearn.model_selection import KFold, cross_val_predict

    if len(y) < 6:
        return {}
    pred = cross_val_predict(_model(), x, y, cv=KFold(3, shuffle=True, random_state=0))
    out = {}
    for c in range(k):
        hit = pred == c
        if hit.sum() >= 3:
            out[f"class:{c}"] = float((y[hit] == c).mean())
    return out


def run_one(strategy: str, seed: int, x: np.ndarray, y: np.ndarray, args) -> tuple[list[int], list[float]]:
    from sklearn.model_selection import train_test_split

    from winnow.select import Pool, select

    k = int(y.max()) + 1
    pool_idx, test_idx = train_test_split(np.arange(len(y)), test_size=0.3, random_state=seed, stratify=y)
    xp, yp, xt, yt = x[pool_idx], y[pool_idx], x[test_idx], y[test_idx]
    emb = _embed(xp)
    rng = np.random.default_rng(seed)
    labeled = np.zeros(len(yp), dtype=bool)
    labeled[rng.choice(len(yp), args.initial, replace=False)] = True
    counts, accs = [], []
    round_ = 0
    while True:
        model = _model().fit(xp[labeled], yp[labeled])
        counts.append(int(labeled.sum()))
        accs.append(float((model.predict(xt) == yt).mean()))
        if labeled.sum() >= args.max_labels or labeled.all():
            break
        cand = np.flatnonzero(~labeled)
        proba = np.zeros((len(cand), k))
        proba[:, model.classes_] = model.predict_proba(xp[cand])
        pool = Pool(
            emb[cand],
            probs=proba,
            labeled=emb[labeled],
            class_counts=np.bincount(yp[labeled], minlength=k),
        )
        if strategy == "slice":
            pool.slices = [(f"class:{c}",) for c in pool.predicted]
            pool.slice_scores = _slice_scores(xp[labeled], yp[labeled], k)
            pool.overall = None
        budget = min(args.batch, args.max_labels - int(labeled.sum()))
        picked = select(pool, budget, strategy, seed=seed * 1000 + round_)
        labeled[cand[picked.indices]] = True
        round_ += 1
    return counts, accs


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--initial", type=int, default=20)
    ap.add_argument("--batch", type=int, default=10)
    ap.add_argument("--max-labels", type=int, default=600)
    ap.add_argument("--target", type=float, default=0.95)
    ap.add_argument("--strategies", default=",".join(STRATEGIES))
    ap.add_argument("--plot", type=Path, default=ROOT / "docs" / "img" / "active_learning_digits.png")
    ap.add_argument("--docs", type=Path, default=ROOT / "docs" / "benchmarks.md")
    ap.add_argument("--no-docs", action="store_true", help="Print the table only; do not touch docs/.")
    args = ap.parse_args()
    warnings.filterwarnings("ignore")  # lbfgs convergence chatter on tiny labeled sets

    from sklearn.datasets import load_digits

    digits = load_digits()
    x, y = digits.data.astype(np.float64) / 16.0, digits.target.astype(np.int64)
    strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    if "random" not in strategies:
        strategies.insert(0, "random")
    seeds = list(range(args.seeds))

    full = []
    from sklearn.model_selection import train_test_split

    for seed in seeds:
        p, t = train_test_split(np.arange(len(y)), test_size=0.3, random_state=seed, stratify=y)
        full.append(float((_model().fit(x[p], y[p]).predict(x[t]) == y[t]).mean()))

    started = time.perf_counter()
    curves: dict[str, np.ndarray] = {}
    needed: dict[str, list[int | None]] = {}
    seconds: dict[str, float] = {}
    counts: list[int] = []
    for name in strategies:
        t0 = time.perf_counter()
        runs = [run_one(name, seed, x, y, args) for seed in seeds]
        seconds[name] = time.perf_counter() - t0
        counts = runs[0][0]
        curves[name] = np.array([a for _, a in runs])
        needed[name] = [labels_needed(c, a, args.target) for c, a in runs]
        shown = [n if n is not None else f">{args.max_labels}" for n in needed[name]]
        print(f"{name:12s} labels to {args.target:.2f}: {shown}  ({seconds[name]:.1f}s)", flush=True)
    total = time.perf_counter() - started

    table, best, best_mean, base = results_table(
        strategies, counts, curves, needed, args.max_labels, marks=(50, 100, 200, 300), metric="acc"
    )
    ratio = best_mean / base
    met = "met" if ratio <= 0.6 else "not met"
    stamp = datetime.now(UTC).strftime("%Y-%m-%d")
    command = "`.venv/bin/python bench/active_learning.py" + "".join(
        f" --{k.replace('_', '-')} {v}" for k, v in (("seeds", args.seeds), ("batch", args.batch), ("target", args.target))
        if v != ap.get_default(k)
    ) + "`"
    block = (
        f"Command: {command} ({total:.0f} s on {os.cpu_count()} cores, Python {platform.python_version()}, {stamp}).\n\n"
        f"scikit-learn digits, stratified 70/30 pool/test split per seed, {args.seeds} seeds; LogisticRegression on the "
        f"64 pixels; {args.initial} random labels to start, batches of {args.batch}, up to {args.max_labels} labels. "
        f"Target: test accuracy >= {args.target:.2f} (the model on the whole pool of 1,257 labels gets "
        f"{np.mean(full):.3f} on average, {min(full):.3f}-{max(full):.3f}). Strategies run through `winnow.select.select` "
        f"with winnow's defaults (near duplicates at cosine 0.995 excluded, class quotas x2).\n\n"
        f"{table}\n\n"
        f"- **Goal (best strategy <= 60% of random's labels): {met}** - {best} needs {best_mean:.0f} labels, "
        f"{ratio:.0%} of random's {base:.0f}.\n"
        f"- Learning curves: `docs/img/active_learning_digits.png`.\n"
        f"- The synthetic detection set: `bench/active_learning_detection.py` (below)."
    )
    print()
    print(block)
    plot(curves, counts, args.target, args.plot, title="Active learning on scikit-learn digits (LogisticRegression)",
         ylabel="test accuracy (mean over seeds)", ylim=(0.6, 1.0))
    print(f"\nplot: {args.plot}")
    if not args.no_docs:
        write_block(args.docs, BEGIN, END, block, heading="## Active learning")
        print(f"docs: {args.docs}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
