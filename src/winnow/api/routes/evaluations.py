"""Evaluate a registered model on a version's split, and compare two models.

Both answer when done (``200``: metrics, per-class numbers, errors, ``slices`` and, at the top,
``worst_slices``), or, with ``"background": true``, at once with a job (``202``; ``GET
/jobs/{id}``; at most ``WINNOW_MAX_EVALUATION_JOBS``, default 2, run at a time). Use the job for
large test splits: the request holds a worker thread while the model predicts.

The model is looked up in the caller's workspace (by name or id prefix) and may come from another
project of it, as with ``winnow eval MODEL PROJECT@VERSION``: what counts is that its classes
are the version's.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Response
from pydantic import BaseModel, ConfigDict, Field

from winnow.api.deps import Context, Read
from winnow.api.encode import json_safe
from winnow.evaluate.coco import DEFAULT_SCORE_THRESHOLD
from winnow.evaluate.errors import DEFAULT_LIMIT
from winnow.evaluate.slices import DEFAULT_BOOTSTRAP
from winnow.services import evaluation as svc
from winnow.services.versions import show_version

router = APIRouter(tags=["evaluations"])



class EvaluationIn(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    model: str = Field(min_length=1, max_length=100, description="model name or id prefix")
    version: str = Field(default="latest", min_length=1, max_length=100)
    split: Literal["train", "valid", "test"] = "test"
    score_threshold: float = Field(default=DEFAULT_SCORE_THRESHOLD, ge=0, le=1)
    n_bootstrap: int = Field(default=DEFAULT_BOOTSTRAP, ge=0, le=2000)
    max_errors: int = Field(default=DEFAULT_LIMIT, ge=0, le=1000)
    background: bool = False


class CompareIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    a: str = Field(min_length=1, max_length=100, description="the baseline model")
    b: str = Field(min_length=1, max_length=100, description="the candidate model")
    version: str = Field(default="latest", min_length=1, max_length=100)
    split: Literal["train", "valid", "test"] = "test"
    background: bool = False


def _evaluation(ctx: Context, project: str, body: EvaluationIn, progress: Any = None) -> dict[str, Any]:
    result = svc.evaluate_model(
        ctx.store, body.model, project, body.version, split=body.split, workspace=ctx.workspace,
        score_threshold=body.score_threshold, n_bootstrap=body.n_bootstrap, max_errors=body.max_errors, progress=progress,
    )
    doc = json_safe(result.as_dict())
    doc["worst_slices"] = (doc.get("slices") or {}).get("worst_slices", [])
    return doc


def _comparison(ctx: Context, project: str, body: CompareIn) -> dict[str, Any]:
    return json_safe(svc.compare_models(ctx.store, body.a, body.b, project, body.version, split=body.split, workspace=ctx.workspace))


def _background(ctx: Context, project: str, response: Response, work, params: dict[str, Any]) -> dict[str, Any]:
    name = ctx.project(project)[1]
    show_version(ctx.store, name, params.get("version"), workspace=ctx.workspace)  # 404 now, not in the job
    job = ctx.state.jobs.submit("evaluate", work, workspace=ctx.workspace, user=ctx.user, project=name, params=params)
    response.status_code = 202
    response.headers["Location"] = f"/api/v1/jobs/{job.id}"
    return job.as_dict()


@router.post("/projects/{project}/evaluations")
def evaluate(project: str, body: EvaluationIn, response: Response, ctx: Context = Read) -> dict:
    """Run a model on one split of a version and evaluate it, overall and by slice."""
    if body.background:
        return _background(ctx, project, response, lambda job: _evaluation(ctx, project, body, job.report), body.model_dump())
    return _evaluation(ctx, project, body)


@router.post("/projects/{project}/compare")
def compare(project: str, body: CompareIn, response: Response, ctx: Context = Read) -> dict:
    """Both models on the same split, and which slices got better or worse (``b - a``)."""
    if body.background:
        return _background(ctx, project, response, lambda job: _comparison(ctx, project, body), body.model_dump())
    return _comparison(ctx, project, body)
