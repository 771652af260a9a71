"""Dataset versions: list, create (splits + preprocessing + augmentation recipe), show, diff.

A version is immutable and content-addressed: creating one with nothing changed answers ``200``
with the existing version (``"created": false``) instead of ``201``. ``{ref}`` is what
``winnow version`` takes after the ``@``: ``latest``, ``v3`` / ``3``, a version name, or a prefix
(4+ hex) of the version id.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field

from winnow.api.deps import Context, Manage, Read
from winnow.api.paging import Page
from winnow.services import versions as svc

router = APIRouter(tags=["versions"])

_Key = Annotated[str, Field(min_length=1, max_length=100)]


class VersionIn(BaseModel):
    """What ``create_version`` takes (see ``docs/versions.md`` for the recipe's text forms)."""

    model_config = ConfigDict(extra="forbid")

    split: str | dict[str, float] | None = Field(
        default=None,
        description="ratios of the images new to this version: 'train=0.7,valid=0.2,test=0.1', '70/20/10' or "
        "{'train': 0.7, 'valid': 0.3}; default 70/20/10",
    )
    resplit: bool = Field(default=False, description="split every image again instead of keeping earlier splits")
    seed: int = Field(default=0, ge=0, lt=2**63)
    group_by: list[_Key] = Field(default=[], max_length=10, description="metadata keys whose values stay in one split")
    preprocess: str | None = Field(default=None, max_length=2000, description="e.g. 'auto-orient,resize=640x640'")
    augment: str | None = Field(default=None, max_length=2000, description="e.g. 'flip=h,brightness=0.2,outputs=3'")
    name: str | None = Field(default=None, min_length=1, max_length=100)
    near_duplicates: bool = Field(default=True, description="keep near duplicates (not only exact ones) in one split")

    def split_text(self) -> str | None:
        if isinstance(self.split, dict):
            return ",".join(f"{k}={v!r}" for k, v in self.split.items())
        return self.split


@router.get("/projects/{project}/versions")
def list_versions(project: str, ctx: Context = Read, page: Page = Depends()) -> dict:
    """The project's versions, oldest (v1) first."""
    return page.of("versions", [v.as_dict() for v in svc.list_versions(ctx.store, project, workspace=ctx.workspace)])


@router.post("/projects/{project}/versions", status_code=201)
async def create_version(project: str, body: VersionIn, response: Response, ctx: Context = Manage) -> dict:
    """Snapshot the project as a new version (``201``), or the identical existing one (``200``)."""
    summary = await run_in_threadpool(
        lambda: svc.create_version(
            ctx.store, project, workspace=ctx.workspace, split=body.split_text(), resplit=body.resplit, seed=body.seed,
            group_by=body.group_by, preprocess=body.preprocess, augment=body.augment,
            name=body.name, near_duplicates=body.near_duplicates, user=ctx.user,
        )
    )
    if not summary.created:
        response.status_code = 200
    return summary.as_dict()


@router.get("/projects/{project}/versions/{a}/diff/{b}")
def diff_versions(project: str, a: str, b: str, ctx: Context = Read) -> dict:
    """What changed from version ``a`` to version ``b``: images, annotations, classes, splits."""
    return svc.diff_versions(ctx.store, (project, a), (project, b), workspace=ctx.workspace).as_dict()


@router.get("/projects/{project}/versions/{ref}")
def show_version(project: str, ref: str, ctx: Context = Read) -> dict:
    """One version: its recipe, counts by split and class, lineage."""
    return svc.show_version(ctx.store, project, ref, workspace=ctx.workspace).as_dict()
