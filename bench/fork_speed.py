"""Benchmark: forking a 100,000-image base (``winnow project fork``) copies nothing and is O(1).

    .venv/bin/python bench/fork_speed.py [--images 100000] [--blobs 300] [--customer-images 50]
        [--forks 5] [--out bench/out] [--docs docs/benchmarks.md]

The base, built cheaply but honestly (each step is a real store write; only the 100,000 image
rows are bulk-inserted):

* ``--blobs`` distinct synthetic 96x72 PNGs (1-3 shapes each, :func:`winnow.synthetic.generate`)
  are imported the ordinary way (``import_records``): blob files, blob rows, image and
  annotation rows;
* the other image rows are bulk-inserted with SQL (``INSERT ... executemany``), image ``i``
  pointing at blob ``i % blobs`` with a copy of that blob's annotations, and a split per blob
  (70/20/10), so every copy of a blob is in one split as a leak-free split requires;
* the base version is ``create_version(..., near_duplicates=False)`` (exact duplicates are still
  grouped; the near-duplicate pass would decode only ``--blobs`` distinct images anyway, but its
  all-pairs scan over 100,000 records is not what this measures). Timed and printed, not part of
  the goal.

Then, timed in this process (interpreter start and imports excluded, the store already open):

* ``fork_project`` of the base's version, ``--forks`` times (a new customer each time): the
  fastest, the median and the slowest. Goal: < 1 s. The store's footprint is counted before and
  after every fork: blob files and their bytes on disk, image, annotation, metadata and blob
  rows, version folders and the database file's size. A fork must add none of them (the
  database grows by one project row and one fork row, which may or may not need a new page);
* ``winnow project fork`` as the CLI in a fresh process (interpreter start and imports
  included), once, and ``winnow project base`` (a read) the same way: the start cost they share;
* the first version of a customer with ``--customer-images`` images of its own: it reads the
  base's 100,000-record manifest (verified against its checksums), maps the inherited labels,
  splits the customer's own images and writes its own manifest.

``--docs FILE`` puts the table into FILE between ``<!-- bench/fork_speed.py: begin -->`` and
``... end -->``.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import func, insert, select

from winnow.services.forks import fork_project
from winnow.services.ingest import import_records
from winnow.services.projects import create_project
from winnow.services.versions import create_version
from winnow.store import models as m
from winnow.store.db import Store
from winnow.synthetic import generate

REPO = Path(__file__).resolve().parent.parent
BEGIN, END = "<!-- bench/fork_speed.py: begin -->", "<!-- bench/fork_speed.py: end -->"
SPLITS = ("train",) * 7 + ("valid",) * 2 + ("test",)


def footprint(store: Store) -> dict[str, int]:
    root = store.blobs.root
    files = [p for p in root.rglob("*") if p.is_file() and ".tmp" not in p.relative_to(root).parts]
    versions = store.home / "versions"
    with store.read() as s:
        rows = {
            f"{name} rows": s.scalar(select(func.count()).select_from(model)) or 0
            for name, model in (("image", m.Image), ("annotation", m.Annotation), ("metadata", m.ImageMetadata), ("blob", m.Blob))
        }
    db = store.home / "winnow.db"
    with sqlite3.connect(db) as con:  # WAL mode: move the log into the file first, so its size is the data's
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return {
        "blob files": len(files),
        "blob bytes": sum(p.stat().st_size for p in files),
        **rows,
        "version folders": sum(1 for d in versions.glob("*/*") if d.is_dir()) if versions.is_dir() else 0,
        "database bytes": db.stat().st_size,
    }


def build_base(store: Store, n: int, blobs: int, tmp: Path) -> dict[str, float]:
    """Project ``base`` with ``n`` images over ``blobs`` distinct blobs, and its v1."""
    t = {}
    t0 = time.perf_counter()
    src = tmp / "base-src"
    ds = generate(src, blobs, seed=3)
    for i, rec in enumerate(ds.images):
        rec.split = SPLITS[i % len(SPLITS)]
    create_project(store, "base", "detect")
    import_records(store, "base", ds, src)
    t["import of the distinct blobs"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    with store.write() as s:
        proj = s.scalar(select(m.Project).where(m.Project.name == "base"))
        templates = list(s.scalars(select(m.Image).where(m.Image.project_id == proj.id).order_by(m.Image.name)))
        anns = {im.id: list(s.scalars(select(m.Annotation).where(m.Annotation.image_id == im.id).order_by(m.Annotation.id)))
                for im in templates}
        next_id = (s.scalar(select(func.max(m.Image.id))) or 0) + 1
        now = m.utcnow()
        image_rows: list[dict[str, Any]] = []
        ann_rows: list[dict[str, Any]] = []
        for i in range(blobs, n):
            tpl = templates[i % blobs]
            image_id = next_id + i - blobs
            image_rows.append({"id": image_id, "project_id": proj.id, "sha256": tpl.sha256, "name": f"images/copy_{i:06d}.png",
                               "split": tpl.split, "width": tpl.width, "height": tpl.height, "created_at": now})
            ann_rows.extend({"image_id": image_id, "class_id": a.class_id, "x1": a.x1, "y1": a.y1, "x2": a.x2, "y2": a.y2,
                             "polygon": a.polygon, "rle": a.rle, "attributes": a.attributes, "source": a.source,
                             "iscrowd": False, "created_at": now} for a in anns[tpl.id])
        for start in range(0, len(image_rows), 20_000):
            s.execute(insert(m.Image), image_rows[start:start + 20_000])
        for start in range(0, len(ann_rows), 50_000):
            s.execute(insert(m.Annotation), ann_rows[start:start + 50_000])
    t["bulk insert of the other image rows (SQL)"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    v = create_version(store, "base", near_duplicates=False)
    t["base version (create_version, near_duplicates=False)"] = time.perf_counter() - t0
    assert v.counts["images"] == n, v.counts
    return t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=100_000)
    ap.add_argument("--blobs", type=int, default=300)
    ap.add_argument("--customer-images", type=int, default=50)
    ap.add_argument("--forks", type=int, default=5)
    ap.add_argument("--out", type=Path, default=Path("bench/out"))
    ap.add_argument("--docs", type=Path, default=None)
    args = ap.parse_args()

    args.out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="fork-speed-", dir=args.out))
    try:
        home = tmp / "home"
        store = Store.open(home)
        setup = build_base(store, args.images, args.blobs, tmp)
        for step, seconds in setup.items():
            print(f"setup: {step}: {seconds:.2f} s")

        # forks, in process: each must leave the footprint as it was
        times: list[float] = []
        before = footprint(store)
        for k in range(args.forks):
            t0 = time.perf_counter()
            info = fork_project(store, "base", "v1", f"customer-{k}", workspace=f"ws-{k}")
            times.append(time.perf_counter() - t0)
            after = footprint(store)
            grown = {key: after[key] - before[key] for key in after if after[key] != before[key] and key != "database bytes"}
            if grown:
                raise SystemExit(f"fork {k} added to the store: {grown}")
            assert info.base_version_number == 1 and info.adopted == 0
        db_growth = footprint(store)["database bytes"] - before["database bytes"]

        # the CLI in a fresh process
        env = os.environ | {"WINNOW_HOME": str(home)}
        t0 = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "winnow.cli.main", "project", "fork", "base@v1", "cli-customer",
                               "--workspace", "ws-cli", "--json"], env=env, capture_output=True, text=True, check=False)
        t_cli = time.perf_counter() - t0
        if done.returncode != 0:
            raise SystemExit(done.stderr)
        t0 = time.perf_counter()
        shown = subprocess.run([sys.executable, "-m", "winnow.cli.main", "project", "base", "cli-customer",
                                "--workspace", "ws-cli", "--json"], env=env, capture_output=True, text=True, check=False)
        t_cli_base = time.perf_counter() - t0
        if shown.returncode != 0:
            raise SystemExit(shown.stderr)
        store = Store.open(home)
        after_cli = footprint(store)
        grown = {key: after_cli[key] - before[key] for key in after_cli if after_cli[key] != before[key] and key != "database bytes"}
        if grown:
            raise SystemExit(f"the CLI fork added to the store: {grown}")

        # the first customer version (reads the base's manifest)
        own_src = tmp / "customer-src"
        own = generate(own_src, args.customer_images, seed=8, prefix="cust")
        import_records(store, "customer-0", own, own_src, workspace="ws-0")
        t0 = time.perf_counter()
        cv = create_version(store, "customer-0", workspace="ws-0", near_duplicates=False)
        t_version = time.perf_counter() - t0
        inherited = cv.splitting["inherited"]
        expected = sum(1 for i in range(args.images) if SPLITS[(i % args.blobs) % len(SPLITS)] != "test")
        assert inherited["images"] == expected, (inherited, expected)
        assert cv.counts["images"] == expected + args.customer_images
        final = footprint(store)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    rows = [
        ("`fork_project`, fastest of " + str(args.forks), f"{min(times) * 1000:.1f} ms"),
        ("`fork_project`, median", f"{statistics.median(times) * 1000:.1f} ms"),
        ("`fork_project`, slowest", f"{max(times) * 1000:.1f} ms"),
        ("`winnow project fork` CLI, fresh process (start + imports included)", f"{t_cli:.2f} s"),
        ("`winnow project base` CLI, fresh process (the same start cost, for comparison)", f"{t_cli_base:.2f} s"),
        (f"first customer version ({args.customer_images} own + {inherited['images']:,} inherited images)", f"{t_version:.2f} s"),
    ]
    lines = [
        f"{args.images:,}-image base over {args.blobs} distinct blobs; Python {platform.python_version()}, "
        (f"{os.cpu_count()} CPUs; command: `.venv/bin/python bench/fork_speed.py"
         + (f" --images {args.images}" if args.images != 100_000 else "") + "`"),
        "",
        "| step | time |",
        "|---|---|",
        *(f"| {a} | {b} |" for a, b in rows),
        "",
        f"Store footprint before the {args.forks} forks and the CLI fork, and after them (what a fork must not add):",
        "",
        "| | before | after the forks |",
        "|---|---|---|",
        *(f"| {key} | {before[key]:,} | {after_cli[key]:,} |" for key in before),
        "",
        (f"The database file grew by {db_growth:,} bytes over the {args.forks} in-process forks "
         f"(project and fork rows). After the customer's first version: {final['version folders']} version folders, "
         f"{final['blob files']:,} blob files (the base's {before['blob files']:,} plus the customer's {args.customer_images} images)."),
        "",
        "Setup (not part of the goal): " + "; ".join(f"{k} {v:.1f} s" for k, v in setup.items()) + ".",
    ]
    block = "\n".join(lines)
    print()
    print(block)
    goal = min(times) < 1.0 and max(times) < 1.0
    print(f"\ngoal (< 1 s, no bytes copied): {'met' if goal else 'NOT met'}")
    if args.docs is not None:
        sys.path.insert(0, str(REPO / "bench"))
        from _docs import write_block

        write_block(args.docs, BEGIN, END, block, heading="## Forks (`bench/fork_speed.py`, issue 8)")


if __name__ == "__main__":
    main()
