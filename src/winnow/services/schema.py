"""A project's class schema and its migrations: ``add``, ``rename``, ``merge``, ``split`` and (in a
fork) ``drop`` of an inherited class.

Each change is applied to the project's own annotations at once and recorded as a numbered
migration (``class_migrations``); a version records the last migration it was made with
(``summary["schema"]``). A migration is forward-only, like a database migration: to reverse a
rename, rename back (a new migration).

In a customer project (a fork, :mod:`winnow.services.forks`) the same change also updates the
fork's **class map**: base class name -> the customer's name for it. The inherited annotations are
not copied, so the map is applied when a version is made. A map value is a class name, ``None``
(the customer drops that base class) or a split rule ``{"by": KEY, "into": [...], "default": NAME}``
(each inherited annotation goes to the class named by its attribute ``KEY`` when that is one of
``into``, else to ``default``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from winnow.config import DEFAULT_WORKSPACE
from winnow.core.types import Annotation
from winnow.errors import ConflictError, InvalidInputError, NotFoundError
from winnow.services.annotations import clean_label
from winnow.services.projects import class_names, get_project
from winnow.store import models as m
from winnow.store.db import Store

OPS = ("add", "rename", "merge", "split", "drop")

ClassMap = dict[str, Any]


# ----------------------------------------------------------------------------- the class map


def map_label(class_map: Mapping[str, Any], ann: Annotation) -> str | None:
    """The customer's class for an inherited annotation (``None``: dropped)."""
    target = class_map.get(ann.label, ann.label)
    if isinstance(target, dict):
        value = (ann.attributes or {}).get(target["by"])
        return value if value in target["into"] else target["default"]
    return target


def map_annotations(class_map: Mapping[str, Any], annotations: Iterable[Annotation]) -> list[Annotation]:
    """Inherited annotations under the customer's class names (dropped classes left out)."""
    out = []
    for a in annotations:
        label = map_label(class_map, a)
        if label is not None:
            out.append(a if label == a.label else replace(a, label=label))
    return out


def mapped_classes(class_map: Mapping[str, Any], base_classes: Iterable[str]) -> list[str]:
    """The customer's names for the base classes, in the base's order, each once."""
    out: list[str] = []
    for name in base_classes:
        target = class_map.get(name, name)
        names = [] if target is None else ([*target["into"], target["default"]] if isinstance(target, dict) else [target])
        out.extend(n for n in names if n not in out)
    return out


def _targets(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, dict):
        return [*value["into"], value["default"]]
    return [value]


def _rename_in_map(class_map: ClassMap, renames: Mapping[str, str]) -> int:
    """Rename customer-side names in the map's values; returns how many base classes it touched."""
    touched = 0
    for key, value in list(class_map.items()):
        if isinstance(value, dict):
            into = [renames.get(v, v) for v in value["into"]]
            new = {"by": value["by"], "into": list(dict.fromkeys(into)), "default": renames.get(value["default"], value["default"])}
            if new != value:
                class_map[key], touched = new, touched + 1
        elif value in renames:
            class_map[key], touched = renames[value], touched + 1
    return touched


def apply_base_migration(class_map: ClassMap, op: str, params: Mapping[str, Any]) -> list[str]:
    """Carry a migration of the *base* schema into a fork's map (its keys are base names).

    The customer's names never change under it: when the base renames ``square`` to ``box``,
    inherited ``box`` annotations still arrive as the customer's ``square`` (the class its own
    annotations use); a base split arrives as the class the customer had. Returns notes for the
    rebase report.
    """
    notes: list[str] = []
    if op == "add":
        class_map.setdefault(params["name"], params["name"])
    elif op == "rename":
        old, new = params["old"], params["new"]
        if old in class_map:
            value = class_map.pop(old)
            class_map[new] = value
            notes.append(f"base renamed {old!r} to {new!r}; it stays {describe_target(value)} here (`winnow class rename` to follow)")
    elif op == "merge":
        sources, into = params["sources"], params["into"]
        values = [class_map.pop(s) for s in sources if s in class_map]
        if into not in class_map:
            distinct = {repr(v) for v in values}
            class_map[into] = values[0] if len(distinct) == 1 else into
        notes.append(f"base merged {', '.join(map(repr, sources))} into {into!r}; it arrives as {describe_target(class_map[into])}")
    elif op == "split":
        source, into = params["source"], params["into"]
        value = class_map.pop(source, source)
        for t in into:
            class_map.setdefault(t, value)
        notes.append(f"base split {source!r} into {', '.join(map(repr, into))}; they arrive as {describe_target(value)}")
    return notes


def describe_target(value: Any) -> str:
    """A class map value as a person reads it: a class name, ``dropped`` or the split rule."""
    if value is None:
        return "dropped"
    if isinstance(value, dict):
        return f"split by {value['by']!r} into {', '.join(value['into'])} (default {value['default']})"
    return repr(value)


# ----------------------------------------------------------------------------- reading


@dataclass
class Schema:
    """What ``winnow class list`` prints. Field names are part of the ``--json`` contract."""

    project: str
    classes: list[str]
    seq: int
    class_map: dict[str, Any] | None
    migrations: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def current_seq(session: Session, project_id: int) -> int:
    return session.scalar(select(func.max(m.ClassMigration.seq)).where(m.ClassMigration.project_id == project_id)) or 0


def migrations_between(session: Session, project_id: int, after: int, upto: int | None = None) -> list[m.ClassMigration]:
    """The project's migrations with ``after < seq <= upto``, oldest first."""
    q = select(m.ClassMigration).where(m.ClassMigration.project_id == project_id, m.ClassMigration.seq > after)
    if upto is not None:
        q = q.where(m.ClassMigration.seq <= upto)
    return list(session.scalars(q.order_by(m.ClassMigration.seq)))


def _migration_dict(row: m.ClassMigration) -> dict[str, Any]:
    return {
        "seq": row.seq, "op": row.op, "params": row.params, "annotations": row.annotations,
        "created_at": row.created_at.isoformat(timespec="seconds") + "Z", "created_by": row.created_by,
    }


def _fork(session: Session, project_id: int) -> m.ProjectFork | None:
    return session.get(m.ProjectFork, project_id)


def project_classes(session: Session, project: m.Project) -> list[str]:
    """The project's classes: a fork's mapped base classes first, then its own."""
    own = class_names(session, project.id)
    fork = _fork(session, project.id)
    if fork is None:
        return own
    base_version = session.scalar(
        select(m.Version).where(m.Version.project_id == fork.base_project_id, m.Version.version_id == fork.base_version_id)
    )
    base_classes = list(base_version.summary["classes"]) if base_version is not None else list(fork.class_map)
    inherited = mapped_classes(fork.class_map, [*base_classes, *(k for k in fork.class_map if k not in base_classes)])
    return inherited + [c for c in own if c not in inherited]


def show_schema(store: Store, project: str, *, workspace: str = DEFAULT_WORKSPACE) -> Schema:
    with store.read() as session:
        proj = get_project(session, project, workspace)
        fork = _fork(session, proj.id)
        return Schema(
            project=proj.name,
            classes=project_classes(session, proj),
            seq=current_seq(session, proj.id),
            class_map=dict(fork.class_map) if fork is not None else None,
            migrations=[_migration_dict(r) for r in migrations_between(session, proj.id, 0)],
        )


# ----------------------------------------------------------------------------- changing


@dataclass
class Migration:
    """What one ``winnow class ...`` did. Field names are part of the ``--json`` contract."""

    project: str
    seq: int
    op: str
    params: dict[str, Any]
    annotations: int  # own annotations changed
    inherited_classes: int  # base classes whose mapping changed (forks)
    classes: list[str]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _own_class(session: Session, project_id: int, name: str) -> m.ProjectClass | None:
    return session.scalar(select(m.ProjectClass).where(m.ProjectClass.project_id == project_id, m.ProjectClass.name == name))


def _ensure_class(session: Session, project_id: int, name: str) -> m.ProjectClass:
    row = _own_class(session, project_id, name)
    if row is None:
        last = session.scalar(select(func.max(m.ProjectClass.position)).where(m.ProjectClass.project_id == project_id))
        row = m.ProjectClass(project_id=project_id, name=name, position=0 if last is None else last + 1)
        session.add(row)
        session.flush()
    return row


def _record(
    session: Session, proj: m.Project, op: str, params: dict[str, Any], changed: int, inherited: int, user: str | None
) -> Migration:
    seq = current_seq(session, proj.id) + 1
    session.add(m.ClassMigration(project_id=proj.id, seq=seq, op=op, params=params, annotations=changed, created_by=user))
    session.flush()
    return Migration(proj.name, seq, op, params, changed, inherited, project_classes(session, proj))


def _known(session: Session, proj: m.Project, name: str) -> None:
    if name not in project_classes(session, proj):
        raise NotFoundError(f"project {proj.name!r} has no class {name!r}")


def _free(session: Session, proj: m.Project, name: str) -> None:
    if name in project_classes(session, proj):
        raise ConflictError(f"project {proj.name!r} already has a class {name!r}; merge into it instead")


def add_class(store: Store, project: str, name: str, *, workspace: str = DEFAULT_WORKSPACE, user: str | None = None) -> Migration:
    name = clean_label(name)
    with store.write() as session:
        proj = get_project(session, project, workspace)
        _free(session, proj, name)
        _ensure_class(session, proj.id, name)
        return _record(session, proj, "add", {"name": name}, 0, 0, user)


def rename_class(
    store: Store, project: str, old: str, new: str, *, workspace: str = DEFAULT_WORKSPACE, user: str | None = None
) -> Migration:
    new = clean_label(new)
    with store.write() as session:
        proj = get_project(session, project, workspace)
        _known(session, proj, old)
        _free(session, proj, new)
        changed = 0
        row = _own_class(session, proj.id, old)
        if row is not None:
            changed = session.scalar(select(func.count()).select_from(m.Annotation).where(m.Annotation.class_id == row.id)) or 0
            row.name = new
        inherited = 0
        if (fork := _fork(session, proj.id)) is not None:
            class_map = dict(fork.class_map)
            inherited = _rename_in_map(class_map, {old: new})
            fork.class_map = class_map
        return _record(session, proj, "rename", {"old": old, "new": new}, changed, inherited, user)


def merge_classes(
    store: Store, project: str, sources: list[str], into: str, *, workspace: str = DEFAULT_WORKSPACE, user: str | None = None
) -> Migration:
    into = clean_label(into)
    sources = list(dict.fromkeys(s for s in sources if s != into))
    if not sources:
        raise InvalidInputError("merge needs at least one class other than the target")
    with store.write() as session:
        proj = get_project(session, project, workspace)
        for s in sources:
            _known(session, proj, s)
        target = _ensure_class(session, proj.id, into)
        changed = 0
        for s in sources:
            row = _own_class(session, proj.id, s)
            if row is not None:
                changed += session.execute(
                    update(m.Annotation).where(m.Annotation.class_id == row.id).values(class_id=target.id)
                ).rowcount
                session.execute(delete(m.ProjectClass).where(m.ProjectClass.id == row.id))
        inherited = 0
        if (fork := _fork(session, proj.id)) is not None:
            class_map = dict(fork.class_map)
            inherited = _rename_in_map(class_map, dict.fromkeys(sources, into))
            fork.class_map = class_map
        return _record(session, proj, "merge", {"sources": sources, "into": into}, changed, inherited, user)


def split_class(
    store: Store,
    project: str,
    source: str,
    into: list[str],
    *,
    by: str | None = None,
    assign: Mapping[int, str] | None = None,
    default: str | None = None,
    workspace: str = DEFAULT_WORKSPACE,
    user: str | None = None,
) -> Migration:
    """Split ``source`` into the classes ``into``: each annotation goes to the class its attribute
    ``by`` names (when that is one of ``into``), or to the one ``assign`` gives its id, else to
    ``default`` (the first of ``into``). Inherited annotations can only be split ``by`` an
    attribute (they are not copied, so they have no ids here)."""
    into = list(dict.fromkeys(clean_label(t) for t in into))
    if len(into) < 2:
        raise InvalidInputError("split needs at least two target classes")
    default = clean_label(default) if default is not None else into[0]
    if default not in into:
        raise InvalidInputError(f"the default class {default!r} must be one of the targets")
    if by is None and not assign:
        raise InvalidInputError("say how to split: by an annotation attribute (--by KEY) or by annotation ids (assign)")
    assign = {int(k): clean_label(v) for k, v in (assign or {}).items()}
    if bad := sorted({v for v in assign.values() if v not in into}):
        raise InvalidInputError(f"assign names classes that are not targets: {', '.join(bad)}")
    with store.write() as session:
        proj = get_project(session, project, workspace)
        _known(session, proj, source)
        existing = set(project_classes(session, proj)) - {source}
        if taken := sorted(t for t in into if t in existing):
            raise ConflictError(f"project {proj.name!r} already has {', '.join(map(repr, taken))}; merge into it instead")
        fork = _fork(session, proj.id)
        if fork is not None and by is None and any(source in _targets(v) for v in fork.class_map.values()):
            raise InvalidInputError(f"{source!r} has inherited annotations: split them by an attribute (--by KEY)")
        if fork is not None and any(isinstance(v, dict) and source in _targets(v) for v in fork.class_map.values()):
            raise InvalidInputError(f"{source!r} is itself one side of a split of inherited annotations; splitting it again is not supported")
        changed = 0
        row = _own_class(session, proj.id, source)
        if row is not None:
            ids = {t: _ensure_class(session, proj.id, t).id for t in into}
            for ann in session.scalars(select(m.Annotation).where(m.Annotation.class_id == row.id)):
                value = (ann.attributes or {}).get(by) if by is not None else None
                target = assign.get(ann.id) or (value if value in ids else default)
                ann.class_id = ids[target]
                changed += 1
            session.flush()
            session.execute(delete(m.ProjectClass).where(m.ProjectClass.id == row.id))
        inherited = 0
        if fork is not None:
            class_map = dict(fork.class_map)
            for key, value in class_map.items():
                if value == source:
                    class_map[key] = {"by": by, "into": into, "default": default}
                    inherited += 1
            fork.class_map = class_map
        params = {"source": source, "into": into, "by": by, "default": default, "assigned": len(assign)}
        return _record(session, proj, "split", params, changed, inherited, user)


def drop_inherited_class(
    store: Store, project: str, base_class: str, *, workspace: str = DEFAULT_WORKSPACE, user: str | None = None
) -> Migration:
    """A fork stops using a base class: its inherited annotations are left out of new versions."""
    with store.write() as session:
        proj = get_project(session, project, workspace)
        fork = _fork(session, proj.id)
        if fork is None or base_class not in fork.class_map:
            raise NotFoundError(f"project {proj.name!r} inherits no base class {base_class!r}")
        class_map = dict(fork.class_map)
        class_map[base_class] = None
        fork.class_map = class_map
        return _record(session, proj, "drop", {"base_class": base_class}, 0, 1, user)
