"""Importing a dataset into a project, as one transaction.

``import_dataset`` reads a folder, a file or an archive in any registered format, checks every
image (magic bytes, header, bomb limits) and every annotation (:mod:`winnow.core.validate`),
stores new bytes in the blob store and then writes every row in **one** database transaction.
A failure or a ``kill -9`` at any point leaves the project exactly as it was: the only trace can
be blobs that no record references, which ``winnow verify`` reports and ``winnow gc`` removes.

Records are never dropped silently: two files with the same bytes under different names stay two
records and are reported as duplicates; a record whose name is already in the project is skipped
with the reason.
"""

from __future__ import annotations

import shutil
import tempfile
import time
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from winnow import archive, media
from winnow.config import DEFAULT_WORKSPACE
from winnow.core.types import SPLITS, Annotation, Dataset, ImageRecord, Problem, Problems, Task
from winnow.core.validate import already_valid, validate_image
from winnow.errors import InvalidInputError, NotFoundError
from winnow.formats import detect_format, get_format
from winnow.formats.base import InsideChecker
from winnow.formats.coco import gc_paused
from winnow.services.projects import class_names, get_project
from winnow.store import models as m
from winnow.store.blobs import sha256_bytes
from winnow.store.db import Store
from winnow.store.sql import insert_ignore

#: ``progress(done, total)`` - called as images are processed.
ProgressFn = Callable[[int, int], None]

MAX_TAG_LENGTH = 200


@dataclass
class ImportReport:
    """What an import did. Field names are part of the ``--json`` contract (docs/cli.md)."""

    project: str
    source: str
    format: str
    images_added: int = 0
    annotations_added: int = 0
    images_skipped: int = 0
    annotations_skipped: int = 0
    boxes_clipped: int = 0
    classes_added: list[str] = field(default_factory=list)
    duplicates: list[dict[str, str]] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    seconds: float = 0.0
    import_id: int | None = None

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.level == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.level == "warning"]

    def as_dict(self) -> dict[str, Any]:
        return {
            "project": self.project,
            "source": self.source,
            "format": self.format,
            "import_id": self.import_id,
            "images_added": self.images_added,
            "annotations_added": self.annotations_added,
            "images_skipped": self.images_skipped,
            "annotations_skipped": self.annotations_skipped,
            "boxes_clipped": self.boxes_clipped,
            "classes_added": self.classes_added,
            "duplicates": self.duplicates,
            "problems": [p.as_dict() for p in self.problems],
            "seconds": round(self.seconds, 3),
        }


@dataclass
class _Prepared:
    record: ImageRecord
    sha: str
    info: media.ImageInfo
    size: int


def clean_tags(tags: Iterable[str]) -> list[str]:
    out = []
    for tag in tags:
        tag = unicodedata.normalize("NFC", str(tag)).strip()
        if not tag or len(tag) > MAX_TAG_LENGTH:
            raise InvalidInputError(f"tag must be 1-{MAX_TAG_LENGTH} characters: {tag[:40]!r}")
        out.append(tag)
    return out


def _read_dataset(path: Path, fmt_name: str | None, problems: Problems, task: Task | None = None) -> tuple[Dataset, str]:
    """Read ``path`` in ``fmt_name``, or in the format detected. Detected class folders become
    unlabelled images (the ``images`` format) in a project whose task is not classification:
    there, a folder of images is a scrape or a camera dump, not a class."""
    if fmt_name:
        fmt = get_format(fmt_name)
    else:
        fmt = detect_format(path)
        if fmt.name == "folders" and task is not None and task is not Task.CLASSIFY:
            problems.warning(
                path,
                f"sub-folders read as part of the image names, not as classes: the project's task is {task.value} "
                "(pass --format folders to read them as class labels)",
            )
            fmt = get_format("images")
    return fmt.read(path, problems), fmt.name


def _prepare(
    dataset: Dataset,
    root: Path,
    store: Store,
    existing: dict[str, str],
    report: ImportReport,
    problems: Problems,
    progress: ProgressFn | None,
    strict: bool = False,
) -> list[_Prepared]:
    """Hash, probe and store the bytes of every record; skip the ones that cannot be imported.

    ``strict``: any error refuses the whole import (:class:`InvalidInputError`) before a single
    byte is stored."""
    prepared: list[_Prepared] = []
    pending: list[tuple[bytes, str]] = []
    seen_names: dict[str, str] = {}
    first_of_sha: dict[str, str] = {}
    total = len(dataset.images)
    inside_root = InsideChecker(root)
    for n, record in enumerate(dataset.images, 1):
        if progress is not None:
            progress(n, total)
        name = unicodedata.normalize("NFC", record.name)
        record.name = name
        if name in seen_names:
            problems.error(record.file or name, "another record in this import has the same name", record=name)
            continue
        if record.file is None or not inside_root(record.file):
            problems.error(record.file or name, "refused: the image file is outside the dataset folder", record=name)
            continue
        try:
            data = Path(record.file).read_bytes()
        except (OSError, TypeError) as exc:
            problems.error(record.file or name, f"cannot read image file ({getattr(exc, 'strerror', exc)})", record=name)
            continue
        sha = sha256_bytes(data)
        if name in existing:
            if existing[name] == sha:
                problems.warning(record.file, "already in the project with the same bytes; skipped", record=name)
            else:
                problems.error(record.file, "a different image with this name is already in the project", record=name)
            continue
        try:
            info = media.probe(data, str(record.file))
            if strict:  # uploads: the pixels must decode too (a truncated file is refused now, not flagged later)
                media.decode(data, str(record.file))
        except media.InvalidImageError as exc:
            problems.error(record.file, str(exc).split(": ", 1)[-1], record=name)
            continue
        seen_names[name] = sha
        if sha in first_of_sha:
            report.duplicates.append({"name": name, "duplicate_of": first_of_sha[sha], "where": "import"})
        else:
            first_of_sha[sha] = name
            if strict:
                pending.append((data, sha))
            else:
                store.blobs.put(data, sha, durable=False)
        prepared.append(_Prepared(record, sha, info, len(data)))
    if strict and problems.errors:
        shown = "; ".join(str(p) for p in problems.errors[:5])
        more = len(problems.errors) - 5
        raise InvalidInputError(f"nothing imported: {shown}" + (f" (and {more} more)" if more > 0 else ""))
    for data, sha in pending:
        store.blobs.put(data, sha, durable=False)
    return prepared


def _drop_names_taken_meanwhile(
    session: Session, project_id: int, prepared: list[_Prepared], problems: Problems
) -> list[_Prepared]:
    """Skip records whose name another writer stored after our snapshot (concurrent imports)."""
    names = [p.record.name for p in prepared]
    taken: dict[str, str] = {}
    for i in range(0, len(names), 500):
        taken.update(
            session.execute(
                select(m.Image.name, m.Image.sha256).where(
                    m.Image.project_id == project_id, m.Image.name.in_(names[i : i + 500])
                )
            ).all()
        )
    if not taken:
        return prepared
    kept = []
    for p in prepared:
        if p.record.name not in taken:
            kept.append(p)
        elif taken[p.record.name] == p.sha:
            problems.warning(p.record.file, "already in the project with the same bytes; skipped", record=p.record.name)
        else:
            problems.error(p.record.file, "a different image with this name is already in the project", record=p.record.name)
    return kept


def _stored_duplicates(session: Session, project_id: int, prepared: list[_Prepared]) -> list[dict[str, str]]:
    shas = sorted({p.sha for p in prepared})
    found: dict[str, str] = {}
    for i in range(0, len(shas), 500):
        chunk = shas[i : i + 500]
        for sha, name in session.execute(
            select(m.Image.sha256, m.Image.name).where(m.Image.project_id == project_id, m.Image.sha256.in_(chunk))
        ):
            found.setdefault(sha, name)
    return [{"name": p.record.name, "duplicate_of": found[p.sha], "where": "project"} for p in prepared if p.sha in found]


_BLOB_COLUMNS = ("sha256", "size", "format", "raw_width", "raw_height", "orientation", "channels", "mode", "created_at")
_IMAGE_COLUMNS = (
    "project_id", "sha256", "name", "split", "width", "height", "declared_width", "declared_height",
    "external_id", "import_id", "created_at",
)
_ANNOTATION_COLUMNS = (
    "image_id", "class_id", "x1", "y1", "x2", "y2", "polygon", "rle", "iscrowd", "score", "source",
    "attributes", "external_id", "created_at",
)


def _insert_many(session: Session, stmt: Any, columns: Sequence[str], rows: list[tuple[Any, ...]]) -> None:
    """Execute the INSERT ``stmt`` once per row of ``rows`` (tuples in ``columns`` order).

    On SQLite the rows go straight to the driver's ``executemany``, each value bound as
    SQLAlchemy binds it (its column type's bind processor: JSON text, datetime strings...) but
    column by column, a constant column once: ~10x faster than SQLAlchemy's per-row parameter
    handling for the 100,000-row inserts of a large import. Other databases take SQLAlchemy's
    own path (which batches into multi-row VALUES there).
    """
    if not rows:
        return
    conn = session.connection()
    dialect = conn.dialect
    if dialect.name != "sqlite":
        conn.execute(stmt, [dict(zip(columns, row, strict=True)) for row in rows])
        return
    compiled = stmt.compile(dialect=dialect, column_keys=list(columns))
    if not compiled.positional or sorted(compiled.positiontup) != sorted(columns):
        raise AssertionError(f"unexpected INSERT parameters: {compiled.positiontup}")  # pragma: no cover
    by_column: list[Sequence[Any]] = list(zip(*rows, strict=True))
    for k, name in enumerate(columns):
        process = stmt.table.c[name].type.dialect_impl(dialect).bind_processor(dialect)
        if process is not None:
            by_column[k] = _bind_column(process, by_column[k])
    position = {name: k for k, name in enumerate(columns)}
    params = list(zip(*(by_column[position[name]] for name in compiled.positiontup), strict=True))
    conn.exec_driver_sql(compiled.string, params)


def _bind_column(process: Callable[[Any], Any], values: Sequence[Any]) -> list[Any]:
    """``[process(v) for v in values]``; a column of few distinct objects (``None``, the import's
    timestamp) has each bound once."""
    ids = list(map(id, values))
    distinct = dict(zip(ids, values, strict=True))
    if len(distinct) * 4 > len(values):
        return list(map(process, values))
    bound = {i: process(v) for i, v in distinct.items()}
    return list(map(bound.__getitem__, ids))


def _validated(prepared: list[_Prepared], report: ImportReport, problems: Problems, *, clip: bool) -> list[list[Annotation]]:
    """The annotations to store for each prepared record: :func:`validate_image`'s verdict.

    Records :func:`already_valid` recognises (one numpy pass over every box of the import) are
    kept as they are; every other record goes through :func:`validate_image` itself (problems and
    counts are reported from it).
    """
    checked = already_valid([p.record for p in prepared], [(p.info.width, p.info.height) for p in prepared])
    out: list[list[Annotation]] = []
    for p, plain in zip(prepared, checked, strict=True):
        rec = p.record
        if plain:
            out.append(rec.annotations)
            continue
        verdict = validate_image(rec, p.info.width, p.info.height, clip=clip)
        for _, reason in verdict.rejected:
            problems.error(rec.file, reason, record=rec.name)
        for _, reason in verdict.warnings:
            problems.warning(rec.file, reason, record=rec.name)
        report.annotations_skipped += len(verdict.rejected)
        report.boxes_clipped += verdict.clipped
        out.append(verdict.kept)
    return out


def _insert_rows(
    session: Session,
    project: m.Project,
    dataset: Dataset,
    prepared: list[_Prepared],
    report: ImportReport,
    problems: Problems,
    *,
    split: str | None,
    tags: list[str],
    clip: bool,
    started: float,
) -> None:
    run = m.ImportRun(
        project_id=project.id,
        source=report.source,
        format=report.format,
        started_at=m.utcnow(),
        report={},
    )
    session.add(run)
    session.flush()
    report.import_id = run.id

    # classes: the project's order first, then the dataset's new ones in the dataset's order
    known = class_names(session, project.id)
    dataset.ensure_classes()
    new = [c for c in dataset.classes if c not in set(known)]
    if new:
        session.execute(
            insert(m.ProjectClass),
            [{"project_id": project.id, "name": c, "position": len(known) + i} for i, c in enumerate(new)],
        )
    report.classes_added = new
    class_id = dict(
        session.execute(select(m.ProjectClass.name, m.ProjectClass.id).where(m.ProjectClass.project_id == project.id)).all()
    )

    now = m.utcnow()
    blob_rows = {
        p.sha: (p.sha, p.size, p.info.format, p.info.raw_width, p.info.raw_height, p.info.orientation,
                p.info.channels, p.info.mode, now)
        for p in prepared
    }
    _insert_many(session, insert_ignore(session, m.Blob), _BLOB_COLUMNS, list(blob_rows.values()))

    image_rows = [
        (
            project.id, p.sha, p.record.name, split or p.record.split, p.info.width, p.info.height,
            p.record.declared_width, p.record.declared_height,
            None if p.record.external_id is None else str(p.record.external_id), run.id, now,
        )
        for p in prepared
    ]
    _insert_many(session, insert(m.Image), _IMAGE_COLUMNS, image_rows)
    # names are unique in a project: read the new ids back by name (any dialect, through the index)
    names = [p.record.name for p in prepared]
    id_of: dict[str, int] = {}
    for i in range(0, len(names), 500):
        id_of.update(
            session.execute(
                select(m.Image.name, m.Image.id).where(m.Image.project_id == project.id, m.Image.name.in_(names[i : i + 500]))
            ).all()
        )
    ids = [id_of[name] for name in names]

    ann_rows: list[tuple[Any, ...]] = []
    tag_rows: list[tuple[Any, ...]] = []
    meta_rows: list[tuple[Any, ...]] = []
    source_text: dict[Any, str] = {}
    no_box = (None, None, None, None)
    for image_id, p, kept in zip(ids, prepared, _validated(prepared, report, problems, clip=clip), strict=True):
        rec = p.record
        for ann in kept:
            x1, y1, x2, y2 = ann.bbox or no_box
            source = source_text.get(ann.source)
            if source is None:
                source = source_text[ann.source] = ann.source.value if hasattr(ann.source, "value") else str(ann.source)
            ann_rows.append(
                (
                    image_id, class_id[ann.label], x1, y1, x2, y2, ann.polygon, ann.rle, bool(ann.iscrowd), ann.score,
                    source, ann.attributes or None, None if ann.external_id is None else str(ann.external_id), now,
                )
            )
        if rec.tags or tags:
            for tag in dict.fromkeys(clean_tags(list(rec.tags) + tags)):
                tag_rows.append((image_id, tag))
        for key, value in rec.metadata.items():
            meta_rows.append((image_id, str(key)[:200], value))
    _insert_many(session, insert(m.Annotation), _ANNOTATION_COLUMNS, ann_rows)
    _insert_many(session, insert(m.ImageTag), ("image_id", "tag"), tag_rows)
    _insert_many(session, insert(m.ImageMetadata), ("image_id", "key", "value"), meta_rows)

    report.images_added = len(ids)
    report.annotations_added = len(ann_rows)
    report.problems = list(problems)
    # records the reader already dropped (unreadable image, bad annotation file) count too
    dropped_by_reader = {p.record for p in problems.errors if p.record} - {r.name for r in dataset.images}
    report.images_skipped = len(dataset.images) - len(ids) + len(dropped_by_reader)
    report.seconds = time.perf_counter() - started
    run.report = report.as_dict()
    run.finished_at = m.utcnow()
    project.updated_at = m.utcnow()


def import_dataset(
    store: Store,
    project_name: str,
    path: Path | str,
    *,
    workspace: str = DEFAULT_WORKSPACE,
    format: str | None = None,
    split: str | None = None,
    tags: Iterable[str] = (),
    clip: bool = False,
    strict: bool = False,
    source: str | None = None,
    progress: ProgressFn | None = None,
    match_existing: bool = False,
) -> ImportReport:
    """Import the dataset at ``path`` (folder, file or archive) into ``project_name``.

    Args:
        format: a registered format name; detected from the files when ``None``.
        split: put every imported image in this split (``train``/``valid``/``test``), overriding
            the split the dataset's layout gives.
        tags: tags added to every imported image.
        clip: clip boxes that leave the image instead of keeping them and warning.
        strict: refuse the whole import when any image cannot be imported (the API's uploads).
        source: what the import report and record name as the source (default: ``path``).
        progress: called with ``(done, total)`` while images are processed.
        match_existing: ``path`` holds label files only (COCO or YOLO): replace the labels of
            the project's images they name, creating no image
            (:func:`winnow.services.relabel.import_labels`; returns its report).

    Returns the :class:`ImportReport`; raises :class:`~winnow.errors.WinnowError` (and changes
    nothing) when the dataset as a whole cannot be read.
    """
    started = time.perf_counter()
    path = Path(path)
    if not path.exists():
        raise NotFoundError(f"{path}: no such file or folder")
    scratch: Path | None = None
    try:
        root = path
        if path.is_file() and archive.is_archive(path):
            scratch = Path(tempfile.mkdtemp(prefix="import-", dir=store.tmp))
            root = archive.extract(path, scratch / "x")
        task = _check_target(store, project_name, workspace, split)
        if match_existing:
            from winnow.services.relabel import import_labels

            if split is not None:
                raise InvalidInputError("--split cannot be used with --match-existing (the images keep their split)")
            return import_labels(
                store, project_name, root, workspace=workspace, format=format, tags=tags, clip=clip,
                source=source or str(path), started=started,
            )
        problems = Problems()
        dataset, fmt_name = _read_dataset(root, format, problems, task)
        return import_records(
            store, project_name, dataset, root if root.is_dir() else root.parent,
            workspace=workspace, source=source or str(path), format=fmt_name, split=split, tags=tags,
            clip=clip, strict=strict, problems=problems, progress=progress, started=started,
        )
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


def _check_target(store: Store, project_name: str, workspace: str, split: str | None) -> Task:
    """Refuse an unknown split or project before any work; the project's task."""
    if split is not None and split not in SPLITS:
        raise InvalidInputError(f"unknown split {split!r}; expected one of: {', '.join(SPLITS)}")
    with store.read() as session:
        return Task(get_project(session, project_name, workspace).task)


def import_records(
    store: Store,
    project_name: str,
    dataset: Dataset,
    root: Path,
    *,
    workspace: str = DEFAULT_WORKSPACE,
    source: str | None = None,
    format: str = "records",
    split: str | None = None,
    tags: Iterable[str] = (),
    clip: bool = False,
    strict: bool = False,
    problems: Problems | None = None,
    progress: ProgressFn | None = None,
    started: float | None = None,
) -> ImportReport:
    """Import an in-memory :class:`Dataset` whose records point at files under ``root``.

    The same transaction and rules as :func:`import_dataset` (which reads a format and calls
    this); used directly by uploads and by code that builds records itself.
    """
    started = time.perf_counter() if started is None else started
    problems = Problems() if problems is None else problems
    _check_target(store, project_name, workspace, split)
    tags = clean_tags(tags)
    with store.read() as session:
        project = get_project(session, project_name, workspace)
        existing = dict(session.execute(select(m.Image.name, m.Image.sha256).where(m.Image.project_id == project.id)).all())
        project_task = Task(project.task)
    report = ImportReport(project=project_name, source=source or str(root), format=format)
    labelled = any(r.annotations for r in dataset.images)  # unlabelled images suit any task
    if labelled and dataset.infer_task() is not project_task and project_task is not Task.CLASSIFY:
        problems.warning(root, f"the dataset looks like {dataset.infer_task().value} data; the project's task is {project_task.value}")
    # millions of small objects are made and kept below: no cyclic-GC pass over all of them
    with gc_paused():
        prepared = _prepare(dataset, Path(root), store, existing, report, problems, progress, strict)
        store.blobs.sync()  # blobs are durable before any row points at them
        with store.write() as session:
            project = get_project(session, project_name, workspace)
            prepared = _drop_names_taken_meanwhile(session, project.id, prepared, problems)
            report.duplicates += _stored_duplicates(session, project.id, prepared)
            _insert_rows(
                session, project, dataset, prepared, report, problems,
                split=split, tags=tags, clip=clip, started=started,
            )
    return report
