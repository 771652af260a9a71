"""Pascal VOC: one XML file per image (VOC devkit, LabelImg, CVAT and Roboflow exports).

Layouts read:

* the VOC devkit: ``Annotations/<id>.xml`` + ``JPEGImages/<id>.<ext>``, splits from
  ``ImageSets/Main/{train,val,test}.txt`` (one id a line). The devkit may be the import root or any
  folder below it (``VOCdevkit/VOC2007``); record names are relative to ``JPEGImages`` (prefixed with
  the devkit folder when it is not the root);
* flat folders with each XML beside its image (LabelImg), and Roboflow's ``train/``, ``valid/``,
  ``test/`` folders of such pairs (the folder gives the split).

Coordinates: ``xmin ymin xmax ymax`` are taken **as written**, as continuous absolute pixel
``xyxy``. The VOC devkit's 1-based convention is not shifted: LabelImg, Roboflow and supervision
read and write the values as-is, so shifting would move every box written by those tools by one
pixel, and taking them as-is keeps a write/read round trip lossless. Floats are accepted.

XML is parsed with defusedxml: DTDs, entities and external references are refused per file.
A bad file or object is reported and skipped; the others are read.

The writer produces a devkit (``JPEGImages/<name>``, ``Annotations/<name without extension>.xml``,
``ImageSets/Main/<split>.txt``); names with folders keep them under both folders.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path, PurePosixPath
from typing import Any

import defusedxml.ElementTree as DET
from defusedxml import DefusedXmlException

from winnow.core.types import SPLIT_ALIASES, Annotation, Dataset, ImageRecord, Problems, Task
from winnow.errors import FormatError
from winnow.formats._common import (
    RecordCollector,
    box_of,
    box_problem,
    detect_files,
    find_by_stem,
    first_existing,
    format_number,
    image_size,
    is_unlabeled,
    name_and_split,
    parse_number,
    peek,
    positive_int,
    resolve_inside,
    walk_files,
)
from winnow.formats.base import Format, ImageWriter, register, relname, safe_join, write_image

ANNOTATIONS_DIR = "Annotations"
IMAGES_DIR = "JPEGImages"
SETS_DIR = ("ImageSets", "Main")

#: Per-object flags LabelImg / CVAT write as ``0``/``1`` elements; read into attributes as bools.
FLAG_FIELDS = ("truncated", "difficult", "occluded")
#: Fields the writer always writes, with VOC's defaults.
DEFAULT_FIELDS: dict[str, Any] = {"pose": "Unspecified", "truncated": False, "difficult": False}

#: ImageSets file name -> winnow split. ``trainval`` is only used when neither train nor val exists.
SET_FILES = {"train": "train", "val": "valid", "valid": "valid", "test": "test"}
SPLIT_SET_FILE = {"train": "train", "valid": "val", "test": "test"}

_VOC_ROOT = re.compile(r"<annotation[\s>/]")
_VOC_CHILD = re.compile(r"<(object|filename|size|bndbox)[\s>/]")

Devkit = tuple[Path, str]  # (devkit folder, id of the XML relative to its Annotations folder)


# --------------------------------------------------------------------------- parsing one XML


def parse_xml(data: bytes, file: Path, problems: Problems) -> ET.Element | None:
    """The root element of ``data``, or ``None`` after reporting why it cannot be read safely."""
    try:
        return DET.fromstring(data, forbid_dtd=True)
    except DefusedXmlException as exc:
        problems.error(file, f"refused: XML with a DTD/entity ({type(exc).__name__})")
    except ET.ParseError as exc:
        line, column = exc.position
        problems.error(file, f"malformed XML: {str(exc).split(':')[0]}", where=f"line {line}, column {column}")
    except (LookupError, ValueError) as exc:  # an encoding declaration expat cannot use ("bogus", "utf-32")
        problems.error(file, f"unreadable XML: {exc}")
    return None


def parse_flag(text: str) -> bool | str:
    """``0``/``1``/``true``/``false`` as a bool; any other text is kept as it is."""
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes"):
        return True
    if lowered in ("0", "false", "no"):
        return False
    return text.strip()


def object_attributes(obj: ET.Element) -> dict[str, Any]:
    """``pose``, the flags and CVAT's ``<attributes>`` block of one ``<object>``."""
    attributes: dict[str, Any] = {}
    pose = obj.findtext("pose")
    if pose is not None and pose.strip():
        attributes["pose"] = pose.strip()
    for field in FLAG_FIELDS:
        text = obj.findtext(field)
        if text is not None and text.strip():
            attributes[field] = parse_flag(text)
    for attribute in obj.iterfind("attributes/attribute"):
        key = (attribute.findtext("name") or "").strip()
        if key and key not in attributes:
            attributes[key] = (attribute.findtext("value") or "").strip()
    return attributes


def parse_object(obj: ET.Element) -> Annotation | str:
    """One ``<object>`` as an annotation, or the reason it cannot be one."""
    label = (obj.findtext("name") or "").strip()
    if not label:
        return "object has no <name>"
    box = obj.find("bndbox")
    if box is None:
        return f"object {label!r} has no <bndbox>"
    coords: list[float] = []
    for key in ("xmin", "ymin", "xmax", "ymax"):
        text = box.findtext(key)
        if text is None:
            return f"object {label!r}: <bndbox> has no <{key}>"
        value = parse_number(text)
        if value is None:
            return f"object {label!r}: <{key}> is not a finite number: {text.strip()!r}"
        coords.append(value)
    x1, y1, x2, y2 = coords
    why = box_problem(x1, y1, x2, y2)
    if why is not None:
        return f"object {label!r}: {why}"
    return Annotation(label=label, bbox=(x1, y1, x2, y2), attributes=object_attributes(obj))


# --------------------------------------------------------------------------- layout


def find_devkit(xml: Path, root: Path) -> Devkit | None:
    """``(devkit folder, id)`` when ``xml`` lies under an ``Annotations`` folder inside ``root``."""
    for ancestor in xml.parents:
        if ancestor == root.parent or not ancestor.is_relative_to(root):
            return None
        if ancestor.name == ANNOTATIONS_DIR:
            return ancestor.parent, xml.relative_to(ancestor).with_suffix("").as_posix()
    return None


def read_image_sets(devkit: Path, problems: Problems) -> dict[str, str]:
    """id -> split from a devkit's ``ImageSets/Main/*.txt`` (train, val, test; else trainval)."""
    folder = devkit.joinpath(*SETS_DIR)
    present = {stem: folder / f"{stem}.txt" for stem in (*SET_FILES, "trainval") if (folder / f"{stem}.txt").is_file()}
    wanted = {stem: SET_FILES[stem] for stem in SET_FILES if stem in present}
    if "trainval" in present and not ({"train", "val", "valid"} & set(present)):
        wanted["trainval"] = "train"
    splits: dict[str, str] = {}
    for stem, split in wanted.items():
        try:
            lines = present[stem].read_text(encoding="utf-8-sig").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            problems.error(present[stem], f"cannot read image set: {exc}")
            continue
        for number, line in enumerate(lines, 1):
            image_id = line.strip()
            if not image_id:
                continue
            if image_id in splits and splits[image_id] != split:
                message = f"{image_id!r} is also in the {splits[image_id]} set; kept there"
                problems.warning(present[stem], message, where=f"line {number}")
                continue
            splits[image_id] = split
    return splits


def locate_image(xml: Path, filename: str, root: Path, devkit: Devkit | None) -> Path | None:
    """The image an XML describes: ``<filename>`` beside the XML, then in ``JPEGImages``, then by stem."""
    base = xml.parent
    basename = PurePosixPath(filename.replace("\\", "/")).name if filename else ""
    candidates: list[Path | None] = []
    if filename:
        candidates.append(resolve_inside(root, base, filename))
        candidates.append(resolve_inside(root, base, basename))
    if devkit is not None and basename:
        images = devkit[0] / IMAGES_DIR
        sub = PurePosixPath(devkit[1]).parent
        candidates.append(resolve_inside(root, images, (sub / basename).as_posix()))
        candidates.append(resolve_inside(root, images, filename))
    found = first_existing(root, candidates)
    if found is None:
        found = find_by_stem(root, base, xml.stem)
    if found is None and devkit is not None:
        xml_id = PurePosixPath(devkit[1])
        found = find_by_stem(root, devkit[0] / IMAGES_DIR / xml_id.parent, xml_id.name)
    return found


def voc_root(path: Path) -> Path:
    """The import root: the folder itself, or for one XML file the folder around it.

    An ``Annotations`` folder (or a file in one) stands for its devkit, and a file in a split
    folder for the folder above, so images and splits are still found.
    """
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    if folder.name == ANNOTATIONS_DIR or (folder != path and folder.name.lower() in SPLIT_ALIASES):
        return folder.parent
    return folder


# --------------------------------------------------------------------------- writing


def element(parent: ET.Element, tag: str, text: str | None = None) -> ET.Element:
    """Append ``<tag>text</tag>`` to ``parent`` and return it."""
    child = ET.SubElement(parent, tag)
    if text is not None:
        child.text = text
    return child


def attribute_text(value: Any) -> str:
    """An attribute value as VOC text: bools as ``1``/``0``, numbers without a spurious ``.0``."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, (int, float)):
        return format_number(value)
    return str(value)


def object_element(parent: ET.Element, annotation: Annotation, box: tuple[float, float, float, float]) -> None:
    """Append one ``<object>`` (LabelImg's element order) for ``annotation``."""
    obj = element(parent, "object")
    element(obj, "name", annotation.label)
    attributes = {**DEFAULT_FIELDS, **annotation.attributes}
    for field in ("pose", *FLAG_FIELDS):
        if field in attributes:
            element(obj, field, attribute_text(attributes[field]))
    bndbox = element(obj, "bndbox")
    for key, value in zip(("xmin", "ymin", "xmax", "ymax"), box):
        element(bndbox, key, format_number(value))
    extra = {k: v for k, v in annotation.attributes.items() if k not in ("pose", *FLAG_FIELDS)}
    scalars = {k: v for k, v in extra.items() if isinstance(v, (str, int, float, bool))}
    if scalars:
        block = element(obj, "attributes")
        for key, value in scalars.items():
            attribute = element(block, "attribute")
            element(attribute, "name", str(key))
            element(attribute, "value", attribute_text(value))


def record_xml(record: ImageRecord, size: tuple[int | None, int | None]) -> ET.Element:
    """The ``<annotation>`` element of one record (annotations without any geometry are left out).

    ``size`` is the image's ``(width, height)``; an unknown one is written as ``0``.
    """
    name = PurePosixPath(record.name)
    root = ET.Element("annotation")
    element(root, "folder", name.parent.name or IMAGES_DIR)
    element(root, "filename", name.name)
    size_element = element(root, "size")
    element(size_element, "width", str(size[0] or 0))
    element(size_element, "height", str(size[1] or 0))
    element(size_element, "depth", "3")
    element(root, "segmented", "0")
    for annotation in record.annotations:
        box = box_of(annotation)
        if box is not None:
            object_element(root, annotation, box)
    ET.indent(root, space="\t")
    return root


def xml_id(name: str, taken: set[str]) -> str:
    """The devkit id for a record name: the name without extension, unless another record has it."""
    stem = PurePosixPath(name).with_suffix("").as_posix()
    candidates = [stem, name] + [f"{name}~{n}" for n in range(2, 10_000)]
    for candidate in candidates:
        if candidate.casefold() not in taken:
            taken.add(candidate.casefold())
            return candidate
    raise FormatError(name, "too many images with the same name")


# --------------------------------------------------------------------------- the format


@register
class PascalVOC(Format):
    """Pascal VOC XML: see the module docstring for layouts and conventions."""

    name = "voc"
    description = "Pascal VOC XML, one file per image (VOC devkit, LabelImg, CVAT, Roboflow)"
    tasks = frozenset({Task.DETECT})

    def detect(self, path: Path) -> float:
        best = 0.0
        for file in detect_files(path, (".xml",), limit=20):
            head = peek(file, 4096)
            if _VOC_ROOT.search(head) and _VOC_CHILD.search(head):
                best = max(best, 0.95 if file.parent.name == ANNOTATIONS_DIR else 0.9)
        return best

    def read(self, path: Path, problems: Problems) -> Dataset:
        path = Path(path)
        root = voc_root(path)
        xmls = [path] if path.is_file() else list(walk_files(root, (".xml",)))
        if not xmls:
            raise FormatError(path, "no .xml annotation file found")
        image_sets: dict[Path, dict[str, str]] = {}

        def sets_of(devkit: Path) -> dict[str, str]:
            if devkit not in image_sets:
                image_sets[devkit] = read_image_sets(devkit, problems)
            return image_sets[devkit]

        def namer(image: Path, annotation_dir: Path | None) -> tuple[str, str | None]:
            for ancestor in image.parents:
                if not ancestor.is_relative_to(root):
                    break
                if ancestor.name == IMAGES_DIR:
                    devkit = ancestor.parent
                    inner = image.relative_to(ancestor)
                    prefix = devkit.relative_to(root)
                    sets = sets_of(devkit)  # the id is the stem, or the whole name when stems collide
                    split = sets.get(inner.as_posix()) or sets.get(inner.with_suffix("").as_posix())
                    return (prefix / inner).as_posix(), split
            return name_and_split(image, root, annotation_dir)

        collector = RecordCollector(root, problems, namer=namer)
        for xml in xmls:
            devkit = find_devkit(xml, root)
            if devkit is not None:
                collector.also_scan(devkit[0] / IMAGES_DIR)
            record, image = self._read_xml(xml, root, devkit, problems)
            if record is None or image is None:
                collector.failed(xml.parent, xml.stem)
                if devkit is not None:
                    xml_id = PurePosixPath(devkit[1])
                    collector.failed(devkit[0] / IMAGES_DIR / xml_id.parent, xml_id.name)
                continue
            if devkit is not None:
                record.split = sets_of(devkit[0]).get(devkit[1])
            collector.add(record, image, xml)
        collector.add_unlisted_images("VOC")
        return collector.dataset(Task.DETECT)

    def _read_xml(
        self, xml: Path, root: Path, devkit: Devkit | None, problems: Problems
    ) -> tuple[ImageRecord | None, Path | None]:
        """One XML file as a record and its image, or ``(None, None)`` after reporting why."""
        try:
            data = xml.read_bytes()
        except OSError as exc:
            problems.error(xml, f"cannot read: {exc}")
            return None, None
        top = parse_xml(data, xml, problems)
        if top is None:
            return None, None
        if top.tag != "annotation":
            problems.warning(xml, f"skipped: root element <{top.tag}> is not a Pascal VOC <annotation>")
            return None, None
        filename = (top.findtext("filename") or "").strip()
        image = locate_image(xml, filename, root, devkit)
        shown = filename or xml.stem
        if image is None:
            message = f"image file not found: {shown!r} (looked beside the XML and in {IMAGES_DIR}/)"
            problems.error(xml, message, record=shown)
            return None, None
        record = ImageRecord(
            name=relname(image, root),
            declared_width=positive_int(top.findtext("size/width")),
            declared_height=positive_int(top.findtext("size/height")),
        )
        for number, obj in enumerate(top.iterfind("object"), 1):
            parsed = parse_object(obj)
            if isinstance(parsed, str):
                problems.error(xml, parsed, where=f"object {number}", record=shown)
            else:
                record.annotations.append(parsed)
        return record, image

    def write(self, dataset: Dataset, dest: Path, images: ImageWriter) -> None:
        dest = Path(dest)
        taken: set[str] = set()
        sets: dict[str, list[str]] = {}
        for record in dataset.images:
            image = write_image(images, record, dest / IMAGES_DIR)
            record_id = xml_id(record.name, taken)
            if not is_unlabeled(record):  # no XML: read back as unlabeled, not as "no objects"
                target = safe_join(dest / ANNOTATIONS_DIR, f"{record_id}.xml")
                target.parent.mkdir(parents=True, exist_ok=True)
                tree = ET.ElementTree(record_xml(record, image_size(record, image)))
                tree.write(target, encoding="utf-8", xml_declaration=False)
            if record.split is not None:
                sets.setdefault(SPLIT_SET_FILE.get(record.split, record.split), []).append(record_id)
        for set_name, ids in sets.items():
            target = safe_join(dest.joinpath(*SETS_DIR), f"{set_name}.txt")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text("".join(f"{i}\n" for i in ids), encoding="utf-8")
