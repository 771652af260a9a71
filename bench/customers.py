#!/usr/bin/env python
"""Benchmark: a model per customer (issue 8) - base model vs fine-tuned customer model on each customer's test set.

    .venv/bin/python bench/customers.py [--threads 1] [--base-images 360] [--own 30] [--test 50]
        [--epochs 6] [--ft-epochs 6] [--base-mix 0.25] [--retry-epochs 6] [--retry-base-mix 0.1] [--quick]
        [--out bench/out/customers] [--docs docs/benchmarks.md]

On the built-in synthetic data (:func:`winnow.synthetic.generate`), on a fresh store:

1. **Base**: ``--base-images`` images of the default look, one version (split
   train/valid/test 0.75/0.10/0.15, the demo's augmentation), and the base model trained with the
   demo's settings (SSDlite width 1.0 at 192 px, 6 epochs, batch 8, random init).
2. **Three customers**, each forked from ``base@v1`` into its own workspace
   (:func:`winnow.services.forks.fork_project`), whose images differ from the base's:
   ``stripes`` (light striped backgrounds), ``washed-out`` (over-exposed, low-contrast lighting),
   ``far-camera`` (small objects). Each imports ``--own`` labelled images of its domain for
   training (about 10% of the base's train+valid images) and a fixed test set of ``--test``
   images of its domain, makes a version (its own images plus the base's inherited non-test
   images), and fine-tunes from the base model (``train_model(init_from=<base model>,
   base_mix=--base-mix)``: the base's weights, all of its own images and that fraction of the
   inherited train images).
3. **Per customer**, through the fleet view (:func:`winnow.services.fleet.fleet`): the base model
   and the customer model on the customer's test set, mAP50 overall and the worst slice, the
   labels the customer added (own train images and boxes vs the base version's) and whether the
   goal is met: the customer model beats the base model with at most 10% of the base's labels.
4. A customer whose model does not beat the base model is fine-tuned once more with one change
   (``--retry-epochs`` and/or ``--retry-base-mix``; by default the base mix, 0.1 instead of
   0.25: more of each batch from the customer's own images); both runs are reported.

The fleet is called once more at the end to time a call that reads every evaluation from the
cache. Results: a table on stdout, ``<out>/customers.json`` and ``<out>/customers.md``; ``--docs``
writes the table into docs/benchmarks.md between the ``bench:customers`` markers.
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

BEGIN, END = "<!-- bench:customers:begin -->", "<!-- bench:customers:end -->"
HEADING = "## Customer models (`bench/customers.py`, issue 8)"
AUGMENT = "outputs=1,flip=h,rotate=10,brightness=0.2,contrast=0.2,blur=1"  # the demo's (services/demo.py)
BASE_SPLIT = "train=0.75,valid=0.1,test=0.15"
#: Each customer's domain (keyword options of :func:`winnow.synthetic.generate`), by ``--shift``.
#: ``mild``: shifts the base model already handles (0.94-0.97 mAP50 on two of them); ``strong``:
#: a night camera (the demo's dark edge case) and cluttered backgrounds in the shapes' colour range.
SHIFTS = {
    "mild": {
        "stripes": {"background": (140, 220), "texture": "stripes"},
        "washed-out": {"brightness": (1.5, 1.8), "contrast": (0.35, 0.5)},
        "far-camera": {"object_scale": (3.0, 6.0)},
    },
    "strong": {
        "cluttered": {"background": (40, 230), "texture": "checker"},
        "night": {"brightness": (0.2, 0.35)},
        "far-camera": {"object_scale": (3.0, 6.0)},
    },
}
CUSTOMERS = dict(SHIFTS["mild"])
GOAL_SHARE = 0.10


def _load() -> str:
    return "/".join(f"{v:.1f}" for v in os.getloadavg())


def _timed(fn, *a, **k):
    t0 = time.perf_counter()
    out = fn(*a, **k)
    return out, time.perf_counter() - t0


def _import(store, project: str, workspace: str, root: Path, n_own: int, n_test: int, seed: int, domain: dict) -> None:
    """``n_own`` train images and ``n_test`` test images of the domain (different seeds, so different images)."""
    from winnow.services.ingest import import_records
    from winnow.synthetic import generate

    train = generate(root / "train", n_own, seed=seed, prefix=f"{project}-train", **domain)
    test = generate(root / "test", n_test, seed=seed + 1000, prefix=f"{project}-test", **domain)
    import_records(store, project, train, root / "train", workspace=workspace, split="train")
    import_records(store, project, test, root / "test", workspace=workspace, split="test")


def run(args) -> dict:
    from winnow.services import fleet as fleet_svc
    from winnow.services.forks import fork_project
    from winnow.services.ingest import import_records
    from winnow.services.projects import create_project
    from winnow.services.training import train_model
    from winnow.services.versions import create_version
    from winnow.store.db import Store
    from winnow.synthetic import generate

    home = args.out / "home"
    shutil.rmtree(home, ignore_errors=True)
    shutil.rmtree(args.out / "data", ignore_errors=True)
    started = time.perf_counter()
    load_before = _load()
    timings: dict[str, float] = {}
    store = Store.open(home)

    # 1. the base ----------------------------------------------------------------------------
    data = args.out / "data"
    base = generate(data / "base", args.base_images, seed=args.seed)
    create_project(store, "base", "detect")
    import_records(store, "base", base, data / "base")
    base_v = create_version(store, "base", split=BASE_SPLIT, seed=args.seed, augment=AUGMENT)
    hyper = {"image_size": args.image_size, "width": args.width, "batch_size": args.batch_size, "seed": args.seed}
    splits = ", ".join(f"{k} {v['images']}" for k, v in base_v.counts["splits"].items())
    print(f"base: {base_v.counts['images']} images ({splits}); training ssdlite {args.epochs} epochs at {args.image_size} px ...",
          flush=True)
    base_model, timings["base_train"] = _timed(
        train_model, store, "base", base_v.version, epochs=args.epochs, pretrained="no", name="base-model", **hyper
    )
    print(f"  base model {base_model.ref} in {timings['base_train']:.0f}s", flush=True)

    # 2. the customers -----------------------------------------------------------------------
    runs: dict[str, list[dict]] = {}
    for k, (name, domain) in enumerate(CUSTOMERS.items()):
        ws = f"{name}-ws"
        fork_project(store, "base", "v1", name, workspace=ws)
        _import(store, name, ws, data / name, args.own, args.test, seed=args.seed + 101 + k, domain=domain)
        create_version(store, name, workspace=ws, seed=args.seed, augment=AUGMENT)
        model, seconds = _timed(
            train_model, store, name, None, workspace=ws, init_from=base_model.model, base_mix=args.base_mix,
            epochs=args.ft_epochs, batch_size=args.batch_size, seed=args.seed, name=f"{name}-ft{args.ft_epochs}",
        )
        timings[f"{name}_train"] = seconds
        runs[name] = [{"model": model.name, "ref": model.ref, "epochs": args.ft_epochs, "base_mix": args.base_mix,
                       "train_seconds": round(seconds, 1), "mix": model.metrics.get("mix")}]
        print(f"{name}: fine-tuned {model.ref} ({args.ft_epochs} epochs, base mix {args.base_mix}) in {seconds:.0f}s", flush=True)

    # 3. the fleet: base vs customer model on each customer's test set -------------------------
    first, timings["fleet_1"] = _timed(fleet_svc.fleet, store, "base")
    for c in first["customers"]:
        runs[c["project"]][0].update(_scores(c))

    # 4. one change for a customer whose model does not beat the base ------------------------
    retried = [c["project"] for c in first["customers"] if c["verdict"] != fleet_svc.CUSTOMISED]
    doc = first
    retry_mix = args.base_mix if args.retry_base_mix is None else args.retry_base_mix
    if retried and args.retry_epochs:
        for name in retried:
            ws = f"{name}-ws"
            model, seconds = _timed(
                train_model, store, name, None, workspace=ws, init_from=base_model.model, base_mix=retry_mix,
                epochs=args.retry_epochs, batch_size=args.batch_size, seed=args.seed,
                name=f"{name}-ft{args.retry_epochs}-mix{retry_mix}",
            )
            timings[f"{name}_retrain"] = seconds
            runs[name].append({"model": model.name, "ref": model.ref, "epochs": args.retry_epochs, "base_mix": retry_mix,
                               "train_seconds": round(seconds, 1), "mix": model.metrics.get("mix")})
            print(f"{name}: retried with {args.retry_epochs} epochs, base mix {retry_mix}: {model.ref} in {seconds:.0f}s", flush=True)
        doc, timings["fleet_2"] = _timed(fleet_svc.fleet, store, "base")
        for c in doc["customers"]:
            if c["project"] in retried:
                runs[c["project"]][-1].update(_scores(c))
    cached, timings["fleet_cached"] = _timed(fleet_svc.fleet, store, "base")
    wall = time.perf_counter() - started

    customers = []
    for c in doc["customers"]:
        labels = c["labels"]
        box_share = labels["own_train_boxes"] / labels["base_train_boxes"] if labels["base_train_boxes"] else None
        final = runs[c["project"]][-1]
        customers.append({
            "customer": c["project"], "workspace": c["workspace"], "domain": CUSTOMERS[c["project"]],
            "labels": labels, "box_share": round(box_share, 4) if box_share is not None else None,
            "test_images": c["test_images"], "base_score": c["base_score"], "base_worst_slice": c["base_worst_slice"],
            "runs": runs[c["project"]], "verdict": c["verdict"],
            "goal_met": bool(final.get("verdict") == fleet_svc.CUSTOMISED and labels["share"] is not None
                             and labels["share"] <= GOAL_SHARE),
        })
    store.close()
    return {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "wall_seconds": round(wall, 1),
        "load_before": load_before,
        "load_after": _load(),
        "timings": {k: round(v, 2) for k, v in timings.items()},
        "fleet_evaluations": {"first": first["evaluations"], "last": doc["evaluations"], "cached": cached["evaluations"]},
        "settings": {
            "base_images": args.base_images, "base_split": BASE_SPLIT, "augment": AUGMENT, "own": args.own, "test": args.test,
            "epochs": args.epochs, "ft_epochs": args.ft_epochs, "retry_epochs": args.retry_epochs, "base_mix": args.base_mix,
            "retry_base_mix": retry_mix,
            "image_size": args.image_size, "width": args.width, "batch_size": args.batch_size, "seed": args.seed,
            "threads": os.environ.get("WINNOW_THREADS", "all"), "domains": CUSTOMERS,
        },
        "base": {"version": base_v.version, "counts": base_v.counts, "model": base_model.ref,
                 "train_seconds": round(timings["base_train"], 1), "valid_map50": base_model.metrics.get("map50")},
        "customers": customers,
        "goal_met": all(c["goal_met"] for c in customers),
    }


def _scores(c: dict) -> dict:
    return {"score": c["score"], "worst_slice": c["worst_slice"], "base_score": c["base_score"], "delta": c["delta"],
            "verdict": c["verdict"]}


def _f(v) -> str:
    return "-" if v is None else f"{v:.3f}"


def _worst(s) -> str:
    return "-" if not s else f"{s['name']} {_f(s['score'])} ({s['images']})"


def markdown(result: dict, command: str) -> str:
    import torch

    s = result["settings"]
    counts = result["base"]["counts"]["splits"]
    lines = [
        f"Generated by `{command}` on {result['generated_at'][:16].replace('T', ' ')} UTC: {os.cpu_count()} cores, "
        f"{s['threads']} torch thread(s), Python {platform.python_version()}, torch {torch.__version__}; "
        f"load average {result['load_before']} before, {result['load_after']} after. "
        f"**Wall time {result['wall_seconds']:.0f} s** (base training {result['timings']['base_train']:.0f} s).",
        "",
        f"Settings: base {s['base_images']} images of the default look (" + ", ".join(f"{k} {v['images']}" for k, v in counts.items())
        + f"), the demo's augmentation (`{s['augment']}`); base model SSDlite width {s['width']} at {s['image_size']} px, "
        f"{s['epochs']} epochs, batch {s['batch_size']}, random init. Each customer: a fork of `base@v1` in its own workspace, "
        f"{s['own']} own labelled train images and a fixed test set of {s['test']} images of its domain; fine-tuned from the "
        f"base model (`init_from`) for {s['ft_epochs']} epochs with `base_mix={s['base_mix']}` (that share of the inherited "
        f"train images, all its own); a customer whose model did not beat the base model was fine-tuned again with "
        f"{s['retry_epochs']} epochs and `base_mix={s['retry_base_mix']}` (both runs shown). Seed {s['seed']}.",
        "",
        "| customer | domain | own labels (images / boxes) | share of base labels (images / boxes) | test images | base model mAP50 (worst slice) | customer model mAP50 (worst slice) | delta | goal met |",
        "| --- | --- | --- | --- | ---: | --- | --- | ---: | --- |",
    ]
    for c in result["customers"]:
        lb = c["labels"]
        domain = ", ".join(f"{k}={v}" for k, v in c["domain"].items())
        model_cells = "<br>".join(
            f"{r['epochs']} ep, mix {r['base_mix']}: {_f(r.get('score'))} ({_worst(r.get('worst_slice'))})" for r in c["runs"]
        )
        deltas = "<br>".join("-" if r.get("delta") is None else f"{r['delta']:+.3f}" for r in c["runs"])
        lines.append(
            f"| {c['customer']} | {domain} | {lb['own_train_images']} / {lb['own_train_boxes']} "
            f"| {100 * lb['share']:.1f}% / {100 * (c['box_share'] or 0):.1f}% of {lb['base_train_images']} / {lb['base_train_boxes']} "
            f"| {c['test_images']} | {_f(c['base_score'])} ({_worst(c['base_worst_slice'])}) | {model_cells} | {deltas} "
            f"| {'yes' if c['goal_met'] else '**no**'} |"
        )
    t = result["timings"]
    fe = result["fleet_evaluations"]
    trains = ", ".join(f"{k.replace('_train', '').replace('_retrain', ' (retry)')} {v:.0f} s" for k, v in t.items()
                       if k.endswith(("_train", "_retrain")) and k != "base_train")
    lines += [
        "",
        f"Fine-tune times: {trains}. The fleet view (`winnow fleet base`): first call {t['fleet_1']:.1f} s "
        f"({fe['first']['run']} evaluations), a call with every evaluation cached {t['fleet_cached']:.2f} s "
        f"({fe['cached']['cached']} read from the cache, {fe['cached']['run']} run). "
        f"Labels: the customer's own labelled train+valid images (and their boxes) against the base version's train+valid "
        f"images (boxes), the labels that trained each model; the test images are labelled too but only judge. "
        f"Goal (issue 8): each customer model beats the base model on its own test set with at most {GOAL_SHARE:.0%} of the base's labels: "
        + ("**met for every customer**." if result["goal_met"] else "**not met for every customer** (see the table)."),
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=None, help="WINNOW_THREADS for the run (default: every core)")
    parser.add_argument("--base-images", type=int, default=360)
    parser.add_argument("--own", type=int, default=28, help="own labelled train images per customer (<10%% of the base's 311)")
    parser.add_argument("--test", type=int, default=50, help="test images per customer")
    parser.add_argument("--epochs", type=int, default=6, help="base model epochs (the demo's)")
    parser.add_argument("--ft-epochs", type=int, default=6, help="fine-tune epochs")
    parser.add_argument("--retry-epochs", type=int, default=6, help="fine-tune epochs of the retry (0: no retry)")
    parser.add_argument("--retry-base-mix", type=float, default=0.1, help="base mix of the retry (default 0.1)")
    parser.add_argument("--base-mix", type=float, default=0.25)
    parser.add_argument("--image-size", type=int, default=192)
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--shift", choices=sorted(SHIFTS), default="mild", help="how far the customers' domains are from the base's")
    parser.add_argument("--quick", action="store_true", help="a tiny run (60 base images, 64 px, width 0.25) to check the script")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "customers")
    parser.add_argument("--docs", type=Path, default=None, help="write the results into this markdown file")
    args = parser.parse_args()
    if args.quick:
        args.base_images, args.own, args.test, args.epochs, args.ft_epochs, args.retry_epochs = 60, 6, 10, 2, 1, 2
        args.image_size, args.width, args.batch_size = 64, 0.25, 4
    CUSTOMERS.clear()
    CUSTOMERS.update(SHIFTS[args.shift])
    if args.threads:
        os.environ["WINNOW_THREADS"] = str(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    result = run(args)
    command = ".venv/bin/python bench/customers.py " + " ".join(sys.argv[1:])
    block = markdown(result, command.strip())
    print(block)
    (args.out / "customers.json").write_text(json.dumps(result, indent=1, default=str), encoding="utf-8")
    (args.out / "customers.md").write_text(block + "\n", encoding="utf-8")
    if args.docs:
        begin, end = (BEGIN, END) if args.shift == "mild" else (BEGIN.replace("customers", f"customers-{args.shift}"),
                                                                 END.replace("customers", f"customers-{args.shift}"))
        write_block(args.docs, begin, end, block, heading=HEADING if args.shift == "mild" else f"### {args.shift} shift")
        print(f"wrote {args.docs}")


if __name__ == "__main__":
    main()
