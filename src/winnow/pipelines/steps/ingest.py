"""The ``import`` and ``label`` steps: files (or the built-in generated set) into the project, and
label files onto its existing images."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from winnow.errors import InvalidInputError
from winnow.pipelines.gates import GateEnv
from winnow.pipelines.state import files_fingerprint
from winnow.pipelines.steps.base import Param, StepContext, StepKind, numbers, problem_counts, project_row_exists, register


BUILTIN_SETS = ("shapes",)
#: What generates a built-in set (``winnow.synthetic.generate``), for the import that makes it and
#: the label step that gives its ground truth.
BUILTIN_PARAMS = {
    "images": Param("int", 120, help="builtin: how many images"),
    "seed": Param("int", 0, help="builtin: the generator's seed"),
    "max_objects": Param("int", 4, help="builtin: most shapes per image"),
    "prefix": Param("text", help="builtin: a folder in front of every image name (two sets in one project)"),
}


def _builtin_dataset(p: dict[str, Any], task: str, root: Path, *, labels: bool, splits: bool):
    """The built-in set ``p`` describes (``builtin``, ``images``, ``seed``, ``max_objects``,
    ``prefix``), generated under ``root``: a :class:`~winnow.core.types.Dataset`."""
    from winnow.core.types import Task
    from winnow.synthetic import generate

    if p.get("builtin") not in BUILTIN_SETS:
        raise InvalidInputError(f"unknown built-in set {p.get('builtin')!r}; known: {', '.join(BUILTIN_SETS)}")
    dataset = generate(root, p["images"], seed=p["seed"], max_objects=p["max_objects"], task=Task(task))
    prefix = (p.get("prefix") or "").strip("/")
    for i, rec in enumerate(dataset.images):
        if prefix:
            rec.name = f"{prefix}/{rec.name}"
        if not labels:
            rec.annotations = []
        elif splits:  # 70/20/10 by position, as an export carrying splits would
            rec.split = "train" if i % 10 < 7 else ("valid" if i % 10 < 9 else "test")
    return dataset


def _builtin_source(ctx: StepContext) -> Path:
    """Generate the built-in set into a content-addressed folder under the data home; its path.

    Generated afresh each time (a fraction of a second for hundreds of small images) and kept
    under ``<home>/pipelines/sources/<sha256>/``: the files' own hash names the folder, so a change
    in the generator is a changed source, never a stale one.
    """
    from winnow.core.types import Task
    from winnow.formats import get_format
    from winnow.formats.base import copy_from_file

    p = ctx.params
    root = ctx.store.home / "pipelines" / "sources"
    root.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="builtin-", dir=ctx.store.tmp))
    try:
        dataset = _builtin_dataset(p, ctx.task, scratch / "raw", labels=p["labels"], splits=p["splits"])
        fmt = "folders" if Task(ctx.task) is Task.CLASSIFY and p["labels"] else "coco"
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
    errors, warnings = problem_counts(report)
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

    return out.get("import_id") is not None and project_row_exists(ctx, m.ImportRun, out["import_id"])


_IMPORT_NAMES = {"images_added", "annotations_added", "images_skipped", "annotations_skipped", "errors", "warnings", "images", "annotations"}


register(StepKind(
    name="import",
    help="Import a dataset (a folder, file or archive in any format) or generate a built-in one.",
    params={
        "path": Param("text", help="the dataset to import, relative to the pipeline file"),
        **BUILTIN_PARAMS,
        "builtin": Param("text", help="a generated set instead of files: 'shapes'", choices=BUILTIN_SETS),
        "labels": Param("bool", True, help="builtin: false writes the images without labels"),
        "splits": Param("bool", True, help="builtin: give the images a 70/20/10 train/valid/test split"),
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
    gate_env=lambda out, task: GateEnv(numbers(out, _IMPORT_NAMES)),
    changes_project=True,
))


# ---------------------------------------------------------------------- label

_LABEL_NAMES = {"images_relabeled", "annotations_added", "annotations_removed", "unmatched", "errors", "warnings"}


_BUILTIN_KEYS = ("builtin", *BUILTIN_PARAMS)


def _label_inputs(ctx: StepContext) -> dict[str, Any]:
    p = ctx.params
    if (p.get("path") is None) == (p.get("builtin") is None):
        raise InvalidInputError("give either 'path' (label files) or 'builtin' (the built-in set's ground truth), not both")
    keep = ("format", "tags", "clip")
    if p.get("builtin") is not None:
        labels: Any = {k: p.get(k) for k in _BUILTIN_KEYS} | {"only": None if p.get("only") is None else sorted(p["only"])}
    else:
        path = ctx.path(p["path"])
        if not path.exists():
            raise InvalidInputError(f"'path': {path} does not exist")
        labels = files_fingerprint(path)
    return {"project": [ctx.workspace, ctx.project], "labels": labels, "state": ctx.state()["state"]} | {k: p.get(k) for k in keep}


def _builtin_labels(ctx: StepContext, scratch: Path) -> Path:
    """The built-in set's ground truth as a COCO file under ``scratch``, for the images in
    ``only`` (all when it is not given): the labelling team's answer in the demo."""
    from winnow.formats import get_format
    from winnow.formats.base import copy_from_file

    p = ctx.params
    dataset = _builtin_dataset(p, ctx.task, scratch / "raw", labels=True, splits=False)
    if p.get("only") is not None:
        wanted = set(p["only"])
        dataset.images = [r for r in dataset.images if r.name in wanted]
    out = scratch / "labels"
    get_format("coco").write(dataset, out, copy_from_file)
    return out


def _label_run(ctx: StepContext) -> dict[str, Any]:
    from winnow.services.ingest import import_dataset

    p = ctx.params
    scratch = Path(tempfile.mkdtemp(prefix="labels-", dir=ctx.store.tmp)) if p.get("builtin") is not None else None
    try:
        path = _builtin_labels(ctx, scratch) if scratch is not None else ctx.path(p["path"])
        report = import_dataset(
            ctx.store, ctx.project, path, workspace=ctx.workspace, format=p.get("format") or ("coco" if scratch else None),
            tags=p.get("tags") or [], clip=bool(p.get("clip")), match_existing=True,
        ).as_dict()
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    errors, warnings = problem_counts(report)
    return {k: report.get(k) for k in ("images_relabeled", "annotations_added", "annotations_removed", "unmatched", "change_id")} | {
        "errors": errors, "warnings": warnings,
    }


register(StepKind(
    name="label",
    help="Replace the labels of the project's images from label files (COCO or YOLO), matched by image name.",
    params={
        "path": Param("text", help="the label files, relative to the pipeline file"),
        **BUILTIN_PARAMS,  # the same values as the import that made the images
        "builtin": Param("text", help="instead of files: the built-in set's ground truth ('shapes'; the demo's labelling team)", choices=BUILTIN_SETS),
        "only": Param("texts", help="builtin: label only these images, e.g. ${steps.select.outputs.images}"),
        "format": Param("text", help="coco or yolo (detected when left out)"),
        "tags": Param("texts", help="tags added to every relabelled image"),
        "clip": Param("bool", False, help="clip boxes that leave their image"),
    },
    outputs=("change_id", *sorted(_LABEL_NAMES)),
    inputs=_label_inputs,
    run=_label_run,
    still_valid=lambda ctx, out: False,  # done only when the project is in the state it left (settled)
    gate_names=lambda task: set(_LABEL_NAMES),
    gate_env=lambda out, task: GateEnv(numbers(out, _LABEL_NAMES)),
    settles=True,
    changes_project=True,
))
