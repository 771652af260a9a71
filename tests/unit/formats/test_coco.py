"""COCO reader, writer and detector: round trips, real exports, and every bad input."""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from pycocotools import mask as mask_utils

from tests.strategies import datasets, png_bytes, png_writer
from winnow.core.types import Annotation, Dataset, ImageRecord, Problems, Task
from winnow.errors import FormatError, InvalidInputError
from winnow.formats.coco import (
    CocoFormat,
    assign_ids,
    coco_to_dataset,
    dataset_to_coco,
    find_annotation_files,
    image_search_dirs,
    rle_string_counts,
    split_from_name,
)

COCO = CocoFormat()


# --------------------------------------------------------------------------- helpers


def base_doc() -> dict[str, Any]:
    """A small valid COCO document: two images, two classes, one box on each image."""
    return {
        "info": {"description": "test"},
        "licenses": [],
        "images": [
            {"id": 1, "file_name": "a.png", "width": 20, "height": 10},
            {"id": 2, "file_name": "b.png", "width": 30, "height": 20},
        ],
        "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 4, 4]},
            {"id": 2, "image_id": 2, "category_id": 2, "bbox": [2, 2, 5, 5]},
        ],
    }


def write_files(root: Path, names: list[str], size: tuple[int, int] = (8, 8)) -> None:
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(png_bytes(*size))


def make_dataset(root: Path, doc: Any, *, skip: tuple[str, ...] = (), json_name: str = "annotations.json") -> Path:
    """Write ``doc`` as ``root/json_name`` and a PNG for every listed image file (but ``skip``)."""
    root.mkdir(parents=True, exist_ok=True)
    text = doc if isinstance(doc, (str, bytes)) else json.dumps(doc)
    (root / json_name).write_bytes(text.encode("utf-8") if isinstance(text, str) else text)
    if isinstance(doc, dict):
        names = [im["file_name"] for im in doc.get("images", []) if isinstance(im, dict) and isinstance(im.get("file_name"), str)]
        write_files(root, [n for n in names if n and n not in skip and not n.startswith(("/", ".."))])
    return root


def read(path: Path) -> tuple[Dataset, Problems]:
    problems = Problems()
    return COCO.read(path, problems), problems


def by_name(dataset: Dataset) -> dict[str, ImageRecord]:
    return {r.name: r for r in dataset.images}


def error_text(problems: Problems) -> str:
    return "\n".join(p.message for p in problems.errors)


# --------------------------------------------------------------------------- round trips


def _assert_same(original: Dataset, back: Dataset) -> None:
    assert sorted(r.name for r in back.images) == sorted(r.name for r in original.images)
    assert back.classes == original.classes
    got = by_name(back)
    for rec in original.images:
        other = got[rec.name]
        assert other.split == rec.split
        assert (other.width, other.height) == (rec.width, rec.height)
        assert [a.label for a in other.annotations] == [a.label for a in rec.annotations]
        np.testing.assert_allclose(other.boxes(), rec.boxes(), atol=1e-6, rtol=0)
        assert [a.polygon for a in other.annotations] == [a.polygon for a in rec.annotations]


@pytest.mark.parametrize("task", [Task.DETECT, Task.SEGMENT])
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=datasets(Task.DETECT, splits=False) | datasets(Task.DETECT, splits=True))
def test_round_trip_detect_and_segment(task, data):
    original = data
    if task is Task.SEGMENT:  # same draw, but as polygons: a box's corners
        for rec in original.images:
            for ann in rec.annotations:
                x1, y1, x2, y2 = ann.bbox
                ann.polygon = [[x1, y1, x2, y1, x2, y2, x1, y2]]
    with tempfile.TemporaryDirectory() as tmp:
        dest = Path(tmp) / "out"
        COCO.write(original, dest, png_writer)
        back, problems = read(dest)
    assert problems.errors == [] and problems.warnings == []
    _assert_same(original, back)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(original=datasets(Task.SEGMENT, splits=True))
def test_round_trip_segment_strategy_keeps_polygons_and_splits(original):
    with tempfile.TemporaryDirectory() as tmp:
        dest = Path(tmp) / "out"
        COCO.write(original, dest, png_writer)
        back, problems = read(dest)
    assert problems.errors == []
    _assert_same(original, back)
    assert back.task is (Task.SEGMENT if original.annotation_count else Task.DETECT)


def test_rle_round_trip_keeps_every_pixel(tmp_path):
    rng = np.random.default_rng(1)
    mask = np.zeros((23, 31), dtype=np.uint8)
    mask[3:17, 5:20] = 1
    mask[rng.random(mask.shape) < 0.1] = 1
    rle = mask_utils.encode(np.asfortranarray(mask))
    rle["counts"] = rle["counts"].decode("ascii")
    rec = ImageRecord(name="images/m.png", width=31, height=23, annotations=[Annotation("blob", rle=rle, iscrowd=True)])
    COCO.write(Dataset(classes=["blob"], images=[rec]), tmp_path, png_writer)

    doc = json.loads((tmp_path / "annotations.json").read_text())
    written = doc["annotations"][0]
    assert written["area"] == float(mask.sum())
    x, y, w, h = written["bbox"]
    ys, xs = np.nonzero(mask)
    assert (x, y, x + w, y + h) == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)

    back, problems = read(tmp_path)
    assert problems == []
    ann = back.images[0].annotations[0]
    assert ann.iscrowd is True and ann.polygon is None
    assert np.array_equal(mask_utils.decode(ann.rle), mask)


# --------------------------------------------------------------------------- real exports

# A CVAT "COCO 1.0" export, verbatim in shape: empty licenses/info strings, supercategory "",
# attributes per annotation, a polygon and a crowd RLE with *uncompressed* counts, and a box.
CVAT_EXPORT = """{"licenses":[{"name":"","id":0,"url":""}],"info":{"contributor":"","date_created":"","description":"","url":"","version":"","year":""},"categories":[{"id":1,"name":"car","supercategory":""},{"id":2,"name":"person","supercategory":""}],"images":[{"id":1,"width":8,"height":6,"file_name":"frame_000000.png","license":0,"flickr_url":"","coco_url":"","date_captured":0}],"annotations":[{"id":1,"image_id":1,"category_id":1,"segmentation":[[1.0,1.0,6.5,1.0,6.5,4.0,1.0,4.0]],"area":16.5,"bbox":[1.0,1.0,5.5,3.0],"iscrowd":0,"attributes":{"occluded":false}},{"id":2,"image_id":1,"category_id":2,"segmentation":{"counts":[13,2,4,2,4,2,21],"size":[6,8]},"area":6.0,"bbox":[2.0,1.0,3.0,2.0],"iscrowd":1,"attributes":{"occluded":false}},{"id":3,"image_id":1,"category_id":1,"segmentation":[],"area":2.0,"bbox":[0.5,4.0,2.0,1.0],"iscrowd":0,"attributes":{"occluded":true,"rotation":0.0}}]}"""


def test_cvat_coco_export_is_read_exactly(tmp_path):
    make_dataset(tmp_path, CVAT_EXPORT)
    write_files(tmp_path, ["frame_000000.png"], (8, 6))
    ds, problems = read(tmp_path)
    assert problems == []
    assert ds.classes == ["car", "person"]
    assert ds.task is Task.SEGMENT
    assert ds.info["coco"]["licenses"] == [{"name": "", "id": 0, "url": ""}]
    assert ds.info["coco"]["info"]["contributor"] == ""
    assert ds.info["coco"]["categories"] == [
        {"id": 1, "name": "car", "supercategory": ""},
        {"id": 2, "name": "person", "supercategory": ""},
    ]
    (rec,) = ds.images
    assert (rec.name, rec.width, rec.height, rec.declared_width, rec.declared_height) == ("frame_000000.png", 8, 6, 8, 6)
    assert rec.external_id == 1 and rec.split is None
    assert rec.file == tmp_path / "frame_000000.png"
    assert rec.metadata == {"license": 0, "flickr_url": "", "coco_url": "", "date_captured": 0}

    poly, crowd, box = rec.annotations
    assert poly == Annotation(
        label="car",
        bbox=(1.0, 1.0, 6.5, 4.0),
        polygon=[[1.0, 1.0, 6.5, 1.0, 6.5, 4.0, 1.0, 4.0]],
        attributes={"occluded": False},
        external_id=1,
    )
    expected_mask = np.zeros((6, 8), dtype=np.uint8)
    expected_mask[1:3, 2:5] = 1
    expected_counts = mask_utils.encode(np.asfortranarray(expected_mask))["counts"].decode("ascii")
    assert crowd.label == "person" and crowd.iscrowd is True and crowd.external_id == 2
    assert crowd.bbox == (2.0, 1.0, 5.0, 3.0)
    assert crowd.rle == {"size": [6, 8], "counts": expected_counts}
    assert np.array_equal(mask_utils.decode(crowd.rle), expected_mask)
    assert box.kind == "box" and box.bbox == (0.5, 4.0, 2.5, 5.0)
    assert box.attributes == {"occluded": True, "rotation": 0.0}


def test_cvat_export_written_back_keeps_ids_metadata_and_sections(tmp_path):
    make_dataset(tmp_path / "in", CVAT_EXPORT)
    write_files(tmp_path / "in", ["frame_000000.png"], (8, 6))
    ds, _ = read(tmp_path / "in")
    from winnow.formats.base import copy_from_file

    COCO.write(ds, tmp_path / "out", copy_from_file)
    original, written = json.loads(CVAT_EXPORT), json.loads((tmp_path / "out" / "annotations.json").read_text())
    assert written["licenses"] == original["licenses"] and written["info"] == original["info"]
    assert written["categories"] == original["categories"]
    assert written["images"] == original["images"]
    assert [a["id"] for a in written["annotations"]] == [1, 2, 3]
    assert [a["bbox"] for a in written["annotations"]] == [a["bbox"] for a in original["annotations"]]
    assert [a["attributes"] for a in written["annotations"]] == [a["attributes"] for a in original["annotations"]]
    assert written["annotations"][0]["segmentation"] == original["annotations"][0]["segmentation"]
    assert written["annotations"][1]["segmentation"]["counts"] == ds.images[0].annotations[1].rle["counts"]
    assert [a["area"] for a in written["annotations"]] == [16.5, 6.0, 2.0]
    assert [a["iscrowd"] for a in written["annotations"]] == [0, 1, 0]


def roboflow_doc(names: list[str], first_id: int = 0) -> dict[str, Any]:
    return {
        "info": {"year": "2024", "description": "Exported from roboflow.com"},
        "licenses": [{"id": 1, "url": "https://creativecommons.org/licenses/by/4.0/", "name": "CC BY 4.0"}],
        "categories": [
            {"id": 0, "name": "cells", "supercategory": "none"},
            {"id": 1, "name": "Platelets", "supercategory": "cells"},
            {"id": 2, "name": "RBC", "supercategory": "cells"},
        ],
        "images": [
            {"id": first_id + k, "license": 1, "file_name": n, "height": 8, "width": 8, "date_captured": "2024-01-01T00:00:00+00:00"}
            for k, n in enumerate(names)
        ],
        "annotations": [
            {"id": k, "image_id": first_id + k, "category_id": 2, "bbox": [1, 2, 3, 4], "area": 12, "segmentation": [], "iscrowd": 0}
            for k in range(len(names))
        ],
    }


def test_roboflow_split_folders_give_splits_and_prefixed_names(tmp_path):
    for split, names in {"train": ["a.jpg", "b.jpg"], "valid": ["c.jpg"], "test": ["d.jpg"]}.items():
        make_dataset(tmp_path / split, roboflow_doc(names), json_name="_annotations.coco.json")
    (tmp_path / "README.roboflow.txt").write_text("exported")
    assert COCO.detect(tmp_path) > 0.9
    assert [s for _, s in find_annotation_files(tmp_path)] == ["test", "train", "valid"]
    ds, problems = read(tmp_path)
    assert problems == []
    assert {r.name: r.split for r in ds.images} == {"a.jpg": "train", "b.jpg": "train", "c.jpg": "valid", "d.jpg": "test"}
    assert by_name(ds)["c.jpg"].file == tmp_path / "valid" / "c.jpg"
    assert ds.classes == ["cells", "Platelets", "RBC"]
    assert all(r.annotations[0].bbox == (1.0, 2.0, 4.0, 6.0) and r.annotations[0].label == "RBC" for r in ds.images)
    assert [c["supercategory"] for c in ds.info["coco"]["categories"]] == ["none", "cells", "cells"]


def test_roboflow_same_name_in_two_splits_is_named_from_the_root(tmp_path):
    make_dataset(tmp_path / "train", roboflow_doc(["a.jpg", "b.jpg"]), json_name="_annotations.coco.json")
    make_dataset(tmp_path / "valid", roboflow_doc(["a.jpg"]), json_name="_annotations.coco.json")
    ds, problems = read(tmp_path)
    assert {r.name: r.split for r in ds.images} == {"a.jpg": "train", "b.jpg": "train", "valid/a.jpg": "valid"}
    assert problems.errors == []
    (warning,) = problems.warnings
    assert "'a.jpg'" in warning.message and "valid/a.jpg" in warning.message


def test_one_roboflow_split_file_read_on_its_own(tmp_path):
    make_dataset(tmp_path / "valid", roboflow_doc(["c.jpg"]), json_name="_annotations.coco.json")
    ds, problems = read(tmp_path / "valid" / "_annotations.coco.json")
    assert problems == [] and [(r.name, r.split) for r in ds.images] == [("c.jpg", "valid")]


def test_coco2017_layout_finds_images_in_the_folder_named_after_the_file(tmp_path):
    doc = base_doc()
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / "instances_val2017.json").write_text(json.dumps(doc))
    (tmp_path / "annotations" / "captions_val2017.json").write_text(json.dumps({"images": [], "annotations": []}))
    write_files(tmp_path / "val2017", ["a.png", "b.png"])
    for path in (tmp_path, tmp_path / "annotations" / "instances_val2017.json"):
        ds, problems = read(path)
        assert problems.errors == []
        assert {r.name: r.split for r in ds.images} == {"val2017/a.png": "valid", "val2017/b.png": "valid"}


def test_file_name_search_order_json_folder_then_images_folder(tmp_path):
    doc = base_doc()
    make_dataset(tmp_path, doc, skip=("a.png", "b.png"))
    write_files(tmp_path, ["images/a.png", "b.png", "images/b.png"])
    ds, problems = read(tmp_path / "annotations.json")
    assert problems.errors == []
    assert [r.name for r in ds.images] == ["images/a.png", "b.png"]  # beside the json wins over images/
    assert [w.message.split(": ")[-1] for w in problems.warnings] == ["images/b.png"]  # the one not used
    assert image_search_dirs(tmp_path / "sub" / "instances_x.json", tmp_path) == ["sub", "sub/images", "", "images", "x", "images/x"]


def test_split_names():
    assert split_from_name(Path("instances_train2017.json")) == "train"
    assert split_from_name(Path("instances_val2017.json")) == "valid"
    assert split_from_name(Path("valid/_annotations.coco.json")) == "valid"
    assert split_from_name(Path("instances_holdout.json")) is None
    assert split_from_name(Path("batch1/_annotations.coco.json")) is None
    assert split_from_name(Path("annotations.json")) is None
    assert split_from_name(Path("annotations/instances_default.json")) is None  # CVAT's only subset


def test_cvat_layout_with_images_in_a_subset_folder(tmp_path):
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / "instances_default.json").write_text(CVAT_EXPORT)
    write_files(tmp_path / "images" / "default", ["frame_000000.png"], (8, 6))
    ds, problems = read(tmp_path)
    assert problems == []
    assert [(r.name, r.split, len(r.annotations)) for r in ds.images] == [("images/default/frame_000000.png", None, 3)]


# --------------------------------------------------------------------------- detect


def test_detect_coco_files_and_folders(tmp_path):
    make_dataset(tmp_path / "d", base_doc())
    assert COCO.detect(tmp_path / "d" / "annotations.json") == pytest.approx(0.95)
    assert COCO.detect(tmp_path / "d") == pytest.approx(0.95)
    assert COCO.detect(tmp_path / "d" / "a.png") == 0
    assert COCO.detect(tmp_path / "nothing-here") == 0
    assert COCO.detect(tmp_path / "d" / "a.png") == 0


def test_detect_finds_keys_past_a_large_images_section(tmp_path):
    doc = base_doc()
    doc["images"] += [{"id": 100 + k, "file_name": f"x{k}.png", "width": 8, "height": 8} for k in range(5000)]
    path = tmp_path / "big.json"
    path.write_text(json.dumps({"images": doc["images"], "annotations": doc["annotations"], "categories": doc["categories"]}))
    assert path.stat().st_size > 3 * 65536
    assert COCO.detect(path) == pytest.approx(0.95)


def test_detect_refuses_labelme_and_createml_json(tmp_path):
    labelme = {
        "version": "5.4.1",
        "flags": {},
        "shapes": [{"label": "cat", "points": [[1, 2], [3, 4]], "shape_type": "rectangle", "group_id": None, "flags": {}}],
        "imagePath": "a.png",
        "imageData": None,
        "imageHeight": 10,
        "imageWidth": 20,
    }
    createml = [{"image": "a.png", "annotations": [{"label": "cat", "coordinates": {"x": 5, "y": 5, "width": 4, "height": 4}}]}]
    (tmp_path / "labelme").mkdir()
    (tmp_path / "labelme" / "a.json").write_text(json.dumps(labelme))
    (tmp_path / "createml").mkdir()
    (tmp_path / "createml" / "annotations.json").write_text(json.dumps(createml))
    assert COCO.detect(tmp_path / "labelme" / "a.json") == 0
    assert COCO.detect(tmp_path / "labelme") == 0
    assert COCO.detect(tmp_path / "createml" / "annotations.json") == 0
    assert COCO.detect(tmp_path / "createml") == 0


# --------------------------------------------------------------------------- malformed files


def test_truncated_json_names_file_and_byte_offset(tmp_path):
    text = json.dumps(base_doc())
    cut = text.index('"images"')  # the file ends after `"licenses": [], `
    make_dataset(tmp_path, text[:cut])
    with pytest.raises(FormatError) as exc:
        read(tmp_path)
    assert exc.value.file.endswith("annotations.json")
    assert exc.value.where == f"line 1, column {cut + 1}, byte {cut}"


def test_trailing_comma_offset_counts_bytes_not_characters(tmp_path):
    data = '{"info": {"description": "café ☕"},\n "images": [], "annotations": [],}'.encode()
    make_dataset(tmp_path, data)
    with pytest.raises(FormatError) as exc:
        read(tmp_path / "annotations.json")
    assert f"byte {data.index(b',}') + 1}" in exc.value.where
    assert "line 2" in exc.value.where
    assert "annotations.json" in str(exc.value)


@pytest.mark.parametrize("doc", ["[]", '"images"', "3", "null", '{"images": {}}', '{"images": [], "annotations": 3}'])
def test_wrong_top_level_types_are_format_errors(tmp_path, doc):
    (tmp_path / "bad.json").write_text(doc)
    with pytest.raises(FormatError) as exc:
        read(tmp_path / "bad.json")
    assert "bad.json" in str(exc.value)


def test_non_utf8_json_is_a_format_error_with_offset(tmp_path):
    data = b'{"images": [], "info": {"description": "caf\xe9"}}'
    make_dataset(tmp_path, data)
    with pytest.raises(FormatError) as exc:
        read(tmp_path)
    offset = data.index(b"\xe9")
    assert "UTF-8" in exc.value.message and exc.value.where == f"byte {offset}"


def test_utf8_bom_is_accepted(tmp_path):
    make_dataset(tmp_path, b"\xef\xbb\xbf" + json.dumps(base_doc()).encode())
    write_files(tmp_path, ["a.png", "b.png"])
    ds, problems = read(tmp_path)
    assert len(ds.images) == 2 and problems.errors == []


def test_deep_nesting_is_a_format_error(tmp_path):
    (tmp_path / "deep.json").write_text('{"images": [], "x": ' + "[" * 200_000 + "]" * 200_000 + "}")
    with pytest.raises(FormatError):
        read(tmp_path / "deep.json")


def test_folder_without_coco_file_is_a_format_error(tmp_path):
    (tmp_path / "notes.json").write_text('{"a": 1}')
    with pytest.raises(FormatError):
        read(tmp_path)


def test_two_generic_coco_files_in_one_folder_are_ambiguous(tmp_path):
    (tmp_path / "mine.json").write_text(json.dumps(base_doc()))
    (tmp_path / "theirs.json").write_text(json.dumps(base_doc()))
    with pytest.raises(FormatError) as exc:
        read(tmp_path)
    assert "mine.json" in exc.value.message and "theirs.json" in exc.value.message


# --------------------------------------------------------------------------- optional and unknown sections


def test_missing_info_and_licenses_are_accepted_with_a_warning(tmp_path):
    doc = base_doc()
    del doc["info"], doc["licenses"]
    ds, problems = read(make_dataset(tmp_path, doc))
    assert problems.errors == [] and len(ds.images) == 2 and ds.annotation_count == 2
    assert any("info" in w.message and "licenses" in w.message for w in problems.warnings)


def test_unknown_keys_are_accepted_and_kept(tmp_path):
    doc = base_doc()
    doc["type"] = "instances"
    doc["images"][0]["camera"] = {"iso": 100}
    doc["annotations"][0]["track_id"] = 7
    ds, problems = read(make_dataset(tmp_path / "in", doc))
    assert problems.errors == [] and ds.annotation_count == 2
    assert any("'type'" in w.message for w in problems.warnings)
    assert ds.info["coco"]["extra"] == {"type": "instances"}
    assert by_name(ds)["a.png"].metadata == {"camera": {"iso": 100}}
    from winnow.formats.base import copy_from_file

    COCO.write(ds, tmp_path / "out", copy_from_file)
    written = json.loads((tmp_path / "out" / "annotations.json").read_text())
    assert written["type"] == "instances" and written["images"][0]["camera"] == {"iso": 100}


def test_images_only_file_is_read_with_no_annotations(tmp_path):
    doc = base_doc()
    del doc["annotations"], doc["categories"]
    ds, problems = read(make_dataset(tmp_path, doc))
    assert [r.name for r in ds.images] == ["a.png", "b.png"] and ds.annotation_count == 0 and problems.errors == []


# --------------------------------------------------------------------------- bad ids

BAD_IDS = ["7", -1, 1.5, 3.0, True, 2**63, 2**64, None, [1]]


@pytest.mark.parametrize("bad", BAD_IDS)
def test_bad_image_ids_reject_that_image_only(tmp_path, bad):
    doc = base_doc()
    doc["images"].append({"id": bad, "file_name": "c.png", "width": 8, "height": 8})
    ds, problems = read(make_dataset(tmp_path, doc))
    assert sorted(r.name for r in ds.images) == ["a.png", "b.png"]
    assert ds.annotation_count == 2
    assert repr(bad) in error_text(problems) and "invalid ids" in error_text(problems)


@pytest.mark.parametrize("bad", [b for b in BAD_IDS if b is not None])
def test_bad_annotation_ids_reject_that_annotation_only(tmp_path, bad):
    doc = base_doc()
    doc["annotations"].append({"id": bad, "image_id": 1, "category_id": 2, "bbox": [0, 0, 2, 2]})
    ds, problems = read(make_dataset(tmp_path, doc))
    assert [len(r.annotations) for r in ds.images] == [1, 1]
    assert repr(bad) in error_text(problems)


def test_annotation_without_id_is_kept(tmp_path):
    doc = base_doc()
    doc["annotations"].append({"image_id": 1, "category_id": 2, "bbox": [0, 0, 2, 2]})
    ds, problems = read(make_dataset(tmp_path, doc))
    assert problems.errors == [] and len(by_name(ds)["a.png"].annotations) == 2
    assert by_name(ds)["a.png"].annotations[1].external_id is None


@pytest.mark.parametrize("bad", [b for b in BAD_IDS if b is not None])
def test_bad_category_ids_reject_the_category_and_its_annotations(tmp_path, bad):
    doc = base_doc()
    doc["categories"].append({"id": bad, "name": "bird"})
    doc["annotations"].append({"id": 9, "image_id": 1, "category_id": bad, "bbox": [0, 0, 2, 2]})
    ds, problems = read(make_dataset(tmp_path, doc))
    assert ds.classes == ["cat", "dog"] and ds.annotation_count == 2
    text = error_text(problems)
    assert repr(bad) in text and "annotation ids 9" in text


def test_duplicate_image_ids_reject_every_image_with_that_id(tmp_path):
    doc = base_doc()
    doc["images"].append({"id": 2, "file_name": "c.png", "width": 8, "height": 8})
    ds, problems = read(make_dataset(tmp_path, doc))
    assert [r.name for r in ds.images] == ["a.png"] and ds.annotation_count == 1
    assert "duplicate image ids 2" in error_text(problems)
    assert not any("not listed" in w.message for w in problems.warnings if "c.png" not in w.message)


def test_duplicate_annotation_ids_are_rejected_and_listed(tmp_path):
    doc = base_doc()
    doc["annotations"].append({"id": 1, "image_id": 2, "category_id": 1, "bbox": [0, 0, 3, 3]})
    ds, problems = read(make_dataset(tmp_path, doc))
    assert [a.external_id for r in ds.images for a in r.annotations] == [2]
    assert "duplicate annotation ids 1" in error_text(problems)


def test_category_id_not_in_categories_rejects_the_annotation(tmp_path):
    doc = base_doc()
    doc["annotations"] += [
        {"id": 10, "image_id": 1, "category_id": 99, "bbox": [0, 0, 2, 2]},
        {"id": 11, "image_id": 2, "category_id": 98, "bbox": [0, 0, 2, 2]},
    ]
    ds, problems = read(make_dataset(tmp_path, doc))
    assert ds.annotation_count == 2
    (problem,) = problems.errors
    assert "2 annotations" in problem.message and "10, 11" in problem.message and "98, 99" in problem.message


def test_duplicate_category_ids_and_shared_names(tmp_path):
    doc = base_doc()
    doc["categories"] += [{"id": 2, "name": "wolf"}, {"id": 5, "name": "cat"}]
    doc["annotations"].append({"id": 3, "image_id": 1, "category_id": 5, "bbox": [0, 0, 2, 2]})
    ds, problems = read(make_dataset(tmp_path, doc))
    assert ds.classes == ["cat"]  # id 2 is refused (dog and wolf); ids 1 and 5 are both "cat"
    assert [a.label for a in by_name(ds)["a.png"].annotations] == ["cat", "cat"]
    assert "duplicate category ids 2" in error_text(problems)
    assert any("'cat'" in w.message for w in problems.warnings)


# --------------------------------------------------------------------------- orphans both ways


def test_annotation_referencing_a_missing_image_is_reported(tmp_path):
    doc = base_doc()
    doc["annotations"].append({"id": 5, "image_id": 42, "category_id": 1, "bbox": [0, 0, 2, 2]})
    ds, problems = read(make_dataset(tmp_path, doc))
    assert ds.annotation_count == 2
    (problem,) = problems.errors
    assert "42" in problem.message and "annotation ids 5" in problem.message


def test_image_missing_on_disk_is_skipped_and_the_rest_kept(tmp_path):
    doc = base_doc()
    doc["annotations"].append({"id": 3, "image_id": 2, "category_id": 1, "bbox": [0, 0, 2, 2]})
    ds, problems = read(make_dataset(tmp_path, doc, skip=("b.png",)))
    assert [r.name for r in ds.images] == ["a.png"]
    (problem,) = problems.errors
    assert "b.png" in problem.message and "2 annotations" in problem.message and problem.record == "b.png"


def test_image_files_not_in_the_json_give_one_warning(tmp_path):
    make_dataset(tmp_path, base_doc())
    extra = [f"images/extra_{k}.png" for k in range(7)]
    write_files(tmp_path, extra)
    ds, problems = read(tmp_path)
    assert len(ds.images) == 2 and problems.errors == []
    (warning,) = problems.warnings
    assert "7 image files" in warning.message
    assert "images/extra_0.png" in warning.message and "..." in warning.message


def test_same_file_listed_twice_keeps_the_first(tmp_path):
    doc = base_doc()
    doc["images"].append({"id": 3, "file_name": "./a.png", "width": 20, "height": 10})
    doc["annotations"].append({"id": 3, "image_id": 3, "category_id": 2, "bbox": [0, 0, 2, 2]})
    ds, problems = read(make_dataset(tmp_path, doc))
    assert [(r.name, r.external_id) for r in ds.images] == [("a.png", 1), ("b.png", 2)]
    (problem,) = problems.errors
    assert "image id 3" in problem.message and "listed twice" in problem.message


@pytest.mark.parametrize("name", ["../evil.png", "/etc/passwd", "C:\\evil.png", "", 5])
def test_unsafe_or_invalid_file_names_are_refused(tmp_path, name):
    doc = base_doc()
    doc["images"].append({"id": 3, "file_name": name, "width": 8, "height": 8})
    ds, problems = read(make_dataset(tmp_path / "root", doc))
    assert sorted(r.name for r in ds.images) == ["a.png", "b.png"]
    assert any("image id 3" in p.message for p in problems.errors)


# --------------------------------------------------------------------------- bad geometry


@pytest.mark.parametrize(
    "bbox",
    [
        [float("nan"), 1, 2, 2],
        [1, float("inf"), 2, 2],
        [1, 1, float("-inf"), 2],
        [None, 1, 2, 2],
        [1, 2, 3],
        [1, 2, 3, 4, 5],
        ["1", 1, 2, 2],
        [1, 1, 0, 2],
        [1, 1, 2, -1],
        {"x": 1},
        "1,1,2,2",
    ],
)
def test_bad_bbox_rejects_that_annotation(tmp_path, bbox):
    doc = base_doc()
    doc["annotations"].append({"id": 77, "image_id": 1, "category_id": 1, "bbox": bbox})
    ds, problems = read(make_dataset(tmp_path, doc))
    assert ds.annotation_count == 2
    (problem,) = problems.errors
    assert "annotation id 77" in problem.message and "bbox" in problem.message
    assert problem.record == "a.png" and problem.where == "annotations[2]"


def test_null_bbox_with_a_polygon_uses_the_polygon_box(tmp_path):
    doc = base_doc()
    doc["annotations"].append({"id": 3, "image_id": 1, "category_id": 1, "bbox": None, "segmentation": [[1, 2, 5, 2, 5, 7]]})
    doc["annotations"].append({"id": 4, "image_id": 1, "category_id": 1, "bbox": None})
    ds, problems = read(make_dataset(tmp_path, doc))
    ann = by_name(ds)["a.png"].annotations[1]
    assert ann.bbox == (1.0, 2.0, 5.0, 7.0) and ann.external_id == 3
    (problem,) = problems.errors
    assert "annotation id 4" in problem.message and "no bbox and no segmentation" in problem.message


def test_box_of_zero_area_after_conversion_is_rejected(tmp_path):
    doc = base_doc()
    doc["annotations"].append({"id": 3, "image_id": 1, "category_id": 1, "bbox": [1e20, 1, 1e-9, 2]})
    doc["annotations"].append({"id": 4, "image_id": 1, "category_id": 1, "segmentation": [[1, 1, 2, 1, 3, 1]]})
    ds, problems = read(make_dataset(tmp_path, doc))
    assert ds.annotation_count == 2
    assert {p.message.split(":")[0] for p in problems.errors} == {"annotation id 3", "annotation id 4"}


@pytest.mark.parametrize(
    "segmentation, reason",
    [
        ([[1, 1, 5, 1]], "at least 3"),
        ([[1, 1, 5, 1, 5, 5, 1]], "odd number"),
        ([[1, 1, 5, 1, 5, 5], [2, 2, 3, 3]], "at least 3"),
        ([[1, 1, 5, "x", 5, 5]], "not a number"),
        ([[1, 1, 5, None, 5, 5]], "not a number"),
        ([[1, 1, 5, float("nan"), 5, 5]], "NaN"),
        ([1, 1, 5, 1, 5, 5], "not a list"),
        ("polygon", "must be a list"),
    ],
)
def test_bad_polygons_reject_the_annotation(tmp_path, segmentation, reason):
    doc = base_doc()
    doc["annotations"].append({"id": 8, "image_id": 1, "category_id": 1, "bbox": [1, 1, 4, 4], "segmentation": segmentation})
    ds, problems = read(make_dataset(tmp_path, doc))
    assert ds.annotation_count == 2
    (problem,) = problems.errors
    assert "annotation id 8" in problem.message and reason in problem.message


def test_empty_segmentation_is_a_box(tmp_path):
    doc = base_doc()
    doc["annotations"][0]["segmentation"] = []
    ds, problems = read(make_dataset(tmp_path, doc))
    ann = by_name(ds)["a.png"].annotations[0]
    assert problems.errors == [] and ann.kind == "box" and ann.polygon is None and ann.rle is None
    assert ds.task is Task.DETECT


def _rle(mask: np.ndarray) -> dict[str, Any]:
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": rle["size"], "counts": rle["counts"].decode("ascii")}


@pytest.mark.parametrize(
    "segmentation, reason",
    [
        (_rle(np.ones((5, 5))), "differs from the image size [10, 20]"),
        (_rle(np.ones((20, 10))), "differs from the image size"),  # width and height swapped
        ({"size": [10, 20], "counts": [100, 50]}, "cover 150 pixels"),
        ({"size": [10, 20], "counts": [100, -50, 150]}, "non-negative"),
        ({"size": [10, 20], "counts": "0"}, "cover 0 pixels"),
        ({"size": [10, 20], "counts": "\x7f\x7f"}, "malformed"),
        ({"size": [10, 20], "counts": "1o"}, "malformed"),  # a continuation group with nothing after
        ({"size": [10, 20], "counts": 12}, "must be a list or a string"),
        ({"size": "10x20", "counts": "0"}, "RLE size"),
    ],
)
def test_bad_rle_rejects_the_annotation(tmp_path, segmentation, reason):
    doc = base_doc()
    doc["annotations"].append({"id": 9, "image_id": 1, "category_id": 1, "bbox": [1, 1, 4, 4], "segmentation": segmentation, "iscrowd": 1})
    ds, problems = read(make_dataset(tmp_path, doc))
    assert ds.annotation_count == 2
    (problem,) = problems.errors
    assert "annotation id 9" in problem.message and reason in problem.message


def test_rle_string_decoder_matches_pycocotools():
    rng = np.random.default_rng(0)
    for shape in [(1, 1), (7, 3), (64, 48), (300, 200)]:
        mask = (rng.random(shape) < rng.random()).astype(np.uint8)
        mask[: shape[0] // 2, : shape[1] // 3] = 1  # long runs need several 5-bit groups
        runs = rle_string_counts(_rle(mask)["counts"])
        assert runs is not None and sum(runs) == mask.size
        flat = mask.flatten(order="F")
        expected = np.diff(np.flatnonzero(np.diff(np.r_[0, flat, 1 - flat[-1]]) != 0), prepend=0)
        assert runs[0] == expected[0] and runs[1:] == expected[1:].tolist()[: len(runs) - 1]


@pytest.mark.parametrize("field, value", [("iscrowd", 2), ("iscrowd", "yes"), ("score", "high"), ("score", float("nan"))])
def test_bad_iscrowd_or_score_rejects_the_annotation(tmp_path, field, value):
    doc = base_doc()
    doc["annotations"][0][field] = value
    ds, problems = read(make_dataset(tmp_path, doc))
    assert ds.annotation_count == 1
    assert "annotation id 1" in error_text(problems) and field in error_text(problems)


def test_scores_mark_model_annotations(tmp_path):
    doc = base_doc()
    doc["annotations"][0]["score"] = 0.75
    ds, _ = read(make_dataset(tmp_path, doc))
    ann = by_name(ds)["a.png"].annotations[0]
    assert ann.score == 0.75 and ann.source.value == "model"
    assert by_name(ds)["b.png"].annotations[0].source.value == "import"


def test_non_object_entries_are_reported_not_fatal(tmp_path):
    doc = base_doc()
    doc["images"].append("c.png")
    doc["annotations"].append([1, 2])
    doc["categories"].append(None)
    ds, problems = read(make_dataset(tmp_path, doc))
    assert len(ds.images) == 2 and ds.annotation_count == 2
    assert {p.where for p in problems.errors} == {"images[2]", "annotations[2]", "categories[2]"}


def test_invalid_declared_size_is_ignored_with_a_warning(tmp_path):
    doc = base_doc()
    doc["images"][0]["width"] = "wide"
    doc["images"][1]["width"], doc["images"][1]["height"] = 30.0, 20.0
    ds, problems = read(make_dataset(tmp_path, doc))
    a, b = ds.images
    assert a.width is None and a.declared_width is None and a.height == 10
    assert (b.width, b.height) == (30, 20) and type(b.width) is int
    assert [w.record for w in problems.warnings] == ["a.png"]


# --------------------------------------------------------------------------- pure conversion and writing


def test_coco_to_dataset_is_pure_and_sorts_classes_by_category_id():
    doc = base_doc()
    doc["categories"] = [{"id": 7, "name": "dog"}, {"id": 3, "name": "cat"}]
    doc["annotations"][0]["category_id"] = 3
    doc["annotations"][1]["category_id"] = 7
    ds = coco_to_dataset(doc, Problems())
    assert ds.classes == ["cat", "dog"]
    assert [r.file for r in ds.images] == [None, None]
    assert [a.label for r in ds.images for a in r.annotations] == ["cat", "dog"]


def test_polygon_areas_match_the_single_polygon_helper():
    from winnow.core.geometry import polygon_area
    from winnow.formats.coco import polygon_areas

    rng = np.random.default_rng(3)
    polygons = [[rng.uniform(0, 50, 2 * n).tolist() for n in sizes] for sizes in ([3], [4, 5], [10], [3, 3, 3])]
    polygons.append([[0, 0, 4, 0, 4, 4, 0, 4], [1, 1, 2]])  # a degenerate part adds nothing
    expected = [sum(polygon_area(p) for p in poly if len(p) >= 6) for poly in polygons]
    np.testing.assert_allclose(polygon_areas(polygons), expected, rtol=1e-12)
    assert polygon_areas([[[0, 0, 1]]]).tolist() == [0.0]


def test_reading_leaves_the_garbage_collector_as_it_was(tmp_path):
    import gc

    make_dataset(tmp_path, base_doc())
    assert gc.isenabled()
    read(tmp_path)
    assert gc.isenabled()
    gc.disable()
    try:
        read(tmp_path)
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_assign_ids_keeps_valid_unique_ids_and_counts_up_after_them():
    assert assign_ids([5, "7", 5, None, "x", -1, 2**63]) == [5, 7, 8, 9, 10, 11, 12]
    assert assign_ids([None, None]) == [1, 2]
    assert assign_ids([True, 0]) == [1, 0]


def test_dataset_to_coco_ids_categories_areas_and_label_only_annotations():
    ds = Dataset(
        classes=["b", "a"],
        images=[
            ImageRecord(
                name="x/1.png",
                width=10,
                height=10,
                external_id="12",
                annotations=[
                    Annotation("a", bbox=(1.0, 2.0, 4.0, 6.0), external_id="dup"),
                    Annotation("b", polygon=[[0, 0, 4, 0, 4, 2]]),
                    Annotation("c"),  # an image-level label: no COCO form
                    Annotation("a", bbox=(0.0, 0.0, 2.0, 2.0), score=0.5, attributes={"occluded": True}),
                ],
            ),
            ImageRecord(name="x/2.png", width=None, height=None, declared_width=4, declared_height=3, external_id=12),
        ],
        info={"coco": {"categories": [{"id": 9, "name": "a", "supercategory": "letters"}]}},
    )
    doc = dataset_to_coco(ds)
    assert doc["categories"] == [
        {"id": 10, "name": "b", "supercategory": ""},
        {"id": 9, "name": "a", "supercategory": "letters"},
        {"id": 11, "name": "c", "supercategory": ""},
    ]
    assert [(im["id"], im["file_name"], im.get("width"), im.get("height")) for im in doc["images"]] == [
        (12, "x/1.png", 10, 10),
        (13, "x/2.png", 4, 3),
    ]
    anns = doc["annotations"]
    assert len(anns) == 3 and [a["id"] for a in anns] == [1, 2, 3]
    assert anns[0]["bbox"] == [1.0, 2.0, 3.0, 4.0] and anns[0]["area"] == 12.0 and anns[0]["segmentation"] == []
    assert anns[1]["bbox"] == [0.0, 0.0, 4.0, 2.0] and anns[1]["area"] == 4.0
    assert anns[1]["segmentation"] == [[0.0, 0.0, 4.0, 0.0, 4.0, 2.0]]
    assert anns[2]["score"] == 0.5 and anns[2]["attributes"] == {"occluded": True} and "score" not in anns[0]
    assert {a["category_id"] for a in anns} == {9, 10}


def test_write_splits_in_roboflow_folders_with_ids_unique_across_files(tmp_path):
    recs = [
        ImageRecord(name=name, width=8, height=8, split=split, annotations=[Annotation("c", bbox=(0, 0, 2, 2))])
        for name, split in [("a.png", "train"), ("e.png", None), ("sub/b.png", "valid"), ("c.png", "train"), ("d.png", "test")]
    ]
    COCO.write(Dataset(classes=["c"], images=recs), tmp_path, png_writer)
    files = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert files == [
        "annotations.json",
        "e.png",
        "test/_annotations.coco.json",
        "test/d.png",
        "train/_annotations.coco.json",
        "train/a.png",
        "train/c.png",
        "valid/_annotations.coco.json",
        "valid/sub/b.png",
    ]
    docs = [json.loads(p.read_text()) for p in sorted(tmp_path.rglob("*.json"))]
    assert [[im["file_name"] for im in d["images"]] for d in docs] == [["e.png"], ["d.png"], ["a.png", "c.png"], ["sub/b.png"]]
    assert sorted(im["id"] for d in docs for im in d["images"]) == [1, 2, 3, 4, 5]
    assert all(a["image_id"] in {im["id"] for im in d["images"]} for d in docs for a in d["annotations"])
    assert COCO.detect(tmp_path) > 0.9
    ds, problems = read(tmp_path)
    assert problems == []
    assert sorted((r.name, r.split or "") for r in ds.images) == sorted((r.name, r.split or "") for r in recs)


def test_write_renames_records_that_would_share_a_file(tmp_path):
    recs = [
        ImageRecord(name="a.png", width=8, height=8, split="train", annotations=[Annotation("c", bbox=(0, 0, 2, 2))]),
        ImageRecord(name="train/a.png", width=9, height=9),  # unsplit: also dest/train/a.png
        ImageRecord(name="A.PNG", width=10, height=10, split="train"),  # the same file on a case-insensitive disk
    ]
    COCO.write(Dataset(classes=["c"], images=recs), tmp_path, png_writer)
    train = json.loads((tmp_path / "train" / "_annotations.coco.json").read_text())
    unsplit = json.loads((tmp_path / "annotations.json").read_text())
    assert [im["file_name"] for im in train["images"]] == ["a.png", "A__2.PNG"]
    assert [im["file_name"] for im in unsplit["images"]] == ["train/a__1.png"]
    assert (tmp_path / "train" / "a__1.png").is_file() and (tmp_path / "train" / "A__2.PNG").is_file()
    assert recs[1].name == "train/a.png"  # the caller's records are left alone


@pytest.mark.parametrize("split", ["../up", "holdout", "val"])
def test_write_refuses_an_unknown_split_before_writing(tmp_path, split):
    rec = ImageRecord(name="a.png", width=8, height=8, split=split)
    with pytest.raises(InvalidInputError):
        COCO.write(Dataset(images=[rec]), tmp_path / "out", png_writer)
    assert not (tmp_path / "out").exists()


def test_write_probes_images_of_unknown_size(tmp_path):
    def writer(record: ImageRecord, path: Path) -> None:
        path.write_bytes(png_bytes(7, 5))

    rec = ImageRecord(name="a.png", annotations=[Annotation("c", bbox=(0, 0, 2, 2))])
    COCO.write(Dataset(classes=["c"], images=[rec]), tmp_path, writer)
    (image,) = json.loads((tmp_path / "annotations.json").read_text())["images"]
    assert (image["width"], image["height"]) == (7, 5)
    assert rec.width is None  # the caller's record is left alone


def test_write_an_empty_dataset(tmp_path):
    COCO.write(Dataset(classes=["c"]), tmp_path, png_writer)
    doc = json.loads((tmp_path / "annotations.json").read_text())
    assert doc["images"] == [] and doc["annotations"] == [] and doc["categories"][0]["name"] == "c"
    ds, problems = read(tmp_path)
    assert ds.images == [] and ds.classes == ["c"] and problems == []


def test_write_keeps_full_float_precision(tmp_path):
    box = (0.1 + 0.2, 1 / 3, math.pi, math.e + 1)
    rec = ImageRecord(name="a.png", width=8, height=8, annotations=[Annotation("c", bbox=box)])
    COCO.write(Dataset(classes=["c"], images=[rec]), tmp_path, png_writer)
    (ann,) = json.loads((tmp_path / "annotations.json").read_text())["annotations"]
    assert ann["bbox"][:2] == [0.1 + 0.2, 1 / 3]
    ds, _ = read(tmp_path)
    np.testing.assert_allclose(ds.images[0].boxes()[0], box, atol=1e-12)
