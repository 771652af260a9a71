#!/usr/bin/env python
"""Benchmark: time to a useful model on a CPU, with the default backends and random init.

    .venv/bin/python bench/train.py [--images 300] [--size 128x96] [--image-size 192[,320...]]
        [--epochs 40] [--budget 900] [--target 0.5] [--digits-target 0.9] [--digits-size 32]
        [--threads N] [--only detect|classify] [--out bench/out/train] [--docs docs/benchmarks.md]

* **detect**: ``--images`` generated images (:func:`winnow.synthetic.generate`, seed 0, 1-3
  shapes of 3 classes per image) imported as COCO, one version (``train=0.8,valid=0.2``,
  seed 0), then ``train_model`` with the default detector (``ssdlite``, full width, no
  pretrained weights: nothing is downloaded) at each ``--image-size``, evaluated on the valid
  split after every epoch.
  Reported: seconds from the start of ``train_model`` to the first epoch whose validation
  mAP50 >= ``--target`` (evaluation time included), or the best mAP50 reached within
  ``--budget`` seconds.
* **classify**: scikit-learn's ``digits`` (1,797 8x8 images, 10 classes, bundled with
  scikit-learn) upscaled to ``--digits-size`` pixels (bilinear), imported as class folders, one
  version (``train=0.8,valid=0.2``), then ``train_model`` with the default classifier
  (``mobilenet_v3_small``); time to validation accuracy >= ``--digits-target``.

Training stops at the target (or the budget); the model is then exported to ONNX, checked
against PyTorch and registered like any other (that time is reported apart). The learning-rate
schedule spans ``--epochs``, so stopping early leaves it mid-way.

Threads: ``--threads`` sets ``WINNOW_THREADS`` (default: every core). On a shared machine one
thread can be faster than two (spinning OpenMP threads on busy cores); the load average is
printed with the numbers.
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

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from _docs import write_block  # bench/ is on sys.path when a script runs


def _load() -> str:
    return "/".join(f"{v:.1f}" for v in os.getloadavg())


def _home(out: Path, name: str):
    from winnow.store.db import Store

    home = out / f"home-{name}"
    shutil.rmtree(home, ignore_errors=True)
    return Store.open(home)


def _train(store, project: str, version: str, *, metric: str, target: float, budget: float, **kwargs) -> dict:
    from winnow.services.training import train_model

    started = time.perf_counter()
    state = {"reached": None, "best": 0.0, "best_epoch": 0, "epochs": 0, "train_seconds": 0.0}

    def log(entry: dict) -> None:
        elapsed = time.perf_counter() - started
        value = (entry.get("valid") or {}).get(metric) or 0.0
        state["epochs"] = entry["epoch"]
        state["train_seconds"] = elapsed
        if value > state["best"]:
            state["best"], state["best_epoch"] = value, entry["epoch"]
        if state["reached"] is None and value >= target:
            state["reached"] = {"seconds": round(elapsed, 1), "epoch": entry["epoch"], "value": value}
        print(f"  epoch {entry['epoch']}: loss {entry['loss']:.4f}, {metric} {value:.4f}, {elapsed:.0f}s", flush=True)

    def stop(entry: dict) -> bool:
        value = (entry.get("valid") or {}).get(metric) or 0.0
        return value >= target or time.perf_counter() - started > budget

    summary = train_model(store, project, version, eval_every=1, log=log, stop=stop, **kwargs)
    total = time.perf_counter() - started
    state["total_seconds"] = round(total, 1)
    state["export_seconds"] = round(total - state["train_seconds"], 1)
    state["model"] = summary.model[:12]
    state["params"] = summary.params
    state["valid_images"] = summary.metrics["valid_images"]
    state["train_images"] = summary.metrics["train_images"]
    state["onnx_ok"] = summary.files["onnx"]["verified"]["ok"]
    return state


def bench_detect(args, out: Path, image_size: int) -> dict:
    from winnow.formats import get_format
    from winnow.services.ingest import import_dataset
    from winnow.services.projects import create_project
    from winnow.services.versions import create_version
    from winnow.synthetic import generate

    w, h = (int(v) for v in args.size.split("x"))
    src = out / f"shapes-{args.images}-{w}x{h}"
    if not (src / "coco").exists():
        ds = generate(src, args.images, seed=0, size=(w, h))
        get_format("coco").write(ds, src / "coco", lambda rec, path: path.write_bytes(rec.file.read_bytes()))
    store = _home(out, f"detect-{image_size}")
    create_project(store, "shapes", "detect")
    import_dataset(store, "shapes", src / "coco", format="coco")
    v = create_version(store, "shapes", split="train=0.8,valid=0.2", resplit=True, seed=0)
    print(f"detect: {args.images} images {w}x{h}, {v.counts['splits']['train']['images']} train / "
          f"{v.counts['splits']['valid']['images']} valid, ssdlite at {image_size}px", flush=True)
    return _train(
        store, "shapes", v.version, metric="map50", target=args.target, budget=args.budget,
        epochs=args.epochs, image_size=image_size, pretrained="no",
    )


def bench_classify(args, out: Path) -> dict:
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    from winnow.services.ingest import import_dataset
    from winnow.services.projects import create_project
    from winnow.services.versions import create_version

    size = args.digits_size
    src = out / f"digits-{size}"
    if not src.exists():
        digits = load_digits()
        for i, (pixels, label) in enumerate(zip(digits.images, digits.target, strict=True)):
            folder = src / str(label)
            folder.mkdir(parents=True, exist_ok=True)
            im = Image.fromarray(np.uint8(pixels * 255 / 16), "L").resize((size, size), Image.Resampling.BILINEAR)
            im.convert("RGB").save(folder / f"{i:04d}.png")
    store = _home(out, "classify")
    create_project(store, "digits", "classify")
    import_dataset(store, "digits", src, format="folders")
    v = create_version(store, "digits", split="train=0.8,valid=0.2", resplit=True, seed=0, near_duplicates=False)
    print(f"classify: digits {size}x{size}, {v.counts['splits']['train']['images']} train / "
          f"{v.counts['splits']['valid']['images']} valid, mobilenet_v3_small", flush=True)
    return _train(
        store, "digits", v.version, metric="accuracy", target=args.digits_target, budget=args.budget,
        epochs=args.digits_epochs, image_size=size, pretrained="no",
    )


def _row(task: str, what: str, r: dict, metric: str, target: float) -> str:
    reached = r["reached"]
    if reached:
        result = f"**{reached['seconds']} s** (epoch {reached['epoch']}, {metric} {reached['value']:.3f})"
    else:
        result = f"not reached in {r['train_seconds']:.0f} s; best {metric} {r['best']:.3f} (epoch {r['best_epoch']})"
    p = r["params"]
    return (
        f"| {task} | {what} | {r['train_images']} / {r['valid_images']} | {p['image_size']} | {p['batch_size']}, "
        f"{p['optimizer']} lr {p['lr']:g} | {metric} >= {target} | {result} | {r['export_seconds']} | "
        f"{'yes' if r['onnx_ok'] else 'no'} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--size", default="128x96")
    parser.add_argument("--image-size", default="192", help="detector input size(s), comma-separated")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--budget", type=float, default=900.0, help="seconds of training per task at most")
    parser.add_argument("--target", type=float, default=0.5, help="detection: validation mAP50 to reach")
    parser.add_argument("--digits-target", type=float, default=0.9)
    parser.add_argument("--digits-size", type=int, default=32)
    parser.add_argument("--digits-epochs", type=int, default=20)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--only", choices=("detect", "classify"), default=None)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "train")
    parser.add_argument("--docs", type=Path, default=None, help="write the results into this markdown file")
    args = parser.parse_args()
    if args.threads:
        os.environ["WINNOW_THREADS"] = str(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    load_before = _load()
    results = {}
    if args.only in (None, "detect"):
        for size in (int(v) for v in args.image_size.split(",")):
            results[f"detect-{size}"] = bench_detect(args, args.out, size)
    if args.only in (None, "classify"):
        results["classify"] = bench_classify(args, args.out)
    load_after = _load()
    print(json.dumps(results, indent=2, default=str))

    import torch

    from winnow.train.base import threads

    cmd = "bench/train.py " + " ".join(sys.argv[1:])
    lines = [
        (
            f"Generated by `.venv/bin/python {cmd.strip()}` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC: "
            f"{os.cpu_count()} cores, {threads()} torch thread(s), Python {platform.python_version()}, torch {torch.__version__}, "
            f"load average {load_before} before / {load_after} after. Random init (no pretrained weights), CPU only."
        ),
        "",
        "| task | data | train / valid images | input px | batch, optimizer | target | time to target | export + ONNX check + register, s | ONNX = PyTorch |",
        "| --- | --- | ---: | ---: | --- | --- | --- | ---: | --- |",
    ]
    for key, r in results.items():
        if key.startswith("detect"):
            lines.append(_row("detect (ssdlite)", f"synthetic shapes {args.size}, 3 classes", r, "mAP50", args.target))
    if "classify" in results:
        lines.append(
            _row("classify (mobilenet_v3_small)", f"digits {args.digits_size}x{args.digits_size}, 10 classes", results["classify"], "accuracy", args.digits_target)
        )
    block = "\n".join(lines)
    print(block)
    if args.docs is not None:
        write_block(
            args.docs, "<!-- bench/train.py: begin -->", "<!-- bench/train.py: end -->", block,
            heading="## `train.py`: time to a useful model (CPU)",
        )


if __name__ == "__main__":
    main()
