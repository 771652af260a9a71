"""Dataset versions end to end on a real store: content ids, immutability, tamper detection,
leak-free splits, lineage, diff, materialised exports, shared storage and gc."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy import select

from tests.quality_helpers import Item, build_view, textured
from winnow.core.types import Annotation
from winnow.errors import ConflictError, InvalidInputError, NotFoundError
from winnow.services.fixes import apply_fixes
from winnow.services.ingest import import_dataset
from winnow.services.maintenance import verify
from winnow.services.projects import create_project
from winnow.services.versions import (
    create_version,
    diff_versions,
    export_version,
    list_versions,
    load_version,
    materialize_version,
    show_version,
)
from winnow.store import models as m
from winnow.store.db import Store
from winnow.synthetic import generate
from winnow.versions.manifest import ANNOTATIONS_FILE, IMAGES_FILE, VERSION_FILE, TamperedError


def synthetic_store(tmp_path: Path, name: str = "home", n: int = 30, seed: int = 0) -> Store:
    src = tmp_path / f"src-{seed}-{n}"
    if not src.exists():
        generate(src, n, seed=seed)
        from winnow.formats import get_format

        get_format("coco").write(generate(src, n, seed=seed), src / "coco", lambda rec, path: path.write_bytes(rec.file.read_bytes()))
    store = Store.open(tmp_path / name)
    create_project(store, "shapes", "detect")
    import_dataset(store, "shapes", src / "coco", format="coco")
    return store


def _relabel_first_box(store: Store, project: str = "shapes") -> tuple[str, int, str]:
    """Change one annotation's class (as a labeller would); return (image, annotation id, new label)."""
    with store.write() as session:
        proj = session.scalar(select(m.Project).where(m.Project.name == project))
        ann = session.scalar(
            select(m.Annotation).join(m.Image).where(m.Image.project_id == proj.id).order_by(m.Image.name, m.Annotation.id).limit(1)
        )
        current = session.get(m.ProjectClass, ann.class_id).name
        other = session.scalar(
            select(m.ProjectClass).where(m.ProjectClass.project_id == proj.id, m.ProjectClass.name != current).limit(1)
        )
        ann.class_id = other.id
        image = session.get(m.Image, ann.image_id).name
        return image, ann.id, other.name


def test_same_inputs_give_the_same_id_and_the_same_files_in_another_store(tmp_path):
    a = synthetic_store(tmp_path, "home-a")
    b = synthetic_store(tmp_path, "home-b")
    va = create_version(a, "shapes", seed=7)
    vb = create_version(b, "shapes", seed=7)
    assert va.created and vb.created
    assert va.version == vb.version and len(va.version) == 64
    fa, fb = load_version(a, "shapes").folder, load_version(b, "shapes").folder
    for fname in (IMAGES_FILE, ANNOTATIONS_FILE, VERSION_FILE):
        assert (fa / fname).read_bytes() == (fb / fname).read_bytes(), fname

    again = create_version(a, "shapes", seed=7)
    assert again.version == va.version and not again.created and again.number == 1
    assert len(list_versions(a, "shapes")) == 1
    assert create_version(a, "shapes", seed=8, resplit=True).version != va.version, "another seed, another split"


def test_the_id_does_not_depend_on_the_process_hash_seed(tmp_path):
    store = synthetic_store(tmp_path)
    here = create_version(store, "shapes", seed=3, resplit=True).version
    code = (
        "from winnow.store.db import Store; from winnow.services.versions import create_version, _HEX_RE;"
        f"s = Store.open({str(tmp_path / 'home')!r});"
        "print(create_version(s, 'shapes', seed=3, resplit=True).version)"
    )
    env = dict(os.environ, PYTHONHASHSEED="12345")
    there = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout.strip()
    assert there == here


def test_changing_one_label_gives_a_new_id_and_diff_shows_exactly_that_label(tmp_path):
    store = synthetic_store(tmp_path)
    v1 = create_version(store, "shapes")
    image, ann_id, new_label = _relabel_first_box(store)
    v2 = create_version(store, "shapes")
    assert v2.version != v1.version and v2.parent == v1.version and v2.number == 2
    d = diff_versions(store, ("shapes", "v1"), ("shapes", "v2"))
    assert d.images_added == d.images_removed == d.moved == []
    assert d.annotations["added"] == d.annotations["removed"] == 0 and d.annotations["changed"] == 1
    [change] = d.changes
    assert change["image"] == image and change["change"] == "changed"
    assert change["before"]["id"] == change["after"]["id"] == ann_id
    assert change["after"]["label"] == new_label != change["before"]["label"]
    assert d.class_balance[new_label]["delta"] == 1 and d.class_balance[change["before"]["label"]]["delta"] == -1
    assert diff_versions(store, ("shapes", "v1"), ("shapes", v1.version[:8])).empty


def test_versions_cannot_be_changed_and_tampering_is_detected(tmp_path):
    store = synthetic_store(tmp_path)
    v = create_version(store, "shapes")
    db = sqlite3.connect(tmp_path / "home" / "winnow.db")
    for column, value in (("version_id", "'x'"), ("recipe", "'{}'"), ("summary", "'{}'"), ("manifest_sha256", "'0'")):
        with pytest.raises(sqlite3.DatabaseError, match="immutable"):
            db.execute(f"UPDATE versions SET {column} = {value}")
    db.execute("UPDATE versions SET name = 'renamed'")  # a label, not content
    db.commit()
    db.close()

    folder = load_version(store, "shapes").folder
    for fname in (IMAGES_FILE, ANNOTATIONS_FILE, VERSION_FILE):
        assert not os.stat(folder / fname).st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH), fname
    path = folder / ANNOTATIONS_FILE
    os.chmod(path, 0o644)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(TamperedError, match="annotations.parquet was modified"):
        load_version(store, "shapes", v.version[:12])
    (folder / VERSION_FILE).chmod(0o644)
    (folder / VERSION_FILE).write_text("{}")
    with pytest.raises(TamperedError, match="version.json"):
        export_version(store, "shapes", "latest", tmp_path / "out", "yolo")
    assert not (tmp_path / "out").exists()


def test_duplicates_and_group_by_values_never_span_splits(tmp_path):
    items = []
    for i in range(40):
        im = textured(100 + i, size=(96, 72))
        label = ["cat", "dog"][i % 2]
        meta = {"camera": f"cam{i % 5}"}
        items.append(Item(f"img{i:02d}.png", im, [Annotation(label, bbox=(5, 5, 40, 40))], metadata=meta))
        if i % 8 == 0:  # an exact copy and a resized near copy of every 8th image
            items.append(Item(f"copy{i:02d}.png", im, [Annotation(label, bbox=(5, 5, 40, 40))], metadata={"camera": f"other{i}"}))
            items.append(Item(f"near{i:02d}.png", im.resize((192, 144)), [Annotation(label, bbox=(10, 10, 80, 80))]))
    store = build_view(tmp_path, items).store
    for seed in range(4):
        v = create_version(store, "p", seed=seed, resplit=True, group_by=["camera"], name=f"s{seed}")
        split_of = {r.name: r.split for r in load_version(store, "p", v.version).manifest.images}
        for i in range(0, 40, 8):
            assert split_of[f"img{i:02d}.png"] == split_of[f"copy{i:02d}.png"] == split_of[f"near{i:02d}.png"], (seed, i)
        cameras: dict[str, set[str]] = {}
        for r in load_version(store, "p", v.version).manifest.images:
            if "camera" in r.metadata:
                cameras.setdefault(r.metadata["camera"], set()).add(r.split)
        assert all(len(s) == 1 for s in cameras.values()), cameras
        # the copies join their camera's group through the duplicate: img00(cam0) ~ copy00(other0)
        assert v.splitting["duplicate_groups"] == 5 and v.splitting["duplicate_images"] == 15


def test_existing_splits_are_kept_and_a_leak_is_repaired_by_moving_the_copy(tmp_path):
    same = textured(1)
    items = [Item(f"t{i}.png", textured(10 + i), [Annotation("cat", bbox=(1, 1, 20, 20))], split="train") for i in range(6)]
    items += [Item(f"v{i}.png", textured(30 + i), [Annotation("cat", bbox=(1, 1, 20, 20))], split="valid") for i in range(3)]
    items += [
        Item("leak-train.png", same, [Annotation("cat", bbox=(1, 1, 20, 20))], split="train"),
        Item("leak-test.png", same, [Annotation("cat", bbox=(1, 1, 20, 20))], split="test"),
        Item("new.png", textured(50), [Annotation("cat", bbox=(1, 1, 20, 20))]),
    ]
    store = build_view(tmp_path, items).store
    v = create_version(store, "p")
    split_of = {r.name: r.split for r in load_version(store, "p").manifest.images}
    assert all(split_of[f"t{i}.png"] == "train" for i in range(6)) and all(split_of[f"v{i}.png"] == "valid" for i in range(3))
    assert split_of["leak-train.png"] == split_of["leak-test.png"] == "train", "tie -> train keeps the test set clean"
    assert v.splitting["moved"] == ["leak-test.png"]
    assert split_of["new.png"] in ("train", "valid", "test")


def test_lineage_records_the_fixes_since_the_parent_and_gc_keeps_a_versions_blobs(tmp_path):
    same = textured(1)
    items = [
        Item("a.png", same, [Annotation("cat", bbox=(5, 5, 30, 30))], split="train"),
        Item("b.png", same, [Annotation("cat", bbox=(5, 5, 30, 30))], split="train"),
        Item("c.png", textured(2), [Annotation("dog", bbox=(60, 40, 120, 70))], split="train"),
    ]
    store = build_view(tmp_path, items).store
    v1 = create_version(store, "p")
    assert v1.lineage == [] and v1.parent is None
    fix = apply_fixes(store, "p")
    v2 = create_version(store, "p")
    assert [c["change"] for c in v2.lineage] == [fix.change_id] and v2.parent == v1.version
    shown = show_version(store, "p", "v2")
    assert shown.lineage == v2.lineage and shown.counts["images"] == 2

    removed = fix.images_removed[0]
    v1_shas = {r.name: r.sha256 for r in load_version(store, "p", "v1").manifest.images}
    report = verify(store, gc=True, grace_seconds=0)
    assert report.ok and report.removed == 0, "v1 still points at the merged copy's blob"
    assert store.blobs.exists(v1_shas[removed])
    export_version(store, "p", "v1", tmp_path / "v1-out", "coco")
    assert (tmp_path / "v1-out").is_dir()


def test_export_of_an_augmented_version_is_made_once_and_shares_storage(tmp_path):
    store = synthetic_store(tmp_path, n=24)
    v = create_version(store, "shapes", resplit=True, seed=1, augment="outputs=2,flip=h,rotate=10,brightness=0.2")
    train = v.counts["splits"]["train"]["images"]
    report = export_version(store, "shapes", v.version, tmp_path / "yolo", "yolo")
    assert report.splits["train"] == 3 * train and report.images == v.counts["images"] + 2 * train
    exported = sorted(p.name for p in (tmp_path / "yolo").rglob("*.png"))
    assert len(exported) == report.images and sum("_aug" in n for n in exported) == 2 * train
    assert show_version(store, "shapes", v.version).materialized

    blobs_before = set(store.blobs.iter_shas())
    loaded, again = materialize_version(store, "shapes", v.version)
    assert set(store.blobs.iter_shas()) == blobs_before, "a second export reuses the outputs"
    assert [r.name for r in again] == sorted(r.name for r in again)

    _relabel_first_box(store)
    v2 = create_version(store, "shapes", seed=1, augment="outputs=2,flip=h,rotate=10,brightness=0.2")
    assert v2.version != v.version and v2.counts["splits"] == {
        k: {**c, "classes": v2.counts["splits"][k]["classes"]} for k, c in v.counts["splits"].items()
    }, "v2 keeps v1's splits"
    _, outputs2 = materialize_version(store, "shapes", v2.version)
    assert len(outputs2) == report.images
    assert set(store.blobs.iter_shas()) == blobs_before, "a relabel changes no pixels: every output blob is shared"
    assert {r.sha256 for r in outputs2} == {r.sha256 for r in again}


def test_preprocessing_resizes_every_split_and_remaps_classes(tmp_path):
    store = synthetic_store(tmp_path, n=12)
    v = create_version(store, "shapes", preprocess="auto-orient,resize=64x64:fit,remap=square>box+triangle>box")
    assert "square" not in v.classes and "box" in v.classes
    _, outputs = materialize_version(store, "shapes", v.version)
    assert len(outputs) == 12
    for rec in outputs:
        assert (rec.width, rec.height) == (64, 64)
        with Image.open(rec.file) as im:
            assert im.size == (64, 64)
        for a in rec.annotations:
            assert 0 <= a.bbox[0] < a.bbox[2] <= 64 and 0 <= a.bbox[1] < a.bbox[3] <= 64
            assert a.label in ("box", "circle")


def test_references_and_bad_requests_give_clear_errors(tmp_path):
    store = synthetic_store(tmp_path, n=6)
    v = create_version(store, "shapes", name="first")
    assert show_version(store, "shapes", "first").version == v.version
    assert show_version(store, "shapes", "1").version == v.version
    assert show_version(store, "shapes", v.version[:6]).version == v.version
    with pytest.raises(NotFoundError, match="no version 'v9'"):
        show_version(store, "shapes", "v9")
    with pytest.raises(NotFoundError):
        show_version(store, "nope", "v1")
    with pytest.raises(InvalidInputError):
        create_version(store, "shapes", split="train=abc")
    with pytest.raises(InvalidInputError):
        create_version(store, "shapes", augment="explode=3")
    with pytest.raises(InvalidInputError, match="read as a version"):
        create_version(store, "shapes", name="v2")
    with pytest.raises(ConflictError, match="named 'first'"):
        create_version(store, "shapes", name="first", seed=5, resplit=True)
    assert len(list_versions(store, "shapes")) == 1, "a failed create leaves nothing behind"


def test_cli_version_commands(tmp_path):
    from typer.testing import CliRunner

    from winnow.cli.main import app

    store = synthetic_store(tmp_path, n=10)
    env = {"WINNOW_HOME": str(tmp_path / "home")}
    runner = CliRunner()
    res = runner.invoke(app, ["version", "create", "shapes", "--seed", "2", "--resplit", "--json"], env=env)
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["number"] == 1 and doc["ref"] == f"shapes@{doc['version'][:12]}"
    assert sum(s["images"] for s in doc["counts"]["splits"].values()) == 10
    _relabel_first_box(store)
    assert runner.invoke(app, ["version", "create", "shapes", "--seed", "2", "--resplit"], env=env).exit_code == 0
    res = runner.invoke(app, ["version", "diff", "shapes@v1", "shapes@v2", "--json"], env=env)
    assert res.exit_code == 0 and json.loads(res.stdout)["annotations"]["changed"] == 1
    res = runner.invoke(app, ["version", "list", "shapes", "--json"], env=env)
    assert [r["number"] for r in json.loads(res.stdout)] == [1, 2]
    res = runner.invoke(app, ["export", "shapes@v1", str(tmp_path / "out"), "--format", "coco", "--json"], env=env)
    assert res.exit_code == 0, res.output
    written = sum(len(json.loads(p.read_text())["images"]) for p in (tmp_path / "out").rglob("*.json"))
    assert written == json.loads(res.stdout)["images"] == 10
    res = runner.invoke(app, ["version", "show", "shapes@nope"], env=env)
    assert res.exit_code == 1 and "no version 'nope'" in res.stderr


def test_mosaic_outputs_mix_other_train_images_and_are_reproducible(tmp_path, monkeypatch):
    store = synthetic_store(tmp_path, n=16)
    recipe = "outputs=1,mosaic=1"
    v = create_version(store, "shapes", resplit=True, seed=2, augment=recipe)
    _, outputs = materialize_version(store, "shapes", v.version, workers=1)
    sources = {r.name: r for r in load_version(store, "shapes", v.version).manifest.images}
    mixed = 0
    for rec in outputs:
        if "_aug1" not in rec.name:
            continue
        src = sources[rec.metadata["source"]]
        assert (rec.width, rec.height) == (src.width, src.height)
        for a in rec.annotations:
            x1, y1, x2, y2 = a.bbox
            assert 0 <= x1 < x2 <= rec.width and 0 <= y1 < y2 <= rec.height
        mixed += rec.sha256 != src.sha256
    assert mixed == v.counts["splits"]["train"]["images"]

    other = Store.open(tmp_path / "home-2")
    create_project(other, "shapes", "detect")
    import_dataset(other, "shapes", tmp_path / "src-0-16" / "coco", format="coco")
    v2 = create_version(other, "shapes", resplit=True, seed=2, augment=recipe)
    from winnow.versions import materialize

    monkeypatch.setattr(materialize, "_POOL_MIN_JOBS", 1)  # a real process pool even for a few images
    _, outputs2 = materialize_version(other, "shapes", v2.version, workers=2)
    assert [(r.name, r.sha256) for r in outputs2] == [(r.name, r.sha256) for r in outputs], "same bytes with 1 or 2 workers"


def test_jpeg_sources_give_jpeg_outputs_and_unchanged_images_reuse_their_blob(tmp_path):
    src = tmp_path / "jpg"
    ds = generate(src, 10, seed=5, image_format="jpg")
    from winnow.formats import get_format

    get_format("coco").write(ds, src / "coco", lambda rec, path: path.write_bytes(rec.file.read_bytes()))
    store = Store.open(tmp_path / "home")
    create_project(store, "j", "detect")
    import_dataset(store, "j", src / "coco", format="coco")
    v = create_version(store, "j", split="train=1", augment="outputs=1,rotate=10")
    _, outputs = materialize_version(store, "j", v.version)
    sources = {r.name: r.sha256 for r in load_version(store, "j").manifest.images}
    for rec in outputs:
        with Image.open(rec.file) as im:
            assert im.format == "JPEG", rec.name
        if "_aug" in rec.name:
            assert rec.name.endswith("_aug1.jpg") and rec.sha256 not in sources.values()
        else:
            assert rec.sha256 == sources[rec.name], "the un-augmented output is the source file itself"


def test_gc_removes_the_versions_of_a_deleted_project_and_their_outputs(tmp_path):
    from winnow.services.projects import delete_project

    store = synthetic_store(tmp_path, n=8)
    keep = create_version(store, "shapes", augment="outputs=1,flip=h")
    materialize_version(store, "shapes", keep.version)
    folder = load_version(store, "shapes").folder
    assert verify(store, gc=True, grace_seconds=0).removed_versions == 0, "a live version is kept"
    assert folder.is_dir()

    delete_project(store, "shapes")
    report = verify(store, gc=True, grace_seconds=0)
    assert report.ok and report.removed_versions == 1 and not folder.exists()
    assert list(store.blobs.iter_shas()) == [], "its images and augmented outputs are unreferenced now"
