"""LabelMe: round trip (boxes and polygons), a labelme 5.x file, layouts and bad inputs."""

from __future__ import annotations

import base64
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
from winnow.formats.labelme import LabelMe

LABELME = LabelMe()


def labelme_5_document(image_path: str) -> dict[str, Any]:
    """A file as labelme 5.4 saves it (imageData embedded, shapes with description and mask)."""
    return {
        "version": "5.4.1",
        "flags": {"blurry": False},
        "shapes": [
            {
                "label": "cat",
                "points": [[10.5, 20.0], [40.0, 20.0], [40.0, 44.25], [10.5, 44.25], [5.0, 30.0]],
                "group_id": None,
                "description": "",
                "shape_type": "polygon",
                "flags": {},
                "mask": None,
            },
            {
                "label": "dog",
                "points": [[50.0, 30.0], [5.0, 2.0]],
                "group_id": 1,
                "description": "behind the sofa",
                "shape_type": "rectangle",
                "flags": {"occluded": True},
                "mask": None,
            },
            {
                "label": "nose",
                "points": [[30.0, 30.0]],
                "group_id": None,
                "description": "",
                "shape_type": "point",
                "flags": {},
                "mask": None,
            },
        ],
        "imagePath": image_path,
        "imageData": base64.b64encode(png_bytes(64, 48)).decode("ascii"),
        "imageHeight": 48,
        "imageWidth": 64,
    }


def put_png(path: Path, width: int = 32, height: int = 24) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png_bytes(width, height))
    return path


def put_json(path: Path, doc: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


def simple_doc(image: str, shapes: list[dict[str, Any]], width: int = 32, height: int = 24) -> dict[str, Any]:
    return {"version": "5.4.1", "flags": {}, "shapes": shapes, "imagePath": image, "imageData": None,
            "imageHeight": height, "imageWidth": width}


def shape(label: str, points: Any, shape_type: str | None = "polygon", group_id: Any = None) -> dict[str, Any]:
    return {"label": label, "points": points, "group_id": group_id, "shape_type": shape_type, "flags": {}}


def read(path: Path) -> tuple[Dataset, Problems]:
    problems = Problems()
    return LABELME.read(path, problems), problems


# --------------------------------------------------------------------------- round trip


def assert_same(original: Dataset, back: Dataset) -> None:
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
            if b.polygon is None:
                assert a.polygon is None
            else:
                assert len(a.polygon) == len(b.polygon)
                for pa, pb in zip(a.polygon, b.polygon):
                    assert pa == pytest.approx(pb, abs=1e-6)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(datasets(Task.DETECT, splits=True))
def test_round_trip_boxes(original: Dataset) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        LABELME.write(original, Path(tmp), png_writer)
        back, problems = read(Path(tmp))
    assert list(problems) == []
    assert_same(original, back)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(datasets(Task.SEGMENT, splits=True))
def test_round_trip_polygons(original: Dataset) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        LABELME.write(original, Path(tmp), png_writer)
        back, problems = read(Path(tmp))
    assert list(problems) == []
    assert_same(original, back)
    if original.annotation_count:
        assert back.task is Task.SEGMENT


def test_multi_part_polygon_round_trips_through_group_id(tmp_path: Path) -> None:
    parts = [[1.0, 1.0, 5.0, 1.0, 5.0, 5.0], [10.0, 10.0, 14.0, 10.0, 12.0, 15.5]]
    anns = [
        Annotation("person", bbox=(1.0, 1.0, 14.0, 15.5), polygon=parts),
        Annotation("person", bbox=(0.0, 0.0, 3.0, 3.0), polygon=[[0.0, 0.0, 3.0, 0.0, 3.0, 3.0]]),
    ]
    original = Dataset(images=[ImageRecord(name="a.png", width=20, height=20, annotations=anns)])
    LABELME.write(original, tmp_path, png_writer)
    written = json.loads((tmp_path / "a.json").read_text())
    assert [s["group_id"] for s in written["shapes"]] == [1, 1, None]
    assert written["imageData"] is None and written["imagePath"] == "a.png"
    back, _ = read(tmp_path)
    got = back.images[0].annotations
    assert [a.polygon for a in got] == [parts, [[0.0, 0.0, 3.0, 0.0, 3.0, 3.0]]]
    assert got[0].bbox == (1.0, 1.0, 14.0, 15.5)


def test_unlabeled_record_gets_no_json_and_comes_back_unlabeled(tmp_path: Path) -> None:
    records = [
        ImageRecord(name="empty.png", width=8, height=8),
        ImageRecord(name="never.png", width=8, height=8, tags=["unlabeled"]),
    ]
    LABELME.write(Dataset(images=records), tmp_path, png_writer)
    assert sorted(p.name for p in tmp_path.glob("*.json")) == ["empty.json"]
    back, _ = read(tmp_path)
    assert {r.name: r.tags for r in back.images} == {"empty.png": [], "never.png": ["unlabeled"]}


def test_shared_stems_get_distinct_files(tmp_path: Path) -> None:
    records = [
        ImageRecord(name="a.png", width=8, height=8, annotations=[Annotation("x", bbox=(1, 1, 2, 2))]),
        ImageRecord(name="a.jpg", width=8, height=8, annotations=[Annotation("y", bbox=(1, 1, 2, 2))]),
    ]
    LABELME.write(Dataset(images=records), tmp_path, png_writer)
    back, problems = read(tmp_path)
    assert list(problems) == []
    assert {r.name: r.annotations[0].label for r in back.images} == {"a.png": "x", "a.jpg": "y"}


# --------------------------------------------------------------------------- real files


def test_labelme_5_file_reads_exact_values(tmp_path: Path) -> None:
    put_png(tmp_path / "cat_dog.jpg", 64, 48)
    put_json(tmp_path / "cat_dog.json", labelme_5_document("cat_dog.jpg"))
    dataset, problems = read(tmp_path)
    [record] = dataset.images
    assert record.name == "cat_dog.jpg" and record.file == tmp_path / "cat_dog.jpg"
    assert (record.width, record.height, record.declared_width, record.declared_height) == (64, 48, 64, 48)
    assert record.metadata == {"flags": {"blurry": False}}
    cat, dog = record.annotations
    assert cat.label == "cat"
    assert cat.polygon == [[10.5, 20.0, 40.0, 20.0, 40.0, 44.25, 10.5, 44.25, 5.0, 30.0]]
    assert cat.bbox == (5.0, 20.0, 40.0, 44.25)
    assert cat.attributes == {}
    assert dog.label == "dog" and dog.polygon is None
    assert dog.bbox == (5.0, 2.0, 50.0, 30.0)  # corners given bottom-right first
    assert dog.attributes == {"group_id": 1, "flags": {"occluded": True}, "description": "behind the sofa"}
    assert dataset.classes == ["cat", "dog"] and dataset.task is Task.SEGMENT
    [error] = problems.errors
    assert error.where == "shapes[2]" and "unsupported shape type 'point'" in error.message


def test_json_in_its_own_folder_with_windows_relative_image_path(tmp_path: Path) -> None:
    put_png(tmp_path / "images" / "a.jpg", 64, 48)
    put_png(tmp_path / "images" / "unlabelled.jpg", 64, 48)
    put_json(tmp_path / "labels" / "a.json", labelme_5_document("..\\images\\a.jpg"))
    dataset, problems = read(tmp_path)
    assert {r.name: len(r.annotations) for r in dataset.images} == {"images/a.jpg": 2, "images/unlabelled.jpg": 0}
    assert dataset.images[1].tags == ["unlabeled"]
    [warning] = problems.warnings
    assert warning.file == str(tmp_path / "images") and "images/unlabelled.jpg" in warning.message


def test_absolute_image_path_falls_back_to_the_file_beside(tmp_path: Path) -> None:
    put_png(tmp_path / "train" / "a.jpg", 64, 48)
    put_json(tmp_path / "train" / "a.json", labelme_5_document("C:\\Users\\me\\Desktop\\a.jpg"))
    dataset, _ = read(tmp_path)
    assert [(r.name, r.split) for r in dataset.images] == [("a.jpg", "train")]


def test_group_id_merges_polygons_of_one_instance(tmp_path: Path) -> None:
    put_png(tmp_path / "a.png")
    tri = [[1, 1], [4, 1], [4, 4]]
    doc = simple_doc("a.png", [
        shape("car", tri, group_id=7),
        shape("car", [[10, 10], [14, 10], [14, 14]], group_id=7),
        shape("car", tri, group_id=None),
        shape("bus", tri, group_id=7),
    ])
    put_json(tmp_path / "a.json", doc)
    dataset, _ = read(tmp_path)
    anns = dataset.images[0].annotations
    assert [(a.label, len(a.polygon)) for a in anns] == [("car", 2), ("car", 1), ("bus", 1)]
    assert anns[0].bbox == (1.0, 1.0, 14.0, 14.0)


def test_registered_and_detected_apart_from_coco_and_createml(tmp_path: Path) -> None:
    assert _REGISTRY["labelme"] is LabelMe
    put_json(tmp_path / "lm" / "a.json", labelme_5_document("a.jpg"))
    put_json(tmp_path / "coco" / "instances.json", {"images": [], "annotations": [], "categories": []})
    put_json(tmp_path / "createml" / "_annotations.createml.json", [{"image": "a.jpg", "annotations": []}])
    assert LABELME.detect(tmp_path / "lm") >= 0.9
    assert LABELME.detect(tmp_path / "lm" / "a.json") >= 0.9
    assert LABELME.detect(tmp_path / "coco") == 0
    assert LABELME.detect(tmp_path / "createml") == 0


# --------------------------------------------------------------------------- bad inputs


def test_malformed_json_is_reported_with_line_and_others_read(tmp_path: Path) -> None:
    put_png(tmp_path / "a.png")
    put_png(tmp_path / "b.png")
    (tmp_path / "a.json").write_text('{\n  "shapes": [\n    {"label": "x",}\n  ]\n}')
    put_json(tmp_path / "b.json", simple_doc("b.png", [shape("ok", [[1, 1], [3, 3]], "rectangle")]))
    dataset, problems = read(tmp_path)
    [error] = problems.errors
    assert error.file == str(tmp_path / "a.json") and error.where.startswith("line 3")
    assert error.message.startswith("malformed JSON")
    # a.png is not passed off as an unlabelled image: its labels exist, they are just unreadable
    assert [r.name for r in dataset.images] == ["b.png"]


@pytest.mark.parametrize(
    ("bad", "expected"),
    [
        (shape("x", [[1, 1], ["a", 2], [3, 3]]), "point 1 is not a pair of finite numbers"),
        (shape("x", [[1, 1], [2, float("nan")], [3, 3]]), "point 1 is not a pair of finite numbers"),
        (shape("x", [[1, 1], [2], [3, 3]]), "point 1 is not a pair"),
        (shape("x", [[1, 1], [True, 2], [3, 3]]), "point 1 is not a pair"),
        (shape("x", "1,2,3,4"), "points is not a list"),
        (shape("x", [[1, 1], [5, 5]]), "polygon 'x' needs at least 3 points, got 2"),
        (shape("x", [[1, 1], [2, 1], [3, 1]]), "has no area"),
        (shape("x", [[1, 1]], "rectangle"), "rectangle 'x' needs 2 points, got 1"),
        (shape("x", [[1, 1], [2, 2], [3, 3]], "rectangle"), "rectangle 'x' needs 2 points, got 3"),
        (shape("x", [[1, 1], [1, 5]], "rectangle"), "empty or inverted box"),
        (shape("x", [[5, 5], [2]], "circle"), "unsupported shape type 'circle'"),
        (shape("x", [[5, 5], [2, 2]], "line"), "unsupported shape type 'line'"),
        (shape("", [[1, 1], [2, 2]], "rectangle"), "shape has no label"),
        ("not a shape", "shape is not an object"),
    ],
)
def test_bad_shape_is_skipped_and_reported(tmp_path: Path, bad: Any, expected: str) -> None:
    put_png(tmp_path / "a.png")
    put_json(tmp_path / "a.json", simple_doc("a.png", [shape("good", [[1, 1], [3, 3]], "rectangle"), bad]))
    dataset, problems = read(tmp_path)
    [error] = problems.errors
    assert expected in error.message
    assert error.where == "shapes[1]" and error.record == "a.png"
    assert [a.label for a in dataset.images[0].annotations] == ["good"]


def test_missing_shape_type_is_a_polygon(tmp_path: Path) -> None:
    put_png(tmp_path / "a.png")
    put_json(tmp_path / "a.json", simple_doc("a.png", [shape("x", [[1, 1], [4, 1], [4, 4]], None)]))
    dataset, problems = read(tmp_path)
    assert dataset.images[0].annotations[0].polygon == [[1.0, 1.0, 4.0, 1.0, 4.0, 4.0]]
    assert list(problems) == []


def test_self_intersecting_polygon_is_kept_for_the_importer_to_flag(tmp_path: Path) -> None:
    put_png(tmp_path / "a.png")
    put_json(tmp_path / "a.json", simple_doc("a.png", [shape("bow", [[0, 0], [4, 4], [4, 0], [0, 4]])]))
    dataset, problems = read(tmp_path)
    assert dataset.images[0].annotations[0].polygon == [[0.0, 0.0, 4.0, 4.0, 4.0, 0.0, 0.0, 4.0]]
    assert list(problems) == []


def test_missing_image_is_an_error_even_with_image_data(tmp_path: Path) -> None:
    put_json(tmp_path / "gone.json", labelme_5_document("gone.jpg"))
    dataset, problems = read(tmp_path)
    assert dataset.images == []
    [error] = problems.errors
    assert "image file not found: 'gone.jpg'" in error.message


def test_image_path_cannot_leave_the_root(tmp_path: Path) -> None:
    put_png(tmp_path / "secret.png")
    put_json(tmp_path / "data" / "a.json", simple_doc("../secret.png", []))
    dataset, problems = read(tmp_path / "data")
    assert dataset.images == [] and "image file not found" in problems.errors[0].message


def test_other_json_is_skipped_with_a_warning(tmp_path: Path) -> None:
    put_png(tmp_path / "a.png")
    put_json(tmp_path / "a.json", simple_doc("a.png", []))
    put_json(tmp_path / "coco.json", {"images": [], "annotations": []})
    put_json(tmp_path / "list.json", [1, 2])
    dataset, problems = read(tmp_path)
    assert [r.name for r in dataset.images] == ["a.png"]
    assert sorted(Path(p.file).name for p in problems.warnings) == ["coco.json", "list.json"]
    # named explicitly, a file that is not LabelMe is an error
    _, problems = read(tmp_path / "coco.json")
    assert len(problems.errors) == 1


def test_shapes_not_a_list(tmp_path: Path) -> None:
    put_png(tmp_path / "a.png")
    put_json(tmp_path / "a.json", {"shapes": {"label": "x"}, "imagePath": "a.png"})
    dataset, problems = read(tmp_path)
    assert dataset.images == [] and '"shapes" is not a list' in problems.errors[0].message


def test_empty_folder_is_a_format_error(tmp_path: Path) -> None:
    with pytest.raises(FormatError, match="no .json annotation file"):
        read(tmp_path)


def test_writer_takes_an_unknown_size_from_the_written_image(tmp_path: Path) -> None:
    def writer(record: ImageRecord, path: Path) -> None:
        path.write_bytes(png_bytes(30, 20))

    LABELME.write(Dataset(images=[ImageRecord(name="a.png")]), tmp_path, writer)
    written = json.loads((tmp_path / "a.json").read_text())
    assert (written["imageWidth"], written["imageHeight"]) == (30, 20)
