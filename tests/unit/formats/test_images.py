"""The images format: a folder of unlabelled images, read recursively, written back unchanged."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from winnow.core.types import UNLABELED_TAG, Annotation, Dataset, ImageRecord, Problems
from winnow.errors import FormatError, InvalidInputError
from tests.unit.formats.test_classification_folders import image
from winnow.formats.base import copy_from_file, detect_format, get_format

FMT = get_format("images")


def read(path: Path) -> tuple[Dataset, Problems]:
    problems = Problems()
    return FMT.read(path, problems), problems


def test_reads_every_image_at_any_depth_keeping_sub_folders_in_names(tmp_path):
    image(tmp_path / "a.jpg", 30, 20)
    image(tmp_path / "cams/north/0001.png")
    image(tmp_path / "cams/south/0001.png")
    (tmp_path / "notes.md").write_text("not an image")
    image(tmp_path / ".hidden/x.png")
    ds, problems = read(tmp_path)
    assert list(problems) == []
    assert sorted(r.name for r in ds.images) == ["a.jpg", "cams/north/0001.png", "cams/south/0001.png"]
    assert all(r.annotations == [] and r.tags == [UNLABELED_TAG] and r.split is None for r in ds.images)
    a = next(r for r in ds.images if r.name == "a.jpg")
    assert (a.width, a.height) == (30, 20) and a.file == (tmp_path / "a.jpg").resolve()
    assert ds.classes == [] and ds.task is None


def test_top_level_split_folders_give_splits(tmp_path):
    image(tmp_path / "train/a.png")
    image(tmp_path / "val/deep/b.png")
    image(tmp_path / "other/c.png")
    ds, _ = read(tmp_path)
    assert {(r.split, r.name) for r in ds.images} == {("train", "a.png"), ("valid", "deep/b.png"), (None, "other/c.png")}


def test_bad_files_are_skipped_with_an_error_each_and_links_out_refused(tmp_path):
    root = tmp_path / "ds"
    image(root / "ok.png")
    (root / "empty.png").write_bytes(b"")
    (root / "svg.png").write_bytes(b"<svg xmlns='http://www.w3.org/2000/svg'/>")
    (root / "cut.png").write_bytes((root / "ok.png").read_bytes()[:20])
    image(tmp_path / "outside" / "secret.png")
    os.symlink(tmp_path / "outside" / "secret.png", root / "link.png")
    ds, problems = read(root)
    assert [r.name for r in ds.images] == ["ok.png"]
    errors = {p.record or Path(p.file).name: p.message for p in problems if p.level == "error"}
    assert set(errors) == {"empty.png", "svg.png", "cut.png", "link.png"}
    assert "outside" in next(m for k, m in errors.items() if k == "link.png")


def test_not_a_folder_is_a_format_error(tmp_path):
    with pytest.raises(FormatError):
        read(image(tmp_path / "a.png"))


def test_detection_prefers_labelled_layouts_and_takes_a_bare_folder(tmp_path):
    flat = tmp_path / "flat"
    image(flat / "a.png")
    assert detect_format(flat).name == "images"
    classes = tmp_path / "classes"
    image(classes / "cat" / "a.png")
    assert detect_format(classes).name == "folders"  # sub-folders of images read as classes there
    labelled = tmp_path / "labelled"
    image(labelled / "a.png")
    (labelled / "a.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    assert FMT.detect(labelled) == 0.0
    assert FMT.detect(tmp_path / "nothing") == 0.0


def test_write_then_read_gives_the_same_names_splits_and_bytes(tmp_path):
    src = tmp_path / "src"
    image(src / "x/1.png", 5, 6)
    image(src / "train/2.png")
    ds, _ = read(src)
    FMT.write(ds, tmp_path / "out", copy_from_file)
    back, problems = read(tmp_path / "out")
    assert list(problems) == []
    assert sorted((r.split or "", r.name, r.width, r.height) for r in back.images) == sorted(
        (r.split or "", r.name, r.width, r.height) for r in ds.images
    )
    assert (tmp_path / "out/x/1.png").read_bytes() == (src / "x/1.png").read_bytes()


def test_write_refuses_labels_before_writing_anything(tmp_path):
    rec = ImageRecord("a.png", 4, 4, file=image(tmp_path / "a.png"), annotations=[Annotation("cat", bbox=(0, 0, 2, 2))])
    with pytest.raises(InvalidInputError, match="annotations"):
        FMT.write(Dataset(images=[rec]), tmp_path / "out", copy_from_file)
    assert not (tmp_path / "out").exists()
