"""YOLO reader and writer: round trips, a literal Roboflow export, and every bad input."""

from __future__ import annotations

import tempfile
from pathlib import Path, PurePosixPath

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from PIL import Image

from tests.strategies import datasets, png_writer
from winnow.core.geometry import polygon_area
from winnow.core.types import Annotation, Dataset, ImageRecord, Problems, Source, Task
from winnow.errors import FormatError, InvalidInputError
from winnow.formats.yolo import UNLABELED_TAG, LabelLineError, YoloFormat, label_path_for, merge_parts, parse_label_line

FMT = YoloFormat()
ROUND_TRIP = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --------------------------------------------------------------------------- helpers


def image(path: Path, width: int, height: int, exif_orientation: int | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.new("RGB", (width, height), (10, 20, 30))
    if exif_orientation is None:
        im.save(path)
    else:
        exif = Image.Exif()
        exif[0x0112] = exif_orientation
        im.save(path, exif=exif)
    return path


def text(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return path


def flat_dataset(tmp_path: Path, label: str | bytes, names=("cat", "dog"), size=(100, 50)) -> Path:
    """``images/a.png`` (100x50) + ``labels/a.txt`` + a data.yaml naming ``names``."""
    image(tmp_path / "images" / "a.png", *size)
    text(tmp_path / "labels" / "a.txt", label)
    text(tmp_path / "data.yaml", yaml.safe_dump({"train": "images", "val": "images", "nc": len(names), "names": list(names)}))
    return tmp_path


def read(path: Path) -> tuple[Dataset, Problems]:
    problems = Problems()
    return FMT.read(path, problems), problems


def only_record(dataset: Dataset) -> ImageRecord:
    assert len(dataset.images) == 1
    return dataset.images[0]


def assert_same(written: Dataset, back: Dataset) -> None:
    assert back.classes == written.classes
    by_key = {(r.split, r.name): r for r in back.images}
    assert len(by_key) == len(back.images) == len(written.images)
    for rec in written.images:
        got = by_key[(rec.split, rec.name)]
        assert (got.width, got.height) == (rec.width, rec.height)
        assert [a.label for a in got.annotations] == [a.label for a in rec.annotations]
        for want, have in zip(rec.annotations, got.annotations):
            np.testing.assert_allclose(have.bbox, want.bbox, rtol=0, atol=1e-6)
            if want.polygon is not None:
                assert len(have.polygon) == 1
                np.testing.assert_allclose(have.polygon[0], want.polygon[0], rtol=0, atol=1e-6)
        assert UNLABELED_TAG not in got.tags


# --------------------------------------------------------------------------- round trips


@ROUND_TRIP
@given(datasets(Task.DETECT, splits=True))
def test_detection_round_trip_keeps_names_splits_and_boxes(dataset):
    with tempfile.TemporaryDirectory() as tmp:
        FMT.write(dataset, Path(tmp), png_writer)
        back, problems = read(Path(tmp))
    assert list(problems) == []
    assert back.task is Task.DETECT or dataset.annotation_count == 0
    assert_same(dataset, back)


@ROUND_TRIP
@given(datasets(Task.SEGMENT))
def test_segmentation_round_trip_keeps_polygons(dataset):
    with tempfile.TemporaryDirectory() as tmp:
        FMT.write(dataset, Path(tmp), png_writer)
        back, problems = read(Path(tmp))
    assert list(problems) == []
    assert all(r.split is None for r in back.images)
    if dataset.annotation_count:
        assert back.task is Task.SEGMENT
    assert_same(dataset, back)


def test_names_with_subfolders_shared_stems_and_an_images_folder_round_trip(tmp_path):
    names = ["sub1/x.png", "sub2/x.png", "a.png", "a.jpg", "A.png", "images/img_00000.png", "a__1.png"]
    ds = Dataset(
        classes=["cat"],
        images=[ImageRecord(n, 20, 10, [Annotation("cat", bbox=(i, 1.0, i + 5.0, 8.0))], split="train") for i, n in enumerate(names)],
    )
    FMT.write(ds, tmp_path, png_writer)
    # Ultralytics' own rule finds every label; colliding stems were renamed, not merged.
    labels = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.txt"))
    assert len(labels) == len(names)
    assert "train/labels/sub1/x.txt" in labels and "train/labels/sub2/x.txt" in labels
    assert "train/images/labels/img_00000.txt" in labels  # last `images` folder -> `labels`
    for lbl in labels:
        assert len((tmp_path / lbl).read_text().splitlines()) == 1
    back, problems = read(tmp_path)
    assert list(problems) == []
    assert sorted(r.name for r in back.images) == sorted(names)
    got = sorted((r.name, round(r.annotations[0].bbox[0], 6)) for r in back.images)
    assert got == sorted((n, float(i)) for i, n in enumerate(names))


def test_the_same_name_in_two_splits_stays_unique_on_reading(tmp_path):
    recs = [ImageRecord("a.png", 10, 10, [], split=s) for s in ("train", "valid")]
    FMT.write(Dataset(["cat"], recs), tmp_path, png_writer)
    back, problems = read(tmp_path)
    assert sorted((r.split, r.name) for r in back.images) == [("train", "a.png"), ("valid", "valid/images/a.png")]
    assert [(p.level, p.record) for p in problems] == [("warning", "valid/images/a.png")]


def test_written_layout_is_ultralytics(tmp_path):
    ds = Dataset(
        classes=["cat", "dog", "unused"],
        images=[
            ImageRecord("t.png", 100, 50, [Annotation("dog", bbox=(40, 15, 60, 35))], split="train"),
            ImageRecord("v.png", 100, 50, [], split="valid"),
        ],
    )
    FMT.write(ds, tmp_path, png_writer)
    doc = yaml.safe_load((tmp_path / "data.yaml").read_text())
    assert doc == {"train": "train/images", "val": "valid/images", "nc": 3, "names": ["cat", "dog", "unused"]}
    assert (tmp_path / "train/images/t.png").is_file()
    assert (tmp_path / "train/labels/t.txt").read_text() == "1 0.5 0.5 0.2 0.4\n"
    assert (tmp_path / "valid/labels/v.txt").read_text() == ""  # labelled, no objects


def test_unsplit_dataset_points_train_and_val_at_images_and_reads_back_unsplit(tmp_path):
    ds = Dataset(classes=["cat"], images=[ImageRecord("a.png", 30, 20, [Annotation("cat", bbox=(1, 1, 5, 5))])])
    FMT.write(ds, tmp_path, png_writer)
    doc = yaml.safe_load((tmp_path / "data.yaml").read_text())
    assert doc["train"] == doc["val"] == "images"
    back, _ = read(tmp_path)
    assert only_record(back).split is None and only_record(back).name == "a.png"


def test_detect_task_writes_boxes_and_segment_task_writes_polygons(tmp_path):
    ann = Annotation("cat", bbox=(0, 0, 10, 10), polygon=[[0, 0, 10, 0, 10, 10]])
    for task, columns in ((Task.DETECT, 5), (Task.SEGMENT, 7)):
        dest = tmp_path / task.value
        FMT.write(Dataset(["cat"], [ImageRecord("a.png", 10, 10, [ann])], task=task), dest, png_writer)
        assert len((dest / "labels/a.txt").read_text().split()) == columns


def test_scores_are_written_as_a_sixth_column_and_read_as_model_predictions(tmp_path):
    ds = Dataset(["cat"], [ImageRecord("a.png", 10, 10, [Annotation("cat", bbox=(1, 1, 5, 5), score=0.25, source=Source.MODEL)])])
    FMT.write(ds, tmp_path, png_writer)
    assert (tmp_path / "labels/a.txt").read_text().split()[5] == "0.25"
    ann = only_record(read(tmp_path)[0]).annotations[0]
    assert ann.score == 0.25 and ann.source is Source.MODEL


def test_multi_part_polygons_are_joined_keeping_their_area():
    parts = [[0, 0, 4, 0, 4, 4, 0, 4], [10, 10, 12, 10, 12, 13]]
    ring = merge_parts(parts)
    assert polygon_area(ring) == pytest.approx(polygon_area(parts[0]) + polygon_area(parts[1]))
    pts = set(zip(ring[0::2], ring[1::2]))
    assert {(0, 0), (4, 4), (10, 10), (12, 13)} <= pts


def test_write_refuses_what_yolo_cannot_hold_before_writing_anything(tmp_path):
    cases = [
        Dataset(["cat"], [ImageRecord("a.png", 10, 10, [Annotation("cat")])], task=Task.CLASSIFY),
        Dataset(["cat"], [ImageRecord("a.png", 10, 10, [Annotation("cat", bbox=(1, 1, 2, 2)), Annotation("cat")])]),
        Dataset(["cat"], [ImageRecord("a.png", None, None, [])]),
        Dataset(["cat"], [ImageRecord("noext", 10, 10, [])]),
        Dataset(["cat"], [ImageRecord("../a.png", 10, 10, [])]),
        Dataset(["cat"], [ImageRecord("a.png", 10, 10, [], split="holdout")]),
    ]
    for i, ds in enumerate(cases):
        dest = tmp_path / str(i)
        with pytest.raises(InvalidInputError):
            FMT.write(ds, dest, png_writer)
        assert not dest.exists()


# --------------------------------------------------------------------------- real exports


def test_roboflow_export_reads_exact_boxes_and_normalises_val_to_valid(tmp_path):
    text(
        tmp_path / "data.yaml",
        "train: ../train/images\nval: ../valid/images\ntest: ../test/images\n\nnc: 2\nnames: ['cat', 'dog']\n\n"
        "roboflow:\n  workspace: w\n  project: p\n  version: 1\n  license: CC BY 4.0\n  url: https://example.org/p/1\n",
    )
    text(tmp_path / "README.roboflow.txt", "exported\n")
    image(tmp_path / "train/images/a_jpg.rf.1.jpg", 100, 50)
    text(tmp_path / "train/labels/a_jpg.rf.1.txt", "0 0.5 0.5 0.2 0.4\n1 0.25 0.75 0.1 0.1\n")
    image(tmp_path / "valid/images/b.jpg", 100, 50)
    text(tmp_path / "valid/labels/b.txt", "1 0.1 0.1 0.2 0.2\n")
    image(tmp_path / "test/images/c.jpg", 100, 50)
    text(tmp_path / "test/labels/c.txt", "")
    ds, problems = read(tmp_path)
    assert list(problems) == []
    assert ds.classes == ["cat", "dog"] and ds.task is Task.DETECT
    recs = {r.name: r for r in ds.images}
    assert set(recs) == {"a_jpg.rf.1.jpg", "b.jpg", "c.jpg"}
    a, b, c = recs["a_jpg.rf.1.jpg"], recs["b.jpg"], recs["c.jpg"]
    assert (a.split, b.split, c.split) == ("train", "valid", "test")
    assert c.annotations == [] and c.tags == []
    assert (a.width, a.height) == (100, 50) and a.file == (tmp_path / "train/images/a_jpg.rf.1.jpg").resolve()
    assert [(x.label, x.bbox) for x in a.annotations] == [("cat", (40.0, 15.0, 60.0, 35.0)), ("dog", (20.0, 35.0, 30.0, 40.0))]
    assert [(x.label, x.bbox) for x in b.annotations] == [("dog", (0.0, 0.0, 20.0, 10.0))]
    assert all(x.source is Source.IMPORT and x.score is None for x in a.annotations)


def test_ultralytics_images_split_layout_with_names_dict(tmp_path):
    text(tmp_path / "data.yaml", "path: .\ntrain: images/train\nval: images/val\nnames:\n  0: person\n  1: bicycle\n")
    image(tmp_path / "images/train/1.jpg", 40, 20)
    text(tmp_path / "labels/train/1.txt", "1 0.5 0.5 0.5 0.5\n")
    image(tmp_path / "images/val/2.jpg", 40, 20)
    text(tmp_path / "labels/val/2.txt", "0 0.5 0.5 1 1\n")
    ds, problems = read(tmp_path / "data.yaml")  # the yaml file itself is accepted too
    assert list(problems) == []
    assert ds.classes == ["person", "bicycle"]
    got = {(r.split, r.name): [(a.label, a.bbox) for a in r.annotations] for r in ds.images}
    assert got == {("train", "1.jpg"): [("bicycle", (10.0, 5.0, 30.0, 15.0))], ("valid", "2.jpg"): [("person", (0.0, 0.0, 40.0, 20.0))]}


def test_segmentation_lines_give_pixel_polygons_and_their_box(tmp_path):
    flat_dataset(tmp_path, "0 0.1 0.2 0.5 0.2 0.5 0.8\n")
    ann = only_record(read(tmp_path)[0]).annotations[0]
    np.testing.assert_allclose(ann.polygon[0], [10, 10, 50, 10, 50, 40])
    assert ann.bbox == pytest.approx((10, 10, 50, 40))


def test_size_comes_from_the_displayed_image_after_exif_orientation(tmp_path):
    image(tmp_path / "images/a.jpg", 100, 50, exif_orientation=6)  # stored 100x50, shown 50x100
    text(tmp_path / "labels/a.txt", "0 0.5 0.5 1 1\n")
    text(tmp_path / "classes.txt", "cat\n")
    rec = only_record(read(tmp_path)[0])
    assert (rec.width, rec.height) == (50, 100)
    assert rec.annotations[0].bbox == (0.0, 0.0, 50.0, 100.0)


def test_darknet_layout_with_obj_names_and_labels_beside_images(tmp_path):
    text(tmp_path / "obj.names", "cat\ndog\n\n")
    text(tmp_path / "train.txt", "data/obj_train_data/a.png\n")
    image(tmp_path / "obj_train_data/a.png", 10, 10)
    text(tmp_path / "obj_train_data/a.txt", "1 0.5 0.5 0.2 0.2\n")
    ds, problems = read(tmp_path)
    assert list(problems) == []
    assert ds.classes == ["cat", "dog"]
    rec = only_record(ds)
    assert rec.name == "obj_train_data/a.png" and rec.annotations[0].label == "dog"
    assert FMT.detect(tmp_path) > 0.5


def test_image_list_files_in_data_yaml(tmp_path):
    image(tmp_path / "images/a.png", 10, 10)
    image(tmp_path / "images/b.png", 10, 10)
    text(tmp_path / "labels/a.txt", "0 0.5 0.5 0.2 0.2\n")
    text(tmp_path / "labels/b.txt", "0 0.5 0.5 0.2 0.2\n")
    text(tmp_path / "train.txt", "./images/a.png\n")
    text(tmp_path / "val.txt", "images/b.png\nimages/missing.png\n")
    text(tmp_path / "data.yaml", "train: train.txt\nval: val.txt\nnames: [cat]\n")
    ds, problems = read(tmp_path)
    assert {(r.name, r.split) for r in ds.images} == {("images/a.png", "train"), ("images/b.png", "valid")}
    assert [(p.file.endswith("val.txt"), p.where) for p in problems] == [(True, "line 2")]


def test_classes_without_any_names_file_are_called_by_id(tmp_path):
    image(tmp_path / "images/a.png", 10, 10)
    text(tmp_path / "labels/a.txt", "2 0.5 0.5 0.2 0.2\n")
    ds, problems = read(tmp_path)
    assert ds.classes == ["class_0", "class_1", "class_2"]
    assert only_record(ds).annotations[0].label == "class_2"
    assert len(problems.warnings) == 1


def test_paths_outside_the_dataset_are_never_read(tmp_path):
    root = tmp_path / "ds"
    image(tmp_path / "outside/images/secret.png", 10, 10)
    text(root / "data.yaml", f"path: {tmp_path}\ntrain: ../../outside/images\nval: {tmp_path}/outside/images\nnames: [a]\n")
    image(root / "train/images/a.png", 10, 10)
    text(root / "train/labels/a.txt", "")
    ds, problems = read(root)
    assert [r.name for r in ds.images] == ["a.png"]  # found by the conventional layout only
    assert len(problems.warnings) == 3 and all(p.file.endswith("data.yaml") for p in problems)


# --------------------------------------------------------------------------- bad label lines


@pytest.mark.parametrize(
    "line, reason",
    [
        ("0 0.5 0.5 0.2", "column count 4"),
        ("0 0.5 0.5 0.2 0.2 0.9 0.1", None),  # 7 columns is a triangle, not an error
        ("0 0.1 0.1 0.5 0.1 0.5 0.5 0.9", "column count 8"),
        ("cat 0.5 0.5 0.2 0.2", "class id 'cat' is not an integer"),
        ("1.5 0.5 0.5 0.2 0.2", "class id '1.5' is not an integer"),
        ("-1 0.5 0.5 0.2 0.2", "class id -1 is negative"),
        ("0 nan 0.5 0.2 0.2", "column 2: 'nan' is not a finite number"),
        ("0 0.5 inf 0.2 0.2", "column 3: 'inf' is not a finite number"),
        ("0 0.5 0.5 0.2 x", "column 5: 'x' is not a number"),
        ("0 0.5 0.5 0 0.2", "width and height must be > 0"),
        ("0 0.5 0.5 0.2 -0.1", "width and height must be > 0"),
        ("0 0.5 0.5 0.2 0.2 1.5", "confidence 1.5 is outside [0, 1]"),
        ("0 0.1 0.1 0.5 0.1 0.9 0.1", "polygon has no area"),
    ],
)
def test_bad_lines_are_skipped_with_file_and_line_number(tmp_path, line, reason):
    flat_dataset(tmp_path, f"0 0.5 0.5 0.2 0.2\n\n{line}\n1 0.5 0.5 0.2 0.2\n")
    ds, problems = read(tmp_path)
    rec = only_record(ds)
    if reason is None:
        assert list(problems) == [] and len(rec.annotations) == 3
        return
    assert [a.label for a in rec.annotations] == ["cat", "dog"]  # the good lines around it stay
    assert len(problems) == 1
    p = problems[0]
    assert (p.level, p.where, p.record) == ("error", "line 3", "a.png")
    assert p.file == str((tmp_path / "labels/a.txt").resolve())
    assert reason in p.message


def test_parse_label_line_rejects_a_class_id_float_that_is_not_whole():
    assert parse_label_line("3.0 0.5 0.5 0.1 0.1").class_id == 3
    assert parse_label_line("   \t ") is None
    with pytest.raises(LabelLineError):
        parse_label_line("1e400 0.5 0.5 0.1 0.1")


def test_class_id_beyond_names_is_an_error(tmp_path):
    flat_dataset(tmp_path, "2 0.5 0.5 0.2 0.2\n0 0.5 0.5 0.2 0.2\n")
    ds, problems = read(tmp_path)
    assert [a.label for a in only_record(ds).annotations] == ["cat"]
    assert [(p.level, p.where) for p in problems] == [("error", "line 1")]
    assert "class id 2 is not in names (0..1)" in problems[0].message


def test_values_outside_unit_range_are_kept_unclipped_with_a_warning(tmp_path):
    flat_dataset(tmp_path, "0 1.1 0.5 0.4 0.2\n0 0.5 0.5 0.2 0.2\n1 -0.1 0.2 0.5 0.1 0.5 0.5\n")
    ds, problems = read(tmp_path)
    anns = only_record(ds).annotations
    assert len(anns) == 3
    assert anns[0].bbox == pytest.approx((90.0, 20.0, 130.0, 30.0))  # x2 > width: not clipped
    assert anns[2].polygon[0][0] == pytest.approx(-10.0)
    assert [(p.level, p.where) for p in problems] == [("warning", "line 1"), ("warning", "line 3")]


def test_crlf_bom_and_blank_lines_are_accepted(tmp_path):
    flat_dataset(tmp_path, b"\xef\xbb\xbf0 0.5 0.5 0.2 0.2\r\n\r\n   \r\n1 0.5 0.5 0.2 0.2\r\n\r\n")
    ds, problems = read(tmp_path)
    assert list(problems) == []
    assert [a.label for a in only_record(ds).annotations] == ["cat", "dog"]


def test_old_mac_line_endings_count_lines(tmp_path):
    flat_dataset(tmp_path, "0 0.5 0.5 0.2 0.2\r0 0.5\r")
    ds, problems = read(tmp_path)
    assert len(only_record(ds).annotations) == 1 and problems[0].where == "line 2"


def test_label_file_that_is_not_utf8_skips_the_image(tmp_path):
    flat_dataset(tmp_path, b"0 0.5 0.5 0.2 0.2\n\xff\xfe\n")
    ds, problems = read(tmp_path)
    assert ds.images == []
    assert problems[0].level == "error" and problems[0].file.endswith("a.txt") and problems[0].record == "a.png"


# --------------------------------------------------------------------------- missing vs empty, orphans, bad images


def test_empty_label_file_means_no_objects_and_missing_file_means_unlabeled(tmp_path):
    flat_dataset(tmp_path, "")
    image(tmp_path / "images/b.png", 10, 10)
    image(tmp_path / "images/c.png", 10, 10)
    ds, problems = read(tmp_path)
    recs = {r.name: r for r in ds.images}
    assert len(recs) == 3 and all(r.annotations == [] for r in recs.values())
    assert recs["a.png"].tags == []
    assert recs["b.png"].tags == [UNLABELED_TAG] and recs["c.png"].tags == [UNLABELED_TAG]
    assert len(problems) == 1 and problems[0].level == "warning"
    assert "2 image(s) have no label file" in problems[0].message and "b.png, c.png" in problems[0].message
    # ...and the distinction survives a round trip: no label file is written for b and c.
    out = tmp_path / "out"
    FMT.write(ds, out, png_writer)
    assert (out / "labels/a.txt").is_file() and not (out / "labels/b.txt").exists()
    again = {r.name: r.tags for r in read(out)[0].images}
    assert again == {"a.png": [], "b.png": [UNLABELED_TAG], "c.png": [UNLABELED_TAG]}


def test_label_file_without_an_image_is_an_orphan_warning(tmp_path):
    flat_dataset(tmp_path, "0 0.5 0.5 0.2 0.2\n")
    text(tmp_path / "labels/ghost.txt", "0 0.5 0.5 0.2 0.2\n")
    ds, problems = read(tmp_path)
    assert len(ds.images) == 1
    assert [(p.level, Path(p.file).name) for p in problems] == [("warning", "ghost.txt")]
    assert "orphan" in problems[0].message


def test_unreadable_image_is_skipped_and_its_label_is_not_an_orphan(tmp_path):
    flat_dataset(tmp_path, "0 0.5 0.5 0.2 0.2\n")
    text(tmp_path / "images/bad.png", "<html>not an image</html>")
    text(tmp_path / "labels/bad.txt", "0 0.5 0.5 0.2 0.2\n")
    text(tmp_path / "images/empty.jpg", b"")
    ds, problems = read(tmp_path)
    assert [r.name for r in ds.images] == ["a.png"]
    assert sorted((p.level, Path(p.file).name, p.record) for p in problems) == [
        ("error", "bad.png", "bad.png"),
        ("error", "empty.jpg", "empty.jpg"),
    ]


# --------------------------------------------------------------------------- data.yaml problems


@pytest.mark.parametrize(
    "content, where",
    [
        ("names: [cat\ntrain: images\n", "line 2"),
        ("- cat\n- dog\n", None),
        ("names: cat\n", "names"),
        ("names: {0: cat, 2: dog}\n", "names"),
        ("names: {zero: cat}\n", "names"),
        ("names: [cat, null]\n", "names[1]"),
    ],
)
def test_unreadable_data_yaml_raises_format_error(tmp_path, content, where):
    flat_dataset(tmp_path, "")
    text(tmp_path / "data.yaml", content)
    with pytest.raises(FormatError) as info:
        read(tmp_path)
    assert info.value.file.endswith("data.yaml") and info.value.where == where


def test_yaml_is_parsed_safely(tmp_path):
    flat_dataset(tmp_path, "")
    text(tmp_path / "data.yaml", "names: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(FormatError):
        read(tmp_path)


def test_nc_mismatch_is_a_warning(tmp_path):
    flat_dataset(tmp_path, "1 0.5 0.5 0.2 0.2\n")
    text(tmp_path / "data.yaml", "train: images\nnc: 3\nnames: [cat, dog]\n")
    ds, problems = read(tmp_path)
    assert ds.classes == ["cat", "dog"] and only_record(ds).split == "train"
    assert [(p.level, p.where) for p in problems] == [("warning", "nc")]


# --------------------------------------------------------------------------- detect


def test_detect(tmp_path):
    assert FMT.detect(flat_dataset(tmp_path / "yaml", "")) == pytest.approx(0.95)
    assert FMT.detect(tmp_path / "yaml" / "data.yaml") > 0.8
    no_yaml = tmp_path / "plain"
    image(no_yaml / "images/a.png", 10, 10)
    text(no_yaml / "labels/a.txt", "\n0 0.5 0.5 0.2 0.2\n")
    assert FMT.detect(no_yaml) >= 0.8
    not_yolo = tmp_path / "notes"
    image(not_yolo / "images/a.png", 10, 10)
    text(not_yolo / "labels/a.txt", "a shopping list\n")
    assert FMT.detect(not_yolo) == 0
    folders = tmp_path / "folders"
    image(folders / "cat/a.png", 10, 10)
    assert FMT.detect(folders) == 0
    assert FMT.detect(tmp_path / "missing") == 0


def test_label_path_rule_matches_ultralytics():
    assert label_path_for(PurePosixPath("train/images/a.jpg")) == PurePosixPath("train/labels/a.txt")
    assert label_path_for(PurePosixPath("images/x/images/a.b.jpg")) == PurePosixPath("images/x/labels/a.b.txt")
    assert label_path_for(PurePosixPath("data/a.jpg")) == PurePosixPath("data/a.txt")
    assert label_path_for(PurePosixPath("images.jpg")) == PurePosixPath("images.txt")


def test_links_to_files_outside_the_dataset_are_refused(tmp_path):
    root = flat_dataset(tmp_path / "ds", "0 0.5 0.5 0.2 0.2\n")
    secret_image = image(tmp_path / "secret.png", 10, 10)
    secret_label = text(tmp_path / "secret.txt", "0 0.5 0.5 0.2 0.2\n")
    (root / "images/out.png").symlink_to(secret_image)
    image(root / "images/b.png", 10, 10)
    (root / "labels/b.txt").symlink_to(secret_label)
    ds, problems = read(root)
    assert [r.name for r in ds.images] == ["a.png"]
    assert sorted((p.level, Path(p.file).name) for p in problems) == [("error", "b.txt"), ("error", "out.png")]


def test_duplicate_class_names_share_one_class_with_a_warning(tmp_path):
    flat_dataset(tmp_path, "0 0.5 0.5 0.2 0.2\n1 0.5 0.5 0.2 0.2\n", names=("cat", "cat"))
    ds, problems = read(tmp_path)
    assert ds.classes == ["cat"] and [a.label for a in only_record(ds).annotations] == ["cat", "cat"]
    assert [p.level for p in problems] == ["warning"]


def test_classes_txt_with_a_blank_line_keeps_later_ids(tmp_path):
    image(tmp_path / "images/a.png", 10, 10)
    text(tmp_path / "labels/a.txt", "2 0.5 0.5 0.2 0.2\n")
    text(tmp_path / "classes.txt", "cat\n\ndog\n\n")
    ds, problems = read(tmp_path)
    assert ds.classes == ["cat", "class_1", "dog"] and only_record(ds).annotations[0].label == "dog"
    assert [(p.level, p.where) for p in problems] == [("warning", "line 2")]
