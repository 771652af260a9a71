"""Box CSV: round trip, a Roboflow export, encodings and quoting, bad rows and headers."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from tests.strategies import datasets, png_bytes, png_writer
from winnow.core.types import Annotation, Dataset, ImageRecord, Problems, Task
from winnow.errors import FormatError
from winnow.formats.base import _REGISTRY
from winnow.formats.csv_boxes import BoxCSV

CSV = BoxCSV()
HEADER = "filename,width,height,class,xmin,ymin,xmax,ymax\n"

# As Roboflow's "Tensorflow Object Detection CSV" export writes it (one file per split folder).
ROBOFLOW_TRAIN = (
    HEADER
    + "car_01_jpg.rf.5e1c7a.jpg,416,416,car,12,40,200,310\n"
    + "car_01_jpg.rf.5e1c7a.jpg,416,416,truck,210,5,415,416\n"
    + "car_02_jpg.rf.a0b1c2.jpg,416,416,car,0,0,100.5,99.25\n"
)


def put_png(path: Path, width: int = 416, height: int = 416) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png_bytes(width, height))
    return path


def put_csv(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return path


def read(path: Path) -> tuple[Dataset, Problems]:
    problems = Problems()
    return CSV.read(path, problems), problems


# --------------------------------------------------------------------------- round trip


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(datasets(Task.DETECT, splits=True))
def test_round_trip_keeps_names_splits_classes_and_boxes(original: Dataset) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        CSV.write(original, Path(tmp), png_writer)
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
        assert (got.declared_width, got.declared_height) == (record.width, record.height)
        assert [a.label for a in got.annotations] == [a.label for a in record.annotations]
        for a, b in zip(got.annotations, record.annotations):
            assert a.bbox == pytest.approx(b.bbox, abs=1e-6)


def test_writer_rows_numbers_and_images_without_boxes(tmp_path: Path) -> None:
    records = [
        ImageRecord(name="a, \"quoted\".png", width=20, height=10,
                    annotations=[Annotation("cat", bbox=(0.1 + 0.2, 2.0, 17.0, 9.0))]),
        ImageRecord(name="sub/empty.png", width=20, height=10),
    ]
    CSV.write(Dataset(images=records), tmp_path, png_writer)
    text = (tmp_path / "_annotations.csv").read_text(encoding="utf-8")
    assert text == (
        HEADER
        + f'"a, ""quoted"".png",20,10,cat,{0.1 + 0.2!r},2,17,9\n'
        + "sub/empty.png,20,10,,,,,\n"
    )
    back, problems = read(tmp_path)
    assert list(problems) == []
    assert [r.name for r in back.images] == ["a, \"quoted\".png", "sub/empty.png"]
    assert back.images[0].annotations[0].bbox == (0.1 + 0.2, 2.0, 17.0, 9.0)
    assert back.images[1].annotations == []


def test_box_values_round_trip_exactly(tmp_path: Path) -> None:
    box = (1 / 3, 2 / 7, 10.5, 9.000000000000002)
    CSV.write(Dataset(images=[ImageRecord(name="a.png", width=20, height=10,
                                          annotations=[Annotation("x", bbox=box)])]), tmp_path, png_writer)
    back, _ = read(tmp_path)
    assert back.images[0].annotations[0].bbox == box


# --------------------------------------------------------------------------- real files


def test_roboflow_export_reads_exact_values(tmp_path: Path) -> None:
    put_png(tmp_path / "train" / "car_01_jpg.rf.5e1c7a.jpg")
    put_png(tmp_path / "train" / "car_02_jpg.rf.a0b1c2.jpg")
    put_csv(tmp_path / "train" / "_annotations.csv", ROBOFLOW_TRAIN)
    put_png(tmp_path / "test" / "car_09_jpg.rf.ffffff.jpg")
    put_csv(tmp_path / "test" / "_annotations.csv", HEADER + "car_09_jpg.rf.ffffff.jpg,416,416,car,1,2,3,4\n")
    dataset, problems = read(tmp_path)
    assert list(problems) == []
    assert dataset.classes == ["car", "truck"] and dataset.task is Task.DETECT
    records = {r.name: r for r in dataset.images}
    assert {n: r.split for n, r in records.items()} == {
        "car_01_jpg.rf.5e1c7a.jpg": "train",
        "car_02_jpg.rf.a0b1c2.jpg": "train",
        "car_09_jpg.rf.ffffff.jpg": "test",
    }
    first = records["car_01_jpg.rf.5e1c7a.jpg"]
    assert first.file == tmp_path / "train" / "car_01_jpg.rf.5e1c7a.jpg"
    assert (first.width, first.height, first.declared_width, first.declared_height) == (416, 416, 416, 416)
    assert [(a.label, a.bbox) for a in first.annotations] == [
        ("car", (12.0, 40.0, 200.0, 310.0)),
        ("truck", (210.0, 5.0, 415.0, 416.0)),
    ]
    assert records["car_02_jpg.rf.a0b1c2.jpg"].annotations[0].bbox == (0.0, 0.0, 100.5, 99.25)


def test_bom_crlf_reordered_columns_and_quoted_names(tmp_path: Path) -> None:
    put_png(tmp_path / "my, photo.png", 50, 50)
    text = (
        "\ufeffClass,Filename,xmin,ymin,xmax,ymax,Width,Height,score\r\n"
        '"big, red car","my, photo.png",1,2,30,40,50,50,0.9\r\n'
        "\r\n"
    )
    put_csv(tmp_path / "labels.csv", text)
    dataset, problems = read(tmp_path)
    assert list(problems) == []
    [record] = dataset.images
    assert record.name == "my, photo.png"
    assert [(a.label, a.bbox) for a in record.annotations] == [("big, red car", (1.0, 2.0, 30.0, 40.0))]


def test_line_numbers_count_quoted_newlines(tmp_path: Path) -> None:
    put_png(tmp_path / "a.png", 50, 50)
    text = (
        HEADER
        + 'a.png,50,50,"two\nlines",1,2,3,4\n'  # lines 2-3
        + 'a.png,50,50,"bad\nrow",1,2,x,4\n'  # lines 4-5: reported at the line it starts on
        + "a.png,50,50,cat,1,2,y,4\n"  # line 6
    )
    put_csv(tmp_path / "_annotations.csv", text)
    dataset, problems = read(tmp_path)
    assert [a.label for a in dataset.images[0].annotations] == ["two\nlines"]
    assert [(p.where, p.message) for p in problems.errors] == [
        ("line 4", "xmax is not a finite number: 'x'"),
        ("line 6", "xmax is not a finite number: 'y'"),
    ]


def test_single_named_file(tmp_path: Path) -> None:
    put_png(tmp_path / "valid" / "a.png", 10, 10)
    put_csv(tmp_path / "valid" / "boxes.csv", HEADER + "a.png,10,10,x,1,1,2,2\n")
    dataset, _ = read(tmp_path / "valid" / "boxes.csv")
    assert [(r.name, r.split) for r in dataset.images] == [("a.png", "valid")]


def test_registered_and_detected(tmp_path: Path) -> None:
    assert _REGISTRY["csv"] is BoxCSV
    put_csv(tmp_path / "rf" / "train" / "_annotations.csv", ROBOFLOW_TRAIN)
    put_csv(tmp_path / "any" / "boxes.csv", ROBOFLOW_TRAIN)
    put_csv(tmp_path / "other" / "_annotations.csv", "image,label\na.jpg,cat\n")
    put_csv(tmp_path / "yolo" / "a.txt", "0 0.5 0.5 0.1 0.1\n")
    assert CSV.detect(tmp_path / "rf") >= 0.9
    assert CSV.detect(tmp_path / "rf" / "train" / "_annotations.csv") >= 0.9
    assert CSV.detect(tmp_path / "any") >= 0.9
    assert CSV.detect(tmp_path / "other") == 0
    assert CSV.detect(tmp_path / "yolo") == 0


# --------------------------------------------------------------------------- bad inputs


def test_missing_columns_in_a_named_file_is_a_format_error(tmp_path: Path) -> None:
    put_csv(tmp_path / "_annotations.csv", "filename,class,x,y\na.png,cat,1,2\n")
    with pytest.raises(FormatError) as info:
        read(tmp_path)
    assert info.value.file == str(tmp_path / "_annotations.csv")
    assert info.value.message == "header lacks required column(s): width, height, xmin, ymin, xmax, ymax"


def test_other_csv_without_our_header_is_ignored(tmp_path: Path) -> None:
    put_png(tmp_path / "a.png", 10, 10)
    put_csv(tmp_path / "_annotations.csv", HEADER + "a.png,10,10,x,1,1,2,2\n")
    put_csv(tmp_path / "metadata.csv", "id,author\n1,me\n")
    dataset, problems = read(tmp_path)
    assert [r.name for r in dataset.images] == ["a.png"] and list(problems) == []


def test_no_csv_is_a_format_error(tmp_path: Path) -> None:
    put_csv(tmp_path / "metadata.csv", "id,author\n1,me\n")
    with pytest.raises(FormatError, match="no CSV with the columns"):
        read(tmp_path)


def test_not_utf8_is_a_format_error(tmp_path: Path) -> None:
    put_csv(tmp_path / "_annotations.csv", HEADER.encode() + "caf\xe9.png,1,1,x,0,0,1,1\n".encode("latin-1"))
    with pytest.raises(FormatError, match="not UTF-8"):
        read(tmp_path)


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        ("a.png,10,10,cat,1,1,2\n", "expected 8 columns as in the header, got 7"),
        ("a.png,10,10,cat,1,1,2,2,9\n", "expected 8 columns as in the header, got 9"),
        ("a.png,10,10,cat,one,1,2,2\n", "xmin is not a finite number: 'one'"),
        ("a.png,10,10,cat,1,NaN,2,2\n", "ymin is not a finite number: 'NaN'"),
        ("a.png,10,10,cat,1,1,inf,2\n", "xmax is not a finite number: 'inf'"),
        ("a.png,10,10,cat,1,1,2,\n", "ymax is not a finite number: ''"),
        ("a.png,10,10,cat,3,1,3,2\n", "empty or inverted box"),
        ("a.png,10,10,cat,1,5,2,2\n", "empty or inverted box"),
        ("a.png,10,10,,1,1,2,2\n", "row has coordinates but no class"),
        (",10,10,cat,1,1,2,2\n", "row has no filename"),
    ],
)
def test_bad_row_is_skipped_and_names_its_line(tmp_path: Path, row: str, expected: str) -> None:
    put_png(tmp_path / "a.png", 10, 10)
    put_csv(tmp_path / "_annotations.csv", HEADER + "a.png,10,10,dog,1,1,4,4\n" + row + "a.png,10,10,cow,2,2,5,5\n")
    dataset, problems = read(tmp_path)
    [error] = problems.errors
    assert error.message == expected or expected in error.message
    assert error.where == "line 3"
    assert [a.label for a in dataset.images[0].annotations] == ["dog", "cow"]


def test_missing_image_is_reported_once(tmp_path: Path) -> None:
    put_png(tmp_path / "a.png", 10, 10)
    text = HEADER + "gone.png,10,10,x,1,1,2,2\n" + "gone.png,10,10,y,1,1,2,2\n" + "a.png,10,10,z,1,1,2,2\n"
    put_csv(tmp_path / "_annotations.csv", text)
    dataset, problems = read(tmp_path)
    assert [(p.where, p.message) for p in problems.errors] == [("line 2", "image file not found: 'gone.png'")]
    assert [r.name for r in dataset.images] == ["a.png"]


def test_filename_cannot_leave_the_root(tmp_path: Path) -> None:
    put_png(tmp_path / "secret.png", 10, 10)
    put_csv(tmp_path / "data" / "_annotations.csv", HEADER + "../secret.png,10,10,x,1,1,2,2\n")
    dataset, problems = read(tmp_path / "data")
    assert dataset.images == [] and "image file not found" in problems.errors[0].message


def test_sizes_bad_or_disagreeing_are_warnings(tmp_path: Path) -> None:
    put_png(tmp_path / "a.png", 10, 10)
    text = HEADER + "a.png,ten,10,x,1,1,2,2\n" + "a.png,10,10,y,1,1,2,2\n" + "a.png,12,10,z,1,1,2,2\n"
    put_csv(tmp_path / "_annotations.csv", text)
    dataset, problems = read(tmp_path)
    assert problems.errors == []
    assert [p.message for p in problems.warnings] == [
        "width is not a positive integer: 'ten'; size ignored",
        "rows declare different sizes (10x10, 12x10); the first is kept",
    ]
    record = dataset.images[0]
    assert (record.declared_width, record.declared_height) == (10, 10)
    assert [a.label for a in record.annotations] == ["x", "y", "z"]


def test_unlisted_image_is_kept_tagged_unlabeled(tmp_path: Path) -> None:
    put_png(tmp_path / "a.png", 10, 10)
    put_png(tmp_path / "b.png", 10, 10)
    put_csv(tmp_path / "_annotations.csv", HEADER + "a.png,10,10,x,1,1,2,2\n")
    dataset, problems = read(tmp_path)
    got = {r.name: (len(r.annotations), r.tags) for r in dataset.images}
    assert got == {"a.png": (1, []), "b.png": (0, ["unlabeled"])}
    [warning] = problems.warnings
    assert "1 image(s) listed in no CSV annotation file" in warning.message and "b.png" in warning.message


def test_unlabeled_and_empty_records_stay_apart_through_a_round_trip(tmp_path: Path) -> None:
    records = [
        ImageRecord(name="empty.png", width=8, height=8, split="train"),
        ImageRecord(name="sub/never.png", width=8, height=8, split="test", tags=["unlabeled"]),
    ]
    CSV.write(Dataset(images=records), tmp_path, png_writer)
    assert (tmp_path / "train" / "_annotations.csv").read_text() == HEADER + "empty.png,8,8,,,,,\n"
    assert (tmp_path / "test" / "_annotations.csv").read_text() == HEADER
    back, _ = read(tmp_path)
    assert {r.name: (r.split, r.tags) for r in back.images} == {
        "empty.png": ("train", []),
        "sub/never.png": ("test", ["unlabeled"]),
    }


def test_writer_takes_an_unknown_size_from_the_written_image(tmp_path: Path) -> None:
    def writer(record: ImageRecord, path: Path) -> None:
        path.write_bytes(png_bytes(30, 20))

    CSV.write(Dataset(images=[ImageRecord(name="a.png")]), tmp_path, writer)
    assert (tmp_path / "_annotations.csv").read_text() == HEADER + "a.png,30,20,,,,,\n"


def test_field_over_the_csv_size_limit_is_a_format_error(tmp_path: Path) -> None:
    huge = '"' + "x" * 200_000 + '",1,1,x,1,1,2,2\n'
    put_csv(tmp_path / "_annotations.csv", HEADER + "a.png,10,10,x,1,1,2,2\n" + huge)
    with pytest.raises(FormatError, match="unreadable CSV") as info:
        read(tmp_path)
    assert info.value.where == "line 3"
