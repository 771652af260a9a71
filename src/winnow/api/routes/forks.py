"""Customer projects (forks of a base project), the read-only view of their base, the base team's
view of its customers, and the class schema.

Who sees what (see ``docs/api.md``, "Customer projects"):

- The **base team** (keys of the base project's workspace) forks its project into a customer
  workspace (``POST /projects/{base}/forks``), lists its customers and reads one customer's
  summary (``/projects/{base}/forks/{workspace}/{customer}``). It can fork into a new workspace,
  its own, or one that already holds a fork of one of its projects; any other existing workspace
  is someone else's (409), so no workspace's admin can put a project into another tenant's.
- A **customer key** only ever names its own workspace's projects, as everywhere in the API: the
  base project itself is 404 to it. It reads the base *through its fork*:
  ``/projects/{customer}/base``, ``.../base/images``, ``.../base/images/{name}/file`` and
  ``.../base/models``, which answer what the fork inherits (the base version it is on, without
  the base's test split) and nothing else. No route writes to the base from a customer key.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends
from fastapi.responses import FileResponse
from pydantic import BaseModel, ConfigDict, Field

from winnow.api.deps import Context, Label, Manage, Read
from winnow.api.encode import json_safe
from winnow.api.paging import Page
from winnow.api.routes.images import blob_response
from winnow.errors import ConflictError, NotFoundError
from winnow.services import forks as svc
from winnow.services import schema
from winnow.services.projects import show_project, validate_name
from winnow.services.training import list_models
from winnow.services.versions import show_version
from winnow.versions.materialize import annotation_to_dict

router = APIRouter(tags=["forks"])

_Name = Annotated[str, Field(min_length=1, max_length=100)]
_Ref = Annotated[str, Field(min_length=1, max_length=100)]
_ImageName = Annotated[str, Field(min_length=1, max_length=1000)]


# ----------------------------------------------------------------------------- bodies


class ForkIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: _Name = Field(description="the customer project's name")
    workspace: _Name = Field(description="the customer's workspace (made when it does not exist)")
    version: _Ref = Field(default="latest", description="the version of this project to inherit")


class RebaseIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: _Ref = Field(default="latest", description="the base version to move onto")
    theirs: bool = Field(default=False, description="on a conflict take the base's labels (default: keep the customer's)")
    dry_run: bool = False


class AdoptIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    images: list[_ImageName] = Field(min_length=1, max_length=10_000, description="inherited images, with or without base/")


class _ClassOp(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AddClass(_ClassOp):
    op: Literal["add"]
    name: _Name


class RenameClass(_ClassOp):
    op: Literal["rename"]
    old: _Name
    new: _Name


class MergeClasses(_ClassOp):
    op: Literal["merge"]
    sources: list[_Name] = Field(min_length=1, max_length=1000)
    into: _Name


class SplitClass(_ClassOp):
    op: Literal["split"]
    source: _Name
    into: list[_Name] = Field(min_length=2, max_length=1000)
    by: _Name | None = Field(default=None, description="the annotation attribute that names each one's class")
    assign: dict[int, _Name] | None = Field(default=None, max_length=100_000, description="annotation id -> class")
    default: _Name | None = Field(default=None, description="default: the first of into")


class DropClass(_ClassOp):
    op: Literal["drop"]
    base_class: _Name


ClassOp = Annotated[AddClass | RenameClass | MergeClasses | SplitClass | DropClass, Field(discriminator="op")]


# ----------------------------------------------------------------------------- the base team


def _check_target(ctx: Context, workspace: str) -> None:
    if not svc.may_fork_into(ctx.store, workspace, ctx.principal.workspace_id):
        raise ConflictError(
            f"workspace {workspace!r} is taken and holds no fork of this workspace's projects; "
            "fork into a new workspace (or one of your customers')"
        )


@router.post("/projects/{project}/forks", status_code=201)
def fork_project(project: str, body: ForkIn, ctx: Context = Manage) -> dict:
    """Create the customer project ``name`` in ``workspace``, inheriting ``project@version`` by
    reference (nothing is copied) → 201 with the fork's info."""
    base = ctx.project(project)[1]  # 404 before anything else
    workspace = validate_name(body.workspace, "workspace")
    _check_target(ctx, workspace)
    info = svc.fork_project(
        ctx.store, base, body.version, body.name, workspace=workspace, base_workspace=ctx.workspace, user=ctx.user
    )
    return info.as_dict()


@router.get("/projects/{project}/forks")
def list_forks(project: str, ctx: Context = Read, page: Page = Depends()) -> dict:
    """The customers: every fork of the project, in any workspace, by workspace and name."""
    return page.of("forks", [f.as_dict() for f in svc.list_forks(ctx.store, project, workspace=ctx.workspace)])


@router.get("/projects/{project}/forks/{workspace}/{customer}")
def show_customer(project: str, workspace: str, customer: str, ctx: Context = Read) -> dict:
    """One customer project (its summary and fork info), when it is a fork of ``project``; 404
    for anything else, with the same answer whether or not it exists."""
    base_id, base = ctx.project(project)
    missing = NotFoundError(f"project {base!r} has no fork {customer!r} in workspace {workspace!r}")
    name = svc.customer_of(ctx.store, base_id, workspace, customer)
    if name is None:
        raise missing
    return {
        "project": show_project(ctx.store, name, workspace).as_dict(),
        "fork": svc.show_fork(ctx.store, name, workspace=workspace).as_dict(),
    }


# ----------------------------------------------------------------------------- the customer


@router.get("/projects/{project}/fork")
def show_fork(project: str, ctx: Context = Read) -> dict:
    """The fork's base (project, workspace, version), how far behind it is, its class map."""
    return svc.show_fork(ctx.store, project, workspace=ctx.workspace).as_dict()


@router.post("/projects/{project}/rebase")
def rebase(project: str, body: RebaseIn, ctx: Context = Manage) -> dict:
    """Move the fork onto a newer base version → what the base changed, and the conflicts."""
    report = svc.rebase(
        ctx.store, project, body.version, workspace=ctx.workspace, theirs=body.theirs, dry_run=body.dry_run, user=ctx.user
    )
    return json_safe(report.as_dict())


@router.post("/projects/{project}/adopt")
def adopt(project: str, body: AdoptIn, ctx: Context = Label) -> dict:
    """Copy inherited images into the project (rows only) so their labels can be corrected."""
    return svc.adopt_images(ctx.store, project, body.images, workspace=ctx.workspace, user=ctx.user)


# ----------------------------------------------------------------------------- the base, read-only


def _inherited(ctx: Context, project: str) -> svc.Inherited:
    inherited = svc.inherited_records(ctx.store, project, workspace=ctx.workspace)
    if inherited is None:
        raise NotFoundError(f"project {project!r} is not a fork of a base project")
    return inherited


@router.get("/projects/{project}/base")
def show_base(project: str, ctx: Context = Read) -> dict:
    """The base project at the version the fork is on: its name, workspace, version, classes
    and counts (the customer's names for the classes in ``class_map``)."""
    info = svc.show_fork(ctx.store, project, workspace=ctx.workspace)
    version = show_version(ctx.store, info.base_project, info.base_version, workspace=info.base_workspace)
    return {
        "project": info.base_project,
        "workspace": info.base_workspace,
        "task": version.task,
        "version": version.version,
        "version_number": version.number,
        "version_name": version.name,
        "latest_version_number": info.latest_base_version_number,
        "behind": info.behind,
        "classes": version.classes,
        "counts": version.counts,
        "class_map": info.class_map,
        "customer_classes": schema.mapped_classes(info.class_map, version.classes),
    }


@router.get("/projects/{project}/base/images")
def list_base_images(project: str, ctx: Context = Read, page: Page = Depends()) -> dict:
    """The images the fork inherits (the base version's, but its test split), as the customer's
    versions see them: named ``base/<name>``, labels under the customer's class names."""
    records = sorted(_inherited(ctx, project).records, key=lambda r: r.name)
    part = records[page.offset : page.offset + page.limit]
    project_id = ctx.project(project)[0]
    adopted = svc.adopted_names(ctx.store, project_id, [r.name for r in part])
    images = []
    for rec in part:
        labels: dict[str, int] = {}
        for a in rec.annotations:
            labels[a.label] = labels.get(a.label, 0) + 1
        images.append({
            "name": rec.name, "sha256": rec.sha256, "width": rec.width, "height": rec.height, "split": rec.split,
            "labels": dict(sorted(labels.items())), "annotations": [annotation_to_dict(a) for a in rec.annotations],
            "tags": rec.tags, "metadata": rec.metadata, "adopted": rec.name in adopted,
        })
    return json_safe(page.of("images", records) | {"images": images, "total": len(records)})


@router.get("/projects/{project}/base/images/{name:path}/file")
def base_image_file(project: str, name: str, ctx: Context = Read) -> FileResponse:
    """An inherited image's bytes (``base/<name>`` or ``<name>``), served as ``/images/{name}/file`` is."""
    wanted = name if name.startswith(svc.INHERITED_PREFIX) else svc.inherited_name(name)
    rec = next((r for r in _inherited(ctx, project).records if r.name == wanted), None)
    if rec is None:
        raise NotFoundError(f"project {project!r} inherits no image {name!r}")
    return blob_response(ctx, rec.sha256)


@router.get("/projects/{project}/base/models")
def list_base_models(project: str, ctx: Context = Read, page: Page = Depends()) -> dict:
    """The base project's ready models (what ``init_from`` and evaluations may name), oldest first."""
    info = svc.show_fork(ctx.store, project, workspace=ctx.workspace)
    models = [
        {
            "name": s.name, "model": s.model, "ref": s.ref, "backend": s.backend, "task": s.task, "version": s.version,
            "classes": s.classes, "metrics": s.metrics, "created_at": s.created_at,
        }
        for s in list_models(ctx.store, info.base_project, workspace=info.base_workspace)
        if s.status == "ready"
    ]
    return json_safe(page.of("models", models) | {"base_project": info.base_project, "class_map": info.class_map})


# ----------------------------------------------------------------------------- the class schema


@router.get("/projects/{project}/classes")
def show_schema(project: str, ctx: Context = Read) -> dict:
    """The classes (a fork's mapped base classes first), the fork's class map, the migrations."""
    return schema.show_schema(ctx.store, project, workspace=ctx.workspace).as_dict()


@router.post("/projects/{project}/classes", status_code=201)
def change_schema(project: str, body: Annotated[ClassOp, Body()], ctx: Context = Manage) -> dict:
    """One recorded migration: ``add``, ``rename``, ``merge``, ``split`` or (a fork) ``drop`` an
    inherited class → 201 with the migration."""
    kw: dict[str, Any] = {"workspace": ctx.workspace, "user": ctx.user}
    if isinstance(body, AddClass):
        done = schema.add_class(ctx.store, project, body.name, **kw)
    elif isinstance(body, RenameClass):
        done = schema.rename_class(ctx.store, project, body.old, body.new, **kw)
    elif isinstance(body, MergeClasses):
        done = schema.merge_classes(ctx.store, project, body.sources, body.into, **kw)
    elif isinstance(body, SplitClass):
        done = schema.split_class(ctx.store, project, body.source, body.into, by=body.by, assign=body.assign, default=body.default, **kw)
    else:
        done = schema.drop_inherited_class(ctx.store, project, body.base_class, **kw)
    return done.as_dict()
