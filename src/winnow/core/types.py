"""Pure domain types shared by every layer (no I/O).

Coordinate conventions, used everywhere a box crosses a boundary inside winnow:

* Boxes are ``xyxy`` in **absolute pixels**, float64, continuous coordinates: ``(0, 0)`` is the
  top-left corner of the top-left pixel, and a box covering exactly the first pixel is
  ``(0, 0, 1, 1)``. Width is ``x2 - x1``.
* Coordinates refer to the image **as displayed**, i.e. after its EXIF orientation is applied.
* Polygons are a list of parts; each part is a flat ``[x0, y0, x1, y1, ...]`` list in the same
  pixel frame (COCO's convention).
* Masks are COCO RLE dicts ``{"size": [height, width], "counts": str}`` (compressed counts).

Formats convert from and to their own conventions at the edge (YOLO normalised centres, COCO
``xywh``, ...). Nothing else in winnow needs to know them.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

SPLITS = ("train", "valid", "test")

#: Folder names and file keys that name a split on disk (Roboflow, Ultralytics, VOC), and
#: winnow's split for each.
SPLIT_ALIASES = {"train": "train", "valid": "valid", "val": "valid", "test": "test"}

#: Tag of an image whose labels are unknown (e.g. a YOLO image with no label file), as opposed to
#: an image labelled as having no objects.
UNLABELED_TAG = "unlabeled"
#: The metadata key and value that mark an image a customer project inherits from its base
#: (``winnow project fork``): the version's manifest gives it ``{"origin": "base"}``.
ORIGIN_KEY = "origin"
ORIGIN_BASE = "base"

#: Tag of an image captured from production through the inference API (it is also ``unlabeled``
#: until a person labels it).
CAPTURED_TAG = "captured"


class Task(str, enum.Enum):
    """What a project's labels describe."""

    CLASSIFY = "classify"
    DETECT = "detect"
    SEGMENT = "segment"


class Source(str, enum.Enum):
    """Where an annotation came from."""

    HUMAN = "human"
    IMPORT = "import"
    MODEL = "model"


@dataclass
class Annotation:
    """One label on one image.

    Exactly one kind of geometry is meaningful for most annotations, but several may be present:
    a polygon or mask annotation also carries its bounding ``bbox`` (derived when the source format
    has none). An annotation with no geometry at all is an image-level class label
    (classification).

    Attributes:
        label: class name (not an id: ids are a storage detail).
        bbox: ``(x1, y1, x2, y2)`` in absolute pixels, or ``None``.
        polygon: list of flat ``[x, y, ...]`` parts in absolute pixels, or ``None``.
        rle: COCO compressed RLE ``{"size": [h, w], "counts": str}``, or ``None``.
        iscrowd: COCO's crowd flag.
        score: model confidence in ``[0, 1]`` for ``source=model``, else ``None``.
        source: who made it.
        attributes: any extra per-annotation key/values a format carries (occluded, truncated...).
        external_id: the id the annotation had in the file it was read from, if any.
        id: the annotation's id in the store, once stored (``None`` for files read from disk).
    """

    label: str
    bbox: tuple[float, float, float, float] | None = None
    polygon: list[list[float]] | None = None
    rle: dict[str, Any] | None = None
    iscrowd: bool = False
    score: float | None = None
    source: Source = Source.IMPORT
    attributes: dict[str, Any] = field(default_factory=dict)
    external_id: int | str | None = None
    id: int | None = None

    @property
    def kind(self) -> str:
        """``mask``, ``polygon``, ``box`` or ``label`` - the richest geometry present."""
        if self.rle is not None:
            return "mask"
        if self.polygon is not None:
            return "polygon"
        if self.bbox is not None:
            return "box"
        return "label"


@dataclass
class ImageRecord:
    """One image as a dataset describes it: a name, its size, its labels and its slices.

    A record is not its bytes: ``file`` says where the bytes are when reading a dataset from disk
    and ``sha256`` which blob holds them once stored. Two records may share the same bytes.

    Attributes:
        name: path relative to the dataset root, POSIX separators (``"train/cat_01.jpg"``).
        width, height: pixel size as displayed (after EXIF orientation); ``None`` while unknown.
        declared_width, declared_height: the size the annotation file claimed, if it claimed one.
    """

    name: str
    width: int | None = None
    height: int | None = None
    annotations: list[Annotation] = field(default_factory=list)
    split: str | None = None
    tags: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    file: Any = None  # pathlib.Path of the bytes on disk while importing
    sha256: str | None = None
    external_id: int | str | None = None
    declared_width: int | None = None
    declared_height: int | None = None
    id: int | None = None  # the record's id in the store, once stored

    def boxes(self) -> np.ndarray:
        """The ``(N, 4)`` float64 ``xyxy`` array of the annotations that have a box."""
        rows = [a.bbox for a in self.annotations if a.bbox is not None]
        return np.asarray(rows, dtype=np.float64).reshape(-1, 4)


@dataclass
class Dataset:
    """A whole dataset in winnow's terms: what every format reads into and writes from.

    ``classes`` keeps the dataset's class order (YOLO ids, COCO category order); labels used by
    annotations but missing from ``classes`` are appended by :meth:`ensure_classes`.
    """

    classes: list[str] = field(default_factory=list)
    images: list[ImageRecord] = field(default_factory=list)
    task: Task | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def class_order(self, kinds: frozenset[str] | None = None) -> list[str]:
        """``classes`` (duplicates dropped), then labels used but not declared, in first-use order.

        ``kinds`` limits the undeclared labels considered to annotations of those kinds
        (``label``, ``box``, ``polygon``, ``mask``).
        """
        names = list(dict.fromkeys(self.classes))
        known = set(names)
        for image in self.images:
            for ann in image.annotations:
                if ann.label not in known and (kinds is None or ann.kind in kinds):
                    known.add(ann.label)
                    names.append(ann.label)
        return names

    def ensure_classes(self) -> None:
        """Append any label used by an annotation that is not in ``classes`` (stable order)."""
        self.classes = self.class_order()

    def infer_task(self) -> Task:
        """The task the annotations imply when the format did not say."""
        if self.task is not None:
            return self.task
        kinds = {a.kind for im in self.images for a in im.annotations}
        if kinds & {"polygon", "mask"}:
            return Task.SEGMENT
        if "box" in kinds:
            return Task.DETECT
        if "label" in kinds:
            return Task.CLASSIFY
        return Task.DETECT

    @property
    def annotation_count(self) -> int:
        return sum(len(im.annotations) for im in self.images)


@dataclass
class Problem:
    """Something a reader or an importer skipped, and why.

    ``file`` and ``where`` locate it (``line 3``, ``annotations[12]``, ``images[4]``); ``record``
    names the image when there is one. ``level`` is ``error`` (record skipped) or ``warning``
    (kept, but worth a look).
    """

    file: str
    message: str
    where: str | None = None
    record: str | None = None
    level: str = "error"

    def __str__(self) -> str:
        loc = self.file + (f" ({self.where})" if self.where else "")
        rec = f" [{self.record}]" if self.record else ""
        return f"{self.level}: {loc}{rec}: {self.message}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "level": self.level,
            "file": self.file,
            "where": self.where,
            "record": self.record,
            "message": self.message,
        }


class Problems(list):
    """The list of :class:`Problem` a read or an import collected."""

    def error(self, file: Any, message: str, where: str | None = None, record: str | None = None) -> None:
        self.append(Problem(str(file), message, where, record, "error"))

    def warning(self, file: Any, message: str, where: str | None = None, record: str | None = None) -> None:
        self.append(Problem(str(file), message, where, record, "warning"))

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self if p.level == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self if p.level == "warning"]


def is_finite_number(value: Any) -> bool:
    """True for an int or float that is neither NaN nor infinite (``bool`` is not a number)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int too large for a float64 (JSON allows 10**400)
        return False
