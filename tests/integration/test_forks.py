"""Customer projects forked from a base version, on a real store: fork by reference (nothing
copied), the fork's versions (inherited images under base/, the customer's own test set, the
class map), adopt (copy on write) and undo, rebase with its conflict report, deleting a base,
bad inputs, and the ``winnow project fork|rebase|base|adopt`` commands."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from winnow.cli.main import app
from winnow.core.types import ORIGIN_BASE, ORIGIN_KEY, Dataset, ImageRecord
from winnow.errors import ConflictError, InvalidInputError, NotFoundError
from winnow.services.annotations import update_annotation
from winnow.services.datasets import load_dataset
from winnow.services.fixes import undo
from winnow.services.forks import (
    REBASES_SETTING,
    adopt_images,
    fork_project,
    image_revision,
    rebase,
    show_fork,
)
from winnow.services.ingest import import_records
from winnow.services.projects import (
    create_project,
    delete_project,
    get_setting,
    show_project,
)
from winnow.services.schema import rename_class
from winnow.services.versions import create_version, load_version
from winnow.store import models as m
from winnow.store.db import Store
from winnow.synthetic import generate

SPLIT = "train=0.6,valid=0.2,test=0.2"
CUSTOMER_WS = "acme-ws"
SHAPES = ("circle", "square", "triangle")


# ----------------------------------------------------------------------------- helpers


def make_base(tmp_path: Path, n: int = 30, *, seed: int = 1, store: Store | None = None, attributes: bool = False) -> Store:
    """A store (``$WINNOW_HOME``) with project ``base`` of ``n`` synthetic images and its v1.

    ``attributes``: each annotation gets ``{"size": "big"|"small"}`` (by its box width)."""
    store = store or Store.open()
    src = tmp_path / f"base-src-{seed}"
    ds = generate(src, n, seed=seed)
    if attributes:
        for rec in ds.images:
            for a in rec.annotations:
                a.attributes = {"size": "big" if a.bbox[2] - a.bbox[0] >= 20 else "small"}
    create_project(store, "base", "detect")
    import_records(store, "base", ds, src)
    create_version(store, "base", split=SPLIT, near_duplicates=False)
    return store


def add_own_images(store: Store, tmp_path: Path, project: str, n: int = 10, *, seed: int = 5, prefix: str = "cust",
                   workspace: str = CUSTOMER_WS, split: str | None = None) -> list[str]:
    src = tmp_path / f"{project}-{prefix}-{seed}"
    ds = generate(src, n, seed=seed, prefix=prefix)
    import_records(store, project, ds, src, workspace=workspace, split=split)
    return [r.name for r in ds.images]


def version(store: Store, project: str = "acme", workspace: str = CUSTOMER_WS, **kw: Any):
    kw.setdefault("near_duplicates", False)
    return create_version(store, project, workspace=workspace, **kw)


def manifest(store: Store, project: str, ref: str | None = None, workspace: str = "default") -> dict[str, ImageRecord]:
    return {r.name: r for r in load_version(store, project, ref, workspace=workspace).manifest.images}


def own(store: Store, project: str = "acme", workspace: str = CUSTOMER_WS) -> dict[str, ImageRecord]:
    return {r.name: r for r in load_dataset(store, project, workspace=workspace).images}


def labels(rec: ImageRecord) -> list[str]:
    return sorted(a.label for a in rec.annotations)


def footprint(store: Store) -> dict[str, int]:
    """What the store holds: blob files and bytes, image, annotation and metadata rows, version folders."""
    files = [p for p in store.blobs.root.rglob("*") if p.is_file() and ".tmp" not in p.relative_to(store.blobs.root).parts]
    versions = store.home / "versions"
    with store.read() as s:
        rows = {name: s.scalar(select(func.count()).select_from(model)) for name, model in
                (("images", m.Image), ("annotations", m.Annotation), ("metadata", m.ImageMetadata), ("blobs", m.Blob))}
    return rows | {
        "blob_files": len(files), "blob_bytes": sum(p.stat().st_size for p in files),
        "version_folders": sum(1 for p in versions.rglob("*") if p.is_dir() and p.parent.parent == versions) if versions.is_dir() else 0,
    }


def non_test_base(store: Store, ref: str = "v1") -> dict[str, ImageRecord]:
    return {n: r for n, r in manifest(store, "base", ref).items() if r.split != "test"}


def relabel(store: Store, project: str, name: str, index: int, label: str, workspace: str = "default") -> None:
    """Change the class of annotation ``index`` (in id order) of image ``name``."""
    rec = own(store, project, workspace)[name]
    ann = sorted(rec.annotations, key=lambda a: a.id)[index]
    update_annotation(store, project, ann.id, label=label, workspace=workspace)


def base_labels(store: Store, name: str) -> list[str]:
    """The labels of the base project's image ``name``, in annotation id order."""
    return [a.label for a in sorted(own(store, "base", "default")[name].annotations, key=lambda a: a.id)]


def other(label: str, *not_: str) -> str:
    return next(s for s in SHAPES if s != label and s not in not_)


def fork_row(store: Store, project: str = "acme") -> dict[str, Any]:
    with store.read() as s:
        proj = s.scalar(select(m.Project).where(m.Project.name == project))
        row = s.get(m.ProjectFork, proj.id)
        return {"base_version_id": row.base_version_id, "class_map": dict(row.class_map), "rebased_at": row.rebased_at}


def count(store: Store, model: Any) -> int:
    with store.read() as s:
        return s.scalar(select(func.count()).select_from(model))


# ----------------------------------------------------------------------------- fork


def test_fork_copies_nothing(tmp_path):
    store = make_base(tmp_path)
    before = footprint(store)
    info = fork_project(store, "base", "v1", "acme", workspace=CUSTOMER_WS)
    assert footprint(store) == before  # no image, annotation or metadata row, no blob, no version folder
    assert show_project(store, "acme", CUSTOMER_WS).images == 0
    base_v1 = load_version(store, "base", "v1")
    assert info.base_version == base_v1.version_id and info.base_version_number == 1
    assert info.as_dict()["base_ref"] == "base@v1" and info.workspace == CUSTOMER_WS
    assert info.class_map == {c: c for c in base_v1.manifest.classes}
    assert info.adopted == 0 and not info.behind
    assert show_fork(store, "acme", workspace=CUSTOMER_WS).as_dict() == info.as_dict()


def test_fork_version_inherits_the_base_and_keeps_its_own_test_set(tmp_path):
    store = make_base(tmp_path)
    fork_project(store, "base", "v1", "acme", workspace=CUSTOMER_WS)
    own_names = add_own_images(store, tmp_path, "acme", 12)
    rename_class(store, "acme", "circle", "ring", workspace=CUSTOMER_WS)
    v = version(store, split="train=0.5,valid=0.25,test=0.25")
    got = manifest(store, "acme", v.version, CUSTOMER_WS)

    base_all = manifest(store, "base", "v1")
    base_test = {n for n, r in base_all.items() if r.split == "test"}
    assert base_test and len(base_test) < len(base_all)
    inherited = {n: r for n, r in got.items() if n.startswith("base/")}
    assert set(inherited) == {"base/" + n for n in base_all if n not in base_test}
    for name, rec in inherited.items():
        src = base_all[name[len("base/"):]]
        assert rec.metadata[ORIGIN_KEY] == ORIGIN_BASE
        assert rec.split == src.split  # the base's splits
        assert rec.sha256 == src.sha256
        assert labels(rec) == sorted("ring" if a.label == "circle" else a.label for a in src.annotations)
    assert set(got) - set(inherited) == set(own_names)
    test = [r for r in got.values() if r.split == "test"]
    assert test and all(not r.name.startswith("base/") and ORIGIN_KEY not in r.metadata for r in test)
    assert all(ORIGIN_KEY not in got[n].metadata for n in own_names)
    assert "circle" not in v.classes and "ring" in v.classes
    assert v.splitting["inherited"] == {"images": len(inherited), "adopted": 0, "in_customer_test": 0,
                                        "near_customer_test": 0, "test": len(base_test), "no_labels": 0}
    assert v.recipe["base"]["version"] == load_version(store, "base", "v1").version_id
    assert v.recipe["base"]["class_map"]["circle"] == "ring"


def test_same_inputs_give_the_same_fork_version_id(tmp_path):
    ids = []
    for home in ("home-a", "home-b"):
        store = make_base(tmp_path, store=Store.open(tmp_path / home))
        fork_project(store, "base", "v1", "acme", workspace=CUSTOMER_WS)
        add_own_images(store, tmp_path, "acme", 6)
        first = version(store)
        again = version(store)
        assert first.created and not again.created and again.version == first.version
        ids.append(first.version)
    assert ids[0] == ids[1]


def test_customer_test_image_with_base_bytes_keeps_the_base_copy_out(tmp_path):
    store = make_base(tmp_path)
    fork_project(store, "base", "v1", "acme", workspace=CUSTOMER_WS)
    base_rec = next(iter(non_test_base(store).values()))
    src = tmp_path / "dup"
    (src / "images").mkdir(parents=True)
    shutil.copyfile(base_rec.file, src / "images" / "mine.png")
    rec = ImageRecord(name="images/mine.png", width=base_rec.width, height=base_rec.height,
                      annotations=list(base_rec.annotations), file=src / "images" / "mine.png")
    import_records(store, "acme", Dataset(classes=list(SHAPES), images=[rec]), src, workspace=CUSTOMER_WS, split="test")
    got = manifest(store, "acme", version(store).version, CUSTOMER_WS)
    assert got["images/mine.png"].split == "test" and got["images/mine.png"].sha256 == base_rec.sha256
    assert "base/" + base_rec.name not in got
    assert [r.name for r in got.values() if r.sha256 == base_rec.sha256] == ["images/mine.png"]
    assert version(store).splitting["inherited"]["in_customer_test"] == 1


def test_a_near_copy_of_a_customer_test_image_is_not_inherited(tmp_path):
    """The customer's test image is the base picture at half size (other bytes): with the
    near-duplicate rule on (the default), the base's copy stays out of the customer's version."""
    from PIL import Image as PILImage

    store = make_base(tmp_path)
    fork_project(store, "base", "v1", "acme", workspace=CUSTOMER_WS)
    base_rec = next(r for r in non_test_base(store).values() if r.split == "train")
    src = tmp_path / "near"
    (src / "images").mkdir(parents=True)
    with PILImage.open(base_rec.file) as im:
        im.resize((im.width // 2, im.height // 2), PILImage.Resampling.BILINEAR).save(src / "images" / "mine.png")
    half = [type(a)(label=a.label, bbox=tuple(v / 2 for v in a.bbox)) for a in base_rec.annotations]
    rec = ImageRecord(name="images/mine.png", width=base_rec.width // 2, height=base_rec.height // 2, annotations=half,
                      file=src / "images" / "mine.png")
    import_records(store, "acme", Dataset(classes=list(SHAPES), images=[rec]), src, workspace=CUSTOMER_WS, split="test")

    near = create_version(store, "acme", workspace=CUSTOMER_WS)  # near_duplicates=True
    got = manifest(store, "acme", near.version, CUSTOMER_WS)
    assert "base/" + base_rec.name not in got and got["images/mine.png"].split == "test"
    assert near.splitting["inherited"]["near_customer_test"] >= 1
    plain = version(store)  # near_duplicates=False: only the same bytes are left out
    assert "base/" + base_rec.name in manifest(store, "acme", plain.version, CUSTOMER_WS)
    assert plain.splitting["inherited"]["near_customer_test"] == 0


# ----------------------------------------------------------------------------- rebase


def test_rebase_brings_the_base_images_it_added(tmp_path):
    store = make_base(tmp_path)
    fork_project(store, "base", "v1", "acme", workspace=CUSTOMER_WS)
    new = add_own_images(store, tmp_path, "base", 4, seed=9, prefix="extra", workspace="default", split="train")
    create_version(store, "base", near_duplicates=False)
    assert show_fork(store, "acme", workspace=CUSTOMER_WS).behind
    assert not any(n.startswith("base/images/extra") for n in manifest(store, "acme", version(store).version, CUSTOMER_WS))
    report = rebase(store, "acme", "v2", workspace=CUSTOMER_WS)
    assert report.base_changes["images_added"] == 4 and report.conflicts == [] and report.followed == []
    got = manifest(store, "acme", version(store).version, CUSTOMER_WS)
    assert {"base/" + n for n in new} <= set(got)
    assert all(got["base/" + n].split == "train" and got["base/" + n].metadata[ORIGIN_KEY] == ORIGIN_BASE for n in new)
    info = show_fork(store, "acme", workspace=CUSTOMER_WS)
    assert info.base_version_number == 2 and not info.behind and info.rebased_at is not None


def _adopted_pair(tmp_path: Path, customers: tuple[str, ...] = ("acme",)) -> tuple[Store, list[str]]:
    """A base, its forks ``customers`` each adopting the same 3 train images (base names)."""
    store = make_base(tmp_path)
    names = [n for n, r in sorted(non_test_base(store).items()) if r.split == "train" and len(r.annotations) >= 1][:3]
    for c in customers:
        fork_project(store, "base", "v1", c, workspace=CUSTOMER_WS)
        adopt_images(store, c, names, workspace=CUSTOMER_WS)
    return store, names


def test_rebase_follows_the_base_on_images_only_it_changed(tmp_path):
    store, names = _adopted_pair(tmp_path)
    x = names[0]
    first = base_labels(store, x)[0]
    relabel(store, "base", x, 0, other(first))
    create_version(store, "base", near_duplicates=False)
    report = rebase(store, "acme", "v2", workspace=CUSTOMER_WS)
    assert report.followed == ["base/" + x] and report.conflicts == []
    assert labels(own(store)["base/" + x]) == labels(own(store, "base", "default")[x])
    got = manifest(store, "acme", version(store).version, CUSTOMER_WS)
    assert labels(got["base/" + x]) == labels(own(store, "base", "default")[x])
    assert [n for n in got if n == "base/" + x] == ["base/" + x]  # the own copy stands in, once


def test_rebase_reports_conflicts_keeps_ours_by_default_and_theirs_on_request(tmp_path):
    store, names = _adopted_pair(tmp_path, ("acme", "beta"))
    y = names[1]
    original = own(store, "base", "default")[y]
    first = base_labels(store, y)[0]
    theirs_label, ours_label = other(first), other(first, other(first))
    for c in ("acme", "beta"):
        relabel(store, c, "base/" + y, 0, ours_label, CUSTOMER_WS)
    relabel(store, "base", y, 0, theirs_label)
    create_version(store, "base", near_duplicates=False)

    def counts(names_: list[str]) -> dict[str, int]:
        return {k: names_.count(k) for k in sorted(set(names_))}

    rest = base_labels(store, y)[1:]
    before, after, mine = labels(original), sorted([theirs_label, *rest]), sorted([ours_label, *rest])
    expected = {"image": "base/" + y, "base_before": counts(before), "base_after": counts(after), "customer": counts(mine)}

    # dry run: the report, and nothing changes
    fork_before, own_before, changes_before = fork_row(store), own(store), count(store, m.Change)
    dry = rebase(store, "acme", "v2", workspace=CUSTOMER_WS, dry_run=True)
    assert dry.dry_run and dry.conflicts == [expected | {"kept": "ours"}] and dry.followed == []
    assert fork_row(store) == fork_before and count(store, m.Change) == changes_before
    assert {n: image_revision(r.annotations) for n, r in own(store).items()} == {
        n: image_revision(r.annotations) for n, r in own_before.items()}
    with store.read() as s:
        assert get_setting(s, s.scalar(select(m.Project.id).where(m.Project.name == "acme")), REBASES_SETTING) is None

    ours = rebase(store, "acme", "v2", workspace=CUSTOMER_WS)
    assert ours.conflicts == [expected | {"kept": "ours"}]
    assert labels(own(store)["base/" + y]) == mine
    assert fork_row(store)["base_version_id"] == load_version(store, "base", "v2").version_id

    theirs = rebase(store, "beta", "v2", workspace=CUSTOMER_WS, theirs=True)
    assert theirs.conflicts == [expected | {"kept": "theirs"}] and theirs.strategy == "theirs"
    assert labels(own(store, "beta")["base/" + y]) == after == labels(own(store, "base", "default")[y])


def test_undo_of_a_rebase_puts_the_fork_and_its_labels_back(tmp_path):
    store, names = _adopted_pair(tmp_path)
    y = names[1]
    first = base_labels(store, y)[0]
    relabel(store, "acme", "base/" + y, 0, other(first, other(first)), CUSTOMER_WS)
    relabel(store, "base", y, 0, other(first))
    create_version(store, "base", near_duplicates=False)
    fork_before, mine_before = fork_row(store), labels(own(store)["base/" + y])

    report = rebase(store, "acme", "v2", workspace=CUSTOMER_WS, theirs=True)
    assert report.conflicts and labels(own(store)["base/" + y]) != mine_before
    assert fork_row(store)["base_version_id"] != fork_before["base_version_id"]

    undo(store, "acme", workspace=CUSTOMER_WS)
    assert labels(own(store)["base/" + y]) == mine_before
    after = fork_row(store)
    assert (after["base_version_id"], after["class_map"]) == (fork_before["base_version_id"], fork_before["class_map"])
    again = rebase(store, "acme", "v2", workspace=CUSTOMER_WS, dry_run=True)  # the same conflict, found again
    assert [c["image"] for c in again.conflicts] == ["base/" + y]


def test_the_same_change_on_both_sides_is_no_conflict(tmp_path):
    store, names = _adopted_pair(tmp_path)
    z = names[2]
    first = base_labels(store, z)[0]
    relabel(store, "acme", "base/" + z, 0, other(first), CUSTOMER_WS)
    relabel(store, "base", z, 0, other(first))
    create_version(store, "base", near_duplicates=False)
    report = rebase(store, "acme", workspace=CUSTOMER_WS)
    assert report.conflicts == [] and report.followed == [] and report.base_changes["annotations"]["changed"] == 1


def test_an_edit_that_changes_no_label_is_no_change(tmp_path):
    """Saving a label unchanged makes it ``source=human``: not a change a rebase reports."""
    store, names = _adopted_pair(tmp_path)
    x, y = names[0], names[1]
    first_x = base_labels(store, x)[0]
    first_y = base_labels(store, y)[0]
    relabel(store, "acme", "base/" + x, 0, other(first_x), CUSTOMER_WS)  # the customer corrects x
    relabel(store, "base", x, 0, first_x)  # a base reviewer saves x's label unchanged
    relabel(store, "acme", "base/" + y, 0, first_y, CUSTOMER_WS)  # the customer saves y's label unchanged
    relabel(store, "base", y, 0, other(first_y))  # the base corrects y
    create_version(store, "base", near_duplicates=False)
    report = rebase(store, "acme", workspace=CUSTOMER_WS)
    assert report.conflicts == [] and report.followed == ["base/" + y]
    rest_x = base_labels(store, x)[1:]
    assert labels(own(store)["base/" + x]) == sorted([other(first_x), *rest_x])  # the customer's correction stays
    assert labels(own(store)["base/" + y]) == labels(own(store, "base", "default")[y])


def test_rebase_to_an_older_version_is_refused(tmp_path):
    store = make_base(tmp_path)
    add_own_images(store, tmp_path, "base", 3, seed=9, prefix="extra", workspace="default", split="train")
    create_version(store, "base", near_duplicates=False)
    fork_project(store, "base", "v2", "acme", workspace=CUSTOMER_WS)
    before = fork_row(store)
    with pytest.raises(InvalidInputError, match="older"):
        rebase(store, "acme", "v1", workspace=CUSTOMER_WS)
    assert fork_row(store) == before


def test_renames_on_either_side_are_no_conflict(tmp_path):
    store, _ = _adopted_pair(tmp_path)
    rename_class(store, "acme", "circle", "ring", workspace=CUSTOMER_WS)
    rename_class(store, "base", "square", "box")
    create_version(store, "base", near_duplicates=False)
    adopted_before = {n: labels(r) for n, r in own(store).items()}
    report = rebase(store, "acme", "v2", workspace=CUSTOMER_WS)
    assert report.conflicts == [] and report.followed == []
    assert report.class_map == {"circle": "ring", "box": "square", "triangle": "triangle"}
    assert any("renamed 'square' to 'box'" in note for note in report.schema_notes)
    assert {n: labels(r) for n, r in own(store).items()} == adopted_before
    v = version(store)
    assert "box" not in v.classes and "circle" not in v.classes and {"ring", "square"} <= set(v.classes)


def test_rebase_of_a_renamed_adopted_label_change_still_conflicts(tmp_path):
    """A rename on the base side must not hide a real label change from the conflict check."""
    store, names = _adopted_pair(tmp_path)
    y = names[0]
    first = base_labels(store, y)[0]
    target = other(first)
    relabel(store, "acme", "base/" + y, 0, other(first, target), CUSTOMER_WS)
    relabel(store, "base", y, 0, target)
    rename_class(store, "base", target, "renamed")
    create_version(store, "base", near_duplicates=False)
    report = rebase(store, "acme", workspace=CUSTOMER_WS)
    assert [c["image"] for c in report.conflicts] == ["base/" + y]
    assert report.conflicts[0]["base_after"].get(target, 0) >= 1 and "renamed" not in report.conflicts[0]["base_after"]


# ----------------------------------------------------------------------------- adopt, delete


def test_adopt_copies_rows_not_bytes_and_undo_removes_them(tmp_path):
    store = make_base(tmp_path)
    fork_project(store, "base", "v1", "acme", workspace=CUSTOMER_WS)
    base = non_test_base(store)
    names = sorted(base)[:2]
    before = footprint(store)
    result = adopt_images(store, "acme", [names[0], "base/" + names[1]], workspace=CUSTOMER_WS)
    assert result["adopted"] == ["base/" + n for n in names] and result["change_id"] is not None
    after = footprint(store)
    assert (after["blob_files"], after["blob_bytes"], after["blobs"]) == (before["blob_files"], before["blob_bytes"], before["blobs"])
    assert after["images"] == before["images"] + 2
    assert after["annotations"] == before["annotations"] + sum(len(base[n].annotations) for n in names)
    mine = own(store)
    for n in names:
        assert mine["base/" + n].sha256 == base[n].sha256 and mine["base/" + n].split == base[n].split
        assert mine["base/" + n].metadata[ORIGIN_KEY] == ORIGIN_BASE and labels(mine["base/" + n]) == labels(base[n])
    assert count(store, m.ForkOverride) == 2 and show_fork(store, "acme", workspace=CUSTOMER_WS).adopted == 2
    again = adopt_images(store, "acme", [names[0]], workspace=CUSTOMER_WS)
    assert again["adopted"] == [] and again["already_adopted"] == ["base/" + names[0]] and again["change_id"] is None

    undo(store, "acme", workspace=CUSTOMER_WS)
    assert footprint(store) == before
    assert own(store) == {} and count(store, m.ForkOverride) == 0
    assert show_fork(store, "acme", workspace=CUSTOMER_WS).adopted == 0


def test_deleting_a_base_with_forks_is_refused_until_the_forks_are_gone(tmp_path):
    store = make_base(tmp_path)
    fork_project(store, "base", "v1", "acme", workspace=CUSTOMER_WS)
    with pytest.raises(ConflictError, match="acme"):
        delete_project(store, "base")
    assert show_project(store, "base").images == 30
    delete_project(store, "acme", CUSTOMER_WS)
    assert count(store, m.ProjectFork) == 0
    delete_project(store, "base")
    assert count(store, m.Project) == 0


# ----------------------------------------------------------------------------- bad inputs


def test_bad_inputs_give_clear_errors_and_change_nothing(tmp_path):
    store = make_base(tmp_path)
    fork_project(store, "base", "v1", "acme", workspace=CUSTOMER_WS)
    state = (footprint(store), count(store, m.Project), count(store, m.ProjectFork), count(store, m.Change), fork_row(store))

    with pytest.raises(NotFoundError, match="no version 'v7'"):
        fork_project(store, "base", "v7", "other", workspace=CUSTOMER_WS)
    with pytest.raises(NotFoundError, match="does not exist"):
        fork_project(store, "nobase", None, "other", workspace=CUSTOMER_WS)
    with pytest.raises(ConflictError, match="already exists"):
        fork_project(store, "base", "v1", "acme", workspace=CUSTOMER_WS)
    with pytest.raises(InvalidInputError, match="not a fork"):
        rebase(store, "base", "v1")
    with pytest.raises(NotFoundError, match="no image 'images/nope.png'"):
        adopt_images(store, "acme", ["images/nope.png", min(non_test_base(store))], workspace=CUSTOMER_WS)
    with pytest.raises(InvalidInputError, match="not a fork"):
        adopt_images(store, "base", ["images/img_00000.png"])
    base_test = min(n for n, r in manifest(store, "base", "v1").items() if r.split == "test")
    with pytest.raises(InvalidInputError, match="test split"):
        adopt_images(store, "acme", [base_test], workspace=CUSTOMER_WS)
    with pytest.raises(NotFoundError, match="is not a fork"):
        show_fork(store, "base")
    assert (footprint(store), count(store, m.Project), count(store, m.ProjectFork), count(store, m.Change), fork_row(store)) == state


# ----------------------------------------------------------------------------- CLI

runner = CliRunner()


def cli(*args: str, code: int = 0) -> Any:
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == code, result.output
    return json.loads(result.stdout)


def test_cli_project_fork_base_adopt_rebase_json(tmp_path):
    store = make_base(tmp_path)
    forked = cli("project", "fork", "base@v1", "acme", "--workspace", CUSTOMER_WS)
    assert forked["base_ref"] == "base@v1" and forked["project"] == "acme" and forked["workspace"] == CUSTOMER_WS
    assert set(forked) >= {"base_project", "base_workspace", "base_version", "base_version_number",
                           "latest_base_version_number", "behind", "class_map", "adopted", "created_at", "rebased_at"}

    names = [n for n, r in sorted(non_test_base(store).items()) if r.split == "train"][:2]
    adopted = cli("project", "adopt", "acme", names[0], "base/" + names[1], "-w", CUSTOMER_WS)
    assert adopted["adopted"] == ["base/" + n for n in names] and adopted["change_id"]

    first = base_labels(store, names[0])[0]
    relabel(store, "acme", "base/" + names[0], 0, other(first), CUSTOMER_WS)
    relabel(store, "base", names[0], 0, other(first, other(first)))
    create_version(store, "base", near_duplicates=False)
    shown = cli("project", "base", "acme", "-w", CUSTOMER_WS)
    assert shown["behind"] and shown["latest_base_version_number"] == 2 and shown["adopted"] == 2

    dry = cli("project", "rebase", "acme", "base@v2", "--dry-run", "-w", CUSTOMER_WS)
    assert dry["dry_run"] and dry["to_number"] == 2 and [c["image"] for c in dry["conflicts"]] == ["base/" + names[0]]
    assert set(dry["conflicts"][0]) == {"image", "base_before", "base_after", "customer", "kept"}
    assert cli("project", "base", "acme", "-w", CUSTOMER_WS)["base_version_number"] == 1

    err = cli("project", "rebase", "acme", "other@v2", "-w", CUSTOMER_WS, code=1)
    assert err["type"] == "InvalidInputError" and "fork of 'base'" in err["error"]

    done = cli("project", "rebase", "acme", "v2", "--theirs", "-w", CUSTOMER_WS)
    assert not done["dry_run"] and done["strategy"] == "theirs" and done["conflicts"][0]["kept"] == "theirs"
    assert cli("project", "base", "acme", "-w", CUSTOMER_WS)["base_version_number"] == 2

    missing = cli("project", "adopt", "acme", "images/nope.png", "-w", CUSTOMER_WS, code=1)
    assert missing["type"] == "NotFoundError"
    assert cli("project", "fork", "base@v9", "x", code=1)["type"] == "NotFoundError"
    assert cli("project", "base", "base", code=1)["type"] == "NotFoundError"


def test_cli_rebase_prints_a_readable_report(tmp_path):
    store, names = _adopted_pair(tmp_path)
    first = base_labels(store, names[0])[0]
    relabel(store, "acme", "base/" + names[0], 0, other(first), CUSTOMER_WS)
    relabel(store, "base", names[0], 0, other(first, other(first)))
    relabel(store, "base", names[1], 0, other(first))
    rename_class(store, "base", "triangle", "tri")
    create_version(store, "base", near_duplicates=False)
    result = runner.invoke(app, ["project", "rebase", "acme", "--dry-run", "-w", CUSTOMER_WS])
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert "would rebase acme from base@v1 to v2" in text
    assert "base renamed 'triangle' to 'tri'" in text and "tri -> triangle" in text
    assert "followed the base on 1 adopted images" in text and "base/" + names[1] in text
    assert "1 conflicts" in text and f"base/{names[0]} (kept ours)" in text and "dry run: nothing changed" in text
    conflict = rebase(store, "acme", workspace=CUSTOMER_WS, dry_run=True).conflicts[0]
    for key, title in (("base_before", "base before: "), ("base_after", "base after:  "), ("customer", "customer:    ")):
        assert title + ", ".join(f"{k} {v}" for k, v in conflict[key].items()) in text
    shown = runner.invoke(app, ["project", "base", "acme", "-w", CUSTOMER_WS]).stdout
    assert "is a fork of default/base@v1" in shown and "behind: the base is at v2" in shown


def test_a_base_class_named_like_a_customer_rename_is_flagged_at_rebase(tmp_path):
    store = make_base(tmp_path)
    fork_project(store, "base", "v1", "acme", workspace=CUSTOMER_WS)
    rename_class(store, "acme", "circle", "disc", workspace=CUSTOMER_WS)
    x = next(n for n, r in sorted(non_test_base(store).items()) if r.split == "train" and r.annotations)
    relabel(store, "base", x, 0, "disc")  # the base starts using a class the customer named its circles
    create_version(store, "base", near_duplicates=False)
    report = rebase(store, "acme", "v2", workspace=CUSTOMER_WS)
    assert report.class_map["disc"] == "disc" and report.class_map["circle"] == "disc"
    assert any("already the customer's name for 'circle'" in n for n in report.schema_notes)
