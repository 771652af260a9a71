#!/usr/bin/env python
"""Benchmark (ANCHORS G2): classification label errors against cleanlab's textbook recipe.

    .venv/bin/python bench/label_errors.py [--seeds 5] [--noise 0.1] [--out bench/out] [--scale 10000]

Data: scikit-learn's bundled ``load_digits`` (1,797 8x8 greyscale digits, 10 classes; no
download). Each digit is written once as a 32x32 greyscale PNG (values 0..16 scaled to 0..255,
bilinear upscaling: a smooth picture bigger than the classical embedder's 12x12 thumbnail, as a
user's images would be), cached under ``--out``. For each seed, ``--noise`` of the labels are
flipped to a uniformly random *other* class (the flipped images are the truth), and:

* (c) the correctness gate first: on identical ``pred_probs`` (the baseline's and winnow's own)
  winnow's :func:`~winnow.quality.label_errors.find_label_errors` returns cleanlab's
  ``find_label_issues`` mask and ``get_label_quality_scores`` exactly (else the script stops);
* (a) the textbook baseline: ``cleanlab.filter.find_label_issues`` (defaults) on 5-fold
  out-of-sample ``LogisticRegression()`` probabilities over the raw 64 pixels (stratified folds
  shuffled with the seed: kinder to the baseline than unshuffled folds, F1 0.80 vs 0.69);
* (a') the same textbook model on winnow's features (the classical embedding of the PNGs), to
  separate what the features bring from what the model brings;
* (b) winnow end to end: the PNGs imported with the noisy labels into a fresh store as a
  ``classify`` project (``import_records``), ``run_checks(..., only=["label_error"])``, the flagged
  images read from the findings. AUPRC ranks every image by ``1 - label quality`` from
  :func:`~winnow.quality.label_errors.analyse` on the same view (its flags equal the findings').

Precision, recall and F1 are of the flagged set against the flipped set; AUPRC is
``average_precision_score`` of the scores. Mean +- std over seeds. ``--scale N`` also times the
modelling part alone (out-of-sample probabilities + confident learning) on N synthetic 224-d
embeddings, 10 and 100 classes.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))

SIDE = 32


def write_digits(root: Path) -> tuple[list[str], np.ndarray, np.ndarray]:
    """``(png names, raw (N, 64) pixels, true labels)``; PNGs written once under ``root``."""
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    root.mkdir(parents=True, exist_ok=True)
    names = []
    for i, img in enumerate(digits.images):
        name = f"{i:04d}.png"
        names.append(name)
        path = root / name
        if not path.exists():
            grey = Image.fromarray(np.round(img * (255 / 16)).astype(np.uint8), "L")
            grey.resize((SIDE, SIDE), Image.Resampling.BILINEAR).save(path, "PNG")
    return names, digits.data, digits.target.astype(np.int64)


def flip(labels: np.ndarray, frac: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(noisy labels, truth mask)``: ``frac`` of the labels moved to a random other class."""
    rng = np.random.default_rng(seed)
    n, k = len(labels), int(labels.max()) + 1
    idx = rng.choice(n, int(round(frac * n)), replace=False)
    noisy = labels.copy()
    noisy[idx] = (labels[idx] + rng.integers(1, k, len(idx))) % k
    truth = np.zeros(n, dtype=bool)
    truth[idx] = True
    return noisy, truth


def metrics(flagged: np.ndarray, scores: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import average_precision_score

    tp = int((flagged & truth).sum())
    p = tp / max(int(flagged.sum()), 1)
    r = tp / max(int(truth.sum()), 1)
    return {
        "precision": p,
        "recall": r,
        "f1": 2 * p * r / (p + r) if p + r else 0.0,
        "auprc": float(average_precision_score(truth, scores)),
        "flagged": int(flagged.sum()),
    }


def textbook(features: np.ndarray, noisy: np.ndarray, seed: int) -> tuple[np.ndarray, float]:
    """5-fold out-of-sample ``LogisticRegression()`` probabilities (cleanlab's tutorial recipe)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from threadpoolctl import threadpool_limits

    t0 = time.perf_counter()
    with threadpool_limits(limits=1), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pp = cross_val_predict(
            LogisticRegression(), features, noisy,
            cv=StratifiedKFold(5, shuffle=True, random_state=seed), method="predict_proba",
        )
    return pp, time.perf_counter() - t0


def cleanlab_flags(noisy: np.ndarray, pp: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    return find_label_issues(noisy, pp), 1.0 - get_label_quality_scores(noisy, pp)


def gate(noisy: np.ndarray, pp: np.ndarray) -> None:
    """(c): identical inputs give cleanlab's mask and scores exactly."""
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    from winnow.quality.label_errors import find_label_errors

    issues, quality = find_label_errors(noisy, pp)
    if not np.array_equal(issues, find_label_issues(noisy, pp)):
        raise SystemExit("GATE FAILED: winnow's mask differs from cleanlab's on the same pred_probs")
    if not np.array_equal(quality, get_label_quality_scores(noisy, pp)):
        raise SystemExit("GATE FAILED: winnow's label quality differs from cleanlab's on the same pred_probs")


def run_seed(store, images_dir: Path, names: list[str], raw: np.ndarray, labels: np.ndarray,
             noise: float, seed: int) -> dict[str, dict[str, float]]:
    from winnow.core.types import Annotation, Dataset, ImageRecord, Task
    from winnow.quality.engine import run_checks
    from winnow.quality.label_errors import analyse
    from winnow.quality.view import ProjectView
    from winnow.services.ingest import import_records
    from winnow.services.projects import create_project

    classes = [str(c) for c in range(10)]
    noisy, truth = flip(labels, noise, seed)
    out: dict[str, dict[str, float]] = {}

    pp, secs = textbook(raw, noisy, seed)
    gate(noisy, pp)
    flagged, scores = cleanlab_flags(noisy, pp)
    out["baseline"] = metrics(flagged, scores, truth) | {"seconds": secs}

    project = f"digits-{seed}"
    create_project(store, project, Task.CLASSIFY)
    records = [
        ImageRecord(name=n, annotations=[Annotation(classes[y])], file=images_dir / n)
        for n, y in zip(names, noisy, strict=True)
    ]
    import_records(store, project, Dataset(classes=classes, images=records, task=Task.CLASSIFY), images_dir)
    view = ProjectView(store, project)
    t0 = time.perf_counter()
    _ = view.facts  # decoded once per blob for the whole store; cached after the first seed
    facts_s = time.perf_counter() - t0
    report = run_checks(store, project, only=["label_error"], view=view)
    by_name = {n: i for i, n in enumerate(names)}
    flagged = np.zeros(len(names), dtype=bool)
    for f in report.findings:
        flagged[by_name[f.images[0]]] = True
        assert f.suggestion.params["to"] == f.evidence["suggested_label"]

    result = analyse(view)
    order = [by_name[view.records[i].name] for i in result.rows]
    if len(order) != len(names):
        raise SystemExit(f"winnow checked {len(order)} of {len(names)} images")
    scores = np.zeros(len(names))
    scores[order] = 1.0 - result.quality
    again = np.zeros(len(names), dtype=bool)
    again[order] = result.issues
    if not np.array_equal(again, flagged):
        raise SystemExit("analyse() and run_checks() disagree")
    gate(result.labels, result.pred_probs)  # winnow's own pred_probs through cleanlab: same mask
    timing = {"seconds": report.timings["label_error"], "facts_seconds": facts_s}
    out["winnow"] = metrics(flagged, scores, truth) | timing

    # (a'): the textbook model on winnow's features, same labels, same folds
    emb = np.zeros((len(names), view.embeddings.shape[1]), dtype=np.float32)
    emb[[by_name[r.name] for r in view.records]] = view.embeddings
    pp, secs = textbook(emb, noisy, seed)
    flagged, scores = cleanlab_flags(noisy, pp)
    out["textbook_on_embedding"] = metrics(flagged, scores, truth) | {"seconds": secs}
    return out


def scale(n: int) -> dict[str, float]:
    """Seconds of the modelling part alone on ``n`` synthetic unit-norm 224-d embeddings."""
    from winnow.quality.label_errors import find_label_errors, out_of_sample_pred_probs

    out = {}
    for k in (10, 100):
        rng = np.random.default_rng(0)
        centres = rng.normal(size=(k, 224))
        y = rng.integers(0, k, n)
        x = centres[y] + 3.0 * rng.normal(size=(n, 224))
        x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
        noisy, _ = flip(y, 0.1, 0)
        t0 = time.perf_counter()
        pp = out_of_sample_pred_probs(x, noisy, k)
        find_label_errors(noisy, pp)
        out[f"{k} classes"] = time.perf_counter() - t0
    return out


ROWS = (
    ("baseline", "(a) cleanlab on 5-fold LogisticRegression() over raw pixels (textbook)"),
    ("textbook_on_embedding", "(a') the same LogisticRegression() over winnow's classical embedding"),
    ("winnow", "(b) winnow end to end: import PNGs, `run_checks(only=[\"label_error\"])`"),
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--noise", type=float, default=0.1)
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "out")
    ap.add_argument("--scale", type=int, default=10000, help="time the modelling on N synthetic embeddings (0: skip)")
    args = ap.parse_args()

    from winnow.store.db import Store

    images_dir = args.out / "digits-png"
    names, raw, labels = write_digits(images_dir)
    work = Path(tempfile.mkdtemp(prefix="winnow-bench-le-"))
    try:
        store = Store.open(work / "home")
        runs = [run_seed(store, images_dir, names, raw, labels, args.noise, s) for s in range(args.seeds)]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"gate (c): identical pred_probs -> cleanlab's mask and scores exactly: passed on {2 * args.seeds} inputs")
    print(f"\ndigits: {len(names)} images, {args.noise:.0%} labels flipped, {args.seeds} seeds (mean ± std); "
          f"{platform.python_version()}, {platform.machine()}\n")
    print("| contender | precision | recall | F1 | AUPRC | flagged | seconds |")
    print("|---|---|---|---|---|---|---|")
    summary = {}
    for key, label in ROWS:
        cols = []
        for m in ("precision", "recall", "f1", "auprc", "flagged", "seconds"):
            v = np.array([r[key][m] for r in runs], dtype=np.float64)
            summary.setdefault(key, {})[m] = (float(v.mean()), float(v.std()))
            cols.append(f"{v.mean():.1f}" if m == "flagged" else f"{v.mean():.3f} ± {v.std():.3f}")
        print(f"| {label} | " + " | ".join(cols) + " |")
    print(f"\ntrue flips per seed: {int(round(args.noise * len(names)))}; winnow's facts pass (decode + embed, "
          f"first seed, cold cache): {runs[0]['winnow']['facts_seconds']:.1f} s; seconds = the modelling/check only")
    if args.scale:
        t = scale(args.scale)
        print(f"modelling alone on {args.scale} synthetic embeddings "
              "(out-of-sample probabilities + confident learning): "
              + ", ".join(f"{k}: {v:.1f} s" for k, v in t.items()))
        summary["scale"] = {"n": args.scale, **t}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "label_errors.json").write_text(json.dumps({"runs": runs, "summary": summary}, indent=1))


if __name__ == "__main__":
    main()
