"""Classification folders: round trip, layouts, names, and what cannot be written."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from PIL import Image

from tests.strategies import datasets, png_writer
from winnow.core.types import Annotation, Dataset, ImageRecord, Problems, Task
from winnow.errors import FormatError, InvalidInputError
from winnow.formats.classification_folders import ClassificationFoldersFormat, check_class_name, image_label
from winnow.core.types import UNLABELED_TAG

FMT = ClassificationFoldersFormat()


def image(path: Path, width: int = 12, height: int = 8) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (width, height), (1, 2, 3)).save(path)
    return path


def read(path: Path) -> tuple[Dataset, Problems]:
    problems = Problems()
    return FMT.read(path, problems), problems


def labels(ds: Dataset) -> dict[tuple[str | None, str], list[str]]:
    return {(r.split, r.name): [a.label for a in r.annotations] for r in ds.images}


def files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


# --------------------------------------------------------------------------- round trip


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(datasets(Task.CLASSIFY, splits=True))
def test_round_trip_keeps_labels_splits_sizes_and_classes(dataset):
    with tempfile.TemporaryDirectory() as tmp:
        FMT.write(dataset, Path(tmp), png_writer)
        back, problems = read(Path(tmp))
        # A second round trip changes nothing: names read from folders are stable.
        again_dir = Path(tmp, "again")
        FMT.write(back, again_dir, png_writer)
        again, _ = read(again_dir)
    assert list(problems) == []
    assert back.task is Task.CLASSIFY
    assert back.classes == sorted(dataset.classes)  # every class has a folder, used or not
    want = {(r.split, f"{r.annotations[0].label}/{r.name}"): r for r in dataset.images}
    got = {(r.split, r.name): r for r in back.images}
    assert got.keys() == want.keys()
    for key, rec in want.items():
        assert [a.label for a in got[key].annotations] == [rec.annotations[0].label]
        assert got[key].annotations[0].kind == "label"
        assert (got[key].width, got[key].height) == (rec.width, rec.height)
    assert labels(again) == labels(back)


# --------------------------------------------------------------------------- reading layouts


def test_reads_class_folders_without_splits(tmp_path):
    image(tmp_path / "cat/1.jpg", 30, 20)
    image(tmp_path / "dog/1.jpg")
    image(tmp_path / "dog/deeper/2.png")
    (tmp_path / "empty_class").mkdir()
    ds, problems = read(tmp_path)
    assert list(problems) == []
    assert ds.classes == ["cat", "dog", "empty_class"]
    assert labels(ds) == {(None, "cat/1.jpg"): ["cat"], (None, "dog/1.jpg"): ["dog"], (None, "dog/deeper/2.png"): ["dog"]}
    cat = next(r for r in ds.images if r.name == "cat/1.jpg")
    assert (cat.width, cat.height) == (30, 20) and cat.file == (tmp_path / "cat/1.jpg").resolve()


def test_reads_split_folders_and_normalises_val(tmp_path):
    image(tmp_path / "train/cat/a.png")
    image(tmp_path / "val/dog/b.png")
    image(tmp_path / "Test/cat/c.png")
    ds, problems = read(tmp_path)
    assert list(problems) == []
    assert labels(ds) == {("train", "cat/a.png"): ["cat"], ("valid", "dog/b.png"): ["dog"], ("test", "cat/c.png"): ["cat"]}
    assert ds.classes == ["cat", "dog"]


def test_the_same_file_in_two_splits_gets_a_unique_name(tmp_path):
    image(tmp_path / "train/cat/1.png")
    image(tmp_path / "valid/cat/1.png")
    ds, problems = read(tmp_path)
    assert sorted((r.split, r.name) for r in ds.images) == [("train", "cat/1.png"), ("valid", "valid/cat/1.png")]
    assert [p.level for p in problems] == ["warning"]


def test_a_class_named_like_a_split_holding_images_is_a_class(tmp_path):
    image(tmp_path / "test/a.png")
    image(tmp_path / "prod/b.png")
    ds, _ = read(tmp_path)
    assert labels(ds) == {(None, "test/a.png"): ["test"], (None, "prod/b.png"): ["prod"]}


def test_images_outside_class_folders_are_kept_unlabeled_with_a_warning(tmp_path):
    image(tmp_path / "cat/a.png")
    image(tmp_path / "stray.png")
    image(tmp_path / "train/dog/b.png")
    image(tmp_path / "train/loose.png")
    ds, problems = read(tmp_path)
    strays = {(r.split, r.name): r for r in ds.images if not r.annotations}
    assert set(strays) == {(None, "stray.png"), ("train", "loose.png")}
    assert all(r.tags == [UNLABELED_TAG] for r in strays.values())
    assert sorted((p.level, p.record) for p in problems) == [("warning", "loose.png"), ("warning", "stray.png")]


def test_unreadable_images_are_skipped_with_an_error(tmp_path):
    image(tmp_path / "cat/ok.png")
    bad = tmp_path / "cat/bad.jpg"
    bad.write_bytes(b"<svg xmlns='http://www.w3.org/2000/svg'/>")
    ds, problems = read(tmp_path)
    assert [r.name for r in ds.images] == ["cat/ok.png"]
    assert [(p.level, p.file, p.record) for p in problems] == [("error", str(bad.resolve()), "cat/bad.jpg")]


def test_hidden_folders_and_non_images_are_ignored(tmp_path):
    image(tmp_path / "cat/a.png")
    image(tmp_path / ".cache/x.png")
    (tmp_path / "cat/notes.md").write_text("hi")
    ds, problems = read(tmp_path)
    assert [r.name for r in ds.images] == ["cat/a.png"] and ds.classes == ["cat"] and not problems


def test_read_of_a_file_raises(tmp_path):
    with pytest.raises(FormatError):
        read(image(tmp_path / "a.png"))


# --------------------------------------------------------------------------- writing


def test_write_layout_with_splits_and_empty_class_folders(tmp_path):
    ds = Dataset(
        classes=["cat", "dog", "bird"],
        images=[
            ImageRecord("a.png", 10, 10, [Annotation("cat")], split="train"),
            ImageRecord("dog/b.png", 10, 10, [Annotation("dog")], split="valid"),
            ImageRecord("sub/c.png", 10, 10, [Annotation("dog"), Annotation("dog")], split="valid"),
        ],
    )
    FMT.write(ds, tmp_path, png_writer)
    assert files(tmp_path) == ["train/cat/a.png", "valid/dog/b.png", "valid/dog/sub/c.png"]
    for split in ("train", "valid"):
        assert sorted(p.name for p in (tmp_path / split).iterdir()) == ["bird", "cat", "dog"]
    assert not (tmp_path / "test").exists()


def test_a_leading_class_folder_in_the_name_is_replaced_by_the_label(tmp_path):
    # Relabelled after an import from folders: the name still says dog, the label says cat.
    ds = Dataset(["cat", "dog"], [ImageRecord("dog/1.png", 10, 10, [Annotation("cat")])])
    FMT.write(ds, tmp_path, png_writer)
    assert files(tmp_path) == ["cat/1.png"]


def test_colliding_paths_are_renamed_not_overwritten(tmp_path):
    ds = Dataset(
        ["cat"],
        [
            ImageRecord("1.png", 10, 10, [Annotation("cat")]),
            ImageRecord("cat/1.png", 11, 10, [Annotation("cat")]),
            ImageRecord("1.PNG", 12, 10, [Annotation("cat")]),  # one file on a case-insensitive disk
            ImageRecord("CAT/1.png", 13, 10, [Annotation("cat")]),  # CAT is not the class cat
        ],
    )
    FMT.write(ds, tmp_path, png_writer)
    assert files(tmp_path) == ["cat/1.png", "cat/1__1.png", "cat/1__2.PNG", "cat/CAT/1.png"]
    back, _ = read(tmp_path)
    assert sorted(r.width for r in back.images) == [10, 11, 12, 13]


@pytest.mark.parametrize(
    "record, message",
    [
        (ImageRecord("a.png", 10, 10, []), "no class label"),
        (ImageRecord("a.png", 10, 10, [Annotation("cat"), Annotation("dog")]), "2 class labels (cat, dog)"),
        (ImageRecord("a.png", 10, 10, [Annotation("cat", bbox=(0, 0, 2, 2))]), "no class label"),
        (ImageRecord("../a.png", 10, 10, [Annotation("cat")]), "escapes"),
        (ImageRecord("a", 10, 10, [Annotation("cat")]), "no image extension"),
        (ImageRecord("a.png", 10, 10, [Annotation("a/b")]), "path separator"),
        (ImageRecord("a.png", 10, 10, [Annotation("Cat")]), "differ only in case"),
        (ImageRecord("a.png", 10, 10, [Annotation("cat")], split="holdout"), "split 'holdout'"),
    ],
)
def test_write_refuses_records_it_cannot_hold_before_writing_anything(tmp_path, record, message):
    ok = ImageRecord("ok.png", 10, 10, [Annotation("cat")])
    dest = tmp_path / "out"
    with pytest.raises(InvalidInputError) as info:
        FMT.write(Dataset(["cat", "dog"], [ok, record]), dest, png_writer)
    assert message in str(info.value)
    assert not dest.exists()


def test_image_label_and_class_name_rules():
    assert image_label(ImageRecord("a", annotations=[Annotation("x"), Annotation("x")])) == "x"
    assert image_label(ImageRecord("a", annotations=[Annotation("x"), Annotation("y")])) is None
    assert check_class_name("cat é 1") is None
    assert all(check_class_name(n) for n in ["", " cat", "..", ".hidden", "a\\b", "x" * 256])


# --------------------------------------------------------------------------- detect


def test_detect_is_moderate_and_yields_to_annotation_files(tmp_path):
    image(tmp_path / "folders/cat/a.png")
    assert FMT.detect(tmp_path / "folders") == 0.5
    image(tmp_path / "splits/train/cat/a.png")
    assert FMT.detect(tmp_path / "splits") == 0.5
    for ext in ("json", "xml", "txt", "csv"):
        root = tmp_path / ext
        image(root / "images/a.png")
        (root / f"labels.{ext}").write_text("x")
        assert FMT.detect(root) == 0
    image(tmp_path / "loose/a.png")
    assert FMT.detect(tmp_path / "loose") == 0
    assert FMT.detect(tmp_path / "loose/a.png") == 0


def test_links_to_images_outside_the_dataset_are_refused(tmp_path):
    image(tmp_path / "ds/cat/a.png")
    (tmp_path / "ds/cat/out.png").symlink_to(image(tmp_path / "secret.png"))
    ds, problems = read(tmp_path / "ds")
    assert [r.name for r in ds.images] == ["cat/a.png"]
    assert [(p.level, p.record) for p in problems] == [("error", "cat/out.png")]
