"""The labeling queue: batches (from ``winnow select``, from health findings, or made by hand),
claiming the next item, submitting an answer and reviewing it.

Roles: reading needs ``read``; creating batches, taking items, submitting and reviewing need
``label`` (labelers and admins); assigning a batch needs ``manage`` (admins). A reviewer must not
be the item's labeler (403). Submitting an item that is not ``to_label``, or reviewing one that
is not ``in_review``, is 409 (someone got there first). Labels reach the image only when a
reviewer approves (see :mod:`winnow.services.queue`).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from winnow.api.deps import Context, Label, Manage, Read
from winnow.services import queue as svc

router = APIRouter(tags=["queue"])

_MAX_ITEMS = 10_000
_MAX_ANNOTATIONS = svc.MAX_SUBMITTED_ANNOTATIONS


class ItemIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    image: str = Field(min_length=1, max_length=4096)
    score: float | None = None
    reason: dict[str, Any] | None = None
    prelabels: list[dict[str, Any]] = Field(default_factory=list, max_length=_MAX_ANNOTATIONS)


class BatchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    images: list[ItemIn] = Field(min_length=1, max_length=_MAX_ITEMS)
    name: str | None = Field(default=None, max_length=100)
    kind: Literal["label", "check"] = "label"
    assignee: str | None = Field(default=None, max_length=200)
    reviewer: str | None = Field(default=None, max_length=200)


class AssignIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    assignee: str | None = Field(default=None, max_length=200)
    items: list[int] | None = Field(default=None, max_length=_MAX_ITEMS)
    reviewer: str | None = Field(default=None, max_length=200)


class SubmitIn(BaseModel):
    """``accepted`` (the pre-labels), ``corrected`` (``annotations``: ``[{label, bbox}]``, pixels
    ``xyxy``; ``[]`` = no objects) or ``rejected`` (not worth labelling)."""

    model_config = ConfigDict(extra="forbid")

    decision: Literal["accepted", "corrected", "rejected"]
    annotations: list[dict[str, Any]] | None = Field(default=None, max_length=_MAX_ANNOTATIONS)


class ReviewIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    approve: bool
    comment: str | None = Field(default=None, max_length=2000)


class FindingsIn(BaseModel):
    """Run ``checks`` (default ``["label_error"]``) and queue their findings as a check batch."""

    model_config = ConfigDict(extra="forbid")

    checks: list[Annotated[str, Field(min_length=1, max_length=100)]] | None = Field(default=None, max_length=50)
    params: dict[str, dict[str, Any]] | None = None
    name: str | None = Field(default=None, max_length=100)
    assignee: str | None = Field(default=None, max_length=200)
    reviewer: str | None = Field(default=None, max_length=200)


@router.get("/projects/{project}/queue/batches")
def list_batches(
    project: str,
    ctx: Context = Read,
    state: str | None = Query(default=None, max_length=20),
    assignee: str | None = Query(default=None, max_length=200),
) -> dict:
    """The project's batches, with their derived state and item counts."""
    return {"batches": [b.as_dict() for b in svc.list_batches(ctx.store, project, state=state, assignee=assignee, workspace=ctx.workspace)]}


@router.post("/projects/{project}/queue/batches", status_code=201)
def create_batch(project: str, body: BatchIn, ctx: Context = Label) -> dict:
    """Put images of the project in a new batch (in the given order)."""
    items = [svc.QueueItemIn(i.image, i.score, i.reason, i.prelabels) for i in body.images]
    return svc.create_batch(
        ctx.store, project, items, name=body.name, kind=body.kind, strategy="manual",
        assignee=body.assignee, reviewer=body.reviewer, workspace=ctx.workspace, user=ctx.user,
    ).as_dict()


@router.get("/projects/{project}/queue/batches/{batch}")
def show_batch(project: str, batch: str, ctx: Context = Read) -> dict:
    """A batch (by name or id) with its items: image, state, pre-labels, reason, decision..."""
    return svc.show_batch(ctx.store, project, batch, workspace=ctx.workspace)


@router.post("/projects/{project}/queue/batches/{batch}/assign")
def assign(project: str, batch: str, body: AssignIn, ctx: Context = Manage) -> dict:
    """Assign the batch (or some of its items) to a labeler; ``assignee: null`` unassigns."""
    return svc.assign(
        ctx.store, project, batch, assignee=body.assignee, items=body.items, reviewer=body.reviewer, workspace=ctx.workspace, user=ctx.user
    ).as_dict()


@router.post("/projects/{project}/queue/batches/{batch}/next")
def next_item(project: str, batch: str, ctx: Context = Label) -> dict:
    """Claim the caller's next item to label in the batch; ``{"item": null}`` when none is left."""
    item = svc.next_item(ctx.store, project, batch, user=ctx.user, workspace=ctx.workspace)
    return {"item": None if item is None else item.as_dict()}


@router.get("/projects/{project}/queue/items/{item_id}")
def get_item(project: str, item_id: int, ctx: Context = Read) -> dict:
    return svc.get_item(ctx.store, project, item_id, workspace=ctx.workspace).as_dict()


@router.post("/projects/{project}/queue/items/{item_id}/submit")
def submit(project: str, item_id: int, body: SubmitIn, ctx: Context = Label) -> dict:
    """The labeler's answer; the item goes to review (409 if it is not ``to_label``)."""
    return svc.submit(
        ctx.store, project, item_id, decision=body.decision, annotations=body.annotations, user=ctx.user, workspace=ctx.workspace
    ).as_dict()


@router.post("/projects/{project}/queue/items/{item_id}/review")
def review(project: str, item_id: int, body: ReviewIn, ctx: Context = Label) -> dict:
    """Approve (labels written, item done) or send back; not by the item's labeler (403)."""
    return svc.review(
        ctx.store, project, item_id, approve=body.approve, user=ctx.user, comment=body.comment, workspace=ctx.workspace
    ).as_dict()


@router.post("/projects/{project}/queue/from-findings", status_code=201)
def from_findings(project: str, body: FindingsIn, ctx: Context = Label) -> dict:
    """Run health checks and queue their per-image findings as a ``check`` batch."""
    return svc.findings_to_queue(
        ctx.store, project, checks=body.checks, params=body.params, name=body.name, assignee=body.assignee,
        reviewer=body.reviewer, workspace=ctx.workspace, user=ctx.user,
    ).as_dict()
