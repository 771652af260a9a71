"""Datasets written by other tools import, and survive a trip through every other format.

The acceptance: "A real dataset written by other tools (e.g. a VOC folder from LabelImg, a COCO
file from CVAT, a YOLO export from Roboflow) imports, exports to each other format and back with
the same images and boxes."

Each fixture below is a faithful replica, built inside the test (no binary fixtures), of what one
tool writes:

* **LabelImg** (Pascal VOC): the XML beside its image, ``<folder>``, ``<path>`` holding the
  labeller's absolute path (POSIX and Windows), ``<source><database>Unknown``, integer
  coordinates, ``<segmented>0``, ``<truncated>1`` on boxes touching the edge, an image saved
  with no boxes, an image never labelled (no XML), a grayscale image (``<depth>1``), a name with
  a space, a sub-folder, and one ``<filename>`` without its extension (old LabelImg versions).
* **CVAT "COCO 1.0"**: ``annotations/instances_default.json`` + ``images/default/``, ``licenses``
  and ``info`` present, category ids from 1, ``attributes: {occluded, rotation}``, boxes with
  ``segmentation: []``, polygons, and an ``iscrowd`` mask as RLE with *uncompressed* counts.
* **Roboflow "YOLOv8"**: ``data.yaml`` with ``train: ../train/images`` / ``val: ../valid/images``
  / ``test: ../test/images``, ``nc``, ``names`` and the ``roboflow:`` block; ``train``, ``valid``
  and ``test`` folders of ``images`` + ``labels``; ``<stem>_jpg.rf.<hash>.jpg`` names; an empty
  label file (a null image); the two README files.
* **Roboflow "CreateML"** and **"Tensorflow Object Detection CSV"**: ``<split>/_annotations.*``
  with the images beside; the CSV leaves null images out (they come back tagged ``unlabeled``).
* **labelme 5.x**: one JSON per image with ``version``, ``flags``, ``imageData`` (base64 or null),
  ``imageHeight``/``imageWidth``; rectangles (one drawn right-to-left), polygons, two polygons of
  one object sharing a ``group_id``, a ``point`` shape (not read: reported), a JSON in an
  ``annotations/`` folder pointing at ``..\\images\\x.jpg``, and a JPEG with EXIF orientation 6
  labelled in its displayed frame (labelme applies the orientation).

Each is imported through the CLI with the format **detected**; counts and boxes are checked
against the ground truth the fixture wrote (converted to ``xyxy`` absolute pixels). Then the
project is exported to every format that can hold its task, and each export is imported (format
detected again) into a fresh project, which must have the same images, the same class multiset
per image and the same boxes within 1e-6 px.

Name mapping: images are matched by file basename. No writer renames a file unless two records
would collide (``<stem>__<k><ext>``, not the case here), so names and splits come back exactly:
``name`` is relative to the split folder (Roboflow layouts), to ``JPEGImages`` (VOC devkit) or to
the images folder of the split (YOLO), and the writers put the name's sub-folders back under those.
The ``unlabeled`` tag (an image no annotation file lists) survives every format but COCO, which
lists every image; polygons and masks become their box in box-only formats, so only boxes (and
classes) are compared.
"""

from __future__ import annotations

import base64
import io
import json
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from winnow.cli.main import app
from winnow.formats import available, get_format
from winnow.services.datasets import load_dataset
from winnow.store.db import Store

runner = CliRunner()
TOL = 1e-6

Box = tuple[float, float, float, float]
#: basename -> (displayed width, displayed height, split, [(label, xyxy box), ...])
Truth = dict[str, tuple[int, int, "str | None", list[tuple[str, Box]]]]


# ------------------------------------------------------------------------------------ images


_colour = iter(range(10_000))


def put_image(
    path: Path, width: int, height: int, *, kind: str = "JPEG", orientation: int | None = None, mode: str = "RGB"
) -> bytes:
    """Write an image *displayed* as ``width x height``; with orientation 5-8 it is stored rotated.

    Every image gets its own colour, so no two files share their bytes.
    """
    raw = (height, width) if orientation in (5, 6, 7, 8) else (width, height)
    n = next(_colour)
    colour = (n * 37 % 256, n * 91 % 256, n * 53 % 256) if mode == "RGB" else n * 29 % 256
    im = Image.new(mode, raw, colour)
    im.putpixel((0, 0), (255, 255, 255) if mode == "RGB" else 255)
    buf = io.BytesIO()
    kwargs = {}
    if orientation is not None:
        exif = Image.Exif()
        exif[0x0112] = orientation
        kwargs["exif"] = exif.tobytes()
    im.save(buf, kind, **kwargs)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buf.getvalue())
    return buf.getvalue()


# ------------------------------------------------------------------------------------ LabelImg


def labelimg_xml(folder: str, filename: str, path: str, size: tuple[int, int, int], objects: list[tuple]) -> str:
    """The XML LabelImg's ``pascal_voc_io.py`` writes (tabs, its element order)."""
    w, h, depth = size
    out = [
        "<annotation>",
        f"\t<folder>{folder}</folder>",
        f"\t<filename>{filename}</filename>",
        f"\t<path>{path}</path>",
        "\t<source>",
        "\t\t<database>Unknown</database>",
        "\t</source>",
        "\t<size>",
        f"\t\t<width>{w}</width>",
        f"\t\t<height>{h}</height>",
        f"\t\t<depth>{depth}</depth>",
        "\t</size>",
        "\t<segmented>0</segmented>",
    ]
    for label, (x1, y1, x2, y2) in objects:
        truncated = int(x1 <= 0 or y1 <= 0 or x2 >= w or y2 >= h)  # what LabelImg sets
        out += [
            "\t<object>",
            f"\t\t<name>{label}</name>",
            "\t\t<pose>Unspecified</pose>",
            f"\t\t<truncated>{truncated}</truncated>",
            "\t\t<difficult>0</difficult>",
            "\t\t<bndbox>",
            f"\t\t\t<xmin>{x1}</xmin>",
            f"\t\t\t<ymin>{y1}</ymin>",
            f"\t\t\t<xmax>{x2}</xmax>",
            f"\t\t\t<ymax>{y2}</ymax>",
            "\t\t</bndbox>",
            "\t</object>",
        ]
    out.append("</annotation>")
    return "\n".join(out) + "\n"


def make_labelimg(root: Path) -> tuple[Path, Truth]:
    """A folder a LabelImg user worked in: images with their XML beside them."""
    pets = root / "pets"
    truth: Truth = {}
    items = [
        # (relative image path, w, h, kind, mode, objects, labeller's path, filename as written)
        ("dog_01.jpg", 320, 240, "JPEG", "RGB", [("dog", (48, 40, 195, 171)), ("cat", (200, 10, 320, 120))],
         "/home/alice/datasets/pets/dog_01.jpg", "dog_01.jpg"),
        ("cat 02.jpg", 200, 300, "JPEG", "RGB", [("cat", (0, 0, 150, 299)), ("cat", (10, 20, 30, 40)),
                                                  ("person", (100, 150, 200, 300))],
         "C:\\Users\\bob\\Pictures\\pets\\cat 02.jpg", "cat 02.jpg"),
        ("bird.png", 256, 256, "PNG", "L", [("bird", (12, 13, 120, 200))],
         "/home/alice/datasets/pets/bird.png", "bird.png"),
        ("empty_yard.jpg", 160, 120, "JPEG", "RGB", [], "/home/alice/datasets/pets/empty_yard.jpg", "empty_yard.jpg"),
        ("batch2/dog_07.jpg", 300, 200, "JPEG", "RGB", [("dog", (1, 2, 299, 198))],
         "/home/alice/datasets/pets/batch2/dog_07.jpg", "dog_07"),  # old LabelImg: no extension
    ]
    for rel, w, h, kind, mode, objects, path, filename in items:
        image = pets / rel
        put_image(image, w, h, kind=kind, mode=mode)
        xml = labelimg_xml(image.parent.name, filename, path, (w, h, 1 if mode == "L" else 3), objects)
        image.with_suffix(".xml").write_text(xml, encoding="utf-8")
        truth[Path(rel).name] = (w, h, None, [(lab, tuple(map(float, box))) for lab, box in objects])
    # opened in LabelImg but never saved: no XML, imported as unlabeled
    put_image(pets / "not_done_yet.jpg", 180, 100)
    truth["not_done_yet.jpg"] = (180, 100, None, [])
    return pets, truth


# ------------------------------------------------------------------------------------ CVAT COCO


def rle_rectangle(height: int, width: int, x0: int, y0: int, x1: int, y1: int) -> list[int]:
    """Uncompressed COCO RLE counts (column-major, starting with a 0-run) of a filled rectangle."""
    counts: list[int] = []
    current, run = 0, 0
    for x in range(width):
        for y in range(height):
            value = int(x0 <= x < x1 and y0 <= y < y1)
            if value == current:
                run += 1
            else:
                counts.append(run)
                current, run = value, 1
    counts.append(run)
    return counts


def make_cvat_coco(root: Path) -> tuple[Path, Truth, dict[str, int]]:
    """A CVAT "COCO 1.0" export (with images): annotations/instances_default.json + images/default/."""
    base = root / "task_street-2024_01_05_coco 1.0"
    truth: Truth = {}
    images = [(1, "frame_000000.jpg", 320, 240, "JPEG"), (2, "frame_000001.png", 300, 200, "PNG"),
              (3, "frame_000002.jpg", 240, 180, "JPEG")]
    for _, name, w, h, kind in images:
        put_image(base / "images" / "default" / name, w, h, kind=kind)
        truth[name] = (w, h, None, [])
    categories = ["car", "pedestrian", "traffic light"]
    anns: list[dict] = []
    kinds = Counter()

    def add(image_id: int, cat: str, bbox: list[float], segmentation, iscrowd: int = 0, area: float | None = None):
        anns.append({
            "id": len(anns) + 1, "image_id": image_id, "category_id": categories.index(cat) + 1,
            "segmentation": segmentation, "area": area if area is not None else bbox[2] * bbox[3],
            "bbox": bbox, "iscrowd": iscrowd, "attributes": {"occluded": len(anns) % 2 == 1, "rotation": 0.0},
        })
        [name] = [n for i, n, *_ in images if i == image_id]
        boxes = truth[name][3]
        x, y, bw, bh = bbox
        boxes.append((cat, (x, y, x + bw, y + bh)))

    # a rectangle: CVAT writes an empty segmentation
    add(1, "car", [12.34, 50.5, 100.16, 60.25], [])
    add(1, "traffic light", [290.0, 3.75, 12.5, 30.0], [])
    # polygons: bbox is the points' bounds
    poly = [150.5, 120.25, 210.75, 118.0, 230.0, 200.5, 160.125, 210.0]
    xs, ys = poly[0::2], poly[1::2]
    add(1, "pedestrian", [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)], [poly], area=4000.0)
    poly2 = [10.0, 10.0, 90.5, 12.0, 60.0, 95.25]
    xs, ys = poly2[0::2], poly2[1::2]
    add(2, "car", [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)], [poly2], area=3500.0)
    # a crowd mask: uncompressed counts, bbox of the mask
    h, w = 200, 300
    add(2, "pedestrian", [100.0, 40.0, 80.0, 50.0],
        {"counts": rle_rectangle(h, w, 100, 40, 180, 90), "size": [h, w]}, iscrowd=1, area=4000.0)
    kinds.update(box=2, polygon=2, mask=1)
    doc = {
        "licenses": [{"name": "", "id": 0, "url": ""}],
        "info": {"contributor": "", "date_created": "", "description": "", "url": "", "version": "", "year": ""},
        "categories": [{"id": i + 1, "name": c, "supercategory": ""} for i, c in enumerate(categories)],
        "images": [
            {"id": i, "width": w, "height": h, "file_name": n, "license": 0, "flickr_url": "", "coco_url": "",
             "date_captured": 0}
            for i, n, w, h, _ in images
        ],
        "annotations": anns,
    }
    (base / "annotations").mkdir(parents=True)
    (base / "annotations" / "instances_default.json").write_text(json.dumps(doc), encoding="utf-8")
    return base, truth, dict(kinds)


# ------------------------------------------------------------------------------------ Roboflow

RF_NAMES = ["head", "helmet", "person"]
#: (split, basename, w, h, [(class id, x1, y1, x2, y2) integer pixels]); [] is a null image
RF_IMAGES = [
    ("train", "hardhat_0001_jpg.rf.3f2a1b9c0d4e5f60718293a4b5c6d7e8.jpg", 320, 320,
     [(1, 10, 20, 110, 140), (0, 150, 30, 190, 80), (2, 140, 20, 260, 319)]),
    ("train", "hardhat_0002_jpg.rf.0a1b2c3d4e5f60718293a4b5c6d7e8f9.jpg", 320, 320, [(1, 0, 0, 320, 320)]),
    ("train", "hardhat_0003_jpg.rf.91e2d3c4b5a6978877665544332211ff.jpg", 320, 320, []),
    ("valid", "site_b_12_jpg.rf.77b1d0aa00bb11cc22dd33ee44ff5566.jpg", 416, 256,
     [(2, 33, 17, 299, 250), (1, 60, 18, 120, 70)]),
    ("test", "IMG_2041_JPG.rf.c0ffee00deadbeef0123456789abcdef.jpg", 256, 416, [(0, 100, 200, 101, 203)]),
]


def rf_truth() -> Truth:
    return {
        name: (w, h, split, [(RF_NAMES[c], (float(x1), float(y1), float(x2), float(y2))) for c, x1, y1, x2, y2 in boxes])
        for split, name, w, h, boxes in RF_IMAGES
    }


def rf_readmes(base: Path) -> None:
    (base / "README.dataset.txt").write_text("# Hard Hat Workers > 2024-01-05 3:14pm\nhttps://universe.roboflow.com/acme/hard-hats\n\nProvided by a Roboflow user\nLicense: CC BY 4.0\n")
    (base / "README.roboflow.txt").write_text("\nHard Hat Workers - v2 2024-01-05 3:14pm\n==============================\n\nThis dataset was exported via roboflow.com on January 5, 2024\n")


def make_roboflow_yolov8(root: Path) -> tuple[Path, Truth]:
    base = root / "Hard-Hat-Workers-2"
    truth: Truth = {}
    for split, name, w, h, boxes in RF_IMAGES:
        put_image(base / split / "images" / name, w, h)
        lines = []
        exp = []
        for c, x1, y1, x2, y2 in boxes:
            values = [(x1 + x2) / 2 / w, (y1 + y2) / 2 / h, (x2 - x1) / w, (y2 - y1) / h]
            text = [f"{v:.16g}" for v in values]  # Roboflow writes the float as it is
            lines.append(" ".join([str(c), *text]))
            cx, cy, bw, bh = map(float, text)
            exp.append((RF_NAMES[c], ((cx - bw / 2) * w, (cy - bh / 2) * h, (cx + bw / 2) * w, (cy + bh / 2) * h)))
        label = base / split / "labels" / Path(name).with_suffix(".txt").name
        label.parent.mkdir(parents=True, exist_ok=True)
        label.write_text("".join(line + "\n" for line in lines))  # a null image: an empty file
        truth[name] = (w, h, split, exp)
    (base / "data.yaml").write_text(
        "train: ../train/images\nval: ../valid/images\ntest: ../test/images\n\n"
        f"nc: {len(RF_NAMES)}\nnames: {RF_NAMES!r}\n\n"
        "roboflow:\n  workspace: acme\n  project: hard-hats\n  version: 2\n  license: CC BY 4.0\n"
        "  url: https://universe.roboflow.com/acme/hard-hats/dataset/2\n"
    )
    rf_readmes(base)
    return base, truth


def make_roboflow_createml(root: Path) -> tuple[Path, Truth]:
    base = root / "Hard-Hat-Workers-2.createml"
    entries: dict[str, list] = {}
    for split, name, w, h, boxes in RF_IMAGES:
        put_image(base / split / name, w, h)
        entries.setdefault(split, []).append({
            "image": name,
            "annotations": [
                {"label": RF_NAMES[c], "coordinates": {"x": (x1 + x2) / 2, "y": (y1 + y2) / 2, "width": x2 - x1,
                                                       "height": y2 - y1}}
                for c, x1, y1, x2, y2 in boxes
            ],
        })
    for split, items in entries.items():
        (base / split / "_annotations.createml.json").write_text(json.dumps(items))
    rf_readmes(base)
    return base, rf_truth()


def make_roboflow_csv(root: Path) -> tuple[Path, Truth]:
    base = root / "Hard-Hat-Workers-2.tensorflow"
    rows: dict[str, list[str]] = {}
    for split, name, w, h, boxes in RF_IMAGES:
        put_image(base / split / name, w, h)
        rows.setdefault(split, [])
        for c, x1, y1, x2, y2 in boxes:  # a null image gets no row at all
            rows[split].append(f"{name},{w},{h},{RF_NAMES[c]},{x1},{y1},{x2},{y2}")
    for split, lines in rows.items():
        text = "filename,width,height,class,xmin,ymin,xmax,ymax\n" + "".join(line + "\n" for line in lines)
        (base / split / "_annotations.csv").write_text(text)
    rf_readmes(base)
    return base, rf_truth()


# ------------------------------------------------------------------------------------ labelme


def labelme_shape(label: str, points: list[list[float]], shape_type: str, group_id=None) -> dict:
    return {"label": label, "points": points, "group_id": group_id, "description": "", "shape_type": shape_type,
            "flags": {}, "mask": None}


def make_labelme(root: Path) -> tuple[Path, Truth, int]:
    """A labelme 5.x working folder. Returns the folder, the truth and the number of skipped shapes."""
    base = root / "street_labelme"
    truth: Truth = {}

    def save(json_path: Path, image_path: str, data: bytes | None, w: int, h: int, shapes: list[dict]) -> None:
        doc = {"version": "5.4.1", "flags": {}, "shapes": shapes, "imagePath": image_path,
               "imageData": base64.b64encode(data).decode("ascii") if data is not None else None,
               "imageHeight": h, "imageWidth": w}
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(doc, indent=2, ensure_ascii=False), encoding="utf-8")

    # 1. rectangles (one dragged right-to-left) and a polygon; imageData embedded (labelme's default)
    data = put_image(base / "street_01.jpg", 320, 240)
    poly = [[100.5, 50.25], [180.0, 60.0], [170.75, 150.5], [95.0, 140.0]]
    save(base / "street_01.json", "street_01.jpg", data, 320, 240, [
        labelme_shape("car", [[10.0, 20.0], [90.5, 80.25]], "rectangle"),
        labelme_shape("car", [[300.0, 230.0], [250.5, 190.0]], "rectangle"),
        labelme_shape("person", poly, "polygon"),
        labelme_shape("person", [[5.0, 5.0]], "point"),  # not read: reported and skipped
    ])
    truth["street_01.jpg"] = (320, 240, None, [
        ("car", (10.0, 20.0, 90.5, 80.25)), ("car", (250.5, 190.0, 300.0, 230.0)),
        ("person", (95.0, 50.25, 180.0, 150.5)),
    ])
    # 2. one object in two parts (an occluded pedestrian): two polygons sharing a group_id
    put_image(base / "street_02.png", 300, 200, kind="PNG")
    part_a = [[10.0, 10.0], [50.0, 12.0], [40.0, 60.0]]
    part_b = [[60.0, 70.0], [90.0, 75.5], [80.0, 120.0]]
    save(base / "street_02.json", "street_02.png", None, 300, 200, [
        labelme_shape("person", part_a, "polygon", group_id=1),
        labelme_shape("person", part_b, "polygon", group_id=1),
        labelme_shape("bicycle", [[150.0, 100.0], [250.0, 110.0], [240.0, 190.0], [160.0, 180.0]], "polygon"),
    ])
    truth["street_02.png"] = (300, 200, None, [("person", (10.0, 10.0, 90.0, 120.0)),
                                               ("bicycle", (150.0, 100.0, 250.0, 190.0))])
    # 3. a phone photo stored 240x160 with EXIF orientation 6: labelme shows it 160x240
    put_image(base / "images" / "street_03.jpg", 160, 240, orientation=6)
    save(base / "annotations" / "street_03.json", "..\\images\\street_03.jpg", None, 160, 240, [
        labelme_shape("car", [[20.0, 150.0], [150.0, 235.5]], "rectangle"),  # below y=160: the displayed frame
        labelme_shape("person", [[30.0, 10.0], [70.0, 15.0], [60.0, 140.0]], "polygon"),
    ])
    truth["street_03.jpg"] = (160, 240, None, [("car", (20.0, 150.0, 150.0, 235.5)),
                                               ("person", (30.0, 10.0, 70.0, 140.0))])
    return base, truth, 1


# ------------------------------------------------------------------------------------ CLI helpers


def cli(*args: str) -> dict:
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def project_truth(project: str) -> tuple[Truth, dict[str, str]]:
    """What a project holds, keyed by basename, and basename -> record name (``+`` when tagged unlabeled)."""
    store = Store.open()
    try:
        ds = load_dataset(store, project)
    finally:
        store.close()
    out: Truth = {}
    names: dict[str, str] = {}
    for rec in ds.images:
        base = Path(rec.name).name
        assert base not in out, f"two images named {base}"
        boxes = [(a.label, tuple(a.bbox)) for a in rec.annotations if a.bbox is not None]
        assert len(boxes) == len(rec.annotations), f"{rec.name}: an annotation without a box"
        out[base] = (rec.width, rec.height, rec.split, boxes)
        names[base] = rec.name + ("+" if "unlabeled" in rec.tags else "")
    return out, names


def assert_same(actual: Truth, expected: Truth, what: str, splits: bool = True) -> None:
    assert sorted(actual) == sorted(expected), f"{what}: images differ"
    for name, (w, h, split, boxes) in expected.items():
        aw, ah, asplit, aboxes = actual[name]
        assert (aw, ah) == (w, h), f"{what}: {name} is {aw}x{ah}, expected {w}x{h}"
        if splits:
            assert asplit == split, f"{what}: {name} split {asplit}, expected {split}"
        assert Counter(lab for lab, _ in aboxes) == Counter(lab for lab, _ in boxes), f"{what}: {name} classes differ"
        left = list(aboxes)
        for label, box in boxes:
            match = next(
                (k for k, (lab, b) in enumerate(left) if lab == label and max(abs(p - q) for p, q in zip(b, box)) <= TOL),
                None,
            )
            assert match is not None, f"{what}: {name}: no {label} box at {box}; have {left}"
            left.pop(match)
        for _, (x1, y1, x2, y2) in aboxes:
            assert -TOL <= x1 < x2 <= aw + TOL and -TOL <= y1 < y2 <= ah + TOL, f"{what}: {name}: box outside"


def formats_for(task: str) -> list[str]:
    return [f for f in available() if task in {t.value for t in get_format(f).tasks}]


def round_trip_everywhere(tmp_path: Path, project: str, task: str, truth: Truth) -> None:
    """Export ``project`` to each format holding ``task``; import each back (detected); compare."""
    _, names = project_truth(project)
    for fmt in formats_for(task):
        dest = tmp_path / f"{project}-as-{fmt}"
        exported = cli("export", project, str(dest), "--format", fmt)
        assert exported["images"] == len(truth)
        again = f"{project}-{fmt}"
        cli("project", "create", again, "--task", task)
        report = cli("import", again, str(dest))
        assert report["format"] == fmt, f"the {fmt} export was detected as {report['format']}"
        errors = [p for p in report["problems"] if p["level"] == "error"]
        assert not errors and report["images_added"] == len(truth), (fmt, errors)
        back, back_names = project_truth(again)
        assert_same(back, truth, f"{project} -> {fmt} -> import")
        if fmt == "coco":  # COCO lists every image: "never labelled" cannot be said
            back_names = {k: v + ("+" if names[k].endswith("+") else "") for k, v in back_names.items()}
        assert back_names == names, f"{fmt} changed record names or unlabeled tags"


def import_detected(project: str, task: str, path: Path, expected_format: str) -> dict:
    cli("project", "create", project, "--task", task)
    report = cli("import", project, str(path))
    assert report["format"] == expected_format
    outside = [p for p in report["problems"] if "outside" in p["message"] or "differs" in p["message"]]
    assert not outside, outside
    return report


def count_boxes(truth: Truth) -> int:
    return sum(len(boxes) for *_, boxes in truth.values())


# ------------------------------------------------------------------------------------ the tests


def test_labelimg_voc_folder(tmp_path):
    src, truth = make_labelimg(tmp_path)
    report = import_detected("labelimg", "detect", src, "voc")
    assert report["images_added"] == len(truth) == 6
    assert report["annotations_added"] == count_boxes(truth) == 7
    assert report["images_skipped"] == report["annotations_skipped"] == 0
    assert not [p for p in report["problems"] if p["level"] == "error"], report["problems"]
    got, names = project_truth("labelimg")
    assert_same(got, truth, "LabelImg import")
    assert names["dog_07.jpg"] == "batch2/dog_07.jpg" and names["cat 02.jpg"] == "cat 02.jpg"
    assert names["not_done_yet.jpg"] == "not_done_yet.jpg+"  # no XML: tagged unlabeled
    unlabeled = cli("images", "labelimg", "--tag", "unlabeled")
    assert [r["name"] for r in unlabeled["images"]] == ["not_done_yet.jpg"]
    round_trip_everywhere(tmp_path, "labelimg", "detect", truth)


@pytest.mark.parametrize("task", ["segment", "detect"])
def test_cvat_coco_export(tmp_path, task):
    src, truth, kinds = make_cvat_coco(tmp_path)
    report = import_detected("cvat", task, src, "coco")
    assert report["images_added"] == 3 and report["annotations_added"] == count_boxes(truth) == sum(kinds.values())
    assert not [p for p in report["problems"] if p["level"] == "error"], report["problems"]
    got, names = project_truth("cvat")
    assert_same(got, truth, "CVAT import")
    assert names["frame_000001.png"] == "images/default/frame_000001.png"
    store = Store.open()
    try:
        ds = load_dataset(store, "cvat")
    finally:
        store.close()
    anns = [a for r in ds.images for a in r.annotations]
    assert Counter(a.kind for a in anns) == Counter(kinds)
    crowd = next(a for a in anns if a.kind == "mask")
    assert crowd.iscrowd and isinstance(crowd.rle["counts"], str) and crowd.rle["size"] == [200, 300]
    assert {tuple(sorted(a.attributes)) for a in anns} == {("occluded", "rotation")}
    round_trip_everywhere(tmp_path, "cvat", task, truth)


def test_roboflow_yolov8_export(tmp_path):
    src, truth = make_roboflow_yolov8(tmp_path)
    report = import_detected("rf", "detect", src, "yolo")
    assert report["images_added"] == 5 and report["annotations_added"] == count_boxes(truth) == 7
    assert not [p for p in report["problems"] if p["level"] == "error"], report["problems"]
    assert not report["problems"], report["problems"]  # README files are not orphan labels
    got, _ = project_truth("rf")
    assert_same(got, truth, "Roboflow YOLOv8 import")
    shown = cli("project", "show", "rf")
    assert shown["splits"] == {"train": 3, "valid": 1, "test": 1}
    assert shown["classes"] == RF_NAMES
    round_trip_everywhere(tmp_path, "rf", "detect", truth)


@pytest.mark.parametrize("which", ["createml", "csv"])
def test_roboflow_createml_and_csv_exports(tmp_path, which):
    make = make_roboflow_createml if which == "createml" else make_roboflow_csv
    src, truth = make(tmp_path)
    report = import_detected("rf", "detect", src, which)
    assert report["images_added"] == 5 and report["annotations_added"] == count_boxes(truth) == 7
    assert not [p for p in report["problems"] if p["level"] == "error"], report["problems"]
    got, _ = project_truth("rf")
    assert_same(got, truth, f"Roboflow {which} import")
    null_image = "hardhat_0003_jpg.rf.91e2d3c4b5a6978877665544332211ff.jpg"
    tagged = [r["name"] for r in cli("images", "rf", "--tag", "unlabeled")["images"]]
    # Roboflow's CSV leaves null images out: winnow cannot tell them from images never labelled
    assert tagged == ([null_image] if which == "csv" else [])
    round_trip_everywhere(tmp_path, "rf", "detect", truth)


@pytest.mark.parametrize("task", ["segment", "detect"])
def test_labelme_folder(tmp_path, task):
    src, truth, skipped = make_labelme(tmp_path)
    report = import_detected("lm", task, src, "labelme")
    assert report["images_added"] == 3 and report["annotations_added"] == count_boxes(truth) == 7
    errors = [p for p in report["problems"] if p["level"] == "error"]
    assert len(errors) == skipped and "unsupported shape type 'point'" in errors[0]["message"]
    got, names = project_truth("lm")
    assert_same(got, truth, "labelme import")
    assert names["street_03.jpg"] == "images/street_03.jpg"
    store = Store.open()
    try:
        ds = load_dataset(store, "lm")
    finally:
        store.close()
    person = next(a for r in ds.images if r.name == "street_02.png" for a in r.annotations if a.label == "person")
    assert len(person.polygon) == 2  # the group became one object in two parts
    round_trip_everywhere(tmp_path, "lm", task, truth)


def test_exif_rotated_jpeg_with_voc_and_yolo_labels_in_the_displayed_frame(tmp_path):
    """A phone photo stored 300x200 with orientation 6 is shown 200x300; labels drawn on what is shown."""
    box = (20.0, 210.0, 180.0, 290.0)  # below y=200: only inside the displayed (rotated) frame
    voc = tmp_path / "voc"
    put_image(voc / "phone.jpg", 200, 300, orientation=6)
    raw = Image.open(voc / "phone.jpg")
    assert raw.size == (300, 200) and raw.getexif()[0x0112] == 6
    (voc / "phone.xml").write_text(labelimg_xml("voc", "phone.jpg", "/tmp/phone.jpg", (200, 300, 3), [("cup", box)]))

    yolo = tmp_path / "yolo"
    (yolo / "images").mkdir(parents=True)
    (yolo / "images" / "phone.jpg").write_bytes((voc / "phone.jpg").read_bytes())
    (yolo / "labels").mkdir()
    cx, cy, bw, bh = (box[0] + box[2]) / 2 / 200, (box[1] + box[3]) / 2 / 300, (box[2] - box[0]) / 200, (box[3] - box[1]) / 300
    (yolo / "labels" / "phone.txt").write_text(f"0 {cx!r} {cy!r} {bw!r} {bh!r}\n")
    (yolo / "data.yaml").write_text("train: images\nval: images\nnc: 1\nnames: ['cup']\n")

    for fmt, src in (("voc", voc), ("yolo", yolo)):
        report = import_detected(f"exif-{fmt}", "detect", src, fmt)
        assert report["images_added"] == 1 and report["annotations_added"] == 1
        assert not report["problems"], report["problems"]
        [image] = cli("images", f"exif-{fmt}")["images"]
        assert (image["width"], image["height"]) == (200, 300)
        got, _ = project_truth(f"exif-{fmt}")
        assert_same(got, {"phone.jpg": (200, 300, None, [("cup", box)])}, f"EXIF {fmt}")
