"""The step kinds of a pipeline: what each takes (``with:``), reads (its input fingerprint),
does (one service call), records (outputs) and lets gates test.

Every kind is one :class:`StepKind` registered in :data:`KINDS` by its ``uses:`` name. A kind says:

* ``params``: the keys ``with:`` may hold, their types and defaults (checked when the file loads);
* ``outputs``: the keys later steps may reference as ``${steps.ID.outputs.KEY}``;
* ``inputs(ctx)``: a JSON document of everything the step reads - content hashes, never paths or
  times. Its SHA-256 is the step's **fingerprint**; the runner skips the step when it equals the
  last successful record's and ``still_valid`` says that record's outputs still exist;
* ``run(ctx)``: the service call; returns the outputs;
* ``gate_env(outputs, task)``: the names and functions its gates read.

``settles`` kinds (``fix``, ``label``) change the project's records: after running, their
inputs are taken again, and that fingerprint (the state they left) counts as done too, so a
second run finds nothing to redo. Services are imported inside the functions: importing this
module is cheap.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from winnow.errors import InvalidInputError
from winnow.pipelines.gates import Gate, GateEnv, GateSyntaxError
from winnow.pipelines.state import files_fingerprint, fingerprint, project_state
from winnow.store.db import Store

# ----------------------------------------------------------------------------- parameters


@dataclass(frozen=True)
class Param:
    """One ``with:`` key. ``kind``: ``int``, ``number``, ``text``, ``bool``, ``texts`` (a list of
    texts, or one text), ``mapping``. ``ref``: it may hold a ``${steps...}`` reference."""

    kind: str
    default: Any = None
    required: bool = False
    help: str = ""
    choices: tuple[str, ...] = ()


def check_value(key: str, p: Param, value: Any) -> Any:
    """``value`` as ``p`` wants it, or :class:`InvalidInputError` saying what was expected."""
    if value is None:
        if p.required:
            raise InvalidInputError(f"'{key}' is required")
        return None
    ok = {
        "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
        "text": lambda v: isinstance(v, str),
        "bool": lambda v: isinstance(v, bool),
        "texts": lambda v: isinstance(v, str) or (isinstance(v, list) and all(isinstance(x, str) for x in v)),
        "mapping": lambda v: isinstance(v, dict),
        "any": lambda v: True,
    }[p.kind]
    if not ok(value):
        what = {"int": "a whole number", "number": "a number", "text": "a text", "bool": "true or false",
                "texts": "a list of texts", "mapping": "a mapping", "any": "a value"}[p.kind]
        raise InvalidInputError(f"'{key}' must be {what}, got {value!r}")
    if p.choices and value not in p.choices:
        raise InvalidInputError(f"'{key}' must be one of {', '.join(p.choices)}, got {value!r}")
    if p.kind == "texts" and isinstance(value, str):
        return [value]
    return value


# ----------------------------------------------------------------------------- context


@dataclass
class StepContext:
    """What a step runs against. ``params``: its ``with:`` with references resolved and defaults
    filled in. ``state()`` memoises the project's state until a step changes the project."""

    store: Store
    project: str
    workspace: str
    task: str
    base_dir: Path
    step: str
    params: dict[str, Any]
    #: shared by the steps of one run: the project's state until a step changes the project
    shared: dict[str, Any] = field(default_factory=dict, repr=False)
    _memo: dict[str, Any] = field(default_factory=dict, repr=False)

    def state(self) -> dict[str, Any]:
        if self.shared.get("state") is None:
            self.shared["state"] = project_state(self.store, self.project, workspace=self.workspace)
        return self.shared["state"]

    def forget_state(self) -> None:
        self.shared.pop("state", None)

    def path(self, value: str) -> Path:
        p = Path(value).expanduser()
        return p if p.is_absolute() else (self.base_dir / p)


# ----------------------------------------------------------------------------- the kinds


@dataclass
class StepKind:
    name: str
    help: str
    params: dict[str, Param]
    outputs: tuple[str, ...]
    inputs: Callable[[StepContext], dict[str, Any]]
    run: Callable[[StepContext], dict[str, Any]]
    still_valid: Callable[[StepContext, dict[str, Any]], bool] = lambda ctx, out: True
    #: names gates may read: a fixed set, or ``None`` when they are known only from the outputs
    gate_names: Callable[[str], set[str] | None] = lambda task: set()
    #: ``name -> (check of the argument at load time or None)``
    gate_functions: dict[str, Callable[[str, dict[str, Any], str], None] | None] = field(default_factory=dict)
    gate_env: Callable[[dict[str, Any], str], GateEnv] = lambda out, task: GateEnv({})
    settles: bool = False
    changes_project: bool = False

    def check_gate(self, gate: Gate, params: dict[str, Any], task: str) -> None:
        """Load-time check: every function and (where known) every name exists for this kind."""
        for fname, args in gate.calls:
            if fname not in self.gate_functions:
                known = ", ".join(f"{f}(...)" for f in sorted(self.gate_functions)) or "none"
                raise GateSyntaxError(f"{self.name} steps have no function {fname!r}; they have: {known}")
            if len(args) != 1:
                raise GateSyntaxError(f"{fname}(...) takes one argument, got {len(args)}")
            check = self.gate_functions[fname]
            if check is not None:
                check(args[0], params, task)
        names = self.gate_names(task)
        if names is not None:
            for n in gate.names:
                if n not in names:
                    known = ", ".join(sorted(names)) or "none"
                    raise GateSyntaxError(f"{self.name} steps have no value {n!r}; gates can read: {known}")


KINDS: dict[str, StepKind] = {}


def _register(kind: StepKind) -> StepKind:
    KINDS[kind.name] = kind
    return kind


def _project_exists_since(ctx: StepContext, table: Any, row_id: Any, **where: Any) -> bool:
    """True when the project's row ``row_id`` of ``table`` still exists."""
    from sqlalchemy import select

    from winnow.errors import NotFoundError
    from winnow.services.projects import get_project

    if row_id is None:
        return True
    with ctx.store.read() as session:
        try:
            proj = get_project(session, ctx.project, ctx.workspace)
        except NotFoundError:
            return False
        q = select(table.id).where(table.id == row_id, table.project_id == proj.id)
        for col, value in where.items():
            q = q.where(getattr(table, col) == value)
        return session.scalar(q) is not None


def _problems(report: dict[str, Any]) -> tuple[int, int]:
    problems = report.get("problems") or []
    return (sum(1 for p in problems if p.get("level") == "error"), sum(1 for p in problems if p.get("level") == "warning"))


# ---------------------------------------------------------------------- import

BUILTIN_SETS = ("shapes",)


def _builtin_source(ctx: StepContext) -> Path:
    """Generate the built-in set into a content-addressed folder under the data home; its path.

    Generated afresh each time (a fraction of a second for hundreds of small images) and kept
    under ``<home>/pipelines/sources/<sha256>/``: the files' own hash names the folder, so a change
    in the generator is a changed source, never a stale one.
    """
    from winnow.core.types import Task
    from winnow.formats import get_format
    from winnow.formats.base import copy_from_file
    from winnow.synthetic import generate

    p = ctx.params
    if p.get("builtin") not in BUILTIN_SETS:
        raise InvalidInputError(f"unknown built-in set {p.get('builtin')!r}; known: {', '.join(BUILTIN_SETS)}")
    root = ctx.store.home / "pipelines" / "sources"
    root.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="builtin-", dir=ctx.store.tmp))
    try:
        task = Task(ctx.task)
        dataset = generate(scratch / "raw", p["images"], seed=p["seed"], max_objects=p["max_objects"], task=task)
        prefix = (p.get("prefix") or "").strip("/")
        for i, rec in enumerate(dataset.images):
            if prefix:
                rec.name = f"{prefix}/{rec.name}"
            if not p["labels"]:
                rec.annotations = []
            elif p["splits"]:  # 70/20/10 by position, as an export carrying splits would
                rec.split = "train" if i % 10 < 7 else ("valid" if i % 10 < 9 else "test")
        fmt = "folders" if task is Task.CLASSIFY and p["labels"] else "coco"
        out = scratch / "data"
        get_format(fmt).write(dataset, out, copy_from_file)
        digest = files_fingerprint(out)["sha256"]
        final = root / digest
        if not final.exists():
            try:
                out.rename(final)
            except OSError:
                if not final.exists():
                    raise
        return final
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _import_source(ctx: StepContext) -> Path:
    if "source_path" in ctx._memo:
        return ctx._memo["source_path"]
    p = ctx.params
    if (p.get("path") is None) == (p.get("builtin") is None):
        raise InvalidInputError("give either 'path' (files to import) or 'builtin' (a generated set), not both")
    if p.get("builtin") is not None:
        path = _builtin_source(ctx)
    else:
        path = ctx.path(p["path"])
        if not path.exists():
            raise InvalidInputError(f"'path': {path} does not exist")
    ctx._memo["source_path"] = path
    return path


def _import_inputs(ctx: StepContext) -> dict[str, Any]:
    source = _import_source(ctx)
    keep = ("format", "split", "tags", "clip")
    return {"project": [ctx.workspace, ctx.project], "source": files_fingerprint(source)} | {k: ctx.params.get(k) for k in keep}


def _import_run(ctx: StepContext) -> dict[str, Any]:
    from winnow.services.ingest import import_dataset

    p = ctx.params
    source = _import_source(ctx)
    fmt = p.get("format") or (None if p.get("builtin") is None else ("folders" if ctx.task == "classify" and p["labels"] else "coco"))
    report = import_dataset(
        ctx.store, ctx.project, source, workspace=ctx.workspace, format=fmt, split=p.get("split"),
        tags=p.get("tags") or [], clip=bool(p.get("clip")),
    ).as_dict()
    errors, warnings = _problems(report)
    ctx.forget_state()
    total = ctx.state()
    return {
        "import_id": report["import_id"], "source": files_fingerprint(source)["sha256"], "format": report["format"],
        "images_added": report["images_added"], "annotations_added": report["annotations_added"],
        "images_skipped": report["images_skipped"], "annotations_skipped": report["annotations_skipped"],
        "errors": errors, "warnings": warnings, "images": total["images"], "annotations": total["annotations"],
    }


def _import_valid(ctx: StepContext, out: dict[str, Any]) -> bool:
    from winnow.store import models as m

    return out.get("import_id") is not None and _project_exists_since(ctx, m.ImportRun, out["import_id"])


_IMPORT_NAMES = {"images_added", "annotations_added", "images_skipped", "annotations_skipped", "errors", "warnings", "images", "annotations"}


def _numbers(out: dict[str, Any], names: set[str]) -> dict[str, Any]:
    return {k: out.get(k) for k in names}


_register(StepKind(
    name="import",
    help="Import a dataset (a folder, file or archive in any format) or generate a built-in one.",
    params={
        "path": Param("text", help="the dataset to import, relative to the pipeline file"),
        "builtin": Param("text", help="a generated set instead of files: 'shapes'", choices=BUILTIN_SETS),
        "images": Param("int", 120, help="builtin: how many images"),
        "seed": Param("int", 0, help="builtin: the generator's seed"),
        "max_objects": Param("int", 4, help="builtin: most shapes per image"),
        "labels": Param("bool", True, help="builtin: false writes the images without labels"),
        "splits": Param("bool", True, help="builtin: give the images a 70/20/10 train/valid/test split"),
        "prefix": Param("text", help="builtin: a folder in front of every image name (two sets in one project)"),
        "format": Param("text", help="the format (detected when left out)"),
        "split": Param("text", help="put every image in this split"),
        "tags": Param("texts", help="tags added to every image"),
        "clip": Param("bool", False, help="clip boxes that leave their image"),
    },
    outputs=("import_id", "source", "format", *sorted(_IMPORT_NAMES)),
    inputs=_import_inputs,
    run=_import_run,
    still_valid=_import_valid,
    gate_names=lambda task: set(_IMPORT_NAMES),
    gate_env=lambda out, task: GateEnv(_numbers(out, _IMPORT_NAMES)),
    changes_project=True,
))


# ---------------------------------------------------------------------- label

_LABEL_NAMES = {"images_relabeled", "annotations_added", "annotations_removed", "unmatched", "errors", "warnings"}


def _label_inputs(ctx: StepContext) -> dict[str, Any]:
    path = ctx.path(ctx.params["path"])
    if not path.exists():
        raise InvalidInputError(f"'path': {path} does not exist")
    keep = ("format", "tags", "clip")
    return {"project": [ctx.workspace, ctx.project], "labels": files_fingerprint(path), "state": ctx.state()["state"]} | {
        k: ctx.params.get(k) for k in keep
    }


def _label_run(ctx: StepContext) -> dict[str, Any]:
    from winnow.services.ingest import import_dataset

    p = ctx.params
    report = import_dataset(
        ctx.store, ctx.project, ctx.path(p["path"]), workspace=ctx.workspace, format=p.get("format"),
        tags=p.get("tags") or [], clip=bool(p.get("clip")), match_existing=True,
    ).as_dict()
    errors, warnings = _problems(report)
    return {k: report.get(k) for k in ("images_relabeled", "annotations_added", "annotations_removed", "unmatched", "change_id")} | {
        "errors": errors, "warnings": warnings,
    }


_register(StepKind(
    name="label",
    help="Replace the labels of the project's images from label files (COCO or YOLO), matched by image name.",
    params={
        "path": Param("text", required=True, help="the label files, relative to the pipeline file"),
        "format": Param("text", help="coco or yolo (detected when left out)"),
        "tags": Param("texts", help="tags added to every relabelled image"),
        "clip": Param("bool", False, help="clip boxes that leave their image"),
    },
    outputs=("change_id", *sorted(_LABEL_NAMES)),
    inputs=_label_inputs,
    run=_label_run,
    still_valid=lambda ctx, out: False,  # done only when the project is in the state it left (settled)
    gate_names=lambda task: set(_LABEL_NAMES),
    gate_env=lambda out, task: GateEnv(_numbers(out, _LABEL_NAMES)),
    settles=True,
    changes_project=True,
))


# ---------------------------------------------------------------------- check

_CHECK_NAMES = {"images", "annotations", "findings", "errors", "warnings", "infos", "images_with_findings"}


def _checks_run(params: dict[str, Any], task: str) -> list[str]:
    """The checks a check step with ``params`` runs on a ``task`` project (as ``run_checks`` picks them)."""
    from winnow.quality.base import all_checks

    known = all_checks()
    only, skip = params.get("only") or [], params.get("skip") or []
    for cid in list(only) + list(skip):
        if cid not in known:
            raise InvalidInputError(f"unknown check {cid!r}; known checks: {', '.join(sorted(known))}")
    chosen = list(only) if only else list(known)
    return [c for c in chosen if c not in set(skip) and (known[c].tasks is None or task in known[c].tasks)]


def _check_arg(arg: str, params: dict[str, Any], task: str) -> None:
    from winnow.quality.base import all_checks

    known = all_checks()
    if arg not in known:
        raise GateSyntaxError(f"unknown check {arg!r}; known checks: {', '.join(sorted(known))}")
    if arg not in _checks_run(params, task):
        tasks = known[arg].tasks
        why = f"it applies to {', '.join(sorted(tasks))} projects, this one is {task}" if tasks is not None and task not in tasks else "'only'/'skip' leave it out"
        raise GateSyntaxError(f"check {arg!r} does not run in this step ({why})")


def _check_inputs(ctx: StepContext) -> dict[str, Any]:
    keep = ("only", "skip", "params")
    return {"project": [ctx.workspace, ctx.project], "state": ctx.state()["state"]} | {k: ctx.params.get(k) for k in keep}


def _check_run(ctx: StepContext) -> dict[str, Any]:
    from winnow.quality.engine import run_checks

    p = ctx.params
    report = run_checks(ctx.store, ctx.project, workspace=ctx.workspace, only=p.get("only"), skip=p.get("skip"), params=p.get("params"))
    summary = report.summary
    flagged: dict[str, set[str]] = {c: set() for c in report.checks}
    for f in report.findings:
        flagged.setdefault(f.check, set()).update(f.images)
    return {
        "images": summary["images"],
        "annotations": summary["annotations"],
        "findings": summary["findings"],
        "errors": summary["by_severity"]["error"],
        "warnings": summary["by_severity"]["warning"],
        "infos": summary["by_severity"]["info"],
        "images_with_findings": summary["images_with_findings"],
        "checks_run": list(report.checks),
        "by_check": dict(summary["by_check"]),
        "images_by_check": {c: len(v) for c, v in flagged.items()},
        "seconds_by_check": summary["timings"],
    }


def _check_env(out: dict[str, Any], task: str) -> GateEnv:
    ran = set(out.get("checks_run") or [])

    def _known(check: str) -> None:
        if check not in ran:
            raise GateSyntaxError(f"check {check!r} did not run in this step; it ran: {', '.join(sorted(ran)) or 'none'}")

    def count(check: str) -> int:
        _known(check)
        return int(out["by_check"].get(check, 0))

    def rate(check: str) -> float | None:
        _known(check)
        images = out.get("images") or 0
        return None if images == 0 else out["images_by_check"].get(check, 0) / images

    return GateEnv(_numbers(out, _CHECK_NAMES), {"count": count, "rate": rate})


_register(StepKind(
    name="check",
    help="Run the health checks; gates read the findings per check.",
    params={
        "only": Param("texts", help="run only these checks"),
        "skip": Param("texts", help="leave these checks out"),
        "params": Param("mapping", help="check parameters: {check: {name: value}}"),
    },
    outputs=("checks_run", "by_check", "images_by_check", "seconds_by_check", *sorted(_CHECK_NAMES)),
    inputs=_check_inputs,
    run=_check_run,
    gate_names=lambda task: set(_CHECK_NAMES),
    gate_functions={"count": _check_arg, "rate": _check_arg},
    gate_env=_check_env,
))


# ---------------------------------------------------------------------- fix

_FIX_NAMES = {"findings_applied", "findings_skipped", "images_removed", "annotations_removed", "boxes_clipped"}


def _fix_inputs(ctx: StepContext) -> dict[str, Any]:
    return {"project": [ctx.workspace, ctx.project], "state": ctx.state()["state"], "checks": ctx.params.get("checks")}


def _fix_run(ctx: StepContext) -> dict[str, Any]:
    from winnow.services.fixes import apply_fixes

    r = apply_fixes(ctx.store, ctx.project, workspace=ctx.workspace, checks=ctx.params.get("checks"))
    return {
        "change_id": r.change_id, "findings_applied": r.findings_applied, "findings_skipped": r.findings_skipped,
        "images_removed": len(r.images_removed), "annotations_removed": len(r.annotations_removed),
        "boxes_clipped": len(r.boxes_clipped),
    }


_register(StepKind(
    name="fix",
    help="Apply the automatic fixes of the health checks (one undoable change).",
    params={"checks": Param("texts", help="the checks whose automatic suggestions to apply (default: winnow fix's)")},
    outputs=("change_id", *sorted(_FIX_NAMES)),
    inputs=_fix_inputs,
    run=_fix_run,
    still_valid=lambda ctx, out: False,  # done only when the project is in the state it left (settled)
    gate_names=lambda task: set(_FIX_NAMES),
    gate_env=lambda out, task: GateEnv(_numbers(out, _FIX_NAMES)),
    settles=True,
    changes_project=True,
))


# ---------------------------------------------------------------------- version

_VERSION_NAMES = {"images", "annotations", "classes", "train_images", "valid_images", "test_images"}
_VERSION_KEYS = ("split", "resplit", "seed", "group_by", "preprocess", "augment", "near_duplicates")


def _version_inputs(ctx: StepContext) -> dict[str, Any]:
    return {"project": [ctx.workspace, ctx.project], "state": ctx.state()["state"]} | {k: ctx.params.get(k) for k in _VERSION_KEYS}


def _version_run(ctx: StepContext) -> dict[str, Any]:
    from winnow.services.versions import create_version

    p = ctx.params
    s = create_version(
        ctx.store, ctx.project, workspace=ctx.workspace, split=p.get("split"), resplit=bool(p.get("resplit")),
        seed=p.get("seed") or 0, group_by=p.get("group_by"), preprocess=p.get("preprocess"), augment=p.get("augment"),
        near_duplicates=p.get("near_duplicates", True) is not False,
    )
    splits = s.counts.get("splits", {})
    return {
        "version": s.version, "number": s.number, "ref": s.ref, "created": s.created,
        "images": s.counts.get("images", 0), "annotations": s.counts.get("annotations", 0), "classes": len(s.classes),
        **{f"{k}_images": splits.get(k, {}).get("images", 0) for k in ("train", "valid", "test")},
    }


def _version_valid(ctx: StepContext, out: dict[str, Any]) -> bool:
    from winnow.errors import NotFoundError
    from winnow.services.versions import show_version

    try:
        return show_version(ctx.store, ctx.project, out["version"], workspace=ctx.workspace).version == out["version"]
    except (NotFoundError, InvalidInputError, KeyError):
        return False


_register(StepKind(
    name="version",
    help="Snapshot the project as an immutable version (leak-free splits, preprocessing, augmentation).",
    params={
        "split": Param("text", help="split ratios, e.g. 'train=0.7,valid=0.2,test=0.1'"),
        "resplit": Param("bool", False, help="split every image again"),
        "seed": Param("int", 0, help="seed of the split"),
        "group_by": Param("texts", help="metadata keys whose values stay in one split"),
        "preprocess": Param("text", help="preprocessing steps (winnow version create --preprocess)"),
        "augment": Param("text", help="augmentation recipe (winnow version create --augment)"),
        "near_duplicates": Param("bool", True, help="keep near-duplicate clusters in one split"),
    },
    outputs=("version", "number", "ref", "created", *sorted(_VERSION_NAMES)),
    inputs=_version_inputs,
    run=_version_run,
    still_valid=_version_valid,
    gate_names=lambda task: set(_VERSION_NAMES),
    gate_env=lambda out, task: GateEnv(_numbers(out, _VERSION_NAMES)),
))


# ---------------------------------------------------------------------- train

_TRAIN_KEYS = ("model", "epochs", "image_size", "batch_size", "lr", "optimizer", "weight_decay", "seed", "pretrained", "width")


def _version_id(ctx: StepContext, ref: Any) -> str:
    from winnow.services.versions import show_version

    return show_version(ctx.store, ctx.project, None if ref in (None, "latest") else str(ref), workspace=ctx.workspace).version


def _model_row(ctx: StepContext, ref: Any) -> tuple[str, str, str]:
    """``(model id, name, version id)`` of the workspace's model ``ref`` (name or id prefix)."""
    from winnow.services.training import show_model

    if not ref:
        raise InvalidInputError("'model' is required (a model name or id, or ${steps.ID.outputs.model})")
    s = show_model(ctx.store, str(ref), workspace=ctx.workspace)
    return s.model, s.name, s.version


def _train_inputs(ctx: StepContext) -> dict[str, Any]:
    return {"project": [ctx.workspace, ctx.project], "version": _version_id(ctx, ctx.params.get("version"))} | {
        k: ctx.params.get(k) for k in _TRAIN_KEYS
    }


def _train_run(ctx: StepContext) -> dict[str, Any]:
    from winnow.services.training import train_model

    p = ctx.params
    kwargs = {k: p[k] for k in _TRAIN_KEYS if p.get(k) is not None}
    if "model" in kwargs:
        kwargs["model"] = str(kwargs["model"])
    s = train_model(ctx.store, ctx.project, _version_id(ctx, p.get("version")), workspace=ctx.workspace, **kwargs)
    if s.status != "ready":
        raise InvalidInputError(f"model {s.name} is {s.status}: {s.metrics.get('error', '')}")
    valid = {k: v for k, v in (s.metrics.get("valid") or {}).items() if isinstance(v, int | float) and not isinstance(v, bool)}
    epochs = s.metrics.get("epochs") or []
    return {
        "model": s.model, "name": s.name, "version": s.version, "backend": s.backend, "created": s.created,
        "metrics": valid, "loss": epochs[-1]["loss"] if epochs else None, "split": s.metrics.get("split"),
    }


def _train_valid(ctx: StepContext, out: dict[str, Any]) -> bool:
    from winnow.errors import NotFoundError
    from winnow.services.training import show_model

    try:
        s = show_model(ctx.store, out["model"], workspace=ctx.workspace)
    except (NotFoundError, InvalidInputError, KeyError):
        return False
    return s.model == out["model"] and s.status == "ready" and s.project == ctx.project


_register(StepKind(
    name="train",
    help="Train a model on a version and register it (the same version and parameters give the same model).",
    params={
        "version": Param("text", help="a version (id, vN, name, latest or ${steps.ID.outputs.version})"),
        "model": Param("text", help="the backend, e.g. ssdlite, mobilenet_v3_small (default: the task's)"),
        "epochs": Param("int", 10),
        "image_size": Param("int"),
        "batch_size": Param("int"),
        "lr": Param("number"),
        "optimizer": Param("text"),
        "weight_decay": Param("number"),
        "seed": Param("int"),
        "pretrained": Param("text", help="auto, yes or no (never downloads)"),
        "width": Param("number"),
    },
    outputs=("model", "name", "version", "backend", "created", "metrics", "loss", "split"),
    inputs=_train_inputs,
    run=_train_run,
    still_valid=_train_valid,
    gate_names=lambda task: None,
    gate_env=lambda out, task: GateEnv(dict(out.get("metrics") or {}) | {"loss": out.get("loss")}),
))


# ---------------------------------------------------------------------- evaluate


def _slice_metric(task: str) -> str:
    return "accuracy" if task == "classify" else "map50"


def _metric_arg(arg: str, params: dict[str, Any], task: str) -> None:
    if arg != _slice_metric(task):
        raise GateSyntaxError(f"slices of a {task} evaluation are measured in {_slice_metric(task)}, not {arg!r}")


def _evaluate_inputs(ctx: StepContext) -> dict[str, Any]:
    model, _, trained_on = _model_row(ctx, ctx.params.get("model"))
    ref = ctx.params.get("version")
    version = _version_id(ctx, ref) if ref is not None else trained_on
    keep = ("split", "score_threshold", "bootstrap")
    return {"project": [ctx.workspace, ctx.project], "model": model, "version": version} | {k: ctx.params.get(k) for k in keep}


def _evaluate_run(ctx: StepContext) -> dict[str, Any]:
    from winnow.services.evaluation import evaluate_model

    p = ctx.params
    inputs = _evaluate_inputs(ctx)
    kwargs: dict[str, Any] = {"split": p.get("split") or "test"}
    if p.get("score_threshold") is not None:
        kwargs["score_threshold"] = float(p["score_threshold"])
    if p.get("bootstrap") is not None:
        kwargs["n_bootstrap"] = int(p["bootstrap"])
    ev = evaluate_model(ctx.store, inputs["model"], ctx.project, inputs["version"], workspace=ctx.workspace, **kwargs)
    doc = ev.report.as_dict()
    skip = {"stats", "counts", "per_class", "pr_curves", "confusion_matrix", "errors", "slices", "calibration", "classes", "top_k"}
    metrics = {k: v for k, v in doc.items() if k not in skip and isinstance(v, int | float) and not isinstance(v, bool)}
    slices_doc = doc.get("slices") or {}
    keep = ("kind", "name", "images", "score", "ci_low", "ci_high", "ranked")
    slices = [{k: s.get(k) for k in keep} for s in slices_doc.get("slices", [])]
    return {
        "model": inputs["model"], "version": inputs["version"], "split": ev.split, "metric": slices_doc.get("metric"),
        "metrics": metrics, "overall": slices_doc.get("overall"), "images": len(ev.images), "slices": slices,
        "worst_slices": [s.get("name") for s in slices_doc.get("worst_slices", [])],
    }


def _evaluate_env(out: dict[str, Any], task: str) -> GateEnv:
    metric = out.get("metric") or _slice_metric(task)
    slices = out.get("slices") or []

    def _check(name: str) -> None:
        if name != metric:
            raise GateSyntaxError(f"the slices were measured in {metric}, not {name!r}")

    def min_slice(name: str) -> float | None:
        _check(name)
        scores = [s["score"] for s in slices if s.get("ranked") and s.get("score") is not None]
        return min(scores) if scores else None

    def max_slice(name: str) -> float | None:
        _check(name)
        scores = [s["score"] for s in slices if s.get("ranked") and s.get("score") is not None]
        return max(scores) if scores else None

    def slice_(name: str) -> float | None:
        for s in slices:
            if s.get("name") == name:
                return s.get("score")
        return None

    names = dict(out.get("metrics") or {}) | {"overall": out.get("overall"), "images": out.get("images")}
    return GateEnv(
        {k: (None if isinstance(v, float) and v < 0 else v) for k, v in names.items()},  # COCO's -1: undefined
        {"min_slice": min_slice, "max_slice": max_slice, "slice": slice_},
    )


_register(StepKind(
    name="evaluate",
    help="Evaluate a model on a split of a version, overall and by slice.",
    params={
        "model": Param("text", help="a model (name, id or ${steps.ID.outputs.model})"),
        "version": Param("text", help="the version to evaluate on (default: the model's own)"),
        "split": Param("text", "test", choices=("train", "valid", "test")),
        "score_threshold": Param("number"),
        "bootstrap": Param("int", help="bootstrap resamples of the slice intervals"),
    },
    outputs=("model", "version", "split", "metric", "metrics", "overall", "images", "slices", "worst_slices"),
    inputs=_evaluate_inputs,
    run=_evaluate_run,
    still_valid=lambda ctx, out: _train_valid(ctx, out),
    gate_names=lambda task: None,
    gate_functions={"min_slice": _metric_arg, "max_slice": _metric_arg, "slice": None},
    gate_env=_evaluate_env,
))


# ---------------------------------------------------------------------- deploy


def _deploy_inputs(ctx: StepContext) -> dict[str, Any]:
    return {"project": [ctx.workspace, ctx.project], "model": _model_row(ctx, ctx.params.get("model"))[0]}


def _deploy_run(ctx: StepContext) -> dict[str, Any]:
    from winnow.services.deploy import deploy

    s = deploy(ctx.store, _deploy_inputs(ctx)["model"], workspace=ctx.workspace, project=ctx.project)
    return {"model": s.model, "name": s.name, "deployment": s.deployment, "changed": s.changed}


def _deploy_valid(ctx: StepContext, out: dict[str, Any]) -> bool:
    from winnow.services.deploy import active_model

    active = active_model(ctx.store, ctx.project, ctx.workspace)
    return active is not None and active.model == out.get("model") and active.deployment == out.get("deployment")


_register(StepKind(
    name="deploy",
    help="Make a model the project's active (served) model.",
    params={"model": Param("text", help="a model (name, id or ${steps.ID.outputs.model})")},
    outputs=("model", "name", "deployment", "changed"),
    inputs=_deploy_inputs,
    run=_deploy_run,
    still_valid=_deploy_valid,
))


# ---------------------------------------------------------------------- select

_SELECT_NAMES = {"picked", "candidates", "labeled"}
_SELECT_KEYS = ("budget", "strategy", "seed", "near_duplicate", "batch_name", "assignee")


def _select_inputs(ctx: StepContext) -> dict[str, Any]:
    ref = ctx.params.get("model")
    model = _model_row(ctx, ref)[0] if ref else None
    return {"project": [ctx.workspace, ctx.project], "state": ctx.state()["state"], "model": model} | {
        k: ctx.params.get(k) for k in _SELECT_KEYS
    }


def _select_run(ctx: StepContext) -> dict[str, Any]:
    from winnow.services.selection import select_images

    p = ctx.params
    inputs = _select_inputs(ctx)
    r = select_images(
        ctx.store, ctx.project, budget=p["budget"], strategy=p["strategy"], model=inputs["model"], seed=p.get("seed") or 0,
        near_duplicate=p.get("near_duplicate"), workspace=ctx.workspace, batch_name=p.get("batch_name"), assignee=p.get("assignee"),
    )
    return {
        "picked": len(r.picked), "candidates": r.candidates, "labeled": r.labeled, "model": r.model,
        "batch": None if r.batch is None else r.batch["id"], "batch_name": None if r.batch is None else r.batch["name"],
        "images": [x["image"] for x in r.picked], "notes": list(r.notes),
    }


def _select_valid(ctx: StepContext, out: dict[str, Any]) -> bool:
    from winnow.store import models as m

    return _project_exists_since(ctx, m.QueueBatch, out.get("batch"))


_register(StepKind(
    name="select",
    help="Pick the unlabeled images worth labelling next (active learning) into a labeling batch.",
    params={
        "budget": Param("int", required=True, help="how many images to pick"),
        "strategy": Param("text", "uncertainty", help="uncertainty, margin, entropy, diversity, hybrid, slice or random"),
        "model": Param("text", help="the model to score with (default: the last train step's, else the newest ready)"),
        "seed": Param("int", 0),
        "near_duplicate": Param("number"),
        "batch_name": Param("text"),
        "assignee": Param("text"),
    },
    outputs=("picked", "candidates", "labeled", "model", "batch", "batch_name", "images", "notes"),
    inputs=_select_inputs,
    run=_select_run,
    still_valid=_select_valid,
    gate_names=lambda task: set(_SELECT_NAMES),
    gate_env=lambda out, task: GateEnv(_numbers(out, _SELECT_NAMES)),
))


def step_fingerprint(kind: str, inputs: dict[str, Any]) -> str:
    """The fingerprint of a step of ``kind`` with ``inputs``."""
    return fingerprint({"kind": kind, "inputs": inputs})
