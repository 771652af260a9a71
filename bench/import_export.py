#!/usr/bin/env python
"""Benchmark: COCO import and export against the physical floor, pycocotools and the anchors.

    .venv/bin/python bench/import_export.py [--images 20000] [--boxes-per-image 10] [--out bench/out]
        [--anchors-python /tmp/anchors-venv/bin/python] [--repeat 1]

A COCO detection set (tiny distinct PNGs, ``--boxes-per-image`` boxes each) is generated once,
deterministically, and cached under ``--out``. Every contender then runs in its own fresh
process on the same files (all in the page cache after generation), so each one's peak memory
(``ru_maxrss``) is its own:

* ``floor``: ``json.load`` plus, for every image, open the file and read its size from the header
  with Pillow - the least any importer that checks its images can do (the issue's floor);
* ``floor+sha256``: the same, but reading every file's bytes and hashing them, as winnow
  content-addresses every file;
* ``pycocotools``: ``COCO(json)`` (parse and index; it opens no image);
* ``winnow import``: :func:`winnow.services.ingest.import_dataset` in-process into a fresh
  ``WINNOW_HOME``, and the ``winnow import`` CLI end to end (interpreter start included);
* ``winnow export coco`` / ``yolo``: :func:`winnow.services.datasets.export_project`;
* anchors, when ``--anchors-python`` names an interpreter that has them: Datumaro's
  ``Dataset.import_from(..., "coco_instances")`` and FiftyOne's ``Dataset.from_dir(...,
  COCODetectionDataset)``; skipped with the reason otherwise.

Correctness is checked before any number is printed: after winnow's import the image and
annotation counts equal the JSON's, every stored box equals the file's box, and export -> re-import
gives back the same ids, names, sizes and boxes (COCO exactly, YOLO within 1e-6 px).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Self

from _docs import write_block  # bench/ is on sys.path when a script runs

REPO = Path(__file__).resolve().parent.parent
SEED = 1234
IMAGE_SIZE = (32, 24)
CLASSES = ("person", "car", "bicycle", "dog", "cat", "bus", "truck", "bird", "boat", "chair")
JSON_REL = "annotations/instances_default.json"  # Datumaro's COCO layout, read by every tool
IMAGES_REL = "images/default"
RESULT_TAG = "BENCH-RESULT "


# --------------------------------------------------------------------------- the data set


def generate(root: Path, n_images: int, boxes_per_image: int, seed: int = SEED) -> Path:
    """Write (once) a COCO detection set under ``root``; returns ``root``. Deterministic."""
    import numpy as np
    from PIL import Image

    marker = root / ".complete"
    params = {"images": n_images, "boxes_per_image": boxes_per_image, "seed": seed, "size": list(IMAGE_SIZE), "v": 1}
    if marker.is_file() and json.loads(marker.read_text()) == params:
        return root
    if root.exists():
        shutil.rmtree(root)
    (root / IMAGES_REL).mkdir(parents=True)
    (root / "annotations").mkdir()
    rng = np.random.default_rng(seed)
    w, h = IMAGE_SIZE
    # every image is random noise: distinct bytes (distinct sha256), no duplicates
    pixels = rng.integers(0, 256, size=(n_images, h, w, 3), dtype=np.uint8)
    images, annotations = [], []
    # boxes: x, y inside the image, w, h at least 1 px and not past the edge, two decimals
    xs = rng.uniform(0, w - 2, size=(n_images, boxes_per_image))
    ys = rng.uniform(0, h - 2, size=(n_images, boxes_per_image))
    ws = rng.uniform(1, 1e9, size=(n_images, boxes_per_image)) % (w - xs - 1) + 1
    hs = rng.uniform(1, 1e9, size=(n_images, boxes_per_image)) % (h - ys - 1) + 1
    cats = rng.integers(1, len(CLASSES) + 1, size=(n_images, boxes_per_image))
    ann_id = 1
    for i in range(n_images):
        name = f"{i:06d}.png"
        Image.fromarray(pixels[i], "RGB").save(root / IMAGES_REL / name, compress_level=1)
        images.append({"id": i + 1, "file_name": name, "width": w, "height": h})
        for k in range(boxes_per_image):
            bw, bh = round(float(ws[i, k]), 2), round(float(hs[i, k]), 2)
            annotations.append(
                {
                    "id": ann_id,
                    "image_id": i + 1,
                    "category_id": int(cats[i, k]),
                    "bbox": [round(float(xs[i, k]), 2), round(float(ys[i, k]), 2), bw, bh],
                    "area": round(bw * bh, 4),
                    "segmentation": [],
                    "iscrowd": 0,
                }
            )
            ann_id += 1
    doc = {
        "info": {"description": f"winnow bench: {n_images} images x {boxes_per_image} boxes, seed {seed}"},
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": [{"id": k + 1, "name": c, "supercategory": ""} for k, c in enumerate(CLASSES)],
    }
    (root / JSON_REL).write_text(json.dumps(doc, separators=(",", ":")))
    marker.write_text(json.dumps(params))
    return root


# --------------------------------------------------------------------------- workers (one process each)


def _rss_kib() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class _Timer:
    """Wall and CPU (user + system) seconds of a block, and the RSS before it."""

    def __enter__(self) -> Self:
        self.rss_before = _rss_kib()
        self._cpu = os.times()
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self.seconds = time.perf_counter() - self._t0
        cpu = os.times()
        self.cpu_seconds = (cpu.user - self._cpu.user) + (cpu.system - self._cpu.system)
        self.sys_seconds = cpu.system - self._cpu.system


def _emit(timer: _Timer, **extra) -> None:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    doc = {"seconds": timer.seconds, "cpu_seconds": timer.cpu_seconds, "sys_seconds": timer.sys_seconds,
           "peak_rss_kib": peak, "rss_before_kib": timer.rss_before, **extra}
    sys.stdout.write(RESULT_TAG + json.dumps(doc) + "\n")
    sys.stdout.flush()


def worker_floor(data: Path, mode: str, store: Path) -> None:
    """The floor: ``json.load`` + every image's header; ``sha``: its bytes hashed too; ``store``:
    also written content-addressed (``<root>/ab/cd/<sha>`` via a temporary file and a rename,
    one ``syncfs`` at the end) - what any importer that keeps its own copy of the files must do."""
    import ctypes

    from PIL import Image

    if mode == "store":
        (store / ".tmp").mkdir(parents=True)
    folders: set[str] = set()
    with _Timer() as timer:
        with open(data / JSON_REL, "rb") as fh:
            doc = json.load(fh)
        folder = data / IMAGES_REL
        n = 0
        if mode == "header":
            for im in doc["images"]:
                with open(folder / im["file_name"], "rb") as fh:
                    n += Image.open(fh).size[0] > 0
        else:
            for im in doc["images"]:
                raw = (folder / im["file_name"]).read_bytes()
                sha = hashlib.sha256(raw).hexdigest()
                n += Image.open(io.BytesIO(raw)).size[0] > 0
                if mode == "store":
                    sub = os.path.join(store, sha[:2], sha[2:4])
                    if sub not in folders:
                        os.makedirs(sub, exist_ok=True)
                        folders.add(sub)
                    fd, tmp = tempfile.mkstemp(dir=store / ".tmp")
                    with os.fdopen(fd, "wb") as out:
                        out.write(raw)
                    os.replace(tmp, os.path.join(sub, sha))
            if mode == "store":
                fd = os.open(store, os.O_RDONLY)
                ctypes.CDLL(None, use_errno=True).syncfs(fd)
                os.close(fd)
    _emit(timer, images=n, annotations=len(doc["annotations"]))


def worker_pycocotools(data: Path) -> None:
    import contextlib

    from pycocotools.coco import COCO

    with _Timer() as timer, contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(data / JSON_REL))
    _emit(timer, images=len(coco.imgs), annotations=len(coco.anns))


def worker_winnow_import(data: Path, home: Path, project: str, profile: Path | None) -> None:
    from winnow.services.ingest import import_dataset
    from winnow.services.projects import create_project
    from winnow.store.db import Store

    store = Store.open(home)
    create_project(store, project, "detect")
    if profile is not None:
        import cProfile

        prof = cProfile.Profile()
        prof.enable()
    with _Timer() as timer:
        report = import_dataset(store, project, data)
    if profile is not None:
        prof.disable()
        prof.dump_stats(profile)
    errors = [str(p) for p in report.errors][:5]
    _emit(timer, images=report.images_added, annotations=report.annotations_added, errors=errors)


def worker_winnow_export(home: Path, project: str, dest: Path, fmt: str) -> None:
    from winnow.services.datasets import export_project
    from winnow.store.db import Store

    store = Store.open(home)
    with _Timer() as timer:
        report = export_project(store, project, dest, fmt)
    _emit(timer, images=report.images, annotations=report.annotations)


def worker_check(data: Path, home: Path, project: str, coco_dir: Path, yolo_dir: Path) -> None:
    """Correctness: stored == file; export -> re-import gives the same records."""
    from winnow.services.datasets import load_dataset
    from winnow.services.ingest import import_dataset
    from winnow.services.projects import create_project
    from winnow.store.db import Store

    doc = json.loads((data / JSON_REL).read_text())
    store = Store.open(home)
    original = load_dataset(store, project)
    failures: list[str] = []

    def fail(msg: str) -> None:
        if len(failures) < 20:
            failures.append(msg)

    n_anns = sum(len(r.annotations) for r in original.images)
    if len(original.images) != len(doc["images"]):
        fail(f"images: stored {len(original.images)}, JSON {len(doc['images'])}")
    if n_anns != len(doc["annotations"]):
        fail(f"annotations: stored {n_anns}, JSON {len(doc['annotations'])}")

    # every stored box is the file's box (xywh -> xyxy), with its id and class
    names = {c["id"]: c["name"] for c in doc["categories"]}
    by_ext = {str(r.external_id): r for r in original.images}
    expected: dict[str, list] = {}
    for a in doc["annotations"]:
        x, y, w, h = a["bbox"]
        expected.setdefault(str(a["image_id"]), []).append((str(a["id"]), names[a["category_id"]], (x, y, x + w, y + h)))
    for im in doc["images"]:
        rec = by_ext.get(str(im["id"]))
        if rec is None:
            fail(f"image id {im['id']} missing")
            continue
        if rec.name != f"{IMAGES_REL}/{im['file_name']}" or (rec.width, rec.height) != (im["width"], im["height"]):
            fail(f"image id {im['id']}: stored {rec.name} {rec.width}x{rec.height}")
        got = [(str(a.external_id), a.label, tuple(a.bbox)) for a in rec.annotations]
        if sorted(got) != sorted(expected.get(str(im["id"]), [])):
            fail(f"image id {im['id']}: boxes differ")

    def key(ds):
        return {
            r.name: (
                str(r.external_id), r.split, r.width, r.height,
                sorted((str(a.external_id), a.label, tuple(a.bbox), a.polygon, a.iscrowd) for a in r.annotations),
            )
            for r in ds.images
        }

    # COCO: export -> re-import is identical (ids, names, sizes, boxes, polygons, iscrowd)
    create_project(store, project + "-coco", "detect")
    rep = import_dataset(store, project + "-coco", coco_dir)
    if rep.errors:
        fail(f"re-import of the COCO export: {rep.errors[:3]}")
    a, b = key(original), key(load_dataset(store, project + "-coco"))
    if a != b:
        diff = [n for n in a if a[n] != b.get(n)][:3]
        fail(f"COCO export -> re-import differs ({len([n for n in a if a[n] != b.get(n)])} images), e.g. {diff}")
    # the exported JSON holds the original's boxes and ids
    exported = json.loads((coco_dir / "annotations.json").read_text())
    orig_boxes = {a["id"]: a["bbox"] for a in doc["annotations"]}
    worst = max(
        (abs(u - v) for e in exported["annotations"] for u, v in zip(e["bbox"], orig_boxes[e["id"]], strict=True)),
        default=0.0,
    )
    if {e["id"] for e in exported["annotations"]} != set(orig_boxes):
        fail("exported annotation ids differ from the file's")
    if worst > 1e-9:
        fail(f"exported COCO bbox differs from the file's by {worst}")

    # YOLO: boxes back within 1e-6 px (normalised text); no ids in YOLO
    create_project(store, project + "-yolo", "detect")
    rep = import_dataset(store, project + "-yolo", yolo_dir)
    if rep.errors:
        fail(f"re-import of the YOLO export: {rep.errors[:3]}")
    yolo = {r.name: r for r in load_dataset(store, project + "-yolo").images}
    yolo_worst = 0.0
    for r in original.images:
        y = yolo.get(r.name)
        if y is None or len(y.annotations) != len(r.annotations):
            fail(f"YOLO round trip: {r.name} missing or annotation count differs")
            continue
        def rounded(anns):  # pair boxes up by their rounded value: 1e-12 noise must not reorder them
            return sorted(((a.label, tuple(round(v, 4) for v in a.bbox)), a.bbox) for a in anns)

        for (ku, bu), (kv, bv) in zip(rounded(r.annotations), rounded(y.annotations), strict=True):
            u, v = (ku[0], bu), (kv[0], bv)
            if u[0] != v[0]:
                fail(f"YOLO round trip: {r.name} labels differ")
            yolo_worst = max(yolo_worst, *(abs(p - q) for p, q in zip(u[1], v[1], strict=True)))
    if yolo_worst > 1e-6:
        fail(f"YOLO round trip moved a box by {yolo_worst} px")
    doc = {"failures": failures, "images": len(original.images), "annotations": n_anns,
           "coco_export_max_bbox_diff": worst, "yolo_max_box_diff_px": yolo_worst}
    print(RESULT_TAG + json.dumps(doc), flush=True)


# --------------------------------------------------------------------------- anchors (run in their own interpreter)

_ANCHOR_PRELUDE = r"""
import json, os, resource, sys, time
def _rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
class _Timer:
    def __enter__(self):
        self.rss_before, self._cpu, self._t0 = _rss(), os.times(), time.perf_counter()
        return self
    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self._t0
        cpu = os.times()
        self.cpu_seconds = cpu.user - self._cpu.user + cpu.system - self._cpu.system
        self.sys_seconds = cpu.system - self._cpu.system
def _emit(t, **extra):
    doc = {"seconds": t.seconds, "cpu_seconds": t.cpu_seconds, "sys_seconds": t.sys_seconds,
           "peak_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "rss_before_kib": t.rss_before}
    print("BENCH-RESULT " + json.dumps({**doc, **extra}), flush=True)
root, json_path, images_dir = sys.argv[1:4]
"""

DATUMARO_SNIPPET = _ANCHOR_PRELUDE + r"""
t_imp = time.perf_counter()
import datumaro as dm
import_seconds = time.perf_counter() - t_imp
with _Timer() as timer:
    ds = dm.Dataset.import_from(root, "coco_instances")
    n = anns = 0
    for item in ds:  # the import is lazy: walk every item and its annotations
        n += 1
        anns += sum(1 for a in item.annotations if a.type == dm.AnnotationType.bbox)
_emit(timer, images=n, annotations=anns, module_import_seconds=import_seconds, version=getattr(dm, "__version__", "?"))
"""

FIFTYONE_SNIPPET = _ANCHOR_PRELUDE + r"""
t_imp = time.perf_counter()
import fiftyone as fo
import_seconds = time.perf_counter() - t_imp
name = "winnow-bench"
if fo.dataset_exists(name):
    fo.delete_dataset(name)
with _Timer() as timer:
    ds = fo.Dataset.from_dir(
        dataset_type=fo.types.COCODetectionDataset, data_path=images_dir, labels_path=json_path,
        name=name, label_types="detections", label_field="ground_truth",
    )
    n = len(ds)
    anns = ds.count("ground_truth.detections")
_emit(timer, images=n, annotations=anns, module_import_seconds=import_seconds, version=fo.__version__)
fo.delete_dataset(name)
"""


# --------------------------------------------------------------------------- the driver


def _run(cmd: list[str], env: dict[str, str] | None = None, timeout: float = 1800) -> tuple[dict | None, float, object, str]:
    """Run ``cmd``: (its BENCH-RESULT document, wall seconds, its resource usage, the output's tail)."""
    t0 = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, text=True)
        deadline = time.monotonic() + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                proc.kill()
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.005)
        wall = time.perf_counter() - t0
        returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read()
    result = None
    for line in text.splitlines():
        if line.startswith(RESULT_TAG):
            result = json.loads(line[len(RESULT_TAG):])
    if result is None and text.lstrip().startswith("{"):  # `winnow import --json`: its report
        try:
            doc = json.loads(text)
            result = {"images": doc.get("images_added"), "annotations": doc.get("annotations_added")}
        except ValueError:
            pass
    if result is not None and returncode != 0:
        result["rc"] = returncode
    return result, wall, usage, text[-3000:]


def _self(*args: str) -> list[str]:
    return [sys.executable, "-X", "utf8", str(Path(__file__).resolve()), *args]


def _prewarm(data: Path) -> None:
    """Read every file of the data set, so that each contender finds it in the page cache."""
    for dirpath, _, files in os.walk(data):
        for name in files:
            with open(os.path.join(dirpath, name), "rb") as fh:
                while fh.read(1 << 20):
                    pass


@dataclass
class Contender:
    """One thing timed. ``{run}`` in ``cmd`` and ``env`` values is replaced by the run's number, so
    that every run writes to folders of its own: nothing is deleted until the benchmark ends (on
    ext4 without a journal, creating files soon after many were deleted is several times slower)."""

    name: str
    cmd: list[str]
    what: str
    env: dict[str, str] | None = None
    end_to_end: bool = False  # seconds = the whole process (the CLI), not a timed block inside it
    prepare: Callable[[int], None] | None = None
    runs: int = 0
    best: dict | None = None
    failure: str | None = None

    def run(self, data: Path, number: int) -> None:
        if self.failure:
            return
        if self.prepare is not None:
            self.prepare(number)
        _prewarm(data)
        os.sync()  # what the previous contender wrote is on disk before this one starts
        cmd = [arg.replace("{run}", str(number)) for arg in self.cmd]
        env = None if self.env is None else {k: v.replace("{run}", str(number)) for k, v in self.env.items()}
        res, wall, usage, tail = _run(cmd, env=env)
        if res is None or res.get("rc"):
            lines = [ln for ln in tail.strip().splitlines() if ln.strip()]
            self.failure = lines[-1] if lines else "no output"
            print(f"  {self.name}: FAILED ({self.failure})", flush=True)
            return
        if self.end_to_end:
            res.update(seconds=wall, cpu_seconds=usage.ru_utime + usage.ru_stime, sys_seconds=usage.ru_stime,
                       peak_rss_kib=usage.ru_maxrss, rss_before_kib=None)
        self.runs += 1
        print(f"  {self.name}: {res['seconds']:.2f} s", flush=True)
        if self.best is None or res["seconds"] < self.best["seconds"]:
            self.best = res


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=20000, help="images in the generated set (default 20000)")
    p.add_argument("--boxes-per-image", type=int, default=10)
    p.add_argument("--out", type=Path, default=REPO / "bench" / "out", help="cache and scratch folder")
    p.add_argument("--repeat", type=int, default=1, help="rounds (every contender once per round); the fastest run counts")
    p.add_argument("--anchors-python", default=None, help="an interpreter with datumaro and/or fiftyone installed")
    p.add_argument("--skip-anchors", action="store_true")
    p.add_argument("--profile", type=Path, default=None, help="write a cProfile of winnow's in-process import here")
    p.add_argument("--baseline-src", type=Path, default=None,
                   help="also time another winnow source tree (its src/ folder), e.g. the code before a change")
    p.add_argument("--docs", type=Path, default=None, help="write the results into this markdown file's import/export section")
    # worker mode (internal)
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    p.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--home", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--project", default="bench", help=argparse.SUPPRESS)
    p.add_argument("--dest", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--dest2", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--format", help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.worker:
        w = args.worker
        if w.startswith("floor-"):
            worker_floor(args.data, w.removeprefix("floor-"), args.dest)
        elif w == "pycocotools":
            worker_pycocotools(args.data)
        elif w == "import":
            worker_winnow_import(args.data, args.home, args.project, args.dest)
        elif w == "export":
            worker_winnow_export(args.home, args.project, args.dest, args.format)
        elif w == "check":
            worker_check(args.data, args.home, args.project, args.dest, args.dest2)
        else:
            raise SystemExit(f"unknown worker {w}")
        return 0

    started = time.perf_counter()
    load_before = os.getloadavg()
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    n, k = args.images, args.boxes_per_image
    data = generate(out / f"coco-{n}x{k}", n, k)
    json_bytes = (data / JSON_REL).stat().st_size
    print(f"data set: {data} ({n:,} images, {n * k:,} boxes, JSON {json_bytes / 1e6:.1f} MB; "
          f"ready in {time.perf_counter() - started:.1f} s)")
    work = out / "work"
    trash = out / f"trash-{os.getpid()}"
    if work.exists():  # left by an interrupted run: deleted at the end, not while anything is timed
        work.rename(trash)
    work.mkdir(parents=True)
    home = work / "home-0"  # the first in-process import: exported and checked
    coco_dir, yolo_dir = work / "export-coco-0", work / "export-yolo-0"
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    winnow_exe = str(Path(sys.executable).with_name("winnow"))
    cli_env = dict(env, WINNOW_HOME=str(work / "home-cli-{run}"))

    def create_cli_project(number: int) -> None:
        subprocess.run([winnow_exe, "project", "create", "bench", "--task", "detect"],
                       env=dict(cli_env, WINNOW_HOME=str(work / f"home-cli-{number}")), check=True,
                       stdout=subprocess.DEVNULL)

    import_cmd = _self("--worker", "import", "--data", str(data), "--home", str(work / "home-{run}"))
    if args.profile:
        import_cmd += ["--dest", str(args.profile.resolve())]
    contenders = [
        Contender("floor: json.load + Pillow header", _self("--worker", "floor-header", "--data", str(data)),
                  "`json.load`, then open every image and read its size from the header (Pillow)"),
        Contender("floor + read + sha256", _self("--worker", "floor-sha", "--data", str(data)),
                  "the same reading every file's bytes and hashing them"),
        Contender("floor + read + sha256 + store",
                  _self("--worker", "floor-store", "--data", str(data), "--dest", str(work / "floor-store-{run}")),
                  "the same writing every file content-addressed (temporary file + rename, one `syncfs`)"),
        Contender("pycocotools COCO()", _self("--worker", "pycocotools", "--data", str(data)),
                  "parse and index the JSON; opens no image"),
        Contender("winnow import (in-process)", import_cmd,
                  "`import_dataset` into a fresh data home: read, check, hash, store, one transaction", env=env),
        Contender("winnow import (CLI)", [winnow_exe, "import", "bench", str(data), "--json"],
                  "`winnow import bench DIR --json`, interpreter start included", env=cli_env, end_to_end=True,
                  prepare=create_cli_project),
        Contender("winnow export coco", _self("--worker", "export", "--home", str(home), "--dest",
                                              str(work / "export-coco-{run}"), "--format", "coco"),
                  "`export_project` to COCO: read the store, copy the blobs, write the JSON", env=env),
        Contender("winnow export yolo", _self("--worker", "export", "--home", str(home), "--dest",
                                              str(work / "export-yolo-{run}"), "--format", "yolo"),
                  "`export_project` to YOLO: read the store, copy the blobs, one label file per image", env=env),
    ]
    if not Path(winnow_exe).exists():
        contenders[5].failure = f"no `winnow` command beside {sys.executable}"
    if args.baseline_src:  # another winnow source tree (e.g. before a change), timed the same way
        base_env = dict(os.environ, PYTHONPATH=str(args.baseline_src.resolve()))
        base_home = work / "home-baseline-0"
        contenders += [
            Contender("baseline: winnow import (in-process)",
                      _self("--worker", "import", "--data", str(data), "--home", str(work / "home-baseline-{run}")),
                      f"as above, with the winnow in {args.baseline_src}", env=base_env),
            Contender("baseline: winnow export coco", _self("--worker", "export", "--home", str(base_home), "--dest",
                                                            str(work / "export-coco-baseline-{run}"), "--format", "coco"),
                      f"as above, with the winnow in {args.baseline_src}", env=base_env),
            Contender("baseline: winnow export yolo", _self("--worker", "export", "--home", str(base_home), "--dest",
                                                            str(work / "export-yolo-baseline-{run}"), "--format", "yolo"),
                      f"as above, with the winnow in {args.baseline_src}", env=base_env),
        ]

    anchors: dict[str, str] = {}
    if args.skip_anchors:
        anchors["Datumaro"] = anchors["FiftyOne"] = "not run (--skip-anchors)"
    elif not args.anchors_python or not Path(args.anchors_python).exists():
        anchors["Datumaro"] = anchors["FiftyOne"] = "not available: no --anchors-python interpreter given"
    else:
        aenv = dict(os.environ, FIFTYONE_DO_NOT_TRACK="true", FIFTYONE_DATABASE_DIR=str(out / "fiftyone-db"))
        for label, module, snippet in (("Datumaro", "datumaro", DATUMARO_SNIPPET), ("FiftyOne", "fiftyone", FIFTYONE_SNIPPET)):
            found = subprocess.run(
                [args.anchors_python, "-c", f"import importlib.util as u; print(u.find_spec('{module}') is not None)"],
                capture_output=True, text=True, check=False,
            )
            if found.stdout.strip() != "True":
                anchors[label] = f"not available: `{module}` is not installed in {args.anchors_python}"
                continue
            contenders.append(Contender(
                f"{label} import", [args.anchors_python, "-c", snippet, str(data), str(data / JSON_REL), str(data / IMAGES_REL)],
                f"{label}'s COCO import of the same folder, every sample and box counted (module import not timed)",
                env=aenv,
            ))

    for round_ in range(args.repeat):
        print(f"round {round_ + 1} of {args.repeat}:")
        for c in contenders:
            c.run(data, round_)
        if round_ == 0:  # correctness before speed: check what the first winnow import stored
            print("correctness:")
            res, _, _, tail = _run(_self("--worker", "check", "--data", str(data), "--home", str(home),
                                         "--dest", str(coco_dir), "--dest2", str(yolo_dir)), env=env)
            if res is None:
                print(tail)
                print("  the check FAILED to run")
                return 1
            check = res
            print(f"  {'OK' if not check['failures'] else 'FAILED'}: {check['images']:,} images and "
                  f"{check['annotations']:,} boxes stored = the JSON's; COCO export -> re-import identical; "
                  f"exported bbox max |diff| {check['coco_export_max_bbox_diff']:.3g}; "
                  f"YOLO round trip max {check['yolo_max_box_diff_px']:.3g} px", flush=True)
            for failure in check["failures"]:
                print("   ", failure)
    for c in contenders:
        if c.failure and c.name.endswith(" import") and c.name.split()[0] in ("Datumaro", "FiftyOne"):
            anchors[c.name.split()[0]] = f"not available: failed: {c.failure}"

    rows = table(contenders, json_bytes)
    load_after = os.getloadavg()
    print()
    print(render_text(rows))
    for label, why in anchors.items():
        if label not in {r["name"].split()[0] for r in rows}:
            print(f"{label}: {why}")
    print(f"JSON {json_bytes / 1e6:.1f} MB; load average {load_before[0]:.1f} before, {load_after[0]:.1f} after; "
          f"benchmark took {time.perf_counter() - started:.0f} s")
    if args.docs:
        write_docs(args, rows, anchors, check, json_bytes, (load_before[0], load_after[0]))
        print(f"wrote {args.docs}")
    # deleting ~100,000 files makes creating files slower for a few minutes on some file systems
    # (ext4 without a journal skips recently freed inodes): wait a while before running it again
    for folder in (work, trash):
        shutil.rmtree(folder, ignore_errors=True)
    return 0 if not check["failures"] else 1


def table(contenders: list[Contender], json_bytes: int) -> list[dict]:
    rows = []
    by_name = {c.name: c.best for c in contenders if c.best}
    floor = by_name.get("floor: json.load + Pillow header")
    store_floor = by_name.get("floor + read + sha256 + store")
    for c in contenders:
        if c.best is None:
            continue
        b = c.best
        rows.append({
            "name": c.name,
            "what": c.what,
            "seconds": b["seconds"],
            "cpu": b.get("cpu_seconds"),
            "sys": b.get("sys_seconds"),
            "images": b.get("images"),
            "annotations": b.get("annotations"),
            "images_per_s": (b.get("images") or 0) / b["seconds"] if b["seconds"] else float("nan"),
            "x_floor": b["seconds"] / floor["seconds"] if floor else float("nan"),
            "x_store": b["seconds"] / store_floor["seconds"] if store_floor else float("nan"),
            "peak_mb": b["peak_rss_kib"] / 1024,
            "growth_mb": None if b.get("rss_before_kib") is None else (b["peak_rss_kib"] - b["rss_before_kib"]) / 1024,
            "json_mb": json_bytes / 2**20,
            "runs": c.runs,
            "version": b.get("version"),
        })
    return rows


def render_text(rows: list[dict]) -> str:
    head = (f"{'contender':34s} {'seconds':>8s} {'cpu s':>7s} {'sys s':>6s} {'images/s':>9s} {'x floor':>8s} "
            f"{'x store':>8s} {'peak RSS':>9s} {'growth':>8s}")
    lines = [head, "-" * len(head)]
    for r in rows:
        growth = "" if r["growth_mb"] is None else f"{r['growth_mb']:.0f} MB"
        lines.append(f"{r['name']:34s} {r['seconds']:8.2f} {r['cpu']:7.2f} {r['sys']:6.2f} {r['images_per_s']:9,.0f} "
                     f"{r['x_floor']:8.2f} {r['x_store']:8.2f} {r['peak_mb']:6.0f} MB {growth:>8s}")
    return "\n".join(lines)


DOCS_BEGIN = "<!-- bench/import_export.py: begin -->"
DOCS_END = "<!-- bench/import_export.py: end -->"


def write_docs(args, rows: list[dict], anchors: dict[str, str], check: dict, json_bytes: int, load: tuple[float, float]) -> None:
    """Replace the results block of ``args.docs`` (between the markers; appended when missing)."""
    cmd = " ".join(
        [".venv/bin/python bench/import_export.py", f"--images {args.images}", f"--boxes-per-image {args.boxes_per_image}"]
        + ([f"--repeat {args.repeat}"] if args.repeat != 1 else [])
        + ([f"--anchors-python {args.anchors_python}"] if args.anchors_python and not args.skip_anchors else [])
        + ([f"--baseline-src {args.baseline_src}"] if args.baseline_src else [])
        + [f"--docs {args.docs}"]
    )
    lines = [
        (
            f"Generated by `{cmd}` on {time.strftime('%Y-%m-%d %H:%M')} UTC: {os.cpu_count()} cores, "
            f"Python {platform.python_version()}, load average {load[0]:.1f} before / {load[1]:.1f} after; "
            f"JSON {json_bytes / 1e6:.1f} MB. Best of {args.repeat} round(s); \"cpu s\" is user + system time "
            "of the timed block (of the whole process for the CLI)."
        ),
        "",
        "| contender | seconds | cpu s (sys) | images/s | × floor | × store floor | peak RSS | RSS growth | what is timed |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in rows:
        growth = "" if r["growth_mb"] is None else f"{r['growth_mb']:.0f} MB"
        name = r["name"] + (f" {r['version']}" if r.get("version") else "")
        lines.append(f"| {name} | {r['seconds']:.2f} | {r['cpu']:.2f} ({r['sys']:.2f}) | {r['images_per_s']:,.0f} | "
                     f"{r['x_floor']:.2f} | {r['x_store']:.2f} | {r['peak_mb']:.0f} MB | {growth} | {r['what']} |")
    shown = {r["name"].split()[0] for r in rows}
    for label, why in anchors.items():
        if label not in shown:
            lines.append(f"| {label} | {why} | | | | | | | |")
    verdict = "OK" if not check["failures"] else "FAILED: " + "; ".join(check["failures"])
    lines += [
        "",
        (
            f"Correctness (checked before the timings are reported): {verdict}. {check['images']:,} images and "
            f"{check['annotations']:,} boxes stored, equal to the JSON's (ids, names, sizes, every box); COCO "
            f"export -> re-import gives identical records; the exported JSON's boxes differ from the source's by "
            f"at most {check['coco_export_max_bbox_diff']:.2g} px (xywh -> xyxy -> xywh in float64); YOLO export "
            f"-> re-import moves a box by at most {check['yolo_max_box_diff_px']:.2g} px."
        ),
    ]
    write_block(args.docs, DOCS_BEGIN, DOCS_END, "\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
