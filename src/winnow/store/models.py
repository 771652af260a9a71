"""The metadata schema (SQLAlchemy 2 ORM). Changes go through an Alembic migration.

Boxes are stored as absolute-pixel ``xyxy`` float64 columns; polygons and RLE masks as JSON.
Timestamps are naive UTC.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Boolean, DateTime, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    pass


class Workspace(Base):
    __tablename__ = "workspaces"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    projects: Mapped[list[Project]] = relationship(back_populates="workspace")


class Project(Base):
    __tablename__ = "projects"
    __table_args__ = (UniqueConstraint("workspace_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    task: Mapped[str] = mapped_column(String(20))
    description: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)

    workspace: Mapped[Workspace] = relationship(back_populates="projects")


class ProjectClass(Base):
    __tablename__ = "classes"
    __table_args__ = (UniqueConstraint("project_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(500))
    position: Mapped[int] = mapped_column(Integer)


class Blob(Base):
    """Facts about stored bytes, shared by every record that points at them."""

    __tablename__ = "blobs"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    size: Mapped[int] = mapped_column(Integer)
    format: Mapped[str] = mapped_column(String(20))
    raw_width: Mapped[int] = mapped_column(Integer)
    raw_height: Mapped[int] = mapped_column(Integer)
    orientation: Mapped[int] = mapped_column(Integer, default=1)
    channels: Mapped[int] = mapped_column(Integer)
    mode: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class ImportRun(Base):
    __tablename__ = "imports"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    source: Mapped[str] = mapped_column(Text)
    format: Mapped[str] = mapped_column(String(40))
    started_at: Mapped[datetime] = mapped_column(DateTime)
    finished_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    report: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class Image(Base):
    """An image record: a name in a project pointing at a blob, with its split."""

    __tablename__ = "images"
    __table_args__ = (
        UniqueConstraint("project_id", "name"),
        Index("ix_images_project_split", "project_id", "split"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    sha256: Mapped[str] = mapped_column(ForeignKey("blobs.sha256"), index=True)
    name: Mapped[str] = mapped_column(Text)
    split: Mapped[str | None] = mapped_column(String(20), default=None)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    declared_width: Mapped[int | None] = mapped_column(Integer, default=None)
    declared_height: Mapped[int | None] = mapped_column(Integer, default=None)
    external_id: Mapped[str | None] = mapped_column(String(100), default=None)
    import_id: Mapped[int | None] = mapped_column(ForeignKey("imports.id", ondelete="SET NULL"), default=None)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Annotation(Base):
    __tablename__ = "annotations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), index=True)
    class_id: Mapped[int] = mapped_column(ForeignKey("classes.id", ondelete="CASCADE"), index=True)
    x1: Mapped[float | None] = mapped_column(Float, default=None)
    y1: Mapped[float | None] = mapped_column(Float, default=None)
    x2: Mapped[float | None] = mapped_column(Float, default=None)
    y2: Mapped[float | None] = mapped_column(Float, default=None)
    polygon: Mapped[Any] = mapped_column(JSON, default=None)
    rle: Mapped[Any] = mapped_column(JSON, default=None)
    iscrowd: Mapped[bool] = mapped_column(Boolean, default=False)
    score: Mapped[float | None] = mapped_column(Float, default=None)
    source: Mapped[str] = mapped_column(String(20), default="import")
    attributes: Mapped[Any] = mapped_column(JSON, default=None)
    external_id: Mapped[str | None] = mapped_column(String(100), default=None)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    created_by: Mapped[str | None] = mapped_column(String(200), default=None)


class ImageTag(Base):
    __tablename__ = "image_tags"

    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), primary_key=True)
    tag: Mapped[str] = mapped_column(String(200), primary_key=True, index=True)


class ImageMetadata(Base):
    __tablename__ = "image_metadata"

    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), primary_key=True)
    key: Mapped[str] = mapped_column(String(200), primary_key=True, index=True)
    value: Mapped[Any] = mapped_column(JSON)


class Change(Base):
    """A recorded, undoable change to a project's records (``winnow fix``, later edits).

    ``operations`` holds what is needed to undo it: the rows as they were before.
    """

    __tablename__ = "changes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(40))
    description: Mapped[str] = mapped_column(Text)
    operations: Mapped[Any] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    created_by: Mapped[str | None] = mapped_column(String(200), default=None)
    undone_at: Mapped[datetime | None] = mapped_column(DateTime, default=None)


class Version(Base):
    """An immutable dataset version: its manifest lives in ``<home>/versions/<version_id>/``.

    ``version_id`` is the SHA-256 of the version's content (images, annotation revisions,
    splits, recipe), so the same inputs give the same id on any machine. Only ``name`` may change
    after creation; ``outputs_sha256`` is set once, when the version is first materialised. The
    SQLite database enforces both with triggers (migration 0003).
    """

    __tablename__ = "versions"
    __table_args__ = (
        UniqueConstraint("project_id", "version_id"),
        UniqueConstraint("project_id", "number"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    version_id: Mapped[str] = mapped_column(String(64), index=True)
    number: Mapped[int] = mapped_column(Integer)
    name: Mapped[str | None] = mapped_column(String(200), default=None)
    parent: Mapped[str | None] = mapped_column(String(64), default=None)  # the parent's version_id
    manifest_sha256: Mapped[str] = mapped_column(String(64))
    outputs_sha256: Mapped[str | None] = mapped_column(String(64), default=None)
    recipe: Mapped[Any] = mapped_column(JSON)
    summary: Mapped[Any] = mapped_column(JSON)
    lineage: Mapped[Any] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    created_by: Mapped[str | None] = mapped_column(String(200), default=None)


class Model(Base):
    """A trained model: the version it learnt from, how (backend, hyper-parameters, recipe, code
    version), how well (metrics) and its files (weights ``.pt`` and ``model.onnx``, as blobs).

    ``model_id`` is the SHA-256 of what determines the training (version id, backend,
    hyper-parameters, seed, pretrained checkpoint). ``status``: ``training``, ``ready`` or
    ``failed``. ``deployed`` is for serving (later).
    """

    __tablename__ = "models"
    __table_args__ = (
        UniqueConstraint("project_id", "model_id"),
        UniqueConstraint("project_id", "name"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    model_id: Mapped[str] = mapped_column(String(64), index=True)
    name: Mapped[str] = mapped_column(String(200))
    version_id: Mapped[str] = mapped_column(String(64), index=True)
    backend: Mapped[str] = mapped_column(String(100))
    task: Mapped[str] = mapped_column(String(20))
    classes: Mapped[Any] = mapped_column(JSON)
    params: Mapped[Any] = mapped_column(JSON)
    recipe: Mapped[Any] = mapped_column(JSON)
    code_version: Mapped[str] = mapped_column(String(200))
    metrics: Mapped[Any] = mapped_column(JSON, default=dict)
    files: Mapped[Any] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(20), default="training")
    deployed: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime, default=None)
    created_by: Mapped[str | None] = mapped_column(String(200), default=None)


class ApiKey(Base):
    """An HTTP API key: scoped to one workspace with a role (``admin``, ``labeler``, ``viewer``).

    Only the SHA-256 of the key is stored (keys are 256-bit random, so a slow hash adds nothing);
    ``prefix`` is the first characters, shown in listings so a person can tell keys apart.
    """

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(20))
    prefix: Mapped[str] = mapped_column(String(20))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    created_by: Mapped[str | None] = mapped_column(String(200), default=None)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime, default=None)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime, default=None)


class ProjectSetting(Base):
    """A project's settings by key (``capture``: the capture policy of its deployed model, ...)."""

    __tablename__ = "project_settings"

    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True)
    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[Any] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)
    updated_by: Mapped[str | None] = mapped_column(String(200), default=None)


class Deployment(Base):
    """One deploy of a model as its project's active model; the newest row not ended is live."""

    __tablename__ = "deployments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    created_by: Mapped[str | None] = mapped_column(String(200), default=None)
    ended_at: Mapped[datetime | None] = mapped_column(DateTime, default=None)


class QueueBatch(Base):
    """A batch of images to label (from ``winnow select``) or to check (from health findings)."""

    __tablename__ = "queue_batches"
    __table_args__ = (UniqueConstraint("project_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(20), default="label")  # label | check
    strategy: Mapped[str | None] = mapped_column(String(40), default=None)
    params: Mapped[Any] = mapped_column(JSON, default=dict)
    assignee: Mapped[str | None] = mapped_column(String(200), default=None)
    reviewer: Mapped[str | None] = mapped_column(String(200), default=None)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    created_by: Mapped[str | None] = mapped_column(String(200), default=None)


class QueueItem(Base):
    """One image in a batch. ``state``: ``to_label`` -> ``in_review`` -> ``done`` (a reviewer may
    send it back to ``to_label``). ``decision``: the labeler's ``accepted`` (the pre-labels),
    ``corrected`` or ``rejected`` (not worth labelling)."""

    __tablename__ = "queue_items"
    __table_args__ = (
        UniqueConstraint("batch_id", "image_id"),
        Index("ix_queue_items_batch_state", "batch_id", "state"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    batch_id: Mapped[int] = mapped_column(ForeignKey("queue_batches.id", ondelete="CASCADE"))
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(20), default="to_label")
    score: Mapped[float | None] = mapped_column(Float, default=None)  # why it was selected
    reason: Mapped[Any] = mapped_column(JSON, default=None)  # strategy evidence or the finding
    prelabels: Mapped[Any] = mapped_column(JSON, default=list)
    decision: Mapped[str | None] = mapped_column(String(20), default=None)
    assignee: Mapped[str | None] = mapped_column(String(200), default=None)
    labeled_by: Mapped[str | None] = mapped_column(String(200), default=None)
    labeled_at: Mapped[datetime | None] = mapped_column(DateTime, default=None)
    reviewed_by: Mapped[str | None] = mapped_column(String(200), default=None)
    reviewed_at: Mapped[datetime | None] = mapped_column(DateTime, default=None)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)


class PipelineRun(Base):
    """One ``winnow run`` of a pipeline file: what ran, how it ended and its whole report (JSON).

    ``status``: ``running``, ``ok``, ``gate_failed`` or ``error``. ``pipeline`` is the pipeline's
    name (its ``name:``, else the file's stem); the step cache looks up earlier runs by it.
    """

    __tablename__ = "pipeline_runs"
    __table_args__ = (Index("ix_pipeline_runs_workspace_pipeline", "workspace_id", "pipeline"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    pipeline: Mapped[str] = mapped_column(String(200))
    project: Mapped[str] = mapped_column(String(200))
    file: Mapped[str | None] = mapped_column(Text, default=None)
    spec_sha256: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(20), default="running")
    started_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime, default=None)
    seconds: Mapped[float | None] = mapped_column(Float, default=None)
    report: Mapped[Any] = mapped_column(JSON, default=dict)
    created_by: Mapped[str | None] = mapped_column(String(200), default=None)


class PipelineStep(Base):
    """One step of a :class:`PipelineRun`: its input fingerprint, outputs, gates and timing.

    ``status``: ``ran``, ``skipped`` (the cache held it: ``fingerprint`` matched an earlier record
    whose outputs still exist), ``failed`` (a gate failed), ``error`` or ``not_run``.
    ``settled``: for a step that changes the project (``fix``, ``label``), the fingerprint of the
    state it left behind: finding that state again means there is nothing to redo.
    """

    __tablename__ = "pipeline_steps"
    __table_args__ = (Index("ix_pipeline_steps_run_position", "run_id", "position"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("pipeline_runs.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)
    step: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(20))
    fingerprint: Mapped[str | None] = mapped_column(String(64), default=None)
    settled: Mapped[str | None] = mapped_column(String(64), default=None)
    inputs: Mapped[Any] = mapped_column(JSON, default=dict)
    outputs: Mapped[Any] = mapped_column(JSON, default=None)
    gates: Mapped[Any] = mapped_column(JSON, default=list)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    started_at: Mapped[datetime | None] = mapped_column(DateTime, default=None)
    seconds: Mapped[float | None] = mapped_column(Float, default=None)


class ProjectFork(Base):
    """A customer project forked from a base project's version (``winnow project fork``).

    The fork copies nothing: its versions read the base version's manifest (content-addressed,
    immutable) and lay the customer's own images on top. ``class_map`` maps each base class name to
    the customer's name for it (``None``: dropped; a dict: a split rule, see services/schema.py).
    ``rebase`` moves ``base_version_id`` to a newer base version.
    """

    __tablename__ = "project_forks"

    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True)
    base_project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="RESTRICT"), index=True)
    base_version_id: Mapped[str] = mapped_column(String(64))
    class_map: Mapped[Any] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    created_by: Mapped[str | None] = mapped_column(String(200), default=None)
    rebased_at: Mapped[datetime | None] = mapped_column(DateTime, default=None)


class ForkOverride(Base):
    """An inherited image the customer adopted (copied on write) to change its labels.

    ``base_revision``: the image's revision in the base version it was adopted from (or last
    rebased onto): a merge request proposing new labels for it is checked against it, so a base
    that changed the image meanwhile is a conflict. (A rebase compares label contents itself.)
    """

    __tablename__ = "fork_overrides"

    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    base_name: Mapped[str] = mapped_column(Text)
    base_revision: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class ClassMigration(Base):
    """One change of a project's class schema: ``add``, ``rename``, ``merge`` or ``split``.

    ``seq`` numbers a project's migrations from 1; a version records the last ``seq`` it was made
    with (``summary["schema"]``), so a rebase knows which base migrations happened in between.
    """

    __tablename__ = "class_migrations"
    __table_args__ = (UniqueConstraint("project_id", "seq"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    seq: Mapped[int] = mapped_column(Integer)
    op: Mapped[str] = mapped_column(String(20))
    params: Mapped[Any] = mapped_column(JSON)
    annotations: Mapped[int] = mapped_column(Integer, default=0)  # how many annotations it changed
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    created_by: Mapped[str | None] = mapped_column(String(200), default=None)


class MergeRequest(Base):
    """A customer's reviewed labels proposed back to its base project.

    ``items``: per image, what the customer proposes (new images by blob, or corrected labels of
    an inherited image). ``state``: ``open``, ``accepted`` or ``rejected``; accepting applies the
    items to the base project as one recorded change (``change_id``).
    """

    __tablename__ = "merge_requests"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    base_project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    source_project_id: Mapped[int | None] = mapped_column(ForeignKey("projects.id", ondelete="SET NULL"), default=None)
    source: Mapped[str] = mapped_column(String(410))  # "workspace/project", kept if the source is deleted
    title: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(20), default="open")
    items: Mapped[Any] = mapped_column(JSON, default=list)
    report: Mapped[Any] = mapped_column(JSON, default=dict)
    change_id: Mapped[int | None] = mapped_column(ForeignKey("changes.id", ondelete="SET NULL"), default=None)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    created_by: Mapped[str | None] = mapped_column(String(200), default=None)
    decided_at: Mapped[datetime | None] = mapped_column(DateTime, default=None)
    decided_by: Mapped[str | None] = mapped_column(String(200), default=None)
