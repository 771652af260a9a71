"""Importing into the store: counts, duplicates, bad images, atomicity and round trips."""

from __future__ import annotations

import json
import shutil
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func, select

from winnow.core.types import Task
from winnow.errors import FormatError, NotFoundError, UnsafeInputError
from winnow.formats import get_format
from winnow.formats.base import copy_from_file
from winnow.services import ingest
from winnow.services.datasets import export_project, list_images, load_dataset
from winnow.services.ingest import import_dataset
from winnow.services.maintenance import verify
from winnow.services.projects import create_project, show_project
from winnow.store import models as m
from winnow.store.db import Store
from winnow.synthetic import generate


@pytest.fixture
def store(tmp_path):
    s = Store.open(tmp_path / "home")
    yield s
    s.close()


def write_coco(tmp_path: Path, n: int = 12, task: Task = Task.DETECT, seed: int = 0) -> tuple[Path, object]:
    ds = generate(tmp_path / "raw", n, seed=seed, task=task)
    dest = tmp_path / "coco"
    get_format("coco").write(ds, dest, copy_from_file)
    return dest, ds


def snapshot(store: Store) -> dict[str, int]:
    with store.read() as s:
        return {
            t.__tablename__: s.scalar(select(func.count()).select_from(t))
            for t in (m.Project, m.ProjectClass, m.Image, m.Annotation, m.ImageTag, m.ImageMetadata, m.ImportRun, m.Blob)
        }


def by_basename(ds):
    return {Path(r.name).name: r for r in ds.images}


def test_import_counts_boxes_and_classes(store, tmp_path):
    src, ds = write_coco(tmp_path)
    create_project(store, "p", "detect")
    report = import_dataset(store, "p", src, tags=["batch1"])
    assert report.format == "coco"
    assert report.images_added == len(ds.images)
    assert report.annotations_added == ds.annotation_count
    assert report.errors == []
    summary = show_project(store, "p")
    expected = {c: sum(a.label == c for r in ds.images for a in r.annotations) for c in ds.classes}
    assert {c: n for c, n in summary.class_counts.items() if n} == {c: n for c, n in expected.items() if n}
    assert summary.tags == {"batch1": len(ds.images)}
    stored = by_basename(load_dataset(store, "p"))
    for rec in ds.images:
        got = stored[Path(rec.name).name]
        assert got.width == rec.width and got.height == rec.height
        assert np.allclose(np.sort(got.boxes(), axis=0), np.sort(rec.boxes(), axis=0), atol=1e-9)


def test_reimport_skips_same_records_and_reports_why(store, tmp_path):
    src, ds = write_coco(tmp_path, 5)
    create_project(store, "p", "detect")
    import_dataset(store, "p", src)
    again = import_dataset(store, "p", src)
    assert again.images_added == 0 and again.annotations_added == 0
    assert again.images_skipped == 5
    assert all("already in the project" in p.message for p in again.warnings if p.record)
    assert show_project(store, "p").images == 5


def test_same_bytes_under_two_names_stay_two_records(store, tmp_path):
    src, ds = write_coco(tmp_path, 3)
    doc = json.loads((src / "annotations.json").read_text())
    first = doc["images"][0]
    copy_name = "images/copy_of_first.png"
    shutil.copyfile(src / first["file_name"], src / copy_name)
    doc["images"].append(dict(first, id=999, file_name=copy_name))
    (src / "annotations.json").write_text(json.dumps(doc))
    create_project(store, "p", "detect")
    report = import_dataset(store, "p", src)
    assert report.images_added == 4
    assert report.duplicates == [{"name": copy_name, "duplicate_of": first["file_name"], "where": "import"}]
    with store.read() as s:
        assert s.scalar(select(func.count()).select_from(m.Blob)) == 3
    # importing one of them again into another project reports the stored duplicate
    create_project(store, "q", "detect")
    import_dataset(store, "q", src)
    rep = import_dataset(store, "p", src)
    assert rep.images_added == 0


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png_header(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims ``width x height`` pixels (a decompression bomb)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(b"\0" * 64)) + _chunk(b"IEND", b"")


def test_bad_images_are_skipped_with_reasons_and_the_rest_imported(store, tmp_path):
    src, ds = write_coco(tmp_path, 4)
    doc = json.loads((src / "annotations.json").read_text())
    names = [im["file_name"] for im in doc["images"]]
    (src / names[0]).write_bytes(b"")
    (src / names[1]).write_bytes(b"<!DOCTYPE html><html><script>alert(1)</script></html>")
    (src / names[2]).write_bytes(_png_header(100_000, 100_000))
    create_project(store, "p", "detect")
    report = import_dataset(store, "p", src)
    assert report.images_added == 1
    assert report.images_skipped == 3
    messages = {p.record: p.message for p in report.errors if p.record}
    assert "empty" in messages[names[0]]
    assert "HTML" in messages[names[1]]
    assert "decompression bomb" in messages[names[2]]


def test_image_paths_leaving_the_dataset_folder_are_refused(store, tmp_path):
    src, _ = write_coco(tmp_path, 2)
    secret = tmp_path / "secret.png"
    shutil.copyfile(next((src / "images").iterdir()), secret)
    (src / "images" / "link.png").symlink_to(secret)
    doc = json.loads((src / "annotations.json").read_text())
    doc["images"].append(dict(doc["images"][0], id=50, file_name="../secret.png"))
    doc["images"].append(dict(doc["images"][0], id=51, file_name="images/link.png"))
    (src / "annotations.json").write_text(json.dumps(doc))
    create_project(store, "p", "detect")
    report = import_dataset(store, "p", src)
    assert report.images_added == 2
    assert sorted(r.name for r in list_images(store, "p")) == sorted(im["file_name"] for im in doc["images"][:2])
    assert report.images_skipped == 2


def test_missing_project_and_missing_path_change_nothing(store, tmp_path):
    src, _ = write_coco(tmp_path, 2)
    before = snapshot(store)
    with pytest.raises(NotFoundError):
        import_dataset(store, "nope", src)
    create_project(store, "p", "detect")
    before = snapshot(store)
    with pytest.raises(NotFoundError):
        import_dataset(store, "p", tmp_path / "does-not-exist")
    assert snapshot(store) == before


def test_malformed_file_aborts_and_changes_nothing(store, tmp_path):
    src, _ = write_coco(tmp_path, 3)
    create_project(store, "p", "detect")
    import_dataset(store, "p", src)
    before = snapshot(store)
    text = (src / "annotations.json").read_text()
    (src / "annotations.json").write_text(text[: len(text) // 2])
    with pytest.raises(FormatError) as exc:
        import_dataset(store, "p", src, format="coco")
    assert "annotations.json" in str(exc.value)
    assert snapshot(store) == before


def test_failure_while_writing_rows_rolls_back_everything(store, tmp_path, monkeypatch):
    src, _ = write_coco(tmp_path, 6)
    create_project(store, "p", "detect")
    before = snapshot(store)
    real = ingest._insert_rows

    def explode(session, *args, **kwargs):
        real(session, *args, **kwargs)  # every row written...
        session.flush()
        raise OSError(28, "No space left on device")  # ...then the disk fills before commit

    monkeypatch.setattr(ingest, "_insert_rows", explode)
    with pytest.raises(OSError):
        import_dataset(store, "p", src)
    after = snapshot(store)
    assert {k: v for k, v in after.items() if k != "blobs"} == {k: v for k, v in before.items() if k != "blobs"}
    monkeypatch.undo()
    report = import_dataset(store, "p", src)  # later writes succeed
    assert report.images_added == 6
    assert verify(store).ok


def test_zip_import_equals_folder_import_and_zip_slip_is_refused(store, tmp_path):
    src, ds = write_coco(tmp_path, 4)
    archive = tmp_path / "dataset.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for f in sorted(src.rglob("*")):
            if f.is_file():
                z.write(f, f"export/{f.relative_to(src).as_posix()}")
    create_project(store, "p", "detect")
    report = import_dataset(store, "p", archive)
    assert report.images_added == 4 and report.annotations_added == ds.annotation_count
    assert not any(store.tmp.iterdir()), "scratch space is cleaned up"

    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as z:
        z.writestr("../../escaped.txt", "x")
        z.writestr("annotations.json", "{}")
    create_project(store, "q", "detect")
    before = snapshot(store)
    with pytest.raises(UnsafeInputError):
        import_dataset(store, "q", evil)
    assert snapshot(store) == before
    assert not (tmp_path / "escaped.txt").exists() and not (tmp_path.parent / "escaped.txt").exists()


def test_unicode_and_awkward_names_survive_import_and_export(store, tmp_path):
    ds = generate(tmp_path / "raw", 3)
    awkward = ["images/café #1 ?.png", "images/naïve 100%.png", "images/Ünïcødé/日本.png"]
    for rec, name in zip(ds.images, awkward, strict=True):
        rec.name = name
    src = tmp_path / "coco"
    get_format("coco").write(ds, src, copy_from_file)
    create_project(store, "p", "detect")
    assert import_dataset(store, "p", src).images_added == 3
    assert sorted(r.name for r in list_images(store, "p")) == sorted(awkward)
    out = export_project(store, "p", tmp_path / "out", "coco")
    assert out.images == 3
    for name in awkward:
        assert (tmp_path / "out" / name).is_file()


def test_images_filters(store, tmp_path):
    src, ds = write_coco(tmp_path, 10)
    create_project(store, "p", "detect")
    import_dataset(store, "p", src, split="valid", tags=["night"])
    circles = [r for r in ds.images if any(a.label == "circle" for a in r.annotations)]
    assert len(list_images(store, "p", class_name="circle")) == len(circles)
    assert len(list_images(store, "p", split="valid")) == 10
    assert list_images(store, "p", split="train") == []
    assert len(list_images(store, "p", tag="night", limit=3)) == 3
    assert list_images(store, "p", tag="day") == []


@pytest.mark.parametrize("task", [Task.DETECT, Task.SEGMENT])
def test_export_to_every_format_and_back_keeps_images_and_boxes(store, tmp_path, task):
    from winnow.formats import available

    src, ds = write_coco(tmp_path, 6, task=task, seed=3)
    create_project(store, "p", task)
    import_dataset(store, "p", src)
    original = by_basename(load_dataset(store, "p"))
    checked = []
    for fmt in available():
        if task not in get_format(fmt).tasks:
            continue
        dest = tmp_path / "exports" / fmt
        export_project(store, "p", dest, fmt)
        create_project(store, f"back-{fmt}", task)
        report = import_dataset(store, f"back-{fmt}", dest, format=fmt)
        assert report.errors == [], (fmt, report.errors[:3])
        again = by_basename(load_dataset(store, f"back-{fmt}"))
        assert again.keys() == original.keys(), fmt
        for key, rec in original.items():
            a, b = rec.boxes(), again[key].boxes()
            assert a.shape == b.shape, (fmt, key)
            assert np.allclose(a[np.lexsort(a.T)], b[np.lexsort(b.T)], atol=1e-6), (fmt, key)
            assert sorted(x.label for x in rec.annotations) == sorted(x.label for x in again[key].annotations)
        checked.append(fmt)
    assert len(checked) >= (5 if task is Task.DETECT else 3)
