"""The demo: the whole data-centric loop on the built-in synthetic data (``winnow demo``,
``make demo``; no network, no download). See docs/demo.md for a walk through its output.

1. **Data**: a detection set of coloured shapes (:func:`winnow.synthetic.generate`) with the
   defects a real one has - exact and near duplicates (one across splits), a box out of bounds,
   a few wrong labels and missing boxes, class imbalance - and a rare edge case: dark
   (under-exposed) images, 4% of train/valid. The test split, fixed for the whole demo, holds
   enough of them (20%) to measure that slice.
2. **Clean**: import (format detected), export to every format and back, check (ranked findings,
   HTML report), apply the safe fixes, make version 1.
3. **Round 1**: train (SSDlite, random init), evaluate on the test split by slice (the health
   conditions such as ``dark`` are slices), re-check the labels with the model.
4. **Production**: deploy through the HTTP API (a real server in this process, on a free
   localhost port), send the production pool - richer in dark images - to ``predict`` with
   ``capture=true`` and camera/site/time, so the images land as ``unlabeled`` + ``captured`` with
   pre-labels.
5. **Select and label**: active learning (``hybrid``) picks a batch for the queue; a labeler
   submits the generator's ground truth (standing in for the labeling team) and a reviewer
   approves.
6. **Round 2**: version 2 (the new images go to train/valid only: the test split is held
   constant), retrain with the same recipe, evaluate on the same test images, print the
   before/after table per slice, deploy the new model when it is not worse.

Every run writes ``demo.json`` (the ``--json`` document) and ``demo.html`` (a self-contained
report) in its output folder.
"""

from __future__ import annotations

import json
import shutil
import socket
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from winnow.config import DEFAULT_WORKSPACE
from winnow.core.types import Task
from winnow.errors import NotFoundError, WinnowError
from winnow.formats import available, get_format
from winnow.formats.base import copy_from_file
from winnow.quality.engine import run_checks
from winnow.quality.report import write_html
from winnow.quality.view import ProjectView
from winnow.services.datasets import export_project, load_dataset
from winnow.services.fixes import apply_fixes
from winnow.services.ingest import import_dataset
from winnow.services.projects import create_project, delete_project, show_project
from winnow.services.versions import create_version, export_version, load_version
from winnow.store.db import Store
from winnow.synthetic import generate, generate_production, read_ground_truth

PROJECT = "demo-shapes"
ROUNDTRIP = "demo-shapes-roundtrip"
LABELER = "labeler@demo"
REVIEWER = "reviewer@demo"

#: The demo version's augmentation recipe (docs/versions.md).
DEMO_AUGMENT = "outputs=1,flip=h,rotate=10,brightness=0.2,contrast=0.2,blur=1"
#: The checks' parameters in the demo: the planted 4:1 class imbalance is reported (the default
#: ratio, 10, is for real projects' long tails).
CHECK_PARAMS = {"class_imbalance": {"max_ratio": 3.0}}
#: The checks that judge labels with a trained model (on the images it did not train on).
MODEL_CHECKS = ["missing_box", "wrong_class_box", "bad_localization", "spurious_box"]
#: Slice kinds the before/after table shows (tags and splits are the same images as "overall").
TABLE_KINDS = ("condition", "class", "size", "metadata")


@dataclass(frozen=True)
class DemoConfig:
    """Sizes of a demo run. :data:`FULL` is ``winnow demo``; :data:`QUICK` the tests' run."""

    images: int = 300  # the first dataset (before the planted copies)
    size: tuple[int, int] = (96, 72)  # image width, height in pixels
    max_objects: int = 3
    class_weights: tuple[float, float, float] = (4.0, 2.0, 1.0)  # circle, square, triangle
    dark_rate: float = 0.04  # share of dark images in train/valid
    test_dark: int = 12  # dark images in the (fixed) test split
    production: int = 200  # images sent to the inference API
    production_dark: float = 0.5  # share of dark images among them
    budget: int = 60  # images selected for labelling
    strategy: str = "uncertainty"  # see docs/demo.md: with budget 60 of 200, hybrid is pure diversity
    epochs: int = 6
    image_size: int = 192  # network input, pixels
    width: float = 1.0  # SSDlite width multiplier
    batch_size: int = 8
    augment: str = DEMO_AUGMENT
    seed: int = 7

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


FULL = DemoConfig()
QUICK = DemoConfig(images=60, test_dark=6, production=30, budget=12, epochs=2, image_size=64, width=0.25, batch_size=4)


def _fresh_project(store: Store, name: str, task: Task) -> None:
    try:
        delete_project(store, name)
    except NotFoundError:
        pass
    create_project(store, name, task)


# ----------------------------------------------------------------------------- the data


def _splits_and_dark(cfg: DemoConfig) -> tuple[list[str], list[int]]:
    """A 60/20/20 split by index (as a COCO export would carry it) and the dark images: each
    train/valid image with probability ``dark_rate``, ``test_dark`` of the test images. Images
    0-3 carry the planted defects and are never dark."""
    splits = ["train" if i % 10 < 6 else ("valid" if i % 10 < 8 else "test") for i in range(cfg.images)]
    rng = np.random.default_rng([cfg.seed, 11])
    test = [i for i, s in enumerate(splits) if s == "test"]
    dark = set(int(i) for i in rng.choice(test, size=min(cfg.test_dark, len(test)), replace=False))
    draws = rng.random(cfg.images)
    dark |= {i for i, s in enumerate(splits) if s != "test" and i > 3 and draws[i] < cfg.dark_rate}
    return splits, sorted(dark)


def plant_defects(dataset, root: Path) -> dict[str, Any]:
    """Plant the defects a real dataset has, so the health checks have something to find.

    An exact copy under another name (same labels), a 1.5x resized copy of a train image put in
    the valid split (a near duplicate that leaks), a very dark image, a box that runs past the
    right edge of its image, and (when there are enough images) wrong classes on two boxes and
    a missing box on two images of the valid split, and the same in train.
    """
    from PIL import Image

    from winnow.core.types import Annotation, ImageRecord

    images = dataset.images
    original, resized, dark, wide = images[0], images[1], images[2], images[3]
    copy_path = root / "images" / "copy_of_first.png"
    shutil.copyfile(original.file, copy_path)
    images.append(ImageRecord(name="images/copy_of_first.png", width=original.width, height=original.height,
                              annotations=[Annotation(a.label, bbox=a.bbox) for a in original.annotations],
                              split=original.split, file=copy_path))
    scale = 1.5
    big = Image.open(resized.file).resize((round(resized.width * scale), round(resized.height * scale)), Image.Resampling.BICUBIC)
    big_path = root / "images" / "resized_second.png"
    big.save(big_path)
    images.append(ImageRecord(name="images/resized_second.png", width=big.width, height=big.height,
                              annotations=[Annotation(a.label, bbox=tuple(v * scale for v in a.bbox)) for a in resized.annotations],
                              split="valid" if resized.split != "valid" else "train", file=big_path))
    Image.eval(Image.open(dark.file).convert("RGB"), lambda v: v // 8).save(dark.file)
    x1, y1, x2, y2 = wide.annotations[0].bbox
    wide.annotations[0].bbox = (x1, y1, wide.width + 12.0, y2)
    planted: dict[str, Any] = {
        "exact_duplicate": "images/copy_of_first.png",
        "near_duplicate+split_leakage": "images/resized_second.png",
        "dark": dark.name,
        "box_out_of_bounds": wide.name,
    }
    # label noise, away from the first images and from the test split (kept clean to measure on)
    skip = {original.name, resized.name, dark.name, wide.name} | set(dataset.info.get("dark", []))
    wrong: list[str] = []
    missing: list[str] = []
    for split in ("valid", "train"):
        pool = [r for r in images[4:] if r.split == split and r.name not in skip]
        for rec in pool[:2]:
            ann = rec.annotations[0]
            others = [c for c in dataset.classes if c != ann.label]
            ann.label = others[len(wrong) % len(others)]
            wrong.append(rec.name)
        for rec in [r for r in pool[2:] if len(r.annotations) >= 2][:2]:
            rec.annotations.pop()
            missing.append(rec.name)
    if wrong:
        planted["wrong_class_box"] = wrong
    if missing:
        planted["missing_box"] = missing
    return planted


def sorted_rows(boxes):
    """Boxes in a canonical row order, to compare two sets regardless of order."""
    return boxes[np.lexsort(boxes.T[::-1])]


# ----------------------------------------------------------------------------- the HTTP API


class _Api:
    """A real winnow server on a free localhost port, in a thread of this process, and a tiny
    client (the standard library's ``urllib``) that talks to it with an API key."""

    def __init__(self, store: Store):
        import uvicorn

        from winnow.api.app import create_app
        from winnow.services.auth import create_key

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        self.key = create_key(store, DEFAULT_WORKSPACE, "admin", name=f"demo-loop-{port}", user="demo")
        config = uvicorn.Config(create_app(store), host="127.0.0.1", port=port, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="winnow-demo-api", daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise WinnowError("the demo's API server did not start")
            time.sleep(0.02)

    def call(self, method: str, path: str, body: Any = None, *, params: dict[str, str] | None = None,
             content_type: str = "application/json") -> dict[str, Any]:
        data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        req = urllib.request.Request(self.url + "/api/v1" + path + query, data=data, method=method)
        req.add_header("Authorization", f"Bearer {self.key.key}")
        if data is not None:
            req.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(req, timeout=120) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            raise WinnowError(f"{method} {path}: HTTP {exc.code}: {exc.read()[:300]!r}") from None

    def close(self, store: Store) -> None:
        from winnow.services.auth import revoke_key

        self.server.should_exit = True
        self.thread.join(15)
        revoke_key(store, str(self.key.id))  # the loop's key is not needed after the loop


def _send_pool(api: _Api, project: str, pool, threads: int = 4) -> list[dict[str, Any]]:
    """POST every production image to ``predict`` with ``capture=true`` and its metadata."""
    quoted = urllib.parse.quote(project, safe="")

    def one(rec) -> dict[str, Any]:
        params = {"capture": "true", **{k: str(v) for k, v in rec.metadata.items()}}
        doc = api.call("POST", f"/projects/{quoted}/predict", Path(rec.file).read_bytes(), params=params, content_type="image/png")
        return doc | {"source": rec.name}

    with ThreadPoolExecutor(threads) as ex:
        return list(ex.map(one, pool.images))


# ----------------------------------------------------------------------------- evaluation


def _round(evaluation, version, model, *, seconds: float) -> dict[str, Any]:
    """One round of the ``--json`` document from a model's evaluation."""
    sl = evaluation.report.slices
    slices = {
        s.name: {"kind": s.kind, "images": s.images, "objects": s.objects, "score": s.score,
                 "ci_low": s.ci_low, "ci_high": s.ci_high, "ranked": s.ranked}
        for s in sl.slices
        if s.score is not None
    }
    worst = sl.worst_slices[0] if sl.worst_slices else None
    return {
        "version": version.ref,
        "version_id": version.version,
        "version_number": version.number,
        "train_images": version.counts["splits"].get("train", {}).get("images", 0),
        "model": model.name,
        "model_id": model.model,
        "score": sl.overall,
        "metric": sl.metric,
        "test_images": len(evaluation.images),
        "worst_slice": None if worst is None else {"name": worst.name, "score": worst.score, "images": worst.images,
                                                   "significant": worst.significant},
        "slices": slices,
        "train_seconds": round(seconds, 1),
    }


def before_after(rounds: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The before/after rows (first round vs last): overall, then every ranked slice of the kinds
    in :data:`TABLE_KINDS`, worst first in the first round."""
    a, b = rounds[0], rounds[-1]
    rows = [{"slice": "overall", "images": a["test_images"], "before": a["score"], "after": b["score"]}]
    names = [n for n, s in a["slices"].items() if s["kind"] in TABLE_KINDS and s["ranked"] and n in b["slices"]]
    names.sort(key=lambda n: a["slices"][n]["score"])
    for n in names:
        size = a["slices"][n]["objects"] if a["slices"][n]["objects"] is not None else a["slices"][n]["images"]
        rows.append({"slice": n, "images": size, "before": a["slices"][n]["score"], "after": b["slices"][n]["score"]})
    for r in rows:
        r["delta"] = None if r["before"] is None or r["after"] is None else round(r["after"] - r["before"], 6)
    return rows


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _finding_dict(f) -> dict[str, Any]:
    return {"check": f.check, "severity": f.severity, "message": f.message, "images": f.images[:5], "score": round(f.score, 4)}


# ----------------------------------------------------------------------------- the demo


def run_demo(
    store: Store,
    out_dir: Path,
    *,
    config: DemoConfig | None = None,
    quick: bool = False,
    seed: int | None = None,
    echo: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run the demo loop and return its summary (the ``--json`` document, also written to
    ``out_dir/demo.json``; the report is ``out_dir/demo.html``). ``config`` defaults to
    :data:`QUICK` when ``quick`` else :data:`FULL`; ``seed`` replaces its seed."""
    cfg = config or (QUICK if quick else FULL)
    if seed is not None:
        cfg = replace(cfg, seed=seed)
    say = echo or (lambda _msg: None)
    started = time.perf_counter()
    timings: dict[str, float] = {}
    mark = [started]

    def lap(name: str) -> None:
        now = time.perf_counter()
        timings[name] = round(now - mark[0], 2)
        mark[0] = now

    out_dir = Path(out_dir).resolve()
    if out_dir.exists():
        shutil.rmtree(out_dir)
    source = out_dir / "source"

    # 1. the data -------------------------------------------------------------------------
    splits, dark_idx = _splits_and_dark(cfg)
    say(f"1. generating {cfg.images} synthetic images of shapes in {source} (seed {cfg.seed})")
    dataset = generate(source / "raw", cfg.images, seed=cfg.seed, size=cfg.size, max_objects=cfg.max_objects,
                       dark=dark_idx, class_weights=cfg.class_weights)
    for record, split in zip(dataset.images, splits, strict=True):
        record.split = split
    planted = plant_defects(dataset, source / "raw")
    dark_names = set(dataset.info.get("dark", [])) | {planted["dark"]}
    n_dark = {s: sum(1 for r in dataset.images if r.split == s and r.name in dark_names) for s in ("train", "valid", "test")}
    n_split = {s: sum(1 for r in dataset.images if r.split == s) for s in ("train", "valid", "test")}
    say("   edge case: dark images " + ", ".join(f"{n_dark[s]} of {n_split[s]} {s}" for s in n_split)
        + " (the test split holds enough to measure the slice)")
    say("   planted: " + ", ".join(f"{k} ({v if isinstance(v, str) else len(v)})" for k, v in planted.items()))
    coco_dir = source / "coco"
    get_format("coco").write(dataset, coco_dir, copy_from_file)
    lap("generate")

    say(f"2. importing {coco_dir} into project {PROJECT!r} (format detected)")
    _fresh_project(store, PROJECT, Task.DETECT)
    report = import_dataset(store, PROJECT, coco_dir, tags=["demo"])
    say(f"   {report.images_added} images, {report.annotations_added} annotations, format {report.format}")
    summary = show_project(store, PROJECT)
    peak = max(summary.class_counts.values(), default=1)
    for c in summary.classes:
        n = summary.class_counts[c]
        say(f"   {c:<10} {n:>5}  " + "#" * round(30 * n / peak))
    say("   splits: " + ", ".join(f"{k} {v}" for k, v in sorted(summary.splits.items())))

    exports: dict[str, Any] = {}
    for name in available():
        if Task.DETECT not in get_format(name).tasks:
            continue
        rep = export_project(store, PROJECT, out_dir / "exports" / name, name)
        exports[name] = {"images": rep.images, "annotations": rep.annotations, "seconds": rep.seconds}
    _fresh_project(store, ROUNDTRIP, Task.DETECT)
    back = import_dataset(store, ROUNDTRIP, out_dir / "exports" / "yolo")
    original = {Path(r.name).name: r.boxes() for r in load_dataset(store, PROJECT).images}
    again = {Path(r.name).name: r.boxes() for r in load_dataset(store, ROUNDTRIP).images}
    worst_px = 0.0
    for key, boxes in original.items():
        other = again.get(key)
        if other is None or other.shape != boxes.shape:
            worst_px = float("inf")
            break
        if len(boxes):
            worst_px = max(worst_px, float(abs(sorted_rows(boxes) - sorted_rows(other)).max()))
    say(f"3. exported to {', '.join(exports)}; the YOLO export imported back: {back.images_added} images, "
        f"largest box difference {worst_px:.1e} px")
    lap("import_export")

    # 2. clean ----------------------------------------------------------------------------
    say("4. checking data health (every check), worst findings first")
    view = ProjectView(store, PROJECT)
    health = run_checks(store, PROJECT, view=view, params=CHECK_PARAMS)
    hs = health.summary
    say(f"   {hs['findings']} findings on {hs['images_with_findings']} images in {hs['seconds']:.1f}s: "
        + ", ".join(f"{k} {v}" for k, v in sorted(hs["by_check"].items(), key=lambda kv: -kv[1]) if v))
    for f in health.findings[:8]:
        say(f"   [{f.severity}] {f.check}: {f.message}")
    html_path = write_html(health, view, out_dir / "health.html")
    say(f"   report: {html_path}")

    fixed = apply_fixes(store, PROJECT)
    say(f"5. safe fixes: removed {len(fixed.images_removed)} duplicate images, clipped {len(fixed.boxes_clipped)} boxes "
        f"(change {fixed.change_id}, undoable); {fixed.findings_skipped} findings left for review")

    v1 = create_version(store, PROJECT, seed=cfg.seed, augment=cfg.augment, name="demo-v1")
    sp = v1.splitting
    say(f"6. version {v1.ref} (v{v1.number}): "
        + ", ".join(f"{k} {c['images']}" for k, c in v1.counts["splits"].items())
        + f"; {sp['duplicate_groups']} duplicate groups kept in one split, {len(sp['moved'])} image(s) moved out of a leak"
        + (f" ({', '.join(sp['moved'])})" if sp["moved"] else "") + f"; recipe: augment {cfg.augment}")
    exported = export_version(store, PROJECT, v1.version, out_dir / "versions" / "demo-v1-yolo", "yolo")
    lap("check_fix_version")

    # 3. round 1 --------------------------------------------------------------------------
    from winnow.services.deploy import deployment
    from winnow.services.evaluation import evaluate_model
    from winnow.services.training import train_model

    hyper = {"epochs": cfg.epochs, "image_size": cfg.image_size, "width": cfg.width, "batch_size": cfg.batch_size,
             "seed": cfg.seed, "pretrained": "no"}
    test_v1 = sorted(r.name for r in load_version(store, PROJECT, v1.version).manifest.images if r.split == "test")

    def train_and_evaluate(version, n: int) -> tuple[dict[str, Any], Any]:
        t0 = time.perf_counter()
        say(f"   training ssdlite on {version.ref}: {version.counts['splits']['train']['images']} train images "
            f"(x{1 + version.recipe['augment'].get('outputs', 0)} with augmentation), {cfg.epochs} epochs at {cfg.image_size} px, random init")
        model = train_model(store, PROJECT, version.version, name=f"demo-model-{n}", **hyper,
                            log=lambda e: say(f"     epoch {e['epoch']}/{cfg.epochs}: loss {e['loss']:.3f} "
                                              f"({time.perf_counter() - t0:.0f}s)"))
        seconds = time.perf_counter() - t0
        evaluation = evaluate_model(store, model.model, PROJECT, v1.version, split="test")
        rnd = _round(evaluation, version, model, seconds=seconds)
        w = rnd["worst_slice"]
        say(f"   {model.name}: trained in {seconds:.0f}s; test mAP50 {rnd['score']:.3f} on {rnd['test_images']} images; "
            + (f"worst slice {w['name']} {w['score']:.3f} ({w['images']} images)" if w else "no slice below overall"))
        return rnd, model

    say("7. round 1: train, evaluate by slice on the test split")
    round1, model1 = train_and_evaluate(v1, 1)
    lap("round1")
    recheck = run_checks(store, PROJECT, only=MODEL_CHECKS, params={c: {"model": model1.model} for c in MODEL_CHECKS})
    rs = recheck.summary
    held_out = {r.name for r in load_version(store, PROJECT, v1.version).manifest.images if r.split != "train"}
    checkable = {k: sorted(set(v) & held_out) for k, v in planted.items() if k in MODEL_CHECKS}
    found_planted = {k: sorted({n for f in recheck.findings if f.check == k for n in f.images} & set(v)) for k, v in checkable.items()}
    say(f"   label check with {model1.name} on the images it did not train on: {rs['findings']} findings ("
        + ", ".join(f"{k} {v}" for k, v in sorted(rs["by_check"].items())) + "); planted and found: "
        + ", ".join(f"{k} {len(found_planted[k])} of {len(checkable[k])}" for k in found_planted)
        + " (the planted errors in train are not judged: the model learnt them)")
    lap("recheck")

    # 4. production -----------------------------------------------------------------------
    say(f"8. production: {cfg.production} images ({cfg.production_dark:.0%} dark, night shots) through the inference API")
    pool = generate_production(source / "production", cfg.production, seed=cfg.seed + 1000, size=cfg.size,
                               max_objects=cfg.max_objects, dark_fraction=cfg.production_dark, class_weights=cfg.class_weights)
    truth_by_name = read_ground_truth(source / "production" / "ground_truth.json")
    pool_dark = set(pool.info.get("dark", []))
    api = _Api(store)
    try:
        quoted = urllib.parse.quote(PROJECT, safe="")
        api.call("POST", f"/projects/{quoted}/deploy", {"model": model1.model})
        api.call("PUT", f"/projects/{quoted}/capture", {"mode": "client"})
        say(f"   deployed {model1.name} and set the capture policy to 'client' through {api.url}/api/v1")
        t0 = time.perf_counter()
        responses = _send_pool(api, PROJECT, pool)
        sent_seconds = time.perf_counter() - t0
        captured = {r["image"]: r["source"] for r in responses if r.get("captured")}
        say(f"   {len(responses)} predict requests in {sent_seconds:.1f}s; {len(captured)} images captured as "
            "unlabeled + captured, with the model's boxes as pre-labels")
        lap("production")

        # 5. select and label -------------------------------------------------------------
        from winnow.services.queue import next_item, review, submit
        from winnow.services.selection import select_images

        sel = select_images(store, PROJECT, budget=cfg.budget, strategy=cfg.strategy, model=model1.model,
                            seed=cfg.seed, batch_name="demo-round-1", user="demo")
        picked = [p["image"] for p in sel.picked]
        picked_dark = sum(1 for n in picked if captured.get(n) in pool_dark)
        say(f"9. active learning ({cfg.strategy}) picked {len(picked)} of {sel.candidates} captured images "
            f"for batch {sel.batch['name'] if sel.batch else '-'}: {picked_dark} dark "
            f"({picked_dark / max(1, len(picked)):.0%}; {len(pool_dark) / max(1, len(pool.images)):.0%} of the pool)")
        labelled = reviewed = 0
        boxes_changed = 0
        while sel.batch and (item := next_item(store, PROJECT, sel.batch["name"], user=LABELER)) is not None:
            truth = truth_by_name[captured[item.image]]
            anns = [{"label": a.label, "bbox": list(a.bbox)} for a in truth]
            boxes_changed += abs(len(anns) - len(item.prelabels or []))
            submit(store, PROJECT, item.id, decision="corrected", annotations=anns, user=LABELER)
            labelled += 1
            review(store, PROJECT, item.id, approve=True, user=REVIEWER)
            reviewed += 1
        say(f"   {LABELER} labelled {labelled} images (the generator's ground truth stands in for the labeling team), "
            f"{REVIEWER} approved {reviewed}")
        lap("select_label")

        # 6. round 2 ----------------------------------------------------------------------
        v2 = create_version(store, PROJECT, seed=cfg.seed, augment=cfg.augment, split="train=0.8,valid=0.2", name="demo-v2")
        manifest2 = load_version(store, PROJECT, v2.version).manifest
        test_v2 = sorted(r.name for r in manifest2.images if r.split == "test")
        in_v2 = {r.name for r in manifest2.images}
        joined = sorted(set(test_v2) - set(test_v1))
        say(f"10. version {v2.ref} (v{v2.number}): " + ", ".join(f"{k} {c['images']}" for k, c in v2.counts["splits"].items())
            + f"; {sum(1 for n in picked if n in in_v2)} reviewed images added; the {len(test_v1)} test images of v1 "
            + ("are its test split" if test_v2 == test_v1 else "are all in its test split" if set(test_v1) <= set(test_v2) else "MOVED")
            + (f" (+{len(joined)} new image(s) kept in test as near duplicates of test images)" if joined else ""))
        say("11. round 2: retrain with the same recipe, evaluate on the same test images")
        round2, model2 = train_and_evaluate(v2, 2)
        lap("round2")
        better = (round2["score"] or 0) >= (round1["score"] or 0)
        if better:
            api.call("POST", f"/projects/{quoted}/deploy", {"model": model2.model})
        active = deployment(store, PROJECT)
        say(f"   {'deployed ' + model2.name if better else 'kept ' + model1.name + ' deployed (the new model is worse overall)'}"
            f" (active: {active.name})")
    finally:
        api.close(store)

    rounds = [round1, round2]
    table = before_after(rounds)
    target = round1["worst_slice"]
    target_doc = None
    if target is not None:
        after = round2["slices"].get(target["name"], {}).get("score")
        target_doc = {"name": target["name"], "before": target["score"], "after": after,
                      "improved": after is not None and after > target["score"]}
    say(f"12. before/after on the same {round1['test_images']} test images (mAP50):")
    say(f"   {'slice':<26} {'n':>4} {'before':>7} {'after':>7} {'change':>7}")
    for r in table:
        change = "" if r["delta"] is None else f"{r['delta']:+.3f}"
        say(f"   {r['slice']:<26} {r['images']:>4} {_num(r['before']):>7} {_num(r['after']):>7} {change:>7}")
    if target_doc:
        say(f"   the worst slice of round 1, {target_doc['name']}: {target_doc['before']:.3f} -> "
            f"{target_doc['after'] if target_doc['after'] is None else round(target_doc['after'], 3)}")

    seconds = round(time.perf_counter() - started, 2)
    doc: dict[str, Any] = {
        "project": summary.as_dict(),
        "config": cfg.as_dict(),
        "import": report.as_dict(),
        "exports": exports,
        "roundtrip": {"format": "yolo", "images": back.images_added, "max_box_error_px": worst_px},
        "health": hs,
        "planted": planted,
        "findings": {
            "total": hs["findings"],
            "by_check": hs["by_check"],
            "top": [_finding_dict(f) for f in health.findings[:10]],
            "planted": planted,
            "after_training": {"model": model1.name, "by_check": rs["by_check"], "planted_checkable": checkable,
                               "planted_found": found_planted},
        },
        "fix": fixed.as_dict(),
        "version": v1.as_dict() | {"export": exported.as_dict()},
        "edge_case": {"slice": "condition:dark", "train": n_dark["train"], "valid": n_dark["valid"], "test": n_dark["test"],
                      "production": len(pool_dark), "production_images": len(pool.images)},
        "production": {"sent": len(responses), "captured": len(captured), "seconds": round(sent_seconds, 2)},
        "selection": {"strategy": cfg.strategy, "batch": sel.batch["name"] if sel.batch else None, "candidates": sel.candidates,
                      "picked": picked, "picked_dark": picked_dark, "notes": sel.notes},
        "labeling": {"labeler": LABELER, "reviewer": REVIEWER, "labelled": labelled, "reviewed": reviewed},
        "versions": [v1.as_dict(), v2.as_dict()],
        # every round is evaluated on version 1's test images; version 2 keeps them all in test
        # (``kept``) and may add new images there that are near duplicates of them (``joined``)
        "test_split": {"images": len(test_v1), "kept": set(test_v1) <= set(test_v2), "constant": test_v2 == test_v1,
                       "joined": joined},
        "rounds": rounds,
        "before_after": table,
        "target_slice": target_doc,
        "deployed": active.name,
        "timings": timings,
        "seconds": seconds,
    }
    json_path = out_dir / "demo.json"
    json_path.write_text(json.dumps(doc, indent=1, default=str), encoding="utf-8")
    from winnow.services.demo_report import write_demo_report

    thumbs = _thumbnails(store, sel, captured, truth_by_name, pool)
    html_report = write_demo_report(doc, out_dir / "demo.html", thumbnails=thumbs)
    doc["files"] = {"json": str(json_path), "html": str(html_report), "health": str(html_path)}
    json_path.write_text(json.dumps(doc, indent=1, default=str), encoding="utf-8")
    say(f"done in {seconds:.0f}s. Report: {html_report}   JSON: {json_path}")
    return doc


def _thumbnails(store: Store, sel, captured: dict[str, str], truth: dict[str, list], pool, limit: int = 8) -> list[dict[str, Any]]:
    """A few selected images for the report: file, pre-labels (the model's boxes) and ground truth."""
    files = {r.name: r.file for r in pool.images}
    out = []
    for p in sel.picked[:limit]:
        src = captured.get(p["image"])
        if src is None:
            continue
        out.append({
            "image": p["image"], "file": files[src], "source": src,
            "predicted": [d["bbox"] for d in p.get("prelabels") or [] if "bbox" in d],
            "truth": [list(a.bbox) for a in truth.get(src, [])],
            "reason": p.get("reason"),
        })
    return out
