#!/usr/bin/env python
"""Benchmark: winnow's duplicate, grayscale and corrupt-image checks on real image files.

    .venv/bin/python bench/scraped.py [--roots DIR ...] [--out bench/out/scraped/files] [--max-files N]
        [--rescrape] [--no-colour-subset] [--max-distance 10] [--markdown]

Data: nothing is generated. The image files already on this disk (icon themes, documentation
images, test images inside Python installs and toolchains) stand in for a scraped data set: every
file with an image extension under ``--roots`` (missing roots skipped, links not followed) is
copied once into ``--out`` under its absolute path (``usr/share/icons/Adwaita/48x48/places/
folder.png``; a hidden component ``.pyenv`` becomes ``_.pyenv``: importers skip hidden folders),
with a manifest (source, size, blake2b) reused until ``--rescrape``.

Truth, without winnow: exact duplicates = identical bytes (blake2b, then byte for byte); near
duplicates, a lower bound = icons of one theme (``icons/<theme>/<N>x<N>/<context>/<name>``) with
the same context and name at different sizes; grey = Pillow mode 1/L/LA/I/I;16/F, or no pixel
whose max(R,G,B) - min(R,G,B), times its opacity, exceeds 24 at full size (``grey_strict``: R = G = B at every
pixel, also kept); broken = Pillow cannot load it. Every other pair a contender calls near is written
to ``outside_truth.json`` (the first 20 printed) for a person to judge, sorted into: same file
name, both flat once alpha is dropped (what imagehash hashes), same folder, other.

Contenders: ``winnow`` - imported with the ``images`` format into a fresh store (not timed), then,
timed, a fresh ``ProjectView`` + ``run_checks(only=exact_duplicate, near_duplicate, grayscale,
corrupt_image)``: hash tier, embeddings of candidate pairs, and the full facts pass the grayscale
check needs. Its findings' pairs are scored, and so are its direct pairs (what a finding chains).
``imagehash``: ``phash(Image.open)`` in one process, pairs within ``--max-distance`` bits (it has
no exact-duplicate notion). Both run again on a *colour subset*: every colour file, grey files
that are not symbolic icons (evenly sampled) making up 10% of it, and the broken files - a
mostly-colour set with a few grey pictures, where winnow's grayscale rule (it speaks only when
more than 80% of the set is in colour) applies. Pairs are scored among the files each
contender read; near recall is split by size ratio, smaller side, and symbolic vs colour icons.

Not measured: ``duplicate_label_conflict`` and ``split_leakage`` (no labels, boxes or splits in
these files), other checks, and speed on photos (these are mostly icons: bench/near_duplicates.py).
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import itertools
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "bench"))
from near_duplicates import _imagehash_file, _pairs_within, _score  # noqa: E402

ROOTS = ("/usr/share/icons", "/usr/share/doc", "/usr/share/pixmaps", "/usr/lib", "/root/.pyenv", "/root/.rustup")
EXTS = {".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp", ".tif", ".tiff"}
GREY = {"1", "L", "LA", "La", "I", "F"}
ICON = re.compile(r"(?:^|/)icons/([^/]+)/(\d+)x(\d+)(?:@\d+x?)?/([^/]+)/([^/]+)$")
ONLY = ["exact_duplicate", "near_duplicate", "grayscale", "corrupt_image"]
BUCKETS = ("<=2x", "2-4x", ">4x", "< 32 px", "symbolic", "colour")
CATEGORIES = ("same file name", "both flat without alpha", "same folder", "other")


# --------------------------------------------------------------------------- scrape


#: A visible pixel whose max(R,G,B) - min(R,G,B) exceeds this is coloured (the grey truth).
GREY_SPREAD = 24
#: Share of grey files in the colour subset: "mostly colour", as a photo set with a few grey images.
SUBSET_GREY_SHARE = 0.1

def distinct_pictures(files_dir: Path, min_side: int = 64) -> list[Path]:
    """The collection's distinct colour pictures, for bench/near_duplicates.py ``--real``: one file
    per icon (its largest size) and per other file stem (``python.png``, ``.gif``, ``.bmp`` are one
    picture), no symbolic icons, no identical bytes, shorter side >= ``min_side``; sorted."""
    manifest = json.loads((files_dir.parent / "manifest.json").read_text())["files"]
    seen, best = set(), {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for e in manifest:
            name = e["name"]
            if e["blake2b"] in seen or "-symbolic" in name:
                continue
            seen.add(e["blake2b"])
            try:
                with Image.open(files_dir / name) as im:
                    w, h = im.size
            except Exception:  # noqa: BLE001 - the broken ones are not pictures
                continue
            if min(w, h) < min_side:
                continue
            m = ICON.search(name)
            key = (m.group(1), m.group(4), m.group(5).rsplit(".", 1)[0]) if m else ("file", Path(name).stem)
            if key not in best or w * h > best[key][1]:
                best[key] = (name, w * h)
    return sorted(files_dir / name for name, _ in best.values())


def _walk(roots: list[str], skip: Path):
    for root in roots:
        if not os.path.isdir(root):
            print(f"  root {root}: not here, skipped", flush=True)
            continue
        for dirpath, dirnames, filenames in os.walk(root):  # directory links are not followed
            dirnames.sort()
            if Path(dirpath).resolve().is_relative_to(skip):
                dirnames[:] = []
                continue
            for fn in sorted(filenames):
                src = os.path.join(dirpath, fn)
                if Path(fn).suffix.lower() in EXTS and not os.path.islink(src) and os.path.isfile(src):
                    yield src


def rel_name(src: str) -> str:
    return "/".join("_" + c if c.startswith(".") else c for c in Path(os.path.abspath(src)).parts[1:])


def scrape(roots: list[str], files_dir: Path, max_files: int, rescrape: bool) -> list[dict]:
    manifest = files_dir.parent / "manifest.json"
    params = {"roots": roots, "max_files": max_files}
    m = json.loads(manifest.read_text()) if manifest.is_file() and not rescrape else {}
    if m.get("params") == params and all((files_dir / e["name"]).is_file() for e in m["files"]):
        return m["files"]
    shutil.rmtree(files_dir, ignore_errors=True)
    entries: dict[str, dict] = {}
    for src in itertools.islice(_walk(roots, files_dir.parent.resolve()), max_files or None):
        try:
            data, name = Path(src).read_bytes(), rel_name(src)
        except OSError:
            continue
        (files_dir / name).parent.mkdir(parents=True, exist_ok=True)
        (files_dir / name).write_bytes(data)
        entries[name] = {"name": name, "source": src, "size": len(data), "blake2b": hashlib.blake2b(data).hexdigest()}
    files = sorted(entries.values(), key=lambda e: e["name"])
    files_dir.mkdir(parents=True, exist_ok=True)
    manifest.write_text(json.dumps({"params": params, "files": files}, indent=0))
    return files


# --------------------------------------------------------------------------- truth


def _codes(a: np.ndarray, b: np.ndarray, n: int) -> np.ndarray:
    """Pairs as sorted unique int64 codes ``min * n + max`` (millions of pairs stay cheap)."""
    a, b = np.asarray(a, np.int64), np.asarray(b, np.int64)
    return np.unique(np.minimum(a, b) * n + np.maximum(a, b))


def _group_codes(groups: list[list[int]], n: int) -> np.ndarray:
    parts = [np.zeros(0, np.int64)]
    for g in groups:
        g = np.asarray(sorted(g), np.int64)
        i, j = np.triu_indices(len(g), 1)
        parts.append(g[i] * n + g[j])
    return np.unique(np.concatenate(parts))


def _decode(path: Path) -> dict:
    """Format, mode, and whether Pillow loads it, it is grey (see the docstring), it is flat in grey."""
    d = {"format": "?", "mode": "?", "ok": False, "grey": False, "grey_strict": False, "flat": False}
    try:
        im = Image.open(path)
        d["format"] = im.format or "?"
        im.load()
        d.update(mode=im.mode, ok=True, size=list(im.size))
        if im.mode in GREY or im.mode.startswith("I;16"):
            d["grey"] = d["grey_strict"] = True
        else:
            rgba = np.asarray(im.convert("RGBA")).astype(np.int16)
            rgb, seen = rgba[..., :3], rgba[..., 3] > 0
            d["grey_strict"] = bool((rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all())
            # perceptual: no pixel whose max - min over R, G, B, weighted by its opacity, exceeds 24
            spread = (rgb.max(axis=2) - rgb.min(axis=2)) * (rgba[..., 3] / 255.0)
            d["grey"] = bool((spread[seen] <= GREY_SPREAD).all())
        lo, hi = im.convert("L").getextrema()  # what both tools hash: alpha dropped
        d["flat"] = lo == hi
    except Exception as exc:  # noqa: BLE001 - anything Pillow cannot load is broken
        d["error"] = f"{type(exc).__name__}: {exc}"[:200]
    return d


def truth(files_dir: Path, files: list[dict]) -> dict:
    n = len(files)
    by_hash: dict[str, list[int]] = defaultdict(list)
    for i, e in enumerate(files):
        by_hash[e["blake2b"]].append(i)
    content = np.arange(n)  # id of each file's exact-duplicate group
    for members in (m for m in by_hash.values() if len(m) > 1):
        seen: list[tuple[bytes, int]] = []
        for i in members:
            data = (files_dir / files[i]["name"]).read_bytes()
            first = next((k for d, k in seen if d == data), None)  # byte-for-byte, not the hash alone
            if first is None:
                seen.append((data, i))
            else:
                content[i] = first
    groups = defaultdict(list)
    for i, c in enumerate(content):
        groups[int(c)].append(i)
    exact = _group_codes([g for g in groups.values() if len(g) > 1], n)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        info = [_decode(files_dir / e["name"]) for e in files]

    icons = defaultdict(list)
    for i, e in enumerate(files):
        m = ICON.search(e["name"])
        if m and info[i]["ok"]:
            stem = m.group(5).rsplit(".", 1)[0]
            icons[(e["name"][: m.end(1)], m.group(4), stem)].append((i, int(m.group(2))))
    near, attrs = [], []
    for members in icons.values():
        for (a, sa), (b, sb) in itertools.combinations(members, 2):
            if sa != sb and content[a] != content[b]:
                near.append(min(a, b) * n + max(a, b))
                r = max(sa, sb) / min(sa, sb)
                symbolic = "-symbolic" in files[a]["name"].rsplit("/", 1)[-1]
                attrs.append({"<=2x": r <= 2, "2-4x": 2 < r <= 4, ">4x": r > 4, "< 32 px": min(sa, sb) < 32,
                              "symbolic": symbolic, "colour": not symbolic})
    order = np.argsort(near, kind="stable")
    near_codes = np.asarray(near, np.int64)[order]
    masks = {k: np.array([attrs[o][k] for o in order], bool) for k in BUCKETS}
    return {"content": content, "exact": exact, "near": near_codes, "near_masks": masks, "info": info}


def categorise(codes: np.ndarray, names: list[str], info: list[dict]) -> np.ndarray:
    """The category (index into CATEGORIES) of each pair outside the truth."""
    n = len(names)
    i, j = codes // n, codes % n
    stem = np.unique([s.rsplit("/", 1)[-1].split(".")[0] for s in names], return_inverse=True)[1]
    folder = np.unique([s.rsplit("/", 1)[0] for s in names], return_inverse=True)[1]
    flat = np.array([d["flat"] for d in info], bool)
    return np.select([stem[i] == stem[j], flat[i] & flat[j], folder[i] == folder[j]], [0, 1, 2], default=3)


# --------------------------------------------------------------------------- contenders


def _components(codes: np.ndarray, n: int) -> set[frozenset]:
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    i, j = codes // n, codes % n
    label = connected_components(coo_matrix((np.ones(len(i), np.int8), (i, j)), shape=(n, n)), directed=False)[1]
    comps = defaultdict(set)
    for x in np.unique(np.concatenate([i, j])).tolist():
        comps[label[x]].add(x)
    return {frozenset(c) for c in comps.values()}


def run_winnow(files_dir: Path, names: list[str], subset: list[int] | None, work: Path) -> dict:
    from winnow.core.types import UNLABELED_TAG, Dataset, ImageRecord, Task
    from winnow.quality.engine import run_checks
    from winnow.quality.files import Grayscale
    from winnow.quality.view import ProjectView
    from winnow.services.ingest import import_dataset, import_records
    from winnow.services.projects import create_project
    from winnow.store.db import Store

    home = work / "winnow-home"
    shutil.rmtree(home, ignore_errors=True)
    store = Store.open(home)
    create_project(store, "scraped", Task.CLASSIFY)
    t0 = time.perf_counter()
    if subset is None:
        rep = import_dataset(store, "scraped", files_dir, format="images")
    else:
        recs = [ImageRecord(name=names[i], file=files_dir / names[i], tags=[UNLABELED_TAG]) for i in subset]
        rep = import_records(store, "scraped", Dataset(images=recs, task=Task.CLASSIFY), files_dir, format="images")
    import_s = time.perf_counter() - t0
    from winnow.store.cache import FactTable  # imports are not the point (pyarrow, scipy)
    import pyarrow.parquet as pq
    import scipy.sparse.csgraph  # noqa: F401

    FactTable(work / "warm", "t").append([{"sha256": "x", "phash": 0}])
    FactTable(work / "warm", "t").read()
    shutil.rmtree(home / "cache", ignore_errors=True)
    t0 = time.perf_counter()  # the duplicate checks alone first (what near_duplicates.py times), then all four
    run_checks(store, "scraped", only=ONLY[:2], view=ProjectView(store, "scraped"))
    dup_s = time.perf_counter() - t0
    shutil.rmtree(home / "cache", ignore_errors=True)
    t0 = time.perf_counter()
    view = ProjectView(store, "scraped")
    _ = view.hashes
    hashes_s = time.perf_counter() - t0
    report = run_checks(store, "scraped", only=ONLY, view=view)
    seconds = time.perf_counter() - t0
    # the images the grayscale rule counts grey, whatever the colour share (the check itself; not timed)
    grey_rule, by = [f.images[0] for f in Grayscale().run(view, min_colour_share=-1.0)], defaultdict(list)
    for f in report.findings:
        by[f.check].append(list(f.images))
    return {
        "edges": winnow_edges(view), "grey_rule": grey_rule,
        "seconds": seconds, "hashes_seconds": hashes_s, "duplicates_only_seconds": dup_s, "import_seconds": import_s,
        "imported": [r.name for r in view.records],
        "refused": sorted({p.record or p.file for p in rep.problems if p.level == "error"}),
        "import_errors": [str(p) for p in rep.problems if p.level == "error"][:20],
        "exact_groups": by["exact_duplicate"], "near_groups": by["near_duplicate"],
        "grayscale": sorted({x for g in by["grayscale"] for x in g}),
        "corrupt": sorted({x for g in by["corrupt_image"] for x in g}),
        "colour_share": 1.0 - len(grey_rule) / max(int(view.decodable.sum()), 1),
        "embedded": sum(pq.read_metadata(f).num_rows for f in (home / "cache").glob("emb-*/*.parquet")),
        "blobs": len(set(view.shas)), "notes": report.notes,
    }


def winnow_edges(view) -> tuple[np.ndarray, np.ndarray]:
    """winnow's confirmed near pairs themselves, as record positions (its near groups, before they are
    split into stars, are their connected components): its own candidate + confirm functions."""
    from winnow.quality.duplicates import GROUP_PARAMS as P, candidate_pairs, confirm_pairs

    hs, recs = view.hashes, defaultdict(list)
    for k, sha in enumerate(view.shas):
        if hs["decode_error"][k] == "":
            recs[sha].append(k)
    blobs = list(recs.values())
    first = np.array([r[0] for r in blobs])
    rule = {k: P[k] for k in ("max_distance", "max_dhash", "crop_distance", "crop_cosine")}
    i, j, h, dd = candidate_pairs(hs["phash"][first], hs["dhash"][first], ghist=hs["ghist"][first], crop_hist=P["crop_hist"], **rule)
    if not len(i):
        return i, j
    cand = np.unique(np.concatenate([i, j]))
    emb, pos = view.embeddings_of(first[cand]), np.full(len(blobs), -1)
    pos[cand] = np.arange(len(cand))
    cos = np.concatenate([np.einsum("ij,ij->i", emb[pos[i[k : k + 50000]]], emb[pos[j[k : k + 50000]]])
                          for k in range(0, len(i), 50000)])
    cos = np.clip(1.0 - cos, 0.0, 2.0)
    ok = confirm_pairs(h, dd, cos, max_cosine=P["max_cosine"], **rule)
    i, j = i[ok], j[ok]
    multi = np.array([len(r) > 1 for r in blobs])[i] | np.array([len(r) > 1 for r in blobs])[j]
    extra = [(a, b) for x, y in zip(i[multi].tolist(), j[multi].tolist(), strict=True) for a in blobs[x] for b in blobs[y]]
    ea, eb = (np.array(v, np.int64) for v in zip(*extra, strict=True)) if extra else (np.zeros(0, np.int64),) * 2
    return np.concatenate([first[i[~multi]], ea]), np.concatenate([first[j[~multi]], eb])


def run_imagehash(files_dir: Path, names: list[str], subset: list[int], limit: int) -> dict:
    import imagehash  # noqa: F401  (import time is not the point)

    t0 = time.perf_counter()
    kept, values = [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i in subset:
            try:
                values.append(_imagehash_file(str(files_dir / names[i])))
                kept.append(i)
            except Exception:  # noqa: BLE001 - a file imagehash cannot read is left out, and counted
                pass
    a, b = _pairs_within(np.array(values, np.uint64), limit)
    seconds = time.perf_counter() - t0  # hashing + pairs, as in near_duplicates.py; not the bookkeeping below
    kept_a = np.asarray(kept, np.int64)
    return {"seconds": seconds, "pairs": _codes(kept_a[a], kept_a[b], len(names)), "failed": len(subset) - len(kept)}


# --------------------------------------------------------------------------- scoring and report


def score_row(label: str, setname: str, files: int, seconds: float, near: np.ndarray, exact: np.ndarray | None,
              t: dict, scope: np.ndarray, names: list[str]) -> dict:
    """``near``/``exact``: found pair codes; ``scope``: bool per file (files the contender saw)."""
    n = len(names)
    content = t["content"]
    near = near[content[near // n] != content[near % n]]  # byte-identical pairs are exact, not near
    in_scope = lambda c: c[scope[c // n] & scope[c % n]]  # noqa: E731
    true_near, true_exact = in_scope(t["near"]), in_scope(t["exact"])
    hit = np.isin(t["near"], near)
    ok = scope[t["near"] // n] & scope[t["near"] % n]
    recall = {k: (float(hit[ok & m].mean()) if (ok & m).any() else float("nan"), int((ok & m).sum()))
              for k, m in t["near_masks"].items()}
    outside = np.setdiff1d(near, true_near)
    cats = categorise(outside, names, t["info"]) if len(outside) else np.zeros(0, int)
    row = {"set": setname, "contender": label, "files": files, "seconds": seconds, "files_per_s": files / seconds,
           "near_true_pairs": int(len(true_near)), "near_found_pairs": int(len(near)),
           "near_recall": float(np.isin(true_near, near).mean()) if len(true_near) else float("nan"),
           "recall_by_bucket": recall, "near_outside_truth": int(len(outside)),
           "outside_by_category": {c: int((cats == k).sum()) for k, c in enumerate(CATEGORIES)}}
    if exact is not None:
        p, r = _score(set(exact.tolist()), set(true_exact.tolist()))
        row.update(exact_precision=p, exact_recall=r, exact_true_pairs=int(len(true_exact)), exact_found_pairs=int(len(exact)))
    order = np.argsort(np.where(cats == 3, -1, cats), kind="stable")  # "other" first: the ones to judge
    row["outside_pairs"] = [[names[c // n], names[c % n], CATEGORIES[cats[k]]] for k, c in
                            ((k, int(outside[k])) for k in order[:50000])]
    return row


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--roots", nargs="+", default=list(ROOTS))
    p.add_argument("--out", type=Path, default=REPO / "bench" / "out" / "scraped" / "files")
    p.add_argument("--max-files", type=int, default=0, help="stop the scrape after N files (0: no cap)")
    p.add_argument("--rescrape", action="store_true", help="scrape again even if the manifest exists")
    p.add_argument("--max-distance", type=int, default=10, help="imagehash's pHash threshold (bits)")
    p.add_argument("--colour-subset", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--markdown", action="store_true", help="print the results as a markdown section")
    args = p.parse_args(argv)
    warnings.filterwarnings("ignore", module="PIL")  # Pillow's notes on odd files, also in winnow's (forked) workers
    files_dir, load0, t0 = args.out.resolve(), os.getloadavg()[0], time.perf_counter()
    base = files_dir.parent
    files = scrape(args.roots, files_dir, args.max_files, args.rescrape)
    names = [e["name"] for e in files]
    n = len(names)
    print(f"scrape: {n} files under {files_dir} ({time.perf_counter() - t0:.1f} s)", flush=True)
    if not n:
        return print("no image files found under the roots") or 1
    t0 = time.perf_counter()
    t = truth(files_dir, files)
    info = t["info"]
    print(f"truth: {len(t['exact'])} exact pairs, {len(t['near'])} icon-size near pairs, "
          f"{sum(d['grey'] for d in info)} grey, {sum(not d['ok'] for d in info)} broken ({time.perf_counter() - t0:.1f} s)", flush=True)
    symbolic = ["-symbolic" in s.rsplit("/", 1)[-1] for s in names]
    sets = [("all files", list(range(n)))]
    if args.colour_subset:
        colour = [i for i in range(n) if info[i]["ok"] and not info[i]["grey"]]
        grey = [i for i in range(n) if info[i]["ok"] and info[i]["grey"] and not symbolic[i]]
        want = int(len(colour) * SUBSET_GREY_SHARE / (1 - SUBSET_GREY_SHARE))
        step = max(1, len(grey) // max(want, 1))
        broken = [i for i in range(n) if not info[i]["ok"]]
        sets.append(("colour subset", sorted(colour + grey[::step][:want] + broken)))
    rows, winnow_runs, idx = [], {}, {s: i for i, s in enumerate(names)}
    work = Path(tempfile.mkdtemp(prefix="scraped-", dir=base))
    try:
        for setname, subset in sets:
            w = run_winnow(files_dir, names, None if setname == "all files" else subset, work)
            winnow_runs[setname] = w
            gidx = np.array([idx[s] for s in w["imported"]], np.int64)
            scope = np.zeros(n, bool)
            scope[gidx] = True
            near = _group_codes([[idx[s] for s in g] for g in w["near_groups"]], n)
            exact = _group_codes([[idx[s] for s in g] for g in w["exact_groups"]], n)
            row = score_row("winnow", setname, len(subset), w["seconds"], near, exact, t, scope, names)
            grey_true = {names[i] for i in subset if info[i]["grey"] and scope[i]}
            broken = {names[i] for i in subset if not info[i]["ok"]}
            refused = set(w["refused"]) | set(w["corrupt"])
            row.update(
                grey_true=len(grey_true), grey_flagged=len(w["grayscale"]), colour_share=w["colour_share"],
                grey_quiet=not w["grayscale"] and w["colour_share"] <= 0.8,
                grey_pr=_score(set(w["grayscale"]), grey_true), grey_rule_pr=_score(set(w["grey_rule"]), grey_true),
                colour_called_grey=sorted(set(w["grey_rule"]) - grey_true), broken=sorted(broken),
                refused_at_import=w["refused"], corrupt_findings=w["corrupt"], broken_caught=len(refused & broken),
                refused_but_readable=[f"{x} ({info[idx[x]]['format']})" for x in sorted(refused - broken)],
                largest_near_groups=sorted(map(len, w["near_groups"]), reverse=True)[:8])
            direct = _codes(gidx[w["edges"][0]], gidx[w["edges"][1]], n)
            # a check on winnow_edges: the findings' pairs join nothing its direct pairs do not
            row["edges_match_groups"] = _components(direct, n) == _components(np.union1d(direct, near), n)
            row["duplicates_only_seconds"] = w["duplicates_only_seconds"]
            rows.append(row)
            rows.append(score_row("winnow, its direct pairs (before grouping)", setname, len(subset), w["seconds"], direct, None, t, scope, names))
            print(f"  winnow, {setname}: {w['seconds']:.2f} s (hash tier {w['hashes_seconds']:.2f} s; import before, untimed, "
                  f"{w['import_seconds']:.2f} s; {w['embedded']} of {w['blobs']} blobs embedded)", flush=True)
            ih = run_imagehash(files_dir, names, subset, args.max_distance)
            ih_scope = np.isin(np.arange(n), subset) & np.array([d["ok"] for d in info])
            rows.append(score_row(f"imagehash pHash <= {args.max_distance} bits, 1 process", setname, len(subset),
                                  ih["seconds"], ih["pairs"], None, t, ih_scope, names) | {"failed": ih["failed"]})
            for r in rows[-3:]:
                r["vs_imagehash"] = r["files_per_s"] / rows[-1]["files_per_s"]
            print(f"  imagehash, {setname}: {ih['seconds']:.2f} s ({ih['failed']} files it cannot read)", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    fmt = Counter(f"{d['format']} {d['mode']}" if d["ok"] else "broken" for d in info)
    from winnow.quality.facts import FACTS_TABLE, HASHES_TABLE

    git = lambda *a: subprocess.run(["git", *a], cwd=REPO, capture_output=True, text=True).stdout.strip()  # noqa: E731
    dirty = "+uncommitted" if git("status", "--porcelain", "--", "src") else ""
    machine = (f"{os.cpu_count()} cores, Python {platform.python_version()}, load average {load0:.1f} before / "
               f"{os.getloadavg()[0]:.1f} after, "
               f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, winnow {git('rev-parse', '--short', 'HEAD')}{dirty} "
               f"({FACTS_TABLE}, {HASHES_TABLE})")
    head = ("| set | contender | files | seconds | files/s | vs imagehash | exact P / R (true pairs) | near recall (true pairs) | "
            + " | ".join(f"recall {b}" for b in BUCKETS) + " | near pairs outside truth | grayscale | broken files caught |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    f3 = lambda v: "-" if v != v else f"{v:.3f}"  # noqa: E731  (nan -> "-")
    for r in rows:
        ex = f"{r['exact_precision']:.3f} / {r['exact_recall']:.3f} ({r['exact_true_pairs']})" if "exact_precision" in r else "-"
        grey = "-"
        if "grey_true" in r:
            rule = f"the rule's grey P / R {r['grey_rule_pr'][0]:.3f} / {r['grey_rule_pr'][1]:.3f} ({r['grey_true']} grey)"
            grey = (f"quiet ({r['colour_share']:.0%} colour <= 80%); {rule}" if r["grey_quiet"] else
                    f"findings P / R {r['grey_pr'][0]:.3f} / {r['grey_pr'][1]:.3f} ({r['grey_flagged']} flagged); {rule}")
        oc = ", ".join(f"{v:,} {k}" for k, v in r["outside_by_category"].items() if v)
        caught = (f"{r['broken_caught']} of {len(r['broken'])} (+{len(r['refused_but_readable'])} refused: readable by Pillow)"
                  if "broken" in r else f"{r['failed']} unreadable" if "failed" in r else "-")
        lines.append(
            f"| {r['set']} | {r['contender']} | {r['files']} | {r['seconds']:.2f} | {r['files_per_s']:.0f} | "
            f"{r['vs_imagehash']:.2f}x | {ex} | {f3(r['near_recall'])} ({r['near_true_pairs']}) | "
            + " | ".join(f3(r["recall_by_bucket"][b][0]) for b in BUCKETS)
            + f" | {r['near_outside_truth']:,}{f' ({oc})' if oc else ''} | {grey} | {caught} |"
        )
    summary = [
        f"{n} files from {', '.join(r for r in args.roots if os.path.isdir(r))}.",
        "formats/modes: " + ", ".join(f"{k} {v}" for k, v in fmt.most_common()),
        f"truth: {len(t['exact'])} exact pairs, {len(t['near'])} icon-size near pairs "
        f"({', '.join(f'{b} {int(m.sum())}' for b, m in t['near_masks'].items())}), {sum(d['grey'] for d in info)} grey, "
        f"{sum(d['flat'] for d in info)} flat once alpha is dropped, {sum(not d['ok'] for d in info)} broken: "
        + ("; ".join(f"{names[i]} ({d['error']})" for i, d in enumerate(info) if not d["ok"]) or "none"),
    ]
    for r in rows:
        if "grey_true" in r:
            summary.append(
                f"winnow, {r['set']}: the duplicate checks alone {r['duplicates_only_seconds']:.2f} s "
                f"({r['files'] / r['duplicates_only_seconds']:.0f} files/s, "
                f"{r['files'] / r['duplicates_only_seconds'] / r['files_per_s'] * r['vs_imagehash']:.2f}x imagehash); largest near_duplicate findings {r['largest_near_groups']}; direct pairs check: "
                f"{r['edges_match_groups']}; {len(r['colour_called_grey'])} colour files counted grey by the rule; refused at "
                f"import though Pillow reads them: {', '.join(r['refused_but_readable']) or 'none'}")
    print("\n" + "\n".join(summary))
    print("\n".join(lines))
    for r in rows:
        print(f"\nfirst 20 of {r['near_outside_truth']:,} near pairs outside the truth, {r['contender']}, {r['set']} ('other' first):")
        for a, b, c in r["outside_pairs"][:20]:
            print(f"  [{c}] {a}  <->  {b}")
    base.mkdir(parents=True, exist_ok=True)
    (base / "outside_truth.json").write_text(json.dumps(
        {f"{r['contender']} / {r['set']}": r["outside_pairs"] for r in rows}, indent=0))
    (base / "results.json").write_text(json.dumps({
        "command": " ".join(sys.argv), "machine": machine, "summary": summary, "formats": dict(fmt),
        "rows": [{k: v for k, v in r.items() if k != "outside_pairs"} for r in rows],
        "winnow": {k: {kk: vv for kk, vv in w.items() if kk not in ("imported", "edges")} for k, w in winnow_runs.items()},
    }, indent=1, default=str))
    print(f"\nresults: {base / 'results.json'}, pairs outside the truth: {base / 'outside_truth.json'}")
    if args.markdown:
        print("\n<!-- markdown -->")
        print(f"Command: `.venv/bin/python bench/scraped.py{' ' + ' '.join(argv or sys.argv[1:]) if (argv or sys.argv[1:]) else ''}`; {machine}.\n")
        print("\n".join(f"- {s}" for s in summary) + "\n")
        print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
