"""Active learning over HTTP: pick the most useful unlabeled (or captured) images and put them in
the labeling queue as one batch (``winnow select``)."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from winnow.api.deps import Context, Label
from winnow.api.encode import json_safe
from winnow.select import all_strategies
from winnow.services.selection import select_images

router = APIRouter(tags=["selection"])


class SelectIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    budget: int = Field(ge=1, le=100_000)
    strategy: str = Field(default="hybrid", max_length=40)
    model: str | None = Field(default=None, min_length=1, max_length=200, description="default: the project's newest ready model")
    seed: int = Field(default=0, ge=0, lt=2**31)
    near_duplicate: float | None = Field(default=None, gt=0, le=1)
    batch_name: str | None = Field(default=None, max_length=100)
    assignee: str | None = Field(default=None, max_length=200)
    create_batch: bool = True


@router.get("/strategies")
def strategies(ctx: Context = Label) -> list[dict]:
    """The selection strategies and whether each needs a model."""
    return [{"id": s.id, "description": s.description, "needs_model": s.needs_model} for s in all_strategies().values()]


@router.post("/projects/{project}/select", status_code=201)
def select(project: str, body: SelectIn, ctx: Context = Label) -> dict:
    """Pick ``budget`` images with ``strategy``; the picks become a queue batch (``batch``)."""
    report = select_images(
        ctx.store, project, budget=body.budget, strategy=body.strategy, model=body.model, seed=body.seed,
        near_duplicate=body.near_duplicate, workspace=ctx.workspace, batch_name=body.batch_name,
        assignee=body.assignee, create_batch=body.create_batch, user=ctx.user,
    )
    return json_safe(report.as_dict())
