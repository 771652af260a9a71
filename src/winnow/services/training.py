"""Training and the model registry: train a backend on a version, register the model (its
version, recipe, backend, hyper-parameters, code version, metrics, weights and ONNX export),
list/show/resolve models, predict with them, and store predictions on a project as
``source=model`` annotations (one undoable change).

A model learns from the version's ``train`` split; its validation metrics are computed on the
``valid`` split (``test`` when the version has no valid images). Its files are blobs in the
content-addressed store (``gc`` keeps them: :func:`referenced_model_blobs`).

torch is imported only inside the functions that train or predict with PyTorch (the ``train``
extra); listing models, ONNX predictions and gc do not need it.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import subprocess
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

import winnow
from winnow.config import DEFAULT_WORKSPACE
from winnow.core.types import (
    ORIGIN_BASE,
    ORIGIN_KEY,
    UNLABELED_TAG,
    ImageRecord,
    Source,
    Task,
)
from winnow.errors import ConflictError, InvalidInputError, NotFoundError, WinnowError
from winnow.services.fixes import record_change, snapshot_row
from winnow.services.projects import get_project, validate_name
from winnow.store import models as m
from winnow.store.db import Store

ProgressFn = Callable[[int, int], None]

DEFAULT_EPOCHS = 10
#: Validation/probe images the ONNX export is checked on against PyTorch.
ONNX_PROBE_IMAGES = 8
ENGINES = ("auto", "onnx", "torch")
#: Hyper-parameters that do not change what is learnt (left out of the model id).
_NOT_IN_ID = ("eval_every",)


@dataclass
class ModelSummary:
    """What ``winnow model show`` prints. Field names are part of the ``--json`` contract."""

    project: str
    model: str  # the model id (64 hex)
    name: str
    version: str  # the version's id
    backend: str
    task: str
    classes: list[str]
    params: dict[str, Any]
    recipe: dict[str, Any]
    code_version: str
    metrics: dict[str, Any]
    files: dict[str, Any]
    status: str
    deployed: bool
    created_at: str
    finished_at: str | None
    created: bool = False  # False when an identical model was already registered

    @property
    def ref(self) -> str:
        return self.model[:12]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"ref": self.ref}


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat(timespec="seconds") + "Z"


def _summary(row: m.Model, project: str, *, created: bool = False) -> ModelSummary:
    return ModelSummary(
        project=project,
        model=row.model_id,
        name=row.name,
        version=row.version_id,
        backend=row.backend,
        task=row.task,
        classes=list(row.classes),
        params=row.params,
        recipe=row.recipe,
        code_version=row.code_version,
        metrics=row.metrics or {},
        files=row.files or {},
        status=row.status,
        deployed=bool(row.deployed),
        created_at=_iso(row.created_at) or "",
        finished_at=_iso(row.finished_at),
        created=created,
    )


def code_version() -> str:
    """``winnow.__version__``, plus ``git describe`` of the source tree when it is a checkout."""
    version = winnow.__version__
    try:
        described = subprocess.run(
            ["git", "describe", "--always", "--dirty", "--tags"],
            cwd=Path(winnow.__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return version
    text = described.stdout.strip()
    return f"{version}+git.{text}" if described.returncode == 0 and text else version


def model_id_for(version_id: str, backend: str, params: dict[str, Any]) -> str:
    """SHA-256 of what determines the training: version, backend, hyper-parameters (seed included)."""
    keyed = {k: v for k, v in params.items() if k not in _NOT_IN_ID}
    doc = json.dumps({"version": version_id, "backend": backend, "params": keyed}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(doc.encode()).hexdigest()


# ----------------------------------------------------------------------------- resolving


_HEX = frozenset("0123456789abcdef")


def _models_in_workspace(workspace: str):
    return select(m.Model, m.Project.name).join(m.Project).join(m.Workspace).where(m.Workspace.name == workspace)


def resolve_model(session: Session, ref: str, workspace: str = DEFAULT_WORKSPACE, *, include_base: bool = False) -> tuple[m.Model, str]:
    """A model of the workspace by name or model-id prefix (4+ hex); ``(row, project name)``.

    ``include_base``: also the models of the base projects the workspace's forks inherit from
    (when the workspace has none of that name): for reading only (predict, evaluate, fine-tune
    from), never for changing one (deploy), so a customer cannot touch its base's models."""
    if not isinstance(ref, str) or not ref.strip():
        raise InvalidInputError("a model is named by its name or its id (a prefix of 4+ hex digits)")
    ref = ref.strip()
    q = _models_in_workspace(workspace)
    rows = list(session.execute(q.where(m.Model.name == ref)))
    if len(rows) == 1:
        return rows[0][0], rows[0][1]
    if len(ref) >= 4 and _HEX.issuperset(ref):
        rows = list(session.execute(q.where(m.Model.model_id.startswith(ref)).limit(2)))
        if len(rows) == 1:
            return rows[0][0], rows[0][1]
        if len(rows) > 1:
            raise InvalidInputError(f"model id prefix {ref!r} is ambiguous; give more characters")
    if include_base and (found := _base_model(session, ref, workspace)) is not None:
        return found
    raise NotFoundError(f"no model {ref!r} in workspace {workspace!r}; `winnow model list` shows them")


def _base_model(session: Session, ref: str, workspace: str) -> tuple[m.Model, str] | None:
    """A model of a base project the workspace's forks inherit from (readable, never writable,
    from the customer's workspace): what ``--from MODEL`` and ``compare`` use for the base model."""
    from winnow.services.forks import visible_base_project_ids

    bases = visible_base_project_ids(session, workspace)
    if not bases:
        return None
    q = select(m.Model, m.Project.name).join(m.Project).where(m.Model.project_id.in_(bases))
    rows = list(session.execute(q.where(m.Model.name == ref)))
    if len(rows) != 1 and len(ref) >= 4 and _HEX.issuperset(ref):
        rows = list(session.execute(q.where(m.Model.model_id.startswith(ref)).limit(2)))
    if len(rows) > 1:
        raise InvalidInputError(f"model {ref!r} is ambiguous among the base projects' models; give more of its id")
    return (rows[0][0], rows[0][1]) if rows else None


def list_models(store: Store, project: str | None = None, *, workspace: str = DEFAULT_WORKSPACE) -> list[ModelSummary]:
    """The registered models (of ``project``, or of the whole workspace), oldest first."""
    with store.read() as session:
        q = _models_in_workspace(workspace)
        if project is not None:
            q = q.where(m.Model.project_id == get_project(session, project, workspace).id)
        return [_summary(row, name) for row, name in session.execute(q.order_by(m.Model.id))]


def show_model(store: Store, ref: str, *, workspace: str = DEFAULT_WORKSPACE) -> ModelSummary:
    with store.read() as session:
        row, project = resolve_model(session, ref, workspace)
        return _summary(row, project)


def referenced_model_blobs(store: Store) -> set[str]:
    """Every blob a registered model points at (weights, ONNX): ``gc`` keeps them."""
    with store.read() as session:
        files = list(session.scalars(select(m.Model.files)))
    shas: set[str] = set()
    for f in files:
        for entry in (f or {}).values():
            if isinstance(entry, dict) and isinstance(entry.get("sha256"), str):
                shas.add(entry["sha256"])
    return shas


# ----------------------------------------------------------------------------- training


class _Prepared:
    """Items of a ``VersionDataset`` (by index) as a backend's network inputs and targets."""

    def __init__(self, dataset: Any, indices: list[int], backend: Any, image_size: int):
        self.dataset, self.indices, self.backend, self.image_size = dataset, indices, backend, image_size

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[Any, Any]:
        image, target = self.dataset[self.indices[i]]
        return self.backend.prepare(image, target, self.image_size)


def decode_record(rec: ImageRecord):
    from winnow.media import decode

    return decode(Path(rec.file).read_bytes(), rec.name, "RGB")


def _split_plan(records: Sequence[ImageRecord], version: str) -> tuple[list[int], list[int], str | None]:
    train = [i for i, r in enumerate(records) if r.split == "train"]
    if not train:
        raise InvalidInputError(
            f"version {version} has no train images; create a version with a train split, "
            "e.g. `winnow version create PROJECT --split train=0.8,valid=0.2 --resplit`"
        )
    for split in ("valid", "test"):
        idx = [i for i, r in enumerate(records) if r.split == split]
        if idx:
            return train, idx, split
    return train, [], None


def _unique_name(session: Session, workspace: str, wanted: str | None, default: str) -> str:
    taken = set(session.scalars(select(m.Model.name).join(m.Project).join(m.Workspace).where(m.Workspace.name == workspace)))
    if wanted is not None:
        name = validate_name(wanted, "model")
        if name in taken:
            raise ConflictError(f"workspace {workspace!r} already has a model named {name!r}")
        if len(name) >= 4 and _HEX.issuperset(name):
            raise InvalidInputError(f"model name {name!r} would read as a model id; pick another")
        return name
    name, n = default, 1
    while name in taken:
        n += 1
        name = f"{default}-{n}"
    return name


def _default_name(session: Session, project: m.Project, backend: str, version_number: int) -> str:
    """``ssdlite-v3``; in a customer project (a fork) ``<project>-ssdlite-v3``, so its models never
    take the names of its base's (which the customer also reads, by name, through the fork)."""
    base = f"{backend.replace(':', '-')}-v{version_number}"
    return f"{project.name}-{base}" if session.get(m.ProjectFork, project.id) is not None else base


def compare_predictions(a: Sequence[Any], b: Sequence[Any], *, box_rtol: float = 1e-3, score_atol: float = 1e-4) -> dict[str, Any]:
    """How far two engines' predictions (lists of :class:`~winnow.train.base.Prediction`) are
    apart. Each prediction of ``a`` is matched to one of ``b`` with the same label and a score
    within ``score_atol`` (the closest box wins): predictions whose scores tie to float precision
    may come out in either order. ``ok`` when every prediction is matched and the boxes agree
    within ``box_rtol`` (relative, with a floor of one pixel)."""
    import numpy as np

    box, score, matched = 0.0, 0.0, True
    for pa, pb in zip(a, b, strict=True):
        if len(pa) != len(pb):
            matched = False
            continue
        free = np.ones(len(pb), bool)
        for i in range(len(pa)):
            cand = np.nonzero(free & (pb.class_ids == pa.class_ids[i]) & (np.abs(pb.scores - pa.scores[i]) <= score_atol))[0]
            if not len(cand):
                matched = False
                break
            rel = (np.abs(pb.boxes[cand] - pa.boxes[i]) / np.maximum(np.abs(pa.boxes[i]), 1.0)).max(axis=1)
            j = cand[int(np.argmin(rel))]
            free[j] = False
            box = max(box, float(rel.min()))
            score = max(score, float(abs(pb.scores[j] - pa.scores[i])))
    return {
        "images": len(a),
        "matched": matched,
        "max_box_rel_diff": box,
        "max_score_diff": score,
        "ok": matched and box <= box_rtol and score <= score_atol,
    }


# ----------------------------------------------------------------------------- fine-tuning


@dataclass(frozen=True)
class InitModel:
    """A registered model whose weights a training starts from (``train_model(init_from=...)``)."""

    model: str  # its model id
    name: str
    project: str
    backend: str
    classes: list[str]
    image_size: int
    width: float
    weights: str  # the sha256 of its weights.pt blob

    def check_backend(self, backend: Any) -> None:
        if backend.name != self.backend:
            raise InvalidInputError(
                f"model {self.name!r} ({self.model[:12]}) is a {self.backend!r} model; a fine-tune from it trains "
                f"{self.backend!r} too, not {backend.name!r} (leave out --model)"
            )
        if backend.own_trainer:
            raise InvalidInputError(f"{backend.name!r} trains with its own trainer from random init; it cannot start from another model")

    def describe(self) -> dict[str, Any]:
        return {"model": self.model, "name": self.name, "project": self.project}


def resolve_init_model(store: Store, ref: str, *, task: Task, version: str, workspace: str = DEFAULT_WORKSPACE) -> InitModel:
    """The registered model ``ref`` (:func:`resolve_model`) to fine-tune from: it must be ready, of
    ``task``, and its weights must be in the store."""
    with store.read() as session:
        row, project = resolve_model(session, ref, workspace, include_base=True)
        init = InitModel(
            row.model_id, row.name, project, row.backend, list(row.classes), int(row.params.get("image_size") or 0),
            float(row.params.get("width", 1.0)), ((row.files or {}).get("weights") or {}).get("sha256", ""),
        )
        status, model_task = row.status, row.task
    label = f"model {init.name!r} ({init.model[:12]})"
    if status != "ready":
        raise InvalidInputError(f"{label} is {status}, not ready: only a trained model can be fine-tuned from")
    if model_task != task.value:
        raise InvalidInputError(f"{label} is a {model_task} model; version {version} is {task.value}")
    if not init.weights or not store.blobs.exists(init.weights):
        raise NotFoundError(f"{label}: its weights.pt is missing from the store; run `winnow verify`")
    return init


def class_dependent_tensors(backend: Any, net: Any, num_classes: int, image_size: int, width: float) -> set[str]:
    """The names of ``net``'s tensors (``backend.build(num_classes, ...)``) that depend on the class
    list: those a network built for one more class has in another shape (or lacks)."""
    import torch

    with torch.random.fork_rng(devices=[]):  # building the probe must not move the seeded generator
        probe = backend.build(num_classes + 1, image_size, width=width).state_dict()
    return {k for k, v in net.state_dict().items() if k not in probe or tuple(probe[k].shape) != tuple(v.shape)}


def _as_customer_names(init: InitModel, recipe: dict[str, Any]) -> list[str]:
    """The init model's classes as the version names them: a fork's version made from the init
    model's project reads the base's classes through its class map (``circle`` the customer
    calls ``ring`` keeps its head row); any other model's classes as they are."""
    base = recipe.get("base") or {}
    class_map = base.get("class_map") or {}
    if base.get("project") != init.project or not class_map:
        return list(init.classes)
    return [t if isinstance(t := class_map.get(c, c), str) else c for c in init.classes]


def load_init_weights(
    net: Any,
    state: dict[str, Any],
    *,
    old_classes: Sequence[str],
    new_classes: Sequence[str],
    per_class: set[str],
    offset: int | None,
) -> dict[str, Any]:
    """Load a fine-tune's starting weights ``state`` (a state dict of the same backend, trained on
    ``old_classes``) into ``net`` (built for ``new_classes``).

    A tensor whose name and shape match is loaded whole, except a class-dependent one (named in
    ``per_class``) when the class lists differ: its rows are copied per shared class name when it
    has one row per network label (first dimension ``offset + number of classes``, see
    :meth:`~winnow.train.base.Backend.class_row_offset`; the ``offset`` leading rows, detection's
    background, are copied too; a new class's row keeps its random init), else it is skipped.
    Returns ``{"loaded", "remapped", "skipped", "total", "classes_matched"}``: ``loaded`` counts
    tensors loaded whole, ``remapped``/``skipped`` name tensors, ``total`` counts ``net``'s.
    """
    import torch

    own = net.state_dict()
    same = list(old_classes) == list(new_classes)
    shared = [c for c in new_classes if c in old_classes]
    rows = None
    if offset is not None and shared:
        lead = list(range(offset))
        rows = (
            torch.as_tensor(lead + [offset + list(old_classes).index(c) for c in shared]),
            torch.as_tensor(lead + [offset + list(new_classes).index(c) for c in shared]),
        )
    take: dict[str, Any] = {}
    remapped: list[str] = []
    skipped: list[str] = []
    for key, target in own.items():
        src = state.get(key)
        if src is None:
            skipped.append(key)
        elif same or key not in per_class:
            if tuple(src.shape) == tuple(target.shape):
                take[key] = src
            else:
                skipped.append(key)
        elif (
            rows is not None
            and src.ndim >= 1
            and src.shape[0] == offset + len(old_classes)
            and target.shape[0] == offset + len(new_classes)
            and tuple(src.shape[1:]) == tuple(target.shape[1:])
        ):
            value = target.clone()
            value[rows[1]] = src[rows[0]].to(value.dtype)
            take[key] = value
            remapped.append(key)
        else:
            skipped.append(key)
    net.load_state_dict(take, strict=False)
    skipped += [k for k in state if k not in own]
    return {
        "loaded": len(take) - len(remapped),
        "remapped": remapped,
        "skipped": skipped,
        "total": len(own),
        "classes_matched": shared,
    }


@dataclass(frozen=True)
class MixPlan:
    """Which of a version's inherited train images (metadata ``origin: base``) a training uses.

    Images are picked by source image: every output the version's recipe makes of one source
    image (augmented copies, tiles) is used or left out together.
    """

    base_mix: float  # the fraction of the inherited train images used (1.0 when not given)
    inherited: frozenset[str]  # names of the inherited train images (manifest names)
    left_out: frozenset[str]  # those not used

    def apply(self, records: Sequence[ImageRecord], train_idx: Sequence[int]) -> tuple[list[int], dict[str, Any]]:
        """The train indices of ``records`` (materialized outputs, whose ``metadata["source"]`` is
        their source image's name) that are used, and the ``mix`` metrics (counts of outputs)."""

        def source(i: int) -> str:
            return records[i].metadata.get("source", records[i].name)

        own = [i for i in train_idx if source(i) not in self.inherited]
        base = [i for i in train_idx if source(i) in self.inherited]
        used = [i for i in base if source(i) not in self.left_out]
        return sorted(own + used), {
            "own_train_images": len(own),
            "base_train_images_available": len(base),
            "base_train_images_used": len(used),
            "base_mix": self.base_mix,
        }


def mix_plan(images: Sequence[ImageRecord], base_mix: float | None, seed: int, version: str) -> MixPlan | None:
    """The :class:`MixPlan` of a version's ``images`` (its manifest records): ``base_mix * n``
    (rounded half up) of its ``n`` inherited train images, drawn with ``numpy.random.default_rng(seed)`` from
    their sorted names (``None``: all of them). ``None`` when the version has no inherited image
    and no ``base_mix`` is given."""
    import numpy as np

    if base_mix is not None and (isinstance(base_mix, bool) or not isinstance(base_mix, int | float) or not 0.0 <= base_mix <= 1.0):
        raise InvalidInputError(f"base mix is the fraction of the inherited base images to train on, in [0, 1]; got {base_mix!r}")
    if base_mix is None and not any(r.metadata.get(ORIGIN_KEY) == ORIGIN_BASE for r in images):
        return None
    inherited = sorted(r.name for r in images if r.split == "train" and r.metadata.get(ORIGIN_KEY) == ORIGIN_BASE)
    fraction = 1.0 if base_mix is None else float(base_mix)
    keep = math.floor(fraction * len(inherited) + 0.5)
    chosen = np.random.default_rng(seed).choice(len(inherited), size=keep, replace=False) if keep < len(inherited) else range(len(inherited))
    kept = {inherited[int(i)] for i in chosen}
    own = sum(1 for r in images if r.split == "train" and r.metadata.get(ORIGIN_KEY) != ORIGIN_BASE)
    if own == 0 and not kept:
        raise InvalidInputError(
            f"base mix {base_mix} leaves nothing to train on: the {len(inherited)} train images of version {version} "
            "are all inherited from the base; raise --base-mix"
        )
    return MixPlan(fraction, frozenset(inherited), frozenset(inherited) - kept)


def train_model(
    store: Store,
    project: str,
    ref: str | None = None,
    *,
    workspace: str = DEFAULT_WORKSPACE,
    model: str | None = None,
    epochs: int = DEFAULT_EPOCHS,
    image_size: int | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
    optimizer: str | None = None,
    weight_decay: float = 1e-4,
    seed: int = 0,
    pretrained: str | bool = "auto",
    width: float | None = None,
    name: str | None = None,
    eval_every: int = 0,
    progress: ProgressFn | None = None,
    log: Callable[[dict[str, Any]], None] | None = None,
    stop: Callable[[dict[str, Any]], bool] | None = None,
    user: str | None = None,
    init_from: str | None = None,
    base_mix: float | None = None,
) -> ModelSummary:
    """Train ``model`` (the task's default backend when ``None``) on version ``ref`` of
    ``project`` and register it.

    Trains on the ``train`` split, reports validation metrics on ``valid`` (``test`` when there
    is no valid split): COCO mAP/mAP50 for detection and segmentation, accuracy for
    classification, after the last epoch and every ``eval_every`` epochs. ``log`` receives each
    epoch's entry (JSON-able); ``stop(entry)`` may end training early. ``pretrained``: ``auto``
    uses the backend's checkpoint when it is in the local torch cache, ``yes`` requires it,
    ``no`` never uses it; nothing is ever downloaded. ``width``: 1 (the init model's with
    ``init_from``). The same version, backend and hyper-parameters give the same model id;
    training it again returns the registered model.

    Fine-tuning (a customer's model from its base's): ``init_from`` (a registered model's name or
    id prefix, ready, of the same backend and task) gives the starting weights instead of random
    init or a pretrained checkpoint (:func:`load_init_weights`; the backend, width and image size
    default to that model's); ``base_mix`` (in ``[0, 1]``) is the fraction of the version's
    inherited train images (metadata ``origin: base``) to train on, drawn with ``seed``; the
    project's own train images are always used. Either one, when given, enters the model id.
    """
    from winnow.services.versions import load_version
    from winnow.train.base import DEFAULT_BACKEND, PRETRAINED_CHOICES, get_backend

    loaded = load_version(store, project, ref, workspace=workspace)
    task = Task(loaded.manifest.task)
    where = f"{loaded.project}@{loaded.version_id[:12]}"
    init = resolve_init_model(store, init_from, task=task, version=where, workspace=workspace) if init_from is not None else None
    backend = get_backend(model or (init.backend if init else DEFAULT_BACKEND[task]))
    if backend.task is not task:
        raise InvalidInputError(
            f"model {backend.name!r} is a {backend.task.value} model; version {loaded.version_id[:12]} of {loaded.project!r} is {task.value}"
        )
    if init is not None:
        init.check_backend(backend)
        if width is not None and float(width) != init.width:
            raise InvalidInputError(
                f"model {init.name!r} has width {init.width}; its weights fit only a network of that width (leave out --width)"
            )
    if width is None:
        width = init.width if init else 1.0
    classes = list(loaded.manifest.classes)
    if not classes:
        raise InvalidInputError(f"version {loaded.version_id[:12]} has no classes to learn")
    image_size = int(image_size or (init.image_size if init else backend.default_image_size))
    backend.check_options(image_size, width)
    _split_plan(loaded.manifest.images, where)
    mix = mix_plan(loaded.manifest.images, base_mix, seed, where)
    if mix is not None and base_mix is not None and backend.own_trainer:
        raise InvalidInputError(
            f"{backend.name!r} trains on an export of the whole version with its own trainer; it cannot take --base-mix"
        )
    requested = pretrained if isinstance(pretrained, str) else ("yes" if pretrained else "no")
    if init is not None:  # the init model's weights win over any pretrained checkpoint
        if requested not in PRETRAINED_CHOICES:
            raise InvalidInputError(f"pretrained must be one of {', '.join(PRETRAINED_CHOICES)}, got {requested!r}")
        found = None
    else:
        found = backend.resolve_pretrained(pretrained, width)

    from winnow.train.loop import FitConfig

    config = FitConfig(
        epochs=epochs,
        batch_size=int(batch_size or backend.default_batch_size),
        lr=float(lr or backend.default_lr),
        optimizer=optimizer or backend.default_optimizer,
        weight_decay=weight_decay,
        seed=seed,
    )
    config.check()
    params = config.as_dict() | {
        "image_size": image_size,
        "width": width,
        "pretrained": {"requested": requested, "file": found[0].file if found else None},
        "eval_every": eval_every,
    }
    if init is not None:  # only when given: the ids of plain trainings do not change
        params["init_from"] = init.model
    if base_mix is not None:
        params["base_mix"] = float(base_mix)
    model_id = model_id_for(loaded.version_id, backend.name, params)

    with store.write() as session:
        proj = get_project(session, project, workspace)
        existing = session.scalar(select(m.Model).where(m.Model.project_id == proj.id, m.Model.model_id == model_id))
        if existing is not None and existing.status == "ready":
            return _summary(existing, proj.name)
        if existing is not None:  # a failed or interrupted run: train again
            session.delete(existing)
            session.flush()
        row = m.Model(
            project_id=proj.id,
            model_id=model_id,
            name=_unique_name(session, workspace, name, _default_name(session, proj, backend.name, loaded.number)),
            version_id=loaded.version_id,
            backend=backend.name,
            task=task.value,
            classes=classes,
            params=params,
            recipe=loaded.manifest.recipe,
            code_version=code_version(),
            metrics={},
            files={},
            status="training",
            created_by=user,
        )
        session.add(row)
        session.flush()
        row_id, project_name = row.id, proj.name

    work = store.tmp / f"train-{model_id[:16]}-{row_id}"
    try:
        metrics, files = _train(
            store, workspace, loaded, backend, config, found, classes, image_size, width, eval_every, work, progress, log, stop,
            init=init, mix=mix,
        )
        if init is not None:  # what was asked of --pretrained, not used: the init model's weights win
            metrics["init"]["pretrained_requested"] = requested
    except BaseException as exc:
        with store.write() as session:
            failed = session.get(m.Model, row_id)
            if failed is not None:
                failed.status = "failed"
                failed.metrics = {"error": f"{type(exc).__name__}: {exc}"}
                failed.finished_at = m.utcnow()
        raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    with store.write() as session:
        done = session.get(m.Model, row_id)
        if done is None:
            raise ConflictError(f"model {model_id[:12]} was deleted while it was training")
        done.metrics = metrics
        done.files = files
        done.status = "ready"
        done.finished_at = m.utcnow()
        session.flush()
        return _summary(done, project_name, created=True)


def _train(
    store: Store,
    workspace: str,
    loaded: Any,
    backend: Any,
    config: Any,
    found: Any,
    classes: list[str],
    image_size: int,
    width: float,
    eval_every: int,
    work: Path,
    progress: ProgressFn | None,
    log: Callable[[dict[str, Any]], None] | None,
    stop: Callable[[dict[str, Any]], bool] | None,
    *,
    init: InitModel | None = None,
    mix: MixPlan | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Build (from ``init``'s weights when given), fit (on the train images ``mix`` keeps),
    evaluate, save and export; return ``(metrics, files)``."""
    import torch

    from winnow.train import onnx_io
    from winnow.train._metrics import validation_metrics
    from winnow.train.loop import fit, torch_threads
    from winnow.versions.torch_dataset import VersionDataset

    task = backend.task
    data = VersionDataset(store, loaded.project, loaded.version_id, split=None, workspace=workspace)
    train_idx, valid_idx, valid_split = _split_plan(data.records, f"{loaded.project}@{loaded.version_id[:12]}")
    mix_info = None
    if mix is not None:
        train_idx, mix_info = mix.apply(data.records, train_idx)
    valid_records = [data.records[i] for i in valid_idx]
    valid_images = [decode_record(r) for r in valid_records]

    torch.manual_seed(config.seed)
    net = backend.build(len(classes), image_size, width=width)
    pretrained_info = backend.load_pretrained(net, *found) if found else None
    init_info = None
    if init is not None:
        state = torch.load(store.blobs.path(init.weights), map_location="cpu", weights_only=True)
        old_classes = _as_customer_names(init, loaded.manifest.recipe)
        per_class = class_dependent_tensors(backend, net, len(classes), image_size, width) if old_classes != classes else set()
        init_info = init.describe() | load_init_weights(
            net, state, old_classes=old_classes, new_classes=classes, per_class=per_class, offset=backend.class_row_offset()
        )

    def evaluate(epoch: int) -> dict[str, Any]:
        if not valid_records:
            return {"split": None, "images": 0}
        with torch_threads():
            preds = backend.predict_arrays(net, valid_images, image_size)
        return {"split": valid_split} | validation_metrics(task, valid_records, preds, classes)

    if backend.own_trainer:  # e.g. ultralytics: trains on an export of the version with its own trainer
        def export(fmt: str, dest: Path) -> Any:
            from winnow.services.versions import export_version

            return export_version(store, loaded.project, loaded.version_id, dest, fmt, workspace=workspace)

        entries = backend.fit_version(net, export=export, config=config, image_size=image_size, work=work / "trainer")
        if entries:
            entries[-1]["valid"] = evaluate(len(entries))
        for entry in entries if log is not None else ():
            log(entry)
    else:
        entries = fit(
            backend,
            net,
            _Prepared(data, train_idx, backend, image_size),
            config,
            evaluate=evaluate,
            eval_every=eval_every,
            progress=progress,
            log=log,
            stop=stop,
        )
    final = next((e["valid"] for e in reversed(entries) if "valid" in e), None)

    work.mkdir(parents=True, exist_ok=True)
    weights = work / "weights.pt"
    torch.save(net.state_dict(), weights)
    onnx_path = work / "model.onnx"
    with torch_threads():
        info = backend.export_onnx(net, onnx_path, image_size)
        info = onnx_io.finish(onnx_path, info | {"classes": classes})
        probe = valid_images[:ONNX_PROBE_IMAGES] or [decode_record(data.records[i]) for i in train_idx[:ONNX_PROBE_IMAGES]]
        session = onnx_io.open_session(onnx_path)
        verified = compare_predictions(backend.onnx_predict_arrays(session, probe), backend.predict_arrays(net, probe, image_size))
    files = {
        "weights": {"name": "weights.pt", "sha256": store.blobs.put(weights.read_bytes()), "size": weights.stat().st_size},
        "onnx": {
            "name": "model.onnx",
            "sha256": store.blobs.put(onnx_path.read_bytes()),
            "size": onnx_path.stat().st_size,
            "exporter": info["exporter"],
            "opset": info["opset"],
            "outputs": info["outputs"],
            "verified": verified,
        },
    }
    metrics = {
        "split": valid_split,
        "train_images": len(train_idx),
        "valid_images": len(valid_idx),
        "epochs_run": len(entries),
        "pretrained": pretrained_info,
        **({"init": init_info} if init_info is not None else {}),
        **({"mix": mix_info} if mix_info is not None else {}),
        "valid": final,
        "epochs": entries,
    }
    return metrics, files


# ----------------------------------------------------------------------------- predicting


@dataclass
class LoadedModel:
    """A registered model ready to predict, with the engine it runs on."""

    model: str
    name: str
    project: str
    task: Task
    classes: list[str]
    image_size: int
    engine: str  # "onnx" | "torch"
    backend: Any
    runner: Any  # an onnxruntime session or a torch module

    def predict_arrays(self, images: Sequence[Any]) -> list[Any]:
        if self.engine == "onnx":
            return self.backend.onnx_predict_arrays(self.runner, images)
        from winnow.train.loop import torch_threads

        with torch_threads():
            return self.backend.predict_arrays(self.runner, images, self.image_size)


def load_model(store: Store, ref: str, *, engine: str = "auto", workspace: str = DEFAULT_WORKSPACE) -> LoadedModel:
    """A registered model, on onnxruntime (``auto`` when its export matched PyTorch) or PyTorch."""
    from winnow.train.base import get_backend

    if engine not in ENGINES:
        raise InvalidInputError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    with store.read() as session:
        row, project = resolve_model(session, ref, workspace, include_base=True)
        if row.status != "ready":
            raise InvalidInputError(f"model {row.name!r} ({row.model_id[:12]}) is {row.status}, not ready to predict")
        facts = (row.model_id, row.name, Task(row.task), list(row.classes), dict(row.params), dict(row.files), row.backend)
    model_id, name, task, classes, params, files, backend_name = facts
    backend = get_backend(backend_name)
    if engine == "auto":
        engine = "onnx" if files.get("onnx", {}).get("verified", {}).get("ok") else "torch"
    key = "onnx" if engine == "onnx" else "weights"
    sha = files[key]["sha256"]
    if not store.blobs.exists(sha):
        raise NotFoundError(f"model {name!r}: its {files[key]['name']} (blob {sha[:12]}) is missing from the store; run `winnow verify`")
    if engine == "onnx":
        from winnow.train import onnx_io

        runner = onnx_io.open_session(store.blobs.path(sha))
    else:
        import torch

        runner = backend.build(len(classes), int(params["image_size"]), width=float(params.get("width", 1.0)))
        runner.load_state_dict(torch.load(store.blobs.path(sha), map_location="cpu", weights_only=True))
        runner.eval()
    return LoadedModel(model_id, name, project, task, classes, int(params["image_size"]), engine, backend, runner)


@dataclass
class ImagePredictions:
    """One image's predictions. Field names are part of the ``winnow predict --json`` contract."""

    image: str
    width: int
    height: int
    predictions: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None  # why a file found in a folder could not be read (it is skipped)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def prediction_dict(a: Any) -> dict[str, Any]:
    d: dict[str, Any] = {"label": a.label, "score": round(float(a.score), 6)}
    if a.bbox is not None:
        d["bbox"] = [round(float(v), 3) for v in a.bbox]
    if a.rle is not None:
        d["rle"] = a.rle
    return d


def _inputs(paths: Iterable[str | Path]) -> list[tuple[Path, bool]]:
    """``(file, found in a folder)`` for each input: files named directly must be images;
    an unreadable file found in a folder is reported and skipped."""
    from winnow.formats.base import find_images

    files: list[tuple[Path, bool]] = []
    for p in paths:
        path = Path(p)
        if path.is_dir():
            found = list(find_images(path))
            if not found:
                raise InvalidInputError(f"{path}: no image files in this folder")
            files.extend((f, True) for f in found)
        elif path.is_file():
            files.append((path, False))
        else:
            raise NotFoundError(f"{path}: no such file or folder")
    return files


def _decode_input(path: Path):
    from winnow.media import decode

    try:
        return decode(path.read_bytes(), str(path), "RGB")
    except WinnowError as exc:
        raise InvalidInputError(f"{exc} - predict takes image files (or folders of them)") from None


def predict(
    store: Store,
    model_ref: str,
    inputs: Sequence[str | Path] | Sequence[ImageRecord],
    *,
    engine: str = "auto",
    min_score: float = 0.0,
    workspace: str = DEFAULT_WORKSPACE,
    progress: ProgressFn | None = None,
) -> list[ImagePredictions]:
    """Predictions of a registered model for image files, folders of images (searched
    recursively) or image records (their ``file``). Boxes are ``xyxy`` absolute pixels of each
    image as displayed (EXIF orientation applied); masks COCO RLE; scores in ``[0, 1]``."""
    loaded = load_model(store, model_ref, engine=engine, workspace=workspace)
    return _predict_loaded(loaded, inputs, min_score=min_score, progress=progress)


def _predict_loaded(loaded: LoadedModel, inputs: Sequence[Any], *, min_score: float, progress: ProgressFn | None) -> list[ImagePredictions]:
    items: list[tuple[str, Any, bool]]
    if inputs and all(isinstance(x, ImageRecord) for x in inputs):
        items = [(r.name, r, False) for r in inputs]
    else:
        items = [(str(p), p, in_folder) for p, in_folder in _inputs(inputs)]
    out: list[ImagePredictions] = []
    chunk = 32
    for start in range(0, len(items), chunk):
        part = items[start : start + chunk]
        results: list[ImagePredictions | None] = []
        readable, images = [], []
        for name, x, in_folder in part:
            try:
                images.append(decode_record(x) if isinstance(x, ImageRecord) else _decode_input(x))
                readable.append((len(results), name))
                results.append(None)
            except InvalidInputError as exc:
                if not in_folder:
                    raise
                results.append(ImagePredictions(name, 0, 0, [], error=str(exc)))
        for (slot, name), im, pred in zip(readable, images, loaded.predict_arrays(images) if images else [], strict=True):
            anns = pred[pred.scores >= min_score].to_annotations(loaded.classes, loaded.task)
            results[slot] = ImagePredictions(name, im.width, im.height, [prediction_dict(a) for a in anns])
        out.extend(r for r in results if r is not None)
        if progress is not None:
            progress(min(start + chunk, len(items)), len(items))
    return out


# ----------------------------------------------------------------------------- pre-labels


@dataclass
class StoredPredictions:
    """What ``winnow predict MODEL --store`` did. Field names are part of the ``--json`` contract."""

    project: str
    model: str
    change_id: int | None
    images: int
    annotations_added: int
    annotations_replaced: int
    skipped_unknown_class: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def is_unlabeled(rec: ImageRecord) -> bool:
    return UNLABELED_TAG in rec.tags or all(a.source == Source.MODEL for a in rec.annotations)


def store_predictions(
    store: Store,
    project: str,
    model_ref: str,
    *,
    images: Sequence[str] | None = None,
    split: str | None = None,
    only_unlabeled: bool = True,
    min_score: float = 0.5,
    engine: str = "auto",
    workspace: str = DEFAULT_WORKSPACE,
    user: str | None = None,
    progress: ProgressFn | None = None,
) -> StoredPredictions:
    """Pre-label a project's images with a model's predictions: ``source=model`` annotations with
    their scores (and ``attributes.model`` = the model id), one recorded change
    (:func:`undo_predictions` reverts it).

    Which images: ``images`` (names) when given; else those of ``split`` (or all) that are
    unlabelled (tagged ``unlabeled``, or with no annotation but model ones) unless
    ``only_unlabeled`` is false. This model's earlier predictions on those images are replaced.
    Predictions below ``min_score``, or of a class the project no longer has, are left out.
    """
    from winnow.services.datasets import load_dataset

    loaded = load_model(store, model_ref, engine=engine, workspace=workspace)
    if not 0.0 <= min_score <= 1.0:
        raise InvalidInputError(f"min score must be in [0, 1], got {min_score!r}")
    dataset = load_dataset(store, project, workspace=workspace, split=split)
    records = dataset.images
    if images is not None:
        by_name = {r.name: r for r in records}
        missing = [n for n in images if n not in by_name]
        if missing:
            raise NotFoundError(f"project {project!r} has no image {missing[0]!r}" + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
        records = [by_name[n] for n in images]
    elif only_unlabeled:
        records = [r for r in records if is_unlabeled(r)]
    results = _predict_loaded(loaded, records, min_score=min_score, progress=progress) if records else []

    report = StoredPredictions(project, loaded.model, None, len(records), 0, 0, 0)
    with store.write() as session:
        proj = get_project(session, project, workspace)
        class_ids = {c.name: c.id for c in session.scalars(select(m.ProjectClass).where(m.ProjectClass.project_id == proj.id))}
        ops: list[dict[str, Any]] = []
        for rec, result in zip(records, results, strict=True):
            old = session.scalars(
                select(m.Annotation).where(m.Annotation.image_id == rec.id, m.Annotation.source == Source.MODEL.value)
            ).all()
            for a in old:
                if (a.attributes or {}).get("model") == loaded.model:
                    ops.append({"op": "delete_annotation", "annotation": snapshot_row(a)})
                    session.execute(delete(m.Annotation).where(m.Annotation.id == a.id))
                    report.annotations_replaced += 1
            for p in result.predictions:
                if p["label"] not in class_ids:
                    report.skipped_unknown_class += 1
                    continue
                box = p.get("bbox") or [None] * 4
                ann = m.Annotation(
                    image_id=rec.id,
                    class_id=class_ids[p["label"]],
                    x1=box[0],
                    y1=box[1],
                    x2=box[2],
                    y2=box[3],
                    polygon=None,  # explicit: stored as JSON null (the column is NOT NULL)
                    rle=p.get("rle"),
                    score=p["score"],
                    source=Source.MODEL.value,
                    attributes={"model": loaded.model},
                    created_by=user,
                )
                session.add(ann)
                session.flush()
                ops.append({"op": "insert_annotation", "id": ann.id})
                report.annotations_added += 1
        if not ops:
            return report
        report.change_id = record_change(
            session, proj.id, "predict",
            f"winnow predict: {report.annotations_added} annotations from model {loaded.name} ({loaded.model[:12]})", ops, user,
        )
    return report


def undo_predictions(store: Store, project: str, change_id: int | None = None, *, workspace: str = DEFAULT_WORKSPACE) -> dict[str, Any]:
    """Revert a :func:`store_predictions` change (the latest not yet undone when ``change_id`` is ``None``):
    its annotations are deleted and the predictions it replaced come back (same ids)."""
    from winnow.services.fixes import undo

    with store.read() as session:
        proj = get_project(session, project, workspace)
        q = select(m.Change.id).where(m.Change.project_id == proj.id, m.Change.kind == "predict", m.Change.undone_at.is_(None))
        q = q.where(m.Change.id == change_id) if change_id is not None else q.order_by(m.Change.id.desc())
        found = session.scalar(q.limit(1))
    if found is None:
        raise NotFoundError(f"no prediction change {'#' + str(change_id) + ' ' if change_id else ''}to undo in project {project!r}")
    return undo(store, project, found, workspace=workspace)