"""The labeling queue: batches of images to label (from ``winnow select``) or to check (from
health findings), with assignees, states and review.

Item states: ``to_label`` -> ``in_review`` -> ``done``; a reviewer can send an item back to
``to_label``. A batch's state is derived from its items: ``to_label`` while any item is,
``in_review`` while any is in review, else ``done``.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import func, select, update

from winnow.config import DEFAULT_WORKSPACE
from winnow.errors import ConflictError, InvalidInputError, NotFoundError, PermissionDeniedError
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


# --------------------------------------------------------------------------- working the queue
#
# What a labeler submits is kept on the item until review: ``accepted`` takes the item's
# pre-labels, ``corrected`` the labels sent with it, ``rejected`` none. **Labels are written when
# a reviewer approves**, not at submit: only reviewed labels reach the project, and so a version.
# On approval, in one transaction recorded as one ``queue_review`` change (``winnow undo``
# reverts it, the item going back to ``in_review``):
#
# * ``accepted`` / ``corrected``: the labels become the image's whole label set (every annotation
#   it had, the ``source="model"`` pre-labels included, is replaced), stored as
#   ``source="human"`` with ``created_by`` = the labeler; the image loses the ``unlabeled`` tag;
# * ``rejected``: the image gets the ``rejected`` tag; its labels are left alone.
#
# The submission and the last review (comment) are stored in the item's ``reason`` JSON under the
# reserved keys ``_submitted`` and ``_review``; :func:`show_batch` shows them as ``submitted`` and
# ``review`` and the rest of ``reason`` as it was given.

DECISIONS = ("accepted", "corrected", "rejected")
REJECTED_TAG = "rejected"
MAX_SUBMITTED_ANNOTATIONS = 50_000
_SUBMITTED = "_submitted"
_REVIEW = "_review"


@dataclass
class QueueItemOut:
    """One item of a batch. Field names are part of the ``winnow queue --json`` contract and the API."""

    id: int
    batch: str
    batch_id: int
    kind: str
    image: str
    position: int
    state: str
    score: float | None
    reason: Any
    prelabels: list[dict[str, Any]]
    submitted: list[dict[str, Any]] | None
    decision: str | None
    assignee: str | None
    labeled_by: str | None
    labeled_at: str | None
    reviewed_by: str | None
    reviewed_at: str | None
    review: dict[str, Any] | None
    updated_at: str | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class FindingsBatch:
    """What :func:`findings_to_queue` did. Field names are part of the ``--json`` contract and the API."""

    project: str
    batch: BatchSummary | None
    findings: int
    items: int
    skipped: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["batch"] = None if self.batch is None else self.batch.as_dict()
        return d


def _iso(value) -> str | None:
    return None if value is None else value.isoformat() + "Z"


def _reason_parts(reason: Any) -> tuple[Any, list[dict[str, Any]] | None, dict[str, Any] | None]:
    """``(reason as given, submission, last review)`` from the stored ``reason`` JSON."""
    if not isinstance(reason, dict):
        return reason, None, None
    given = {k: v for k, v in reason.items() if k not in (_SUBMITTED, _REVIEW)}
    if len(given) == len(reason):
        return reason, None, None
    return given or None, reason.get(_SUBMITTED), reason.get(_REVIEW)


def _with(reason: Any, **extra: Any) -> dict[str, Any]:
    out = dict(reason) if isinstance(reason, dict) else ({} if reason is None else {"value": reason})
    for key, value in extra.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = value
    return out


def _item_out(item: m.QueueItem, batch: m.QueueBatch, image: str) -> QueueItemOut:
    reason, submitted, review = _reason_parts(item.reason)
    return QueueItemOut(
        id=item.id, batch=batch.name, batch_id=batch.id, kind=batch.kind, image=image, position=item.position,
        state=item.state, score=item.score, reason=reason, prelabels=list(item.prelabels or []), submitted=submitted,
        decision=item.decision, assignee=item.assignee, labeled_by=item.labeled_by, labeled_at=_iso(item.labeled_at),
        reviewed_by=item.reviewed_by, reviewed_at=_iso(item.reviewed_at), review=review, updated_at=_iso(item.updated_at),
    )


def _get_batch(session, project_id: int, project: str, batch: str | int) -> m.QueueBatch:
    """A batch of the project by name, else by id (``"12"`` is the batch named 12 if there is one)."""
    found = None
    if isinstance(batch, str):
        found = session.scalar(select(m.QueueBatch).where(m.QueueBatch.project_id == project_id, m.QueueBatch.name == batch))
    if found is None:
        try:
            bid = int(batch)
        except (TypeError, ValueError):
            bid = None
        if bid is not None and 0 < bid < 2**63:
            found = session.scalar(select(m.QueueBatch).where(m.QueueBatch.project_id == project_id, m.QueueBatch.id == bid))
    if found is None:
        raise NotFoundError(f"project {project!r} has no batch {batch!r}")
    return found


def _get_item(session, project_id: int, project: str, item_id: int) -> tuple[m.QueueItem, m.QueueBatch, m.Image]:
    """An item with its batch and image, only when the batch belongs to the project (IDOR-safe)."""
    if not isinstance(item_id, int) or isinstance(item_id, bool) or not 0 < item_id < 2**63:
        raise NotFoundError(f"project {project!r} has no queue item {item_id!r}")
    row = session.execute(
        select(m.QueueItem, m.QueueBatch, m.Image)
        .join(m.QueueBatch, m.QueueBatch.id == m.QueueItem.batch_id)
        .join(m.Image, m.Image.id == m.QueueItem.image_id)
        .where(m.QueueItem.id == item_id, m.QueueBatch.project_id == project_id, m.Image.project_id == project_id)
    ).first()
    if row is None:
        raise NotFoundError(f"project {project!r} has no queue item {item_id}")
    return row[0], row[1], row[2]


def list_batches(
    store: Store, project: str, *, state: str | None = None, assignee: str | None = None, workspace: str = DEFAULT_WORKSPACE
) -> list[BatchSummary]:
    """The project's batches, oldest first; ``state`` filters on the batch's derived state,
    ``assignee`` on the batch's assignee or any of its items'."""
    if state is not None and state not in ITEM_STATES:
        raise InvalidInputError(f"batch state must be one of {', '.join(ITEM_STATES)}, got {state!r}")
    with store.read() as session:
        proj = get_project(session, project, workspace)
        q = select(m.QueueBatch).where(m.QueueBatch.project_id == proj.id)
        if assignee is not None:
            q = q.where(
                (m.QueueBatch.assignee == assignee)
                | m.QueueBatch.id.in_(select(m.QueueItem.batch_id).where(m.QueueItem.assignee == assignee))
            )
        out = [_batch_summary(session, b, proj.name) for b in session.scalars(q.order_by(m.QueueBatch.id))]
    return [b for b in out if state is None or b.state == state]


def show_batch(store: Store, project: str, batch: str | int, *, workspace: str = DEFAULT_WORKSPACE) -> dict[str, Any]:
    """A batch (by name or id): its summary plus ``items``, in order (:class:`QueueItemOut`)."""
    with store.read() as session:
        proj = get_project(session, project, workspace)
        b = _get_batch(session, proj.id, project, batch)
        rows = session.execute(
            select(m.QueueItem, m.Image.name)
            .join(m.Image, m.Image.id == m.QueueItem.image_id)
            .where(m.QueueItem.batch_id == b.id)
            .order_by(m.QueueItem.position, m.QueueItem.id)
        ).all()
        return _batch_summary(session, b, proj.name).as_dict() | {"items": [_item_out(it, b, name).as_dict() for it, name in rows]}


def get_item(store: Store, project: str, item_id: int, *, workspace: str = DEFAULT_WORKSPACE) -> QueueItemOut:
    with store.read() as session:
        proj = get_project(session, project, workspace)
        item, batch, image = _get_item(session, proj.id, project, item_id)
        return _item_out(item, batch, image.name)


def assign(
    store: Store,
    project: str,
    batch: str | int,
    *,
    assignee: str | None,
    items: Sequence[int] | None = None,
    reviewer: str | None = None,
    workspace: str = DEFAULT_WORKSPACE,
    user: str | None = None,
) -> BatchSummary:
    """Give a batch (or only ``items`` of it) to ``assignee`` (``None``: anyone may take them).

    Items already ``done`` keep who labelled them. ``reviewer``, when given, is recorded on the
    batch (informational). Returns the batch summary."""
    if assignee is not None and not (isinstance(assignee, str) and 0 < len(assignee.strip()) <= 200):
        raise InvalidInputError("assignee must be 1-200 characters")
    with store.write() as session:
        proj = get_project(session, project, workspace)
        b = _get_batch(session, proj.id, project, batch)
        q = update(m.QueueItem).where(m.QueueItem.batch_id == b.id, m.QueueItem.state != "done")
        if items is not None:
            ids = [int(i) for i in items]
            known = set(session.scalars(select(m.QueueItem.id).where(m.QueueItem.batch_id == b.id, m.QueueItem.id.in_(ids))))
            missing = [i for i in ids if i not in known]
            if missing:
                raise NotFoundError(f"batch {b.name!r} has no item {missing[0]}")
            q = q.where(m.QueueItem.id.in_(ids))
        else:
            b.assignee = assignee
        if reviewer is not None:
            b.reviewer = reviewer
        session.execute(q.values(assignee=assignee, updated_at=m.utcnow()))
        session.flush()
        return _batch_summary(session, b, proj.name)


def next_item(
    store: Store, project: str, batch: str | int, *, user: str | None, workspace: str = DEFAULT_WORKSPACE
) -> QueueItemOut | None:
    """The next ``to_label`` item of the batch for ``user``, claimed for them.

    Items already assigned to ``user`` come first (picking up where they left), then unassigned
    ones in batch order; an unassigned item is assigned to ``user`` in the same transaction, so
    two labelers asking at once never get the same item. ``None`` when nothing is left."""
    with store.write() as session:
        proj = get_project(session, project, workspace)
        b = _get_batch(session, proj.id, project, batch)
        base = select(m.QueueItem).where(m.QueueItem.batch_id == b.id, m.QueueItem.state == "to_label")
        item = None
        if user is not None:
            item = session.scalar(base.where(m.QueueItem.assignee == user).order_by(m.QueueItem.position, m.QueueItem.id).limit(1))
        if item is None:
            item = session.scalar(base.where(m.QueueItem.assignee.is_(None)).order_by(m.QueueItem.position, m.QueueItem.id).limit(1))
            if item is None:
                return None
            if user is not None:
                item.assignee = user
                session.flush()
        image = session.scalar(select(m.Image.name).where(m.Image.id == item.image_id))
        return _item_out(item, b, image)


def _as_json(ann) -> dict[str, Any]:
    d: dict[str, Any] = {"label": ann.label}
    if ann.bbox is not None:
        d["bbox"] = [float(v) for v in ann.bbox]
    if ann.polygon is not None:
        d["polygon"] = ann.polygon
    if ann.rle is not None:
        d["rle"] = ann.rle
    if ann.attributes:
        d["attributes"] = ann.attributes
    return d


_PRELABEL_KEYS = ("label", "bbox", "polygon", "rle", "attributes")


def _labels_for(decision: str, prelabels: list[Any], annotations: list[Any] | None, image: m.Image, task: str) -> list:
    """The cleaned labels a decision stands for (raises :class:`InvalidInputError`)."""
    from winnow.services.annotations import clean_annotation

    if decision == "rejected":
        if annotations:
            raise InvalidInputError("a rejected item takes no annotations")
        return []
    if decision == "accepted":
        if annotations is not None:
            raise InvalidInputError("'accepted' takes the item's pre-labels; send changed labels as 'corrected'")
        out = []
        for i, p in enumerate(prelabels or []):
            raw = {k: p.get(k) for k in _PRELABEL_KEYS if isinstance(p, dict) and p.get(k) is not None}
            try:
                out.append(clean_annotation(raw, image.width, image.height, task, where=f"pre-label {i}"))
            except InvalidInputError as exc:
                raise InvalidInputError(f"the pre-labels cannot be accepted as they are ({exc}); submit them as 'corrected'") from None
        return out
    if annotations is None:
        raise InvalidInputError("'corrected' needs the annotations (an empty list means: no objects)")
    if not isinstance(annotations, list):
        raise InvalidInputError("annotations must be a list")
    if len(annotations) > MAX_SUBMITTED_ANNOTATIONS:
        raise InvalidInputError(f"{len(annotations)} annotations; at most {MAX_SUBMITTED_ANNOTATIONS} per image")
    return [clean_annotation(a, image.width, image.height, task, where=f"annotations[{i}]") for i, a in enumerate(annotations)]


def submit(
    store: Store,
    project: str,
    item_id: int,
    *,
    decision: str,
    annotations: list[dict[str, Any]] | None = None,
    user: str | None,
    workspace: str = DEFAULT_WORKSPACE,
) -> QueueItemOut:
    """A labeler's answer for a ``to_label`` item: ``accepted`` (the pre-labels are right),
    ``corrected`` (``annotations`` are: dicts with ``label`` and ``bbox`` (absolute-pixel
    ``xyxy``) or ``polygon``; ``[]`` = no objects) or ``rejected`` (not worth labelling).

    The labels are validated now (clipped like :func:`~winnow.services.annotations.create_annotation`)
    and kept on the item; the item goes to ``in_review``. Nothing is written to the image until a
    reviewer approves (:func:`review`). An item that is not ``to_label`` (already submitted,
    done) is a :class:`ConflictError`."""
    if decision not in DECISIONS:
        raise InvalidInputError(f"decision must be one of {', '.join(DECISIONS)}, got {decision!r}")
    with store.write() as session:
        proj = get_project(session, project, workspace)
        item, batch, image = _get_item(session, proj.id, project, item_id)
        if item.state != "to_label":
            raise ConflictError(f"queue item {item.id} is {item.state}, not to_label: it was already submitted")
        labels = _labels_for(decision, item.prelabels, annotations, image, proj.task)
        now = m.utcnow()
        done = session.execute(
            update(m.QueueItem)
            .where(m.QueueItem.id == item.id, m.QueueItem.state == "to_label")  # optimistic: nobody got here first
            .values(
                state="in_review", decision=decision, labeled_by=user, labeled_at=now, updated_at=now,
                assignee=item.assignee if item.assignee is not None else user,
                reason=_with(item.reason, **{_SUBMITTED: [_as_json(a) for a in labels]}),
            )
        )
        if done.rowcount != 1:
            raise ConflictError(f"queue item {item.id} was submitted by someone else meanwhile")
        session.refresh(item)
        return _item_out(item, batch, image.name)


def review(
    store: Store,
    project: str,
    item_id: int,
    *,
    approve: bool,
    user: str | None,
    comment: str | None = None,
    workspace: str = DEFAULT_WORKSPACE,
) -> QueueItemOut:
    """A reviewer's verdict on an ``in_review`` item: approve (the item is ``done`` and its labels
    are written, see the notes above) or send back (``to_label`` again, with ``comment``).

    The reviewer must not be the item's labeler (:class:`PermissionDeniedError`); an item that
    is not ``in_review`` is a :class:`ConflictError`."""
    from winnow.services.annotations import add_tag, replace_labels
    from winnow.services.fixes import record_change, snapshot_row

    if comment is not None and (not isinstance(comment, str) or len(comment) > 2000):
        raise InvalidInputError("comment must be text of at most 2000 characters")
    with store.write() as session:
        proj = get_project(session, project, workspace)
        item, batch, image = _get_item(session, proj.id, project, item_id)
        if item.state != "in_review":
            raise ConflictError(f"queue item {item.id} is {item.state}, not in_review")
        if user == item.labeled_by:
            raise PermissionDeniedError(f"queue item {item.id} was labelled by {user!r}: someone else must review it")
        before = {k: v for k, v in snapshot_row(item).items() if k not in ("id", "batch_id", "image_id", "position")}
        now = m.utcnow()
        verdict = {"approved": bool(approve), "by": user, "at": now.isoformat() + "Z", "comment": comment}
        values: dict[str, Any] = {"reviewed_by": user, "reviewed_at": now, "updated_at": now, "reason": _with(item.reason, **{_REVIEW: verdict})}
        if approve:
            values["state"] = "done"
        else:
            values |= {"state": "to_label", "decision": None}
        done = session.execute(
            update(m.QueueItem).where(m.QueueItem.id == item.id, m.QueueItem.state == "in_review").values(**values)
        )
        if done.rowcount != 1:
            raise ConflictError(f"queue item {item.id} was reviewed by someone else meanwhile")
        if approve:
            ops: list[dict[str, Any]] = []
            _, submitted, _ = _reason_parts(item.reason)
            if item.decision == "rejected":
                add_tag(session, image.id, REJECTED_TAG, ops)
                what = "rejected (tagged)"
            else:
                # validated at submit; cleaned again (same rules) in case the image changed since
                labels = _labels_for("corrected", [], list(submitted or []), image, proj.task)
                for a in labels:
                    a.score = None  # people's labels carry no model confidence
                removed, added = replace_labels(
                    session, proj.id, image.id, labels, source="human", user=item.labeled_by or user, ops=ops, cache={}
                )
                what = f"{item.decision}: {added} labels (replacing {removed})"
            ops.append({"op": "update_queue_item", "id": item.id, "before": before})
            record_change(
                session, proj.id, "queue_review",
                f"queue item {item.id} ({image.name}, batch {batch.name}) approved by {user}: {what}", ops, user,
            )
            proj.updated_at = m.utcnow()
        session.refresh(item)
        return _item_out(item, batch, image.name)


def _prelabels_from(session, image_id: int, finding: dict[str, Any]) -> list[dict[str, Any]]:
    """The image's current labels with the finding's ``relabel`` suggestion applied."""
    rows = session.execute(
        select(m.Annotation, m.ProjectClass.name)
        .join(m.ProjectClass, m.ProjectClass.id == m.Annotation.class_id)
        .where(m.Annotation.image_id == image_id)
        .order_by(m.Annotation.id)
    ).all()
    suggestion = finding.get("suggestion") or {}
    to = (suggestion.get("params") or {}).get("to") if suggestion.get("action") == "relabel" else None
    targets = set(finding.get("annotations") or [])
    if to is not None and not targets and len(rows) == 1:
        targets = {rows[0][0].id}
    out = []
    for a, label in rows:
        d: dict[str, Any] = {"id": a.id, "label": label}
        if a.x1 is not None:
            d["bbox"] = [a.x1, a.y1, a.x2, a.y2]
        if a.polygon is not None:
            d["polygon"] = a.polygon
        if a.rle is not None:
            d["rle"] = a.rle
        if a.attributes:
            d["attributes"] = a.attributes
        if to is not None and a.id in targets and label != to:
            d["label"] = str(to)
            d["relabeled_from"] = label
        out.append(d)
    return out


def findings_to_queue(
    store: Store,
    project: str,
    findings: Sequence[Any] | None = None,
    *,
    checks: Sequence[str] | None = None,
    params: dict[str, dict[str, Any]] | None = None,
    name: str | None = None,
    assignee: str | None = None,
    reviewer: str | None = None,
    workspace: str = DEFAULT_WORKSPACE,
    user: str | None = None,
) -> FindingsBatch:
    """Put health-check findings in a new ``check`` batch: one "please check" item per image.

    ``findings`` are :class:`~winnow.quality.base.Finding` objects or their ``as_dict()`` (a
    ``winnow check --json`` report); when ``None``, ``checks`` (default ``["label_error"]``) are run
    now. An item's ``reason`` is its worst finding (check id, message, suggestion, evidence...),
    with any other findings on the same image under ``also``; its ``prelabels`` are the image's
    labels with the suggested relabel applied (``relabeled_from`` marks what changed), so
    ``accepted`` means "the suggestion is right". Findings about no image, images of another
    project, and images already waiting in an open check batch are skipped and listed."""
    if findings is None:
        from winnow.quality.engine import run_checks

        report = run_checks(store, project, workspace=workspace, only=list(checks or ["label_error"]), params=params)
        findings = report.findings
    dicts = [f.as_dict() if hasattr(f, "as_dict") else dict(f) for f in findings]
    if checks:
        dicts = [d for d in dicts if d.get("check") in set(checks)]
    by_image: dict[str, list[dict[str, Any]]] = {}
    skipped: list[dict[str, Any]] = []
    for d in dicts:
        images = [i for i in d.get("images") or [] if isinstance(i, str)]
        if not images:
            skipped.append({"check": d.get("check"), "image": None, "why": "the finding is about no single image"})
        for name_ in dict.fromkeys(images):
            by_image.setdefault(unicodedata.normalize("NFC", name_), []).append(d)
    items: list[QueueItemIn] = []
    with store.read() as session:
        proj = get_project(session, project, workspace)
        ids = dict(session.execute(select(m.Image.name, m.Image.id).where(m.Image.project_id == proj.id, m.Image.name.in_(list(by_image)))).all())
        waiting = set(
            session.scalars(
                select(m.QueueItem.image_id)
                .join(m.QueueBatch, m.QueueBatch.id == m.QueueItem.batch_id)
                .where(m.QueueBatch.project_id == proj.id, m.QueueBatch.kind == "check", m.QueueItem.state != "done")
            )
        )
        for image, found in by_image.items():
            if image not in ids:
                skipped.append({"check": found[0].get("check"), "image": image, "why": "no such image in the project"})
                continue
            if ids[image] in waiting:
                skipped.append({"check": found[0].get("check"), "image": image, "why": "already waiting in a check batch"})
                continue
            found.sort(key=lambda d: -float(d.get("score") or 0.0))
            worst = found[0]
            reason = {k: worst.get(k) for k in ("check", "severity", "message", "suggestion", "score", "annotations", "evidence")}
            if len(found) > 1:
                reason["also"] = [{k: d.get(k) for k in ("check", "message", "suggestion")} for d in found[1:]]
            items.append(QueueItemIn(image, float(worst.get("score") or 0.0), reason, _prelabels_from(session, ids[image], worst)))
    items.sort(key=lambda it: -(it.score or 0.0))
    summary = None
    if items:
        summary = create_batch(
            store, project, items, name=name, kind="check", strategy="findings",
            params={"checks": sorted({it.reason["check"] for it in items if it.reason})},
            assignee=assignee, reviewer=reviewer, workspace=workspace, user=user,
        )
    return FindingsBatch(project=project, batch=summary, findings=len(dicts), items=len(items), skipped=skipped)
