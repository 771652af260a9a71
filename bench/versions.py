#!/usr/bin/env python
"""Benchmark: version creation + export with augmentation, beside the same albumentations
pipeline run directly (the floor).

    .venv/bin/python bench/versions.py [--images 10000] [--outputs 3] [--size 320x240]
        [--workers N] [--repeat 1] [--out bench/out] [--png-floor] [--src DIR]
        [--other-src NAME=DIR ...] [--keep] [--profile FILE]

Data (generated once, deterministically, cached under ``--out``; no download): ``--images``
JPEG images of ``--size`` from :func:`winnow.synthetic.generate` (1-3 shapes on a noisy
background, 1-3 boxes each), and a COCO file naming them (the images hard-linked into it). Each
run imports them into a fresh data home (timed and printed, not part of the comparison); every
measured contender then gets its own copy of that home, made before it starts.

Contenders, each in a fresh process (``WINNOW_WORKERS``/the floor's pool = ``--workers``):

* ``winnow create``: ``create_version(..., resplit=True, augment=RECIPE)``, the default
  near-duplicate grouping included (the facts pass decodes every image once, on a process
  pool; the fact cache starts empty, as in a project never checked before);
* ``winnow create, near_duplicates=False``: the same without the near-duplicate pass;
* ``winnow export yolo``: ``export_version(..., format="yolo")`` of the version above, in a new
  process: the outputs are made (decode, augment, encode, hash, store as blobs) and written;
* ``winnow create + export``: both in one process on another fresh copy (each part is also
  timed on its own);
* ``floor``: albumentations 2.0.8 directly, on the same train images winnow chose: for each,
  decode with Pillow, apply one ``A.Compose`` (the same transforms, parameters and
  ``bbox_params`` as winnow's, checked below) ``--outputs`` times, encode JPEG q95 (4:4:4, as
  winnow encodes), write the files and their YOLO label files, and copy the train image itself;
  copy the valid and test images (and write their labels). A ``ProcessPoolExecutor`` of
  ``--workers`` processes, the same chunking as winnow's pool;
* ``floor, PNG outputs`` (with ``--png-floor``): the same encoding PNG (compress level 1), what
  winnow does for a source whose format it does not take for a JPEG;
* ``winnow create + export [NAME]`` (with ``--other-src NAME=DIR``): another winnow source tree
  (a change to weigh, or the code before one) in the same rounds. ``--src`` times another tree
  than this checkout's altogether (e.g. a frozen copy while the checkout is being edited).

``--repeat R`` runs every contender once per round, R rounds; the fastest run of each counts.
Nothing is deleted until the end (see bench/README.md on creating files after mass deletes).
``--profile FILE`` adds one untimed run of winnow create + export with ``WINNOW_WORKERS=1`` (the
augmentation then runs in the profiled process) and writes its cProfile stats to FILE.

Memory: ``peak RSS`` of the main process (``VmHWM``) and of its largest worker (``ru_maxrss`` of
its reaped children: the facts and the augmentation pools), and the peak of the summed PSS
(proportional set size: a page shared by N processes counts 1/N to each) of the process and all
its descendants, sampled from ``/proc`` every 0.1 s for 2 s, then every second.

Correctness is checked before the numbers are printed: the floor's transforms equal winnow's
(albumentations' own ``to_dict``), both sides write the same number of images, every label file
of both exports parses (class id, four numbers in 0..1), the version id is the same in every
process, and JPEG sources give JPEG outputs (as ``winnow.versions.materialize`` documents).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Self

REPO = Path(__file__).resolve().parent.parent
SEED = 0  # data set and version seed
DATA_VERSION = 1
PROJECT = "bench"
RESULT_TAG = "BENCH-RESULT "

#: The augmentation (every op but mosaic and cutout, which the issue's recipe does not name).
FLIP, ROTATE, CROP, BRIGHTNESS, CONTRAST, BLUR, NOISE = "h", 15, 0.2, 0.25, 0.25, 1.5, 0.03
FILL = 114
MIN_VISIBILITY, MIN_SIZE = 0.25, 1.0


def recipe(outputs: int) -> str:
    return (f"outputs={outputs},flip={FLIP},rotate={ROTATE},crop={CROP},brightness={BRIGHTNESS},"
            f"contrast={CONTRAST},blur={BLUR},noise={NOISE}")


# --------------------------------------------------------------------------- the data set


def generate(root: Path, n: int, size: tuple[int, int]) -> Path:
    """Write (once) ``n`` synthetic JPEGs and a COCO folder naming them; returns the COCO folder."""
    from winnow.formats import get_format
    from winnow.synthetic import generate as synthetic

    marker = root / ".complete"
    params = {"images": n, "size": list(size), "seed": SEED, "v": DATA_VERSION}
    coco = root / "coco"
    if marker.is_file() and json.loads(marker.read_text()) == params:
        return coco
    if root.exists():
        shutil.rmtree(root)
    dataset = synthetic(root / "src", n, seed=SEED, size=size, image_format="jpg")
    get_format("coco").write(dataset, coco, lambda rec, path: os.link(rec.file, path))
    marker.write_text(json.dumps(params))
    return coco


# --------------------------------------------------------------------------- measuring (in each child)


class _Timer:
    """Wall seconds of a block and CPU seconds (user + system) of the process and its reaped children."""

    def __enter__(self) -> Self:
        self._cpu = os.times()
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self._t0
        t, c = os.times(), self._cpu
        self.cpu_seconds = (t.user - c.user) + (t.system - c.system) + (t.children_user - c.children_user) + (
            t.children_system - c.children_system)


def _peak_rss_kib() -> int:
    """This process's peak RSS since it started its program (``VmHWM``; ``ru_maxrss`` of a process
    started by ``subprocess`` (vfork + exec) can hold its parent's peak)."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def _emit(timer: _Timer, **extra: Any) -> None:
    doc = {
        "seconds": timer.seconds,
        "cpu_seconds": timer.cpu_seconds,
        "peak_rss_main_kib": _peak_rss_kib(),
        "peak_rss_worker_kib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,  # KiB on Linux
        **extra,
    }
    sys.stdout.write(RESULT_TAG + json.dumps(doc) + "\n")
    sys.stdout.flush()


def _store(home: Path):
    from winnow.store.db import Store

    return Store.open(home)


def worker_import(coco: Path, home: Path) -> None:
    from winnow.services.ingest import import_dataset
    from winnow.services.projects import create_project

    store = _store(home)
    create_project(store, PROJECT, "detect")
    with _Timer() as timer:
        rep = import_dataset(store, PROJECT, coco, format="coco")
    if rep.images_skipped or rep.annotations_skipped:
        raise SystemExit(f"import skipped records: {rep.problems[:3]}")
    _emit(timer, images=rep.images_added, annotations=rep.annotations_added)


def _splits(store, version: str) -> dict[str, str | None]:
    """Image name -> split, as the version assigned them."""
    from winnow.services.versions import load_version

    return {r.name: r.split for r in load_version(store, PROJECT, version).manifest.images}


def worker_create(home: Path, outputs: int, near: bool, splits_file: Path | None) -> None:
    from winnow.services.versions import create_version

    store = _store(home)
    with _Timer() as timer:
        v = create_version(store, PROJECT, resplit=True, seed=SEED, augment=recipe(outputs), near_duplicates=near)
    if splits_file is not None:
        splits_file.write_text(json.dumps({"splits": _splits(store, v.version)}))
    groups = {key: v.splitting[key] for key in ("duplicate_groups", "duplicate_images")}
    _emit(timer, images=v.counts["images"], outputs=0, version=v.version, splitting=groups)


def worker_export(home: Path, dest: Path) -> None:
    from winnow.services.versions import export_version

    store = _store(home)
    with _Timer() as timer:
        rep = export_version(store, PROJECT, "latest", dest, "yolo")
    _emit(timer, images=len(_splits(store, rep.version)), outputs=rep.images,
          annotations=rep.annotations, version=rep.version)


def worker_both(home: Path, outputs: int, dest: Path, profile: Path | None) -> None:
    from winnow.services.versions import create_version, export_version

    store = _store(home)
    prof = None
    if profile is not None:
        import cProfile

        prof = cProfile.Profile()
        prof.enable()
    with _Timer() as timer:
        with _Timer() as t_create:
            v = create_version(store, PROJECT, resplit=True, seed=SEED, augment=recipe(outputs))
        with _Timer() as t_export:
            rep = export_version(store, PROJECT, v.version, dest, "yolo")
    if prof is not None:
        prof.disable()
        prof.dump_stats(profile)
    _emit(timer, images=v.counts["images"], outputs=rep.images, annotations=rep.annotations, version=v.version,
          create_seconds=t_create.seconds, export_seconds=t_export.seconds)


# --------------------------------------------------------------------------- the floor


def floor_transforms(width: int, height: int) -> list[Any]:
    """The recipe as albumentations transforms, in winnow's order (flip, crop, affine, pixel ops)."""
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    import albumentations as A
    import cv2

    shortest = max(1, round((1.0 - CROP) * height))  # crop=F keeps 1-u of each side, u in 0..F
    return [
        A.HorizontalFlip(p=0.5),
        A.RandomSizedCrop(min_max_height=(shortest, height), size=(height, width), w2h_ratio=width / height,
                          area_for_downscale="image", p=1.0),
        A.Affine(rotate=(-ROTATE, ROTATE), scale=1.0, keep_ratio=True, shear={"x": (0.0, 0.0), "y": (0.0, 0.0)},
                 border_mode=cv2.BORDER_CONSTANT, fill=FILL, fill_mask=0, p=1.0),
        A.RandomBrightnessContrast(brightness_limit=(-BRIGHTNESS, BRIGHTNESS), contrast_limit=(-CONTRAST, CONTRAST), p=1.0),
        A.GaussianBlur(sigma_limit=(1e-3, BLUR), blur_limit=0, p=1.0),
        A.GaussNoise(std_range=(0.0, NOISE), mean_range=(0.0, 0.0), per_channel=False, p=1.0),
    ]


def floor_bbox_params() -> Any:
    import albumentations as A

    return A.BboxParams(format="pascal_voc", label_fields=["labels"], min_visibility=MIN_VISIBILITY,
                        min_width=MIN_SIZE, min_height=MIN_SIZE, clip=True, filter_invalid_bboxes=True)


@dataclass
class _FloorContext:
    dest: str
    outputs: int
    fmt: str  # "JPEG" or "PNG"
    composes: dict[tuple[int, int], Any] = field(default_factory=dict)


_FLOOR: _FloorContext | None = None


def _floor_init(ctx: _FloorContext) -> None:
    global _FLOOR
    _FLOOR = ctx


def _yolo_lines(boxes: Any, labels: Any, width: int, height: int) -> str:
    return "".join(
        f"{int(c)} {(x1 + x2) / 2 / width:.12g} {(y1 + y2) / 2 / height:.12g} {(x2 - x1) / width:.12g} {(y2 - y1) / height:.12g}\n"
        for (x1, y1, x2, y2), c in zip(boxes, labels, strict=True)
    )


def _floor_one(job: tuple[str, str, str, int, int, list[list[float]], list[int]]) -> tuple[int, int]:
    """One image: (outputs written, boxes written)."""
    import albumentations as A
    import numpy as np
    from PIL import Image, ImageOps

    ctx = _FLOOR
    assert ctx is not None
    src, name, split, width, height, boxes, labels = job
    stem = PurePosixPath(name).stem
    images, label_dir = os.path.join(ctx.dest, split, "images"), os.path.join(ctx.dest, split, "labels")
    shutil.copyfile(src, os.path.join(images, stem + PurePosixPath(name).suffix))
    with open(os.path.join(label_dir, stem + ".txt"), "w") as fh:
        fh.write(_yolo_lines(boxes, labels, width, height))
    written, n_boxes = 1, len(boxes)
    if split != "train":
        return written, n_boxes
    with open(src, "rb") as fh:
        im = Image.open(io.BytesIO(fh.read()))
        im.load()
    pixels = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
    h, w = pixels.shape[:2]
    compose = ctx.composes.get((w, h))
    if compose is None:
        compose = ctx.composes[(w, h)] = A.Compose(floor_transforms(w, h), bbox_params=floor_bbox_params(),
                                                   p=1.0, seed=os.getpid())
    ext = ".jpg" if ctx.fmt == "JPEG" else ".png"
    for k in range(1, ctx.outputs + 1):
        out = compose(image=pixels, bboxes=np.asarray(boxes, dtype=np.float64).reshape(-1, 4), labels=labels)
        image = Image.fromarray(out["image"])
        path = os.path.join(images, f"{stem}_aug{k}{ext}")
        if ctx.fmt == "JPEG":
            image.save(path, "JPEG", quality=95, subsampling=0)
        else:
            image.save(path, "PNG", compress_level=1)
        with open(os.path.join(label_dir, f"{stem}_aug{k}.txt"), "w") as fh:
            fh.write(_yolo_lines(out["bboxes"], out["labels"], w, h))
        written += 1
        n_boxes += len(out["bboxes"])
    return written, n_boxes


def worker_floor(coco: Path, splits_file: Path, dest: Path, outputs: int, workers: int, fmt: str) -> None:
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    import albumentations  # noqa: F401  # as a script would: once, before the pool forks (module import not timed)
    from PIL import Image  # noqa: F401

    splits = json.loads(splits_file.read_text())["splits"]
    with _Timer() as timer:
        doc = json.loads((coco / "annotations.json").read_text())
        cats = {c["id"]: i for i, c in enumerate(doc["categories"])}
        per_image: dict[int, tuple[list[list[float]], list[int]]] = {im["id"]: ([], []) for im in doc["images"]}
        for a in doc["annotations"]:
            x, y, w, h = a["bbox"]
            boxes, labels = per_image[a["image_id"]]
            boxes.append([x, y, x + w, y + h])
            labels.append(cats[a["category_id"]])
        jobs = [
            (str(coco / im["file_name"]), im["file_name"], splits[im["file_name"]], im["width"], im["height"],
             *per_image[im["id"]])
            for im in doc["images"] if im["file_name"] in splits
        ]
        for split in set(splits.values()):
            (dest / split / "images").mkdir(parents=True, exist_ok=True)
            (dest / split / "labels").mkdir(parents=True, exist_ok=True)
        ctx = _FloorContext(str(dest), outputs, fmt)
        chunk = max(1, min(16, len(jobs) // (workers * 8) or 1))  # winnow's pool chunking
        if workers <= 1:
            _floor_init(ctx)
            results = list(map(_floor_one, jobs))
        else:
            with ProcessPoolExecutor(max_workers=workers, initializer=_floor_init, initargs=(ctx,)) as pool:
                results = list(pool.map(_floor_one, jobs, chunksize=chunk))
        names = [c["name"] for c in sorted(doc["categories"], key=lambda c: cats[c["id"]])]
        (dest / "data.yaml").write_text(
            "train: train/images\nval: valid/images\ntest: test/images\n"
            f"nc: {len(names)}\nnames:\n" + "".join(f"- {n}\n" for n in names))
    _emit(timer, images=len(jobs), outputs=sum(r[0] for r in results), annotations=sum(r[1] for r in results))


# --------------------------------------------------------------------------- the driver


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as fh:
                out.extend(int(c) for c in fh.read().split())
    except OSError:
        pass
    return out


def _pss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as fh:
            for line in fh:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class _TreeSampler(threading.Thread):
    """The peak of the summed PSS of a process and all its descendants, sampled every 0.1 s for
    the first 2 s, then every second.

    Reading ``smaps_rollup`` walks the page tables (~10 ms for a process that has imported torch)
    and holds the memory map's lock: sampled every 0.1 s throughout, it slowed what it measured.
    """

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid, self.peak_kib = pid, 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        start = time.monotonic()
        while not self._stop_event.is_set():
            pids, i = [self.pid], 0
            while i < len(pids):
                pids.extend(_children(pids[i]))
                i += 1
            self.peak_kib = max(self.peak_kib, sum(_pss_kib(p) for p in pids))
            self._stop_event.wait(0.1 if time.monotonic() - start < 2 else 1.0)

    def stop(self) -> None:
        self._stop_event.set()
        self.join()


def _run(cmd: list[str], env: dict[str, str]) -> tuple[dict | None, str]:
    """Run ``cmd`` (its output to a file): its BENCH-RESULT document with the sampled PSS peak, and its output's tail."""
    import tempfile

    with tempfile.TemporaryFile("w+") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, text=True)
        sampler = _TreeSampler(proc.pid)
        sampler.start()
        _, status, _ = os.wait4(proc.pid, 0)
        sampler.stop()
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read()
    result = None
    for line in text.splitlines():
        if line.startswith(RESULT_TAG):
            result = json.loads(line[len(RESULT_TAG):])
    if result is not None:
        result.update(peak_pss_tree_kib=sampler.peak_kib, rc=proc.returncode)
        if proc.returncode:
            result = None
    return result, text[-3000:]


def _self(*args: str) -> list[str]:
    return [sys.executable, "-X", "utf8", str(Path(__file__).resolve()), *args]


@dataclass
class Contender:
    name: str
    what: str
    runs: list[dict] = field(default_factory=list)
    failure: str | None = None

    @property
    def best(self) -> dict | None:
        return min(self.runs, key=lambda r: r["seconds"]) if self.runs else None

    def run(self, cmd: list[str], env: dict[str, str]) -> dict | None:
        if self.failure:
            return None
        os.sync()  # what the previous contender wrote is on disk before this one starts
        res, tail = _run(cmd, env)
        if res is None:
            lines = [ln for ln in tail.strip().splitlines() if ln.strip()]
            self.failure = lines[-1] if lines else "no output"
            print(f"  {self.name}: FAILED ({self.failure})\n{tail}", flush=True)
            return None
        self.runs.append(res)
        extra = ""
        if "create_seconds" in res:
            extra = f" (create {res['create_seconds']:.2f} s + export {res['export_seconds']:.2f} s)"
        print(f"  {self.name}: {res['seconds']:.2f} s{extra}, peak PSS {res['peak_pss_tree_kib'] / 1024:.0f} MB", flush=True)
        return res


def check_labels(root: Path) -> tuple[int, int, int, list[str]]:
    """(images, label files, boxes, problems) of a YOLO export folder."""
    images = labels = boxes = 0
    problems: list[str] = []
    for dirpath, _, files in os.walk(root):
        for fn in files:
            if fn.endswith(".txt"):
                labels += 1
                for line in Path(dirpath, fn).read_text().splitlines():
                    parts = line.split()
                    ok = len(parts) == 5 and parts[0].isdigit() and all(0.0 <= float(v) <= 1.0 for v in parts[1:])
                    boxes += 1
                    if not ok and len(problems) < 3:
                        problems.append(f"{Path(dirpath, fn)}: {line!r}")
            elif fn.lower().endswith((".jpg", ".jpeg", ".png")):
                images += 1
    return images, labels, boxes, problems


def check_pipeline() -> list[str]:
    """Problems, if any, between the floor's transforms and the ones winnow builds for the recipe."""
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    from winnow.versions import transforms as T

    try:
        from winnow.versions.spec import parse_augment
    except ImportError:  # before the parser had a module of its own
        parse_augment = T.parse_augment
    width, height = 320, 240
    aug = parse_augment(recipe(3))
    key = json.dumps(aug["ops"], sort_keys=True, separators=(",", ":"))
    try:
        composes = [*T._geometric_stages(key, (height, width)), T._pixel_compose(key)]
    except AttributeError as exc:
        return [f"cannot compare the floor's pipeline with winnow's ({exc}): update check_pipeline()"]
    theirs = [t.to_dict()["transform"] for c in composes for t in c.transforms]
    ours = [t.to_dict()["transform"] for t in floor_transforms(width, height)]
    problems = []
    if theirs != ours:
        problems.append(f"the floor's transforms differ from winnow's:\n  winnow {theirs}\n  floor  {ours}")
    import warnings

    import albumentations as A

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Got processor for bboxes, but no transform to process it"
        floor_bbox = A.Compose([], bbox_params=floor_bbox_params()).to_dict()["transform"]["bbox_params"]
    for c in composes[:-1]:
        bbox = dict(c.to_dict()["transform"]["bbox_params"])
        if {**bbox, "label_fields": None} != {**floor_bbox, "label_fields": None}:
            problems.append(f"bbox_params differ: winnow {bbox}, floor {floor_bbox}")
    return problems


def _mb(kib: int | None) -> str:
    return "" if kib is None else f"{kib / 1024:,.0f}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=10000, help="images in the generated set (default 10000)")
    p.add_argument("--outputs", type=int, default=3, help="augmented copies per train image (default 3)")
    p.add_argument("--size", default="320x240", help="image size WxH (default 320x240)")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                   help="processes for winnow (WINNOW_WORKERS) and for the floor's pool (default: the cores)")
    p.add_argument("--repeat", type=int, default=1, help="rounds (every contender once per round); the fastest run counts")
    p.add_argument("--out", type=Path, default=REPO / "bench" / "out", help="cache and scratch folder (git-ignored)")
    p.add_argument("--src", type=Path, default=REPO / "src",
                   help="the winnow source tree to time (a src/ folder, e.g. a frozen copy; default: this checkout's)")
    p.add_argument("--other-src", action="append", default=[], metavar="NAME=DIR",
                   help="also time winnow create + export with another source tree (a src/ folder: a change to "
                        "weigh, the code before one) in the same rounds; repeatable")
    p.add_argument("--png-floor", action="store_true", help="also run the floor encoding PNG (compress level 1)")
    p.add_argument("--keep", action="store_true", help="keep the stores and exports (under OUT/versions-work)")
    p.add_argument("--profile", type=Path, default=None,
                   help="also run winnow create + export once more, in one process (WINNOW_WORKERS=1, so the "
                        "augmentation runs in it) under cProfile, and write the stats here (not timed)")
    # worker mode (internal)
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    p.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--home", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--dest", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--splits", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--format", default="JPEG", help=argparse.SUPPRESS)
    p.add_argument("--near", type=int, default=1, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if not args.worker:  # a worker finds winnow through PYTHONPATH (the driver's --src)
        sys.path.insert(0, str(args.src.resolve()))

    if args.worker:
        w = args.worker
        if w == "import":
            worker_import(args.data, args.home)
        elif w == "create":
            worker_create(args.home, args.outputs, bool(args.near), args.splits)
        elif w == "export":
            worker_export(args.home, args.dest)
        elif w == "both":
            worker_both(args.home, args.outputs, args.dest, args.profile)
        elif w == "floor":
            worker_floor(args.data, args.splits, args.dest, args.outputs, args.workers, args.format)
        else:
            raise SystemExit(f"unknown worker {w}")
        return 0

    started = time.perf_counter()
    load_before = os.getloadavg()
    width, height = (int(v) for v in args.size.lower().split("x"))
    n, k, workers = args.images, args.outputs, args.workers
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    coco = generate(out / f"versions-{n}-{width}x{height}", n, (width, height))
    print(f"data set: {coco} ({n:,} JPEGs of {width}x{height}; ready in {time.perf_counter() - started:.1f} s)", flush=True)

    pipeline_problems = check_pipeline()
    problems = list(pipeline_problems)
    work = out / "versions-work"
    trash = out / f"versions-trash-{os.getpid()}"
    if work.exists():  # left by an earlier run: deleted at the end, not while anything is timed
        work.rename(trash)
    work.mkdir(parents=True)
    env = dict(os.environ, PYTHONPATH=str(args.src.resolve()), WINNOW_WORKERS=str(workers), NO_ALBUMENTATIONS_UPDATE="1")

    template = work / "home-template"
    res, tail = _run(_self("--worker", "import", "--data", str(coco), "--home", str(template)), env)
    if res is None:
        print(tail)
        return 1
    print(f"import into a fresh store: {res['seconds']:.2f} s ({res['images']:,} images, {res['annotations']:,} boxes; "
          "not part of the comparison)", flush=True)

    def fresh_home(tag: str) -> Path:
        home = work / f"home-{tag}"
        shutil.copytree(template, home)
        return home

    create = Contender("winnow create", "`create_version(resplit=True, augment=...)`: load, facts pass + near-duplicate "
                       "groups, split, manifest")
    create_nonear = Contender("winnow create, near_duplicates=False", "the same without the near-duplicate pass")
    export = Contender("winnow export yolo", "`export_version(..., \"yolo\")` of that version in a new process: "
                       "make the outputs (decode, augment, encode, hash, store), write the YOLO folder")
    both = Contender("winnow create + export", "both in one process, on another fresh store")
    floor = Contender("floor: albumentations, JPEG q95", "decode (Pillow), one `A.Compose` x outputs, encode JPEG q95, "
                      "write images + YOLO labels; copy the train image and the valid/test images")
    floor_png = Contender("floor, PNG outputs", "the same encoding PNG (compress level 1)")
    others: list[tuple[Contender, str, Path]] = []
    for spec_ in args.other_src:
        label, sep, folder = spec_.partition("=")
        if not sep or not label.isidentifier() or not Path(folder).is_dir():
            raise SystemExit(f"--other-src {spec_!r}: expected NAME=DIR (NAME a word, DIR a src/ folder)")
        others.append((Contender(f"winnow create + export [{label}]", f"as above, with the winnow in {folder}"), label,
                       Path(folder).resolve()))
    splits_file = work / "splits.json"
    versions: set[str] = set()
    for r in range(args.repeat):
        print(f"round {r + 1}/{args.repeat}", flush=True)
        home_a, home_b, home_c = fresh_home(f"a{r}"), fresh_home(f"b{r}"), fresh_home(f"c{r}")
        res = create.run(_self("--worker", "create", "--home", str(home_a), "--outputs", str(k),
                               "--splits", str(splits_file)), env)
        if res is None:
            return 1
        versions.add(res["version"])
        res = export.run(_self("--worker", "export", "--home", str(home_a), "--dest", str(work / f"export-a{r}")), env)
        if res:
            versions.add(res["version"])
        create_nonear.run(_self("--worker", "create", "--home", str(home_b), "--outputs", str(k), "--near", "0"), env)
        res = both.run(_self("--worker", "both", "--home", str(home_c), "--outputs", str(k),
                             "--dest", str(work / f"export-c{r}")), env)
        if res:
            versions.add(res["version"])
        for c, label, folder in others:
            c.run(_self("--worker", "both", "--home", str(fresh_home(f"{label}{r}")), "--outputs", str(k),
                        "--dest", str(work / f"export-{label}-{r}")), dict(env, PYTHONPATH=str(folder)))
        for c, fmt in ((floor, "JPEG"), (floor_png, "PNG"))[: 2 if args.png_floor else 1]:
            c.run(_self("--worker", "floor", "--data", str(coco), "--splits", str(splits_file), "--outputs", str(k),
                        "--workers", str(workers), "--format", fmt, "--dest", str(work / f"floor-{fmt.lower()}-{r}")), env)
    load_after = os.getloadavg()

    # ----------------------------------------------------------------- correctness
    splits = json.loads(splits_file.read_text())["splits"]
    n_train = sum(1 for s in splits.values() if s == "train")
    expected = n_train * (1 + k) + (len(splits) - n_train)
    if len(versions) != 1:
        problems.append(f"the same inputs gave {len(versions)} version ids: {sorted(versions)}")
    counts: dict[str, tuple[int, int, int]] = {}
    for label, folder in (("winnow", work / "export-a0"), ("floor", work / "floor-jpeg-0")):
        if not folder.is_dir():
            problems.append(f"{label}: no export at {folder}")
            continue
        images, labels, boxes, bad = check_labels(folder)
        counts[label] = (images, labels, boxes)
        if images != expected or labels != expected:
            problems.append(f"{label}: {images} images and {labels} label files written, expected {expected} "
                            f"({n_train} train x (1 + {k}) + {len(splits) - n_train} others)")
        problems.extend(f"{label}: bad label line {b}" for b in bad)
    for c, label, _ in others:
        if c.best is not None and c.best["outputs"] != expected:
            problems.append(f"{c.name}: {c.best['outputs']:,} outputs, expected {expected:,}")
    if (work / "export-a0").is_dir():
        pngs = sum(1 for _, _, fs in os.walk(work / "export-a0") for f in fs if f.endswith(".png"))
        if pngs:
            problems.append(f"winnow wrote {pngs:,} of its {expected:,} outputs as PNG although every source is a "
                            "JPEG (materialize.py documents JPEG q95 outputs for JPEG sources)")
    print()
    print(f"Correctness: {'OK' if not problems else 'PROBLEMS'}")
    print(f"- {n_train:,} train images of {len(splits):,} (the split winnow chose; {len(versions)} version id in every process);"
          f" {expected:,} images expected in each export")
    print("- the floor's transforms and bbox_params equal winnow's (albumentations to_dict)"
          if not pipeline_problems else "- the floor's pipeline could not be shown equal to winnow's (below)")
    for label, (images, labels, boxes) in counts.items():
        print(f"- {label}: {images:,} images, {labels:,} label files, {boxes:,} boxes (all lines: class + 4 numbers in 0..1)")
    for p_ in problems:
        print(f"- PROBLEM: {p_}")

    # ----------------------------------------------------------------- the table
    ref = floor.best
    print()
    flags = " ".join(a for a in (argv if argv is not None else sys.argv[1:]))
    print(f"`bench/versions.py {flags}` ({n:,} images, {k} outputs, {width}x{height}, {workers} workers, winnow from {args.src})"
          f" on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: {os.cpu_count()} cores, Python {platform.python_version()},"
          f" load average {load_before[0]:.1f} before / {load_after[0]:.1f} after. Best of {args.repeat} round(s);"
          " cpu s = user + system of the process and its workers.")
    print()
    print("| contender | images in | outputs | seconds | cpu s | images/s | outputs/s | x floor | cpu x floor | "
          "peak RSS main | peak RSS worker | peak PSS all | what is timed |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for c in [create, create_nonear, export, both, *(o[0] for o in others), floor, *([floor_png] if args.png_floor else [])]:
        b = c.best
        if b is None:
            print(f"| {c.name} | | | failed: {c.failure} | | | | | | | | | {c.what} |")
            continue
        secs = b["seconds"]
        outs = b.get("outputs") or 0
        ratio = f"{secs / ref['seconds']:.2f}" if ref else ""
        cpu_ratio = f"{b['cpu_seconds'] / ref['cpu_seconds']:.2f}" if ref else ""
        name = c.name
        if "create_seconds" in b:
            name += f" ({b['create_seconds']:.1f} + {b['export_seconds']:.1f} s)"
        print(f"| {name} | {b['images']:,} | {outs:,} | {secs:.2f} | {b['cpu_seconds']:.1f} | {b['images'] / secs:,.0f} | "
              f"{(f'{outs / secs:,.0f}' if outs else '')} | {ratio} | {cpu_ratio} | {_mb(b['peak_rss_main_kib'])} MB | "
              f"{_mb(b['peak_rss_worker_kib'])} MB | {_mb(b['peak_pss_tree_kib'])} MB | {c.what} |")
    if create.best and create_nonear.best:
        dup = create.best["splitting"]
        print(f"\nnear-duplicate grouping: {create.best['seconds'] - create_nonear.best['seconds']:.2f} s of winnow create "
              f"({dup['duplicate_groups']} groups, {dup['duplicate_images']} images kept together)")
    print()
    print("peak RSS main: the measured process; peak RSS worker: its largest child (pool worker); peak PSS all: "
          "the process and all its workers together (proportional set size, sampled every 0.1 s for 2 s, then every second).")

    if args.profile:
        prof_env = dict(env, WINNOW_WORKERS="1")
        home = fresh_home("profile")
        res, tail = _run(_self("--worker", "both", "--home", str(home), "--outputs", str(k), "--dest",
                               str(work / "export-profile"), "--profile", str(args.profile.resolve())), prof_env)
        print(f"\nprofile (WINNOW_WORKERS=1, not timed): {args.profile} ({res['seconds']:.1f} s under cProfile)"
              if res else f"\nprofile run failed:\n{tail}")

    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    shutil.rmtree(trash, ignore_errors=True)
    print(f"\ntotal {time.perf_counter() - started:.0f} s")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
