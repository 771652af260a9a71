"""Importing labels for images already in a project, matched by name (``winnow import
--match-existing``): for teams that label outside winnow and send back label files only.

Supported formats: **COCO** (a ``.json`` file, or a folder the COCO reader would read) and
**YOLO** (a folder of ``.txt`` label files, with ``data.yaml``, ``classes.txt`` or ``obj.names``
for the class names; without one, class ids index the project's classes in their order). Image
files are not needed: YOLO's normalised coordinates are scaled by the **stored** size of the
matched image, and COCO's pixel boxes are checked against it.

Matching: a record's name (NFC) is looked up among the project's image names; failing that its
base name, when exactly one image has it. A YOLO label file matches by stem (``labels/train/
sub/a.txt`` -> ``sub/a``, ``train/sub/a`` or ``a``, against image names without their extension).
Records that match nothing are reported as errors; **no image is ever created**.

Each matched image's labels are **replaced** by the file's (an empty YOLO file: "no objects"),
its ``unlabeled`` tag removed, all in one transaction recorded as one ``import_labels`` change, so
``winnow undo`` puts the old labels back. Annotations are validated like any import
(:func:`~winnow.core.validate.validate_image`: rejected with a reason, or clipped with ``clip``).
"""

from __future__ import annotations

import os
import time
import unicodedata
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from sqlalchemy import select

from winnow.config import DEFAULT_WORKSPACE
from winnow.core.types import SPLIT_ALIASES, Annotation, ImageRecord, Problems
from winnow.core.validate import validate_image
from winnow.errors import InvalidInputError, NotFoundError
from winnow.formats.base import is_inside
from winnow.services.ingest import ImportReport, clean_tags
from winnow.services.projects import class_names, get_project
from winnow.store import models as m
from winnow.store.db import Store

FORMATS = ("coco", "yolo")


@dataclass
class RelabelReport(ImportReport):
    """An :class:`ImportReport` (``images_added`` is always 0) plus what was relabelled."""

    images_relabeled: int = 0
    annotations_removed: int = 0
    unmatched: int = 0
    change_id: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return super().as_dict() | {
            "match_existing": True,
            "images_relabeled": self.images_relabeled,
            "annotations_removed": self.annotations_removed,
            "unmatched": self.unmatched,
            "change_id": self.change_id,
        }


# --------------------------------------------------------------------------- reading label files


def _guess_format(path: Path) -> str:
    if path.is_file():
        return "coco" if path.suffix.lower() == ".json" else "yolo"
    from winnow.formats.coco import find_annotation_files

    return "coco" if find_annotation_files(path) else "yolo"


def _read_coco(path: Path, problems: Problems) -> list[ImageRecord]:
    from winnow.formats.coco import coco_to_dataset, find_annotation_files, load_json

    files = [path] if path.is_file() else [p for p, _ in find_annotation_files(path, sniff=False)]
    if not files:
        raise InvalidInputError(f"{path}: no COCO annotation file found")
    records: list[ImageRecord] = []
    for f in files:
        records += coco_to_dataset(load_json(f), problems, f).images
    return records


def _text_files(root: Path) -> Iterable[Path]:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for fn in sorted(filenames):
            if fn.lower().endswith(".txt") and not fn.startswith("."):
                yield Path(dirpath, fn)


def _yolo_names(root: Path, problems: Problems) -> list[str] | None:
    from winnow.formats.yolo import class_names_from_text, class_names_from_yaml, load_data_yaml

    for name in ("data.yaml", "data.yml"):
        if (root / name).is_file():
            names = class_names_from_yaml(load_data_yaml(root / name), root / name, problems)
            if names is not None:
                return names
    for name in ("obj.names", "classes.txt", "classes.names"):
        if (root / name).is_file():
            return class_names_from_text(root / name, problems)
    return None


@dataclass
class _YoloFile:
    file: Path
    keys: list[str]  # stems to try, best first
    lines: list[tuple[int, Any]]


def _read_yolo(root: Path, problems: Problems) -> tuple[list[str] | None, list[_YoloFile]]:
    from winnow.formats.yolo import LabelLineError, parse_label_line, split_lines

    if root.is_file():
        root = root.parent
    names = _yolo_names(root, problems)
    side = {"obj.names", "classes.txt", "classes.names"} | {f"{s}.txt" for s in SPLIT_ALIASES}
    files = [f for f in _text_files(root) if f.name.lower() not in side and not f.name.lower().startswith("readme")]
    if any("labels" in f.relative_to(root).parts[:-1] for f in files):
        files = [f for f in files if "labels" in f.relative_to(root).parts[:-1]]
    out: list[_YoloFile] = []
    for f in files:
        if not is_inside(f, root):
            problems.error(f, "refused: a link to a file outside the labels folder")
            continue
        parts = list(PurePosixPath(f.relative_to(root).as_posix()).with_suffix("").parts)
        folders = parts[:-1]
        if "labels" in folders:  # the path after the last labels/ folder
            parts = parts[len(folders) - folders[::-1].index("labels") :]
        keys = ["/".join(parts)]
        if len(parts) > 1 and parts[0] in SPLIT_ALIASES:
            keys.append("/".join(parts[1:]))
        keys.append(parts[-1])
        try:
            text = f.read_bytes().decode("utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            problems.error(f, f"cannot read the label file as UTF-8 text ({exc}); skipped")
            continue
        lines = []
        for lineno, line in enumerate(split_lines(text), start=1):
            try:
                parsed = parse_label_line(line)
            except LabelLineError as exc:
                problems.error(f, f"{exc}; line skipped", f"line {lineno}")
                continue
            if parsed is not None:
                lines.append((lineno, parsed))
        out.append(_YoloFile(f, list(dict.fromkeys(unicodedata.normalize("NFC", k) for k in keys)), lines))
    return names, out


# --------------------------------------------------------------------------- matching


class _Names:
    """The project's image names, and lookups by base name and by stem."""

    def __init__(self, rows: list[tuple[int, str, int, int]]):
        self.by_name = {name: (iid, w, h) for iid, name, w, h in rows}
        self.by_base: dict[str, list[str]] = defaultdict(list)
        self.by_stem: dict[str, list[str]] = defaultdict(list)
        self.by_base_stem: dict[str, list[str]] = defaultdict(list)
        for _, name, _, _ in rows:
            p = PurePosixPath(name)
            self.by_base[p.name].append(name)
            self.by_stem[p.with_suffix("").as_posix()].append(name)
            self.by_base_stem[p.stem].append(name)

    def match(self, name: str) -> str | None:
        name = unicodedata.normalize("NFC", name)
        if name in self.by_name:
            return name
        found = self.by_base.get(PurePosixPath(name).name, [])
        return found[0] if len(found) == 1 else None

    def match_stem(self, keys: list[str]) -> str | None:
        for k, key in enumerate(keys):
            table = self.by_base_stem if k == len(keys) - 1 and "/" not in key else self.by_stem
            found = table.get(key, [])
            if len(found) == 1:
                return found[0]
        return None


# --------------------------------------------------------------------------- the import


def import_labels(
    store: Store,
    project_name: str,
    path: Path | str,
    *,
    workspace: str = DEFAULT_WORKSPACE,
    format: str | None = None,
    tags: Iterable[str] = (),
    clip: bool = False,
    source: str | None = None,
    user: str | None = None,
    started: float | None = None,
) -> RelabelReport:
    """Replace the labels of the project's images named in the label files at ``path``.

    See the module docstring. Raises :class:`~winnow.errors.WinnowError` (changing nothing)
    when the files as a whole cannot be read; bad records and unknown names are reported in the
    returned report's ``problems``.
    """
    from winnow.formats.yolo import lines_to_annotations
    from winnow.services.annotations import add_tag, replace_labels
    from winnow.services.fixes import record_change

    started = time.perf_counter() if started is None else started
    path = Path(path)
    if not path.exists():
        raise NotFoundError(f"{path}: no such file or folder")
    fmt = format or _guess_format(path)
    if fmt not in FORMATS:
        raise InvalidInputError(f"--match-existing reads {' and '.join(FORMATS)} label files, not {fmt!r}")
    tags = clean_tags(tags)
    problems = Problems()
    report = RelabelReport(project=project_name, source=source or str(path), format=fmt)

    with store.read() as session:
        proj = get_project(session, project_name, workspace)
        names = _Names(list(session.execute(select(m.Image.id, m.Image.name, m.Image.width, m.Image.height).where(m.Image.project_id == proj.id))))
        project_classes = class_names(session, proj.id)

    # (image name, annotations, file) for every matched record; annotations in absolute pixels
    matched: list[tuple[str, list[Annotation], str]] = []
    if fmt == "coco":
        for rec in _read_coco(path, problems):
            hit = names.match(rec.name)
            if hit is None:
                problems.error(path, "no image with this name (or base name) in the project; skipped, no image created", record=rec.name)
                report.unmatched += 1
                report.images_skipped += 1
                continue
            matched.append((hit, rec.annotations, str(path)))
    else:
        class_list, files = _read_yolo(path, problems)
        if class_list is None:
            class_list = project_classes
            if files:
                problems.warning(path, "no data.yaml, classes.txt or obj.names: class ids read as the project's classes in order")
        for yf in files:
            hit = names.match_stem(yf.keys)
            if hit is None:
                problems.error(yf.file, "no image with this name in the project; skipped, no image created", record=yf.keys[0])
                report.unmatched += 1
                report.images_skipped += 1
                continue
            _, w, h = names.by_name[hit]
            good = []
            for lineno, line in yf.lines:
                if line.class_id >= len(class_list):
                    problems.error(yf.file, f"class id {line.class_id} is not in the {len(class_list)} class names; line skipped", f"line {lineno}", hit)
                else:
                    good.append(line)
            matched.append((hit, lines_to_annotations(good, class_list, w, h), str(yf.file)))

    seen: dict[str, str] = {}
    todo: list[tuple[int, str, list[Annotation]]] = []
    for name, anns, file in matched:
        if name in seen:
            problems.error(file, f"another record ({seen[name]}) already gave this image's labels; skipped", record=name)
            report.images_skipped += 1
            continue
        seen[name] = file
        iid, w, h = names.by_name[name]
        verdict = validate_image(ImageRecord(name=name, annotations=list(anns)), w, h, clip=clip)
        for _, reason in verdict.rejected:
            problems.error(file, reason, record=name)
        for _, reason in verdict.warnings:
            problems.warning(file, reason, record=name)
        report.annotations_skipped += len(verdict.rejected)
        report.boxes_clipped += verdict.clipped
        todo.append((iid, name, verdict.kept))

    with store.write() as session:
        proj = get_project(session, project_name, workspace)
        known = set(class_names(session, proj.id))
        ops: list[dict[str, Any]] = []
        cache: dict[str, int] = {}
        alive = set(session.scalars(select(m.Image.id).where(m.Image.project_id == proj.id, m.Image.id.in_([t[0] for t in todo]))))
        for iid, name, anns in todo:
            if iid not in alive:  # deleted since we looked
                problems.error(report.source, "the image was deleted meanwhile; skipped", record=name)
                continue
            removed, added = replace_labels(session, proj.id, iid, anns, source=None, user=user, ops=ops, cache=cache)
            for tag in tags:
                add_tag(session, iid, tag, ops)
            report.images_relabeled += 1
            report.annotations_removed += removed
            report.annotations_added += added
        report.classes_added = [c for c in cache if c not in known]
        report.problems = list(problems)
        report.seconds = time.perf_counter() - started
        run = m.ImportRun(project_id=proj.id, source=report.source, format=f"{fmt} (match existing)", started_at=m.utcnow(), report={})
        session.add(run)
        session.flush()
        report.import_id = run.id
        if ops:
            report.change_id = record_change(
                session, proj.id, "import_labels",
                f"labels of {report.images_relabeled} images replaced from {report.source} ({fmt})", ops, user,
            )
        run.report = report.as_dict()
        run.finished_at = m.utcnow()
        proj.updated_at = m.utcnow()
    return report
