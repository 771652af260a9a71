"""Reading a project back out of the store: as a :class:`Dataset`, as filtered image lists, and
as files in any format (export)."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import unicodedata
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Select, String, func, select, type_coerce
from sqlalchemy.orm import Session

from winnow.config import DEFAULT_WORKSPACE
from winnow.core.types import SPLITS, Annotation, Dataset, ImageRecord, Source, Task
from winnow.errors import ConflictError, InvalidInputError, NotFoundError
from winnow.formats import get_format
from winnow.formats.coco import gc_paused
from winnow.services.projects import class_names, get_project
from winnow.store import models as m
from winnow.store.db import Store

ProgressFn = Callable[[int, int], None]


def _image_query(
    project_id: int,
    *,
    class_name: str | None = None,
    tag: str | None = None,
    split: str | None = None,
) -> Select:
    q = select(m.Image).where(m.Image.project_id == project_id)
    if split is not None:
        if split == "unassigned":
            q = q.where(m.Image.split.is_(None))
        elif split not in SPLITS:
            raise InvalidInputError(f"unknown split {split!r}; expected one of: {', '.join(SPLITS)}, unassigned")
        else:
            q = q.where(m.Image.split == split)
    if tag is not None:
        q = q.where(m.Image.id.in_(select(m.ImageTag.image_id).where(m.ImageTag.tag == tag)))
    if class_name is not None:
        q = q.where(
            m.Image.id.in_(
                select(m.Annotation.image_id)
                .join(m.ProjectClass)
                .where(m.ProjectClass.project_id == project_id, m.ProjectClass.name == class_name)
            )
        )
    return q.order_by(m.Image.name)


#: The image columns ``_records`` reads (plain rows: no ORM objects to build).
_IMAGE_COLUMNS = (
    m.Image.id,
    m.Image.name,
    m.Image.width,
    m.Image.height,
    m.Image.split,
    m.Image.sha256,
    m.Image.external_id,
    m.Image.declared_width,
    m.Image.declared_height,
)

#: The annotation columns ``_records`` reads, as Core table columns (plain tuples, no ORM row
#: handling); JSON ones as their stored text (decoded by ``_json_decoder``).
_ANN = m.Annotation.__table__.c
_ANNOTATION_COLUMNS = (
    _ANN.id,
    _ANN.image_id,
    _ANN.x1,
    _ANN.y1,
    _ANN.x2,
    _ANN.y2,
    type_coerce(_ANN.polygon, String),
    type_coerce(_ANN.rle, String),
    _ANN.iscrowd,
    _ANN.score,
    _ANN.source,
    type_coerce(_ANN.attributes, String),
    _ANN.external_id,
    m.ProjectClass.__table__.c.name,
)
_ANNOTATIONS_WITH_CLASS = m.Annotation.__table__.join(
    m.ProjectClass.__table__, _ANN.class_id == m.ProjectClass.__table__.c.id
)


def _json_decoder(session: Session) -> Callable[[str | None], Any]:
    """Decode a JSON column's stored text as the column type would, with SQL NULL and JSON
    ``null`` (most rows: no polygon, mask or attributes) short-cut to ``None``."""
    dialect = session.get_bind().dialect
    decode = m.Annotation.polygon.type.dialect_impl(dialect).result_processor(dialect, None) or (lambda v: v)

    def load(text: str | None) -> Any:
        return None if text is None or text == "null" else decode(text)

    return load


def _records(session: Session, store: Store, images: Sequence[Any]) -> list[ImageRecord]:
    """Build records (annotations, tags, metadata) for ``images`` (rows of ``_IMAGE_COLUMNS``),
    batched by id.

    Annotations are read as plain rows (not ORM objects): a project's annotations are the bulk
    of what an export or a check loads.
    """
    by_id = {im.id: ImageRecord(
        name=im.name,
        width=im.width,
        height=im.height,
        split=im.split,
        sha256=im.sha256,
        file=store.blobs.path(im.sha256),
        external_id=im.external_id,
        declared_width=im.declared_width,
        declared_height=im.declared_height,
        id=im.id,
    ) for im in images}
    ids = list(by_id)
    anns: dict[int, list[Annotation]] = defaultdict(list)
    load = _json_decoder(session)
    sources: dict[str, Source] = {}
    for i in range(0, len(ids), 900):
        chunk = ids[i : i + 900]
        for (ann_id, image_id, x1, y1, x2, y2, polygon, rle, iscrowd, score, source, attributes, external_id, label) in session.execute(
            select(*_ANNOTATION_COLUMNS)
            .select_from(_ANNOTATIONS_WITH_CLASS)
            .where(_ANN.image_id.in_(chunk))
            .order_by(_ANN.image_id, _ANN.id)
        ):
            kind = sources.get(source)
            if kind is None:
                kind = sources[source] = Source(source)
            anns[image_id].append(
                Annotation(
                    label=label,
                    bbox=None if x1 is None else (x1, y1, x2, y2),
                    polygon=load(polygon),
                    rle=load(rle),
                    iscrowd=bool(iscrowd),
                    score=score,
                    source=kind,
                    attributes=dict(load(attributes) or {}),
                    external_id=external_id,
                    id=ann_id,
                )
            )
        for image_id, tag in session.execute(
            select(m.ImageTag.image_id, m.ImageTag.tag).where(m.ImageTag.image_id.in_(chunk)).order_by(m.ImageTag.tag)
        ):
            by_id[image_id].tags.append(tag)
        for image_id, key, value in session.execute(
            select(m.ImageMetadata.image_id, m.ImageMetadata.key, m.ImageMetadata.value).where(
                m.ImageMetadata.image_id.in_(chunk)
            )
        ):
            by_id[image_id].metadata[key] = value
    for image_id, rec in by_id.items():
        rec.annotations = anns.get(image_id, [])
    return list(by_id.values())


def load_dataset(
    store: Store,
    project_name: str,
    *,
    workspace: str = DEFAULT_WORKSPACE,
    split: str | None = None,
) -> Dataset:
    """The project (or one split of it) as a :class:`Dataset` whose records point at blobs."""
    with store.read() as session, gc_paused():  # no cyclic-GC passes over the records as they are built
        project = get_project(session, project_name, workspace)
        images = list(session.execute(_image_query(project.id, split=split).with_only_columns(*_IMAGE_COLUMNS)))
        return Dataset(
            classes=class_names(session, project.id),
            images=_records(session, store, images),
            task=Task(project.task),
            info={"project": project.name, "workspace": workspace},
        )


@dataclass
class ImageRow:
    """One line of ``winnow images``. Field names are part of the ``--json`` contract."""

    name: str
    sha256: str
    width: int
    height: int
    split: str | None
    annotations: int
    classes: list[str]
    tags: list[str]
    metadata: dict[str, Any]
    annotation_list: list[dict[str, Any]] | None = None  # each annotation, when asked for

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if self.annotation_list is None:
            del d["annotation_list"]
        return d


def list_images(
    store: Store,
    project_name: str,
    *,
    workspace: str = DEFAULT_WORKSPACE,
    class_name: str | None = None,
    tag: str | None = None,
    split: str | None = None,
    limit: int | None = None,
    offset: int = 0,
    with_annotations: bool = False,
) -> list[ImageRow]:
    """Images of a project, filtered by class, tag and split, ordered by name, paginated;
    ``with_annotations``: each row also lists its annotations (what a grid of thumbnails draws)."""
    from winnow.versions.materialize import annotation_to_dict

    with store.read() as session:
        project = get_project(session, project_name, workspace)
        q = _image_query(project.id, class_name=class_name, tag=tag, split=split).offset(offset)
        if limit is not None:
            q = q.limit(limit)
        images = list(session.execute(q.with_only_columns(*_IMAGE_COLUMNS)))
        rows = []
        for rec in _records(session, store, images):
            rows.append(
                ImageRow(
                    name=rec.name,
                    sha256=rec.sha256,
                    width=rec.width,
                    height=rec.height,
                    split=rec.split,
                    annotations=len(rec.annotations),
                    classes=sorted({a.label for a in rec.annotations}),
                    tags=rec.tags,
                    metadata=rec.metadata,
                    annotation_list=[annotation_to_dict(a) for a in rec.annotations] if with_annotations else None,
                )
            )
        return rows


def count_images(
    store: Store,
    project_name: str,
    *,
    workspace: str = DEFAULT_WORKSPACE,
    class_name: str | None = None,
    tag: str | None = None,
    split: str | None = None,
) -> int:
    """How many images :func:`list_images` pages through with the same filters."""
    with store.read() as session:
        project = get_project(session, project_name, workspace)
        q = _image_query(project.id, class_name=class_name, tag=tag, split=split).order_by(None)
        return session.scalar(select(func.count()).select_from(q.with_only_columns(m.Image.id).subquery())) or 0


@dataclass
class ExportReport:
    """What an export wrote. Field names are part of the ``--json`` contract."""

    project: str
    format: str
    dest: str
    images: int
    annotations: int
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def export_project(
    store: Store,
    project_name: str,
    dest: Path | str,
    format: str,
    *,
    workspace: str = DEFAULT_WORKSPACE,
    split: str | None = None,
    progress: ProgressFn | None = None,
) -> ExportReport:
    """Write the project to ``dest`` (a new or empty folder) in ``format``."""
    started = time.perf_counter()
    fmt = get_format(format)
    dest = _export_destination(dest)
    dataset = load_dataset(store, project_name, workspace=workspace, split=split)
    write_dataset(store, dataset, dest, fmt.name, progress=progress)
    return ExportReport(
        project=project_name,
        format=fmt.name,
        dest=str(dest),
        images=len(dataset.images),
        annotations=dataset.annotation_count,
        seconds=round(time.perf_counter() - started, 3),
    )


def _export_destination(dest: Path | str) -> Path:
    dest = Path(dest).resolve()
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise ConflictError(f"{dest}: export destination exists and is not an empty folder")
    return dest


def write_dataset(
    store: Store, dataset: Dataset, dest: Path | str, format: str, *, progress: ProgressFn | None = None
) -> None:
    """Write ``dataset`` (records whose ``sha256`` names their blob) to ``dest`` in ``format``.

    The files are written to a temporary folder beside ``dest`` and renamed into place, so
    ``dest`` holds either a whole export or nothing.
    """
    fmt = get_format(format)
    dest = _export_destination(dest)
    if fmt.tasks and dataset.task not in fmt.tasks:  # a format with no tasks holds images only (its writer refuses labels)
        raise InvalidInputError(
            f"format {fmt.name!r} cannot hold {dataset.task.value} labels (it holds: {', '.join(sorted(t.value for t in fmt.tasks))})"
        )
    total = len(dataset.images)
    done = 0

    def copy_blob(record: ImageRecord, path: Path) -> None:
        nonlocal done
        shutil.copyfile(store.blobs.path(record.sha256), path)
        done += 1
        if progress is not None:
            progress(done, total)

    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        with gc_paused():
            fmt.write(dataset, staging, copy_blob)
        if dest.exists():
            dest.rmdir()
        os.replace(staging, dest)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def get_image(store: Store, project_name: str, name: str, *, workspace: str = DEFAULT_WORKSPACE) -> ImageRecord:
    """One image of a project with its annotations (with their ids), tags and metadata."""
    with store.read() as session:
        project = get_project(session, project_name, workspace)
        rows = list(
            session.execute(
                select(m.Image).where(m.Image.project_id == project.id, m.Image.name == unicodedata.normalize("NFC", name))
                .with_only_columns(*_IMAGE_COLUMNS)
            )
        )
        if not rows:
            raise NotFoundError(f"project {project_name!r} has no image {name!r}")
        return _records(session, store, rows)[0]


def image_dict(rec: ImageRecord) -> dict[str, Any]:
    """An image record with its annotations (with their ids), as the API shows it."""
    from winnow.versions.materialize import annotation_to_dict

    return {
        "name": rec.name,
        "sha256": rec.sha256,
        "width": rec.width,
        "height": rec.height,
        "split": rec.split,
        "tags": list(rec.tags),
        "metadata": dict(rec.metadata),
        "annotations": [annotation_to_dict(a) for a in rec.annotations],
    }
