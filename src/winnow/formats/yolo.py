"""YOLO labels: Ultralytics and Roboflow exports, flat ``images/`` + ``labels/``, Darknet.

Layouts read (see ``docs/formats/yolo.md``):

* ``data.yaml`` with ``names`` (a list, or an ``{id: name}`` mapping), ``nc`` and ``train`` /
  ``val`` / ``test`` entries: folders of images (``train/images``, ``../train/images`` as
  Roboflow writes it, ``images/train`` as Ultralytics does) or ``.txt`` lists of image paths,
  relative to the yaml's folder or to its ``path`` key. Nothing outside the dataset folder is
  ever read.
* Without ``data.yaml`` (or besides what it lists): ``<split>/images``, ``images/<split>`` and
  ``images`` folders; failing those, images anywhere with their ``.txt`` beside them (Darknet),
  with class names from ``obj.names`` or ``classes.txt``.

The label file of an image follows Ultralytics' rule: the last ``images`` folder of its path
becomes ``labels`` and the extension becomes ``.txt`` (no ``images`` folder: the ``.txt`` sits
beside the image). A record's ``name`` is the image's path relative to the images folder of its
split (``train/images/sub/a.jpg`` -> ``sub/a.jpg``, split ``train``).

Each label line is ``class cx cy w h [confidence]`` (a box) or ``class x1 y1 x2 y2 x3 y3 ...``
(a polygon), normalised by the image size **as displayed** (after EXIF orientation), which is
read from the image header.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import yaml

from winnow.core import geometry
from winnow.core.types import SPLIT_ALIASES, SPLITS, UNLABELED_TAG, Annotation, Dataset, ImageRecord, Problems, Source, Task
from winnow.errors import FormatError, InvalidInputError
from winnow.formats.base import (
    record_path_problems,
    IMAGE_EXTENSIONS,
    Format,
    ImageWriter,
    find_images,
    is_inside,
    register,
    relname,
    safe_relpath,
    write_image,
)
from winnow.media import InvalidImageError, probe_file

# Records whose image has no label file ("not labelled") get UNLABELED_TAG, as opposed to an
# empty label file ("labelled, no objects"). The writer writes no label file for a record that
# has this tag and no annotations, so the distinction survives a round trip.

#: data.yaml keys and folder names that name a split, and winnow's split for each.

#: winnow split -> the data.yaml key Ultralytics reads.
_YAML_KEY = {"train": "train", "valid": "val", "test": "test"}

_YAML_FILES = ("data.yaml", "data.yml")
_CLASS_FILES = ("obj.names", "classes.txt", "classes.names")
_WINNOW_KEY = "winnow"
_ORIGINAL_NAMES = "original_names"
_NUMBER_FORMAT = ".12g"  # 1e-12 relative: far below 1e-6 px for any image winnow accepts
_UNIT_TOLERANCE = 1e-9  # normalised values this far past [0, 1] are float noise, not a defect
#: Class ids above this are refused when no class names are known (``class_<id>`` is made for
#: every id up to the largest: a stray ``99999999999`` must not build a list that large).
_MAX_CLASSES = 100_000
_NEWLINES = re.compile(r"\r\n|\n|\r")
_MAX_LISTED = 5


class LabelLineError(ValueError):
    """A label line that cannot be read; the message says why (without the line number)."""


@dataclass(frozen=True)
class LabelLine:
    """One YOLO label line, still in YOLO's normalised ``[0, 1]`` frame.

    Exactly one of ``box`` (``cx, cy, w, h``) and ``polygon`` (flat ``x0, y0, x1, y1, ...``) is
    set. ``score`` is the optional sixth column of a box line.
    """

    class_id: int
    box: tuple[float, float, float, float] | None = None
    polygon: tuple[float, ...] | None = None
    score: float | None = None


def outside_unit_square(lines: Sequence[LabelLine]) -> np.ndarray:
    """Boolean mask of the lines whose box corners or polygon points leave ``[0, 1]``.

    Boxes are checked in one vectorised call; a value past the edge by less than 1e-9 is float
    noise (``cx + w/2`` of a box that touches the edge), not a defect.
    """
    out = np.zeros(len(lines), dtype=bool)
    box_idx = [i for i, ln in enumerate(lines) if ln.box is not None]
    corners = geometry.cxcywh_norm_to_xyxy(np.asarray([lines[i].box for i in box_idx], dtype=np.float64), 1.0, 1.0)
    out[box_idx] = ~geometry.inside(corners, 1.0, 1.0, tolerance=_UNIT_TOLERANCE)
    for i, ln in enumerate(lines):
        if ln.polygon is not None:
            pts = np.asarray(ln.polygon, dtype=np.float64)
            out[i] = bool(((pts < -_UNIT_TOLERANCE) | (pts > 1 + _UNIT_TOLERANCE)).any())
    return out


# --------------------------------------------------------------------------- parsing lines


def _parse_class_id(token: str) -> int:
    try:
        value = int(token)
    except ValueError:
        try:
            as_float = float(token)
        except ValueError:
            raise LabelLineError(f"class id {token!r} is not an integer") from None
        if not math.isfinite(as_float) or not as_float.is_integer():
            raise LabelLineError(f"class id {token!r} is not an integer") from None
        value = int(as_float)
    if value < 0:
        raise LabelLineError(f"class id {value} is negative")
    return value


def _parse_number(token: str, column: int) -> float:
    try:
        value = float(token)
    except ValueError:
        raise LabelLineError(f"column {column}: {token!r} is not a number") from None
    if not math.isfinite(value):
        raise LabelLineError(f"column {column}: {token!r} is not a finite number")
    return value


def parse_label_line(text: str) -> LabelLine | None:
    """Parse one line of a YOLO label file; ``None`` for a blank line.

    Accepts ``class cx cy w h``, ``class cx cy w h confidence`` and
    ``class x1 y1 x2 y2 x3 y3 ...`` (three points or more). Raises :class:`LabelLineError` on a
    wrong column count, a class id that is not a non-negative integer, a value that is not a
    finite number, a box with ``w <= 0`` or ``h <= 0``, a confidence outside ``[0, 1]`` or a
    polygon whose points all lie on one horizontal or vertical line. Values outside ``[0, 1]``
    are *not* an error here (see :func:`outside_unit_square`).
    """
    tokens = text.lstrip("\ufeff").split()
    if not tokens:
        return None
    n = len(tokens)
    if n not in (5, 6) and (n < 7 or n % 2 == 0):
        raise LabelLineError(
            f"wrong column count {n}: expected 5 (class cx cy w h), 6 (with a confidence) "
            "or an odd count >= 7 (class x1 y1 x2 y2 x3 y3 ...)"
        )
    class_id = _parse_class_id(tokens[0])
    values = [_parse_number(tok, col) for col, tok in enumerate(tokens[1:], start=2)]
    if n >= 7:
        xs, ys = values[0::2], values[1::2]
        if max(xs) <= min(xs) or max(ys) <= min(ys):
            raise LabelLineError("polygon has no area (its bounding box has zero width or height)")
        return LabelLine(class_id, polygon=tuple(values))
    cx, cy, w, h = values[:4]
    if w <= 0 or h <= 0:
        raise LabelLineError(f"box width and height must be > 0 (w={w:g}, h={h:g})")
    score = values[4] if n == 6 else None
    if score is not None and not 0.0 <= score <= 1.0:
        raise LabelLineError(f"confidence {score:g} is outside [0, 1]")
    return LabelLine(class_id, box=(cx, cy, w, h), score=score)


def split_lines(text: str) -> list[str]:
    """Lines of a label file; ``\\n``, ``\\r\\n`` and ``\\r`` all end a line (1-based = index+1)."""
    return _NEWLINES.split(text.lstrip("\ufeff"))


def lines_to_annotations(lines: Sequence[LabelLine], names: Sequence[str], width: int, height: int) -> list[Annotation]:
    """Convert parsed lines to annotations in absolute pixels of a ``width x height`` image.

    Every ``class_id`` must index ``names``. Boxes are converted in one vectorised call;
    polygons get their bounding box as ``bbox``. A line with a confidence is a model prediction.
    """
    box_rows = [ln.box for ln in lines if ln.box is not None]
    boxes = iter(geometry.cxcywh_norm_to_xyxy(np.asarray(box_rows, dtype=np.float64), width, height).tolist())
    scale = np.array([width, height], dtype=np.float64)
    out: list[Annotation] = []
    for ln in lines:
        label = names[ln.class_id]
        if ln.box is not None:
            source = Source.MODEL if ln.score is not None else Source.IMPORT
            out.append(Annotation(label=label, bbox=tuple(next(boxes)), score=ln.score, source=source))
        else:
            part = (np.asarray(ln.polygon, dtype=np.float64).reshape(-1, 2) * scale).ravel().tolist()
            out.append(Annotation(label=label, bbox=geometry.polygon_bbox([part]), polygon=[part]))
    return out


# --------------------------------------------------------------------------- paths and names


def label_path_for(image: PurePosixPath) -> PurePosixPath:
    """The label file of ``image`` (both relative to the dataset root), Ultralytics' rule.

    The last folder called ``images`` becomes ``labels``; without one the ``.txt`` sits beside
    the image. ``train/images/a.jpg`` -> ``train/labels/a.txt``.
    """
    parts = list(image.parts)
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            break
    return PurePosixPath(*parts).with_suffix(".txt")



def _resolve_entry(root: Path, base: Path, entry: str) -> Path | None:
    """A data.yaml path resolved from ``base``, only if it exists inside ``root``.

    Tries Ultralytics' fallback too: ``../train/images`` (what Roboflow writes) also means
    ``train/images`` when the former is not there.
    """
    candidates = [base / entry]
    if entry.startswith("../"):
        candidates.append(base / entry[3:])
    for cand in candidates:
        if os.path.exists(cand) and is_inside(cand, root):  # os.path: False, not OSError, on a too-long name
            return cand.resolve()
    return None


# --------------------------------------------------------------------------- data.yaml and class files


def load_data_yaml(path: Path) -> dict[str, Any]:
    """Parse ``data.yaml`` with ``yaml.safe_load``; :class:`FormatError` if it is not a mapping."""
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise FormatError(path, f"not UTF-8 text ({exc.reason})", f"byte {exc.start}") from None
    except OSError as exc:
        raise FormatError(path, f"cannot read ({exc.strerror or exc})") from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else None
        raise FormatError(path, f"invalid YAML ({getattr(exc, 'problem', None) or exc})", where) from None
    except RecursionError:
        raise FormatError(path, "invalid YAML (nested too deeply)") from None
    except (ValueError, OverflowError) as exc:  # a bad !!timestamp, an int past the digit limit
        raise FormatError(path, f"invalid YAML value ({exc})") from None
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise FormatError(path, f"expected a mapping at the top level, got {type(doc).__name__}")
    return doc


def _name_text(value: Any, file: Path, where: str) -> str:
    if isinstance(value, bool) or value is None or isinstance(value, (list, dict)):
        raise FormatError(file, f"class name {value!r} is not a string", where)
    text = str(value).strip()
    if not text:
        raise FormatError(file, "class name is empty", where)
    return text


def class_names_from_yaml(doc: dict[str, Any], file: Path, problems: Problems) -> list[str] | None:
    """The class names a data.yaml declares, indexed by class id; ``None`` when it has none.

    ``names`` may be a list or an ``{id: name}`` mapping whose ids are exactly ``0..N-1``.
    Without ``names``, an integer ``nc`` gives ``class_0 .. class_{nc-1}``.
    """
    raw = doc.get("names")
    nc = doc.get("nc")
    if raw is None:
        if isinstance(nc, int) and not isinstance(nc, bool) and nc > _MAX_CLASSES:
            problems.warning(file, f"no `names` and nc {nc} is more than {_MAX_CLASSES}; nc ignored", "nc")
        elif isinstance(nc, int) and not isinstance(nc, bool) and nc >= 0:
            problems.warning(file, f"no `names`; classes called class_0 .. class_{nc - 1}", "names")
            return [f"class_{i}" for i in range(nc)]
        return None
    if isinstance(raw, list):
        names = [_name_text(v, file, f"names[{i}]") for i, v in enumerate(raw)]
    elif isinstance(raw, dict):
        ids: dict[int, Any] = {}
        for key, value in raw.items():
            try:
                cid = int(key)
            except (TypeError, ValueError, OverflowError):
                raise FormatError(file, f"class id {key!r} is not an integer", "names") from None
            ids[cid] = value
        if sorted(ids) != list(range(len(ids))):
            raise FormatError(file, f"class ids must be 0..{len(ids) - 1} without gaps, got {sorted(ids)}", "names")
        names = [_name_text(ids[i], file, f"names[{i}]") for i in range(len(ids))]
    else:
        raise FormatError(file, f"`names` must be a list or a mapping, got {type(raw).__name__}", "names")
    if nc is not None and nc != len(names):
        problems.warning(file, f"nc ({nc}) does not match the {len(names)} names; using the names", "nc")
    return names


def class_names_from_text(path: Path, problems: Problems) -> list[str]:
    """Darknet ``obj.names`` / ``classes.txt``: one class per line, line ``k`` is id ``k-1``.

    Trailing blank lines are ignored; a blank line in the middle keeps its id and is called
    ``class_<id>`` (with a warning) so later ids do not shift.
    """
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise FormatError(path, f"not UTF-8 text ({exc.reason})", f"byte {exc.start}") from None
    lines = [ln.strip() for ln in split_lines(text)]
    while lines and not lines[-1]:
        lines.pop()
    names = []
    for i, ln in enumerate(lines):
        if not ln:
            problems.warning(path, f"blank class name; called class_{i}", f"line {i + 1}")
            ln = f"class_{i}"
        names.append(ln)
    return names


def _original_names(doc: dict[str, Any], file: Path, problems: Problems) -> dict[str, str]:
    """The ``winnow.original_names`` map (file path -> record name) a winnow export wrote."""
    section = doc.get(_WINNOW_KEY)
    if section is None:
        return {}
    mapping = section.get(_ORIGINAL_NAMES) if isinstance(section, dict) else None
    if not isinstance(mapping, dict) or not all(isinstance(k, str) and isinstance(v, str) and v for k, v in mapping.items()):
        problems.warning(file, f"`{_WINNOW_KEY}.{_ORIGINAL_NAMES}` is not a mapping of paths to names; ignored", _WINNOW_KEY)
        return {}
    return dict(mapping)


# --------------------------------------------------------------------------- finding the images


@dataclass(frozen=True)
class _Found:
    image: Path
    split: str | None
    name: str


def _yaml_base(doc: dict[str, Any], root: Path, file: Path, problems: Problems) -> Path:
    value = doc.get("path")
    if value is None:
        return root
    if isinstance(value, str):
        cand = root / value
        if os.path.isdir(cand) and is_inside(cand, root):  # os.path: False, not OSError, on a too-long name
            return cand.resolve()
    problems.warning(file, f"`path: {value}` is not a folder inside the dataset; paths resolved from {root}", "path")
    return root


def _read_list_file(path: Path, root: Path, problems: Problems) -> Iterator[Path]:
    """Image paths listed one per line in a ``train.txt``-style file, kept inside ``root``."""
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        problems.error(path, f"cannot read the image list ({exc})")
        return
    for lineno, line in enumerate(split_lines(text), start=1):
        entry = line.strip()
        if not entry:
            continue
        rel = entry[2:] if entry.startswith("./") else entry
        found = next((c for c in (path.parent / rel, root / rel) if os.path.isfile(c) and is_inside(c, root)), None)
        if found is None:
            problems.warning(path, f"listed image {entry!r} not found inside the dataset", f"line {lineno}")
            continue
        yield found.resolve()


def _conventional_dirs(root: Path) -> list[tuple[Path, str | None]]:
    """``<split>/images``, ``images/<split>`` and ``images`` folders that exist."""
    out: list[tuple[Path, str | None]] = []
    for folder, split in SPLIT_ALIASES.items():
        out += [(root / folder / "images", split), (root / "images" / folder, split)]
    out.append((root / "images", None))
    return [(d, s) for d, s in out if d.is_dir()]


def _yaml_sources(
    doc: dict[str, Any], root: Path, file: Path, problems: Problems
) -> tuple[list[tuple[Path, str | None]], list[tuple[Path, str | None]], set[Path]]:
    """Folders and listed images a data.yaml names, each with its split.

    A folder named by several split keys (``train: images`` and ``val: images``, as winnow writes
    an unsplit dataset) has no split.
    """
    base = _yaml_base(doc, root, file, problems)
    dirs: dict[Path, set[str]] = {}
    listed: list[tuple[Path, str | None]] = []
    list_files: set[Path] = set()
    for key, split in SPLIT_ALIASES.items():
        value = doc.get(key)
        if value is None:
            continue
        for entry in value if isinstance(value, list) else [value]:
            if not isinstance(entry, str) or not entry.strip():
                problems.warning(file, f"{entry!r} is not a path; ignored", key)
                continue
            target = _resolve_entry(root, base, entry.strip())
            if target is None:
                problems.warning(file, f"{entry!r} not found inside the dataset folder; ignored", key)
            elif target.is_dir():
                dirs.setdefault(target, set()).add(split)
            elif target.suffix.lower() == ".txt":
                list_files.add(target)
                listed += [(img, split) for img in _read_list_file(target, root, problems)]
            else:
                problems.warning(file, f"{entry!r} is neither a folder nor a .txt list of images; ignored", key)
    return [(d, next(iter(s)) if len(s) == 1 else None) for d, s in dirs.items()], listed, list_files


@dataclass
class _Sources:
    """What a YOLO dataset is made of: its images, and the folders their label files live in."""

    found: list[_Found]
    label_folders: set[Path]
    list_files: set[Path]


def _collect_images(
    root: Path, doc: dict[str, Any] | None, file: Path | None, names_map: dict[str, str], problems: Problems
) -> _Sources:
    """Every image of the dataset once, with its split and record name.

    Listed images come first, then folders from the most specific to the least, so an image in
    ``images/train`` belongs to ``train`` even when ``images`` is a source too.
    """
    dirs: list[tuple[Path, str | None]] = []
    listed: list[tuple[Path, str | None]] = []
    list_files: set[Path] = set()
    if doc is not None and file is not None:
        dirs, listed, list_files = _yaml_sources(doc, root, file, problems)
    known = {d for d, _ in dirs}
    for d, split in _conventional_dirs(root):
        d = d.resolve()
        if d not in known and is_inside(d, root):
            dirs.append((d, split))
            known.add(d)
    if not dirs and not listed:
        dirs = [(root, None)]
    dirs.sort(key=lambda item: len(item[0].parts), reverse=True)
    seen: set[Path] = set()
    candidates: list[tuple[Path, str | None, str]] = []
    for image, split in listed:
        if image not in seen:
            seen.add(image)
            candidates.append((image, split, relname(image, root)))
    for folder, split in dirs:
        for image in find_images(folder):
            if image in seen:
                continue
            seen.add(image)
            if _links_out(image, root):
                problems.error(image, "refused: a link to a file outside the dataset folder")
            else:
                candidates.append((image, split, relname(image, folder)))
    found = _unique_names(candidates, root, names_map, problems)
    image_folders = {d for d, _ in dirs} | {image.parent for image, _ in listed}
    label_folders = {_label_folder(root, d) for d in image_folders}
    return _Sources(found, label_folders, list_files)


def _unique_names(
    candidates: Sequence[tuple[Path, str | None, str]], root: Path, names_map: dict[str, str], problems: Problems
) -> list[_Found]:
    """Name each image (``names_map`` first); a name already taken becomes the path from the root.

    Record names are unique in a dataset (the importer keys on them): ``a.jpg`` in both
    ``train/images`` and ``valid/images`` gives ``a.jpg`` and ``valid/images/a.jpg``, with a warning.
    """
    used: set[str] = set()
    out: list[_Found] = []
    for image, split, short in candidates:
        full = relname(image, root)
        name = names_map.get(full, short)
        if name in used:
            problems.warning(image, f"image name {name!r} is used twice; this one is named {full!r}", record=full)
            name = full
        if name in used:
            problems.error(image, f"duplicate image name {name!r}; image skipped", record=name)
            continue
        used.add(name)
        out.append(_Found(image, split, name))
    return out


def _links_out(path: Path, root: Path) -> bool:
    """True for a symlink whose target is outside ``root`` (never read)."""
    return path.is_symlink() and not is_inside(path, root)


def _label_folder(root: Path, images_folder: Path) -> Path:
    """Where the label files of the images directly in ``images_folder`` live."""
    rel = PurePosixPath(relname(images_folder, root), "x.png") if images_folder != root else PurePosixPath("x.png")
    return root.joinpath(*label_path_for(rel).parent.parts)


def _is_side_file(path: Path) -> bool:
    """Text files a YOLO folder holds besides labels: class lists, image lists, read-me files."""
    name = path.name.lower()
    return name in _CLASS_FILES or name.startswith("readme") or name[:-4] in SPLIT_ALIASES


def _text_files(folder: Path) -> Iterable[Path]:
    """Every ``.txt`` under ``folder``, sorted, hidden folders skipped."""
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for fn in sorted(filenames):
            if fn.lower().endswith(".txt") and not fn.startswith("."):
                yield Path(dirpath, fn)


# --------------------------------------------------------------------------- writing


def format_number(value: float) -> str:
    """A normalised coordinate as text, precise enough to round-trip within 1e-6 px."""
    return format(float(value), _NUMBER_FORMAT)


def merge_parts(parts: Sequence[Sequence[float]]) -> list[float]:
    """Join a multi-part polygon into one ring (YOLO holds one ring per object).

    Each further part hangs off the first one by a zero-width bridge between their nearest
    points, so the covered area is kept; the part structure is not.
    """
    rings = [np.asarray(p, dtype=np.float64).reshape(-1, 2) for p in parts]
    first, rest = rings[0], rings[1:]
    hooks: dict[int, list[np.ndarray]] = {}
    for ring in rest:
        dist = ((first[:, None, :] - ring[None, :, :]) ** 2).sum(axis=2)
        a, b = np.unravel_index(int(dist.argmin()), dist.shape)
        hooks.setdefault(int(a), []).append(np.concatenate([np.roll(ring, -int(b), axis=0), ring[b : b + 1]]))
    points: list[np.ndarray] = []
    for i, pt in enumerate(first):
        points.append(pt[None, :])
        for excursion in hooks.get(i, []):
            points += [excursion, pt[None, :]]
    return np.concatenate(points).ravel().tolist()


def annotation_lines(annotations: Sequence[Annotation], class_ids: dict[str, int], width: int, height: int, task: Task) -> list[str]:
    """YOLO label lines for one image's annotations (all must have a box or a polygon).

    ``Task.SEGMENT`` writes a polygon line for every annotation that has a polygon and a box
    line for the others; ``Task.DETECT`` writes box lines only. A box line carries the score as
    a sixth column when the annotation has one.
    """
    polygon_rows = [task is Task.SEGMENT and a.polygon is not None for a in annotations]
    boxes = [
        a.bbox if a.bbox is not None else geometry.polygon_bbox(a.polygon)
        for a, is_poly in zip(annotations, polygon_rows)
        if not is_poly
    ]
    norm = iter(geometry.xyxy_to_cxcywh_norm(np.asarray(boxes, dtype=np.float64), width, height).tolist())
    scale = np.array([width, height], dtype=np.float64)
    lines = []
    for ann, is_poly in zip(annotations, polygon_rows):
        if is_poly:
            ring = merge_parts(ann.polygon) if len(ann.polygon) > 1 else ann.polygon[0]
            values = (np.asarray(ring, dtype=np.float64).reshape(-1, 2) / scale).ravel().tolist()
        else:
            values = next(norm)
            if ann.score is not None:
                values.append(ann.score)
        lines.append(" ".join([str(class_ids[ann.label]), *map(format_number, values)]))
    return lines


def label_text(record: ImageRecord, class_ids: dict[str, int], task: Task) -> str | None:
    """The label file of ``record`` (one ``\n``-ended line per object), ``None`` for no file.

    An empty string is "labelled, no objects"; ``None`` is a record tagged :data:`UNLABELED_TAG`
    with no annotations, whose image was never labelled.
    """
    if UNLABELED_TAG in record.tags and not record.annotations:
        return None
    return "".join(line + "\n" for line in annotation_lines(record.annotations, class_ids, record.width, record.height, task))


@dataclass(frozen=True)
class Placement:
    """Where one record goes in a written YOLO dataset (paths relative to the destination)."""

    record: ImageRecord
    image: PurePosixPath
    label: PurePosixPath

    @property
    def renamed(self) -> bool:
        """True when the image file name differs from what the record's name implies."""
        return self.image != _natural_path(self.record)


def _split_folder(record: ImageRecord) -> PurePosixPath:
    return PurePosixPath(record.split, "images") if record.split else PurePosixPath("images")


def _natural_path(record: ImageRecord) -> PurePosixPath:
    return _split_folder(record) / safe_relpath(record.name)


def _label_key(image: PurePosixPath) -> str:
    return label_path_for(image).as_posix().casefold()


def plan_layout(records: Sequence[ImageRecord]) -> list[Placement]:
    """Give every record an image path and a label path that no other record uses.

    The image goes to ``<split>/images/<name>`` (``images/<name>`` without a split), keeping
    subfolders. Two records whose label files would clash (``a.png`` and ``a.jpg``, the same
    name twice, names differing only in case) keep the first; the others become
    ``<stem>__<k><suffix>``. The label key is compared case-folded so the layout is also safe on
    case-insensitive file systems.
    """
    natural = [_natural_path(r) for r in records]
    keys = [_label_key(p) for p in natural]
    taken = set(keys)  # every natural key is reserved for its own record
    used: set[str] = set()
    out = []
    for record, start, key in zip(records, natural, keys):
        path, k = start, 0
        while (key in used) if k == 0 else (key in taken):
            k += 1
            path = start.with_name(f"{start.stem}__{k}{start.suffix}")
            key = _label_key(path)
        used.add(key)
        taken.add(key)
        out.append(Placement(record, path, label_path_for(path)))
    return out


def _writable_annotation(ann: Annotation) -> bool:
    return ann.bbox is not None or ann.polygon is not None


def _check_writable(dataset: Dataset) -> None:
    """Raise :class:`InvalidInputError` naming every record YOLO cannot hold, before any write."""
    bad: list[str] = []
    for rec in dataset.images:
        bad += record_path_problems(rec)
        if not rec.width or not rec.height:
            bad.append(f"{rec.name}: image size unknown; YOLO coordinates are normalised by it")
        if any(not _writable_annotation(a) for a in rec.annotations):
            bad.append(f"{rec.name}: image-level class labels (no box or polygon) cannot be written as YOLO")
    if bad:
        shown = "; ".join(bad[:10]) + (f"; ... ({len(bad)} in all)" if len(bad) > 10 else "")
        raise InvalidInputError(f"cannot write YOLO: {shown}")



def data_yaml(names: Sequence[str], placements: Sequence[Placement]) -> dict[str, Any]:
    """The data.yaml document for a written dataset (Ultralytics keys, plus winnow's renames).

    Split records give ``train`` / ``val`` / ``test`` entries (``<split>/images``). Records without
    a split live in ``images/``: when no record has a split, ``train`` and ``val`` both point
    there, which Ultralytics trains on and winnow reads back as "no split".
    """
    splits = {p.record.split for p in placements if p.record.split}
    doc: dict[str, Any] = {}
    if splits:
        for split in SPLITS:
            if split in splits:
                doc[_YAML_KEY[split]] = f"{split}/images"
    else:
        doc["train"] = doc["val"] = "images"
    doc["nc"] = len(names)
    doc["names"] = list(names)
    renamed = {p.image.as_posix(): p.record.name for p in placements if p.renamed}
    if renamed:
        doc[_WINNOW_KEY] = {_ORIGINAL_NAMES: renamed}
    return doc


# --------------------------------------------------------------------------- detection helpers


def _looks_like_data_yaml(path: Path) -> bool:
    try:
        if path.stat().st_size > 1_000_000:
            return False
        doc = yaml.safe_load(path.read_bytes().decode("utf-8-sig"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError, ValueError, OverflowError, RecursionError):
        return False
    return isinstance(doc, dict) and ("names" in doc or ("nc" in doc and "train" in doc))


def _looks_like_label_file(path: Path) -> bool | None:
    """True when the first non-blank line parses as YOLO, False when not, None for a blank file."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(4096)
    except OSError:
        return False
    lines = split_lines(head.decode("utf-8-sig", errors="replace"))
    if len(head) == 4096:
        lines = lines[:-1]  # the last line may be cut short
    for line in lines:
        try:
            parsed = parse_label_line(line)
        except LabelLineError:
            return False
        if parsed is not None:
            return True
    return None


def _sample_files(folder: Path, suffixes: frozenset[str] | set[str], limit: int) -> list[Path]:
    out: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        out += [Path(dirpath, f) for f in sorted(filenames) if Path(f).suffix.lower() in suffixes]
        if len(out) >= limit:
            break
    return out[:limit]


def _labels_look_yolo(files: Sequence[Path]) -> bool:
    verdicts = [_looks_like_label_file(f) for f in files]
    return any(v is True for v in verdicts) and not any(v is False for v in verdicts)


# --------------------------------------------------------------------------- the format


@register
class YoloFormat(Format):
    """Ultralytics / Roboflow YOLO: ``data.yaml`` + ``images/`` + ``labels/`` (boxes or polygons)."""

    name = "yolo"
    description = "YOLO txt labels (Ultralytics/Roboflow data.yaml, images/ + labels/, Darknet obj.names)"
    tasks = frozenset({Task.DETECT, Task.SEGMENT})

    def detect(self, path: Path) -> float:
        """0.95 for a folder with a data.yaml, 0.85 for ``images/`` + ``labels/`` of YOLO lines,
        0.7 for Darknet (class file + ``.txt`` beside images), 0.9 for a data.yaml file, else 0."""
        path = Path(path)
        if path.is_file():
            return 0.9 if path.suffix.lower() in (".yaml", ".yml") and _looks_like_data_yaml(path) else 0.0
        if not path.is_dir():
            return 0.0
        if any((path / n).is_file() and _looks_like_data_yaml(path / n) for n in _YAML_FILES):
            return 0.95
        for images_dir, _ in _conventional_dirs(path):
            labels_dir = path / label_path_for(PurePosixPath(relname(images_dir, path), "x.png")).parent
            if labels_dir.is_dir() and _labels_look_yolo(_sample_files(labels_dir, {".txt"}, 5)):
                return 0.85
        if any((path / n).is_file() for n in _CLASS_FILES):
            images = _sample_files(path, IMAGE_EXTENSIONS, 20)
            sidecars = [i.with_suffix(".txt") for i in images if i.with_suffix(".txt").is_file()]
            if _labels_look_yolo(sidecars[:5]):
                return 0.7
        return 0.0

    def read(self, path: Path, problems: Problems) -> Dataset:
        """Read a YOLO dataset folder (or its data.yaml); see the module docstring for layouts.

        Records whose image cannot be read, or whose label file is not UTF-8, are skipped (error).
        A bad label line is skipped (error, ``line N``); the rest of the file is kept. Values
        outside ``[0, 1]`` are kept unclipped with a warning. An image without a label file is
        kept with no annotations and the tag :data:`UNLABELED_TAG` (one warning per labels
        folder); an empty label file means "no objects" and is not reported. Label files with no
        image are reported as warnings.
        """
        path = Path(path)
        yaml_file: Path | None = None
        if path.is_file() and path.suffix.lower() in (".yaml", ".yml"):
            yaml_file, path = path, path.parent
        if not path.is_dir():
            raise FormatError(path, "not a folder or a data.yaml file")
        root = path.resolve()
        if yaml_file is None:
            yaml_file = next((root / n for n in _YAML_FILES if (root / n).is_file()), None)
        else:
            yaml_file = yaml_file.resolve()
        doc = load_data_yaml(yaml_file) if yaml_file is not None else None

        names: list[str] | None = None
        if doc is not None:
            names = class_names_from_yaml(doc, yaml_file, problems)
        if names is None:
            class_file = next((root / n for n in _CLASS_FILES if (root / n).is_file()), None)
            names = class_names_from_text(class_file, problems) if class_file is not None else None
        names_map = _original_names(doc, yaml_file, problems) if doc is not None else {}
        sources = _collect_images(root, doc, yaml_file, names_map, problems)
        dataset, claimed = _build_dataset(root, sources.found, names, problems)
        _report_orphans(sources, claimed, problems)
        return dataset

    def write(self, dataset: Dataset, dest: Path, images: ImageWriter) -> None:
        """Write the Ultralytics layout: ``data.yaml``, ``<split>/images`` and ``<split>/labels``.

        Raises :class:`InvalidInputError` before writing anything when a record cannot be held
        (unsafe or extension-less name, unknown size, unknown split, image-level labels). See
        :func:`plan_layout` for file names and :func:`data_yaml` for the yaml.
        """
        task = dataset.infer_task()
        if task is Task.CLASSIFY:
            raise InvalidInputError("cannot write YOLO: a classification dataset has no boxes; use the 'folders' format")
        _check_writable(dataset)
        names = dataset.class_order()
        class_ids = {name: i for i, name in enumerate(names)}
        placements = plan_layout(dataset.images)
        texts = [label_text(p.record, class_ids, task) for p in placements]
        dest = Path(dest)
        dest.mkdir(parents=True, exist_ok=True)
        for placement, text in zip(placements, texts):
            write_image(images, placement.record, dest, placement.image.as_posix())
            if text is not None:
                label = dest.joinpath(*placement.label.parts)
                label.parent.mkdir(parents=True, exist_ok=True)
                label.write_text(text, encoding="utf-8", newline="\n")
        doc = data_yaml(names, placements)
        (dest / "data.yaml").write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True), encoding="utf-8")


def _read_label_file(file: Path, name: str, problems: Problems) -> list[tuple[int, LabelLine]] | None:
    """``(line number, parsed line)`` for every good line; ``None`` when the file is unreadable."""
    try:
        text = file.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        problems.error(file, f"label file is not UTF-8 ({exc.reason}); image skipped", f"byte {exc.start}", name)
        return None
    except OSError as exc:
        problems.error(file, f"cannot read the label file ({exc.strerror or exc}); image skipped", record=name)
        return None
    out = []
    for lineno, line in enumerate(split_lines(text), start=1):
        try:
            parsed = parse_label_line(line)
        except LabelLineError as exc:
            problems.error(file, f"{exc}; line skipped", f"line {lineno}", name)
            continue
        if parsed is not None:
            out.append((lineno, parsed))
    return out


def _build_dataset(
    root: Path, found: Sequence[_Found], names: list[str] | None, problems: Problems
) -> tuple[Dataset, set[Path]]:
    """Probe every image, read its label file, and assemble the dataset.

    Also returns the label files that belong to an image (read or not), to find orphans.
    """
    known_names = names is not None
    classes: list[str] = list(dict.fromkeys(names or []))
    if known_names and len(classes) != len(names):
        problems.warning(root, "duplicate class names; their ids share one class", "names")
    missing: dict[Path, list[str]] = {}
    claimed: set[Path] = set()
    records: list[ImageRecord] = []
    max_id = -1
    for item in found:
        label_file = root.joinpath(*label_path_for(PurePosixPath(relname(item.image, root))).parts)
        claimed.add(label_file)
        try:
            info = probe_file(item.image)
        except InvalidImageError as exc:
            problems.error(item.image, f"{exc}; image skipped", record=item.name)
            continue
        except OSError as exc:
            problems.error(item.image, f"cannot read the image ({exc.strerror or exc}); image skipped", record=item.name)
            continue
        record = ImageRecord(name=item.name, width=info.width, height=info.height, split=item.split, file=item.image)
        if _links_out(label_file, root):
            problems.error(label_file, "refused: a link to a file outside the dataset folder; image skipped", record=item.name)
            continue
        if not label_file.is_file():
            record.tags.append(UNLABELED_TAG)
            missing.setdefault(label_file.parent, []).append(item.name)
            records.append(record)
            continue
        parsed = _read_label_file(label_file, item.name, problems)
        if parsed is None:
            continue
        good: list[tuple[int, LabelLine]] = []
        for lineno, line in parsed:
            if known_names and line.class_id >= len(names):
                problems.error(
                    label_file, f"class id {line.class_id} is not in names (0..{len(names) - 1}); line skipped", f"line {lineno}", item.name
                )
                continue
            if not known_names and line.class_id >= _MAX_CLASSES:
                problems.error(
                    label_file, f"class id {line.class_id} is too large without class names (limit {_MAX_CLASSES}); line skipped", f"line {lineno}", item.name
                )
                continue
            max_id = max(max_id, line.class_id)
            good.append((lineno, line))
        lines = [line for _, line in good]
        with np.errstate(over="ignore"):  # values near 1e308 overflow; reported below
            outside_lines = outside_unit_square(lines)
        for (lineno, _), outside in zip(good, outside_lines):
            if outside:
                problems.warning(
                    label_file, "coordinates outside [0, 1]: the object leaves the image (kept, not clipped)", f"line {lineno}", item.name
                )
        lookup = names if known_names else [f"class_{i}" for i in range(max_id + 1)]
        with np.errstate(over="ignore"):
            annotations = lines_to_annotations(lines, lookup, info.width, info.height)
        for (lineno, _), annotation in zip(good, annotations):
            if all(math.isfinite(v) for v in annotation.bbox):
                record.annotations.append(annotation)
            else:  # finite in the file (1e308), infinite once scaled to pixels
                problems.error(label_file, "coordinates overflow once scaled to the image; line skipped", f"line {lineno}", item.name)
        records.append(record)
    if not known_names:
        classes = [f"class_{i}" for i in range(max_id + 1)]
        if max_id >= 0:
            problems.warning(root, "no class names (data.yaml, obj.names or classes.txt); classes called class_<id>")
    for folder, missing_names in missing.items():
        shown = ", ".join(missing_names[:_MAX_LISTED]) + (", ..." if len(missing_names) > _MAX_LISTED else "")
        problems.warning(
            folder, f"{len(missing_names)} image(s) have no label file (kept with no objects, tagged {UNLABELED_TAG!r}): {shown}"
        )
    segment = any(a.polygon is not None for r in records for a in r.annotations)
    return Dataset(classes=classes, images=records, task=Task.SEGMENT if segment else Task.DETECT), claimed


def _report_orphans(sources: _Sources, claimed: set[Path], problems: Problems) -> None:
    """Warn about label files in the labels folders that belong to no image."""
    seen: set[Path] = set()
    for folder in sorted(sources.label_folders, key=lambda p: len(p.parts)):
        if not folder.is_dir() or any(folder.is_relative_to(s) for s in seen):
            continue
        seen.add(folder)
        for txt in _text_files(folder):
            if txt not in claimed and txt not in sources.list_files and not _is_side_file(txt):
                problems.warning(txt, "label file has no image (orphan); ignored")
