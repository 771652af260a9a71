"""Deploying a model as its project's active model, and capturing production images.

A project has at most one *active* model: the one its newest :class:`~winnow.store.models.Deployment`
row not yet ended points at (``Model.deployed`` mirrors it). :func:`deploy` makes a ready model with
a verified ONNX export the active one in one transaction (the previous deployment row is ended, a
new one added); :func:`undeploy` ends it. The inference server (:mod:`winnow.serve.inference`)
serves the active model and notices a change within about a second, even one made by another
process (``winnow deploy`` on the command line).

The **capture policy** of a project (``ProjectSetting`` key ``capture``) says which images sent to
``POST /projects/{p}/predict`` are kept in the project, tagged ``unlabeled`` and ``captured``, with
the model's predictions as pre-labels (``source=model`` annotations): the loop from production back
to labelling. See :data:`DEFAULT_POLICY` and :func:`validate_policy` for its fields and
:func:`wants_capture` for how a mode decides.
"""

from __future__ import annotations

import hashlib
import math
import shutil
import tempfile
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from winnow import media
from winnow.config import DEFAULT_WORKSPACE
from winnow.core.types import CAPTURED_TAG, UNLABELED_TAG, Annotation, Dataset, ImageRecord, Source
from winnow.errors import ConflictError, InvalidInputError
from winnow.services.projects import get_project
from winnow.services.training import resolve_model
from winnow.store import models as m
from winnow.store.blobs import sha256_bytes
from winnow.store.db import Store

CAPTURE_KEY = "capture"
CAPTURE_MODES = ("off", "all", "fraction", "low_confidence", "rare_class", "client")
#: The policy of a project that never set one. ``rare_classes: None`` means automatic.
DEFAULT_POLICY: dict[str, Any] = {
    "mode": "off",
    "fraction": 0.1,
    "threshold": 0.5,
    "rare_classes": None,
    "max_per_day": None,
    "seed": 0,
}
#: Metadata a predict request may attach to a captured image.
METADATA_KEYS = ("camera", "site", "time")
_MAX_TEXT = 200
#: Record names of captured images start with this folder.
CAPTURE_FOLDER = "captured"
_EXTENSIONS = {"jpeg": "jpg", "png": "png", "gif": "gif", "webp": "webp", "bmp": "bmp", "tiff": "tif"}


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat(timespec="seconds") + "Z"


# ----------------------------------------------------------------------------- deployments


@dataclass
class DeploymentSummary:
    """A project's deployment. Field names are part of the ``--json`` and API contract."""

    project: str
    deployment: int | None  # the Deployment row id; None when nothing is deployed
    model: str | None  # the model id (64 hex)
    name: str | None
    backend: str | None
    task: str | None
    classes: list[str] | None
    deployed_at: str | None
    deployed_by: str | None
    previous: str | None = None  # the model id that was active before this deploy/undeploy
    changed: bool = True  # False when the model was already the active one

    @property
    def active(self) -> bool:
        return self.deployment is not None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"active": self.active}


@dataclass(frozen=True)
class ActiveModel:
    """What the inference server needs to know about a project's live deployment."""

    project_id: int
    deployment: int
    model: str  # model id
    name: str


def _live(session, project_id: int) -> list[m.Deployment]:
    return list(
        session.scalars(
            select(m.Deployment)
            .where(m.Deployment.project_id == project_id, m.Deployment.ended_at.is_(None))
            .order_by(m.Deployment.id.desc())
        )
    )


def _summary(project: str, dep: m.Deployment | None, row: m.Model | None, *, previous: str | None = None, changed: bool = True) -> DeploymentSummary:
    if dep is None or row is None:
        return DeploymentSummary(project, None, None, None, None, None, None, None, None, previous, changed)
    return DeploymentSummary(
        project, dep.id, row.model_id, row.name, row.backend, row.task, list(row.classes),
        _iso(dep.created_at), dep.created_by, previous, changed,
    )


def _check_servable(store: Store, row: m.Model) -> None:
    label = f"model {row.name!r} ({row.model_id[:12]})"
    if row.status != "ready":
        raise InvalidInputError(f"{label} is {row.status}; only a ready model can be deployed")
    onnx = (row.files or {}).get("onnx") or {}
    if not (onnx.get("verified") or {}).get("ok"):
        raise InvalidInputError(
            f"{label} has no ONNX export verified against PyTorch; the server runs ONNX only (see `winnow model show`)"
        )
    if not store.blobs.exists(onnx.get("sha256", "")):
        raise InvalidInputError(f"{label}: its model.onnx is missing from the store; run `winnow verify`")


def deploy(
    store: Store,
    model_ref: str,
    *,
    workspace: str = DEFAULT_WORKSPACE,
    user: str | None = None,
    project: str | None = None,
) -> DeploymentSummary:
    """Make the model ``model_ref`` (name or id prefix) the active model of its project.

    One transaction: the previous deployment row is ended, ``Model.deployed`` moves to this
    model and a new :class:`~winnow.store.models.Deployment` row is added. The model must be
    ``ready`` with a verified ONNX export (:class:`InvalidInputError` otherwise). Deploying the
    active model again changes nothing (``changed`` is false). ``project``, when given, must be
    the model's project.
    """
    with store.write() as session:
        row, project_name = resolve_model(session, model_ref, workspace)
        if project is not None and unicodedata.normalize("NFC", project) != project_name:
            get_project(session, project, workspace)  # 404 for a project that does not exist
            raise InvalidInputError(f"model {row.name!r} belongs to project {project_name!r}, not {project!r}")
        _check_servable(store, row)
        live = _live(session, row.project_id)
        if live and live[0].model_id == row.id and len(live) == 1 and row.deployed:
            return _summary(project_name, live[0], row, previous=row.model_id, changed=False)
        previous = session.get(m.Model, live[0].model_id).model_id if live else None
        now = m.utcnow()
        for dep in live:
            dep.ended_at = now
        for other in session.scalars(select(m.Model).where(m.Model.project_id == row.project_id, m.Model.deployed.is_(True))):
            other.deployed = False
        row.deployed = True
        dep = m.Deployment(project_id=row.project_id, model_id=row.id, created_at=now, created_by=user)
        session.add(dep)
        session.flush()
        return _summary(project_name, dep, row, previous=previous)


def undeploy(
    store: Store,
    model_ref: str | None = None,
    *,
    project: str | None = None,
    workspace: str = DEFAULT_WORKSPACE,
    user: str | None = None,
) -> DeploymentSummary:
    """End the live deployment of ``model_ref`` (or of ``project``'s active model): the project has
    no active model afterwards and predict requests get 409."""
    if (model_ref is None) == (project is None):
        raise InvalidInputError("undeploy a model (by name or id) or a project's active model, one of the two")
    with store.write() as session:
        if model_ref is not None:
            row, project_name = resolve_model(session, model_ref, workspace)
            project_id = row.project_id
        else:
            proj = get_project(session, project, workspace)
            project_id, project_name, row = proj.id, proj.name, None
        live = _live(session, project_id)
        active = session.get(m.Model, live[0].model_id) if live else None
        if active is None or (row is not None and active.id != row.id):
            what = f"model {row.name!r}" if row is not None else "a model"
            raise ConflictError(f"{what} is not deployed in project {project_name!r}")
        now = m.utcnow()
        for dep in live:
            dep.ended_at = now
        for other in session.scalars(select(m.Model).where(m.Model.project_id == project_id, m.Model.deployed.is_(True))):
            other.deployed = False
        return _summary(project_name, None, None, previous=active.model_id)


def deployment(store: Store, project: str, *, workspace: str = DEFAULT_WORKSPACE) -> DeploymentSummary:
    """The project's live deployment (``deployment`` is ``None`` when nothing is deployed)."""
    with store.read() as session:
        proj = get_project(session, project, workspace)
        live = _live(session, proj.id)
        row = session.get(m.Model, live[0].model_id) if live else None
        return _summary(proj.name, live[0] if live else None, row, changed=False)


def active_model(store: Store, project: str, workspace: str = DEFAULT_WORKSPACE) -> ActiveModel | None:
    """The project's active model, in one small query (the inference server asks about once a
    second per project); ``None`` when nothing is deployed. :class:`NotFoundError` for an unknown
    project."""
    with store.read() as session:
        found = session.execute(
            select(m.Project.id, m.Deployment.id, m.Model.model_id, m.Model.name)
            .select_from(m.Project)
            .join(m.Workspace, m.Workspace.id == m.Project.workspace_id)
            .outerjoin(m.Deployment, (m.Deployment.project_id == m.Project.id) & m.Deployment.ended_at.is_(None))
            .outerjoin(m.Model, m.Model.id == m.Deployment.model_id)
            .where(m.Workspace.name == workspace, m.Project.name == unicodedata.normalize("NFC", project))
            .order_by(m.Deployment.id.desc())
            .limit(1)
        ).first()
        if found is None:
            get_project(session, project, workspace)  # raises NotFoundError with the usual message
        project_id, dep_id, model_id, name = found
    return None if dep_id is None else ActiveModel(project_id, dep_id, model_id, name)


# ----------------------------------------------------------------------------- capture policy


def _number(policy: Mapping[str, Any], key: str, lo: float, hi: float, *, lo_open: bool = False) -> float:
    value = policy[key]
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidInputError(f"capture policy: {key} must be a number, got {value!r}")
    if value > hi or value < lo or (lo_open and value == lo):
        raise InvalidInputError(f"capture policy: {key} must be in {'(' if lo_open else '['}{lo}, {hi}], got {value!r}")
    return float(value)


def validate_policy(policy: Mapping[str, Any], classes: Sequence[str] | None = None) -> dict[str, Any]:
    """A complete, checked capture policy from ``policy`` (missing fields take
    :data:`DEFAULT_POLICY`'s values; unknown fields are refused).

    Fields: ``mode`` (one of :data:`CAPTURE_MODES`), ``fraction`` (in ``(0, 1]``, for
    ``fraction``), ``threshold`` (in ``[0, 1]``, for ``low_confidence``), ``rare_classes`` (a list
    of class names, or ``null`` for automatic, for ``rare_class``), ``max_per_day`` (captures per
    UTC day, ``null`` for no cap), ``seed`` (an integer mixed into ``fraction``'s choice).
    ``classes``: the project's classes, which ``rare_classes`` must be among.
    """
    if not isinstance(policy, Mapping):
        raise InvalidInputError("a capture policy is a JSON object")
    unknown = sorted(set(policy) - set(DEFAULT_POLICY))
    if unknown:
        raise InvalidInputError(f"capture policy: unknown field {unknown[0]!r}; fields are {', '.join(DEFAULT_POLICY)}")
    out = DEFAULT_POLICY | dict(policy)
    if out["mode"] not in CAPTURE_MODES:
        raise InvalidInputError(f"capture policy: mode must be one of {', '.join(CAPTURE_MODES)}, got {out['mode']!r}")
    out["fraction"] = _number(out, "fraction", 0.0, 1.0, lo_open=True)
    out["threshold"] = _number(out, "threshold", 0.0, 1.0)
    rare = out["rare_classes"]
    if rare is not None:
        if not isinstance(rare, list) or not rare or not all(isinstance(c, str) and c for c in rare):
            raise InvalidInputError("capture policy: rare_classes must be a non-empty list of class names, or null (automatic)")
        rare = list(dict.fromkeys(unicodedata.normalize("NFC", c) for c in rare))
        if classes is not None:
            missing = [c for c in rare if c not in set(classes)]
            if missing:
                raise InvalidInputError(f"capture policy: rare_classes names {missing[0]!r}, not a class of the project")
        out["rare_classes"] = rare
    cap = out["max_per_day"]
    if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int) or cap < 0):
        raise InvalidInputError(f"capture policy: max_per_day must be a whole number >= 0 or null, got {cap!r}")
    seed = out["seed"]
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise InvalidInputError(f"capture policy: seed must be an integer, got {seed!r}")
    return out


def _project_classes(session, project_id: int) -> list[str]:
    return list(session.scalars(select(m.ProjectClass.name).where(m.ProjectClass.project_id == project_id).order_by(m.ProjectClass.position)))


def get_capture_policy(store: Store, project: str, *, workspace: str = DEFAULT_WORKSPACE) -> dict[str, Any]:
    """The project's capture policy (:data:`DEFAULT_POLICY` when none was set)."""
    with store.read() as session:
        proj = get_project(session, project, workspace)
        row = session.get(m.ProjectSetting, (proj.id, CAPTURE_KEY))
        return DEFAULT_POLICY | dict(row.value) if row is not None else dict(DEFAULT_POLICY)


def set_capture_policy(
    store: Store,
    project: str,
    policy: Mapping[str, Any],
    *,
    replace: bool = False,
    workspace: str = DEFAULT_WORKSPACE,
    user: str | None = None,
) -> dict[str, Any]:
    """Set the project's capture policy; return it complete. ``replace``: ``policy`` is the whole
    new policy (missing fields take the defaults); else its fields change the current policy."""
    with store.write() as session:
        proj = get_project(session, project, workspace)
        row = session.get(m.ProjectSetting, (proj.id, CAPTURE_KEY))
        base = {} if replace or row is None else dict(row.value)
        value = validate_policy(base | dict(policy), _project_classes(session, proj.id))
        if row is None:
            session.add(m.ProjectSetting(project_id=proj.id, key=CAPTURE_KEY, value=value, updated_by=user))
        else:
            row.value, row.updated_by, row.updated_at = value, user, m.utcnow()
        return value


def rare_classes(store: Store, project: str, *, workspace: str = DEFAULT_WORKSPACE) -> list[str]:
    """The automatic ``rare_class`` set: the third of the project's classes (at least one) with
    the fewest labels (annotations not made by a model), fewest first."""
    with store.read() as session:
        proj = get_project(session, project, workspace)
        classes = _project_classes(session, proj.id)
        counts = dict(
            session.execute(
                select(m.ProjectClass.name, func.count(m.Annotation.id))
                .join(m.Annotation, m.Annotation.class_id == m.ProjectClass.id)
                .where(m.ProjectClass.project_id == proj.id, m.Annotation.source != Source.MODEL.value)
                .group_by(m.ProjectClass.name)
            ).all()
        )
    if not classes:
        return []
    ranked = sorted(classes, key=lambda c: counts.get(c, 0))  # stable: ties keep the class order
    return ranked[: max(1, len(classes) // 3)]


def fraction_draw(sha256: str, seed: int = 0) -> float:
    """A number in ``[0, 1)`` drawn from the image's bytes (their SHA-256) and ``seed``: the
    ``fraction`` mode keeps an image when it is below the fraction, so the same image always gets
    the same answer and distinct images are kept in the expected share."""
    digest = hashlib.sha256(f"{seed}:{sha256}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def wants_capture(
    policy: Mapping[str, Any],
    predictions: Sequence[Mapping[str, Any]],
    *,
    sha256: str,
    client: bool | None = None,
    top_score: float | None = None,
    rare: Sequence[str] = (),
) -> bool:
    """Whether a predicted image is captured under ``policy``.

    ``off`` never; otherwise the client's flag wins when it sent one (``capture=true`` keeps the
    image, ``capture=false`` never does: a camera can opt out). Without a flag: ``all`` always;
    ``fraction`` when :func:`fraction_draw` is below ``fraction``; ``low_confidence`` when the
    highest score (``top_score``, every prediction before ``min_score`` is applied; 0 with no
    prediction) is below ``threshold``; ``rare_class`` when a prediction's label is in ``rare``;
    ``client`` never (it only captures on the client's request).
    """
    mode = policy["mode"]
    if mode == "off":
        return False
    if client is not None:
        return client
    if mode == "all":
        return True
    if mode == "fraction":
        return fraction_draw(sha256, int(policy.get("seed") or 0)) < float(policy["fraction"])
    if mode == "low_confidence":
        if top_score is None:
            top_score = max((float(p["score"]) for p in predictions), default=0.0)
        return top_score < float(policy["threshold"])
    if mode == "rare_class":
        wanted = set(rare)
        return any(p["label"] in wanted for p in predictions)
    return False


# ----------------------------------------------------------------------------- capture


def _text(key: str, value: Any) -> str:
    if not isinstance(value, str):
        raise InvalidInputError(f"{key} must be text, got {type(value).__name__}")
    text = unicodedata.normalize("NFC", value).strip()
    if not text or len(text) > _MAX_TEXT or any(unicodedata.category(ch) == "Cc" for ch in text):
        raise InvalidInputError(f"{key} must be 1-{_MAX_TEXT} printable characters, got {value[:40]!r}")
    return text


def normalize_time(value: Any) -> str:
    """An ISO-8601 timestamp with a UTC offset (``2024-05-01T14:03:00+02:00``, ``...Z``) as UTC
    ISO-8601 text (``2024-05-01T12:03:00Z``). A time without an offset is refused: a camera's
    local clock would be read hours off."""
    text = _text("time", value)
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInputError(f"time must be ISO-8601 with an offset (e.g. 2024-05-01T12:03:00Z), got {text!r}") from None
    if when.tzinfo is None or when.utcoffset() is None:
        raise InvalidInputError(f"time {text!r} has no UTC offset; add Z or +HH:MM")
    when = when.astimezone(UTC)
    return when.isoformat(timespec="milliseconds" if when.microsecond else "seconds").replace("+00:00", "Z")


def capture_metadata(camera: Any = None, site: Any = None, time: Any = None) -> dict[str, str]:
    """The checked metadata of a predict request (``camera``, ``site``: text; ``time``:
    :func:`normalize_time`); fields left ``None`` are left out."""
    out: dict[str, str] = {}
    if camera is not None:
        out["camera"] = _text("camera", camera)
    if site is not None:
        out["site"] = _text("site", site)
    if time is not None:
        out["time"] = normalize_time(time)
    return out


@dataclass
class CaptureResult:
    """What :func:`capture` did: ``image`` is the record's name (``None`` when not kept)."""

    image: str | None
    stored: bool  # False: the same bytes were captured before (``image`` is that record) or the daily cap was reached
    reason: str | None = None  # why nothing new was stored

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def capture_name(sha256: str, fmt: str, day: datetime) -> str:
    """``captured/<YYYY-MM-DD>/<sha256[:16]>.<ext>``: named by content, so the same bytes
    captured twice are one record."""
    return f"{CAPTURE_FOLDER}/{day:%Y-%m-%d}/{sha256[:16]}.{_EXTENSIONS.get(fmt, fmt or 'img')}"


def _day_range(day: datetime) -> tuple[str, str]:
    prefix = f"{CAPTURE_FOLDER}/{day:%Y-%m-%d}/"
    return prefix, prefix[:-1] + "0"  # '0' sorts right after '/': an index range, not a LIKE


@dataclass
class CaptureRequest:
    """One image to capture: its bytes, the model's predictions on it and the request's metadata."""

    data: bytes
    predictions: Sequence[Mapping[str, Any]]
    metadata: Mapping[str, Any] | None
    model: str


def capture(
    store: Store,
    project: str,
    data: bytes,
    predictions: Sequence[Mapping[str, Any]],
    *,
    metadata: Mapping[str, Any] | None = None,
    model: str,
    user: str | None = None,
    workspace: str = DEFAULT_WORKSPACE,
    max_per_day: int | None = None,
    now: datetime | None = None,
) -> CaptureResult:
    """Store a predicted image in ``project``: tagged ``unlabeled`` and ``captured``, with
    ``metadata`` (checked by :func:`capture_metadata`) plus ``captured_at`` and ``model``, and
    ``predictions`` (dicts with ``label``, ``score``, ``bbox`` ``xyxy`` absolute pixels,
    ``rle``) as ``source=model`` annotations carrying ``attributes.model`` (pre-labels for the
    labelling queue). Predictions of classes the project no longer has are left out.

    The image goes through :func:`~winnow.services.ingest.import_records` with ``strict=True``
    (magic bytes, header, bomb limits, a full decode), named by :func:`capture_name`; bytes
    already captured in the project are not stored again. ``max_per_day`` caps the captures of
    a UTC day (approximately: concurrent captures may pass it by a few).
    """
    request = CaptureRequest(data, predictions, metadata, model)
    result = capture_many(store, project, [request], user=user, workspace=workspace, max_per_day=max_per_day, now=now)[0]
    if isinstance(result, Exception):
        raise result
    return result


def _checked(request: CaptureRequest, now: datetime) -> tuple[dict[str, Any], str, str]:
    """``(metadata, sha256, record name)`` of a request; :class:`InvalidInputError` when bad."""
    metadata = request.metadata or {}
    extra = sorted(set(metadata) - set(METADATA_KEYS))
    if extra:
        raise InvalidInputError(f"capture metadata: unknown field {extra[0]!r}; fields are {', '.join(METADATA_KEYS)}")
    meta = capture_metadata(**{k: v for k, v in metadata.items() if k in METADATA_KEYS})
    if not request.data:
        raise InvalidInputError("capture: the image is empty")
    info = media.probe(request.data, "captured image")
    sha = sha256_bytes(request.data)
    return meta, sha, capture_name(sha, info.format, now)


def capture_many(
    store: Store,
    project: str,
    requests: Sequence[CaptureRequest],
    *,
    user: str | None = None,
    workspace: str = DEFAULT_WORKSPACE,
    max_per_day: int | None = None,
    now: datetime | None = None,
) -> list[CaptureResult | Exception]:
    """:func:`capture` for several images in one import transaction (what the server's capture
    writer calls with the captures that queued up while it wrote the last ones).

    Returns one entry per request, in order: its :class:`CaptureResult`, or the exception that
    refused it (a refused request never refuses the others).
    """
    from winnow.services.ingest import import_records

    now = now or datetime.now(UTC)
    results: list[CaptureResult | Exception | None] = [None] * len(requests)
    checked: dict[int, tuple[dict[str, Any], str, str]] = {}
    for i, request in enumerate(requests):
        try:
            checked[i] = _checked(request, now)
        except Exception as exc:  # noqa: BLE001 - reported for this request only
            results[i] = exc
    with store.read() as session:
        proj = get_project(session, project, workspace)
        shas = sorted({sha for _, sha, _ in checked.values()})
        earlier: dict[str, str] = {}
        for start in range(0, len(shas), 500):
            for name, sha in session.execute(
                select(m.Image.name, m.Image.sha256).where(
                    m.Image.project_id == proj.id, m.Image.sha256.in_(shas[start:start + 500]), m.Image.name.startswith(CAPTURE_FOLDER + "/")
                )
            ):
                earlier.setdefault(sha, name)
        today = 0
        if max_per_day is not None:
            lo, hi = _day_range(now)
            today = session.scalar(
                select(func.count()).select_from(m.Image).where(m.Image.project_id == proj.id, m.Image.name >= lo, m.Image.name < hi)
            ) or 0
        known = set(_project_classes(session, proj.id))
    captured_at = now.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    pending: dict[str, list[int]] = {}  # record name -> the requests it answers
    records: list[ImageRecord] = []
    scratch = Path(tempfile.mkdtemp(prefix="capture-", dir=store.tmp))
    try:
        for i, (meta, sha, name) in checked.items():
            if sha in earlier:
                results[i] = CaptureResult(earlier[sha], False, "already captured")
                continue
            if name in pending:  # the same frame twice in this batch
                pending[name].append(i)
                continue
            if max_per_day is not None and today + len(records) >= max_per_day:
                results[i] = CaptureResult(None, False, f"the daily cap of {max_per_day} captures is reached")
                continue
            request = requests[i]
            annotations = [
                Annotation(
                    label=p["label"],
                    bbox=tuple(p["bbox"]) if p.get("bbox") is not None else None,
                    rle=p.get("rle"),
                    score=float(p["score"]),
                    source=Source.MODEL,
                    attributes={"model": request.model},
                )
                for p in request.predictions
                if p["label"] in known
            ]
            path = scratch / f"{len(records):06d}"
            path.write_bytes(request.data)
            records.append(
                ImageRecord(
                    name=name, file=path, annotations=annotations, tags=[UNLABELED_TAG, CAPTURED_TAG],
                    metadata=meta | {"captured_at": captured_at, "model": request.model},
                )
            )
            pending[name] = [i]
        if records:
            try:
                import_records(
                    store, project, Dataset(classes=[], images=records), scratch, workspace=workspace,
                    source="capture", format="capture", strict=True,
                )
            except InvalidInputError as exc:
                if len(records) == 1:
                    for i in pending[records[0].name]:
                        results[i] = exc
                    records = []
                else:  # one bad image must not refuse the others: capture them one by one
                    for rec in records:
                        one = capture_many(
                            store, project, [requests[j] for j in pending[rec.name][:1]], user=user,
                            workspace=workspace, max_per_day=max_per_day, now=now,
                        )[0]
                        for i in pending[rec.name]:
                            results[i] = one
                    records = []
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    for rec in records:
        first, *again = pending[rec.name]
        results[first] = CaptureResult(rec.name, True)
        for i in again:
            results[i] = CaptureResult(rec.name, False, "already captured")
    return results  # type: ignore[return-value]
