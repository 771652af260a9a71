"""The model registry of a project, and training as a background job.

``POST /projects/{project}/models`` checks the request (the version exists, the backend is
known, torch is installed), then answers ``202`` with a job (``GET /jobs/{id}`` follows it; its
``result`` is the registered model). At most ``WINNOW_MAX_TRAINING_JOBS`` (default 1) train at a
time; the others wait ``queued``. Training the same version with the same parameters again gives
the registered model (its id is the hash of version, backend and parameters). ``init_from``
fine-tunes from another registered model's weights, ``base_mix`` picks the share of a customer
version's inherited base images (see ``services.training.train_model``).

``{ref}`` is a model name or a prefix (4+ hex) of its id. Models are named per workspace, but a
model is only found under its own project: another project's model is 404, like a model of
another workspace.
"""

from __future__ import annotations

import importlib.util
from typing import Literal

from fastapi import APIRouter, Depends, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field

from winnow.api.deps import Context, Manage, Read
from winnow.api.encode import json_safe
from winnow.api.paging import Page
from winnow.errors import ConflictError, InvalidInputError, NotFoundError
from winnow.services import training as svc
from winnow.services.versions import show_version

router = APIRouter(tags=["models"])


class TrainIn(BaseModel):
    """What ``train_model`` takes; ``None`` means the backend's default."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    version: str = Field(default="latest", min_length=1, max_length=100, description="the version to train on")
    model: str | None = Field(default=None, min_length=1, max_length=100, description="backend, e.g. ssdlite; default per task")
    epochs: int = Field(default=svc.DEFAULT_EPOCHS, ge=1, le=1000)
    image_size: int | None = Field(default=None, ge=32, le=4096)
    batch_size: int | None = Field(default=None, ge=1, le=1024)
    lr: float | None = Field(default=None, gt=0, le=10)
    optimizer: str | None = Field(default=None, min_length=1, max_length=20)
    weight_decay: float = Field(default=1e-4, ge=0, le=1)
    seed: int = Field(default=0, ge=0, lt=2**31)
    pretrained: Literal["auto", "yes", "no"] = "auto"
    width: float | None = Field(default=None, gt=0, le=4, description="channel multiplier; default 1, or the init_from model's")
    name: str | None = Field(default=None, min_length=1, max_length=100)
    eval_every: int = Field(default=0, ge=0, le=1000)
    init_from: str | None = Field(
        default=None, min_length=1, max_length=100, description="fine-tune: start from this registered model (name or id prefix)"
    )
    base_mix: float | None = Field(
        default=None, ge=0, le=1, description="fraction of the version's inherited base train images to train on (default: all)"
    )


@router.get("/projects/{project}/models")
def list_models(project: str, ctx: Context = Read, page: Page = Depends()) -> dict:
    """The project's registered models, oldest first (``status``: training, ready or failed)."""
    return page.of("models", [json_safe(m.as_dict()) for m in svc.list_models(ctx.store, project, workspace=ctx.workspace)])


@router.get("/projects/{project}/models/{ref}")
def show_model(project: str, ref: str, ctx: Context = Read) -> dict:
    """One model: version, recipe, backend, parameters, code version, metrics, files."""
    name = ctx.project(project)[1]
    try:
        summary = svc.show_model(ctx.store, ref, workspace=ctx.workspace)
    except NotFoundError:
        summary = None
    if summary is None or summary.project != name:
        raise NotFoundError(f"project {name!r} has no model {ref!r}")
    return json_safe(summary.as_dict())


def _check_training(ctx: Context, project: str, body: TrainIn) -> str:
    """Refuse now what training would refuse later (the job would only fail): 404/422 here."""
    if importlib.util.find_spec("torch") is None:
        raise InvalidInputError("this server cannot train: install winnow with the `train` extra (torch)")
    version = show_version(ctx.store, project, body.version, workspace=ctx.workspace)
    if body.init_from is not None:
        from winnow.core.types import Task

        init = svc.resolve_init_model(ctx.store, body.init_from, task=Task(version.task), version=version.ref, workspace=ctx.workspace)
        if body.model is not None and body.model != init.backend:
            raise InvalidInputError(f"model {init.name!r} is a {init.backend!r} model; a fine-tune from it trains {init.backend!r} too")
    if body.model is not None:
        from winnow.train.base import get_backend

        try:
            backend = get_backend(body.model)
        except NotFoundError as exc:
            raise InvalidInputError(str(exc)) from None
        if backend.task.value != version.task:
            raise InvalidInputError(f"model {backend.name!r} is a {backend.task.value} model; version {version.ref} is {version.task}")
    return version.version


@router.post("/projects/{project}/models", status_code=202)
async def train(project: str, body: TrainIn, response: Response, ctx: Context = Manage) -> dict:
    """Train a model on a version, as a background job: ``202`` with the job."""
    version_id = await run_in_threadpool(_check_training, ctx, project, body)
    name = (await run_in_threadpool(ctx.project, project))[1]
    params = body.model_dump() | {"version": version_id}
    runner = ctx.state.jobs
    for job in runner.list(ctx.workspace, project=name, kind="train"):
        if not job.finished and job.params == params:
            raise ConflictError(f"the same training is already {job.status} as job {job.id}")

    def work(job):
        summary = svc.train_model(
            ctx.store, name, version_id, workspace=ctx.workspace, model=body.model, epochs=body.epochs,
            image_size=body.image_size, batch_size=body.batch_size, lr=body.lr, optimizer=body.optimizer,
            weight_decay=body.weight_decay, seed=body.seed, pretrained=body.pretrained, width=body.width, name=body.name,
            eval_every=body.eval_every, progress=job.report, log=lambda entry: job.append_log(json_safe(entry)), user=ctx.user,
            init_from=body.init_from, base_mix=body.base_mix,
        )
        return json_safe(summary.as_dict())

    job = runner.submit("train", work, workspace=ctx.workspace, user=ctx.user, project=name, params=params)
    response.headers["Location"] = f"/api/v1/jobs/{job.id}"
    return job.as_dict()
