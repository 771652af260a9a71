"""Background jobs (training, evaluations run with ``"background": true``) of the caller's
workspace: list, follow, cancel. See :mod:`winnow.api.jobs` for what the runner promises."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends

from winnow.api.deps import Context, Manage, Read
from winnow.api.paging import Page

router = APIRouter(tags=["jobs"])


@router.get("/jobs")
def list_jobs(
    ctx: Context = Read,
    page: Page = Depends(),
    project: str | None = None,
    kind: Literal["train", "evaluate"] | None = None,
    status: Literal["queued", "running", "succeeded", "failed", "cancelled"] | None = None,
) -> dict:
    """The workspace's jobs, newest first (without their results: follow one for that)."""
    jobs = [j.as_dict() | {"result": None, "log": []} for j in ctx.state.jobs.list(ctx.workspace, project=project, kind=kind, status=status)]
    return page.of("jobs", jobs)


@router.get("/jobs/{job_id}")
def show_job(job_id: str, ctx: Context = Read) -> dict:
    """A job: ``status``, ``progress`` (``done``/``total``), the per-epoch ``log`` of training,
    and once finished its ``result`` or its ``error`` (``{"error", "type", "status"}``)."""
    return ctx.state.jobs.get(job_id, ctx.workspace).as_dict()


@router.post("/jobs/{job_id}/cancel")
def cancel_job(job_id: str, ctx: Context = Manage) -> dict:
    """Cancel a job: a queued one never starts, a running one stops at its next progress report."""
    return ctx.state.jobs.cancel(job_id, ctx.workspace).as_dict()
