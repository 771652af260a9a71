"""Merge requests: a customer's reviewed labels proposed back to its base project, and the base
team's decision (see :mod:`winnow.services.merge_requests` and ``docs/merge_requests.md``).

- The **customer** (a key of the fork's workspace, ``label``) proposes from its own project:
  ``POST /projects/{customer}/merge-requests``. A key of any other workspace gets 404 there.
- The **base team** (a key of the base project's workspace) reads the requests proposed to its
  project (``read``) and accepts or rejects them (``manage``). To a customer key the base project
  is 404, like any project of another workspace, so a customer can never decide its own request.

Deciding a request that is no longer open is 409; an accept whose items all conflict is 409 too
(the request stays open: accept with ``force`` or reject it).
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field

from winnow.api.deps import Context, Label, Manage, Read
from winnow.api.paging import Page
from winnow.services import merge_requests as svc

router = APIRouter(tags=["merge requests"])

_ImageName = Annotated[str, Field(min_length=1, max_length=4096)]


class ProposeIn(BaseModel):
    """``images``: the customer's own labelled images (an adopted one by ``base/<name>``); left
    out, every image approved in review and not yet proposed."""

    model_config = ConfigDict(extra="forbid")

    images: list[_ImageName] | None = Field(default=None, min_length=1, max_length=10_000)
    title: str | None = Field(default=None, min_length=1, max_length=svc.MAX_TITLE_LENGTH)


class AcceptIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    force: bool = Field(default=False, description="apply conflicting items too (the customer's labels win)")


class RejectIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str | None = Field(default=None, max_length=svc.MAX_REASON_LENGTH)


@router.post("/projects/{project}/merge-requests", status_code=201)
async def propose(project: str, body: ProposeIn | None = None, ctx: Context = Label) -> dict:
    """Propose the customer project's reviewed labels to its base (an open merge request, with items)."""
    body = body or ProposeIn()
    info = await run_in_threadpool(
        lambda: svc.propose(ctx.store, project, workspace=ctx.workspace, images=body.images, title=body.title, user=ctx.user)
    )
    return info.as_dict()


@router.get("/projects/{project}/merge-requests")
def list_requests(
    project: str,
    ctx: Context = Read,
    page: Page = Depends(),
    state: Literal["open", "accepted", "rejected"] | None = Query(default=None),
    proposed: bool = Query(default=False, description="the requests this (customer) project proposed, with the base's decisions"),
) -> dict:
    """The merge requests proposed to the (base) project, oldest first, without their items; with
    ``proposed=true``, the ones this (customer) project proposed to its base."""
    listing = svc.list_proposals if proposed else svc.list_requests
    rows = listing(ctx.store, project, workspace=ctx.workspace, state=state)
    return page.of("merge_requests", [r.as_dict() for r in rows])


@router.get("/projects/{project}/merge-requests/{request_id}")
def show_request(project: str, request_id: int, ctx: Context = Read) -> dict:
    """One merge request with its items (labels in the base's class names, ``bbox`` pixels ``xyxy``)."""
    return svc.show_request(ctx.store, project, request_id, workspace=ctx.workspace).as_dict()


@router.post("/projects/{project}/merge-requests/{request_id}/accept")
async def accept(project: str, request_id: int, body: AcceptIn | None = None, ctx: Context = Manage) -> dict:
    """Apply the request to the base project as one recorded change (``POST .../undo`` reverts it)."""
    force = body.force if body else False
    info = await run_in_threadpool(
        lambda: svc.accept(ctx.store, project, request_id, workspace=ctx.workspace, user=ctx.user, force=force)
    )
    return info.as_dict()


@router.post("/projects/{project}/merge-requests/{request_id}/reject")
def reject(project: str, request_id: int, body: RejectIn | None = None, ctx: Context = Manage) -> dict:
    """Close the request without touching the base project."""
    return svc.reject(
        ctx.store, project, request_id, workspace=ctx.workspace, user=ctx.user, reason=body.reason if body else None
    ).as_dict()
