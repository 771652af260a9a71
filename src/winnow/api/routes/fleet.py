"""The fleet of a base project: ``GET /projects/{project}/fleet``.

For the base team: ``project`` is a base project of the caller's workspace, and the answer lists
every customer forked from it (in any workspace) with its model and both models' scores on the
customer's test set (:func:`winnow.services.fleet.fleet`; fields in docs/fleet.md). A customer's
key does not see its base project under its own workspace, so it gets 404 like for any project
of another workspace. The first call evaluates (the request holds a worker thread while the
models predict); the evaluations are cached, so the next calls answer at once.
"""

from __future__ import annotations

from fastapi import APIRouter, Query

from winnow.api.deps import Context, Read
from winnow.api.encode import json_safe
from winnow.services import fleet as svc

router = APIRouter(tags=["fleet"])


@router.get("/projects/{project}/fleet")
def fleet(
    project: str,
    base_model: str | None = Query(default=None, min_length=1, max_length=100, description="the base model (default: deployed, else newest ready)"),
    ctx: Context = Read,
) -> dict:
    """Every customer forked from ``project``: its model, base vs customer model on its test set, its worst slice."""
    name = ctx.project(project)[1]
    return json_safe(svc.fleet(ctx.store, name, workspace=ctx.workspace, base_model=base_model))
