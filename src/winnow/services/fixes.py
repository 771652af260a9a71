"""Applying the safe suggestions of the health checks as one recorded, undoable change.

``apply_fixes`` re-runs the chosen checks, keeps the findings whose suggestion is automatic
(:data:`AUTOMATIC`), and applies them in one transaction that also stores a
:class:`~winnow.store.models.Change` holding every row as it was. ``undo`` puts those rows back
(same ids), in one transaction, and marks the change undone.

Automatic actions and what they do:

* ``merge_images`` (exact duplicates with agreeing labels): delete the records in
  ``params["remove"]``; the kept record gets their tags and metadata keys it lacked;
* ``delete_annotation``: delete ``params["annotations"]`` (default: the finding's annotations);
* ``clip_box``: clip the finding's annotations' boxes to their image.

Operations ``undo`` reverts, whoever recorded them (fixes, predictions, label edits, the queue's
reviews, label imports): ``delete_image``, ``delete_annotation``, ``update_annotation`` (the
columns as they were), ``insert_annotation``, ``insert_tag``, ``delete_tag``, ``insert_class``
(removed again only while no annotation uses it) and ``update_queue_item``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import DateTime, delete, insert, select, update
from sqlalchemy.orm import Session

from winnow.config import DEFAULT_WORKSPACE
from winnow.core import geometry
from winnow.errors import ConflictError, NotFoundError
from winnow.quality.base import Finding
from winnow.quality.engine import run_checks
from winnow.services.projects import get_project
from winnow.store import models as m
from winnow.store.db import Store

AUTOMATIC = ("merge_images", "delete_annotation", "clip_box")
DEFAULT_CHECKS = ["exact_duplicate", "degenerate_box", "box_out_of_bounds", "duplicate_box"]


@dataclass
class FixReport:
    """Field names are part of the ``winnow fix --json`` contract."""

    project: str
    change_id: int | None
    dry_run: bool
    images_removed: list[str] = field(default_factory=list)
    annotations_removed: list[int] = field(default_factory=list)
    boxes_clipped: list[int] = field(default_factory=list)
    findings_applied: int = 0
    findings_skipped: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def snapshot_row(obj: Any) -> dict[str, Any]:
    """A mapped object's column values, JSON-safe (datetimes as ISO text)."""
    out = {}
    for col in obj.__table__.columns:
        value = getattr(obj, col.key)
        out[col.key] = value.isoformat() if isinstance(value, datetime) else value
    return out


def restore_row(table, row: dict[str, Any]) -> dict[str, Any]:
    out = dict(row)
    for col in table.columns:
        if isinstance(col.type, DateTime) and isinstance(out.get(col.key), str):
            out[col.key] = datetime.fromisoformat(out[col.key])
    return out


def _delete_image_ops(session: Session, image: m.Image) -> dict[str, Any]:
    anns = session.scalars(select(m.Annotation).where(m.Annotation.image_id == image.id)).all()
    tags = session.scalars(select(m.ImageTag).where(m.ImageTag.image_id == image.id)).all()
    meta = session.scalars(select(m.ImageMetadata).where(m.ImageMetadata.image_id == image.id)).all()
    return {
        "op": "delete_image",
        "image": snapshot_row(image),
        "annotations": [snapshot_row(a) for a in anns],
        "tags": [snapshot_row(t) for t in tags],
        "metadata": [snapshot_row(x) for x in meta],
    }


def _merge(session: Session, project_id: int, finding: Finding, ops: list, report: FixReport) -> bool:
    params = finding.suggestion.params if finding.suggestion else {}
    keep_name = params.get("keep")
    remove = [n for n in params.get("remove", []) if n != keep_name]
    if not keep_name or not remove:
        return False
    images = {
        im.name: im
        for im in session.scalars(select(m.Image).where(m.Image.project_id == project_id, m.Image.name.in_([keep_name, *remove])))
    }
    keep = images.get(keep_name)
    if keep is None:
        return False
    kept_tags = set(session.scalars(select(m.ImageTag.tag).where(m.ImageTag.image_id == keep.id)))
    kept_keys = set(session.scalars(select(m.ImageMetadata.key).where(m.ImageMetadata.image_id == keep.id)))
    for name in remove:
        im = images.get(name)
        if im is None:
            continue
        op = _delete_image_ops(session, im)
        new_tags = [t["tag"] for t in op["tags"] if t["tag"] not in kept_tags]
        new_meta = [x for x in op["metadata"] if x["key"] not in kept_keys]
        for tag in new_tags:
            session.execute(insert(m.ImageTag).values(image_id=keep.id, tag=tag))
            kept_tags.add(tag)
        for x in new_meta:
            session.execute(insert(m.ImageMetadata).values(image_id=keep.id, key=x["key"], value=x["value"]))
            kept_keys.add(x["key"])
        op["merged_into"] = {"image_id": keep.id, "tags": new_tags, "metadata_keys": [x["key"] for x in new_meta]}
        session.execute(delete(m.Image).where(m.Image.id == im.id))
        ops.append(op)
        report.images_removed.append(name)
    return True


def _delete_annotations(session: Session, project_id: int, ids: list[int], ops: list, report: FixReport) -> bool:
    rows = session.scalars(
        select(m.Annotation).join(m.Image).where(m.Image.project_id == project_id, m.Annotation.id.in_(ids))
    ).all()
    for a in rows:
        ops.append({"op": "delete_annotation", "annotation": snapshot_row(a)})
        session.execute(delete(m.Annotation).where(m.Annotation.id == a.id))
        report.annotations_removed.append(a.id)
    return bool(rows)


def _clip(session: Session, project_id: int, ids: list[int], ops: list, report: FixReport) -> bool:
    rows = session.execute(
        select(m.Annotation, m.Image.width, m.Image.height)
        .join(m.Image)
        .where(m.Image.project_id == project_id, m.Annotation.id.in_(ids), m.Annotation.x1.is_not(None))
    ).all()
    done = False
    for a, w, h in rows:
        before = [a.x1, a.y1, a.x2, a.y2]
        after = geometry.clip([before], w, h)[0]
        if not geometry.positive(after[None])[0]:
            done |= _delete_annotations(session, project_id, [a.id], ops, report)
            continue
        after_l = [float(v) for v in after]
        if after_l == before:
            continue
        session.execute(update(m.Annotation).where(m.Annotation.id == a.id).values(x1=after_l[0], y1=after_l[1], x2=after_l[2], y2=after_l[3]))
        ops.append({"op": "update_annotation", "id": a.id, "before": dict(zip(("x1", "y1", "x2", "y2"), before, strict=True))})
        report.boxes_clipped.append(a.id)
        done = True
    return done


def apply_fixes(
    store: Store,
    project: str,
    *,
    workspace: str = DEFAULT_WORKSPACE,
    checks: list[str] | None = None,
    dry_run: bool = False,
    user: str | None = None,
) -> FixReport:
    """Run ``checks`` (default :data:`DEFAULT_CHECKS`) and apply their automatic suggestions."""
    from winnow.quality.base import all_checks

    wanted = [c for c in (checks or DEFAULT_CHECKS) if c in all_checks()]
    result = run_checks(store, project, workspace=workspace, only=wanted)
    report = FixReport(project=project, change_id=None, dry_run=dry_run)
    with store.write() as session:
        proj = get_project(session, project, workspace)
        ops: list[dict[str, Any]] = []
        for f in result.findings:
            action = f.suggestion.action if f.suggestion else None
            if action not in AUTOMATIC:
                report.findings_skipped += 1
                continue
            ids = list((f.suggestion.params or {}).get("annotations", f.annotations))
            if action == "merge_images":
                applied = _merge(session, proj.id, f, ops, report)
            elif action == "delete_annotation":
                applied = _delete_annotations(session, proj.id, ids, ops, report)
            else:
                applied = _clip(session, proj.id, ids, ops, report)
            if applied:
                report.findings_applied += 1
            else:
                report.findings_skipped += 1
        if dry_run or not ops:
            session.rollback()
            return report
        report.change_id = record_change(
            session, proj.id, "fix", f"winnow fix: {report.findings_applied} findings from {', '.join(wanted)}", ops, user
        )
    return report


def record_change(session: Session, project_id: int, kind: str, description: str, ops: list[dict[str, Any]], user: str | None) -> int:
    """Record ``ops`` (what :func:`undo` needs to revert them) as one change; return its id."""
    change = m.Change(project_id=project_id, kind=kind, description=description, operations=ops, created_by=user)
    session.add(change)
    session.flush()
    return change.id


def undo(store: Store, project: str, change_id: int | None = None, *, workspace: str = DEFAULT_WORKSPACE) -> dict[str, Any]:
    """Revert a change (the latest one not yet undone when ``change_id`` is ``None``)."""
    with store.write() as session:
        proj = get_project(session, project, workspace)
        q = select(m.Change).where(m.Change.project_id == proj.id, m.Change.undone_at.is_(None))
        q = q.where(m.Change.id == change_id) if change_id is not None else q.order_by(m.Change.id.desc())
        change = session.scalars(q.limit(1)).first()
        if change is None:
            raise NotFoundError(f"no change {'#' + str(change_id) + ' ' if change_id else ''}to undo in project {project!r}")
        for op in reversed(change.operations):
            kind = op["op"]
            if kind == "delete_image":
                taken = session.scalar(
                    select(m.Image.id).where(
                        (m.Image.id == op["image"]["id"])
                        | ((m.Image.project_id == proj.id) & (m.Image.name == op["image"]["name"]))
                    )
                )
                if taken is not None:
                    raise ConflictError(f"cannot undo change {change.id}: image {op['image']['name']!r} exists again")
                session.execute(insert(m.Image).values(**restore_row(m.Image.__table__, op["image"])))
                for key, model in (("annotations", m.Annotation), ("tags", m.ImageTag), ("metadata", m.ImageMetadata)):
                    if op[key]:
                        session.execute(insert(model), [restore_row(model.__table__, r) for r in op[key]])
                merged = op.get("merged_into")
                if merged:
                    for tag in merged["tags"]:
                        session.execute(delete(m.ImageTag).where(m.ImageTag.image_id == merged["image_id"], m.ImageTag.tag == tag))
                    for key in merged["metadata_keys"]:
                        session.execute(
                            delete(m.ImageMetadata).where(m.ImageMetadata.image_id == merged["image_id"], m.ImageMetadata.key == key)
                        )
            elif kind == "delete_annotation":
                row = op["annotation"]
                if session.get(m.Annotation, row["id"]) is not None:
                    raise ConflictError(f"cannot undo change {change.id}: annotation id {row['id']} exists again")
                session.execute(insert(m.Annotation).values(**restore_row(m.Annotation.__table__, row)))
            elif kind == "update_annotation":
                done = session.execute(update(m.Annotation).where(m.Annotation.id == op["id"]).values(**op["before"]))
                if done.rowcount == 0:
                    raise ConflictError(f"cannot undo change {change.id}: annotation id {op['id']} no longer exists")
            elif kind == "update_fork":  # a rebase: the fork goes back to the base version it was on
                fork, before = session.get(m.ProjectFork, op["project_id"]), op["before"]
                if fork is not None:
                    fork.base_version_id, fork.class_map = before["base_version_id"], before["class_map"]
                    fork.rebased_at = datetime.fromisoformat(before["rebased_at"]) if before["rebased_at"] else None
                for image_id, revision in before.get("base_revisions", {}).items():
                    if (override := session.get(m.ForkOverride, int(image_id))) is not None:
                        override.base_revision = revision
            elif kind == "insert_image":  # an image a change added (an adopted inherited image)
                session.execute(delete(m.Image).where(m.Image.id == op["id"], m.Image.project_id == proj.id))
            elif kind == "insert_annotation":  # e.g. predictions stored as pre-labels
                session.execute(delete(m.Annotation).where(m.Annotation.id == op["id"]))
            elif kind == "insert_tag":
                session.execute(delete(m.ImageTag).where(m.ImageTag.image_id == op["image_id"], m.ImageTag.tag == op["tag"]))
            elif kind == "delete_tag":
                if session.get(m.ImageTag, (op["image_id"], op["tag"])) is None and session.get(m.Image, op["image_id"]) is not None:
                    session.execute(insert(m.ImageTag).values(image_id=op["image_id"], tag=op["tag"]))
            elif kind == "insert_class":  # a class a label edit created; kept while anything uses it
                if session.scalar(select(m.Annotation.id).where(m.Annotation.class_id == op["id"]).limit(1)) is None:
                    session.execute(delete(m.ProjectClass).where(m.ProjectClass.id == op["id"], m.ProjectClass.project_id == proj.id))
            elif kind == "update_queue_item":  # a reviewed queue item goes back to how it was
                session.execute(
                    update(m.QueueItem).where(m.QueueItem.id == op["id"]).values(**restore_row(m.QueueItem.__table__, op["before"]))
                )
        change.undone_at = m.utcnow()
        return {"project": project, "change_id": change.id, "undone": len(change.operations)}


def list_changes(store: Store, project: str, *, workspace: str = DEFAULT_WORKSPACE) -> list[dict[str, Any]]:
    with store.read() as session:
        proj = get_project(session, project, workspace)
        return [
            {
                "id": c.id,
                "kind": c.kind,
                "description": c.description,
                "operations": len(c.operations),
                "created_at": c.created_at.isoformat() + "Z",
                "created_by": c.created_by,
                "undone_at": c.undone_at.isoformat() + "Z" if c.undone_at else None,
            }
            for c in session.scalars(select(m.Change).where(m.Change.project_id == proj.id).order_by(m.Change.id))
        ]
