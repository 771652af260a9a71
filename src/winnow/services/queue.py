"""The labeling queue: batches of images to label (from ``winnow select``) or to check (from
health findings), with assignees, states and review.

Item states: ``to_label`` -> ``in_review`` -> ``done``; a reviewer can send an item back to
``to_label``. A batch's state is derived from its items: ``to_label`` while any item is,
``in_review`` while any is in review, else ``done``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import func, select

from winnow.config import DEFAULT_WORKSPACE
from winnow.errors import ConflictError, InvalidInputError, NotFoundError
from winnow.services.projects import get_project, validate_name
from winnow.store import models as m
from winnow.store.db import Store

ITEM_STATES = ("to_label", "in_review", "done")
BATCH_KINDS = ("label", "check")


@dataclass
class QueueItemIn:
    """One image to put in a batch: its name, why (``score`` and ``reason``), and pre-labels
    (annotation dicts as ``winnow predict`` writes them: ``label``, ``score``, ``bbox`` ...)."""

    image: str
    score: float | None = None
    reason: dict[str, Any] | None = None
    prelabels: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class BatchSummary:
    """Field names are part of the ``winnow queue --json`` contract and the API."""

    id: int
    project: str
    name: str
    kind: str
    strategy: str | None
    state: str
    assignee: str | None
    reviewer: str | None
    items: int
    counts: dict[str, int]
    created_at: str
    created_by: str | None
    params: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def batch_state(counts: dict[str, int]) -> str:
    if counts.get("to_label"):
        return "to_label"
    if counts.get("in_review"):
        return "in_review"
    return "done"


def _batch_summary(session, batch: m.QueueBatch, project: str) -> BatchSummary:
    rows = session.execute(
        select(m.QueueItem.state, func.count()).where(m.QueueItem.batch_id == batch.id).group_by(m.QueueItem.state)
    ).all()
    counts = {s: 0 for s in ITEM_STATES} | {s: n for s, n in rows}
    return BatchSummary(
        id=batch.id,
        project=project,
        name=batch.name,
        kind=batch.kind,
        strategy=batch.strategy,
        state=batch_state(counts),
        assignee=batch.assignee,
        reviewer=batch.reviewer,
        items=sum(counts.values()),
        counts=counts,
        created_at=batch.created_at.isoformat() + "Z",
        created_by=batch.created_by,
        params=dict(batch.params or {}),
    )


def create_batch(
    store: Store,
    project: str,
    items: Sequence[QueueItemIn],
    *,
    name: str | None = None,
    kind: str = "label",
    strategy: str | None = None,
    params: dict[str, Any] | None = None,
    assignee: str | None = None,
    reviewer: str | None = None,
    workspace: str = DEFAULT_WORKSPACE,
    user: str | None = None,
) -> BatchSummary:
    """Put ``items`` (in their order) into a new batch of ``project``'s queue.

    Every image must exist in the project; an image already waiting in another open batch of the
    same kind is an error (two labelers would label it twice). ``name`` defaults to
    ``batch-<n>``.
    """
    if kind not in BATCH_KINDS:
        raise InvalidInputError(f"batch kind must be one of {', '.join(BATCH_KINDS)}, got {kind!r}")
    if not items:
        raise InvalidInputError("a batch needs at least one image")
    names = [it.image for it in items]
    if len(set(names)) != len(names):
        raise InvalidInputError("an image appears twice in the batch")
    if name is not None:
        name = validate_name(name, "batch")
    with store.write() as session:
        proj = get_project(session, project, workspace)
        ids = dict(
            session.execute(select(m.Image.name, m.Image.id).where(m.Image.project_id == proj.id, m.Image.name.in_(names))).all()
        )
        missing = [n for n in names if n not in ids]
        if missing:
            raise NotFoundError(f"project {project!r} has no image {missing[0]!r}" + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
        waiting = session.scalars(
            select(m.Image.name)
            .join(m.QueueItem, m.QueueItem.image_id == m.Image.id)
            .join(m.QueueBatch, m.QueueBatch.id == m.QueueItem.batch_id)
            .where(m.QueueBatch.project_id == proj.id, m.QueueBatch.kind == kind, m.QueueItem.state != "done", m.Image.id.in_(ids.values()))
        ).all()
        if waiting:
            raise ConflictError(f"image {waiting[0]!r} is already waiting in the queue" + (f" (and {len(waiting) - 1} more)" if len(waiting) > 1 else ""))
        if name is None:
            count = session.scalar(select(func.count()).select_from(m.QueueBatch).where(m.QueueBatch.project_id == proj.id)) or 0
            name = f"batch-{count + 1}"
            while session.scalar(select(m.QueueBatch.id).where(m.QueueBatch.project_id == proj.id, m.QueueBatch.name == name)):
                count += 1
                name = f"batch-{count + 1}"
        elif session.scalar(select(m.QueueBatch.id).where(m.QueueBatch.project_id == proj.id, m.QueueBatch.name == name)):
            raise ConflictError(f"project {project!r} already has a batch named {name!r}")
        batch = m.QueueBatch(
            project_id=proj.id, name=name, kind=kind, strategy=strategy, params=params or {},
            assignee=assignee, reviewer=reviewer, created_by=user,
        )
        session.add(batch)
        session.flush()
        for pos, it in enumerate(items):
            session.add(
                m.QueueItem(
                    batch_id=batch.id, image_id=ids[it.image], position=pos, state="to_label",
                    score=None if it.score is None else float(it.score), reason=it.reason,
                    prelabels=list(it.prelabels), assignee=assignee,
                )
            )
        session.flush()
        return _batch_summary(session, batch, proj.name)
