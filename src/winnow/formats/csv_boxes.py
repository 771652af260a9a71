"""Box CSV: ``filename,width,height,class,xmin,ymin,xmax,ymax`` (TensorFlow Object Detection, Roboflow).

One row per box, in absolute pixel ``xyxy`` of the displayed image, taken as written (floats
allowed). ``width``/``height`` are the size the file declares (kept as ``declared_width`` /
``declared_height``; the displayed size is read from the image). Column order does not matter,
names are matched case-insensitively and extra columns are ignored.

An image with no boxes is a row whose ``class`` and coordinates are all empty
(``b.jpg,640,480,,,,,``); the writer writes one for each such image, so they round-trip.

Layouts read: ``_annotations.csv`` (Roboflow) or ``annotations.csv``, or any ``.csv`` whose header
has the eight columns, with ``filename`` relative to the CSV; a CSV in a ``train``/``valid``/
``test`` folder of the import root gives its records that split. Files are read with the
:mod:`csv` module: UTF-8 with or without a BOM, LF or CRLF, quoted names with commas or quotes.

A CSV that is not UTF-8, or a named one (``_annotations.csv``, ``annotations.csv``, or the file the
user gave) whose header lacks a column, fails the read (:class:`~winnow.errors.FormatError`).
A bad row (wrong column count, non-numeric or NaN value, empty or inverted box) is reported with
its line number and skipped.

The writer writes ``<split>/_annotations.csv`` with the images beside it (no split: at the
destination's top level); coordinates integral when they are, else with full float precision.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from winnow.core.types import Annotation, Dataset, ImageRecord, Problems, Task
from winnow.errors import FormatError
from winnow.formats._common import (
    RecordCollector,
    box_of,
    box_problem,
    detect_files,
    format_number,
    group_by_split,
    image_size,
    import_root,
    is_unlabeled,
    parse_number,
    peek,
    positive_int,
    resolve_inside,
    split_dir,
    walk_files,
)
from winnow.formats.base import Format, ImageWriter, register, write_image

COLUMNS = ("filename", "width", "height", "class", "xmin", "ymin", "xmax", "ymax")
COORDINATES = ("xmin", "ymin", "xmax", "ymax")
NAMED_FILES = ("_annotations.csv", "annotations.csv")
WRITTEN_FILE = "_annotations.csv"


@dataclass
class Row:
    """One data row: the line it starts on, its cells by column name (``None`` when it has the
    wrong number of cells), and how many cells it has against how many the header has."""

    line: int
    values: dict[str, str] | None
    cells: int
    expected: int


@dataclass
class PendingImage:
    """An image the CSV lists, while its rows are gathered."""

    image: Path
    record: ImageRecord
    first_line: int
    sizes: list[tuple[int | None, int | None]] = field(default_factory=list)


# --------------------------------------------------------------------------- parsing


def header_columns(header: list[str]) -> dict[str, int]:
    """Column name (stripped, lower case) -> index; the first of duplicate names wins."""
    columns: dict[str, int] = {}
    for index, name in enumerate(header):
        columns.setdefault(name.strip().lower(), index)
    return columns


def missing_columns(header: list[str]) -> list[str]:
    """The required columns ``header`` lacks, in the documented order."""
    present = header_columns(header)
    return [c for c in COLUMNS if c not in present]


def first_row(text: str) -> list[str]:
    """The first CSV row of ``text`` (the header), or ``[]`` (also when it cannot be split)."""
    try:
        return next(csv.reader(io.StringIO(text)), [])
    except csv.Error:
        return []


def iter_rows(file: Path, named: bool) -> Iterator[Row] | None:
    """The data rows of ``file``; ``None`` when its header is not ours and it was not named.

    Raises :class:`~winnow.errors.FormatError` when the file is not UTF-8 text, and when a named
    file's header lacks columns (listing them).
    """
    try:
        text = file.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise FormatError(file, "not UTF-8 text", where=f"byte {exc.start}") from None
    except OSError as exc:
        raise FormatError(file, f"cannot read: {exc.strerror or exc}") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, [])
    except csv.Error as exc:
        raise FormatError(file, f"unreadable CSV: {exc}", where="line 1") from None
    missing = missing_columns(header)
    if missing:
        if not named:
            return None
        raise FormatError(file, f"header lacks required column(s): {', '.join(missing)}", where="line 1")
    return _rows(file, reader, header_columns(header), len(header))


def _rows(file: Path, reader: Any, columns: dict[str, int], width: int) -> Iterator[Row]:
    """Non-blank rows of a ``csv.reader`` past its header, each with the line it starts on.

    A row the ``csv`` module cannot split (a field over its size limit) ends the read: the rest
    of the file cannot be trusted to line up.
    """
    previous_end = reader.line_num
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise FormatError(file, f"unreadable CSV: {exc}", where=f"line {previous_end + 1}") from None
        start, previous_end = previous_end + 1, reader.line_num
        if not any(cell.strip() for cell in cells):
            continue
        values = {name: cells[index].strip() for name, index in columns.items()} if len(cells) == width else None
        yield Row(start, values, len(cells), width)


def parse_box(values: dict[str, str]) -> Annotation | str | None:
    """The box of a row, ``None`` for an image-only row, or why the row is unusable."""
    label = values["class"]
    coordinates = [values[c] for c in COORDINATES]
    if not label:
        if any(coordinates):
            return "row has coordinates but no class"
        return None
    numbers: list[float] = []
    for name, text in zip(COORDINATES, coordinates):
        value = parse_number(text)
        if value is None:
            return f"{name} is not a finite number: {text!r}"
        numbers.append(value)
    why = box_problem(*numbers)
    if why is not None:
        return why
    x1, y1, x2, y2 = numbers
    return Annotation(label=label, bbox=(x1, y1, x2, y2))


def declared_size(values: dict[str, str]) -> tuple[int | None, int | None] | str:
    """The row's declared ``(width, height)`` (``None`` where empty), or why it is unusable."""
    size: list[int | None] = []
    for name in ("width", "height"):
        text = values[name]
        if not text:
            size.append(None)
            continue
        value = positive_int(text)
        if value is None:
            return f"{name} is not a positive integer: {text!r}"
        size.append(value)
    return size[0], size[1]


def candidate_files(root: Path) -> list[tuple[Path, bool]]:
    """``(file, named)`` for each CSV under ``root`` that is named like ours or has our header."""
    found: list[tuple[Path, bool]] = []
    for file in walk_files(root, (".csv",)):
        if file.name.lower() in NAMED_FILES:
            found.append((file, True))
        elif not missing_columns(first_row(peek(file, 4096))):
            found.append((file, False))
    return found


# --------------------------------------------------------------------------- writing


def record_rows(record: ImageRecord, size: tuple[int | None, int | None]) -> list[list[str]]:
    """The CSV rows of one record: one per box, or one image-only row when it has none.

    ``size`` is the image's ``(width, height)``; an unknown one leaves the cells empty.
    """
    width, height = size
    head = [record.name, str(width) if width else "", str(height) if height else ""]
    rows = []
    for annotation in record.annotations:
        box = box_of(annotation)
        if box is not None:
            rows.append([*head, annotation.label, *(format_number(v) for v in box)])
    return rows or [[*head, "", "", "", "", ""]]


# --------------------------------------------------------------------------- the format


@register
class BoxCSV(Format):
    """Box CSV: see the module docstring for layouts and conventions."""

    name = "csv"
    description = "CSV of boxes: filename,width,height,class,xmin,ymin,xmax,ymax (TensorFlow, Roboflow)"
    tasks = frozenset({Task.DETECT})

    def detect(self, path: Path) -> float:
        best = 0.0
        for file in detect_files(path, (".csv",), limit=20):
            if not missing_columns(first_row(peek(file, 4096))):
                best = max(best, 0.95 if file.name.lower() in NAMED_FILES else 0.9)
        return best

    def read(self, path: Path, problems: Problems) -> Dataset:
        path = Path(path)
        root = import_root(path)
        files = [(path, True)] if path.is_file() else candidate_files(root)
        collector = RecordCollector(root, problems)
        read_any = False
        for file, named in files:
            rows = iter_rows(file, named)
            if rows is None:
                continue
            read_any = True
            collector.also_scan(file.parent)
            for pending in self._gather(file, rows, root, problems).values():
                self._add(pending, file, collector)
        if not read_any:
            raise FormatError(path, f"no CSV with the columns {','.join(COLUMNS)} found")
        collector.add_unlisted_images("CSV")
        return collector.dataset(Task.DETECT)

    def _gather(self, file: Path, rows: Iterator[Row], root: Path, problems: Problems) -> dict[str, PendingImage]:
        """Group a CSV's rows by image, reporting (and skipping) each bad row."""
        images: dict[str, PendingImage] = {}
        unknown: set[str] = set()
        for row in rows:
            where = f"line {row.line}"
            values = row.values
            if values is None:
                problems.error(file, f"expected {row.expected} columns as in the header, got {row.cells}", where=where)
                continue
            filename = values["filename"]
            if not filename:
                problems.error(file, "row has no filename", where=where)
                continue
            if filename in unknown:
                continue
            if filename not in images:
                image = resolve_inside(root, file.parent, filename)
                if image is None or not image.is_file():
                    problems.error(file, f"image file not found: {filename!r}", where=where, record=filename)
                    unknown.add(filename)
                    continue
                images[filename] = PendingImage(image, ImageRecord(name=filename), row.line)
            pending = images[filename]
            size = declared_size(values)
            if isinstance(size, str):
                problems.warning(file, f"{size}; size ignored", where=where, record=filename)
            elif size != (None, None) and size not in pending.sizes:
                pending.sizes.append(size)
            box = parse_box(values)
            if isinstance(box, str):
                problems.error(file, box, where=where, record=filename)
            elif box is not None:
                pending.record.annotations.append(box)
        return images

    def _add(self, pending: PendingImage, file: Path, collector: RecordCollector) -> None:
        """Set the declared size from the rows (warning when they disagree) and add the record."""
        if len(pending.sizes) > 1:
            shown = ", ".join(f"{w}x{h}" for w, h in pending.sizes)
            collector.problems.warning(
                file,
                f"rows declare different sizes ({shown}); the first is kept",
                where=f"line {pending.first_line}",
                record=pending.record.name,
            )
        if pending.sizes:
            pending.record.declared_width, pending.record.declared_height = pending.sizes[0]
        collector.add(pending.record, pending.image, file)

    def write(self, dataset: Dataset, dest: Path, images: ImageWriter) -> None:
        for split, records in group_by_split(dataset).items():
            folder = split_dir(Path(dest), split)
            folder.mkdir(parents=True, exist_ok=True)
            with open(folder / WRITTEN_FILE, "w", encoding="utf-8", newline="") as fh:
                writer = csv.writer(fh, lineterminator="\n")
                writer.writerow(COLUMNS)
                for record in records:
                    image = write_image(images, record, folder)
                    if not is_unlabeled(record):  # no row: read back as unlabeled
                        writer.writerows(record_rows(record, image_size(record, image)))
