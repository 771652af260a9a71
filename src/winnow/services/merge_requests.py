"""Merge requests: a customer's reviewed labels proposed back to its base project.

A customer project (a fork, :mod:`winnow.services.forks`) runs its own feedback loop: it captures
images, selects, labels and reviews them in its queue. :func:`propose` turns the result into a
**merge request** on the base project (:class:`~winnow.store.models.MergeRequest`); the base
team lists it, looks at it, and :func:`accept` or :func:`reject` it. Nothing is copied when a
request is made: an item names its image's blob (content address), so the captured images stay
in the customer's project.

Items, one per image (the ``items`` JSON; field names are part of the ``--json`` contract):

- ``add``: an image of the customer's own, ``{"kind", "name", "sha256", "width", "height",
  "split"?, "metadata", "annotations"}``. Accepting makes a new image row in the base on the same
  blob (no byte copy) named ``<customer workspace>/<customer project>/<name>``, with the
  customer's metadata plus ``proposed_by`` and ``merge_request``, and these labels.
- ``relabel``: an inherited image the customer adopted and corrected (``base/<name>``),
  ``{"kind", "name", "base_name", "base_revision", "annotations"}``: the base image's labels are
  replaced by these. ``base_revision`` is the image's revision in the base version the fork is on;
  when the base image has changed since (its current labels hash to something else), accepting
  reports a **conflict** and skips the item, unless ``force``.

Annotations are :func:`~winnow.versions.materialize.annotation_to_dict` dicts (``bbox`` absolute
pixels ``xyxy``) under the **base's** class names: a customer class goes back through the inverse
of the fork's class map (the base class that maps to it, when exactly one does, or when one of
those has the customer's name); a customer-only class keeps its name and is listed in the
request's ``report["new_classes"]`` (accepting creates it in the base).

Which images ``propose`` takes by default: the customer's images whose labels a reviewer approved
in the queue (an item ``done`` with decision ``accepted`` or ``corrected``), less those already
in an open request or applied by an accepted one. Accepting is one transaction recorded as one
``merge_request`` change in the base project, so ``winnow undo BASE`` reverts it row for row; the
request then shows ``reverted_at`` and its images can be proposed again.

Only the base project's workspace can see and decide a request (the base is looked up by name in
the caller's workspace, so another workspace gets :class:`NotFoundError`); only the customer's
workspace can propose from the customer project.
"""

from __future__ import annotations

import unicodedata
from collections import defaultdict
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from winnow.config import DEFAULT_WORKSPACE
from winnow.core.types import Annotation, Source
from winnow.errors import ConflictError, InvalidInputError, NotFoundError
from winnow.services.projects import class_names, get_project
from winnow.store import models as m
from winnow.store.db import Store

STATES = ("open", "accepted", "rejected")
ITEM_KINDS = ("add", "relabel")
#: Review decisions that approve an image's labels (a ``rejected`` decision approves none).
APPROVED_DECISIONS = ("accepted", "corrected")
MAX_TITLE_LENGTH = 500
MAX_REASON_LENGTH = 2000
_MAX_SHOWN = 5


# ----------------------------------------------------------------------------- what a request shows


@dataclass
class MergeRequestInfo:
    """One merge request. Field names are part of the ``--json`` contract and the API."""

    id: int
    base_project: str
    base_workspace: str
    source: str  # "workspace/project" of the customer
    title: str
    state: str  # open | accepted | rejected
    counts: dict[str, int]  # items by kind
    report: dict[str, Any]
    change_id: int | None
    reverted_at: str | None  # the accept's change was undone
    created_at: str
    created_by: str | None
    decided_at: str | None
    decided_by: str | None
    items: list[dict[str, Any]] | None = field(default=None)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if self.items is None:
            d.pop("items")
        return d


def _iso(value) -> str | None:
    return None if value is None else value.isoformat(timespec="seconds") + "Z"


def _info(session: Session, mr: m.MergeRequest, *, with_items: bool) -> MergeRequestInfo:
    base = session.get(m.Project, mr.base_project_id)
    base_ws = session.get(m.Workspace, base.workspace_id).name
    counts = dict.fromkeys(ITEM_KINDS, 0)
    for item in mr.items or []:
        counts[item["kind"]] = counts.get(item["kind"], 0) + 1
    change = session.get(m.Change, mr.change_id) if mr.change_id is not None else None
    return MergeRequestInfo(
        id=mr.id, base_project=base.name, base_workspace=base_ws, source=mr.source, title=mr.title, state=mr.state,
        counts=counts, report=dict(mr.report or {}), change_id=mr.change_id,
        reverted_at=_iso(change.undone_at) if change is not None else None,
        created_at=_iso(mr.created_at), created_by=mr.created_by, decided_at=_iso(mr.decided_at), decided_by=mr.decided_by,
        items=[dict(i) for i in mr.items or []] if with_items else None,
    )


def _get_request(session: Session, base: m.Project, request_id: Any) -> m.MergeRequest:
    """A request of ``base`` by id (a request of another project is not found, never shown)."""
    try:
        rid = int(request_id)
    except (TypeError, ValueError):
        rid = None
    mr = session.get(m.MergeRequest, rid) if rid is not None and 0 < rid < 2**63 else None
    if mr is None or mr.base_project_id != base.id:
        raise NotFoundError(f"project {base.name!r} has no merge request {request_id!r}")
    return mr


# ----------------------------------------------------------------------------- the class map, inverted


def inverse_class_map(class_map: dict[str, Any]) -> dict[str, list[str]]:
    """Customer class name -> the base classes the fork's map sends to it (a split rule sends its
    base class to each of its targets; a dropped class (``None``) to none)."""
    out: dict[str, list[str]] = defaultdict(list)
    for base_name, value in class_map.items():
        if value is None:
            continue
        targets = [*value["into"], value["default"]] if isinstance(value, dict) else [value]
        for t in dict.fromkeys(targets):
            out[t].append(base_name)
    return dict(out)


def base_label(inverse: dict[str, list[str]], label: str) -> tuple[str, list[str]]:
    """The base's name for the customer's class ``label``, and the base classes it could mean.

    Exactly one base class maps to it: that one. Several (the customer merged base classes): the
    one named like it, if any, else the customer's name is kept (the request's report lists it as
    ambiguous). None: a customer-only class, kept as it is."""
    sources = inverse.get(label, [])
    return (sources[0] if len(sources) == 1 else label), sources


# ----------------------------------------------------------------------------- reading labels


def _labels(session: Session, image_ids: list[int]) -> dict[int, list[Annotation]]:
    """The images' annotations (in id order), with their class names."""
    out: dict[int, list[Annotation]] = defaultdict(list)
    for i in range(0, len(image_ids), 900):
        rows = session.execute(
            select(m.Annotation, m.ProjectClass.name)
            .join(m.ProjectClass, m.ProjectClass.id == m.Annotation.class_id)
            .where(m.Annotation.image_id.in_(image_ids[i : i + 900]))
            .order_by(m.Annotation.image_id, m.Annotation.id)
        ).all()
        for a, label in rows:
            out[a.image_id].append(Annotation(
                label=label,
                bbox=None if a.x1 is None else (a.x1, a.y1, a.x2, a.y2),
                polygon=a.polygon,
                rle=a.rle,
                iscrowd=bool(a.iscrowd),
                score=a.score,
                source=Source(a.source),
                attributes=dict(a.attributes or {}),
                id=a.id,
            ))
    return out


def _content(annotations: list[Annotation]) -> str:
    """What the labels say regardless of who made them (source and score left out)."""
    from winnow.services.forks import image_revision

    return image_revision([replace(a, source=Source.HUMAN, score=None) for a in annotations])


def _annotation_dict(a: Annotation) -> dict[str, Any]:
    from winnow.versions.materialize import annotation_to_dict

    d = annotation_to_dict(a)
    d.pop("id")  # the customer's ids mean nothing in the base
    return d


def _annotation(d: dict[str, Any]) -> Annotation:
    from winnow.versions.materialize import annotation_from_dict

    return annotation_from_dict(d | {"id": None})


def _shown(names: list[str]) -> str:
    more = f" (and {len(names) - _MAX_SHOWN} more)" if len(names) > _MAX_SHOWN else ""
    return ", ".join(map(repr, names[:_MAX_SHOWN])) + more


# ----------------------------------------------------------------------------- propose


def _approved_image_ids(session: Session, project_id: int) -> set[int]:
    """The project's images whose labels a reviewer approved in the queue."""
    return set(session.scalars(
        select(m.QueueItem.image_id)
        .join(m.QueueBatch, m.QueueBatch.id == m.QueueItem.batch_id)
        .where(
            m.QueueBatch.project_id == project_id,
            m.QueueItem.state == "done",
            m.QueueItem.decision.in_(APPROVED_DECISIONS),
            m.QueueItem.reviewed_by.is_not(None),
        )
    ))


def _already_proposed(session: Session, project_id: int) -> set[str]:
    """Image names of the project in an open request, or applied by an accepted one not undone."""
    names: set[str] = set()
    for mr in session.scalars(
        select(m.MergeRequest).where(m.MergeRequest.source_project_id == project_id, m.MergeRequest.state.in_(("open", "accepted")))
    ):
        if mr.state == "open":
            names.update(i["name"] for i in mr.items or [])
            continue
        change = session.get(m.Change, mr.change_id) if mr.change_id is not None else None
        if change is not None and change.undone_at is None:
            names.update((mr.report or {}).get("applied", []))
    return names


def _default_title(adds: int, relabels: int, source: str) -> str:
    parts = [f"{n} {what} image{'s' if n != 1 else ''}" for n, what in ((adds, "new"), (relabels, "relabelled")) if n]
    return f"{' and '.join(parts)} from {source}"


def propose(
    store: Store,
    project: str,
    *,
    workspace: str = DEFAULT_WORKSPACE,
    images: list[str] | None = None,
    title: str | None = None,
    user: str | None = None,
) -> MergeRequestInfo:
    """Propose the customer ``project``'s labels back to its base as a new open merge request.

    ``images``: names of the customer's own labelled images (an adopted inherited image by its
    ``base/<name>``); ``None`` takes every image whose labels were approved in review and that is
    not already proposed (see the module notes). Refused (:class:`InvalidInputError`): a project
    that is no fork, an image without labels, nothing to propose."""
    from winnow.services.forks import fork_row

    if title is not None:
        title = title.strip()
        if not title or len(title) > MAX_TITLE_LENGTH or any(unicodedata.category(c) == "Cc" for c in title):
            raise InvalidInputError(f"a title is 1-{MAX_TITLE_LENGTH} characters of text on one line")
    wanted = None if images is None else list(dict.fromkeys(unicodedata.normalize("NFC", n) for n in images))
    if wanted is not None and not wanted:
        raise InvalidInputError("name at least one image to propose (or none, for every approved image)")
    with store.write() as session:
        proj = get_project(session, project, workspace)
        fork = fork_row(session, proj.id)
        if fork is None:
            raise InvalidInputError(f"project {proj.name!r} is not a fork of a base project: there is nothing to propose to")
        base = session.get(m.Project, fork.base_project_id)
        approved = _approved_image_ids(session, proj.id)
        if wanted is None:
            proposed = _already_proposed(session, proj.id)
            rows = [im for im in session.scalars(
                select(m.Image).where(m.Image.project_id == proj.id, m.Image.id.in_(approved)).order_by(m.Image.name)
            ) if im.name not in proposed] if approved else []
            if not rows:
                raise InvalidInputError(
                    f"project {proj.name!r} has no image whose labels were approved in review and not yet proposed; "
                    "review images in the queue first, or name the images to propose"
                )
        else:
            found = {im.name: im for im in session.scalars(select(m.Image).where(m.Image.project_id == proj.id, m.Image.name.in_(wanted)))}
            missing = [n for n in wanted if n not in found]
            if missing:
                raise NotFoundError(
                    f"project {proj.name!r} has no image {_shown(missing)} of its own"
                    " (an inherited image is proposed after adopting and correcting it)"
                )
            rows = [found[n] for n in wanted]
        ids = [im.id for im in rows]
        labels = _labels(session, ids)
        unlabeled = [im.name for im in rows if not labels.get(im.id) and im.id not in approved]
        if unlabeled:
            raise InvalidInputError(f"image {_shown(unlabeled)} of {proj.name!r} has no labels: label (and review) it before proposing it")
        overrides = {o.image_id: o for o in session.scalars(select(m.ForkOverride).where(m.ForkOverride.image_id.in_(ids)))}
        meta: dict[int, dict[str, Any]] = defaultdict(dict)
        for image_id, key, value in session.execute(
            select(m.ImageMetadata.image_id, m.ImageMetadata.key, m.ImageMetadata.value).where(m.ImageMetadata.image_id.in_(ids))
        ):
            meta[image_id][key] = value
        base_images = {}
        if overrides:
            base_names = [o.base_name for o in overrides.values()]
            base_images = {im.name: im for im in session.scalars(
                select(m.Image).where(m.Image.project_id == base.id, m.Image.name.in_(base_names))
            )}
        base_current = _labels(session, [im.id for im in base_images.values()])

        inverse = inverse_class_map(dict(fork.class_map))
        base_classes = set(class_names(session, base.id))
        renamed: dict[str, str] = {}
        ambiguous: dict[str, list[str]] = {}
        new_classes: set[str] = set()
        items: list[dict[str, Any]] = []
        unchanged: list[str] = []
        for im in rows:
            anns = []
            for a in labels.get(im.id, []):
                name, sources = base_label(inverse, a.label)
                if name != a.label:
                    renamed[a.label] = name
                if len(sources) > 1 and name not in sources:
                    ambiguous[a.label] = sources
                if name not in base_classes:
                    new_classes.add(name)
                anns.append(a if name == a.label else replace(a, label=name))
            override = overrides.get(im.id)
            if override is None:
                item = {"kind": "add", "name": im.name, "sha256": im.sha256, "width": im.width, "height": im.height}
                if im.split is not None:
                    item["split"] = im.split
                item |= {"metadata": dict(meta.get(im.id, {})), "annotations": [_annotation_dict(a) for a in anns]}
            else:
                upstream = base_images.get(override.base_name)
                if upstream is not None and _content(base_current.get(upstream.id, [])) == _content(anns):
                    unchanged.append(im.name)  # the base already says the same
                    continue
                item = {
                    "kind": "relabel", "name": im.name, "base_name": override.base_name,
                    "base_revision": override.base_revision, "annotations": [_annotation_dict(a) for a in anns],
                }
            items.append(item)
        if not items:
            raise InvalidInputError(f"nothing to propose: the base already has the labels of {_shown(unchanged)}")
        source = f"{workspace}/{proj.name}"
        adds = sum(1 for i in items if i["kind"] == "add")
        report = {
            "new_classes": sorted(new_classes),
            "renamed": dict(sorted(renamed.items())),
            "ambiguous": dict(sorted(ambiguous.items())),
            "unchanged": unchanged,
            "base_version": fork.base_version_id,
        }
        mr = m.MergeRequest(
            base_project_id=base.id, source_project_id=proj.id, source=source,
            title=title or _default_title(adds, len(items) - adds, source),
            state="open", items=items, report=report, created_by=user,
        )
        session.add(mr)
        session.flush()
        return _info(session, mr, with_items=True)


def list_proposals(
    store: Store, project: str, *, workspace: str = DEFAULT_WORKSPACE, state: str | None = None
) -> list[MergeRequestInfo]:
    """The merge requests ``project`` (a customer) proposed to its base, oldest first, with their
    state: what the customer sees of its proposals (the base's decisions included)."""
    return _listing(store, project, workspace, state, m.MergeRequest.source_project_id)


def _listing(store: Store, project: str, workspace: str, state: str | None, column: Any) -> list[MergeRequestInfo]:
    """The merge requests whose ``column`` (base or source project) is ``project``, without items."""
    if state is not None and state not in STATES:
        raise InvalidInputError(f"state must be one of {', '.join(STATES)}, got {state!r}")
    with store.read() as session:
        proj = get_project(session, project, workspace)
        q = select(m.MergeRequest).where(column == proj.id)
        if state is not None:
            q = q.where(m.MergeRequest.state == state)
        return [_info(session, mr, with_items=False) for mr in session.scalars(q.order_by(m.MergeRequest.id))]


# ----------------------------------------------------------------------------- the base side


def list_requests(
    store: Store, base: str, *, workspace: str = DEFAULT_WORKSPACE, state: str | None = None
) -> list[MergeRequestInfo]:
    """The merge requests proposed to ``base`` (oldest first), without their items."""
    return _listing(store, base, workspace, state, m.MergeRequest.base_project_id)


def show_request(store: Store, base: str, request_id: int, *, workspace: str = DEFAULT_WORKSPACE) -> MergeRequestInfo:
    """One merge request of ``base`` with its items."""
    with store.read() as session:
        proj = get_project(session, base, workspace)
        return _info(session, _get_request(session, proj, request_id), with_items=True)


def _open(session: Session, base: str, workspace: str, request_id: int) -> tuple[m.Project, m.MergeRequest]:
    proj = get_project(session, base, workspace)
    mr = _get_request(session, proj, request_id)
    if mr.state != "open":
        raise ConflictError(f"merge request {mr.id} of {proj.name!r} was already {mr.state}")
    return proj, mr


def _apply_add(
    session: Session, store: Store, base: m.Project, mr: m.MergeRequest, item: dict[str, Any], *,
    force: bool, user: str | None, ops: list[dict[str, Any]], cache: dict[str, int],
) -> dict[str, Any] | None:
    """Add the item's image to the base; returns a conflict (or ``None`` when applied)."""
    from winnow.services.annotations import insert_annotation, replace_labels

    name = f"{mr.source}/{item['name']}"
    anns = [_annotation(d) for d in item["annotations"]]
    existing = session.scalar(select(m.Image).where(m.Image.project_id == base.id, m.Image.name == name))
    if existing is not None:
        conflict = {"name": item["name"], "kind": "add", "reason": f"the base already has an image named {name!r}"}
        if not force:
            return conflict
        replace_labels(session, base.id, existing.id, anns, source=None, user=user, ops=ops, cache=cache)
        return conflict | {"forced": True}
    if session.get(m.Blob, item["sha256"]) is None or not store.blobs.exists(item["sha256"]):
        return {"name": item["name"], "kind": "add", "reason": "the image's bytes are no longer stored", "unfixable": True}
    image = m.Image(
        project_id=base.id, sha256=item["sha256"], name=name, split=item.get("split"), width=item["width"], height=item["height"],
    )
    session.add(image)
    session.flush()
    ops.append({"op": "insert_image", "id": image.id})
    metadata = dict(item.get("metadata") or {}) | {"proposed_by": mr.source, "merge_request": mr.id}
    for key, value in metadata.items():
        session.add(m.ImageMetadata(image_id=image.id, key=key, value=value))
    for a in anns:
        insert_annotation(session, base.id, image.id, a, source=Source(a.source).value, user=user, ops=ops, cache=cache)
    return None


def _apply_relabel(
    session: Session, base: m.Project, item: dict[str, Any], *,
    force: bool, user: str | None, ops: list[dict[str, Any]], cache: dict[str, int],
) -> dict[str, Any] | None:
    """Replace the base image's labels; returns a conflict (or ``None`` when applied cleanly)."""
    from winnow.services.annotations import replace_labels
    from winnow.services.forks import image_revision

    image = session.scalar(select(m.Image).where(m.Image.project_id == base.id, m.Image.name == item["base_name"]))
    if image is None:
        return {
            "name": item["name"], "kind": "relabel", "base_name": item["base_name"],
            "reason": "the base no longer has this image", "unfixable": True,
        }
    current = image_revision(_labels(session, [image.id]).get(image.id, []))
    conflict = None
    if current != item["base_revision"]:
        conflict = {
            "name": item["name"], "kind": "relabel", "base_name": item["base_name"],
            "reason": "the base changed this image's labels since the proposal",
            "base_revision": item["base_revision"], "current_revision": current,
        }
        if not force:
            return conflict
        conflict["forced"] = True
    replace_labels(session, base.id, image.id, [_annotation(d) for d in item["annotations"]], source=None, user=user, ops=ops, cache=cache)
    return conflict


def accept(
    store: Store, base: str, request_id: int, *, workspace: str = DEFAULT_WORKSPACE, user: str | None = None, force: bool = False,
) -> MergeRequestInfo:
    """Apply an open request's items to ``base`` in one transaction, recorded as one
    ``merge_request`` change (``winnow undo BASE`` reverts it).

    An item that conflicts (a relabel of a base image changed since the proposal, an add whose
    name the base already has) is skipped and listed in ``report["conflicts"]``; ``force`` applies
    it anyway (``"forced": true``). Items that cannot apply (the base image or the bytes are gone)
    are always skipped. When no item applies the request stays open (:class:`ConflictError`)."""
    from winnow.services.fixes import record_change

    with store.write() as session:
        proj, mr = _open(session, base, workspace, request_id)
        ops: list[dict[str, Any]] = []
        cache: dict[str, int] = {}
        applied: list[str] = []
        conflicts: list[dict[str, Any]] = []
        before = set(class_names(session, proj.id))
        for item in mr.items or []:
            if item["kind"] == "add":
                conflict = _apply_add(session, store, proj, mr, item, force=force, user=user, ops=ops, cache=cache)
            else:
                conflict = _apply_relabel(session, proj, item, force=force, user=user, ops=ops, cache=cache)
            if conflict is not None:
                conflicts.append(conflict)
            if conflict is None or conflict.get("forced"):
                applied.append(item["name"])
        if not applied:
            reasons = "; ".join(f"{c['name']}: {c['reason']}" for c in conflicts[:_MAX_SHOWN])
            hint = "" if all(c.get("unfixable") for c in conflicts) else " (accept with force to apply them anyway)"
            raise ConflictError(f"no item of merge request {mr.id} applies to {proj.name!r}: {reasons}{hint}; reject it instead")
        adds = sum(1 for i in mr.items if i["kind"] == "add" and i["name"] in applied)
        relabels = len(applied) - adds
        description = f"merge request {mr.id} from {mr.source}: {adds} images added, {relabels} relabelled"
        mr.change_id = record_change(session, proj.id, "merge_request", description, ops, user)
        mr.state = "accepted"
        mr.decided_at, mr.decided_by = m.utcnow(), user
        mr.report = dict(mr.report or {}) | {
            "applied": applied,
            "added": adds,
            "relabelled": relabels,
            "conflicts": conflicts,
            "classes_created": [c for c in class_names(session, proj.id) if c not in before],
        }
        proj.updated_at = m.utcnow()
        session.flush()
        return _info(session, mr, with_items=False)


def reject(
    store: Store, base: str, request_id: int, *, workspace: str = DEFAULT_WORKSPACE, user: str | None = None,
    reason: str | None = None,
) -> MergeRequestInfo:
    """Close an open request without touching the base; ``reason`` is kept in its report."""
    if reason is not None and (not isinstance(reason, str) or len(reason) > MAX_REASON_LENGTH):
        raise InvalidInputError(f"a reason is text of at most {MAX_REASON_LENGTH} characters")
    with store.write() as session:
        _, mr = _open(session, base, workspace, request_id)
        mr.state = "rejected"
        mr.decided_at, mr.decided_by = m.utcnow(), user
        mr.report = dict(mr.report or {}) | {"reason": reason}
        session.flush()
        return _info(session, mr, with_items=False)


__all__ = [
    "ITEM_KINDS", "STATES", "MergeRequestInfo", "accept", "base_label", "inverse_class_map", "list_requests", "propose",
    "reject", "show_request",
]


def referenced_request_blobs(store: Store) -> set[str]:
    """The blobs that open merge requests propose to add: ``gc`` keeps them, so a request stays
    acceptable after the customer deletes its own copy of the image."""
    with store.read() as session:
        rows = session.scalars(select(m.MergeRequest.items).where(m.MergeRequest.state == "open"))
        return {item["sha256"] for items in rows for item in items or () if item.get("kind") == "add" and item.get("sha256")}
