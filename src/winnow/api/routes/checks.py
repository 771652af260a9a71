"""Data health checks, the safe fixes, and undo.

``POST /projects/{project}/checks`` runs the checks and answers the ``winnow check --json``
document (``{"summary", "findings"}``). It needs only ``read``: it changes no data (it writes the
content-addressed cache of pixel facts and embeddings, which anyone who may read the images could
compute), so a viewer may run it. It uses the built-in ``classical`` embedder only: the CLI's
``--embedder onnx:/path`` names a file on the server and is not offered here. Checks run while
the request waits (seconds for thousands of images once the facts are cached; the first run
decodes every image once).

Fixes and undo change the project: they need ``manage``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from winnow.api.deps import Context, Manage, Read
from winnow.api.encode import json_safe
from winnow.errors import InvalidInputError
from winnow.quality.base import all_checks
from winnow.quality.engine import run_checks
from winnow.services import fixes

router = APIRouter(tags=["checks"])

_CheckId = Annotated[str, Field(min_length=1, max_length=100)]
_Value = str | int | float | bool | None | list[str | int | float | bool]


class CheckIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    only: list[_CheckId] | None = Field(default=None, max_length=100, description="check ids to run (default: all)")
    skip: list[_CheckId] = Field(default=[], max_length=100, description="check ids not to run")
    params: dict[str, dict[str, _Value]] = Field(
        default={}, description="per check: parameter values, e.g. {'near_duplicate': {'max_distance': 8}}"
    )


class FixIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    checks: list[_CheckId] | None = Field(default=None, max_length=100, description="default: the checks with safe fixes")
    dry_run: bool = False


class UndoIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    change: int | None = Field(default=None, ge=1, description="the change to revert; default the latest not undone")


@router.get("/checks")
def list_checks(ctx: Context = Read) -> list[dict[str, Any]]:
    """Every check: id, family, severity, description, parameters with their defaults."""
    return [
        json_safe({"id": c.id, "family": c.family, "severity": c.severity, "description": c.description, "params": dict(c.params)})
        for c in all_checks().values()
    ]


@router.post("/projects/{project}/checks")
def check(project: str, body: CheckIn, ctx: Context = Read) -> dict:
    """Run the checks (``only`` / ``skip`` / ``params``); findings worst first."""
    if sum(len(p) for p in body.params.values()) > 200:
        raise InvalidInputError("at most 200 check parameters")
    report = run_checks(ctx.store, project, workspace=ctx.workspace, only=body.only, skip=body.skip, params=body.params)
    return json_safe(report.as_dict())


@router.post("/projects/{project}/fixes")
def fix(project: str, body: FixIn, ctx: Context = Manage) -> dict:
    """Apply the safe suggestions (merge exact duplicates, clip and drop bad boxes) as one change."""
    return fixes.apply_fixes(ctx.store, project, workspace=ctx.workspace, checks=body.checks, dry_run=body.dry_run, user=ctx.user).as_dict()


@router.post("/projects/{project}/undo")
def undo(project: str, body: UndoIn | None = None, ctx: Context = Manage) -> dict:
    """Revert a recorded change (a fix, stored predictions, ...) row for row."""
    return fixes.undo(ctx.store, project, body.change if body else None, workspace=ctx.workspace)
