"""Annotations: add one to an image, edit it, delete it (people labelling), and the project's
recorded changes with who and when.

Every edit is one undoable change (``winnow undo``). Boxes are ``[x1, y1, x2, y2]`` in absolute
pixels of the image as displayed; a box past the image's edge is clipped, NaN/Inf or a box with
no area is 422. An unknown label creates the class. An annotation id is only found inside the
project named in the path (and so inside the key's workspace): any other id is 404.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from winnow.api.deps import Context, Label, Read
from winnow.services import annotations as svc

router = APIRouter(tags=["annotations"])

_MAX_PARTS = svc.MAX_POLYGON_PARTS
_MAX_COORDS = svc.MAX_POLYGON_COORDS


class AnnotationIn(BaseModel):
    """A new annotation: ``label`` plus a ``bbox`` (``[x1, y1, x2, y2]``, pixels) and/or a
    ``polygon`` (parts of flat ``[x0, y0, x1, y1, ...]``); none for a classify project."""

    model_config = ConfigDict(extra="forbid")

    label: str = Field(min_length=1, max_length=500)
    bbox: list[float] | None = Field(default=None, min_length=4, max_length=4)
    polygon: list[list[float]] | None = Field(default=None, min_length=1, max_length=_MAX_PARTS)
    score: float | None = None
    attributes: dict[str, Any] | None = None


class AnnotationPatch(BaseModel):
    """Fields to change; a field left out stays, ``null`` clears it."""

    model_config = ConfigDict(extra="forbid")

    label: str | None = Field(default=None, min_length=1, max_length=500)
    bbox: list[float] | None = Field(default=None, min_length=4, max_length=4)
    polygon: list[list[float]] | None = Field(default=None, min_length=1, max_length=_MAX_PARTS)
    score: float | None = None
    attributes: dict[str, Any] | None = None


def _check_parts(polygon: list[list[float]] | None) -> None:
    from winnow.errors import InvalidInputError

    if polygon is not None and any(len(p) > _MAX_COORDS for p in polygon):
        raise InvalidInputError(f"polygon: a part has more than {_MAX_COORDS} numbers")


@router.post("/projects/{project}/images/{name:path}/annotations", status_code=201)
def create_annotation(project: str, name: str, body: AnnotationIn, ctx: Context = Label) -> dict:
    """Add a human annotation to the image; returns it with its id and the change id."""
    _check_parts(body.polygon)
    return svc.create_annotation(
        ctx.store, project, name, label=body.label, bbox=body.bbox, polygon=body.polygon, score=body.score,
        attributes=body.attributes, workspace=ctx.workspace, user=ctx.user,
    )


@router.patch("/projects/{project}/annotations/{annotation_id}")
def update_annotation(project: str, annotation_id: int, body: AnnotationPatch, ctx: Context = Label) -> dict:
    """Change an annotation's label, box, polygon, score or attributes."""
    from winnow.errors import InvalidInputError

    _check_parts(body.polygon)
    given = {k: getattr(body, k) for k in body.model_fields_set}
    if not given:
        raise InvalidInputError("nothing to change: send at least one of label, bbox, polygon, score, attributes")
    if "label" in given and given["label"] is None:
        raise InvalidInputError("label cannot be null")
    return svc.update_annotation(ctx.store, project, annotation_id, workspace=ctx.workspace, user=ctx.user, **given)


@router.delete("/projects/{project}/annotations/{annotation_id}")
def delete_annotation(project: str, annotation_id: int, ctx: Context = Label) -> dict:
    """Delete an annotation (undoable: ``winnow undo`` puts it back with the same id)."""
    return svc.delete_annotation(ctx.store, project, annotation_id, workspace=ctx.workspace, user=ctx.user)


@router.get("/projects/{project}/changes")
def list_changes(
    project: str,
    ctx: Context = Read,
    kind: str | None = Query(default=None, max_length=40),
    limit: int = Query(default=100, ge=1, le=1000),
    offset: int = Query(default=0, ge=0),
) -> dict:
    """The project's recorded changes, newest first: kind, description, who (``created_by``),
    when (``created_at``) and whether it was undone."""
    rows = svc.list_annotation_changes(ctx.store, project, workspace=ctx.workspace, kind=kind, limit=limit + 1, offset=offset)
    return {"changes": rows[:limit], "offset": offset, "limit": limit, "more": len(rows) > limit}
