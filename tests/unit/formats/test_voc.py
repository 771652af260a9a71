"""Pascal VOC: round trip, LabelImg / devkit / Roboflow layouts, and the bad inputs it must survive."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from tests.strategies import datasets, png_bytes, png_writer
from winnow.core.types import Annotation, Dataset, ImageRecord, Problems, Task
from winnow.errors import FormatError
from winnow.formats.base import _REGISTRY
from winnow.formats.voc import PascalVOC

VOC = PascalVOC()

LABELIMG_XML = """<annotation>
	<folder>images</folder>
	<filename>dog_01.jpg</filename>
	<path>C:\\Users\\ana\\Pictures\\images\\dog_01.jpg</path>
	<source>
		<database>Unknown</database>
	</source>
	<size>
		<width>64</width>
		<height>48</height>
		<depth>3</depth>
	</size>
	<segmented>0</segmented>
	<object>
		<name>dog</name>
		<pose>Unspecified</pose>
		<truncated>0</truncated>
		<difficult>1</difficult>
		<bndbox>
			<xmin>3</xmin>
			<ymin>5</ymin>
			<xmax>40</xmax>
			<ymax>44</ymax>
		</bndbox>
	</object>
	<object>
		<name>ball</name>
		<pose>Unspecified</pose>
		<truncated>1</truncated>
		<difficult>0</difficult>
		<bndbox>
			<xmin>41.5</xmin>
			<ymin>30.25</ymin>
			<xmax>63</xmax>
			<ymax>47</ymax>
		</bndbox>
	</object>
</annotation>
"""


def voc_xml(filename: str, objects: str, width: int = 32, height: int = 24) -> str:
    """A minimal VOC file around ``objects`` (raw ``<object>`` elements)."""
    return (
        f"<annotation><filename>{filename}</filename>"
        f"<size><width>{width}</width><height>{height}</height><depth>3</depth></size>{objects}</annotation>"
    )


def box_object(name: str, xmin: str, ymin: str, xmax: str, ymax: str) -> str:
    return (
        f"<object><name>{name}</name><bndbox><xmin>{xmin}</xmin><ymin>{ymin}</ymin>"
        f"<xmax>{xmax}</xmax><ymax>{ymax}</ymax></bndbox></object>"
    )


def put_png(path: Path, width: int = 32, height: int = 24) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png_bytes(width, height))
    return path


def read(path: Path) -> tuple[Dataset, Problems]:
    problems = Problems()
    return VOC.read(path, problems), problems


def by_name(dataset: Dataset) -> dict[str, ImageRecord]:
    return {r.name: r for r in dataset.images}


# --------------------------------------------------------------------------- round trip


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(datasets(Task.DETECT, splits=True))
def test_round_trip_keeps_names_splits_classes_and_boxes(original: Dataset) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        VOC.write(original, Path(tmp), png_writer)
        problems = Problems()
        back = VOC.read(Path(tmp), problems)
    assert list(problems) == []
    assert [r.name for r in back.images] == sorted(r.name for r in original.images)
    used = {a.label for r in original.images for a in r.annotations}
    assert set(back.classes) == used
    records = by_name(back)
    for record in original.images:
        got = records[record.name]
        assert got.split == record.split
        assert got.tags == []
        assert (got.width, got.height) == (record.width, record.height)
        assert (got.declared_width, got.declared_height) == (record.width, record.height)
        assert [a.label for a in got.annotations] == [a.label for a in record.annotations]
        for a, b in zip(got.annotations, record.annotations):
            assert a.bbox == pytest.approx(b.bbox, abs=1e-6)


def test_round_trip_is_exact_and_writes_integers_as_integers(tmp_path: Path) -> None:
    box = (0.1 + 0.2, 1 / 3, 17.0, 20.0)
    original = Dataset(
        images=[ImageRecord(name="a.png", width=32, height=24, annotations=[Annotation("cat", bbox=box)])],
    )
    VOC.write(original, tmp_path, png_writer)
    text = (tmp_path / "Annotations" / "a.xml").read_text(encoding="utf-8")
    assert "<xmax>17</xmax>" in text and "<ymax>20</ymax>" in text
    assert f"<xmin>{0.1 + 0.2!r}</xmin>" in text
    back, problems = read(tmp_path)
    assert back.images[0].annotations[0].bbox == box
    assert back.images[0].file == tmp_path / "JPEGImages" / "a.png"


def test_names_with_folders_and_shared_stems_round_trip(tmp_path: Path) -> None:
    records = [
        ImageRecord(name="a.png", width=20, height=20, split="train", annotations=[Annotation("x", bbox=(1, 1, 5, 5))]),
        ImageRecord(name="a.jpg", width=20, height=20, split="test", annotations=[Annotation("y", bbox=(2, 2, 6, 6))]),
        ImageRecord(name="sub/dir/b c.png", width=30, height=10, split="valid"),
    ]
    VOC.write(Dataset(images=records), tmp_path, png_writer)
    assert (tmp_path / "Annotations" / "a.xml").is_file()
    assert (tmp_path / "Annotations" / "a.jpg.xml").is_file()
    assert (tmp_path / "ImageSets" / "Main" / "val.txt").read_text() == "sub/dir/b c\n"
    back, problems = read(tmp_path)
    assert list(problems) == []
    got = {r.name: (r.split, [a.label for a in r.annotations]) for r in back.images}
    assert got == {"a.png": ("train", ["x"]), "a.jpg": ("test", ["y"]), "sub/dir/b c.png": ("valid", [])}


def test_writer_keeps_object_attributes(tmp_path: Path) -> None:
    ann = Annotation("car", bbox=(1, 2, 3, 4), attributes={"occluded": True, "difficult": True, "color": "red"})
    VOC.write(Dataset(images=[ImageRecord(name="a.png", width=8, height=8, annotations=[ann])]), tmp_path, png_writer)
    back, _ = read(tmp_path)
    assert back.images[0].annotations[0].attributes == {
        "pose": "Unspecified",
        "truncated": False,
        "difficult": True,
        "occluded": True,
        "color": "red",
    }


# --------------------------------------------------------------------------- real layouts


def test_labelimg_file_reads_exact_values(tmp_path: Path) -> None:
    put_png(tmp_path / "images" / "dog_01.jpg", 64, 48)
    (tmp_path / "images" / "dog_01.xml").write_text(LABELIMG_XML, encoding="utf-8")
    dataset, problems = read(tmp_path)
    assert list(problems) == []
    assert dataset.classes == ["dog", "ball"]
    assert dataset.task is Task.DETECT
    [record] = dataset.images
    assert record.name == "images/dog_01.jpg"
    assert record.file == tmp_path / "images" / "dog_01.jpg"
    assert record.split is None
    assert (record.width, record.height, record.declared_width, record.declared_height) == (64, 48, 64, 48)
    dog, ball = record.annotations
    assert (dog.label, dog.bbox) == ("dog", (3.0, 5.0, 40.0, 44.0))
    assert dog.attributes == {"pose": "Unspecified", "truncated": False, "difficult": True}
    assert (ball.label, ball.bbox) == ("ball", (41.5, 30.25, 63.0, 47.0))
    assert ball.attributes["truncated"] is True


def test_devkit_layout_with_image_sets(tmp_path: Path) -> None:
    kit = tmp_path / "VOCdevkit" / "VOC2007"
    for image_id in ("000001", "000002", "000003"):
        put_png(kit / "JPEGImages" / f"{image_id}.jpg")
        xml = voc_xml(f"{image_id}.jpg", box_object("person", "1", "2", "10", "20"))
        (kit / "Annotations").mkdir(exist_ok=True)
        (kit / "Annotations" / f"{image_id}.xml").write_text(xml)
    put_png(kit / "SegmentationClass" / "000001.png")  # a devkit mask, not an image to import
    sets = kit / "ImageSets" / "Main"
    sets.mkdir(parents=True)
    (sets / "train.txt").write_text("000001\r\n000002\r\n")
    (sets / "val.txt").write_text("000003\n")
    (sets / "person_train.txt").write_text("000001  1\n000003 -1\n")
    dataset, problems = read(tmp_path)
    assert list(problems) == []
    assert {r.name: r.split for r in dataset.images} == {
        "VOCdevkit/VOC2007/000001.jpg": "train",
        "VOCdevkit/VOC2007/000002.jpg": "train",
        "VOCdevkit/VOC2007/000003.jpg": "valid",
    }
    # the devkit folder itself as the import root: names relative to JPEGImages
    dataset, _ = read(kit)
    assert sorted(r.name for r in dataset.images) == ["000001.jpg", "000002.jpg", "000003.jpg"]


def test_devkit_image_without_xml_keeps_its_image_set_split(tmp_path: Path) -> None:
    put_png(tmp_path / "JPEGImages" / "1.jpg")
    put_png(tmp_path / "JPEGImages" / "2.jpg")
    (tmp_path / "Annotations").mkdir()
    (tmp_path / "Annotations" / "1.xml").write_text(voc_xml("1.jpg", box_object("a", "1", "1", "2", "2")))
    (tmp_path / "ImageSets" / "Main").mkdir(parents=True)
    (tmp_path / "ImageSets" / "Main" / "test.txt").write_text("1\n2\n")
    dataset, problems = read(tmp_path)
    got = {r.name: (r.split, len(r.annotations)) for r in dataset.images}
    assert got == {"1.jpg": ("test", 1), "2.jpg": ("test", 0)}
    assert [p.level for p in problems] == ["warning"] and dataset.images[1].tags == ["unlabeled"]


def test_roboflow_split_folders(tmp_path: Path) -> None:
    for split in ("train", "valid", "test"):
        put_png(tmp_path / split / f"{split}_a_jpg.rf.0a1b.jpg")
        xml = voc_xml(f"{split}_a_jpg.rf.0a1b.jpg", box_object("cat", "0", "0", "5.5", "6"))
        (tmp_path / split / f"{split}_a_jpg.rf.0a1b.xml").write_text(xml)
    dataset, problems = read(tmp_path)
    assert list(problems) == []
    assert {r.name: r.split for r in dataset.images} == {
        "train_a_jpg.rf.0a1b.jpg": "train",
        "valid_a_jpg.rf.0a1b.jpg": "valid",
        "test_a_jpg.rf.0a1b.jpg": "test",
    }
    assert all(r.annotations[0].bbox == (0.0, 0.0, 5.5, 6.0) for r in dataset.images)


def test_image_found_by_stem_when_filename_is_wrong(tmp_path: Path) -> None:
    put_png(tmp_path / "photo.png")
    (tmp_path / "photo.xml").write_text(voc_xml("renamed-since.jpg", box_object("a", "1", "1", "2", "2")))
    dataset, problems = read(tmp_path)
    assert [r.name for r in dataset.images] == ["photo.png"]
    assert list(problems) == []


def test_unlisted_image_is_kept_tagged_unlabeled(tmp_path: Path) -> None:
    put_png(tmp_path / "a.png")
    put_png(tmp_path / "b.png")
    put_png(tmp_path / "c.png")
    (tmp_path / "a.xml").write_text(voc_xml("a.png", box_object("a", "1", "1", "2", "2")))
    dataset, problems = read(tmp_path)
    assert {r.name: (len(r.annotations), r.tags) for r in dataset.images} == {
        "a.png": (1, []),
        "b.png": (0, ["unlabeled"]),
        "c.png": (0, ["unlabeled"]),
    }
    [warning] = problems.warnings
    assert warning.file == str(tmp_path) and "2 image(s)" in warning.message and "b.png, c.png" in warning.message
    assert problems.errors == []


def test_unlabeled_and_empty_records_stay_apart_through_a_round_trip(tmp_path: Path) -> None:
    records = [
        ImageRecord(name="empty.png", width=8, height=8, split="train"),
        ImageRecord(name="sub/never.png", width=8, height=8, split="test", tags=["unlabeled"]),
        ImageRecord(name="sub/never.jpg", width=8, height=8, split="valid", tags=["unlabeled"]),
    ]
    VOC.write(Dataset(images=records), tmp_path, png_writer)
    assert sorted(p.name for p in (tmp_path / "Annotations").rglob("*.xml")) == ["empty.xml"]
    back, _ = read(tmp_path)
    assert {r.name: (r.split, r.tags) for r in back.images} == {
        "empty.png": ("train", []),
        "sub/never.png": ("test", ["unlabeled"]),
        "sub/never.jpg": ("valid", ["unlabeled"]),
    }


def test_declared_size_mismatch_is_a_warning(tmp_path: Path) -> None:
    put_png(tmp_path / "a.png", 24, 32)
    (tmp_path / "a.xml").write_text(voc_xml("a.png", box_object("a", "1", "1", "2", "2"), width=32, height=24))
    dataset, problems = read(tmp_path)
    record = dataset.images[0]
    assert (record.width, record.height, record.declared_width, record.declared_height) == (24, 32, 32, 24)
    assert len(problems.warnings) == 1 and "32x24" in problems.warnings[0].message


def test_registered_and_detected(tmp_path: Path) -> None:
    assert _REGISTRY["voc"] is PascalVOC  # get_format needs every built-in format module
    put_png(tmp_path / "JPEGImages" / "a.jpg")
    (tmp_path / "Annotations").mkdir()
    (tmp_path / "Annotations" / "a.xml").write_text(voc_xml("a.jpg", ""))
    assert VOC.detect(tmp_path) >= 0.9
    assert VOC.detect(tmp_path / "Annotations" / "a.xml") >= 0.9


def test_detect_refuses_other_xml_and_json(tmp_path: Path) -> None:
    cvat = '<?xml version="1.0"?><annotations><image id="0" name="a.jpg"/></annotations>'
    (tmp_path / "annotations.xml").write_text(cvat)
    (tmp_path / "coco.json").write_text('{"images": [], "annotations": []}')
    assert VOC.detect(tmp_path) == 0
    assert VOC.detect(tmp_path / "missing") == 0


# --------------------------------------------------------------------------- bad inputs


def test_xxe_is_refused_and_other_files_still_read(tmp_path: Path) -> None:
    put_png(tmp_path / "evil.png")
    put_png(tmp_path / "good.png")
    xxe = (
        '<?xml version="1.0"?>\n<!DOCTYPE foo [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>\n'
        + voc_xml("evil.png", "<object><name>&xxe;</name><bndbox><xmin>1</xmin><ymin>1</ymin>"
                  "<xmax>2</xmax><ymax>2</ymax></bndbox></object>")
    )
    (tmp_path / "evil.xml").write_text(xxe)
    (tmp_path / "good.xml").write_text(voc_xml("good.png", box_object("ok", "1", "1", "2", "2")))
    dataset, problems = read(tmp_path)
    refused = [p for p in problems.errors if p.file.endswith("evil.xml")]
    assert len(refused) == 1 and refused[0].message.startswith("refused: XML with a DTD/entity")
    assert dataset.classes == ["ok"]
    # the refused file's image is left out: importing it unlabelled would pass it off as background
    assert {r.name: [a.label for a in r.annotations] for r in dataset.images} == {"good.png": ["ok"]}
    assert problems.warnings == []


def test_billion_laughs_is_refused(tmp_path: Path) -> None:
    put_png(tmp_path / "bomb.png")
    entities = '<!ENTITY lol "lol">' + "".join(
        f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">' for i in range(1, 10)
    )
    body = voc_xml("bomb.png", "<object><name>&lol9;</name></object>")
    bomb = f'<?xml version="1.0"?><!DOCTYPE lolz [{entities}]>' + body
    (tmp_path / "bomb.xml").write_text(bomb)
    dataset, problems = read(tmp_path / "bomb.xml")
    assert dataset.images == []
    assert [p.message[:8] for p in problems.errors] == ["refused:"]


def test_malformed_xml_names_file_and_line(tmp_path: Path) -> None:
    put_png(tmp_path / "a.png")
    put_png(tmp_path / "b.png")
    (tmp_path / "a.xml").write_text("<annotation>\n<filename>a.png</filename>\n<object><name>x</name>\n</annotation>\n")
    (tmp_path / "b.xml").write_text(voc_xml("b.png", box_object("fine", "1", "1", "3", "3")))
    dataset, problems = read(tmp_path)
    [error] = problems.errors
    assert error.file == str(tmp_path / "a.xml")
    assert error.where.startswith("line 4") and error.message.startswith("malformed XML")
    assert dataset.classes == ["fine"]


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        ("<object><name>cat</name></object>", "has no <bndbox>"),
        (box_object("cat", "1", "1", "abc", "3"), "<xmax> is not a finite number: 'abc'"),
        (box_object("cat", "nan", "1", "4", "3"), "<xmin> is not a finite number: 'nan'"),
        (box_object("cat", "1", "1", "inf", "3"), "<xmax> is not a finite number"),
        (box_object("cat", "5", "1", "5", "3"), "empty or inverted box"),
        (box_object("cat", "1", "4", "5", "3"), "empty or inverted box"),
        (box_object("", "1", "1", "5", "3"), "has no <name>"),
        (
            "<object><name>cat</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>2</xmax></bndbox></object>",
            "has no <ymax>",
        ),
    ],
)
def test_bad_object_is_skipped_and_reported(tmp_path: Path, obj: str, expected: str) -> None:
    put_png(tmp_path / "a.png")
    (tmp_path / "a.xml").write_text(voc_xml("a.png", box_object("dog", "1", "1", "4", "4") + obj))
    dataset, problems = read(tmp_path)
    [error] = problems.errors
    assert expected in error.message
    assert error.where == "object 2" and error.record == "a.png"
    assert [a.label for a in dataset.images[0].annotations] == ["dog"]


def test_missing_image_is_reported_and_skipped(tmp_path: Path) -> None:
    put_png(tmp_path / "b.png")
    (tmp_path / "a.xml").write_text(voc_xml("a.png", box_object("x", "1", "1", "2", "2")))
    (tmp_path / "b.xml").write_text(voc_xml("b.png", box_object("y", "1", "1", "2", "2")))
    dataset, problems = read(tmp_path)
    [error] = problems.errors
    assert "image file not found: 'a.png'" in error.message and error.file.endswith("a.xml")
    assert [r.name for r in dataset.images] == ["b.png"]


def test_filename_cannot_leave_the_root(tmp_path: Path) -> None:
    outside = put_png(tmp_path / "secret.png")
    root = tmp_path / "data"
    root.mkdir()
    (root / "a.xml").write_text(voc_xml("../secret.png", box_object("x", "1", "1", "2", "2")))
    (root / "b.xml").write_text(voc_xml(str(outside), box_object("x", "1", "1", "2", "2")))
    dataset, problems = read(root)
    assert dataset.images == []
    assert len(problems.errors) == 2 and all("image file not found" in p.message for p in problems.errors)


def test_symlinked_image_outside_the_root_is_not_used(tmp_path: Path) -> None:
    outside = put_png(tmp_path / "secret.png")
    root = tmp_path / "data"
    root.mkdir()
    (root / "a.png").symlink_to(outside)
    (root / "a.xml").write_text(voc_xml("a.png", box_object("x", "1", "1", "2", "2")))
    dataset, problems = read(root)
    assert dataset.images == [] and len(problems.errors) == 1


def test_other_xml_is_skipped_with_a_warning(tmp_path: Path) -> None:
    put_png(tmp_path / "a.png")
    (tmp_path / "a.xml").write_text(voc_xml("a.png", box_object("x", "1", "1", "2", "2")))
    (tmp_path / "annotations.xml").write_text("<annotations><meta/></annotations>")
    dataset, problems = read(tmp_path)
    assert [r.name for r in dataset.images] == ["a.png"]
    assert [p.file for p in problems.warnings] == [str(tmp_path / "annotations.xml")]


def test_empty_folder_is_a_format_error(tmp_path: Path) -> None:
    with pytest.raises(FormatError, match="no .xml annotation file"):
        read(tmp_path)


def test_writer_takes_an_unknown_size_from_the_written_image(tmp_path: Path) -> None:
    def writer(record: ImageRecord, path: Path) -> None:
        path.write_bytes(png_bytes(30, 20))

    record = ImageRecord(name="a.png", annotations=[Annotation("x", bbox=(1, 1, 2, 2))])
    VOC.write(Dataset(images=[record]), tmp_path, writer)
    text = (tmp_path / "Annotations" / "a.xml").read_text()
    assert "<width>30</width>" in text and "<height>20</height>" in text
