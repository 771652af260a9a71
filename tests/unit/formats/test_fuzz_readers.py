"""Structure-aware fuzzing of every registered reader (BAD_INPUTS: "fuzz the format readers").

Each test builds a dataset folder from hypothesis-drawn content shaped like the format (the real
keys, elements and columns, with hostile values: null, bools, ints past 2**63 and past the int
text limit, NaN/inf, unicode, lone surrogates, ``../``, absolute paths, very long names, NUL
bytes, BOMs, CRLF, truncation, random bytes) next to a real image, a symlink pointing at an image
*outside* the dataset, and then checks the reader's contract:

* ``fmt.read(path, problems)`` returns a :class:`Dataset` or raises a
  :class:`~winnow.errors.WinnowError` - never any other exception;
* every record's ``file`` exists and lies inside the dataset folder (symlinks resolved);
* every box is four finite floats;
* every registered format's ``detect`` returns a score in ``[0, 1]`` without raising, on the
  folder and on each file written.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from xml.sax.saxutils import escape

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from winnow.core.types import Dataset, Problem, Problems
from winnow.errors import WinnowError
from winnow.formats import available, get_format
from winnow.formats.base import is_inside

FUZZ = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
    ],
)

IMAGE = "img.jpg"
LINK = "link.jpg"  # a symlink to an image outside the dataset folder


# ----------------------------------------------------------------------------- fixtures on disk


def _encoded(kind: str, size: tuple[int, int] = (32, 24)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (10, 120, 200)).save(buf, kind)
    return buf.getvalue()


JPEG = _encoded("JPEG")
PNG = _encoded("PNG")


@contextlib.contextmanager
def dataset_dir() -> Iterator[Path]:
    """A fresh ``<tmp>/ds`` folder (one per example) with ``<tmp>/outside/secret.jpg`` beside it."""
    with tempfile.TemporaryDirectory() as tmp:
        outside = Path(tmp, "outside")
        outside.mkdir()
        (outside / "secret.jpg").write_bytes(JPEG)
        root = Path(tmp, "ds")
        root.mkdir()
        yield root


def put_images(folder: Path) -> None:
    """A real JPEG, a PNG, an empty "image" and a symlink leaving the dataset, in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / IMAGE).write_bytes(JPEG)
    (folder / "b.png").write_bytes(PNG)
    (folder / "empty.jpg").write_bytes(b"")
    target = folder
    depth = 0
    while target.name != "ds":
        target, depth = target.parent, depth + 1
    with contextlib.suppress(OSError):
        os.symlink(Path(*[".."] * (depth + 1), "outside", "secret.jpg"), folder / LINK)


def check_detect(root: Path, files: list[Path]) -> None:
    for name in available():
        fmt = get_format(name)
        for target in [root, *files]:
            score = fmt.detect(target)
            assert isinstance(score, (int, float)) and 0.0 <= score <= 1.0, (name, target, score)


def check_read(name: str, path: Path, root: Path) -> Dataset | None:
    """The reader contract on ``path``; ``None`` when the reader refused it with a WinnowError."""
    problems = Problems()
    try:
        dataset = get_format(name).read(path, problems)
    except WinnowError:
        return None
    assert isinstance(dataset, Dataset)
    for record in dataset.images:
        assert record.file is not None, record.name
        file = Path(record.file)
        assert file.is_file(), (record.name, file)
        assert is_inside(file, root), f"{record.name}: {file} is outside the dataset folder {root}"
        for ann in record.annotations:
            if ann.bbox is not None:
                box = tuple(ann.bbox)
                assert len(box) == 4 and all(type(v) is float for v in box), (record.name, ann.bbox)
                assert all(math.isfinite(v) for v in box), (record.name, ann.bbox)
    assert all(isinstance(p, Problem) for p in problems)
    return dataset


def run_contract(name: str, root: Path, path: Path, files: list[Path]) -> None:
    check_detect(root, files)
    check_read(name, path, root)
    if path != root:
        check_read(name, root, root)


# ----------------------------------------------------------------------------- value strategies

#: Stands for an integer of 5000 digits, past Python's int text limit (parsing one raises ValueError
#: since 3.11): the serialisers below write the digits in its place.
HUGE = "__HUGE_INT__"
HUGE_DIGITS = "7" * 5000


@st.composite
def weighted(draw, *choices: tuple[int, st.SearchStrategy]):
    """One of ``choices`` (``(weight, strategy)`` pairs); hypothesis leans to the first.

    ``st.one_of`` cannot weight: it drops repeated branches.
    """
    k = draw(st.integers(0, sum(w for w, _ in choices) - 1))
    for w, strategy in choices:
        if k < w:
            return draw(strategy)
        k -= w
    raise AssertionError("unreachable")


#: Values that broke readers: ints past float64 and past 2**63, NaN/inf, floats that overflow
#: once added or scaled, the smallest subnormal.
SPECIAL_NUMBERS = [10**400, -(10**400), HUGE, 2**63, 2**64 + 1, 10**308, float("nan"), float("inf"),
                   float("-inf"), 1e308, 1.7e308, -1e308, 5e-324, 1e-300, -0.0]
MAX_FLOAT = 1.7976931348623157e308
NUMBERS = st.one_of(
    st.integers(-3, 40),
    st.floats(-5, 40),
    st.sampled_from(SPECIAL_NUMBERS),
    st.integers(min_value=2**63 - 2, max_value=2**64 + 2),
    st.floats(allow_nan=True, allow_infinity=True),
)
#: A coordinate: plausible a third of the time, else hostile (huge finite floats overflow when a
#: reader adds or scales them).
COORDS = weighted(
    (2, st.floats(0, 40)),
    (1, st.integers(0, 40)),
    (2, st.sampled_from(SPECIAL_NUMBERS)),
    (1, st.sampled_from([1e308, 1.7e308, MAX_FLOAT])),  # two of them overflow a sum
    (1, st.floats(1e300, MAX_FLOAT).flatmap(lambda v: st.sampled_from([v, -v]))),
    (1, st.floats(allow_nan=True, allow_infinity=True)),
)

PATHS = st.sampled_from(
    [
        IMAGE, "b.png", "empty.jpg", LINK, "./img.jpg", "images/img.jpg", "img", "IMG.JPG", "missing.jpg",
        "../img.jpg", "../outside/secret.jpg", "../../outside/secret.jpg", "/etc/passwd", "C:\\img.jpg",
        "..\\outside\\secret.jpg", "sub/../img.jpg", "", " ", ".", "..", "/", "\\\\server\\share\\img.jpg",
        "img.jpg\x00.png", "a" * 300 + ".jpg", "é" * 200 + ".jpg", "/".join(["d"] * 2100), "\ud800.jpg",
        "%2e%2e/img.jpg", "img.jpg?x=1#y", "train/img.jpg",
    ]
)

#: Mostly the real image (so the reader goes on to the annotations), else a file that exists (the
#: PNG, an empty file, the symlink out), else anything in PATHS.
LIKELY_PATHS = weighted((3, st.just(IMAGE)), (1, st.sampled_from([LINK, "b.png", "empty.jpg"])), (1, PATHS))

TEXT = st.one_of(st.text(max_size=12), PATHS, st.sampled_from(["nan", "inf", "-inf", "1e400", "0x1F", "٣", "𝟙"]))

SCALARS = st.one_of(st.none(), st.booleans(), NUMBERS, TEXT)


def json_values(keys: list[str]) -> st.SearchStrategy:
    """Any JSON value; object keys are mostly the format's real ones."""
    key = st.one_of(st.sampled_from(keys), st.text(max_size=6))
    return st.recursive(
        SCALARS,
        lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(key, inner, max_size=5)),
        max_leaves=12,
    )


def maybe(strategy: st.SearchStrategy, keys: list[str]) -> st.SearchStrategy:
    """Mostly ``strategy``, sometimes any JSON value in its place."""
    return weighted((3, strategy), (1, json_values(keys)))


def rarely(draw, k: int) -> bool:
    """True about once in ``k`` draws. Hypothesis favours 0 (its simplest value): 0 means no."""
    return draw(st.integers(0, k - 1)) == k - 1


def often(valid, keys: list[str]) -> st.SearchStrategy:
    """``valid`` (a value or a strategy) five times in six, else a scalar or any JSON value.

    For the fields a reader checks before it gets to the interesting ones (ids, names, files), so
    that the hostile leaves behind them are reached.
    """
    strategy = valid if isinstance(valid, st.SearchStrategy) else st.just(valid)
    return weighted((5, strategy), (1, st.one_of(SCALARS, json_values(keys))))


@st.composite
def serialized_json(draw, value) -> bytes:
    """``value`` as JSON bytes, sometimes with a BOM, in UTF-16, truncated, or garbled."""
    text = json.dumps(value, allow_nan=True, indent=draw(st.sampled_from([None, 1])))
    text = text.replace(f'"{HUGE}"', HUGE_DIGITS)
    how = draw(st.sampled_from(["plain"] * 12 + ["bom", "utf16", "cut", "bytes", "deep"]))
    if how == "deep":
        depth = draw(st.sampled_from([50, 5000, 200_000]))
        text = "[" * depth + text + "]" * depth
    data = text.encode("utf-8", "surrogatepass")
    if how == "bom":
        data = b"\xef\xbb\xbf" + data
    elif how == "utf16":
        data = text.encode("utf-16", "surrogatepass")
    elif how == "cut":
        data = data[: draw(st.integers(0, len(data)))]
    elif how == "bytes":
        data = draw(st.binary(max_size=64)) + data[: draw(st.integers(0, len(data)))]
    return data


# ----------------------------------------------------------------------------- COCO

COCO_KEYS = ["images", "annotations", "categories", "info", "licenses", "id", "file_name", "width", "height",
             "image_id", "category_id", "bbox", "segmentation", "iscrowd", "score", "attributes", "area", "name",
             "supercategory", "size", "counts"]


def rle_string(counts: list[int]) -> str:
    """COCO's compressed RLE text for ``counts`` (pycocotools' rleToString)."""
    out = []
    for i, value in enumerate(counts):
        x = value - counts[i - 2] if i > 2 else value
        more = True
        while more:
            c = x & 0x1F
            x >>= 5
            more = (x != -1) if c & 0x10 else (x != 0)
            if more:
                c |= 0x20
            out.append(chr(c + 48))
    return "".join(out)


@st.composite
def rles(draw):
    # sizes past 32 bits overflow pycocotools (or divide by zero in it) when nothing checks them
    h = draw(weighted((1, st.just(24)), (1, st.integers(1, 40)), (2, st.sampled_from([2**32, 2**33, 2**62, 2**64 + 1]))))
    w = draw(weighted((1, st.just(32)), (1, st.integers(1, 40)), (1, st.sampled_from([1, 2**31, 2**33]))))
    total = h * w
    cut = draw(st.integers(0, total)) if total < 2**80 else total // 2
    counts = draw(weighted((2, st.just([cut, total - cut])), (1, st.just([total])), (1, st.lists(st.integers(-2, 50), max_size=6))))
    as_text = draw(st.booleans())
    size = draw(weighted((4, st.just([h, w])), (1, json_values(["size"]))))
    return {"size": size, "counts": rle_string(counts) if as_text else counts}


BBOXES = weighted((3, st.lists(COORDS, min_size=4, max_size=4)), (1, st.none()), (1, json_values(COCO_KEYS)))
POLYGONS = st.lists(weighted((3, st.lists(COORDS, min_size=6, max_size=10)), (1, st.lists(COORDS, max_size=5))),
                    min_size=1, max_size=3)
SEGMENTATIONS = weighted((1, st.just([])), (1, st.none()), (2, POLYGONS), (3, rles()), (1, json_values(COCO_KEYS)))


@st.composite
def coco_docs(draw):
    """A COCO document whose ids and references mostly hold together, with hostile leaves."""
    if rarely(draw, 10):
        return draw(json_values(COCO_KEYS))
    images = []
    for i in range(1, draw(st.integers(1, 3)) + 1):
        image = {"id": draw(often(i, COCO_KEYS)), "file_name": draw(often(LIKELY_PATHS, COCO_KEYS))}
        if not rarely(draw, 3):  # sometimes no declared size (then an RLE's size is unchecked)
            image["width"] = draw(weighted((3, st.just(32)), (1, st.sampled_from(SPECIAL_NUMBERS)), (1, SCALARS)))
            image["height"] = draw(weighted((3, st.just(24)), (1, st.sampled_from(SPECIAL_NUMBERS)), (1, SCALARS)))
        if draw(st.booleans()):
            image[draw(st.sampled_from(["license", "coco_url", "date_captured"]))] = draw(SCALARS)
        images.append(image)
    categories = [{"id": 1, "name": "car"}, {"id": 2, "name": "cat"}]
    if rarely(draw, 4):
        categories = [
            {"id": draw(often(c, COCO_KEYS)), "name": draw(often(st.sampled_from(["car", "cat", " "]), COCO_KEYS))}
            for c in range(1, draw(st.integers(1, 3)) + 1)
        ]
    annotations = []
    for j in range(1, draw(st.integers(1, 4)) + 1):
        ann = {
            "image_id": draw(often(st.integers(1, max(len(images), 1)), COCO_KEYS)),
            "category_id": draw(often(st.integers(1, 2), COCO_KEYS)),
            "bbox": draw(BBOXES),
        }
        if not rarely(draw, 5):
            ann["id"] = draw(often(j, COCO_KEYS))
        if draw(st.booleans()):
            ann["segmentation"] = draw(SEGMENTATIONS)
        for key, value in (("iscrowd", st.sampled_from([0, 1])), ("score", st.floats(0, 1)),
                           ("attributes", st.just({"occluded": False})), ("area", st.floats(0, 100))):
            if draw(st.booleans()):
                ann[key] = draw(weighted((3, value), (1, st.sampled_from(SPECIAL_NUMBERS)), (1, json_values(COCO_KEYS))))
        annotations.append(ann)
    doc = {"images": images, "annotations": annotations, "categories": categories}
    for key in draw(st.sets(st.sampled_from(["info", "licenses", "extra", "shapes"]))):
        doc[key] = draw(json_values(COCO_KEYS))
    for key in draw(st.sets(st.sampled_from(["images", "annotations", "categories"]), max_size=1)):
        doc[key] = draw(json_values(COCO_KEYS))  # a whole section of the wrong shape
    return doc


COCO_LAYOUTS = st.sampled_from(
    [("annotations.json", ""), ("annotations/instances_default.json", "images/default"),
     ("train/_annotations.coco.json", "train"), ("instances_val2017.json", "val2017"), ("annotations.json", "images")]
)


@FUZZ
@given(doc=coco_docs(), layout=COCO_LAYOUTS, data=st.data(), named=st.booleans())
def test_coco_reader_survives_anything(doc, layout, data, named):
    file, images = layout
    with dataset_dir() as root:
        put_images(root / images)
        target = root / file
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data.draw(serialized_json(doc)))
        run_contract("coco", root, target if named else root, [target])


# ----------------------------------------------------------------------------- LabelMe

LABELME_KEYS = ["version", "flags", "shapes", "imagePath", "imageData", "imageHeight", "imageWidth", "label", "points",
                "group_id", "shape_type", "description", "mask"]
POINTS = weighted((4, st.lists(st.lists(COORDS, min_size=2, max_size=2), min_size=2, max_size=5)),
                  (1, json_values(LABELME_KEYS)))
SHAPE_TYPES = st.sampled_from(["polygon", "rectangle", "polygon", "rectangle", "circle", "point", "line", "mask", None])


@st.composite
def labelme_shapes(draw):
    shape = {"label": draw(often(st.sampled_from(["car", "person", " "]), LABELME_KEYS)), "points": draw(POINTS)}
    for key, value in (("shape_type", SHAPE_TYPES), ("group_id", st.one_of(st.none(), st.integers(0, 2))),
                       ("flags", st.just({})), ("description", st.just("")), ("mask", st.none())):
        if not rarely(draw, 4):
            shape[key] = draw(weighted((4, value), (1, st.sampled_from(SPECIAL_NUMBERS)), (1, json_values(LABELME_KEYS))))
    return shape


@st.composite
def labelme_docs(draw):
    """A labelme 5.x document, mostly well formed, with hostile leaves."""
    if rarely(draw, 10):
        return draw(json_values(LABELME_KEYS))
    doc = {"shapes": draw(often(st.lists(labelme_shapes(), min_size=1, max_size=4), LABELME_KEYS))}
    for key, value in (("version", st.just("5.4.1")), ("flags", st.just({})), ("imagePath", LIKELY_PATHS),
                       ("imageData", st.sampled_from([None, "aGVsbG8="])), ("imageHeight", st.just(24)),
                       ("imageWidth", st.just(32))):
        if not rarely(draw, 6):
            doc[key] = draw(weighted((4, value), (1, st.sampled_from(SPECIAL_NUMBERS)), (1, json_values(LABELME_KEYS))))
    return doc


@FUZZ
@given(
    docs=st.lists(labelme_docs(), min_size=1, max_size=2),
    folder=st.sampled_from(["", "train", "annotations", "a/b"]),
    stem=st.sampled_from(["img", "other", "b"]),
    data=st.data(),
    named=st.booleans(),
)
def test_labelme_reader_survives_anything(docs, folder, stem, data, named):
    with dataset_dir() as root:
        put_images(root / folder)
        files = []
        for k, doc in enumerate(docs):
            file = root / folder / (f"{stem}.json" if k == 0 else f"x{k}.json")
            file.write_bytes(data.draw(serialized_json(doc)))
            files.append(file)
        run_contract("labelme", root, files[0] if named else root, files)


# ----------------------------------------------------------------------------- CreateML

CREATEML_KEYS = ["image", "annotations", "label", "coordinates", "x", "y", "width", "height"]


@st.composite
def createml_docs(draw):
    """A CreateML list, mostly well formed, with hostile leaves."""
    if rarely(draw, 10):
        return draw(json_values(CREATEML_KEYS))
    entries = []
    for _ in range(draw(st.integers(1, 3))):
        annotations = []
        for _ in range(draw(st.integers(1, 3))):
            keys = ["x", "y", "width", "height"]
            if rarely(draw, 5):
                keys.remove(draw(st.sampled_from(keys)))
            coordinates = {k: draw(COORDS) for k in keys}
            annotations.append({"label": draw(often(st.sampled_from(["car", ""]), CREATEML_KEYS)),
                                "coordinates": draw(often(coordinates, CREATEML_KEYS))})
        entry = {"image": draw(often(LIKELY_PATHS, CREATEML_KEYS))}
        if not rarely(draw, 6):
            entry["annotations"] = draw(often(annotations, CREATEML_KEYS))
        entries.append(draw(often(entry, CREATEML_KEYS)))
    return entries


@FUZZ
@given(
    doc=createml_docs(),
    file=st.sampled_from(["_annotations.createml.json", "train/_annotations.createml.json", "labels.json", "x.createml.json"]),
    data=st.data(),
    named=st.booleans(),
)
def test_createml_reader_survives_anything(doc, file, data, named):
    with dataset_dir() as root:
        target = root / file
        put_images(target.parent)
        target.write_bytes(data.draw(serialized_json(doc)))
        run_contract("createml", root, target if named else root, [target])


# ----------------------------------------------------------------------------- YOLO

YOLO_TOKENS = st.one_of(
    st.sampled_from(["0", "1", "2", "3", "-1", "1.0", "1.5", "99999999999999999999", "1e20", HUGE_DIGITS, "٣"]),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.floats(0, 1).map(lambda v: format(v, ".6f")),
    st.sampled_from(["nan", "inf", "-inf", "1e400", "1e308", "-1e308", "1.7e308", "0x10", "1_0", "", "\x00", "\ufeff"]),
    st.text(max_size=6),
)
CLASS_TOKENS = weighted((3, st.sampled_from(["0", "1", "2"])), (1, st.sampled_from(["99999999999", "1e12", "100000"])),
                        (1, YOLO_TOKENS))
VALUE_TOKENS = weighted(
    (3, st.floats(0, 1).map(lambda v: format(v, ".6f"))),
    (1, st.floats(1e300, MAX_FLOAT).map(repr)),
    (1, YOLO_TOKENS),
)


@st.composite
def yolo_line(draw) -> list[str]:
    """Mostly ``class`` + 4, 5 or an even number (>= 6) of values, else any tokens."""
    if rarely(draw, 5):
        return draw(st.lists(YOLO_TOKENS, max_size=12))
    values = draw(st.sampled_from([4, 4, 4, 5, 6, 8, 3, 7]))
    return [draw(CLASS_TOKENS), *[draw(VALUE_TOKENS) for _ in range(values)]]


YOLO_LINES = st.lists(yolo_line(), min_size=1, max_size=5)


@st.composite
def label_bytes(draw) -> bytes:
    lines = [draw(st.sampled_from([" ", "  ", "\t"])).join(tokens) for tokens in draw(YOLO_LINES)]
    eol = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    text = eol.join(lines) + draw(st.sampled_from(["", eol]))
    if draw(st.booleans()):
        text = "\ufeff" + text
    data = text.encode("utf-8", "surrogatepass")
    how = draw(st.sampled_from(["plain"] * 4 + ["nul", "latin1", "bytes"]))
    if how == "nul":
        at = draw(st.integers(0, len(data)))
        data = data[:at] + b"\x00" + data[at:]
    elif how == "latin1":
        data = data + "é".encode("latin-1")
    elif how == "bytes":
        data = draw(st.binary(max_size=64))
    return data


YAML_KEYS = ["names", "nc", "train", "val", "test", "valid", "path", "winnow", "original_names", "roboflow"]
YAML_PATHS = st.one_of(PATHS, st.sampled_from(["images", "../images", "train/images", "../train/images", "list.txt", "."]))
YAML_DOCS = weighted(
    (4, st.fixed_dictionaries(
        {},
        optional={
            "names": st.one_of(
                st.lists(st.one_of(st.sampled_from(["car", "cat"]), SCALARS), max_size=4),
                st.dictionaries(weighted((2, st.integers(-1, 4)), (2, st.sampled_from(SPECIAL_NUMBERS)), (1, SCALARS)),
                                st.sampled_from(["car", "cat"]), max_size=4),
                SCALARS,
            ),
            "nc": weighted((1, st.integers(-1, 5)), (2, st.sampled_from([10**12, 10**18, HUGE])), (1, SCALARS)),
            "train": maybe(st.one_of(YAML_PATHS, st.lists(YAML_PATHS, max_size=2)), YAML_KEYS),
            "val": maybe(YAML_PATHS, YAML_KEYS),
            "test": maybe(YAML_PATHS, YAML_KEYS),
            "path": maybe(YAML_PATHS, YAML_KEYS),
            "winnow": json_values(YAML_KEYS),
        },
    )),
    (1, st.none()),
    (1, json_values(YAML_KEYS)),
)


@st.composite
def yaml_bytes(draw) -> bytes | None:
    doc = draw(YAML_DOCS)
    how = draw(st.sampled_from(["dump", "dump", "dump", "dump", "none", "raw"]))
    if how == "none":
        return None
    if how == "raw":
        return draw(st.binary(max_size=80))
    text = yaml.safe_dump(doc, allow_unicode=True).replace(HUGE, HUGE_DIGITS)
    return text.encode("utf-8", "surrogatepass")


@FUZZ
@given(
    layout=st.sampled_from(["flat", "roboflow", "ultralytics", "darknet"]),
    labels=st.lists(label_bytes(), min_size=1, max_size=3),
    data_yaml=yaml_bytes(),
    class_file=st.one_of(st.none(), st.binary(max_size=40), st.just(b"car\n\ncat\n")),
    image_list=st.one_of(st.none(), st.lists(YAML_PATHS, max_size=4)),
)
def test_yolo_reader_survives_anything(layout, labels, data_yaml, class_file, image_list):
    images_dir, labels_dir = {
        "flat": ("images", "labels"),
        "roboflow": ("train/images", "train/labels"),
        "ultralytics": ("images/train", "labels/train"),
        "darknet": ("obj_train_data", "obj_train_data"),
    }[layout]
    with dataset_dir() as root:
        put_images(root / images_dir)
        (root / labels_dir).mkdir(parents=True, exist_ok=True)
        files = []
        for stem, data in zip(["img", "b", "orphan"], labels):
            file = root / labels_dir / f"{stem}.txt"
            file.write_bytes(data)
            files.append(file)
        if data_yaml is not None:
            (root / "data.yaml").write_bytes(data_yaml)
            files.append(root / "data.yaml")
        if class_file is not None:
            (root / "obj.names").write_bytes(class_file)
        if image_list is not None:
            (root / "list.txt").write_text("\n".join(image_list), encoding="utf-8", errors="surrogatepass")
        run_contract("yolo", root, root / "data.yaml" if data_yaml is not None and layout == "flat" else root, files)


# ----------------------------------------------------------------------------- Pascal VOC

VOC_TEXT = st.one_of(
    st.sampled_from(["0", "1", "5", "10.5", "32", "-3", "nan", "inf", "1e400", "1e308", "", " ", HUGE_DIGITS, "0x10"]),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    TEXT,
)


@st.composite
def voc_object(draw) -> str:
    parts = ["<object>"]
    if not rarely(draw, 6):
        parts.append(f"<name>{escape(draw(st.one_of(st.sampled_from(['dog', 'cat', ' ']), TEXT)))}</name>")
    for flag in ("pose", "truncated", "difficult", "occluded"):
        if draw(st.booleans()):
            parts.append(f"<{flag}>{escape(draw(VOC_TEXT))}</{flag}>")
    if not rarely(draw, 6):
        box = "".join(
            f"<{k}>{escape(draw(VOC_TEXT))}</{k}>" for k in ("xmin", "ymin", "xmax", "ymax") if not rarely(draw, 7)
        )
        parts.append(f"<bndbox>{box}</bndbox>")
    if draw(st.booleans()):
        parts.append(
            "<attributes>"
            + "".join(f"<attribute><name>{escape(draw(TEXT))}</name><value>{escape(draw(TEXT))}</value></attribute>"
                      for _ in range(draw(st.integers(0, 2))))
            + "</attributes>"
        )
    parts.append("</object>")
    return "".join(parts)


@st.composite
def voc_bytes(draw) -> bytes:
    root_tag = draw(st.sampled_from(["annotation"] * 5 + ["annotations", "x"]))
    body = [f"<filename>{escape(draw(st.one_of(LIKELY_PATHS, TEXT)))}</filename>"]
    if draw(st.booleans()):
        body.append(f"<size><width>{escape(draw(VOC_TEXT))}</width><height>{escape(draw(VOC_TEXT))}</height></size>")
    body += [draw(voc_object()) for _ in range(draw(st.integers(1, 3)))]
    text = f"<{root_tag}>" + "".join(body) + f"</{root_tag}>"
    how = draw(st.sampled_from(["plain"] * 4 + ["mutate", "dtd", "entity", "bytes", "decl", "bom"]))
    if how == "dtd":
        text = '<!DOCTYPE annotation [<!ENTITY x SYSTEM "file:///etc/passwd">]>' + text.replace("<filename>", "<filename>&x;", 1)
    elif how == "entity":
        text = '<!DOCTYPE a [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;">]>' + text
    elif how == "decl":
        text = f'<?xml version="1.0" encoding="{draw(st.sampled_from(["utf-8", "utf-16", "utf-32", "shift_jis", "latin-1", "bogus", "rot13", "idna", "punycode"]))}"?>' + text
    data = text.encode("utf-8", "surrogatepass")
    if how == "bom":
        data = b"\xef\xbb\xbf" + data
    elif how == "mutate":
        for _ in range(draw(st.integers(1, 4))):
            at = draw(st.integers(0, len(data)))
            cut = draw(st.integers(0, 8))
            data = data[:at] + draw(st.binary(max_size=6)) + data[at + cut:]
    elif how == "bytes":
        data = draw(st.binary(max_size=100))
    return data


@FUZZ
@given(
    xmls=st.lists(voc_bytes(), min_size=1, max_size=3),
    layout=st.sampled_from(["flat", "devkit", "roboflow"]),
    image_set=st.one_of(st.none(), st.binary(max_size=40), st.lists(TEXT, max_size=3).map(lambda v: "\n".join(v).encode("utf-8", "surrogatepass"))),
    named=st.booleans(),
)
def test_voc_reader_survives_anything(xmls, layout, image_set, named):
    xml_dir, image_dir = {"flat": ("", ""), "devkit": ("Annotations", "JPEGImages"), "roboflow": ("train", "train")}[layout]
    with dataset_dir() as root:
        put_images(root / image_dir)
        (root / xml_dir).mkdir(parents=True, exist_ok=True)
        files = []
        for stem, data in zip(["img", "b", "other"], xmls):
            file = root / xml_dir / f"{stem}.xml"
            file.write_bytes(data)
            files.append(file)
        if image_set is not None and layout == "devkit":
            (root / "ImageSets" / "Main").mkdir(parents=True)
            (root / "ImageSets" / "Main" / "train.txt").write_bytes(image_set)
        run_contract("voc", root, files[0] if named else root, files)


# ----------------------------------------------------------------------------- CSV

CSV_COLUMNS = ["filename", "width", "height", "class", "xmin", "ymin", "xmax", "ymax"]
CSV_CELLS = st.one_of(
    LIKELY_PATHS,
    VOC_TEXT,
    st.sampled_from(["car", "", "32", "24", '"quoted"', "a,b", "line\nbreak", "x" * 200_000]),
)

CSV_NUMBERS = st.one_of(st.sampled_from(["0", "1", "5", "10.5", "24", "32", ""]), VOC_TEXT)
CSV_CELL_BY_COLUMN = {
    "filename": LIKELY_PATHS,
    "width": CSV_NUMBERS,
    "height": CSV_NUMBERS,
    "class": st.one_of(st.sampled_from(["car", "", "a,b", "x\ny"]), TEXT),
    **{c: CSV_NUMBERS for c in ("xmin", "ymin", "xmax", "ymax")},
}


@st.composite
def csv_bytes(draw) -> bytes:
    header = list(CSV_COLUMNS)
    if draw(st.booleans()):
        header = draw(st.permutations(header))
    if rarely(draw, 5):
        header = draw(st.lists(st.one_of(st.sampled_from(CSV_COLUMNS + [" XMIN ", "Class", "extra"]), TEXT), max_size=10))
    rows = []
    for _ in range(draw(st.integers(1, 5))):
        if not rarely(draw, 4):  # a row shaped like the header, each cell drawn for its column
            rows.append([draw(CSV_CELL_BY_COLUMN.get(name.strip().lower(), CSV_CELLS)) for name in header])
        else:
            rows.append(draw(st.lists(CSV_CELLS, min_size=max(len(header) - 1, 0), max_size=len(header) + 1)))
    buf = io.StringIO()
    eol = draw(st.sampled_from(["\n", "\r\n"]))
    if not rarely(draw, 4):
        csv.writer(buf, lineterminator=eol).writerows([header, *rows])
        text = buf.getvalue()
    else:  # written by hand: unbalanced quotes and all
        text = eol.join(",".join(row) for row in [header, *rows])
    data = text.encode("utf-8", "surrogatepass")
    how = draw(st.sampled_from(["plain"] * 4 + ["bom", "nul", "latin1", "bytes"]))
    if how == "bom":
        data = b"\xef\xbb\xbf" + data
    elif how == "nul":
        data = data.replace(b",", b",\x00", 1)
    elif how == "latin1":
        data += "é".encode("latin-1")
    elif how == "bytes":
        data = draw(st.binary(max_size=80))
    return data


@FUZZ
@given(
    content=csv_bytes(),
    file=st.sampled_from(["_annotations.csv", "train/_annotations.csv", "annotations.csv", "boxes.csv"]),
    named=st.booleans(),
)
def test_csv_reader_survives_anything(content, file, named):
    with dataset_dir() as root:
        target = root / file
        put_images(target.parent)
        target.write_bytes(content)
        run_contract("csv", root, target if named else root, [target])


# ----------------------------------------------------------------------------- classification folders

FOLDER_NAMES = st.sampled_from(["train", "valid", "val", "test", "TEST", "cat", "dög", ".hidden", "a" * 200, "x y", "images"])
FILES = st.sampled_from(["img.jpg", "b.png", "empty.jpg", "notes.txt", "fake.png", LINK, ".hidden.jpg", "IMG.JPEG"])


@FUZZ
@given(tree=st.lists(st.tuples(st.lists(FOLDER_NAMES, max_size=3), FILES), min_size=1, max_size=8))
def test_folders_reader_survives_anything(tree):
    with dataset_dir() as root:
        files = []
        for folders, name in tree:
            folder = root.joinpath(*folders)
            folder.mkdir(parents=True, exist_ok=True)
            target = folder / name
            if target.exists() or target.is_symlink():
                continue
            if name == LINK:
                os.symlink(Path(*[".."] * (len(folders) + 1), "outside", "secret.jpg"), target)
            else:
                target.write_bytes({"img.jpg": JPEG, "b.png": PNG, "IMG.JPEG": JPEG, ".hidden.jpg": JPEG}.get(name, b"not an image"))
            files.append(target)
        run_contract("folders", root, root, files)
        dataset = check_read("images", root, root)
        assert dataset is not None and all(not r.annotations for r in dataset.images)




def test_every_registered_format_is_fuzzed():
    fuzzed = {"coco", "labelme", "createml", "yolo", "voc", "csv", "folders", "images"}
    assert set(available()) == fuzzed, "a new reader needs a fuzz test here"


def test_yolo_reader_survives_a_data_yaml_nested_too_deeply():
    """PyYAML recurses per nesting level (RecursionError); one example, it takes about a second."""
    with dataset_dir() as root:
        put_images(root / "images")
        (root / "labels").mkdir()
        (root / "labels" / "img.txt").write_text("0 0.5 0.5 0.1 0.1\n")
        (root / "data.yaml").write_bytes(b"names: " + b"[" * 3000 + b"]" * 3000)
        assert 0.0 <= get_format("yolo").detect(root) <= 1.0  # the labels still look like YOLO
        assert check_read("yolo", root, root) is None  # refused as a FormatError


# ----------------------------------------------------------------------------- what the fuzzing found

LONG = "a" * 300 + ".jpg"  # longer than a file name may be: stat() raises ENAMETOOLONG
BIG = 10**400  # an int no float64 holds
DIGITS = "7" * 5000  # an int Python refuses to parse (ValueError, since 3.11)


def _coco(images: list, annotations: list) -> str:
    return json.dumps({"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "car"}]})


def _ann(**fields) -> dict:
    return {"id": 1, "image_id": 1, "category_id": 1, **fields}


def _labelme(**fields) -> str:
    return json.dumps({"shapes": [], "imagePath": IMAGE, **fields})


def _createml(coordinates: dict, image: str = IMAGE) -> str:
    return json.dumps([{"image": image, "annotations": [{"label": "car", "coordinates": coordinates}]}])


#: (format, {file: content}) - each one made a reader raise something other than a WinnowError,
#: return a box that is not finite, return a file outside the dataset, or crash the interpreter.
KNOWN_BAD = {
    "coco-int-past-digit-limit": ("coco", {"annotations.json": '{"images": [], "x": ' + DIGITS + "}"}),
    "coco-file-name-too-long": ("coco", {"annotations.json": _coco([{"id": 1, "file_name": LONG}], [])}),
    "coco-symlink-out": ("coco", {"annotations.json": _coco([{"id": 1, "file_name": LINK}], [])}),
    "coco-bbox-int-past-float": ("coco", {"annotations.json": _coco([{"id": 1, "file_name": IMAGE}], [
        _ann(bbox=[BIG, 1, 1, 1]), _ann(id=2, bbox=[BIG, -BIG, 1.0, 1]), _ann(id=3, bbox=[10**308, 10**308, 1, 1])])}),
    "coco-polygon-and-score-int-past-float": ("coco", {"annotations.json": _coco([{"id": 1, "file_name": IMAGE}], [
        _ann(bbox=None, segmentation=[[BIG, 1, 2, 3, 4, 5]]), _ann(id=2, bbox=[1, 1, 1, 1], score=BIG)])}),
    # no declared image size, so nothing checked the RLE size: pycocotools overflowed, or divided
    # by a size truncated to 0 and killed the process (SIGFPE)
    "coco-rle-size-past-32-bits": ("coco", {"annotations.json": _coco([{"id": 1, "file_name": IMAGE}], [
        _ann(bbox=None, segmentation={"size": [2**40, 1], "counts": rle_string([2**39, 2**39])}),
        _ann(id=2, bbox=None, segmentation={"size": [2**33, 2**31], "counts": [2**64]})])}),
    "labelme-int-past-digit-limit": ("labelme", {"img.json": '{"shapes": [], "imageWidth": ' + DIGITS + "}"}),
    "labelme-int-past-float": ("labelme", {"img.json": _labelme(imageWidth=BIG, shapes=[
        {"label": "car", "points": [[1, 1], [BIG, 3]], "shape_type": "rectangle"}])}),
    "labelme-image-path-too-long": ("labelme", {"img.json": _labelme(imagePath=LONG)}),
    "createml-image-name-too-long": ("createml", {"_annotations.createml.json": _createml({}, image=LONG)}),
    "createml-int-past-float": ("createml", {"_annotations.createml.json": _createml({"x": BIG, "y": 1, "width": 1, "height": 1})}),
    "createml-centre-plus-half-overflows": ("createml", {"_annotations.createml.json": _createml(
        {"x": 1.7e308, "y": 1, "width": 1e308, "height": 1})}),
    "csv-file-name-too-long": ("csv", {"_annotations.csv": f"filename,width,height,class,xmin,ymin,xmax,ymax\n{LONG},,,car,1,1,2,2\n"}),
    "voc-unknown-encoding": ("voc", {"img.xml": '<?xml version="1.0" encoding="bogus"?><annotation/>'}),
    "voc-multibyte-encoding": ("voc", {"img.xml": '<?xml version="1.0" encoding="utf-32"?><annotation/>'}),
    "voc-file-name-too-long": ("voc", {"img.xml": f"<annotation><filename>{LONG}</filename></annotation>"}),
    "yolo-infinite-class-id-key": ("yolo", {"data.yaml": "names: {.inf: car, 0: cat}\n", "labels/img.txt": ""}),
    "yolo-int-past-digit-limit": ("yolo", {"data.yaml": f"nc: {DIGITS}\n", "labels/img.txt": ""}),
    "yolo-path-too-long": ("yolo", {"data.yaml": f"path: {LONG}\ntrain: {LONG}\nnames: [car]\n", "labels/img.txt": ""}),
    "yolo-list-entry-too-long": ("yolo", {"data.yaml": "train: list.txt\nnames: [car]\n", "list.txt": LONG}),
    "yolo-finite-values-overflow-once-scaled": ("yolo", {"data.yaml": "names: [car]\n", "labels/img.txt": (
        "0 1e308 0.5 1e308 0.5\n0 0.5 0.5 0.1 0.1\n0 1e308 1e308 -1e308 1e308 0 1\n")}),
    # both built a list of class_<id> names up to the id: a hang, then out of memory
    "yolo-huge-nc-without-names": ("yolo", {"data.yaml": "nc: 1000000000000\n", "labels/img.txt": "0 0.5 0.5 0.1 0.1\n"}),
    "yolo-huge-class-id-without-names": ("yolo", {"labels/img.txt": "99999999999 0.5 0.5 0.1 0.1\n"}),
}


@pytest.mark.parametrize("case", sorted(KNOWN_BAD))
def test_inputs_the_fuzzing_found(case):
    name, files = KNOWN_BAD[case]
    with dataset_dir() as root:
        put_images(root / ("images" if name == "yolo" else ""))
        for rel, content in files.items():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_text(content, encoding="utf-8")
        run_contract(name, root, root, [root / rel for rel in files])
