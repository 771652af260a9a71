"""Benchmark: `winnow check` on N images, images/s, split by check family.

    .venv/bin/python bench/check_speed.py [--images 10000] [--out bench/out]

Generates N distinct detection images (winnow.synthetic, 96x72 PNG, 1-4 boxes each; cached under
``--out``), imports them into a fresh store, then times:

* the facts pass (one decode per image: statistics, hashes, embedding), cold;
* every check family on the computed facts (warm), from the engine's own per-check timings;
* a second full ``run_checks`` with the facts cached (what a user's second ``winnow check`` costs).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from winnow.formats import get_format
from winnow.formats.base import copy_from_file
from winnow.quality.base import all_checks
from winnow.quality.engine import run_checks
from winnow.quality.view import ProjectView
from winnow.services.ingest import import_dataset
from winnow.services.projects import create_project
from winnow.store.db import Store
from winnow.synthetic import generate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=10_000)
    ap.add_argument("--out", type=Path, default=Path("bench/out"))
    args = ap.parse_args()

    data = args.out / f"check-speed-{args.images}"
    if not (data / "coco" / "annotations.json").is_file():
        t0 = time.perf_counter()
        ds = generate(data / "raw", args.images, seed=11, max_objects=4)
        for i, rec in enumerate(ds.images):
            rec.split = "train" if i % 10 < 8 else "valid"
        get_format("coco").write(ds, data / "coco", copy_from_file)
        print(f"generated {args.images} images in {time.perf_counter() - t0:.1f}s")

    home = Path(tempfile.mkdtemp(prefix="winnow-bench-"))
    try:
        store = Store.open(home)
        create_project(store, "bench", "detect")
        t0 = time.perf_counter()
        import_dataset(store, "bench", data / "coco")
        t_import = time.perf_counter() - t0

        view = ProjectView(store, "bench")
        t0 = time.perf_counter()
        _ = view.facts
        t_facts = time.perf_counter() - t0
        report = run_checks(store, "bench", view=view)
        families: dict[str, float] = defaultdict(float)
        checks = all_checks()
        for cid, seconds in report.timings.items():
            families[checks[cid].family] += seconds

        t0 = time.perf_counter()
        again = run_checks(store, "bench")
        t_again = time.perf_counter() - t0
        n = args.images
        print(f"\n{n} images, {report.summary['annotations']} annotations, Python {sys.version.split()[0]}, 2 CPUs")
        print("| step | seconds | images/s |")
        print("|---|---|---|")
        print(f"| import (not part of check) | {t_import:.2f} | {n / t_import:,.0f} |")
        print(f"| facts pass, cold (decode + stats + hashes + embedding) | {t_facts:.2f} | {n / t_facts:,.0f} |")
        for fam, seconds in sorted(families.items(), key=lambda kv: -kv[1]):
            print(f"| checks: {fam} | {seconds:.3f} | {n / max(seconds, 1e-9):,.0f} |")
        total = t_facts + sum(families.values())
        print(f"| first `winnow check`, all {len(report.timings)} checks | {total:.2f} | {n / total:,.0f} |")
        print(f"| second `winnow check` (facts cached) | {t_again:.2f} | {n / t_again:,.0f} |")
        print(f"\nfindings: {again.summary['findings']} ({again.summary['by_check']})")
    finally:
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
