#!/usr/bin/env python
"""Benchmark: winnow's COCO evaluation against pycocotools (and torchmetrics when installed).

    .venv/bin/python bench/eval.py [--images 5000] [--predictions 50000] [--repeat 3] [--docs docs/benchmarks.md]

A COCO detection set is generated once, deterministically, and cached under ``--out``: ``--images``
images of 640x480 with 10 categories, ~8 objects per image (log-uniform sizes, so small, medium and
large are all present; 2% crowd regions), and exactly ``--predictions`` predictions: a jittered box
for most objects (some with the wrong class, some badly localised, some duplicated), the rest false
positives, scores drawn higher for the good ones. Then every contender runs in a fresh process on
the same two files, and the *whole process* is timed from outside (interpreter start, imports,
reading the JSON, evaluating, summarising):

* ``winnow``: :func:`winnow.services.evaluation.evaluate_files` - what ``winnow eval --gt --predictions
  --json`` runs (validation, the COCO engine, per-class AP, PR curves, confusion matrix, error lists);
* ``winnow --slices``: the same plus mAP50 per class and box size with bootstrap intervals;
* ``faster-coco-eval``: its ``COCO``/``COCOeval_faster`` alone (winnow's engine, no extras);
* ``pycocotools``: ``COCO`` + ``loadRes`` + ``COCOeval.evaluate/accumulate/summarize``;
* ``torchmetrics``: ``MeanAveragePrecision`` (pycocotools backend) when importable, else skipped.

Each contender prints its 12 stats; the table gives the best wall time of ``--repeat`` rounds, the
ratio to pycocotools and the largest absolute difference of the 12 stats from pycocotools'.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from _docs import write_block  # bench/ is on sys.path when a script runs

REPO = Path(__file__).resolve().parent.parent
SEED = 2027
RESULT_TAG = "BENCH-RESULT "
CLASSES = ("person", "car", "bicycle", "dog", "cat", "bus", "truck", "bird", "boat", "chair")
W, H = 640, 480


# --------------------------------------------------------------------------- the data


def generate(root: Path, n_images: int, n_predictions: int, seed: int = SEED) -> tuple[Path, Path]:
    """Write (once) ``gt.json`` and ``predictions.json`` under ``root``; deterministic."""
    import numpy as np

    gt_path, pred_path = root / "gt.json", root / "predictions.json"
    marker = root / ".complete"
    params = {"images": n_images, "predictions": n_predictions, "seed": seed, "v": 2}
    if marker.is_file() and json.loads(marker.read_text()) == params:
        return gt_path, pred_path
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    k = len(CLASSES)
    per_image = rng.poisson(8, size=n_images)
    n_gt = int(per_image.sum())
    img = np.repeat(np.arange(n_images), per_image)
    side = np.exp(rng.uniform(np.log(6), np.log(400), size=(n_gt, 2)))
    side = np.minimum(side, [W - 1, H - 1])
    xy = rng.uniform(0, 1, size=(n_gt, 2)) * ([W, H] - side)
    cat = rng.integers(0, k, size=n_gt)
    crowd = rng.random(n_gt) < 0.02
    images = [{"id": i + 1, "file_name": f"img_{i:06d}.jpg", "width": W, "height": H} for i in range(n_images)]
    boxes = np.concatenate([xy, side], axis=1).round(2)
    annotations = [
        {
            "id": a + 1,
            "image_id": int(img[a]) + 1,
            "category_id": int(cat[a]) + 1,
            "bbox": boxes[a].tolist(),
            "area": float(boxes[a, 2] * boxes[a, 3]),
            "iscrowd": int(crowd[a]),
            "segmentation": [],
        }
        for a in range(n_gt)
    ]
    # predictions: most objects detected (jittered), some twice, some with the wrong class
    detected = rng.random(n_gt) < 0.9
    twice = detected & (rng.random(n_gt) < 0.05)
    src = np.concatenate([np.flatnonzero(detected), np.flatnonzero(twice)])
    if len(src) > n_predictions:
        src = rng.choice(src, size=n_predictions, replace=False)
    jitter = rng.normal(0, 1, size=(len(src), 4)) * np.array([0.05, 0.05, 0.06, 0.06]) * np.repeat(boxes[src, 2:], 2, axis=1)
    bad_loc = rng.random(len(src)) < 0.08
    jitter[bad_loc] *= 5
    tp_boxes = boxes[src] + jitter
    tp_boxes[:, 2:] = np.maximum(tp_boxes[:, 2:], 1.0)
    tp_cat = np.where(rng.random(len(src)) < 0.92, cat[src], rng.integers(0, k, size=len(src)))
    tp_score = rng.beta(5, 2, size=len(src))
    n_fp = n_predictions - len(src)
    fp_img = rng.integers(0, n_images, size=n_fp)
    fp_side = np.exp(rng.uniform(np.log(6), np.log(300), size=(n_fp, 2)))
    fp_xy = rng.uniform(0, 1, size=(n_fp, 2)) * ([W, H] - fp_side)
    fp_boxes = np.concatenate([fp_xy, fp_side], axis=1)
    fp_cat = rng.integers(0, k, size=n_fp)
    fp_score = rng.beta(2, 5, size=n_fp)
    p_img = np.concatenate([img[src], fp_img])
    p_box = np.concatenate([tp_boxes, fp_boxes]).round(2)
    p_cat = np.concatenate([tp_cat, fp_cat])
    p_score = np.concatenate([tp_score, fp_score]).round(5)
    order = rng.permutation(len(p_img))
    predictions = [
        {"image_id": int(p_img[j]) + 1, "category_id": int(p_cat[j]) + 1, "bbox": p_box[j].tolist(), "score": float(p_score[j])}
        for j in order.tolist()
    ]
    gt = {
        "info": {"description": "winnow bench/eval.py", "seed": seed},
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": [{"id": c + 1, "name": name, "supercategory": ""} for c, name in enumerate(CLASSES)],
    }
    gt_path.write_text(json.dumps(gt))
    pred_path.write_text(json.dumps(predictions))
    marker.write_text(json.dumps(params))
    return gt_path, pred_path


# --------------------------------------------------------------------------- contenders (child processes)

_WINNOW = """
import json, sys
from winnow.services.evaluation import evaluate_files
report = evaluate_files(sys.argv[1], sys.argv[2], "bbox", slices={slices})
d = report.as_dict()
print("{tag}" + json.dumps({{"stats": d["stats"], "version": "", "extra": {{"worst": [s["name"] for s in (d["slices"] or {{}}).get("worst_slices", [])][:3]}}}}))
"""

_PYCOCOTOOLS = """
import contextlib, io, json, sys
import pycocotools
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
with contextlib.redirect_stdout(io.StringIO()):
    gt = COCO(sys.argv[1])
    dt = gt.loadRes(sys.argv[2])
    ev = COCOeval(gt, dt, "bbox")
    ev.evaluate(); ev.accumulate(); ev.summarize()
print("{tag}" + json.dumps({{"stats": [float(x) for x in ev.stats[:12]], "version": getattr(pycocotools, "__version__", "")}}))
"""

_FASTER = """
import json, sys
import faster_coco_eval
from faster_coco_eval import COCO, COCOeval_faster
gt = COCO(sys.argv[1])
dt = gt.loadRes(sys.argv[2])
ev = COCOeval_faster(gt, dt, "bbox", print_function=lambda *a, **k: None)
ev.evaluate(); ev.accumulate(); ev.summarize()
print("{tag}" + json.dumps({{"stats": [float(x) for x in ev.stats[:12]], "version": faster_coco_eval.__version__}}))
"""

_TORCHMETRICS = """
import json, sys
from collections import defaultdict
import torch, torchmetrics
from torchmetrics.detection import MeanAveragePrecision
gt = json.load(open(sys.argv[1])); preds = json.load(open(sys.argv[2]))
boxes, labels, crowd = defaultdict(list), defaultdict(list), defaultdict(list)
for a in gt["annotations"]:
    boxes[a["image_id"]].append(a["bbox"]); labels[a["image_id"]].append(a["category_id"]); crowd[a["image_id"]].append(a["iscrowd"])
pb, pl, ps = defaultdict(list), defaultdict(list), defaultdict(list)
for p in preds:
    pb[p["image_id"]].append(p["bbox"]); pl[p["image_id"]].append(p["category_id"]); ps[p["image_id"]].append(p["score"])
metric = MeanAveragePrecision(box_format="xywh", iou_type="bbox", backend="pycocotools")
P, T = [], []
for im in gt["images"]:
    i = im["id"]
    P.append({{"boxes": torch.tensor(pb[i], dtype=torch.float64).reshape(-1, 4), "scores": torch.tensor(ps[i], dtype=torch.float64), "labels": torch.tensor(pl[i], dtype=torch.long)}})
    T.append({{"boxes": torch.tensor(boxes[i], dtype=torch.float64).reshape(-1, 4), "labels": torch.tensor(labels[i], dtype=torch.long), "iscrowd": torch.tensor(crowd[i], dtype=torch.long)}})
metric.update(P, T)
r = metric.compute()
keys = ["map", "map_50", "map_75", "map_small", "map_medium", "map_large", "mar_1", "mar_10", "mar_100", "mar_small", "mar_medium", "mar_large"]
print("{tag}" + json.dumps({{"stats": [float(r[k]) for k in keys], "version": torchmetrics.__version__}}))
"""


def _available(module: str) -> str | None:
    """``None`` when ``module`` imports in this interpreter, else why not."""
    out = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True, check=False)
    if out.returncode == 0:
        return None
    return (out.stderr.strip().splitlines() or ["import failed"])[-1]


def run_child(code: str, gt: Path, pred: Path) -> tuple[float, dict]:
    env = dict(os.environ, PYTHONPATH=str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""))
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code, str(gt), str(pred)], capture_output=True, text=True, env=env, check=False)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"contender failed:\n{proc.stderr[-3000:]}")
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith(RESULT_TAG)][-1]
    return seconds, json.loads(line[len(RESULT_TAG):])


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=5000)
    p.add_argument("--predictions", type=int, default=50000)
    p.add_argument("--repeat", type=int, default=3, help="rounds; the fastest run of each contender counts")
    p.add_argument("--out", type=Path, default=REPO / "bench" / "out")
    p.add_argument("--docs", type=Path, default=None, help="write the results into this markdown file's eval section")
    args = p.parse_args(argv)

    root = args.out / f"eval-{args.images}x{args.predictions}"
    t0 = time.perf_counter()
    gt, pred = generate(root, args.images, args.predictions)
    print(f"data: {gt} ({gt.stat().st_size / 1e6:.1f} MB), {pred} ({pred.stat().st_size / 1e6:.1f} MB) in {time.perf_counter() - t0:.1f} s")

    contenders = [
        ("pycocotools", _PYCOCOTOOLS.format(tag=RESULT_TAG), "COCO(gt) + loadRes + evaluate/accumulate/summarize"),
        ("faster-coco-eval", _FASTER.format(tag=RESULT_TAG), "its COCO + COCOeval_faster alone (winnow's engine)"),
        ("winnow", _WINNOW.format(tag=RESULT_TAG, slices=False), "evaluate_files = `winnow eval --json`: validation, engine, per-class, PR, confusion matrix, errors"),
        ("winnow --slices", _WINNOW.format(tag=RESULT_TAG, slices=True), "the same + mAP50 per class and box size, 200 bootstrap resamples each"),
    ]
    skipped: dict[str, str] = {}
    why = _available("torchmetrics.detection")
    if why is None:
        contenders.append(("torchmetrics", _TORCHMETRICS.format(tag=RESULT_TAG), "MeanAveragePrecision (pycocotools backend), tensors built from the JSON"))
    else:
        skipped["torchmetrics"] = f"not run: not importable here ({why})"
        print(f"torchmetrics: skipped - {why}")

    load_before = os.getloadavg()[0]
    best: dict[str, float] = {}
    results: dict[str, dict] = {}
    for r in range(args.repeat):
        for name, code, _ in contenders:
            seconds, result = run_child(code, gt, pred)
            best[name] = min(best.get(name, float("inf")), seconds)
            results[name] = result
            print(f"round {r + 1}: {name}: {seconds:.2f} s")
    load_after = os.getloadavg()[0]

    ref = results["pycocotools"]["stats"]
    rows = []
    for name, _, what in contenders:
        diff = max(abs(a - b) for a, b in zip(results[name]["stats"], ref, strict=True))
        rows.append({"name": name, "version": results[name].get("version", ""), "seconds": best[name],
                     "ratio": best["pycocotools"] / best[name], "diff": diff, "what": what})
    print()
    print(f"{'contender':<20} {'seconds':>8} {'x pycocotools':>14} {'max |stat diff|':>16}")
    for row in rows:
        print(f"{row['name']:<20} {row['seconds']:>8.2f} {row['ratio']:>13.2f}x {row['diff']:>16.2e}")
    for name, reason in skipped.items():
        print(f"{name:<20} {reason}")
    print("\nstats (pycocotools):", " ".join(f"{v:.4f}" for v in ref))
    equal = all(row["diff"] <= 1e-4 for row in rows)
    fast = best["pycocotools"] / best["winnow"] >= 2
    print(f"equal to pycocotools (1e-4): {'yes' if equal else 'NO'}; winnow >= 2x pycocotools: {'yes' if fast else 'NO'}")
    if args.docs:
        write_docs(args, rows, skipped, ref, (load_before, load_after), gt, pred)
        print(f"wrote {args.docs}")
    return 0 if equal else 1


DOCS_BEGIN = "<!-- bench/eval.py: begin -->"
DOCS_END = "<!-- bench/eval.py: end -->"


def write_docs(args, rows, skipped, ref, load, gt: Path, pred: Path) -> None:
    """Replace the results block of ``args.docs`` (between the markers; appended when missing)."""
    lines = [
        (
            f"Generated by `.venv/bin/python bench/eval.py --images {args.images} --predictions {args.predictions} "
            f"--repeat {args.repeat} --docs {args.docs}` on {time.strftime('%Y-%m-%d %H:%M')} UTC: {os.cpu_count()} cores, "
            f"Python {platform.python_version()}, load average {load[0]:.1f} before / {load[1]:.1f} after. "
            f"Ground truth {gt.stat().st_size / 1e6:.1f} MB, predictions {pred.stat().st_size / 1e6:.1f} MB. "
            f"Whole process (interpreter start, imports, JSON, evaluation, summary), best of {args.repeat}."
        ),
        "",
        "| contender | seconds | × pycocotools (speed) | max abs diff of the 12 stats vs pycocotools | what is timed |",
        "| --- | ---: | ---: | ---: | --- |",
    ]
    for r in rows:
        name = r["name"] + (f" {r['version']}" if r.get("version") else "")
        lines.append(f"| {name} | {r['seconds']:.2f} | {r['ratio']:.2f}x | {r['diff']:.1e} | {r['what']} |")
    for name, reason in skipped.items():
        lines.append(f"| {name} | {reason} | | | |")
    lines += ["", "pycocotools' stats: " + ", ".join(f"{v:.4f}" for v in ref) + "."]
    write_block(args.docs, DOCS_BEGIN, DOCS_END, "\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
