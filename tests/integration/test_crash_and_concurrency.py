"""kill -9 in the middle of an import, and two writers at once (BAD_INPUTS #22, #24)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from winnow.formats import get_format
from winnow.formats.base import copy_from_file
from winnow.services.ingest import import_dataset
from winnow.services.maintenance import verify
from winnow.services.projects import create_project, show_project
from winnow.store import models as m
from winnow.store.db import Store
from winnow.synthetic import generate

pytestmark = pytest.mark.slow


def _cli(home: Path, *args: str) -> subprocess.Popen:
    env = dict(os.environ, WINNOW_HOME=str(home))
    return subprocess.Popen(
        [sys.executable, "-m", "winnow.cli.main", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _counts(home: Path) -> tuple[int, int, int]:
    with Store.open(home) as store, store.read() as s:
        return (
            s.scalar(select(func.count()).select_from(m.Image)),
            s.scalar(select(func.count()).select_from(m.Annotation)),
            s.scalar(select(func.count()).select_from(m.ImportRun)),
        )


@pytest.fixture(scope="module")
def big_coco(tmp_path_factory) -> tuple[Path, int, int]:
    root = tmp_path_factory.mktemp("big")
    ds = generate(root / "raw", 400, seed=1, size=(64, 48), max_objects=5)
    get_format("coco").write(ds, root / "coco", copy_from_file)
    return root / "coco", len(ds.images), ds.annotation_count


def test_kill_9_at_any_point_leaves_the_project_before_or_after(tmp_path, big_coco):
    src, n_images, n_anns = big_coco
    # a full run first, to know how long an import takes end to end
    full = tmp_path / "full"
    with Store.open(full) as store:
        create_project(store, "p", "detect")
    t0 = time.perf_counter()
    proc = _cli(full, "import", "p", str(src), "--json")
    assert proc.wait(timeout=120) == 0, proc.stderr.read().decode()
    duration = time.perf_counter() - t0
    assert _counts(full) == (n_images, n_anns, 1)

    outcomes = set()
    for fraction in (0.3, 0.5, 0.7, 0.85, 0.95):
        home = tmp_path / f"kill-{fraction}"
        with Store.open(home) as store:
            create_project(store, "p", "detect")
        proc = _cli(home, "import", "p", str(src), "--json")
        time.sleep(duration * fraction)
        proc.send_signal(signal.SIGKILL)
        rc = proc.wait(timeout=60)
        counts = _counts(home)
        assert counts in {(0, 0, 0), (n_images, n_anns, 1)}, (fraction, counts)
        outcomes.add("killed" if rc == -signal.SIGKILL else "finished")
        with Store.open(home) as store:
            report = verify(store)
            assert report.ok, (fraction, report.missing, report.corrupt)
            if counts[0] == 0:
                # the import can simply be run again; leftovers are only unreferenced blobs
                assert import_dataset(store, "p", src).images_added == n_images
                assert verify(store, gc=True).removed == 0, "fresh leftovers are inside the grace period"
                swept = verify(store, gc=True, grace_seconds=0)
                assert swept.ok and swept.removed == len(swept.unreferenced)
                assert verify(store).unreferenced == []
            assert show_project(store, "p").images == n_images
    assert "killed" in outcomes, "no kill landed while the import was running"


def test_two_processes_importing_into_one_project_lose_nothing(tmp_path):
    a = generate(tmp_path / "a" / "raw", 60, seed=2)
    b = generate(tmp_path / "b" / "raw", 60, seed=3)
    for i, rec in enumerate(b.images):
        rec.name = f"images/b_{i:05d}.png"
    get_format("coco").write(a, tmp_path / "a" / "coco", copy_from_file)
    get_format("coco").write(b, tmp_path / "b" / "coco", copy_from_file)
    home = tmp_path / "home"
    with Store.open(home) as store:
        create_project(store, "p", "detect")
    procs = [
        _cli(home, "import", "p", str(tmp_path / "a" / "coco"), "--json"),
        _cli(home, "import", "p", str(tmp_path / "b" / "coco"), "--json"),
        _cli(home, "import", "p", str(tmp_path / "a" / "coco"), "--json"),  # same data twice at once
    ]
    codes = [p.wait(timeout=120) for p in procs]
    assert codes == [0, 0, 0], [p.stderr.read().decode()[-500:] for p in procs]
    images, anns, runs = _counts(home)
    assert images == 120
    assert anns == a.annotation_count + b.annotation_count
    assert runs == 3
