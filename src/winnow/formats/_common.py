"""Helpers shared by the file-per-image and file-per-split formats (VOC, LabelMe, CreateML, CSV).

These formats share one way of finding things on disk:

* the **import root** is the directory the user named (or the folder holding the file they named);
* a **split folder** is a direct child of the root called ``train``, ``valid``, ``val`` or
  ``test`` (Roboflow's layout). An annotation file inside one gives its records that split, and
  their names are relative to the split folder (``train/a.jpg`` is record ``a.jpg``, split
  ``train``), so that names and splits round-trip independently;
* an image a file refers to must lie inside the root (``..`` may be used, but never to leave it;
  absolute paths and symlinks out are refused);
* images found beside listed images (and, for the file-per-split formats, under the annotation
  file's folder), but listed by no annotation file, are kept with no objects and the tag
  :data:`~winnow.core.types.UNLABELED_TAG` (one warning per folder). Writers write no
  annotation for a record with that tag and no annotations, so the distinction between "not
  labelled" and "labelled, nothing there" survives a round trip.

:class:`RecordCollector` applies those rules while a reader adds records, probes each image's
header for its displayed size, and refuses the same image twice.
"""

from __future__ import annotations

import json
import math
import os
import posixpath
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath
from typing import Any

from winnow.core.geometry import polygon_bbox
from winnow.core.types import SPLIT_ALIASES, UNLABELED_TAG, Annotation, Dataset, ImageRecord, Problems, Task
from winnow.errors import FormatError
from winnow.formats.base import IMAGE_EXTENSIONS, find_images, is_inside, relname, safe_join
from winnow.media import InvalidImageError, probe_file

#: Folder names that mean a split, mapped to winnow's split names.

#: How many names a warning about many images lists before ``...``.
MAX_LISTED = 5

#: How many bytes :func:`peek` reads: enough for a header, cheap on a large file.
PEEK_BYTES = 64 * 1024


# --------------------------------------------------------------------------- numbers


def parse_number(text: object) -> float | None:
    """A finite float from a number or a numeric string; ``None`` for anything else.

    ``bool`` is not a number; NaN and infinities are refused.
    """
    if isinstance(text, bool) or text is None:
        return None
    if isinstance(text, (int, float)):
        try:
            value = float(text)
        except OverflowError:  # an int too large for a float64
            return None
    elif isinstance(text, str):
        try:
            value = float(text.strip())
        except ValueError:
            return None
    else:
        return None
    return value if math.isfinite(value) else None


def format_number(value: float) -> str:
    """Text for a coordinate: an integer when the value is integral, else the float's ``repr``.

    ``repr`` is the shortest text that parses back to the same float64, so writing is lossless.
    """
    number = float(value)
    if number.is_integer():
        return str(int(number))
    return repr(number)


def box_problem(x1: float, y1: float, x2: float, y2: float) -> str | None:
    """Why an ``xyxy`` box is unusable (not finite, empty or inverted), or ``None`` when it is fine."""
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):  # CreateML's centre + size/2 can overflow
        return f"box is not finite (xmin={x1:g}, ymin={y1:g}, xmax={x2:g}, ymax={y2:g})"
    if x2 <= x1 or y2 <= y1:
        return f"empty or inverted box (xmin={x1:g}, ymin={y1:g}, xmax={x2:g}, ymax={y2:g})"
    return None


def positive_int(value: object) -> int | None:
    """A declared image dimension: a positive integer (``"640"``, ``640``, ``640.0``), else ``None``."""
    number = parse_number(value)
    if number is None or number <= 0 or not number.is_integer():
        return None
    return int(number)


# --------------------------------------------------------------------------- files


def peek(path: Path, size: int = PEEK_BYTES) -> str:
    """The first ``size`` bytes of a file as text (undecodable bytes replaced); ``""`` on error."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(size)
    except OSError:
        return ""
    return head.decode("utf-8", errors="replace").lstrip("\ufeff")


def walk_files(root: Path, suffixes: tuple[str, ...], max_depth: int | None = None) -> Iterator[Path]:
    """Regular files under ``root`` whose name ends with one of ``suffixes`` (case-insensitive).

    Sorted, depth-first; hidden files and folders are skipped, folder symlinks are not followed and
    file symlinks that point outside ``root`` are skipped. ``max_depth`` 0 is ``root`` alone.
    """
    root = Path(root)
    base_depth = len(root.parts)
    for dirpath, dirnames, filenames in os.walk(root):
        depth = len(Path(dirpath).parts) - base_depth
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        if max_depth is not None and depth >= max_depth:
            dirnames[:] = []
        for fn in sorted(filenames):
            if fn.startswith(".") or not fn.lower().endswith(suffixes):
                continue
            path = Path(dirpath, fn)
            if path.is_symlink() and not is_inside(path, root):
                continue
            if path.is_file():
                yield path


def detect_files(path: Path, suffixes: tuple[str, ...], limit: int = 50) -> list[Path]:
    """The files ``detect`` should peek at: ``path`` itself, or the first few under it (depth 3)."""
    path = Path(path)
    if path.is_file():
        return [path] if path.name.lower().endswith(suffixes) else []
    if not path.is_dir():
        return []
    found: list[Path] = []
    for file in walk_files(path, suffixes, max_depth=3):
        found.append(file)
        if len(found) >= limit:
            break
    return found


def import_root(path: Path) -> Path:
    """The import root for ``path``: itself for a folder, else the folder holding the file.

    When that folder is a split folder, the root is one level up so the split is kept.
    """
    path = Path(path)
    if path.is_dir():
        return path
    parent = path.parent
    return parent.parent if parent.name.lower() in SPLIT_ALIASES else parent


def resolve_inside(root: Path, base: Path, ref: str) -> Path | None:
    """``base / ref`` normalised, or ``None`` when ``ref`` is absolute or the result leaves ``root``.

    ``ref`` may use ``\\`` or ``/`` and may contain ``..`` as long as it stays inside ``root``
    (LabelMe writes ``../images/a.jpg``). ``base`` must be inside ``root``.
    """
    unified = ref.strip().replace("\\", "/")
    if not unified or "\x00" in unified or unified.startswith("/") or (len(unified) > 1 and unified[1] == ":"):
        return None
    try:
        base_rel = Path(base).relative_to(root).as_posix()
    except ValueError:
        return None
    joined = posixpath.normpath(posixpath.join(base_rel, unified))
    if joined in (".", "..") or joined.startswith("../"):
        return None
    candidate = Path(root, *PurePosixPath(joined).parts)
    try:
        if candidate.is_symlink() and not is_inside(candidate, root):
            return None
    except OSError:  # e.g. a name too long for the file system: it cannot name a file
        return None
    return candidate


def find_by_stem(root: Path, folder: Path, stem: str) -> Path | None:
    """An image in ``folder`` named ``stem`` plus an image extension (any case), or ``None``.

    Only files inside ``root`` count (a symlink out is ignored).
    """
    try:
        names = sorted(os.listdir(folder))
    except OSError:
        return None
    for fn in names:
        p = Path(fn)
        if p.stem == stem and p.suffix.lower() in IMAGE_EXTENSIONS and not fn.startswith("."):
            found = Path(folder, fn)
            if found.is_file() and is_inside(found, root):
                return found
    return None


def first_existing(root: Path, candidates: list[Path | None]) -> Path | None:
    """The first candidate that is a file inside ``root``."""
    for candidate in candidates:
        if candidate is not None and candidate.is_file() and is_inside(candidate, root):
            return candidate
    return None


def read_json(path: Path) -> Any:
    """Parse a JSON file; raise :class:`~winnow.errors.FormatError` naming the line and column.

    UTF-8 (with or without a BOM), UTF-16 and UTF-32 are accepted, as :func:`json.loads` detects.
    ``NaN`` and ``Infinity`` literals parse (as floats) so the checks on values can name them.
    """
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise FormatError(path, f"cannot read: {exc.strerror or exc}") from None
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return json.loads(data)
    except json.JSONDecodeError as exc:
        raise FormatError(path, f"malformed JSON: {exc.msg}", where=f"line {exc.lineno}, column {exc.colno}") from None
    except UnicodeDecodeError as exc:
        raise FormatError(path, "not UTF-8 text", where=f"byte {exc.start}") from None
    except RecursionError:
        raise FormatError(path, "JSON nested too deeply") from None
    except ValueError as exc:  # an integer past Python's digit limit (json.loads raises a plain ValueError)
        raise FormatError(path, f"malformed JSON: {exc}") from None


# --------------------------------------------------------------------------- names and splits


def split_base(annotation_dir: Path, root: Path) -> tuple[Path, str | None]:
    """The folder names are relative to, and the split, for an annotation file in ``annotation_dir``.

    A file under ``root/train/...`` gives ``(root/train, "train")``; anything else ``(root, None)``.
    """
    try:
        rel = Path(annotation_dir).relative_to(root)
    except ValueError:
        return Path(root), None
    if rel.parts and rel.parts[0].lower() in SPLIT_ALIASES:
        return Path(root, rel.parts[0]), SPLIT_ALIASES[rel.parts[0].lower()]
    return Path(root), None


def name_and_split(image: Path, root: Path, annotation_dir: Path | None = None) -> tuple[str, str | None]:
    """Record name and split of ``image``, following the module's rules.

    With ``annotation_dir`` the split comes from the annotation file's folder; without (an image no
    file refers to) from the image's own folder.
    """
    base, split = split_base(annotation_dir if annotation_dir is not None else Path(image).parent, root)
    try:
        return relname(image, base), split
    except ValueError:  # the file points outside its split folder: name it from the root
        return relname(image, root), split


# --------------------------------------------------------------------------- collecting records


Namer = Callable[[Path, "Path | None"], tuple[str, "str | None"]]


class RecordCollector:
    """Accumulates the records a reader builds, applying the shared rules of this module.

    ``add`` names the record and sets its split (unless the reader already set one), checks that
    the image is readable and takes its displayed size from the header, warns when the annotation
    file declared another size, and refuses an image that a previous record already claimed.
    """

    def __init__(self, root: Path, problems: Problems, namer: Namer | None = None):
        self.root = Path(root)
        self.problems = problems
        self.records: list[ImageRecord] = []
        self._namer = namer or (lambda image, ann_dir: name_and_split(image, self.root, ann_dir))
        self._names: set[str] = set()
        self._owners: dict[Path, str] = {}
        self._failed: set[tuple[Path, str]] = set()
        self._trees: set[Path] = set()

    def add(self, record: ImageRecord, image: Path, source: Path) -> bool:
        """Add ``record`` whose bytes are ``image``, read from the annotation file ``source``.

        Returns ``False`` (and reports why) when the record is refused.
        """
        if not is_inside(image, self.root):
            self.problems.error(source, f"refused: image {image} is outside the import root")
            return False
        key = Path(image).resolve()
        if key in self._owners:
            shown = relname(image, self.root)
            self.problems.error(source, f"image {shown} is already annotated by {self._owners[key]}", record=shown)
            return False
        name, split = self._namer(Path(image), Path(source).parent)
        if name in self._names:
            full = relname(image, self.root)
            if full in self._names:
                self.problems.error(source, f"duplicate image name {full!r}", record=full)
                return False
            self.problems.warning(source, f"image name {name!r} is used twice; this one is named {full!r}", record=full)
            name = full
        if not self._measure(record, image, source, name):
            return False
        record.name = name
        record.file = Path(image)
        if record.split is None:
            record.split = split
        self._names.add(name)
        self._owners[key] = relname(source, self.root) if Path(source).is_relative_to(self.root) else str(source)
        self.records.append(record)
        return True

    def _measure(self, record: ImageRecord, image: Path, source: Path, name: str) -> bool:
        try:
            info = probe_file(image)
        except (InvalidImageError, OSError) as exc:
            self.problems.error(source, f"image not readable: {exc}", record=name)
            return False
        record.width, record.height = info.width, info.height
        declared = (record.declared_width, record.declared_height)
        if None not in declared and declared != (info.width, info.height):
            self.problems.warning(
                source,
                f"declared size {declared[0]}x{declared[1]} differs from the image's "
                f"{info.width}x{info.height}; boxes are kept as written",
                record=name,
            )
        return True

    def failed(self, folder: Path, stem: str) -> None:
        """Note that the annotation file for the image ``folder/stem.*`` could not be read.

        That image is then left out of :meth:`add_unlisted_images`: it has labels, just unreadable
        ones, and importing it as unlabelled would pass it off as a background image.
        """
        self._failed.add((Path(folder).resolve(), stem))

    def also_scan(self, folder: Path) -> None:
        """Have :meth:`add_unlisted_images` look through the whole tree under ``folder`` too."""
        self._trees.add(Path(folder))

    def _unlisted_candidates(self) -> list[Path]:
        """Images in the folders of listed images, and under the :meth:`also_scan` trees."""
        found: set[Path] = set()
        for folder in {Path(r.file).parent for r in self.records}:
            found.update(Path(folder, fn) for fn in os.listdir(folder) if not fn.startswith("."))
        for tree in self._trees:
            if tree.is_dir():
                found.update(find_images(tree))
        return sorted(p for p in found if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())

    def add_unlisted_images(self, format_label: str) -> None:
        """Keep, tagged :data:`UNLABELED_TAG`, the images that no annotation file lists.

        They are looked for beside listed images and under the :meth:`also_scan` trees; one warning
        per folder gives their count and first names. Images whose annotation file failed
        (:meth:`failed`) are left out.
        """
        unlisted: dict[Path, list[str]] = {}
        for image in self._unlisted_candidates():
            if image.resolve() in self._owners or not is_inside(image, self.root):
                continue
            if (image.parent.resolve(), image.stem) in self._failed:
                continue
            name, split = self._namer(image, None)
            record = ImageRecord(name=name, split=split, tags=[UNLABELED_TAG])
            if self.add(record, image, image):
                unlisted.setdefault(image.parent, []).append(record.name)
        for folder, names in unlisted.items():
            shown = ", ".join(names[:MAX_LISTED]) + (", ..." if len(names) > MAX_LISTED else "")
            message = (
                f"{len(names)} image(s) listed in no {format_label} annotation file "
                f"(kept with no objects, tagged {UNLABELED_TAG!r}): {shown}"
            )
            self.problems.warning(folder, message)

    def dataset(self, task: Task | None = Task.DETECT) -> Dataset:
        """The collected records as a dataset; classes in order of first use."""
        dataset = Dataset(images=self.records, task=task)
        dataset.ensure_classes()
        if task is None:
            dataset.task = dataset.infer_task()
        return dataset


# --------------------------------------------------------------------------- writing


def image_size(record: ImageRecord, written: Path) -> tuple[int | None, int | None]:
    """The ``(width, height)`` a writer records: the record's, else the declared one, else the
    header of the image just written; ``(None, None)`` when none is known."""
    if record.width and record.height:
        return record.width, record.height
    if record.declared_width and record.declared_height:
        return record.declared_width, record.declared_height
    try:
        info = probe_file(written)
    except (InvalidImageError, OSError):
        return None, None
    return info.width, info.height


def split_dir(dest: Path, split: str | None) -> Path:
    """Where a writer puts the files of ``split``: ``dest/<split>`` (Roboflow's layout), or ``dest``."""
    return Path(dest) if split is None else safe_join(dest, split)


def is_unlabeled(record: ImageRecord) -> bool:
    """True for a record whose image was never labelled: tagged ``unlabeled``, no annotations.

    Writers list no annotation for it, so a reader tags it again.
    """
    return UNLABELED_TAG in record.tags and not record.annotations


def group_by_split(dataset: Dataset) -> dict[str | None, list[ImageRecord]]:
    """The dataset's records grouped by split, in first-seen order (``None`` for no split)."""
    groups: dict[str | None, list[ImageRecord]] = {}
    for record in dataset.images:
        groups.setdefault(record.split, []).append(record)
    return groups


def box_of(annotation: Annotation) -> tuple[float, float, float, float] | None:
    """The ``xyxy`` box a box-only format writes for ``annotation``: its box, else its polygon's.

    ``None`` for an image-level label, which box formats cannot hold.
    """
    if annotation.bbox is not None:
        return tuple(float(v) for v in annotation.bbox)  # type: ignore[return-value]
    if annotation.polygon:
        return polygon_bbox(annotation.polygon)
    return None
