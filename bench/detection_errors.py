#!/usr/bin/env python
"""Benchmark: the detection label-error checks on planted errors, with a held-out model.

    .venv/bin/python bench/detection_errors.py [--images 240] [--per-kind 6] [--epochs 12]
        [--image-size 128] [--seed 0] [--threads N] [--out bench/out/detection_errors]
        [--docs docs/benchmarks.md]

The detection counterpart of ``bench/label_errors.py`` (classification). Data: ``--images``
generated shapes (:func:`winnow.synthetic.generate`, 96x72, 1-3 shapes of 3 classes) imported as
COCO; one version (``train=0.7,valid=0.3``), the default detector (``ssdlite``, random init) trained
``--epochs`` on its train split. Then, in distinct held-out (valid) images only, ``--per-kind``
errors of each kind are planted in the store (the model never saw these images nor their labels):

* missing: a labelled box deleted (found when a ``missing_box`` finding on that image predicts a
  box with IoU >= 0.3 with the deleted one);
* spurious: a box (10-20 px, random class) added where no label is;
* wrong class: a box's class changed to another;
* bad localisation: a box moved by 40% of its width and height (clipped to the image).

``run_checks`` runs the four checks with their defaults; per check, precision@N and recall@N are
over its N = ``--per-kind`` highest-scored findings, and "flagged" counts all its findings
(recall over all of them in brackets). The images left as generated are the clean background:
every finding there is a false positive or an error of the generator (overlapping shapes).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from _docs import write_block  # bench/ is on sys.path when a script runs

CHECKS = ("missing_box", "spurious_box", "wrong_class_box", "bad_localization")
KINDS = {"missing_box": "missing", "spurious_box": "spurious", "wrong_class_box": "wrong class", "bad_localization": "bad localisation"}


def _iou(a, b) -> float:
    a, b = np.asarray(a, float), np.asarray(b, float)
    inter = np.prod(np.clip(np.minimum(a[2:], b[2:]) - np.maximum(a[:2], b[:2]), 0, None))
    return float(inter / max(np.prod(a[2:] - a[:2]) + np.prod(b[2:] - b[:2]) - inter, 1e-9))


def build(args, out: Path):
    from winnow.formats import get_format
    from winnow.services.ingest import import_dataset
    from winnow.services.projects import create_project
    from winnow.services.training import train_model
    from winnow.services.versions import create_version
    from winnow.store.db import Store
    from winnow.synthetic import generate

    src = out / f"shapes-{args.images}-{args.seed}"
    if not (src / "coco").exists():
        ds = generate(src, args.images, seed=args.seed)
        get_format("coco").write(ds, src / "coco", lambda rec, path: path.write_bytes(rec.file.read_bytes()))
    home = out / "home"
    shutil.rmtree(home, ignore_errors=True)
    store = Store.open(home)
    create_project(store, "shapes", "detect")
    import_dataset(store, "shapes", src / "coco", format="coco")
    version = create_version(store, "shapes", split="train=0.7,valid=0.3", resplit=True, seed=1)
    t0 = time.perf_counter()
    model = train_model(store, "shapes", version.version, epochs=args.epochs, image_size=args.image_size,
                        batch_size=8, lr=3e-3, pretrained="no", name="det")
    return store, version, model, time.perf_counter() - t0


def plant(store, version_id: str, per_kind: int, seed: int) -> dict[str, list]:
    """Plant the errors in distinct held-out images; return the truth per check."""
    from sqlalchemy import select

    from winnow.services.datasets import load_dataset
    from winnow.services.versions import load_version
    from winnow.store import models as m

    rng = np.random.default_rng(seed + 1000)
    train = {r.sha256 for r in load_version(store, "shapes", version_id).manifest.images if r.split == "train"}
    held = [r for r in load_dataset(store, "shapes").images if r.sha256 not in train and r.annotations]
    order = rng.permutation(len(held))
    if len(held) < 4 * per_kind:
        raise SystemExit(f"only {len(held)} held-out images for {4 * per_kind} planted errors; raise --images")
    truth: dict[str, list] = {c: [] for c in CHECKS}
    with store.write() as session:
        classes = {c.name: c.id for c in session.scalars(select(m.ProjectClass))}
        names = list(classes)
        for n, idx in enumerate(order[: 4 * per_kind]):
            rec = held[int(idx)]
            kind = CHECKS[n // per_kind]
            ann = rec.annotations[int(rng.integers(len(rec.annotations)))]
            row = session.get(m.Annotation, ann.id)
            if kind == "missing_box":
                truth[kind].append((rec.name, ann.bbox))
                session.delete(row)
            elif kind == "wrong_class_box":
                row.class_id = classes[[c for c in names if c != ann.label][int(rng.integers(len(names) - 1))]]
                truth[kind].append(ann.id)
            elif kind == "bad_localization":
                x1, y1, x2, y2 = ann.bbox
                dx, dy = 0.4 * (x2 - x1) * rng.choice([-1, 1]), 0.4 * (y2 - y1) * rng.choice([-1, 1])
                dx = float(np.clip(dx, -x1, rec.width - x2))
                dy = float(np.clip(dy, -y1, rec.height - y2))
                row.x1, row.y1, row.x2, row.y2 = x1 + dx, y1 + dy, x2 + dx, y2 + dy
                truth[kind].append(ann.id)
            else:
                for _ in range(200):
                    s = float(rng.uniform(10, 20))
                    x, y = float(rng.uniform(0, rec.width - s)), float(rng.uniform(0, rec.height - s))
                    box = (x, y, x + s, y + s)
                    if all(_iou(box, a.bbox) == 0 for a in rec.annotations):
                        break
                new = m.Annotation(image_id=rec.id, class_id=classes[names[int(rng.integers(len(names)))]],
                                   x1=box[0], y1=box[1], x2=box[2], y2=box[3], polygon=None, rle=None, source="human",
                                   attributes={})
                session.add(new)
                session.flush()
                truth[kind].append(new.id)
    return truth


def measure(findings, truth, per_kind: int) -> dict[str, dict]:
    out = {}
    for check in CHECKS:
        mine = sorted((f for f in findings if f.check == check), key=lambda f: -f.score)

        def hit(f, t):
            if check == "missing_box":
                return f.images == [t[0]] and _iou(f.evidence["predicted_box"], t[1]) >= 0.3
            return t in f.annotations

        top = mine[:per_kind]
        found_top = sum(any(hit(f, t) for f in top) for t in truth[check])
        found_all = sum(any(hit(f, t) for f in mine) for t in truth[check])
        precise = sum(any(hit(f, t) for t in truth[check]) for f in top)
        out[check] = {
            "precision_at_n": precise / per_kind,
            "recall_at_n": found_top / per_kind,
            "recall_all": found_all / per_kind,
            "flagged": len(mine),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=240)
    parser.add_argument("--per-kind", type=int, default=6)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "detection_errors")
    parser.add_argument("--docs", type=Path, default=None)
    args = parser.parse_args()
    if args.threads:
        os.environ["WINNOW_THREADS"] = str(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    load_before = "/".join(f"{v:.1f}" for v in os.getloadavg())

    from winnow.quality.engine import run_checks

    store, version, model, train_s = build(args, args.out)
    truth = plant(store, version.version, args.per_kind, args.seed)
    t0 = time.perf_counter()
    report = run_checks(store, "shapes", only=list(CHECKS))
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    run_checks(store, "shapes", only=list(CHECKS))
    second = time.perf_counter() - t0
    res = measure(report.findings, truth, args.per_kind)
    valid = model.metrics["valid"]
    held = model.metrics["valid_images"]
    (args.out / "results.json").write_text(json.dumps({"results": res, "valid": valid, "train_s": train_s}, indent=2))

    import torch

    load_after = "/".join(f"{v:.1f}" for v in os.getloadavg())
    lines = [
        f"Generated by `.venv/bin/python bench/detection_errors.py --images {args.images} --per-kind {args.per_kind} "
        f"--epochs {args.epochs} --image-size {args.image_size} --seed {args.seed}` on "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC: {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"torch {torch.__version__}, load average {load_before} before / {load_after} after.",
        "",
        f"Model: ssdlite at {args.image_size} px, random init, {args.epochs} epochs on "
        f"{model.metrics['train_images']} train images ({train_s:.0f} s); on the {held} held-out images "
        f"mAP50 {valid['map50']:.3f}, mAP {valid['map']:.3f} (before planting). {args.per_kind} errors of each "
        f"kind planted in {4 * args.per_kind} distinct held-out images. Checks with default parameters: "
        f"first run {first:.1f} s (predictions + scores), second {second:.1f} s (cached predictions).",
        "",
        f"| check | planted | precision@{args.per_kind} | recall@{args.per_kind} | flagged (recall over all) |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    for check in CHECKS:
        r = res[check]
        lines.append(f"| `{check}` | {KINDS[check]} | {r['precision_at_n']:.2f} | {r['recall_at_n']:.2f} | "
                     f"{r['flagged']} ({r['recall_all']:.2f}) |")
    block = "\n".join(lines)
    print(block)
    if args.docs is not None:
        write_block(args.docs, "<!-- bench:detection_errors:begin -->", "<!-- bench:detection_errors:end -->", block,
                    heading="## Detection label errors (`bench/detection_errors.py`)")


if __name__ == "__main__":
    main()
