#!/usr/bin/env python
"""Benchmark: exact and near-duplicate detection, winnow vs imagehash's pHash (ANCHORS G3).

    .venv/bin/python bench/near_duplicates.py [--images 1000] [--out bench/out] [--max-distance 10]
        [--size 256x192] [--format jpeg|png] [--copy-every 2] [--real] [--skip-pool] [--skip-full] [--markdown]

``--real``: the distinct pictures are the real colour pictures of ``bench/scraped.py``'s collection
(one per icon and per file stem, shorter side >= 64 px; run that bench first) instead of
generated ones, copied the same way. Recall is then recall on real pictures; precision is a lower
bound, because the truth calls every file distinct while the collection has near copies of its
own (``kr.png`` / ``kr-compressed.png``, icon families such as ``user-trash`` / ``user-trash-full``).

Data (generated once, deterministically, cached under ``--out``; no download): ``--images``
distinct 256x192 pictures - smooth multi-scale random colour fields, a patch of one of
scikit-learn's two bundled sample photos (``load_sample_images``: china.jpg, flower.jpg)
resampled at a random place and scale, 3-7 random shapes, a slight blur and sensor noise -
saved as JPEG q=90 (``--format png``: as PNG, every copy too; the q=60 copy is JPEG-degraded
pixels saved as PNG). Half of them get one transformed copy (in turn: resize to 50%, JPEG re-encode
at q=60, a 5% crop split randomly between the sides, brightness +20%) and a tenth get an exact
copy (the same bytes under another name). Truth: files made from the same picture are
duplicates of each other; everything else is distinct.

Contenders, on the same files (all in the page cache after generation):

* ``winnow``: the files are imported into a fresh store first (not timed; see
  ``bench/import_export.py``); then, timed, from the stored blobs: a fresh
  :class:`~winnow.quality.view.ProjectView` with empty fact caches and the ``exact_duplicate`` +
  ``near_duplicate`` checks (:func:`winnow.quality.duplicates.duplicate_groups`), i.e. ``winnow
  check --only exact_duplicate,near_duplicate``: the hash tier (grey, DCT-scaled decode, pHash +
  dHash, on a process pool), the all-pairs scan, and the embedding of the blobs in a candidate
  pair only. Its pairs are all pairs inside each reported group (so a wrong join costs every
  pair it adds).
* ``winnow, full pass``: the same after the full facts pass (every pixel fact of every check and
  every embedding: what ``winnow check`` with all checks pays), unless ``--skip-full``.
* ``imagehash``: ``imagehash.phash(Image.open(path))`` for every file in one process (how the
  library is used), then every pair within ``--max-distance`` bits (vectorised numpy, which
  flatters it: a Python double loop is far slower). Its pairs are the pairs within the threshold.
* ``imagehash xN``: the same hashing on a process pool of one worker per core (what imagededup
  does), unless ``--skip-pool``.
* a CNN-embedding baseline (imagededup's CNN, a torchvision model): not run - no torch and no
  weights are available offline here.

Near-duplicate precision and recall count pairs of files with different bytes; exact-duplicate
precision and recall count pairs of byte-identical files. Throughput is files per second, end
to end from files (or blobs) to duplicate groups, interpreter start excluded.
"""

from __future__ import annotations

import argparse
import io
import itertools
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))

SEED = 20240
W, H = 256, 192  # the default picture size (--size)
TRANSFORMS = ("resize50", "jpeg60", "crop5", "bright20")
DATA_VERSION = 1
FORMAT = "jpeg"  # the files' format (--format)
COPY_EVERY = 2  # 1 in COPY_EVERY distinct pictures gets a transformed copy (--copy-every)

# --------------------------------------------------------------------------- the data set

_PHOTOS: list[Image.Image] | None = None


def _photos() -> list[Image.Image]:
    global _PHOTOS
    if _PHOTOS is None:
        from sklearn.datasets import load_sample_images

        _PHOTOS = [Image.fromarray(a) for a in load_sample_images().images]
    return _PHOTOS


def distinct_picture(seed: int) -> Image.Image:
    """A 256x192 picture unlike any other seed's (see the module docstring)."""
    rng = np.random.default_rng(seed)
    acc = np.zeros((H, W, 3), np.float32)
    for side, weight in ((2, 1.0), (4, 0.7), (8, 0.45), (16, 0.25)):
        field = rng.normal(0, 1, size=(side, side, 3)).astype(np.float32)
        acc += weight * np.stack(
            [np.asarray(Image.fromarray(field[..., c], "F").resize((W, H), Image.Resampling.BICUBIC)) for c in range(3)], -1
        )
    acc = (acc - acc.mean()) / (acc.std() + 1e-6) * rng.uniform(30, 60) + rng.uniform(70, 180, size=3)
    im = Image.fromarray(np.clip(acc, 0, 255).astype(np.uint8), "RGB")
    f = W / 256  # shapes and patches scale with the picture
    photo = _photos()[int(rng.integers(len(_photos())))]
    pw, ph = int(rng.integers(60, 140)), int(rng.integers(45, 110))  # in the photo's pixels
    sx, sy = int(rng.integers(0, photo.width - 2 * pw)), int(rng.integers(0, photo.height - 2 * ph))
    scale = rng.uniform(1.0, 2.0)
    size = (int(pw * f), int(ph * f))
    patch = photo.crop((sx, sy, sx + int(pw * scale), sy + int(ph * scale))).resize(size, Image.Resampling.BILINEAR)
    im.paste(patch, (int(rng.integers(0, W - size[0])), int(rng.integers(0, H - size[1]))))
    draw = ImageDraw.Draw(im)
    for _ in range(int(rng.integers(3, 8))):
        x, y = int(rng.integers(-20, W / f - 10) * f), int(rng.integers(-20, H / f - 10) * f)
        r = int(rng.integers(12, 80) * f)
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        kind = rng.random()
        if kind < 0.35:
            draw.ellipse([x, y, x + r, y + int(r * rng.uniform(0.5, 1.5))], fill=colour)
        elif kind < 0.7:
            draw.rectangle([x, y, x + r, y + int(r * rng.uniform(0.5, 1.5))], fill=colour)
        elif kind < 0.85:
            draw.polygon([(int(rng.integers(0, W)), int(rng.integers(0, H))) for _ in range(3)], fill=colour)
        else:
            draw.line([x, y, x + r, y + r], fill=colour, width=int(rng.integers(2, 8) * f))
    im = im.filter(ImageFilter.GaussianBlur(0.6 * f))
    noisy = np.asarray(im, np.int16) + rng.integers(-6, 7, size=(H, W, 3))
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8), "RGB")


def _jpeg(im: Image.Image, quality: int) -> bytes:
    """``im`` encoded in the data set's format (JPEG at ``quality``; with ``--format png``, PNG of
    the pixels a JPEG at ``quality`` would decode to when ``quality < 90``)."""
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=quality)
    if FORMAT == "png":
        if quality < 90:
            im = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
        buf = io.BytesIO()
        im.save(buf, "PNG")
    return buf.getvalue()


def transformed(im: Image.Image, kind: str, rng: np.random.Generator) -> bytes:
    if kind == "resize50":
        return _jpeg(im.resize((im.width // 2, im.height // 2), Image.Resampling.BILINEAR), 90)
    if kind == "jpeg60":
        return _jpeg(im, 60)
    if kind == "crop5":
        cw, ch = round(im.width * 0.05), round(im.height * 0.05)
        left, top = int(rng.integers(0, cw + 1)), int(rng.integers(0, ch + 1))
        return _jpeg(im.crop((left, top, im.width - (cw - left), im.height - (ch - top))), 90)
    if kind == "bright20":
        return _jpeg(ImageEnhance.Brightness(im).enhance(1.2), 90)
    raise ValueError(kind)


def real_picture(path: Path) -> Image.Image:
    """A real image file as an RGB picture (transparency over white, what a viewer shows) whose
    longer side is at most the ``--size`` width."""
    im = Image.open(path)
    im.seek(0)
    rgba = im.convert("RGBA")
    out = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    out.alpha_composite(rgba)
    out = out.convert("RGB")
    out.thumbnail((W, W), Image.Resampling.LANCZOS)
    return out


def generate(root: Path, n: int, seed: int = SEED, real: list[Path] | None = None) -> dict:
    """Write (once) the files under ``root/images`` and the truth in ``root/truth.json``.

    With ``real`` the distinct pictures are those files (``n`` is ignored) instead of generated ones."""
    marker = root / "truth.json"
    params = {"images": len(real) if real else n, "seed": seed, "size": [W, H], "v": DATA_VERSION}
    if real:
        params["real"] = [str(p) for p in real]
    if FORMAT != "jpeg":
        params["format"] = FORMAT
    if COPY_EVERY != 2:
        params["copy_every"] = COPY_EVERY
    ext = "png" if FORMAT == "png" else "jpg"
    if marker.is_file():
        truth = json.loads(marker.read_text())
        if truth.get("params") == params:
            return truth
    if root.exists():
        shutil.rmtree(root)
    (root / "images").mkdir(parents=True)
    rng = np.random.default_rng(seed)
    files: dict[str, dict] = {}  # name -> {"picture": base index, "kind": ...}
    for k in range(len(real) if real else n):
        im = real_picture(real[k]) if real else distinct_picture(seed * 1_000_003 + k)
        data = _jpeg(im, 90)
        name = f"{k:06d}.{ext}"
        (root / "images" / name).write_bytes(data)
        files[name] = {"picture": k, "kind": "original"}
        if k % COPY_EVERY == 0:  # 1 in COPY_EVERY (default: half) get a transformed copy, the transforms in turn
            kind = TRANSFORMS[(k // COPY_EVERY) % len(TRANSFORMS)]
            copy = f"{k:06d}-{kind}.{ext}"
            (root / "images" / copy).write_bytes(transformed(im, kind, rng))
            files[copy] = {"picture": k, "kind": kind}
        if k % (5 * COPY_EVERY) == 3:  # 1 in 5 * COPY_EVERY (default: a tenth) get an exact copy under another name
            copy = f"copy-of-{k:06d}.{ext}"
            (root / "images" / copy).write_bytes(data)
            files[copy] = {"picture": k, "kind": "exact"}
    truth = {"params": params, "files": files}
    marker.write_text(json.dumps(truth))
    return truth


def truth_pairs(truth: dict, shas: dict[str, str]) -> tuple[set, set, dict]:
    """``(near pairs, exact pairs, kind of each near pair)`` - pairs are sorted name tuples."""
    by_picture: dict[int, list[str]] = defaultdict(list)
    for name, f in truth["files"].items():
        by_picture[f["picture"]].append(name)
    near, exact, kind = set(), set(), {}
    for names in by_picture.values():
        for a, b in itertools.combinations(sorted(names), 2):
            if shas[a] == shas[b]:
                exact.add((a, b))
            else:
                near.add((a, b))
                ka, kb = truth["files"][a]["kind"], truth["files"][b]["kind"]
                kind[(a, b)] = next((k for k in (ka, kb) if k in TRANSFORMS), "original")
    return near, exact, kind


def _score(found: set, true: set) -> tuple[float, float]:
    tp = len(found & true)
    precision = tp / len(found) if found else 1.0
    recall = tp / len(true) if true else 1.0
    return precision, recall


def _group_pairs(groups: list[list[str]]) -> set:
    return {tuple(p) for g in groups for p in itertools.combinations(sorted(g), 2)}


# --------------------------------------------------------------------------- contenders


def run_winnow(images_dir: Path, work: Path, max_distance: int, full: bool = True) -> dict:
    from winnow.core.types import Dataset, ImageRecord, Task
    from winnow.quality.duplicates import duplicate_groups
    from winnow.quality.engine import run_checks
    from winnow.quality.view import ProjectView
    from winnow.services.ingest import import_records
    from winnow.services.projects import create_project
    from winnow.store.db import Store

    home = work / "winnow-home"
    if home.exists():
        shutil.rmtree(home)
    store = Store.open(home)
    create_project(store, "dups", Task.CLASSIFY)
    names = sorted(p.name for p in images_dir.iterdir())
    ds = Dataset(images=[ImageRecord(name=n, file=images_dir / n) for n in names], task=Task.CLASSIFY)
    t0 = time.perf_counter()
    import_records(store, "dups", ds, images_dir)
    import_s = time.perf_counter() - t0

    # imports are not the point (as for imagehash): pyarrow (+ the pandas it loads, ~0.5 s) and scipy
    from winnow.store.cache import FactTable
    import scipy.sparse.csgraph  # noqa: F401

    FactTable(work / "warm", "t").append([{"sha256": "x", "phash": 0}])
    FactTable(work / "warm", "t").read()
    shutil.rmtree(home / "cache", ignore_errors=True)  # every fact table: hashes, embeddings, facts
    params = {"near_duplicate": {"max_distance": max_distance}, "exact_duplicate": {}}
    only = ["exact_duplicate", "near_duplicate"]
    t0 = time.perf_counter()
    view = ProjectView(store, "dups")
    _ = view.hashes
    hashes_s = time.perf_counter() - t0
    report = run_checks(store, "dups", only=only, params=params, view=view)
    total_s = time.perf_counter() - t0
    embedded = len(list((home / "cache").glob("emb-*/*.parquet")))
    emb_rows = 0
    if embedded:
        import pyarrow.parquet as pq

        emb_rows = sum(pq.read_metadata(p).num_rows for p in (home / "cache").glob("emb-*/*.parquet"))
    # warm: hashes and embeddings cached in Parquet, a fresh view - what a second check pays
    t1 = time.perf_counter()
    view2 = ProjectView(store, "dups")
    groups = duplicate_groups(view2, max_distance=max_distance)
    warm_s = time.perf_counter() - t1
    view3 = ProjectView(store, "dups", dataset=view2.dataset)
    _ = view3.hashes, view3.embeddings_of(np.arange(len(view3)))
    t2 = time.perf_counter()
    duplicate_groups(view3, max_distance=max_distance)  # the grouping alone, facts in memory
    fresh_groups_s = time.perf_counter() - t2
    out = {
        "seconds": total_s,
        "hashes_seconds": hashes_s,
        "checks_seconds": total_s - hashes_s,
        "embedded_blobs": emb_rows,
        "blobs": len(set(view.shas)),
        "warm_seconds": warm_s,
        "grouping_seconds_facts_cached": fresh_groups_s,
        "import_seconds": import_s,
        "exact_groups": [f.images for f in report.findings if f.check == "exact_duplicate"],
        "near_groups": [f.images for f in report.findings if f.check == "near_duplicate"],
        "shas": {r.name: r.sha256 for r in view.records},
        "files": len(names),
        "groups_match_report": sorted(map(sorted, [f.images for f in report.findings if f.check == "near_duplicate"]))
        == sorted(sorted(g.names) for g in groups if g.kind == "near"),
    }
    if full:  # the same checks after the full facts pass (empty caches again)
        shutil.rmtree(home / "cache", ignore_errors=True)
        t0 = time.perf_counter()
        view = ProjectView(store, "dups")
        _ = view.facts
        facts_s = time.perf_counter() - t0
        report = run_checks(store, "dups", only=only, params=params, view=view)
        out["full"] = {
            "seconds": time.perf_counter() - t0,
            "facts_seconds": facts_s,
            "exact_groups": [f.images for f in report.findings if f.check == "exact_duplicate"],
            "near_groups": [f.images for f in report.findings if f.check == "near_duplicate"],
        }
    return out


def _imagehash_file(path: str) -> int:
    import imagehash

    bits = imagehash.phash(Image.open(path)).hash.ravel()
    return int(np.packbits(bits).view(">u8")[0])


def _pairs_within(hashes: np.ndarray, limit: int) -> tuple[np.ndarray, np.ndarray]:
    """All pairs within ``limit`` bits, blocked numpy (generous to the baseline)."""
    ii, jj = [], []
    for s in range(0, len(hashes), 512):
        d = np.bitwise_count(hashes[s : s + 512, None] ^ hashes[None, :])
        a, b = np.nonzero(d <= limit)
        keep = a + s < b
        ii.append(a[keep] + s)
        jj.append(b[keep])
    return np.concatenate(ii), np.concatenate(jj)


def run_imagehash(images_dir: Path, max_distance: int, workers: int = 1) -> dict:
    import imagehash  # noqa: F401  (import time is not the point)

    paths = sorted(str(p) for p in images_dir.iterdir())
    t0 = time.perf_counter()
    if workers == 1:
        values = [_imagehash_file(p) for p in paths]
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            values = list(pool.map(_imagehash_file, paths, chunksize=16))
    hash_s = time.perf_counter() - t0
    hashes = np.array(values, dtype=np.uint64)
    i, j = _pairs_within(hashes, max_distance)
    total_s = time.perf_counter() - t0
    names = [Path(p).name for p in paths]
    pairs = {tuple(sorted((names[a], names[b]))) for a, b in zip(i.tolist(), j.tolist(), strict=True)}
    return {"seconds": total_s, "hash_seconds": hash_s, "pairs": pairs, "files": len(paths), "hashes": hashes, "names": names}


def rethreshold(r: dict, limit: int) -> dict:
    """The same imagehash hashes, paired at another threshold (hashing time counted again)."""
    t0 = time.perf_counter()
    i, j = _pairs_within(r["hashes"], limit)
    names = r["names"]
    pairs = {tuple(sorted((names[a], names[b]))) for a, b in zip(i.tolist(), j.tolist(), strict=True)}
    return dict(r, seconds=r["hash_seconds"] + time.perf_counter() - t0, pairs=pairs)


def time_scan(n: int, seed: int = 7) -> dict[str, float]:
    """Seconds of winnow's all-pairs scan (:func:`near_pairs`) on ``n`` random pictures' facts."""
    from winnow.quality.duplicates import GROUP_PARAMS, hamming_pairs, near_pairs

    rng = np.random.default_rng(seed)
    ph = rng.integers(-(2**63), 2**63 - 1, size=n, dtype=np.int64)
    dh = rng.integers(-(2**63), 2**63 - 1, size=n, dtype=np.int64)
    emb = rng.normal(size=(n, 224)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    out = {}
    t = time.perf_counter()
    hamming_pairs(ph, GROUP_PARAMS["max_distance"])
    out["pHash only, <= max_distance"] = time.perf_counter() - t
    t = time.perf_counter()
    near_pairs(ph, dh, emb)
    out["near_pairs, default rule"] = time.perf_counter() - t
    return out


def profile_facts(images_dir: Path, sample: int = 150) -> dict[str, float]:
    """Milliseconds per image of each part of winnow's passes vs imagehash, one process."""
    from winnow import media
    from winnow.quality import facts

    paths = sorted(images_dir.iterdir())[:sample]
    datas = [p.read_bytes() for p in paths]
    out: dict[str, float] = {}

    def clock(name, fn):
        t = time.perf_counter()
        for x in items:
            fn(x)
        out[name] = (time.perf_counter() - t) / len(items) * 1000

    items = [str(p) for p in paths]
    clock("imagehash.phash(Image.open(path))", _imagehash_file)
    clock("hash tier: facts.hashes_of_file (read, decode, hashes)", facts.hashes_of_file)
    items = datas
    clock("  decode in grey, DCT-scaled (decode_for_hashes)", lambda d: facts.decode_for_hashes(d, "x"))
    items = [facts.decode_for_hashes(d, "x") for d in datas]
    clock("  reduce + 2 LANCZOS resizes + pHash + dHash", facts.hash_image)
    items = [str(p) for p in paths]
    clock("embedding of one candidate: facts.embedding_of_file", facts.embedding_of_file)
    clock("full pass: facts.facts_of_file (every fact)", facts.facts_of_file)
    items = datas
    clock("  decode at >= 256 px, RGB (media.decode)", lambda d: media.decode(d, "x", min_side=256))
    clock("imagehash.phash(Image.open(path)) again", lambda d: _imagehash_file(io.BytesIO(d)))
    return out


# --------------------------------------------------------------------------- report


def main(argv: list[str] | None = None) -> int:
    global W, H, FORMAT, COPY_EVERY
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=1000, help="distinct pictures (files: about 1.6x this)")
    p.add_argument("--out", type=Path, default=REPO / "bench" / "out")
    p.add_argument("--max-distance", type=int, default=10, help="pHash Hamming threshold, for both tools")
    p.add_argument("--size", default=f"{W}x{H}", help="picture size WxH (default %(default)s)")
    p.add_argument("--wide-distance", type=int, default=20,
                   help="also score imagehash's pairs at this looser threshold (winnow's crop_distance)")
    p.add_argument("--scan", type=int, default=100_000, help="time winnow's all-pairs scan on this many random facts (0: skip)")
    p.add_argument("--skip-pool", action="store_true", help="do not run imagehash on a process pool")
    p.add_argument("--skip-profile", action="store_true")
    p.add_argument("--skip-full", action="store_true", help="do not time winnow after the full facts pass")
    p.add_argument("--format", choices=("jpeg", "png"), default="jpeg", help="the files' format (default %(default)s)")
    p.add_argument("--copy-every", type=int, default=2,
                   help="1 in N distinct pictures gets a transformed copy, 1 in 5N an exact one (default 2: a dense set; 20 is ~6%% copies)")
    p.add_argument("--markdown", action="store_true", help="print the results as a markdown section")
    p.add_argument("--real", action="store_true",
                   help="real pictures instead of generated ones: the distinct colour pictures of bench/scraped.py's "
                        "collection (run it first), shrunk to fit --size's width; --images is ignored")
    args = p.parse_args(argv)

    W, H = (int(v) for v in args.size.lower().split("x"))
    FORMAT = args.format
    COPY_EVERY = max(1, args.copy_every)
    real = None
    if args.real:
        from scraped import distinct_pictures

        real = distinct_pictures(args.out.resolve() / "scraped" / "files")
        args.images = len(real)
    root = args.out.resolve() / (
        f"near-dup-{'real' if real else args.images}-{W}x{H}" + ("" if FORMAT == "jpeg" else f"-{FORMAT}")
        + ("" if COPY_EVERY == 2 else f"-every{COPY_EVERY}")
    )
    t0 = time.perf_counter()
    truth = generate(root, args.images, real=real)
    images_dir = root / "images"
    print(f"data: {len(truth['files'])} files from {args.images} pictures under {root} ({time.perf_counter() - t0:.1f} s)", flush=True)
    work = Path(tempfile.mkdtemp(prefix="near-dup-", dir=args.out.resolve()))
    try:
        w = run_winnow(images_dir, work, args.max_distance, full=not args.skip_full)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    near_true, exact_true, kind = truth_pairs(truth, w["shas"])
    rows = []

    w_near = {q for q in _group_pairs(w["near_groups"]) if w["shas"][q[0]] != w["shas"][q[1]]}
    w_exact = _group_pairs(w["exact_groups"])
    rows.append(("winnow (hash tier + exact/near checks)", w["seconds"], w_near, w_exact))
    print(f"  winnow: {w['seconds']:.2f} s (hash tier {w['hashes_seconds']:.2f} s, checks {w['checks_seconds']:.3f} s "
          f"with {w['embedded_blobs']} of {w['blobs']} blobs embedded; import before, untimed: "
          f"{w['import_seconds']:.2f} s; warm re-run {w['warm_seconds']:.2f} s)", flush=True)
    if "full" in w:
        f = w["full"]
        rows.append(("winnow, after the full facts pass", f["seconds"],
                     {q for q in _group_pairs(f["near_groups"]) if w["shas"][q[0]] != w["shas"][q[1]]},
                     _group_pairs(f["exact_groups"])))
        print(f"  winnow after the full pass: {f['seconds']:.2f} s (facts pass {f['facts_seconds']:.2f} s)", flush=True)
    contenders = [("imagehash.phash, 1 process", 1)]
    if not args.skip_pool:
        contenders.append((f"imagehash.phash, {os.cpu_count()} processes", os.cpu_count() or 1))
    base_seconds = pool_seconds = None
    for label, workers in contenders:
        r = run_imagehash(images_dir, args.max_distance, workers)
        ih_near = {q for q in r["pairs"] if w["shas"][q[0]] != w["shas"][q[1]]}
        ih_exact = {q for q in r["pairs"] if w["shas"][q[0]] == w["shas"][q[1]]}
        rows.append((label, r["seconds"], ih_near, ih_exact))
        base_seconds = base_seconds or r["seconds"]
        if workers > 1:
            pool_seconds = r["seconds"]
        print(f"  {label}: {r['seconds']:.2f} s (hashing {r['hash_seconds']:.2f} s)", flush=True)
        if workers == 1 and args.wide_distance > args.max_distance:
            r2 = rethreshold(r, args.wide_distance)
            rows.append((f"imagehash.phash, 1 process, <= {args.wide_distance} bits", r2["seconds"],
                         {q for q in r2["pairs"] if w["shas"][q[0]] != w["shas"][q[1]]},
                         {q for q in r2["pairs"] if w["shas"][q[0]] == w["shas"][q[1]]}))

    n_files = w["files"]
    table = []
    for label, secs, near, exact in rows:
        np_, nr = _score(near, near_true)
        ep, er = _score(exact, exact_true)
        per_kind = {}
        for k in TRANSFORMS:
            true_k = {q for q in near_true if kind[q] == k}
            per_kind[k] = len(near & true_k) / len(true_k) if true_k else float("nan")
        table.append({
            "contender": label, "seconds": secs, "files_per_s": n_files / secs, "vs_imagehash": base_seconds / secs,
            "vs_pool": pool_seconds / secs if pool_seconds else float("nan"),
            "near_precision": np_, "near_recall": nr, "exact_precision": ep, "exact_recall": er, "recall_by_kind": per_kind,
        })
    prof = {} if args.skip_profile else profile_facts(images_dir)
    scan = time_scan(args.scan) if args.scan else {}

    head = (f"| contender | seconds | files/s | vs imagehash (1 process) | vs imagehash ({os.cpu_count()} processes) | "
            f"near precision | near recall | {' | '.join(f'recall {k}' for k in TRANSFORMS)} | exact precision | exact recall |")
    lines = [head, "|" + "---|" * (10 + len(TRANSFORMS))]
    for t in table:
        lines.append(
            f"| {t['contender']} | {t['seconds']:.2f} | {t['files_per_s']:.0f} | {t['vs_imagehash']:.2f}x | {t['vs_pool']:.2f}x | "
            f"{t['near_precision']:.3f} | {t['near_recall']:.3f} | "
            + " | ".join(f"{t['recall_by_kind'][k]:.3f}" for k in TRANSFORMS)
            + f" | {t['exact_precision']:.3f} | {t['exact_recall']:.3f} |"
        )
    lines.append("| CNN embedding (imagededup CNN / torchvision) | not run: no torch and no weights offline | | | | | | | | | | | |")
    print()
    print(f"{n_files} {FORMAT.upper()} files ({args.images} pictures of {W}x{H}, {len(near_true)} true near pairs, {len(exact_true)} true exact pairs), "
          f"pHash threshold {args.max_distance} bits, {os.cpu_count()} CPUs, {platform.python_version()}, "
          f"load average {os.getloadavg()[0]:.1f}")
    print("\n".join(lines))
    print(f"\nwinnow split: hash tier {w['hashes_seconds']:.2f} s, checks {w['checks_seconds']:.3f} s (embedding "
          f"{w['embedded_blobs']} of {w['blobs']} blobs); with hashes and embeddings cached, a fresh view groups in "
          f"{w['warm_seconds']:.2f} s (of which the grouping alone "
          f"{w['grouping_seconds_facts_cached']:.3f} s); report groups == duplicate_groups: {w['groups_match_report']}")
    for k, v in scan.items():
        print(f"all-pairs scan of {args.scan:,} pictures ({args.scan * (args.scan - 1) // 2:.2e} pairs), {k}: {v:.2f} s")
    if prof:
        print("\nper image, one process (ms):")
        for k, v in prof.items():
            print(f"  {k:56s} {v:7.2f}")
    if args.markdown:
        print("\n<!-- markdown -->")
        print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
