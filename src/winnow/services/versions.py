"""Dataset versions: create (leak-free splits + recipe), list, show, resolve ``PROJECT@VERSION``,
read back (verified), materialise and export, and the blobs they keep alive.

A version is immutable: there is no function that changes one (only its ``name`` label may be
set at creation), the database refuses updates (triggers, migration 0003), its files are written
read-only and re-hashed on every read.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from winnow.config import DEFAULT_WORKSPACE
from winnow.core.types import UNLABELED_TAG, Dataset, ImageRecord, Task
from winnow.errors import ConflictError, InvalidInputError, NotFoundError
from winnow.services.datasets import load_dataset
from winnow.services.projects import get_project, validate_name
from winnow.store import models as m
from winnow.store.db import Store
from winnow.versions.manifest import Manifest, read_manifest, write_manifest
from winnow.versions.splits import assign_splits, parse_ratios

ProgressFn = Callable[[int, int], None]

#: The preprocessing a version gets when none is given (Roboflow's default too).
DEFAULT_PREPROCESS = "auto-orient"

_HEX_RE = re.compile(r"^[0-9a-f]{4,64}$")
_NUMBER_RE = re.compile(r"^v?(\d+)$")


@dataclass
class VersionSummary:
    """What ``winnow version show`` prints. Field names are part of the ``--json`` contract."""

    project: str
    version: str  # the content id (64 hex)
    number: int
    name: str | None
    parent: str | None
    created_at: str
    created: bool  # False when an identical version already existed
    task: str
    classes: list[str]
    recipe: dict[str, Any]
    counts: dict[str, Any]
    splitting: dict[str, Any]
    lineage: list[dict[str, Any]] = field(default_factory=list)
    materialized: bool = False

    @property
    def ref(self) -> str:
        return f"{self.project}@{self.version[:12]}"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"ref": self.ref}


def parse_ref(ref: str) -> tuple[str, str | None]:
    """``PROJECT@VERSION`` -> ``(project, version)``; ``PROJECT`` -> ``(project, None)``."""
    project, sep, version = ref.strip().rpartition("@")
    if not sep:
        if not version:
            raise InvalidInputError("expected PROJECT or PROJECT@VERSION, got nothing")
        return version, None
    if not project or not version:
        raise InvalidInputError(f"{ref!r}: expected PROJECT@VERSION (a version id prefix, vN, a name or 'latest')")
    return project, version


def version_folder(store: Store, row: m.Version) -> Path:
    return store.home / "versions" / str(row.project_id) / row.version_id


def resolve_version(session: Session, project: m.Project, ref: str | None) -> m.Version:
    """A project's version by ``ref``: ``latest`` (or ``None``), ``vN``/``N``, a name, or an id prefix."""
    q = select(m.Version).where(m.Version.project_id == project.id)
    if ref is None or ref == "latest":
        row = session.scalar(q.order_by(m.Version.number.desc()).limit(1))
        if row is None:
            raise NotFoundError(f"project {project.name!r} has no versions yet; make one with `winnow version create`")
        return row
    if (match := _NUMBER_RE.match(ref)) and (row := session.scalar(q.where(m.Version.number == int(match[1])))):
        return row
    if row := session.scalar(q.where(m.Version.name == ref)):
        return row
    if _HEX_RE.match(ref):
        rows = list(session.scalars(q.where(m.Version.version_id.startswith(ref)).limit(2)))
        if len(rows) == 1:
            return rows[0]
        if len(rows) > 1:
            raise InvalidInputError(f"version prefix {ref!r} is ambiguous in project {project.name!r}; give more characters")
    raise NotFoundError(f"project {project.name!r} has no version {ref!r}")


def _summary(row: m.Version, project: str, *, created: bool = False) -> VersionSummary:
    s = row.summary
    return VersionSummary(
        project=project,
        version=row.version_id,
        number=row.number,
        name=row.name,
        parent=row.parent,
        created_at=row.created_at.isoformat(timespec="seconds") + "Z",
        created=created,
        task=s["task"],
        classes=s["classes"],
        recipe=row.recipe,
        counts=s["counts"],
        splitting=s["splitting"],
        lineage=row.lineage,
        materialized=row.outputs_sha256 is not None,
    )


# ----------------------------------------------------------------------------- create


def _recipe(
    ratios: dict[str, float],
    *,
    resplit: bool,
    seed: int,
    group_by: list[str],
    near_duplicates: bool,
    steps: list[dict[str, Any]],
    augment: dict[str, Any],
) -> dict[str, Any]:
    return {
        "split": ratios,
        "resplit": resplit,
        "seed": seed,
        "group_by": group_by,
        "near_duplicates": near_duplicates,
        "preprocess": steps,
        "augment": augment,
    }


def _groups(
    store: Store, project: str, workspace: str, dataset: Dataset, group_by: list[str], near: bool, progress: ProgressFn | None
) -> tuple[list[list[int]], dict[str, int]]:
    """Index groups that must share a split: duplicate clusters, then one group per metadata value."""
    from winnow.quality.duplicates import clusters, duplicate_groups
    from winnow.quality.view import ProjectView

    view = ProjectView(store, project, workspace=workspace, dataset=dataset, progress=progress)
    dups = clusters(duplicate_groups(view, near=near))
    groups: list[list[int]] = [list(g.indices) for g in dups]
    stats = {"duplicate_groups": len(dups), "duplicate_images": sum(len(g) for g in dups)}
    for key in group_by:
        by_value: dict[str, list[int]] = defaultdict(list)
        for i, rec in enumerate(dataset.images):
            if key in rec.metadata and rec.metadata[key] is not None:
                by_value[repr(rec.metadata[key])].append(i)
        groups.extend(v for v in by_value.values() if len(v) > 1)
        stats[f"groups_by_{key}"] = len(by_value)
    return groups, stats


def _labels_for_split(rec: ImageRecord) -> list[str]:
    return sorted({a.label for a in rec.annotations})


def _lineage(session: Session, project_id: int, since: Any) -> list[dict[str, Any]]:
    """The recorded changes (fixes) since the parent version was made, oldest first."""
    q = select(m.Change).where(m.Change.project_id == project_id, m.Change.undone_at.is_(None))
    if since is not None:
        q = q.where(m.Change.created_at > since)
    return [
        {
            "change": c.id,
            "kind": c.kind,
            "description": c.description,
            "operations": len(c.operations or []),
            "created_at": c.created_at.isoformat(timespec="seconds") + "Z",
        }
        for c in session.scalars(q.order_by(m.Change.id))
    ]


def _parent_splits(store: Store, project: str, workspace: str) -> tuple[str, dict[str, str | None]] | None:
    """The latest version's id and its split per image name (``None`` when there is no version)."""
    with store.read() as session:
        proj = get_project(session, project, workspace)
        latest = session.scalar(
            select(m.Version).where(m.Version.project_id == proj.id).order_by(m.Version.number.desc()).limit(1)
        )
        if latest is None:
            return None
        version_id = latest.version_id
    manifest = load_version(store, project, version_id, workspace=workspace).manifest
    return version_id, {r.name: r.split for r in manifest.images}


def _add_inherited(
    store: Store, project: str, workspace: str, records: list[ImageRecord], label_steps: list[dict[str, Any]], near: bool
) -> tuple[list[ImageRecord], list[str], dict[str, Any], dict[str, int]] | None:
    """A fork's version: its own records plus the inherited ones (see services/forks.py), sorted
    by name; ``None`` for a project that is no fork. An inherited image is left out when the
    customer adopted it (its own copy stands in), or when it is a copy of an image in the
    customer's test split - the same bytes, or (``near``) a near duplicate by the duplicate checks'
    rule - so the customer's test set does not leak into training."""
    from winnow.services.forks import inherited_records
    from winnow.versions import transforms

    inherited = inherited_records(store, project, workspace=workspace)
    if inherited is None:
        return None
    own_names = {r.name for r in records}
    own_test = [r for r in records if r.split == "test"]
    test_shas = {r.sha256 for r in own_test}
    stats = {"images": 0, "adopted": 0, "in_customer_test": 0, "near_customer_test": 0} | inherited.left_out
    kept: list[ImageRecord] = []
    for rec in inherited.records:
        if rec.name in own_names:
            stats["adopted"] += 1
            continue
        if rec.sha256 in test_shas:
            stats["in_customer_test"] += 1
            continue
        anns = transforms.apply_label_steps(rec.annotations, label_steps)
        if anns is None:
            continue
        rec.annotations = anns
        kept.append(rec)
    if near and own_test and kept:
        near_test = _near_customer_test(store, project, workspace, own_test, kept)
        stats["near_customer_test"] = len(near_test)
        kept = [r for r in kept if r.name not in near_test]
    stats["images"] = len(kept)
    return sorted([*records, *kept], key=lambda r: r.name), inherited.classes, inherited.recipe, stats


def _near_customer_test(
    store: Store, project: str, workspace: str, own_test: list[ImageRecord], inherited: list[ImageRecord]
) -> set[str]:
    """The inherited images that are near duplicates of a customer test image (the duplicate
    checks' rule: the hash tier, then the embedding of the candidates only; cached by blob)."""
    from winnow.quality.duplicates import duplicate_groups
    from winnow.quality.view import ProjectView

    probe = Dataset(classes=[], images=[*own_test, *inherited], task=Task.DETECT)
    view = ProjectView(store, project, workspace=workspace, dataset=probe)
    test_names = {r.name for r in own_test}
    out: set[str] = set()
    for group in duplicate_groups(view, near=True):
        names = set(group.names)
        if group.kind == "near" and names & test_names:
            out |= names - test_names
    return out


def _schema_facts(session: Session, project_id: int, base: dict[str, Any] | None) -> dict[str, Any]:
    """What a version records of the class schema it was made with."""
    from winnow.services.schema import current_seq

    return {"seq": current_seq(session, project_id), "class_map": None if base is None else base["class_map"]}


def create_version(
    store: Store,
    project: str,
    *,
    workspace: str = DEFAULT_WORKSPACE,
    split: str | None = None,
    resplit: bool = False,
    seed: int = 0,
    group_by: list[str] | None = None,
    preprocess: str | None = None,
    augment: str | None = None,
    name: str | None = None,
    near_duplicates: bool = True,
    user: str | None = None,
    progress: ProgressFn | None = None,
) -> VersionSummary:
    """Snapshot the project as an immutable version (the existing one when nothing changed).

    Images tagged ``unlabeled`` (captured, not yet labelled) are left out, and so are images
    without a label in a classification project. An image keeps its split: the project's, else
    the one the latest version gave it (so a new version does not reshuffle the test set), unless
    ``resplit``; images new to both are split by ``split``'s ratios. Duplicate clusters (exact
    and near) and each ``group_by`` metadata value stay in one split.
    """
    from winnow.versions import spec, transforms

    ratios = parse_ratios(split)
    steps = spec.parse_preprocess(DEFAULT_PREPROCESS if preprocess is None else preprocess)
    aug = spec.parse_augment(augment)
    group_by = sorted({k.strip() for k in (group_by or []) if k.strip()})
    if name is not None:
        name = validate_name(name, "version")
        if _HEX_RE.match(name) or _NUMBER_RE.match(name) or name == "latest":
            raise InvalidInputError(f"version name {name!r} would read as a version id or number; pick another")
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**63:
        raise InvalidInputError(f"seed must be a non-negative integer, got {seed!r}")
    recipe = _recipe(
        ratios, resplit=resplit, seed=seed, group_by=group_by, near_duplicates=near_duplicates, steps=steps, augment=aug
    )

    full = load_dataset(store, project, workspace=workspace)
    task = full.task or Task.DETECT
    labelled = spec.label_steps(steps)
    records: list[ImageRecord] = []
    for rec in sorted(full.images, key=lambda r: r.name):
        if UNLABELED_TAG in rec.tags:
            continue
        anns = transforms.apply_label_steps(rec.annotations, labelled)
        if anns is None or (task is Task.CLASSIFY and not anns):
            continue
        rec.annotations = anns
        records.append(rec)
    classes = transforms.classes_after(full.classes, labelled)
    used = {a.label for r in records for a in r.annotations}
    classes = [c for c in classes if c in used] + sorted(used - set(classes))
    dataset = Dataset(classes=classes, images=records, task=task, info=full.info)

    groups, group_stats = _groups(store, project, workspace, dataset, group_by, near_duplicates, progress)
    inherited = _parent_splits(store, project, workspace)
    parent_used = inherited[0] if inherited else None
    existing = [r.split or (inherited[1].get(r.name) if inherited else None) for r in records]
    plan = assign_splits([_labels_for_split(r) for r in records], existing, groups, ratios, seed=seed, resplit=resplit)
    for rec, s in zip(records, plan.splits, strict=True):
        rec.split = s
    splitting = group_stats | {
        "units": plan.units,
        "moved": [records[i].name for i in plan.moved],
    }
    base = _add_inherited(store, project, workspace, records, labelled, near_duplicates)
    if base is not None:
        records, inherited_classes, recipe["base"], splitting["inherited"] = base
        used = {a.label for r in records for a in r.annotations}
        order = transforms.classes_after(inherited_classes, labelled) + classes
        classes = list(dict.fromkeys(c for c in order if c in used)) + sorted(used - set(order))
    manifest = Manifest(task=task.value, classes=classes, recipe=recipe, images=records)
    version_id = manifest.content_id()

    with store.write() as session:
        proj = get_project(session, project, workspace)
        existing = session.scalar(select(m.Version).where(m.Version.project_id == proj.id, m.Version.version_id == version_id))
        if existing is not None:
            return _summary(existing, proj.name)
        if name is not None and session.scalar(
            select(m.Version.id).where(m.Version.project_id == proj.id, m.Version.name == name)
        ):
            raise ConflictError(f"project {proj.name!r} already has a version named {name!r}")
        parent = session.scalar(
            select(m.Version).where(m.Version.project_id == proj.id).order_by(m.Version.number.desc()).limit(1)
        )
        if (parent.version_id if parent is not None else None) != parent_used:
            raise ConflictError(f"another version of {proj.name!r} was created meanwhile; create this one again")
        number = (session.scalar(select(func.max(m.Version.number)).where(m.Version.project_id == proj.id)) or 0) + 1
        row = m.Version(project_id=proj.id, version_id=version_id, number=number)
        manifest_sha = write_manifest(version_folder(store, row), manifest, version_id)
        row.name = name
        row.parent = parent.version_id if parent is not None else None
        row.manifest_sha256 = manifest_sha
        row.recipe = recipe
        row.summary = {
            "task": task.value, "classes": classes, "counts": manifest.counts(), "splitting": splitting,
            "schema": _schema_facts(session, proj.id, recipe.get("base")),
        }
        row.lineage = _lineage(session, proj.id, parent.created_at if parent is not None else None)
        row.created_by = user
        session.add(row)
        session.flush()
        return _summary(row, proj.name, created=True)


# ----------------------------------------------------------------------------- read


def list_versions(store: Store, project: str, *, workspace: str = DEFAULT_WORKSPACE) -> list[VersionSummary]:
    with store.read() as session:
        proj = get_project(session, project, workspace)
        rows = session.scalars(select(m.Version).where(m.Version.project_id == proj.id).order_by(m.Version.number))
        return [_summary(r, proj.name) for r in rows]


def show_version(store: Store, project: str, ref: str | None = None, *, workspace: str = DEFAULT_WORKSPACE) -> VersionSummary:
    with store.read() as session:
        proj = get_project(session, project, workspace)
        return _summary(resolve_version(session, proj, ref), proj.name)


@dataclass
class LoadedVersion:
    """A version's row facts and its verified manifest."""

    project: str
    project_id: int
    version_id: str
    number: int
    folder: Path
    outputs_sha256: str | None
    manifest: Manifest


def load_version(store: Store, project: str, ref: str | None = None, *, workspace: str = DEFAULT_WORKSPACE) -> LoadedVersion:
    """Read a version's manifest, verifying every file against its checksum."""
    with store.read() as session:
        proj = get_project(session, project, workspace)
        row = resolve_version(session, proj, ref)
        folder = version_folder(store, row)
        facts = (proj.name, proj.id, row.version_id, row.number, row.manifest_sha256, row.outputs_sha256)
    name, pid, vid, number, manifest_sha, outputs_sha = facts
    manifest = read_manifest(folder, vid, manifest_sha)
    for rec in manifest.images:
        rec.file = store.blobs.path(rec.sha256)
    return LoadedVersion(name, pid, vid, number, folder, outputs_sha, manifest)


def orphan_version_folders(store: Store) -> list[Path]:
    """Version folders no version row names (their project was deleted, or their row never
    committed): ``gc`` removes them."""
    root = store.home / "versions"
    if not root.is_dir():
        return []
    with store.read() as session:
        known = {(str(p), v) for p, v in session.execute(select(m.Version.project_id, m.Version.version_id))}
    return sorted(
        folder
        for project_dir in root.iterdir()
        if project_dir.is_dir()
        for folder in project_dir.iterdir()
        if folder.is_dir() and (project_dir.name, folder.name) not in known
    )


def referenced_blobs(store: Store) -> set[str]:
    """Every blob a version points at (its images and its materialised outputs): ``gc`` keeps them."""
    import pyarrow.parquet as pq

    from winnow.versions.manifest import IMAGES_FILE, OUTPUTS_FILE

    with store.read() as session:
        rows = list(session.execute(select(m.Version.project_id, m.Version.version_id)))
    shas: set[str] = set()
    for project_id, version_id in rows:
        folder = store.home / "versions" / str(project_id) / version_id
        for fname in (IMAGES_FILE, OUTPUTS_FILE):
            if (folder / fname).is_file():
                shas.update(pq.read_table(folder / fname, columns=["sha256"]).column("sha256").to_pylist())
    return shas



# ----------------------------------------------------------------------------- materialise, export


def _blob_facts(store: Store, shas: list[str]) -> dict[str, tuple[str, int]]:
    """Pillow format and EXIF orientation of each blob."""
    out: dict[str, tuple[str, int]] = {}
    unique = sorted(set(shas))
    with store.read() as session:
        for i in range(0, len(unique), 900):
            for sha, fmt, orientation in session.execute(
                select(m.Blob.sha256, m.Blob.format, m.Blob.orientation).where(m.Blob.sha256.in_(unique[i : i + 900]))
            ):
                out[sha] = (fmt, orientation or 1)
    return out


def materialize_version(
    store: Store,
    project: str,
    ref: str | None = None,
    *,
    workspace: str = DEFAULT_WORKSPACE,
    workers: int | None = None,
    progress: ProgressFn | None = None,
) -> tuple[LoadedVersion, list[ImageRecord]]:
    """The version's output records (preprocessed, augmented), made once and then read back.

    The first call makes the outputs (blobs shared with any version that makes the same ones),
    writes ``outputs.parquet`` read-only and records its checksum on the version (once).
    """
    from winnow.versions.manifest import read_outputs, write_outputs
    from winnow.versions.materialize import materialize, outputs_table, records_from_outputs

    loaded = load_version(store, project, ref, workspace=workspace)
    if loaded.outputs_sha256 is not None:
        table = read_outputs(loaded.folder, loaded.version_id, loaded.outputs_sha256)
        return loaded, records_from_outputs(table, store.blobs)
    manifest = loaded.manifest
    rows = materialize(
        manifest, store.blobs, _blob_facts(store, [r.sha256 for r in manifest.images]), workers=workers, progress=progress
    )
    fresh = sorted({r["sha256"] for r in rows} - {r.sha256 for r in manifest.images})
    store.blobs.adopt(fresh)
    store.blobs.sync()  # the outputs' bytes are durable before the table that names them
    table = outputs_table(rows)
    with store.write() as session:
        row = session.scalar(
            select(m.Version).where(m.Version.project_id == loaded.project_id, m.Version.version_id == loaded.version_id)
        )
        if row is None:
            raise NotFoundError(f"version {loaded.version_id[:12]} was deleted while it was being materialised")
        if row.outputs_sha256 is None:  # another process may have finished first: keep its file
            row.outputs_sha256 = write_outputs(loaded.folder, table)
        loaded.outputs_sha256 = row.outputs_sha256
    table = read_outputs(loaded.folder, loaded.version_id, loaded.outputs_sha256)
    return loaded, records_from_outputs(table, store.blobs)


@dataclass
class VersionExportReport:
    """What ``winnow export PROJECT@VERSION`` wrote. Field names are part of the ``--json`` contract."""

    project: str
    version: str
    format: str
    dest: str
    images: int
    annotations: int
    splits: dict[str, int]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def export_version(
    store: Store,
    project: str,
    ref: str | None,
    dest: Path | str,
    format: str,
    *,
    workspace: str = DEFAULT_WORKSPACE,
    split: str | None = None,
    progress: ProgressFn | None = None,
) -> VersionExportReport:
    """Write a version's outputs (materialised on first use) to ``dest`` in ``format``."""
    from winnow.services.datasets import write_dataset

    loaded, records = materialize_version(store, project, ref, workspace=workspace, progress=progress)
    if split is not None:
        records = [r for r in records if r.split == split]
    dataset = Dataset(
        classes=list(loaded.manifest.classes),
        images=records,
        task=Task(loaded.manifest.task),
        info={"project": loaded.project, "version": loaded.version_id},
    )
    write_dataset(store, dataset, dest, format)
    splits: dict[str, int] = defaultdict(int)
    for r in records:
        splits[r.split or "unassigned"] += 1
    return VersionExportReport(
        project=loaded.project,
        version=loaded.version_id,
        format=format,
        dest=str(Path(dest).resolve()),
        images=len(records),
        annotations=dataset.annotation_count,
        splits=dict(sorted(splits.items())),
    )


def diff_versions(
    store: Store,
    a: tuple[str, str | None],
    b: tuple[str, str | None],
    *,
    workspace: str = DEFAULT_WORKSPACE,
):
    """What changed from version ``a`` to version ``b`` (each ``(project, ref)``)."""
    from winnow.versions.diff import diff_manifests

    va = load_version(store, a[0], a[1], workspace=workspace)
    vb = load_version(store, b[0], b[1], workspace=workspace)
    return diff_manifests(
        va.manifest, vb.manifest, a_ref=f"{va.project}@{va.version_id[:12]}", b_ref=f"{vb.project}@{vb.version_id[:12]}"
    )
