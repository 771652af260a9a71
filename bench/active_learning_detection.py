#!/usr/bin/env python
"""Benchmark: labels each active-learning strategy needs to reach a target test mAP50 on the
synthetic detection set, vs random.

    .venv/bin/python bench/active_learning_detection.py [--seeds 2] [--pool 480] [--test 160]
        [--initial 30] [--batch 40] [--max-labels 150] [--steps 100] [--image-size 128]
        [--rare 0.2] [--dark 0.1] [--target-fraction 0.9] [--strategies random,uncertainty,hybrid]
        [--threads N] [--plot docs/img/active_learning_detection.png] [--docs docs/benchmarks.md] [--no-docs]

Pool-based simulation with the default detector, in memory (no store):

* **data** (:func:`winnow.synthetic.generate`, 128x96, 1-3 shapes of 3 classes per image, no
  download), made harder so that the choice of images can matter:
  - the **pool** (``--pool`` images, generator seed 100): triangles are **rare** - an image
    holding a triangle is kept with probability ``--rare`` (0.2), the others always; and
    ``--dark`` (10%) of the images are **under-exposed** (pixels x 0.2-0.35: the edge case);
  - the **test set** (``--test`` images, generator seed 200, fixed for every seed and strategy):
    the generator's own class mix (the three classes about equally common: mAP50 weighs them
    equally anyway), the same share of dark images;
* per seed, ``--initial`` random pool images start labeled; each round the strategy picks
  ``--batch`` more through :func:`winnow.select.select` (winnow's defaults: near duplicates at
  cosine 0.995 excluded, class quotas x2), they are "labeled", and the detector is retrained
  **from scratch** (``ssdlite``, random init, ``--image-size`` px, AdamW lr 1e-3, batch 8, seed =
  the run's seed) for a fixed ``--steps`` optimizer steps whatever the labeled count (small sets
  get more epochs), until ``--max-labels``;
* what a strategy sees, as ``winnow select`` builds it: the ``classical`` embeddings of the
  images, each candidate's predicted box scores (:func:`winnow.select.detection_uncertainty`
  turns them into uncertainty), its predicted class = the class of its highest-scoring box, and
  the labeled boxes per class (for class quotas);
* **test mAP50**: COCO mAP at IoU 0.5 on the test set with winnow's engine
  (:class:`winnow.evaluate.engine.CocoEngine`, faster-coco-eval), every predicted box.

The round-0 model (the ``--initial`` random labels) is the same for every strategy of a seed and
is trained once. The **reference**: the same recipe on the whole pool, per seed; the target is
``--target-fraction`` (0.9) of its mean test mAP50. Reported per strategy: labels to the target
(mean over seeds; a seed that does not reach it within ``--max-labels`` counts as
``--max-labels`` and is flagged), the ratio to random, the **area under the learning curve**
(mean test mAP50 over the rounds and seeds; it ranks strategies when the target is not reached)
and mAP50 at a few label counts. Goal: the best strategy needs at most 60% of random's labels.
Threads: ``--threads`` sets ``WINNOW_THREADS`` (default: ``$WINNOW_THREADS``, else **1**: on
the shared 2-core machine, loaded, a training step took ~0.24 s with one thread and 0.7-7 s with
two); the load average is reported with the numbers.
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from _active import area, labels_needed, plot, results_table  # bench/ is on sys.path when a script runs
from _docs import write_block

STRATEGIES = ("random", "uncertainty", "margin", "entropy", "diversity", "hybrid")
BEGIN, END = "<!-- bench:active_learning_detection:begin -->", "<!-- bench:active_learning_detection:end -->"
SIZE = (128, 96)
BATCH_SIZE = 8
DARK_SCALE = (0.2, 0.35)


def _load() -> str:
    return "/".join(f"{v:.1f}" for v in os.getloadavg())


# ----------------------------------------------------------------------------- data


class Data:
    """Decoded images and their boxes: ``images`` (PIL RGB), ``boxes`` (``(n, 4)`` xyxy pixels),
    ``labels`` (``(n,)`` class index), ``dark`` (bool per image)."""

    def __init__(self, images, boxes, labels, dark):
        self.images, self.boxes, self.labels, self.dark = images, boxes, labels, np.asarray(dark, dtype=bool)

    def __len__(self) -> int:
        return len(self.images)


def make_data(out: Path, n: int, seed: int, *, rare: float, dark: float, classes: list[str]) -> Data:
    """``n`` images from :func:`winnow.synthetic.generate` (seed ``seed``); an image with a
    triangle is kept with probability ``rare`` (1 = all kept); ``dark`` of the kept images are
    darkened (pixels x U(0.2, 0.35)). Draws from ``seed``-seeded streams: deterministic."""
    from PIL import Image

    from winnow.synthetic import generate

    rng = np.random.default_rng([seed, 7])
    # about 47% of the generator's images hold no triangle: generate enough to keep n of them
    ds = generate(out / f"gen-{seed}-{n}", int(n / (0.45 + 0.55 * rare) * 1.15) + 20 if rare < 1 else n, seed=seed, size=SIZE)
    images, boxes, labels, darks = [], [], [], []
    for rec in ds.images:
        if len(images) == n:
            break
        names = [a.label for a in rec.annotations]
        if rare < 1 and "triangle" in names and rng.random() >= rare:
            continue
        im = Image.open(rec.file).convert("RGB")
        is_dark = bool(rng.random() < dark)
        if is_dark:
            factor = rng.uniform(*DARK_SCALE)
            im = Image.fromarray(np.round(np.asarray(im, dtype=np.float32) * factor).astype(np.uint8), "RGB")
        images.append(im)
        boxes.append(np.array([a.bbox for a in rec.annotations], dtype=np.float32).reshape(-1, 4))
        labels.append(np.array([classes.index(a.label) for a in rec.annotations], dtype=np.int64))
        darks.append(is_dark)
    if len(images) < n:
        raise RuntimeError(f"generated too few images ({len(images)} < {n})")
    return Data(images, boxes, labels, darks)


def gt_doc(data: Data, classes: list[str]) -> dict:
    anns = []
    for i, (b, lab) in enumerate(zip(data.boxes, data.labels, strict=True), 1):
        for (x1, y1, x2, y2), c in zip(b.tolist(), lab.tolist(), strict=True):
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": c + 1, "bbox": [x1, y1, x2 - x1, y2 - y1],
                         "area": (x2 - x1) * (y2 - y1), "iscrowd": 0})
    return {
        "images": [{"id": i, "width": im.width, "height": im.height} for i, im in enumerate(data.images, 1)],
        "annotations": anns,
        "categories": [{"id": k + 1, "name": c} for k, c in enumerate(classes)],
    }


def map50(gt: dict, predictions) -> float:
    """COCO mAP50 of ``predictions`` (one :class:`Prediction` per test image) with winnow's engine."""
    from winnow.evaluate.engine import CocoEngine

    results = [
        {"image_id": i, "category_id": int(c) + 1, "bbox": [float(x1), float(y1), float(x2 - x1), float(y2 - y1)], "score": float(s)}
        for i, p in enumerate(predictions, 1)
        for (x1, y1, x2, y2), s, c in zip(p.boxes, p.scores, p.class_ids, strict=True)
    ]
    return max(0.0, CocoEngine(copy.deepcopy(gt), results, "bbox").evaluate().stats[1])


# ----------------------------------------------------------------------------- the simulation


class Bench:
    def __init__(self, args, pool: Data, test: Data, classes: list[str]):
        import torch

        from winnow.embed.base import get_embedder
        from winnow.train.base import get_backend

        self.args, self.pool, self.test, self.classes = args, pool, test, classes
        self.backend = get_backend("ssdlite")
        size = args.image_size
        self.items = []  # the pool as network inputs + targets, prepared once
        for im, b, lab in zip(pool.images, pool.boxes, pool.labels, strict=True):
            pixels = torch.from_numpy(np.asarray(im).transpose(2, 0, 1).copy())
            target = {"boxes": torch.from_numpy(b), "labels": torch.from_numpy(lab + 1)}
            self.items.append(self.backend.prepare(pixels, target, size))
        self.embeddings = get_embedder("classical").embed(pool.images)
        self.gt = gt_doc(test, classes)
        self.box_counts = np.stack([np.bincount(lab, minlength=len(classes)) for lab in pool.labels])
        self.train_seconds = 0.0
        self.trainings = 0

    def train(self, labeled: np.ndarray, seed: int):
        """A fresh detector fitted on the labeled pool images for ``--steps`` steps."""
        import torch

        from winnow.train.loop import FitConfig, fit

        started = time.perf_counter()
        idx = np.flatnonzero(labeled)
        steps_per_epoch = int(np.ceil(len(idx) / BATCH_SIZE))
        epochs = max(1, int(round(self.args.steps / steps_per_epoch)))
        torch.manual_seed(seed)
        net = self.backend.build(len(self.classes), self.args.image_size)
        fit(self.backend, net, [self.items[i] for i in idx], FitConfig(epochs=epochs, batch_size=BATCH_SIZE, lr=1e-3, seed=seed))
        self.train_seconds += time.perf_counter() - started
        self.trainings += 1
        return net

    def predict(self, net, images):
        from winnow.train.loop import torch_threads

        with torch_threads():
            return self.backend.predict_arrays(net, images, self.args.image_size)

    def evaluate(self, net) -> float:
        return map50(self.gt, self.predict(net, self.test.images))

    def first_round(self, seed: int) -> tuple[np.ndarray, float, object]:
        """The initial labeled set of ``seed``, its model's test mAP50 and the model."""
        rng = np.random.default_rng(seed)
        labeled = np.zeros(len(self.pool), dtype=bool)
        labeled[rng.choice(len(self.pool), self.args.initial, replace=False)] = True
        net = self.train(labeled, seed)
        return labeled, self.evaluate(net), net

    def run(self, strategy: str, seed: int, start: tuple[np.ndarray, float, object]) -> tuple[list[int], list[float], list[dict]]:
        from winnow.select import Pool, select

        labeled, score, net = start
        labeled = labeled.copy()
        counts, scores, picks = [int(labeled.sum())], [score], []
        round_ = 0
        while labeled.sum() < self.args.max_labels and not labeled.all():
            cand = np.flatnonzero(~labeled)
            box_scores, predicted = None, None
            if strategy != "random":  # as `winnow select` with a model; random stays a plain uniform draw
                preds = self.predict(net, [self.pool.images[i] for i in cand])
                box_scores = [np.asarray(p.scores, dtype=np.float64) for p in preds]
                predicted = np.array([int(p.class_ids[int(np.argmax(p.scores))]) if len(p) else -1 for p in preds])
            pool = Pool(
                self.embeddings[cand],
                box_scores=box_scores,
                predicted=predicted,
                labeled=self.embeddings[labeled],
                class_counts=self.box_counts[labeled].sum(axis=0) if predicted is not None else None,
            )
            budget = min(self.args.batch, self.args.max_labels - int(labeled.sum()))
            picked = cand[select(pool, budget, strategy, seed=seed * 1000 + round_).indices]
            labeled[picked] = True
            picks.append({
                "dark": int(self.pool.dark[picked].sum()),
                "triangles": int(self.box_counts[picked, self.classes.index("triangle")].sum()),
            })
            net = self.train(labeled, seed)
            counts.append(int(labeled.sum()))
            scores.append(self.evaluate(net))
            round_ += 1
        return counts, scores, picks


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--pool", type=int, default=480)
    ap.add_argument("--test", type=int, default=160)
    ap.add_argument("--initial", type=int, default=30)
    ap.add_argument("--batch", type=int, default=40)
    ap.add_argument("--max-labels", type=int, default=150)
    ap.add_argument("--steps", type=int, default=100, help="optimizer steps per training (batch 8)")
    ap.add_argument("--image-size", type=int, default=128)
    ap.add_argument("--rare", type=float, default=0.2, help="pool: keep an image holding a triangle with this probability")
    ap.add_argument("--dark", type=float, default=0.1, help="share of under-exposed images (pool and test)")
    ap.add_argument("--target-fraction", type=float, default=0.9, help="target = this x the whole-pool model's mAP50")
    ap.add_argument("--strategies", default="random,uncertainty,hybrid")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "active_learning_detection")
    ap.add_argument("--plot", type=Path, default=ROOT / "docs" / "img" / "active_learning_detection.png")
    ap.add_argument("--docs", type=Path, default=ROOT / "docs" / "benchmarks.md")
    ap.add_argument("--no-docs", action="store_true", help="Print the table only; do not touch docs/.")
    args = ap.parse_args()
    # one torch thread unless told: on a busy 2-core machine two threads made each step ~5x slower
    os.environ["WINNOW_THREADS"] = str(args.threads or os.environ.get("WINNOW_THREADS") or 1)
    strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    if "random" not in strategies:
        strategies.insert(0, "random")
    unknown = set(strategies) - set(STRATEGIES)
    if unknown:
        ap.error(f"unknown strategies: {', '.join(sorted(unknown))} (detection: {', '.join(STRATEGIES)})")
    seeds = list(range(args.seeds))
    load_before = _load()
    wall = time.perf_counter()

    import torch

    from winnow.synthetic import SHAPES
    from winnow.train.base import threads

    classes = list(SHAPES)
    args.out.mkdir(parents=True, exist_ok=True)
    pool = make_data(args.out, args.pool, 100, rare=args.rare, dark=args.dark, classes=classes)
    test = make_data(args.out, args.test, 200, rare=1.0, dark=args.dark, classes=classes)
    bench = Bench(args, pool, test, classes)
    objects = np.bincount(np.concatenate(pool.labels), minlength=3)
    test_objects = np.bincount(np.concatenate(test.labels), minlength=3)
    describe = (
        f"pool {len(pool)} images ({', '.join(f'{n} {c}s' for c, n in zip(classes, objects, strict=True))}; "
        f"{int(pool.dark.sum())} dark), test {len(test)} images "
        f"({', '.join(f'{n} {c}s' for c, n in zip(classes, test_objects, strict=True))}; {int(test.dark.sum())} dark)"
    )
    print(describe, f"- data ready in {time.perf_counter() - wall:.0f}s, load {load_before}", flush=True)

    full = []
    for seed in seeds:
        net = bench.train(np.ones(len(pool), dtype=bool), seed)
        full.append(bench.evaluate(net))
        print(f"seed {seed}: whole pool ({len(pool)} labels) test mAP50 {full[-1]:.3f} "
              f"({time.perf_counter() - wall:.0f}s)", flush=True)
    target = round(args.target_fraction * float(np.mean(full)), 3)
    print(f"target: mAP50 >= {target:.3f} ({args.target_fraction:.0%} of {np.mean(full):.3f})", flush=True)

    runs: dict[str, list] = {name: [] for name in strategies}
    for seed in seeds:
        start = bench.first_round(seed)
        for name in strategies:
            t0 = time.perf_counter()
            counts, scores, picks = bench.run(name, seed, start)
            runs[name].append((counts, scores, picks))
            shown = " ".join(f"{n}:{s:.3f}" for n, s in zip(counts, scores, strict=True))
            dark = sum(p["dark"] for p in picks)
            tri = sum(p["triangles"] for p in picks)
            print(f"seed {seed} {name:12s} {shown}  (picked {dark} dark images, {tri} triangles; "
                  f"{time.perf_counter() - t0:.0f}s, total {time.perf_counter() - wall:.0f}s, load {_load()})", flush=True)
    total = time.perf_counter() - wall
    load_after = _load()

    counts = runs["random"][0][0]
    curves = {name: np.array([r[1] for r in runs[name]]) for name in strategies}
    needed = {name: [labels_needed(r[0], r[1], target) for r in runs[name]] for name in strategies}
    table, best, best_mean, base = results_table(
        strategies, counts, curves, needed, args.max_labels, marks=counts, metric="mAP50", with_area=True
    )
    ratio = best_mean / base
    by_area = max((s for s in strategies if s != "random"), key=lambda s: area(curves[s]), default="random")
    area_ratio = area(curves[by_area]) / area(curves["random"])
    random_missed = sum(n is None for n in needed["random"])
    if random_missed:
        # censored: random's true count is above the budget, so no ratio to it can be stated
        goal = (
            f"- **Goal (best strategy <= 60% of random's labels): not measurable at this budget** - random did not "
            f"reach the target within {args.max_labels} labels on {random_missed} of {len(seeds)} seed(s), so labels to "
            f"the target are censored at {args.max_labels} (a seed counted at {args.max_labels} either reached it "
            f"exactly there or not at all: the per-seed counts are printed by the script). By the area under the learning "
            f"curve the best strategy is {by_area}, {area_ratio:.2f}x random's."
        )
    else:
        goal = (
            f"- **Goal (best strategy <= 60% of random's labels): {'met' if ratio <= 0.6 else 'not met'}** - {best} "
            f"needs {best_mean:.0f} labels, {ratio:.0%} of random's {base:.0f}; by the area under the learning curve "
            f"the best is {by_area}, {area_ratio:.2f}x random's."
        )
    picked_rows = "\n".join(
        f"| {name} | {np.mean([sum(p['dark'] for p in r[2]) for r in runs[name]]):.1f} | "
        f"{np.mean([sum(p['triangles'] for p in r[2]) for r in runs[name]]):.1f} |"
        for name in strategies
    )
    n_picked = args.max_labels - args.initial
    command = "`.venv/bin/python bench/active_learning_detection.py" + "".join(
        f" {a}" for a in sys.argv[1:] if a not in ("--no-docs",)
    ) + "`"
    block = (
        f"Command: {command} ({total:.0f} s on {os.cpu_count()} cores, {threads()} torch thread(s), Python "
        f"{platform.python_version()}, torch {torch.__version__}, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; load average "
        f"{load_before} before / {load_after} after; {bench.trainings} trainings, {bench.train_seconds:.0f} s of them).\n\n"
        f"Synthetic shapes 128x96 (`winnow.synthetic.generate`): {describe}. In the pool, images holding a triangle "
        f"were kept with probability {args.rare:g} (triangles are rare) and {args.dark:.0%} of the images are "
        f"under-exposed (pixels x 0.2-0.35); the test set has the generator's own class mix. {len(seeds)} seed(s): "
        f"{args.initial} random labels to start, batches of {args.batch} picked by `winnow.select.select` (winnow's "
        f"defaults), up to {args.max_labels} labels; after each batch `ssdlite` is retrained from scratch at "
        f"{args.image_size} px for {args.steps} steps of batch {BATCH_SIZE} (AdamW, lr 1e-3). Uncertainty from the "
        f"model's box scores (`detection_uncertainty`), embeddings `classical`. Target: test mAP50 >= {target:.3f}, "
        f"{args.target_fraction:.0%} of the same recipe on the whole pool ({np.mean(full):.3f} on average, "
        f"{min(full):.3f}-{max(full):.3f}).\n\n"
        f"{table}\n\n"
        f"What the strategies picked ({n_picked} images each, mean over seeds; the pool is "
        f"{pool.dark.mean():.0%} dark, {objects[classes.index('triangle')] / len(pool):.2f} triangles per image):\n\n"
        f"| strategy | dark images picked | triangles in the picks |\n|---|---|---|\n{picked_rows}\n\n"
        f"{goal}\n"
        "- Learning curves: `docs/img/active_learning_detection.png` (mean over seeds, band = min-max)."
    )
    print()
    print(block)
    plot(curves, counts, target, args.plot, title="Active learning on synthetic shapes (ssdlite, from scratch)",
         ylabel="test mAP50 (mean over seeds)", bands=True)
    print(f"\nplot: {args.plot}")
    if not args.no_docs:
        write_block(args.docs, BEGIN, END, block, heading="## Active learning")
        print(f"docs: {args.docs}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
