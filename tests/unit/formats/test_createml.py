"""CreateML JSON: round trip, a Roboflow export, detection apart from COCO/LabelMe, bad inputs."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from tests.strategies import datasets, png_bytes, png_writer
from winnow.core.types import Annotation, Dataset, ImageRecord, Problems, Task
from winnow.errors import FormatError
from winnow.formats.base import _REGISTRY
from winnow.formats.createml import CreateML

CREATEML = CreateML()

# As Roboflow exports it: one file per split folder, centre coordinates, renamed images.
ROBOFLOW_TRAIN = (
    '[{"image":"helmet_001_jpg.rf.3f2a9c.jpg","annotations":['
    '{"label":"helmet","coordinates":{"x":158.5,"y":210,"width":93,"height":118}},'
    '{"label":"head","coordinates":{"x":40,"y":30.5,"width":20,"height":21}}]},'
    '{"image":"helmet_002_jpg.rf.77b1d0.jpg","annotations":[]}]'
)


def put_png(path: Path, width: int = 320, height: int = 320) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png_bytes(width, height))
    return path


def put_json(path: Path, doc: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc) if not isinstance(doc, str) else doc, encoding="utf-8")
    return path


def box(label: str, x: Any, y: Any, w: Any, h: Any) -> dict[str, Any]:
    return {"label": label, "coordinates": {"x": x, "y": y, "width": w, "height": h}}


def read(path: Path) -> tuple[Dataset, Problems]:
    problems = Problems()
    return CREATEML.read(path, problems), problems


# --------------------------------------------------------------------------- round trip


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(datasets(Task.DETECT, splits=True))
def test_round_trip_keeps_names_splits_classes_and_boxes(original: Dataset) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        CREATEML.write(original, Path(tmp), png_writer)
        back, problems = read(Path(tmp))
    assert list(problems) == []
    records = {r.name: r for r in back.images}
    assert sorted(records) == sorted(r.name for r in original.images)
    assert set(back.classes) == {a.label for r in original.images for a in r.annotations}
    for record in original.images:
        got = records[record.name]
        assert got.split == record.split
        assert got.tags == []
        assert (got.width, got.height) == (record.width, record.height)
        assert [a.label for a in got.annotations] == [a.label for a in record.annotations]
        for a, b in zip(got.annotations, record.annotations):
            assert a.bbox == pytest.approx(b.bbox, abs=1e-6)


def test_writer_uses_centre_coordinates_and_roboflow_layout(tmp_path: Path) -> None:
    records = [
        ImageRecord(name="sub/a.png", width=50, height=40, split="valid",
                    annotations=[Annotation("cat", bbox=(10, 20, 30, 25)),
                                 Annotation("blob", bbox=(1, 1, 2, 2), polygon=[[0, 0, 4, 0, 4, 3]]),
                                 Annotation("whole image label")]),
        ImageRecord(name="b.png", width=50, height=40),
    ]
    CREATEML.write(Dataset(images=records), tmp_path, png_writer)
    assert json.loads((tmp_path / "valid" / "_annotations.createml.json").read_text()) == [
        {"image": "sub/a.png", "annotations": [box("cat", 20.0, 22.5, 20.0, 5.0), box("blob", 1.5, 1.5, 1.0, 1.0)]},
    ]
    assert json.loads((tmp_path / "_annotations.createml.json").read_text()) == [{"image": "b.png", "annotations": []}]
    assert (tmp_path / "valid" / "sub" / "a.png").is_file() and (tmp_path / "b.png").is_file()


# --------------------------------------------------------------------------- real files


def test_roboflow_export_reads_exact_values(tmp_path: Path) -> None:
    put_png(tmp_path / "train" / "helmet_001_jpg.rf.3f2a9c.jpg")
    put_png(tmp_path / "train" / "helmet_002_jpg.rf.77b1d0.jpg")
    put_json(tmp_path / "train" / "_annotations.createml.json", ROBOFLOW_TRAIN)
    put_png(tmp_path / "valid" / "helmet_003_jpg.rf.0c0c0c.jpg")
    put_json(tmp_path / "valid" / "_annotations.createml.json",
             [{"image": "helmet_003_jpg.rf.0c0c0c.jpg", "annotations": [box("helmet", 100, 100, 50, 60)]}])
    dataset, problems = read(tmp_path)
    assert list(problems) == []
    assert dataset.classes == ["helmet", "head"] and dataset.task is Task.DETECT
    records = {r.name: r for r in dataset.images}
    assert {n: r.split for n, r in records.items()} == {
        "helmet_001_jpg.rf.3f2a9c.jpg": "train",
        "helmet_002_jpg.rf.77b1d0.jpg": "train",
        "helmet_003_jpg.rf.0c0c0c.jpg": "valid",
    }
    first = records["helmet_001_jpg.rf.3f2a9c.jpg"]
    assert first.file == tmp_path / "train" / "helmet_001_jpg.rf.3f2a9c.jpg"
    assert (first.width, first.height) == (320, 320)
    assert [(a.label, a.bbox) for a in first.annotations] == [
        ("helmet", (112.0, 151.0, 205.0, 269.0)),
        ("head", (30.0, 20.0, 50.0, 41.0)),
    ]
    assert records["helmet_002_jpg.rf.77b1d0.jpg"].annotations == []
    assert records["helmet_003_jpg.rf.0c0c0c.jpg"].annotations[0].bbox == (75.0, 70.0, 125.0, 130.0)


def test_any_json_list_with_images_beside(tmp_path: Path) -> None:
    put_png(tmp_path / "img" / "a.png", 10, 10)
    put_json(tmp_path / "labels.json", [{"image": "img/a.png", "annotations": [box("x", 5, 5, 2, 2)]}])
    put_json(tmp_path / "other.json", {"not": "createml"})
    dataset, problems = read(tmp_path)
    assert [(r.name, r.split) for r in dataset.images] == [("img/a.png", None)]
    assert list(problems) == []


def test_single_file_in_a_split_folder_keeps_the_split(tmp_path: Path) -> None:
    put_png(tmp_path / "test" / "a.png", 10, 10)
    put_json(tmp_path / "test" / "_annotations.createml.json", [{"image": "a.png", "annotations": []}])
    dataset, _ = read(tmp_path / "test" / "_annotations.createml.json")
    assert [(r.name, r.split) for r in dataset.images] == [("a.png", "test")]


def test_registered_and_detected_apart_from_coco_and_labelme(tmp_path: Path) -> None:
    assert _REGISTRY["createml"] is CreateML
    put_json(tmp_path / "rf" / "train" / "_annotations.createml.json", ROBOFLOW_TRAIN)
    put_json(tmp_path / "plain" / "boxes.json", json.loads(ROBOFLOW_TRAIN))
    put_json(tmp_path / "coco" / "_annotations.coco.json", {"images": [{"id": 1}], "annotations": [], "categories": []})
    put_json(tmp_path / "labelme" / "a.json", {"version": "5.4.1", "shapes": [], "imagePath": "a.jpg"})
    put_json(tmp_path / "other" / "list.json", [1, 2, 3])
    assert CREATEML.detect(tmp_path / "rf") >= 0.9
    assert CREATEML.detect(tmp_path / "rf" / "train" / "_annotations.createml.json") >= 0.9
    assert CREATEML.detect(tmp_path / "plain") >= 0.8
    assert CREATEML.detect(tmp_path / "coco") == 0
    assert CREATEML.detect(tmp_path / "labelme") == 0
    assert CREATEML.detect(tmp_path / "other") == 0


# --------------------------------------------------------------------------- bad inputs


@pytest.mark.parametrize("doc", ['{"image": "a.png", "annotations": []}', '"just a string"', "null"])
def test_wrong_top_level_type_is_a_format_error(tmp_path: Path, doc: str) -> None:
    put_json(tmp_path / "_annotations.createml.json", doc)
    with pytest.raises(FormatError, match="top level must be a list") as info:
        read(tmp_path)
    assert info.value.file == str(tmp_path / "_annotations.createml.json")


def test_malformed_named_file_is_a_format_error_with_line(tmp_path: Path) -> None:
    put_json(tmp_path / "_annotations.createml.json", '[\n {"image": "a.png",\n  "annotations": [}\n]')
    with pytest.raises(FormatError) as info:
        read(tmp_path)
    assert info.value.where.startswith("line 3") and "malformed JSON" in info.value.message


def test_malformed_unnamed_list_is_skipped_with_a_warning(tmp_path: Path) -> None:
    put_png(tmp_path / "a.png", 10, 10)
    put_json(tmp_path / "_annotations.createml.json", [{"image": "a.png", "annotations": []}])
    put_json(tmp_path / "broken.json", "[1, 2,")
    dataset, problems = read(tmp_path)
    assert [r.name for r in dataset.images] == ["a.png"]
    assert [Path(p.file).name for p in problems.warnings] == ["broken.json"]


def test_no_annotation_file_is_a_format_error(tmp_path: Path) -> None:
    put_png(tmp_path / "a.png")
    with pytest.raises(FormatError, match="no CreateML annotation file"):
        read(tmp_path)


@pytest.mark.parametrize(
    ("bad", "expected"),
    [
        (box("x", float("nan"), 5, 2, 2), "not finite numbers: x=NaN"),
        (box("x", 5, 5, float("inf"), 2), "not finite numbers: width=Infinity"),
        (box("x", "5", 5, 2, 2), 'not finite numbers: x="5"'),
        (box("x", 5, None, 2, 2), "not finite numbers: y=null"),
        (box("x", 5, 5, 0, 2), "width and height must be positive"),
        (box("x", 5, 5, 2, -1), "width and height must be positive"),
        ({"label": "x", "coordinates": {"x": 1, "y": 1, "width": 2}}, "lacks height"),
        ({"label": "x"}, 'has no "coordinates" object'),
        ({"coordinates": {"x": 1, "y": 1, "width": 2, "height": 2}}, 'has no "label"'),
        ([1, 2, 3, 4], "annotation is not an object"),
    ],
)
def test_bad_annotation_is_skipped_and_reported(tmp_path: Path, bad: Any, expected: str) -> None:
    put_png(tmp_path / "a.png", 10, 10)
    put_json(tmp_path / "_annotations.createml.json",
             [{"image": "a.png", "annotations": [box("good", 5, 5, 2, 2), bad]}])
    dataset, problems = read(tmp_path)
    [error] = problems.errors
    assert expected in error.message
    assert error.where == "[0].annotations[1]" and error.record == "a.png"
    assert [(a.label, a.bbox) for a in dataset.images[0].annotations] == [("good", (4.0, 4.0, 6.0, 6.0))]


def test_bad_entries_are_skipped_and_reported(tmp_path: Path) -> None:
    for name in ("a.png", "b.png", "ok.png"):
        put_png(tmp_path / name, 10, 10)
    entries = [
        {"annotations": []},
        "a.png",
        {"image": "a.png"},
        {"image": "b.png", "annotations": {"label": "x"}},
        {"image": "missing.png", "annotations": []},
        {"image": "../../etc/passwd", "annotations": []},
        {"image": "ok.png", "annotations": [box("y", 5, 5, 2, 2)]},
    ]
    put_json(tmp_path / "_annotations.createml.json", entries)
    dataset, problems = read(tmp_path)
    assert [(p.where, p.message) for p in problems.errors] == [
        ("[0]", 'entry has no "image" name'),
        ("[1]", "entry is not an object"),
        ("[2]", 'entry has no "annotations"'),
        ("[3]", 'entry has a non-list "annotations"'),
        ("[4]", "image file not found: 'missing.png'"),
        ("[5]", "image file not found: '../../etc/passwd'"),
    ]
    # a.png and b.png have labels, unreadable ones: they are not passed off as unlabelled images
    assert [r.name for r in dataset.images] == ["ok.png"]
    assert problems.warnings == []


def test_unlisted_image_is_kept_tagged_unlabeled(tmp_path: Path) -> None:
    put_png(tmp_path / "a.png", 10, 10)
    put_png(tmp_path / "b.png", 10, 10)
    put_json(tmp_path / "_annotations.createml.json", [{"image": "a.png", "annotations": []}])
    dataset, problems = read(tmp_path)
    assert {r.name: r.tags for r in dataset.images} == {"a.png": [], "b.png": ["unlabeled"]}
    [warning] = problems.warnings
    assert "1 image(s) listed in no CreateML annotation file" in warning.message


def test_unlabeled_records_round_trip_even_alone_in_a_split(tmp_path: Path) -> None:
    records = [
        ImageRecord(name="empty.png", width=8, height=8, split="train"),
        ImageRecord(name="sub/never.png", width=8, height=8, split="test", tags=["unlabeled"]),
    ]
    CREATEML.write(Dataset(images=records), tmp_path, png_writer)
    assert json.loads((tmp_path / "test" / "_annotations.createml.json").read_text()) == []
    back, _ = read(tmp_path)
    assert {r.name: (r.split, r.tags) for r in back.images} == {
        "empty.png": ("train", []),
        "sub/never.png": ("test", ["unlabeled"]),
    }
