"""Editing one annotation at a time (people labelling through the API or the queue), every edit
recorded as an undoable :class:`~winnow.store.models.Change` with who and when.

Rules, the same for the API, the queue and ``winnow import --match-existing``:

* **Geometry** is validated at the boundary (:func:`clean_annotation`): a box is four finite
  numbers ``[x1, y1, x2, y2]`` in absolute pixels of the image *as displayed* with ``x2 > x1``
  and ``y2 > y1`` (NaN, Inf, ``null`` or no area: :class:`InvalidInputError`). A box that leaves
  the image is **clipped** to it (a box drawn a pixel past the edge is normal in a labelling UI);
  one that lies wholly outside is refused. Polygon parts (flat ``[x0, y0, x1, y1, ...]``, at least
  three points) are clipped the same way; the box of a polygon-only annotation is derived from it.
  A ``classify`` project's labels are image-level (no geometry); ``detect``/``segment`` need a box
  or a polygon.
* **Labels** are 1-500 characters (NFC, trimmed, no control characters). An unknown label
  **creates the class**, as imports do; the change records it, so ``winnow undo`` removes the class
  again when nothing else uses it.
* Annotations made by people get ``source="human"`` and ``created_by=user``; editing any
  annotation (a model pre-label included) makes it a human one and clears its model ``score``
  unless a score is given.
* An annotation is only ever looked up **inside the project** (its image's ``project_id``): an id
  of another project, or of another workspace, is :class:`NotFoundError`, never touched.

Change kinds: ``annotation_create``, ``annotation_update``, ``annotation_delete``; their
operations are the ones :func:`winnow.services.fixes.undo` reverts (``insert_annotation``,
``update_annotation`` with the row's columns as they were, ``delete_annotation`` with the whole
row, ``insert_class``).
"""

from __future__ import annotations

import json
import unicodedata
from typing import Any

import numpy as np
from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session

from winnow.config import DEFAULT_WORKSPACE
from winnow.core import geometry
from winnow.core.types import UNLABELED_TAG, Annotation, ImageRecord, Source, Task, is_finite_number
from winnow.core.validate import MAX_LABEL_LENGTH, validate_image
from winnow.errors import InvalidInputError, NotFoundError
from winnow.services.fixes import record_change, snapshot_row
from winnow.services.projects import get_project
from winnow.store import models as m
from winnow.store.db import Store

#: Limits on what one annotation may carry (BAD_INPUTS #20, #26).
MAX_POLYGON_PARTS = 100
MAX_POLYGON_COORDS = 20_000
MAX_ATTRIBUTES_BYTES = 16_384

#: The columns an ``update_annotation`` operation stores as they were (what undo writes back).
_UPDATABLE = ("class_id", "x1", "y1", "x2", "y2", "polygon", "rle", "iscrowd", "score", "source", "attributes", "created_by")


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


#: "Leave this field as it is" for :func:`update_annotation` (``None`` clears a field).
UNSET: Any = _Unset()


# --------------------------------------------------------------------------- validation


def clean_label(label: Any) -> str:
    """``label`` NFC-normalised and trimmed; :class:`InvalidInputError` unless it is 1-500
    characters of text without control characters."""
    if not isinstance(label, str):
        raise InvalidInputError(f"label must be text, got {type(label).__name__}")
    text = unicodedata.normalize("NFC", label).strip()
    if not text or len(text) > MAX_LABEL_LENGTH:
        raise InvalidInputError(f"label must be 1-{MAX_LABEL_LENGTH} characters, got {len(text)}")
    if any(unicodedata.category(ch) == "Cc" for ch in text):
        raise InvalidInputError(f"label {text[:40]!r} contains control characters")
    return text


def _clean_attributes(attributes: Any) -> dict[str, Any] | None:
    if attributes is None:
        return None
    if not isinstance(attributes, dict) or not all(isinstance(k, str) and 0 < len(k) <= 200 for k in attributes):
        raise InvalidInputError("attributes must be a JSON object with text keys (1-200 characters)")
    try:
        size = len(json.dumps(attributes, allow_nan=False))
    except (TypeError, ValueError, RecursionError) as exc:
        raise InvalidInputError(f"attributes must be plain JSON (no NaN or Infinity, not nested too deeply): {exc}") from None
    if size > MAX_ATTRIBUTES_BYTES:
        raise InvalidInputError(f"attributes are {size} bytes of JSON; at most {MAX_ATTRIBUTES_BYTES}")
    return attributes or None


def _clean_box(bbox: Any) -> tuple[float, float, float, float]:
    if not isinstance(bbox, (list, tuple)) or len(bbox) != 4:
        raise InvalidInputError(f"bbox must be [x1, y1, x2, y2] (four numbers), got {str(bbox)[:80]}")
    if not all(is_finite_number(v) for v in bbox):
        raise InvalidInputError(f"bbox {list(bbox)!r} has a coordinate that is not a finite number")
    box = tuple(float(v) for v in bbox)
    if not geometry.positive(np.asarray([box]))[0]:
        raise InvalidInputError(f"bbox {list(box)!r} has no area (need x2 > x1 and y2 > y1)")
    return box  # type: ignore[return-value]


def _clean_polygon(polygon: Any, width: int, height: int) -> list[list[float]]:
    if not isinstance(polygon, list) or not polygon:
        raise InvalidInputError("polygon must be a non-empty list of parts [x0, y0, x1, y1, ...]")
    if len(polygon) > MAX_POLYGON_PARTS:
        raise InvalidInputError(f"polygon has {len(polygon)} parts; at most {MAX_POLYGON_PARTS}")
    out: list[list[float]] = []
    for k, part in enumerate(polygon):
        if not isinstance(part, (list, tuple)) or len(part) < 6 or len(part) % 2:
            raise InvalidInputError(f"polygon part {k} needs at least 3 points as an even list of numbers")
        if len(part) > MAX_POLYGON_COORDS:
            raise InvalidInputError(f"polygon part {k} has {len(part)} numbers; at most {MAX_POLYGON_COORDS}")
        if not all(is_finite_number(v) for v in part):
            raise InvalidInputError(f"polygon part {k} has a coordinate that is not a finite number")
        pts = np.asarray(part, dtype=np.float64).reshape(-1, 2)
        if (pts < 0).any() or (pts[:, 0] > width).any() or (pts[:, 1] > height).any():
            pts = geometry.clip_polygon(pts, 0.0, 0.0, float(width), float(height))
        ring = pts.ravel().tolist()
        if len(pts) < 3 or geometry.polygon_area(ring) <= 0:
            raise InvalidInputError(f"polygon part {k} lies outside the {width}x{height} image or has no area")
        out.append([float(v) for v in ring])
    return out


#: The keys an annotation dict may have (``id``, ``source`` and ``relabeled_from`` are shown by
#: the queue and ignored here).
ANNOTATION_KEYS = frozenset({"label", "bbox", "polygon", "rle", "score", "attributes", "id", "source", "relabeled_from"})


def clean_annotation(raw: dict[str, Any] | Annotation, width: int, height: int, task: Task | str, *, where: str = "annotation") -> Annotation:
    """One annotation (a dict with ``label`` and optional ``bbox``, ``polygon``, ``rle``,
    ``score``, ``attributes``; or an :class:`Annotation`) checked against a ``width x height`` image.

    Returns a new :class:`Annotation` with the label cleaned, boxes and polygons clipped to the
    image and a polygon's box derived; raises :class:`InvalidInputError` naming ``where``.
    """
    if isinstance(raw, Annotation):
        raw = {"label": raw.label, "bbox": raw.bbox, "polygon": raw.polygon, "rle": raw.rle, "score": raw.score, "attributes": raw.attributes or None}
    if not isinstance(raw, dict):
        raise InvalidInputError(f"{where}: must be a JSON object with a 'label', got {type(raw).__name__}")
    unknown = set(raw) - ANNOTATION_KEYS
    if unknown:
        raise InvalidInputError(f"{where}: unknown field(s) {', '.join(sorted(map(str, unknown)))}")
    try:
        label = clean_label(raw.get("label"))
        bbox, polygon, rle = raw.get("bbox"), raw.get("polygon"), raw.get("rle")
        task = Task(task)
        if task is Task.CLASSIFY:
            if bbox is not None or polygon is not None or rle is not None:
                raise InvalidInputError("a classify project's labels are image-level: no bbox, polygon or mask")
        elif bbox is None and polygon is None and rle is None:
            raise InvalidInputError(f"a {task.value} label needs a bbox or a polygon")
        box = _clean_box(bbox) if bbox is not None else None
        parts = _clean_polygon(polygon, width, height) if polygon is not None else None
        score = raw.get("score")
        if score is not None and not (is_finite_number(score) and 0.0 <= score <= 1.0):
            raise InvalidInputError(f"score {score!r} must be a number in [0, 1]")
        attributes = _clean_attributes(raw.get("attributes"))
    except InvalidInputError as exc:
        raise InvalidInputError(f"{where}: {exc}") from None
    ann = Annotation(
        label=label, bbox=box, polygon=parts, rle=rle, score=None if score is None else float(score), attributes=attributes or {}
    )
    if box is not None or parts is not None or rle is not None:
        verdict = validate_image(ImageRecord(name=where, annotations=[ann]), width, height, clip=True)
        if verdict.rejected:
            raise InvalidInputError(f"{where}: {verdict.rejected[0][1].split(': ', 1)[-1]}")
    return ann


# --------------------------------------------------------------------------- rows and ops


def class_id_for(session: Session, project_id: int, label: str, ops: list[dict[str, Any]], cache: dict[str, int] | None = None) -> int:
    """The id of class ``label`` in the project, creating it (and an ``insert_class`` op) if new."""
    if cache is not None and label in cache:
        return cache[label]
    cid = session.scalar(select(m.ProjectClass.id).where(m.ProjectClass.project_id == project_id, m.ProjectClass.name == label))
    if cid is None:
        last = session.scalar(
            select(m.ProjectClass.position).where(m.ProjectClass.project_id == project_id).order_by(m.ProjectClass.position.desc()).limit(1)
        )
        row = m.ProjectClass(project_id=project_id, name=label, position=0 if last is None else last + 1)
        session.add(row)
        session.flush()
        cid = row.id
        ops.append({"op": "insert_class", "id": cid, "name": label})
    if cache is not None:
        cache[label] = cid
    return cid


def insert_annotation(
    session: Session, project_id: int, image_id: int, ann: Annotation, *, source: str, user: str | None,
    ops: list[dict[str, Any]], cache: dict[str, int] | None = None,
) -> m.Annotation:
    """Store ``ann`` (already cleaned) on the image; appends the ``insert_annotation`` op."""
    x1, y1, x2, y2 = ann.bbox if ann.bbox is not None else (None, None, None, None)
    row = m.Annotation(
        image_id=image_id,
        class_id=class_id_for(session, project_id, ann.label, ops, cache),
        x1=x1, y1=y1, x2=x2, y2=y2,
        polygon=ann.polygon,  # explicit None: stored as JSON null (the column is NOT NULL)
        rle=ann.rle,
        iscrowd=bool(ann.iscrowd),
        score=ann.score,
        source=source,
        attributes=ann.attributes or None,
        external_id=None if ann.external_id is None else str(ann.external_id)[:100],
        created_by=user,
    )
    session.add(row)
    session.flush()
    ops.append({"op": "insert_annotation", "id": row.id})
    return row


def delete_annotation_row(session: Session, row: m.Annotation, ops: list[dict[str, Any]]) -> None:
    ops.append({"op": "delete_annotation", "annotation": snapshot_row(row)})
    session.execute(delete(m.Annotation).where(m.Annotation.id == row.id))


def remove_tag(session: Session, image_id: int, tag: str, ops: list[dict[str, Any]]) -> bool:
    """Remove ``tag`` from the image (recorded as a ``delete_tag`` op); False when it had none."""
    found = session.get(m.ImageTag, (image_id, tag))
    if found is None:
        return False
    session.execute(delete(m.ImageTag).where(m.ImageTag.image_id == image_id, m.ImageTag.tag == tag))
    ops.append({"op": "delete_tag", "image_id": image_id, "tag": tag})
    return True


def add_tag(session: Session, image_id: int, tag: str, ops: list[dict[str, Any]]) -> bool:
    """Tag the image (recorded as an ``insert_tag`` op); False when it already had the tag."""
    if session.get(m.ImageTag, (image_id, tag)) is not None:
        return False
    session.execute(insert(m.ImageTag).values(image_id=image_id, tag=tag))
    ops.append({"op": "insert_tag", "image_id": image_id, "tag": tag})
    return True


def replace_labels(
    session: Session, project_id: int, image_id: int, annotations: list[Annotation], *, source: str | None, user: str | None,
    ops: list[dict[str, Any]], cache: dict[str, int] | None = None,
) -> tuple[int, int]:
    """Make ``annotations`` (cleaned) the image's whole label set: every annotation it had is
    deleted, the new ones stored (as ``source``, or each its own when ``None``), and the
    ``unlabeled`` tag removed. Returns (removed, added)."""
    old = session.scalars(select(m.Annotation).where(m.Annotation.image_id == image_id).order_by(m.Annotation.id)).all()
    for row in old:
        delete_annotation_row(session, row, ops)
    for ann in annotations:
        own = source if source is not None else Source(ann.source).value
        insert_annotation(session, project_id, image_id, ann, source=own, user=user, ops=ops, cache=cache)
    remove_tag(session, image_id, UNLABELED_TAG, ops)
    return len(old), len(annotations)


def annotation_out(row: m.Annotation, label: str, image: str, change_id: int | None = None) -> dict[str, Any]:
    """An annotation as the API and ``--json`` show it (``bbox`` is absolute-pixel ``xyxy``)."""
    return {
        "id": row.id,
        "image": image,
        "label": label,
        "bbox": None if row.x1 is None else [float(row.x1), float(row.y1), float(row.x2), float(row.y2)],
        "polygon": row.polygon,
        "rle": row.rle,
        "iscrowd": bool(row.iscrowd),
        "score": row.score,
        "source": row.source,
        "attributes": row.attributes or {},
        "created_at": row.created_at.isoformat() + "Z" if row.created_at else None,
        "created_by": row.created_by,
        "change_id": change_id,
    }


def _find_image(session: Session, project_id: int, project: str, name: str) -> m.Image:
    im = session.scalar(select(m.Image).where(m.Image.project_id == project_id, m.Image.name == unicodedata.normalize("NFC", name)))
    if im is None:
        raise NotFoundError(f"project {project!r} has no image {name!r}")
    return im


def _find_annotation(session: Session, project_id: int, project: str, annotation_id: int) -> tuple[m.Annotation, m.Image]:
    """The annotation with its image, only when the image belongs to the project (IDOR-safe)."""
    if not isinstance(annotation_id, int) or isinstance(annotation_id, bool) or not 0 < annotation_id < 2**63:
        raise NotFoundError(f"project {project!r} has no annotation {annotation_id!r}")
    found = session.execute(
        select(m.Annotation, m.Image)
        .join(m.Image, m.Image.id == m.Annotation.image_id)
        .where(m.Annotation.id == annotation_id, m.Image.project_id == project_id)
    ).first()
    if found is None:
        raise NotFoundError(f"project {project!r} has no annotation {annotation_id}")
    return found[0], found[1]


def _label_of(session: Session, class_id: int) -> str:
    return session.scalar(select(m.ProjectClass.name).where(m.ProjectClass.id == class_id))


# --------------------------------------------------------------------------- the verbs


def create_annotation(
    store: Store,
    project: str,
    image: str,
    *,
    label: str,
    bbox: list[float] | tuple[float, ...] | None = None,
    polygon: list[list[float]] | None = None,
    score: float | None = None,
    attributes: dict[str, Any] | None = None,
    workspace: str = DEFAULT_WORKSPACE,
    user: str | None = None,
) -> dict[str, Any]:
    """Add a human annotation to ``image`` of ``project``; returns it (:func:`annotation_out`).

    ``bbox`` is absolute-pixel ``xyxy`` of the image as displayed; see the module docstring for
    the rules (clipping, new classes). Recorded as one ``annotation_create`` change.
    """
    with store.write() as session:
        proj = get_project(session, project, workspace)
        im = _find_image(session, proj.id, project, image)
        ann = clean_annotation(
            {"label": label, "bbox": bbox, "polygon": polygon, "score": score, "attributes": attributes},
            im.width, im.height, proj.task, where=f"annotation on {im.name}",
        )
        ops: list[dict[str, Any]] = []
        row = insert_annotation(session, proj.id, im.id, ann, source=Source.HUMAN.value, user=user, ops=ops)
        change = record_change(session, proj.id, "annotation_create", f"annotation {row.id} ({ann.label}) added to {im.name}", ops, user)
        proj.updated_at = m.utcnow()
        return annotation_out(row, ann.label, im.name, change)


def update_annotation(
    store: Store,
    project: str,
    annotation_id: int,
    *,
    label: str = UNSET,
    bbox: list[float] | tuple[float, ...] | None = UNSET,
    polygon: list[list[float]] | None = UNSET,
    score: float | None = UNSET,
    attributes: dict[str, Any] | None = UNSET,
    workspace: str = DEFAULT_WORKSPACE,
    user: str | None = None,
) -> dict[str, Any]:
    """Change fields of an annotation of ``project`` (:data:`UNSET` leaves a field, ``None``
    clears it). The result is validated as a whole, like a new annotation; the annotation becomes
    ``source="human"`` and loses its model score unless ``score`` is given. Recorded as one
    ``annotation_update`` change holding the row as it was."""
    with store.write() as session:
        proj = get_project(session, project, workspace)
        row, im = _find_annotation(session, proj.id, project, annotation_id)
        if row.rle is not None and (bbox is not UNSET or polygon is not UNSET):
            raise InvalidInputError(f"annotation {row.id} is a mask; its geometry cannot be edited here (delete it and draw a new one)")
        current = {
            "label": _label_of(session, row.class_id),
            "bbox": None if row.x1 is None else [row.x1, row.y1, row.x2, row.y2],
            "polygon": row.polygon,
            "rle": row.rle,
            "score": None,
            "attributes": row.attributes,
        }
        given = {"label": label, "bbox": bbox, "polygon": polygon, "score": score, "attributes": attributes}
        merged = current | {k: v for k, v in given.items() if v is not UNSET}
        if polygon is not UNSET and bbox is UNSET and polygon is not None:
            merged["bbox"] = None  # a new polygon brings its own box
        ann = clean_annotation(merged, im.width, im.height, proj.task, where=f"annotation {row.id}")
        before = {k: getattr(row, k) for k in _UPDATABLE}
        ops: list[dict[str, Any]] = []
        # a new class is created first: undo (in reverse) restores the row, then drops the class
        class_id = class_id_for(session, proj.id, ann.label, ops)
        ops.append({"op": "update_annotation", "id": row.id, "before": before})
        x1, y1, x2, y2 = ann.bbox if ann.bbox is not None else (None, None, None, None)
        row.class_id, row.x1, row.y1, row.x2, row.y2 = class_id, x1, y1, x2, y2
        row.polygon, row.score, row.source = ann.polygon, ann.score, Source.HUMAN.value
        row.attributes = ann.attributes or None
        if row.created_by is None:
            row.created_by = user
        session.flush()
        change = record_change(session, proj.id, "annotation_update", f"annotation {row.id} on {im.name} edited", ops, user)
        proj.updated_at = m.utcnow()
        return annotation_out(row, ann.label, im.name, change)


def delete_annotation(
    store: Store, project: str, annotation_id: int, *, workspace: str = DEFAULT_WORKSPACE, user: str | None = None
) -> dict[str, Any]:
    """Delete an annotation of ``project``; recorded as an ``annotation_delete`` change holding
    the whole row (undo puts it back with the same id). Returns ``{"id", "image", "change_id"}``."""
    with store.write() as session:
        proj = get_project(session, project, workspace)
        row, im = _find_annotation(session, proj.id, project, annotation_id)
        ops: list[dict[str, Any]] = []
        label = _label_of(session, row.class_id)
        delete_annotation_row(session, row, ops)
        change = record_change(session, proj.id, "annotation_delete", f"annotation {annotation_id} ({label}) deleted from {im.name}", ops, user)
        proj.updated_at = m.utcnow()
        return {"id": annotation_id, "image": im.name, "deleted": True, "change_id": change}


def list_annotation_changes(
    store: Store, project: str, *, workspace: str = DEFAULT_WORKSPACE, kind: str | None = None, limit: int = 100, offset: int = 0
) -> list[dict[str, Any]]:
    """The project's recorded changes, newest first, with who (``created_by``) and when."""
    with store.read() as session:
        proj = get_project(session, project, workspace)
        q = select(m.Change).where(m.Change.project_id == proj.id)
        if kind is not None:
            q = q.where(m.Change.kind == kind)
        rows = session.scalars(q.order_by(m.Change.id.desc()).offset(offset).limit(limit)).all()
        return [
            {
                "id": c.id,
                "kind": c.kind,
                "description": c.description,
                "operations": len(c.operations or []),
                "created_at": c.created_at.isoformat() + "Z",
                "created_by": c.created_by,
                "undone_at": c.undone_at.isoformat() + "Z" if c.undone_at else None,
            }
            for c in rows
        ]
