"""Customer projects forked from a base version: fork, inherit, adopt, rebase, and the fleet.

``winnow project fork BASE@VERSION CUSTOMER`` makes a project that **inherits** the base version
by reference: one row (:class:`~winnow.store.models.ProjectFork`) names the base version, whose
manifest is immutable and content-addressed, so nothing is copied (not the images' bytes, not
their rows) and a fork of a 100,000-image base costs the same as one of 10. The customer adds
its own images, labels and metadata on top.

How the layers meet:

- **Versions.** A customer version is the customer's own labelled images plus the inherited ones
  (:func:`inherited_records`): every image of the base version except its ``test`` split (the
  base's test set is the base's; a customer is judged on its own test set), named
  ``base/<name>``, with ``{"origin": "base"}`` metadata and labels under the customer's class
  names (the fork's class map, :mod:`winnow.services.schema`). Their splits are the base's.
- **Adopt** (copy on write): to correct an inherited image's labels the customer adopts it
  (:func:`adopt_images`): a row of its own with the same bytes (blob), name ``base/<name>`` and
  labels, which then shadows the inherited one. The adoption records the base's revision of the
  image and the copy's, which is how a rebase tells who changed what.
- **Rebase** (:func:`rebase`): move to a newer base version. The report lists what the base
  changed (images, labels, classes) and the **conflicts**: adopted images that both the base and
  the customer changed. By default the customer's labels are kept (``ours``); ``theirs`` takes
  the base's. Adopted images only the base changed follow the base.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from winnow.config import DEFAULT_WORKSPACE
from winnow.core.types import (
    ORIGIN_BASE,
    ORIGIN_KEY,
    Annotation,
    ImageRecord,
    Source,
    Task,
)
from winnow.errors import ConflictError, InvalidInputError, NotFoundError
from winnow.services.projects import create_project, get_project
from winnow.store import models as m
from winnow.store.db import Store
from winnow.versions.manifest import Manifest, annotation_revision

#: Inherited images are named ``base/<name in the base version>`` in the customer's versions.
INHERITED_PREFIX = "base/"
#: The setting that keeps a fork's rebase reports, newest last.
REBASES_SETTING = "fork.rebases"
_KEPT_REBASES = 50


def image_revision(annotations: list[Annotation]) -> str:
    """What an image's labels say, as one hash (independent of ids and order)."""
    revs = sorted(annotation_revision(a) for a in annotations)
    return hashlib.sha256("\n".join(revs).encode()).hexdigest()[:32]


def _said(annotations: list[Annotation]) -> str:
    """What an image's labels say (classes, geometry, flags, attributes), not who made them: the
    ``source`` and a model's ``score`` are left out, so a reviewer saving a label unchanged, or
    the same correction made with another tool, is no change to a rebase."""
    return image_revision([replace(a, source=Source.HUMAN, score=None) for a in annotations])


def inherited_name(base_name: str) -> str:
    return INHERITED_PREFIX + base_name


# ----------------------------------------------------------------------------- lookups


def fork_row(session: Session, project_id: int) -> m.ProjectFork | None:
    return session.get(m.ProjectFork, project_id)


def _base_facts(session: Session, fork: m.ProjectFork) -> tuple[m.Project, str, m.Version]:
    base = session.get(m.Project, fork.base_project_id)
    ws = session.get(m.Workspace, base.workspace_id).name
    version = session.scalar(
        select(m.Version).where(m.Version.project_id == base.id, m.Version.version_id == fork.base_version_id)
    )
    if version is None:  # versions are never deleted while their project lives
        raise NotFoundError(f"base version {fork.base_version_id[:12]} of {base.name!r} no longer exists")
    return base, ws, version


def visible_base_project_ids(session: Session, workspace: str) -> list[int]:
    """The base projects of the workspace's forks: readable (never writable) from the workspace."""
    return list(
        session.scalars(
            select(m.ProjectFork.base_project_id)
            .join(m.Project, m.Project.id == m.ProjectFork.project_id)
            .join(m.Workspace)
            .where(m.Workspace.name == workspace)
            .distinct()
        )
    )


def fork_project_ids(session: Session, base_project_ids: list[int]) -> list[int]:
    """The customer projects forked from any of ``base_project_ids``."""
    if not base_project_ids:
        return []
    return list(session.scalars(select(m.ProjectFork.project_id).where(m.ProjectFork.base_project_id.in_(base_project_ids))))


@dataclass
class ForkInfo:
    """What ``winnow project fork|base`` prints. Field names are part of the ``--json`` contract."""

    project: str
    workspace: str
    base_project: str
    base_workspace: str
    base_version: str
    base_version_number: int
    latest_base_version_number: int
    behind: bool  # the base has newer versions
    class_map: dict[str, Any]
    adopted: int
    created_at: str
    rebased_at: str | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"base_ref": f"{self.base_project}@v{self.base_version_number}"}


def _info(session: Session, proj: m.Project, fork: m.ProjectFork) -> ForkInfo:
    from sqlalchemy import func

    base, base_ws, version = _base_facts(session, fork)
    latest = session.scalar(select(func.max(m.Version.number)).where(m.Version.project_id == base.id)) or version.number
    adopted = session.scalar(select(func.count()).select_from(m.ForkOverride).where(m.ForkOverride.project_id == proj.id))
    return ForkInfo(
        project=proj.name,
        workspace=session.get(m.Workspace, proj.workspace_id).name,
        base_project=base.name,
        base_workspace=base_ws,
        base_version=version.version_id,
        base_version_number=version.number,
        latest_base_version_number=latest,
        behind=latest > version.number,
        class_map=dict(fork.class_map),
        adopted=adopted or 0,
        created_at=fork.created_at.isoformat(timespec="seconds") + "Z",
        rebased_at=fork.rebased_at.isoformat(timespec="seconds") + "Z" if fork.rebased_at else None,
    )


def show_fork(store: Store, project: str, *, workspace: str = DEFAULT_WORKSPACE) -> ForkInfo:
    with store.read() as session:
        proj = get_project(session, project, workspace)
        fork = fork_row(session, proj.id)
        if fork is None:
            raise NotFoundError(f"project {proj.name!r} is not a fork of a base project")
        return _info(session, proj, fork)


def list_forks(store: Store, base: str, *, workspace: str = DEFAULT_WORKSPACE) -> list[ForkInfo]:
    """Every customer project forked from ``base`` (in any workspace), by workspace and name."""
    with store.read() as session:
        base_proj = get_project(session, base, workspace)
        rows = session.execute(
            select(m.Project, m.ProjectFork)
            .join(m.ProjectFork, m.ProjectFork.project_id == m.Project.id)
            .where(m.ProjectFork.base_project_id == base_proj.id)
        ).all()
        infos = [_info(session, p, f) for p, f in rows]
    return sorted(infos, key=lambda i: (i.workspace, i.project))


# ----------------------------------------------------------------------------- fork


def fork_project(
    store: Store,
    base: str,
    base_ref: str | None,
    customer: str,
    *,
    workspace: str = DEFAULT_WORKSPACE,
    base_workspace: str = DEFAULT_WORKSPACE,
    user: str | None = None,
) -> ForkInfo:
    """Create ``customer`` in ``workspace`` as a fork of ``base@base_ref`` (no copy; O(1))."""
    from winnow.services.versions import resolve_version

    with store.read() as session:
        base_proj = get_project(session, base, base_workspace)
        version = resolve_version(session, base_proj, base_ref)
        base_id, task, version_id = base_proj.id, base_proj.task, version.version_id
        classes = list(version.summary["classes"])
    create_project(store, customer, task, workspace)
    with store.write() as session:
        proj = get_project(session, customer, workspace)
        if session.get(m.Project, base_id) is None:
            raise ConflictError(f"base project {base!r} was deleted while it was being forked")
        fork = m.ProjectFork(
            project_id=proj.id, base_project_id=base_id, base_version_id=version_id,
            class_map={c: c for c in classes}, created_by=user,
        )
        session.add(fork)
        session.flush()
        return _info(session, proj, fork)


# ----------------------------------------------------------------------------- inherit


def _load_base_manifest(store: Store, session_facts: tuple[str, str, str]) -> Manifest:
    from winnow.services.versions import load_version

    base_name, base_ws, version_id = session_facts
    return load_version(store, base_name, version_id, workspace=base_ws).manifest


def _inherit(rec: ImageRecord, class_map: dict[str, Any]) -> ImageRecord:
    from winnow.services.schema import map_annotations

    return ImageRecord(
        name=inherited_name(rec.name),
        width=rec.width,
        height=rec.height,
        annotations=map_annotations(class_map, rec.annotations),
        split=rec.split or "train",
        tags=list(rec.tags),
        metadata=dict(rec.metadata) | {ORIGIN_KEY: ORIGIN_BASE},
        file=rec.file,
        sha256=rec.sha256,
    )


@dataclass
class Inherited:
    """A fork's inherited records for a new version, and what its recipe and summary record."""

    records: list[ImageRecord]
    classes: list[str]  # the customer's names of the base classes, in the base's order
    recipe: dict[str, Any]  # goes into the version's recipe (so into its id)
    left_out: dict[str, int] = field(default_factory=dict)


def inherited_records(store: Store, project: str, *, workspace: str = DEFAULT_WORKSPACE) -> Inherited | None:
    """The base version's images as the customer sees them (``None`` when ``project`` is no fork)."""
    from winnow.services.schema import mapped_classes

    with store.read() as session:
        proj = get_project(session, project, workspace)
        fork = fork_row(session, proj.id)
        if fork is None:
            return None
        base, base_ws, version = _base_facts(session, fork)
        facts = (base.name, base_ws, version.version_id)
        class_map = dict(fork.class_map)
        version_number = version.number
    manifest = _load_base_manifest(store, facts)
    task = Task(manifest.task)
    records: list[ImageRecord] = []
    left_out = {"test": 0, "no_labels": 0}
    for rec in manifest.images:
        if rec.split == "test":
            left_out["test"] += 1
            continue
        inherited = _inherit(rec, class_map)
        if task is Task.CLASSIFY and not inherited.annotations:
            left_out["no_labels"] += 1
            continue
        records.append(inherited)
    recipe = {
        "project": facts[0], "workspace": facts[1], "version": facts[2], "number": version_number,
        "class_map": class_map,
    }
    return Inherited(records, mapped_classes(class_map, manifest.classes), recipe, left_out)


# ----------------------------------------------------------------------------- adopt (copy on write)


def _strip(name: str) -> str:
    return name[len(INHERITED_PREFIX):] if name.startswith(INHERITED_PREFIX) else name


def adopt_images(
    store: Store, project: str, names: list[str], *, workspace: str = DEFAULT_WORKSPACE, user: str | None = None
) -> dict[str, Any]:
    """Copy inherited images into the customer project (rows only; the bytes are the base's blob)
    so their labels can be corrected. ``names``: base names, with or without ``base/``."""
    from winnow.services.annotations import add_tag, insert_annotation
    from winnow.services.fixes import record_change

    if not names:
        raise InvalidInputError("name at least one inherited image to adopt")
    with store.read() as session:
        proj = get_project(session, project, workspace)
        fork = fork_row(session, proj.id)
        if fork is None:
            raise InvalidInputError(f"project {proj.name!r} is not a fork: it has no inherited images")
        base, base_ws, version = _base_facts(session, fork)
        facts = (base.name, base_ws, version.version_id)
        class_map = dict(fork.class_map)
    by_name = {r.name: r for r in _load_base_manifest(store, facts).images}
    wanted = list(dict.fromkeys(_strip(n) for n in names))
    if missing := [n for n in wanted if n not in by_name]:
        raise NotFoundError(f"the base version has no image {missing[0]!r}" + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
    if in_test := [n for n in wanted if by_name[n].split == "test"]:
        raise InvalidInputError(f"{in_test[0]!r} is in the base's test split, which a fork does not inherit")
    adopted: list[str] = []
    already: list[str] = []
    with store.write() as session:
        proj = get_project(session, project, workspace)
        ops: list[dict[str, Any]] = []
        cache: dict[str, int] = {}
        for base_name in wanted:
            rec = _inherit(by_name[base_name], class_map)
            if session.scalar(select(m.Image.id).where(m.Image.project_id == proj.id, m.Image.name == rec.name)) is not None:
                already.append(rec.name)
                continue
            image = m.Image(project_id=proj.id, sha256=rec.sha256, name=rec.name, split=rec.split, width=rec.width, height=rec.height)
            session.add(image)
            session.flush()
            ops.append({"op": "insert_image", "id": image.id})
            for ann in rec.annotations:
                insert_annotation(session, proj.id, image.id, ann, source=ann.source.value, user=user, ops=ops, cache=cache)
            for tag in rec.tags:
                add_tag(session, image.id, tag, ops)
            for key, value in rec.metadata.items():
                session.add(m.ImageMetadata(image_id=image.id, key=key, value=value))
            session.add(m.ForkOverride(
                image_id=image.id, project_id=proj.id, base_name=base_name,
                base_revision=image_revision(by_name[base_name].annotations),
            ))
            adopted.append(rec.name)
        session.flush()
        change_id = record_change(session, proj.id, "adopt", f"adopted {len(adopted)} inherited images", ops, user) if adopted else None
    return {"project": project, "adopted": adopted, "already_adopted": already, "change_id": change_id}


def _adopted_records(store: Store, project: str, workspace: str, base_names: list[str]) -> dict[int, ImageRecord]:
    """The customer's copies of the adopted images (by image id), with their labels: only those
    rows, not the whole project."""
    from winnow.services.datasets import get_image

    out: dict[int, ImageRecord] = {}
    for base_name in base_names:
        try:
            rec = get_image(store, project, inherited_name(base_name), workspace=workspace)
        except NotFoundError:  # deleted meanwhile
            continue
        out[rec.id] = rec
    return out


# ----------------------------------------------------------------------------- rebase


@dataclass
class RebaseReport:
    """What ``winnow project rebase`` did (or would do). Field names are part of the ``--json`` contract."""

    project: str
    base_project: str
    from_version: str
    to_version: str
    from_number: int
    to_number: int
    dry_run: bool
    strategy: str  # "ours" | "theirs"
    base_changes: dict[str, Any]  # images added/removed/replaced, annotation changes, classes
    schema_notes: list[str]
    class_map: dict[str, Any]
    followed: list[str]  # adopted images only the base changed: now the base's labels
    conflicts: list[dict[str, Any]]  # adopted images both changed
    removed_in_base: list[str]  # adopted images the new base version no longer has

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _labels(annotations: list[Annotation]) -> dict[str, int]:
    out: dict[str, int] = {}
    for a in annotations:
        out[a.label] = out.get(a.label, 0) + 1
    return dict(sorted(out.items()))


def rebase(
    store: Store,
    project: str,
    base_ref: str | None = None,
    *,
    workspace: str = DEFAULT_WORKSPACE,
    theirs: bool = False,
    dry_run: bool = False,
    user: str | None = None,
) -> RebaseReport:
    """Move the fork onto version ``base_ref`` (``latest`` when ``None``) of its base."""
    from winnow.services.annotations import replace_labels
    from winnow.services.fixes import record_change
    from winnow.services.schema import apply_base_migration, map_annotations, migrations_between
    from winnow.services.versions import resolve_version
    from winnow.versions.diff import diff_manifests

    with store.read() as session:
        proj = get_project(session, project, workspace)
        fork = fork_row(session, proj.id)
        if fork is None:
            raise InvalidInputError(f"project {proj.name!r} is not a fork: there is nothing to rebase")
        base, base_ws, old_version = _base_facts(session, fork)
        new_version = resolve_version(session, base, base_ref)
        if new_version.number < old_version.number:
            raise InvalidInputError(
                f"{base.name}@v{new_version.number} is older than the version the fork is on (v{old_version.number})"
            )
        old_seq = (old_version.summary.get("schema") or {}).get("seq", 0)
        new_seq = (new_version.summary.get("schema") or {}).get("seq", 0)
        migrations = [(r.op, dict(r.params)) for r in migrations_between(session, base.id, old_seq, new_seq)]
        class_map = dict(fork.class_map)
        old_map = dict(fork.class_map)
        overrides = [(o.image_id, o.base_name) for o in
                     session.scalars(select(m.ForkOverride).where(m.ForkOverride.project_id == proj.id))]
        old_facts = (base.name, base_ws, old_version.version_id)
        new_facts = (base.name, base_ws, new_version.version_id)
        numbers = (old_version.number, new_version.number)
    old_manifest = _load_base_manifest(store, old_facts)
    new_manifest = _load_base_manifest(store, new_facts)

    notes: list[str] = []
    for op, params in migrations:
        notes.extend(apply_base_migration(class_map, op, params))
    for c in new_manifest.classes:
        if c not in class_map:
            clash = [k for k, v in class_map.items() if c in (v["into"] + [v["default"]] if isinstance(v, dict) else [v])]
            class_map[c] = c
            notes.append(f"base added class {c!r}" + (
                f", which is already the customer's name for {', '.join(map(repr, clash))}: both arrive as {c!r} "
                f"(`winnow class rename` one of them to keep them apart)" if clash else ""))
    gone = [c for c in class_map if c not in new_manifest.classes and c in old_manifest.classes]
    notes.extend(f"base no longer uses class {c!r}" for c in gone)

    diff = diff_manifests(old_manifest, new_manifest, a_ref=f"v{numbers[0]}", b_ref=f"v{numbers[1]}")
    base_changes = {
        "images_added": len(diff.images_added),
        "images_removed": len(diff.images_removed),
        "images_replaced": len(diff.images_replaced),
        "moved": len(diff.moved),
        "annotations": diff.annotations,
        "classes_added": diff.classes_added,
        "classes_removed": diff.classes_removed,
    }

    new_by_name = {r.name: r for r in new_manifest.images}
    old_by_name = {r.name: r for r in old_manifest.images}
    by_id = _adopted_records(store, project, workspace, [base_name for _, base_name in overrides])
    followed: list[str] = []
    conflicts: list[dict[str, Any]] = []
    removed: list[str] = []
    relabel: dict[int, list[Annotation]] = {}  # adopted image id -> the base's labels it takes
    revisions: dict[int, str] = {}  # adopted image id -> its revision in the new base version
    for image_id, base_name in overrides:
        mine = by_id.get(image_id)
        if mine is None:
            continue
        upstream = new_by_name.get(base_name)
        if upstream is None:
            removed.append(mine.name)
            continue
        revisions[image_id] = image_revision(upstream.annotations)
        # compared in the customer's class names, so renames on either side are no change
        before = map_annotations(old_map, old_by_name[base_name].annotations) if base_name in old_by_name else []
        after = map_annotations(class_map, upstream.annotations)
        said_before, said_after, said_mine = _said(before), _said(after), _said(mine.annotations)
        if said_after in (said_before, said_mine):
            continue  # the base did not change it, or both made the same change
        if said_mine == said_before:  # only the base changed it
            followed.append(mine.name)
            relabel[image_id] = after
            continue
        conflicts.append({
            "image": mine.name,
            "base_before": _labels(before),
            "base_after": _labels(after),
            "customer": _labels(mine.annotations),
            "kept": "theirs" if theirs else "ours",
        })
        if theirs:
            relabel[image_id] = after

    report = RebaseReport(
        project=project, base_project=old_facts[0], from_version=old_facts[2], to_version=new_facts[2],
        from_number=numbers[0], to_number=numbers[1], dry_run=dry_run, strategy="theirs" if theirs else "ours",
        base_changes=base_changes, schema_notes=notes, class_map=class_map, followed=followed, conflicts=conflicts,
        removed_in_base=removed,
    )
    if dry_run:
        return report
    from winnow.services.projects import get_setting, set_setting

    with store.write() as session:
        proj = get_project(session, project, workspace)
        fork = fork_row(session, proj.id)
        if fork is None or fork.base_version_id != old_facts[2]:
            raise ConflictError(f"project {proj.name!r} was rebased meanwhile; run the rebase again")
        # first, so that undo (which replays in reverse) puts the fork back on its old version last
        ops: list[dict[str, Any]] = [{
            "op": "update_fork", "project_id": proj.id,
            "before": {"base_version_id": fork.base_version_id, "class_map": dict(fork.class_map),
                       "rebased_at": fork.rebased_at.isoformat() if fork.rebased_at else None,
                       "base_revisions": {str(i): session.get(m.ForkOverride, i).base_revision for i in revisions}},
        }]
        cache: dict[str, int] = {}
        for image_id, labels in relabel.items():
            replace_labels(session, proj.id, image_id, labels, source=None, user=user, ops=ops, cache=cache)
        for image_id, revision in revisions.items():  # what a merge request of these images is checked against
            session.get(m.ForkOverride, image_id).base_revision = revision
        fork.base_version_id = new_facts[2]
        fork.class_map = class_map
        fork.rebased_at = m.utcnow()
        record_change(
            session, proj.id, "rebase", f"rebase onto {old_facts[0]}@v{numbers[1]} ({len(relabel)} adopted images relabelled)", ops, user
        )
        history = list(get_setting(session, proj.id, REBASES_SETTING) or [])
        history.append({"at": m.utcnow().isoformat(timespec="seconds") + "Z", "by": user} | report.as_dict())
        set_setting(session, proj.id, REBASES_SETTING, history[-_KEPT_REBASES:], user)
    return report


def may_fork_into(store: Store, workspace: str, owner_workspace_id: int) -> bool:
    """Whether a team (``owner_workspace_id``) may put a fork in ``workspace``: a new workspace,
    its own, or one already holding a fork of one of its projects (a customer of that team). Any
    other workspace is someone else's tenant."""
    with store.read() as session:
        ws = session.scalar(select(m.Workspace).where(m.Workspace.name == workspace))
        if ws is None or ws.id == owner_workspace_id:
            return True
        ours = (
            select(m.ProjectFork.project_id)
            .join(m.Project, m.Project.id == m.ProjectFork.base_project_id)
            .where(m.Project.workspace_id == owner_workspace_id)
        )
        held = session.scalar(select(m.Project.id).where(m.Project.workspace_id == ws.id, m.Project.id.in_(ours)).limit(1))
        return held is not None


def customer_of(store: Store, base_project_id: int, workspace: str, customer: str) -> str | None:
    """The stored name of ``workspace``'s project ``customer`` when it is a fork of the base
    ``base_project_id``; ``None`` otherwise (missing, or a fork of something else)."""
    with store.read() as session:
        try:
            proj = get_project(session, customer, workspace)
        except NotFoundError:
            return None
        fork = fork_row(session, proj.id)
        return proj.name if fork is not None and fork.base_project_id == base_project_id else None


def adopted_names(store: Store, project_id: int, names: list[str]) -> set[str]:
    """Which of the inherited ``names`` (``base/...``) the project has adopted (own rows)."""
    with store.read() as session:
        return set(session.scalars(select(m.Image.name).where(m.Image.project_id == project_id, m.Image.name.in_(names))))


def model_class_map(
    session: Session, model: m.Model, project_id: int, recipe: dict[str, Any] | None = None
) -> dict[str, Any] | None:
    """How a model's class names read in ``project_id``: a class map when the model is the fork's
    base's (a base model evaluated on a customer's test set), else ``None`` (no mapping).

    The map is the one the evaluated version was made with (``recipe["base"]["class_map"]``),
    so a class renamed since then does not change how an old version is scored; the fork's
    current map when no recipe is given."""
    fork = fork_row(session, project_id)
    if fork is None or model.project_id != fork.base_project_id:
        return None
    made_with = (recipe or {}).get("base") or {}
    return dict(made_with.get("class_map") or fork.class_map)


def ensure_deletable(session: Session, project: m.Project) -> None:
    """A base project with forks cannot be deleted (the forks read its versions)."""
    forks = session.execute(
        select(m.Project.name, m.Workspace.name)
        .join(m.ProjectFork, m.ProjectFork.project_id == m.Project.id)
        .join(m.Workspace, m.Workspace.id == m.Project.workspace_id)
        .where(m.ProjectFork.base_project_id == project.id)
    ).all()
    if forks:
        names = ", ".join(f"{ws}/{p}" for p, ws in forks[:5])
        raise ConflictError(f"project {project.name!r} is the base of {len(forks)} fork(s) ({names}); delete them first")

