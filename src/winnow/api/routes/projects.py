"""The caller's workspace and its projects."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, Field

from winnow.api.deps import Context, Delete, Manage, Read
from winnow.services import projects as svc

router = APIRouter(tags=["projects"])


class ProjectIn(BaseModel):
    name: str = Field(max_length=100)
    task: str = "detect"


@router.get("/workspace")
def workspace(ctx: Context = Read) -> dict:
    """The workspace the key belongs to, and the key's role."""
    return {"workspace": ctx.workspace, "role": ctx.principal.role, "key": ctx.principal.name}


@router.get("/projects")
def list_projects(ctx: Context = Read) -> list[dict]:
    return [p.as_dict() for p in svc.list_projects(ctx.store, ctx.workspace)]


@router.post("/projects", status_code=201)
def create_project(body: ProjectIn, ctx: Context = Manage) -> dict:
    return svc.create_project(ctx.store, body.name, body.task, ctx.workspace).as_dict()


@router.get("/projects/{project}")
def show_project(project: str, ctx: Context = Read) -> dict:
    return svc.show_project(ctx.store, project, ctx.workspace).as_dict()


@router.delete("/projects/{project}", status_code=204)
def delete_project(project: str, ctx: Context = Delete) -> None:
    svc.delete_project(ctx.store, project, ctx.workspace)
