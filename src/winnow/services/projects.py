"""Projects and workspaces: create, list, show (counts, classes, class balance)."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from winnow.config import DEFAULT_WORKSPACE
from winnow.core.types import Task
from winnow.errors import ConflictError, InvalidInputError, NotFoundError
from winnow.store import models as m
from winnow.store.db import Store

_NAME_MAX = 100
_NAME_RE = re.compile(r"^[\w][\w.\- ]*$", re.UNICODE)


def validate_name(name: str, what: str = "project") -> str:
    """A workspace or project name: 1-100 characters, letters/digits/``_.- ``, NFC normalised.

    The ``@`` is reserved for ``PROJECT@VERSION`` references and ``/`` for paths.
    """
    if not isinstance(name, str):
        raise InvalidInputError(f"{what} name must be text")
    name = unicodedata.normalize("NFC", name.strip())
    if not name or len(name) > _NAME_MAX:
        raise InvalidInputError(f"{what} name must be 1-{_NAME_MAX} characters, got {len(name)}")
    if not _NAME_RE.match(name):
        raise InvalidInputError(
            f"{what} name {name!r} may only use letters, digits, spaces and _ . - (and must start with a letter or digit)"
        )
    return name


def parse_task(task: str | Task) -> Task:
    try:
        return Task(task)
    except ValueError:
        raise InvalidInputError(f"unknown task {task!r}; expected one of: {', '.join(t.value for t in Task)}") from None


@dataclass
class ProjectSummary:
    """What ``winnow project show`` prints. Field names are part of the ``--json`` contract."""

    name: str
    workspace: str
    task: str
    created_at: str
    images: int = 0
    annotations: int = 0
    unlabeled_images: int = 0
    classes: list[str] = field(default_factory=list)
    class_counts: dict[str, int] = field(default_factory=dict)
    class_images: dict[str, int] = field(default_factory=dict)
    splits: dict[str, int] = field(default_factory=dict)
    tags: dict[str, int] = field(default_factory=dict)
    base: str | None = None  # a fork's base, ``workspace/project@vN`` (its images are inherited, not counted here)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def get_workspace(session: Session, name: str, create: bool = False) -> m.Workspace:
    ws = session.scalar(select(m.Workspace).where(m.Workspace.name == name))
    if ws is None:
        if not create:
            raise NotFoundError(f"workspace {name!r} does not exist")
        ws = m.Workspace(name=validate_name(name, "workspace"))
        session.add(ws)
        session.flush()
    return ws


def get_project(session: Session, name: str, workspace: str = DEFAULT_WORKSPACE) -> m.Project:
    """The project ``name`` in ``workspace``; :class:`NotFoundError` otherwise."""
    project = session.scalar(
        select(m.Project)
        .join(m.Workspace)
        .where(m.Workspace.name == workspace, m.Project.name == unicodedata.normalize("NFC", name))
    )
    if project is None:
        raise NotFoundError(f"project {name!r} does not exist in workspace {workspace!r}")
    return project


def create_project(store: Store, name: str, task: str | Task, workspace: str = DEFAULT_WORKSPACE) -> ProjectSummary:
    name = validate_name(name)
    task = parse_task(task)
    with store.write() as session:
        ws = get_workspace(session, workspace, create=True)
        exists = session.scalar(select(m.Project.id).where(m.Project.workspace_id == ws.id, m.Project.name == name))
        if exists is not None:
            raise ConflictError(f"project {name!r} already exists in workspace {workspace!r}")
        project = m.Project(workspace_id=ws.id, name=name, task=task.value)
        session.add(project)
        session.flush()
        return _summary(session, project, workspace)


def list_projects(store: Store, workspace: str | None = None) -> list[ProjectSummary]:
    with store.read() as session:
        q = select(m.Project, m.Workspace.name).join(m.Workspace).order_by(m.Workspace.name, m.Project.name)
        if workspace is not None:
            q = q.where(m.Workspace.name == workspace)
        return [_summary(session, p, ws) for p, ws in session.execute(q).all()]


def show_project(store: Store, name: str, workspace: str = DEFAULT_WORKSPACE) -> ProjectSummary:
    with store.read() as session:
        return _summary(session, get_project(session, name, workspace), workspace)


def class_names(session: Session, project_id: int) -> list[str]:
    """The project's classes in their stable order."""
    return list(
        session.scalars(
            select(m.ProjectClass.name).where(m.ProjectClass.project_id == project_id).order_by(m.ProjectClass.position)
        )
    )


def _summary(session: Session, project: m.Project, workspace: str) -> ProjectSummary:
    pid = project.id
    images = session.scalar(select(func.count()).select_from(m.Image).where(m.Image.project_id == pid)) or 0
    ann_rows = session.execute(
        select(
            m.ProjectClass.name,
            func.count(m.Annotation.id),
            func.count(func.distinct(m.Annotation.image_id)),
        )
        .select_from(m.ProjectClass)
        .outerjoin(m.Annotation, m.Annotation.class_id == m.ProjectClass.id)
        .where(m.ProjectClass.project_id == pid)
        .group_by(m.ProjectClass.id)
        .order_by(m.ProjectClass.position)
    ).all()
    labeled = session.scalar(
        select(func.count(func.distinct(m.Annotation.image_id))).join(m.Image).where(m.Image.project_id == pid)
    )
    splits = dict(
        session.execute(
            select(func.coalesce(m.Image.split, "unassigned"), func.count())
            .where(m.Image.project_id == pid)
            .group_by(m.Image.split)
        ).all()
    )
    tags = dict(
        session.execute(
            select(m.ImageTag.tag, func.count())
            .join(m.Image)
            .where(m.Image.project_id == pid)
            .group_by(m.ImageTag.tag)
            .order_by(m.ImageTag.tag)
        ).all()
    )
    return ProjectSummary(
        name=project.name,
        workspace=workspace,
        task=project.task,
        created_at=project.created_at.isoformat() + "Z",
        images=images,
        annotations=sum(r[1] for r in ann_rows),
        unlabeled_images=images - (labeled or 0),
        classes=[r[0] for r in ann_rows],
        class_counts={r[0]: r[1] for r in ann_rows},
        class_images={r[0]: r[2] for r in ann_rows},
        splits=splits,
        tags=tags,
        base=_base_ref(session, pid),
    )


def _base_ref(session: Session, project_id: int) -> str | None:
    fork = session.get(m.ProjectFork, project_id)
    if fork is None:
        return None
    row = session.execute(
        select(m.Workspace.name, m.Project.name, m.Version.number)
        .select_from(m.Project)
        .join(m.Workspace, m.Workspace.id == m.Project.workspace_id)
        .join(m.Version, (m.Version.project_id == m.Project.id) & (m.Version.version_id == fork.base_version_id))
        .where(m.Project.id == fork.base_project_id)
    ).first()
    return None if row is None else f"{row[0]}/{row[1]}@v{row[2]}"


def delete_project(store: Store, name: str, workspace: str = DEFAULT_WORKSPACE) -> None:
    """Delete a project and all its records (blobs stay until ``winnow verify --gc``)."""
    from winnow.services.forks import ensure_deletable

    with store.write() as session:
        project = get_project(session, name, workspace)
        ensure_deletable(session, project)
        session.delete(project)


def get_setting(session: Session, project_id: int, key: str) -> Any:
    """A project's setting ``key`` (``None`` when unset)."""
    row = session.get(m.ProjectSetting, (project_id, key))
    return None if row is None else row.value


def set_setting(session: Session, project_id: int, key: str, value: Any, user: str | None = None) -> None:
    row = session.get(m.ProjectSetting, (project_id, key))
    if row is None:
        session.add(m.ProjectSetting(project_id=project_id, key=key, value=value, updated_by=user))
    else:
        row.value, row.updated_by, row.updated_at = value, user, m.utcnow()
