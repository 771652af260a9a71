"""``winnow train``, ``winnow predict`` and ``winnow model list|show``: training on a version,
predictions (printed, written, or stored on a project as pre-labels) and the model registry.

The functions are registered by ``cli/main.py``: ``app.command("train")(train_cmd)``,
``app.command("predict")(predict_cmd)``, ``app.add_typer(model_app, name="model")``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from winnow.cli._common import (
    JsonOpt,
    WorkspaceOpt,
    _emit_json,
    _errors,
    _progress,
    _store,
    err,
    out,
)
from winnow.config import DEFAULT_WORKSPACE

model_app = typer.Typer(help="The model registry: trained models, their metrics and files.", no_args_is_help=True)


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def _headline(metrics: dict[str, Any]) -> str:
    """The final validation metrics in a few words."""
    valid = metrics.get("valid") or {}
    keys = [k for k in ("map50", "map", "mask_map50", "accuracy") if k in valid]
    if not keys:
        return "no validation split"
    return ", ".join(f"{k} {_fmt(valid[k])}" for k in keys) + f" on {valid.get('images', 0)} {metrics.get('split')} images"


def _primary(metrics: dict[str, Any]) -> str:
    """The one validation number a list shows: mAP50 (detection, segmentation) or accuracy."""
    valid = metrics.get("valid") or {}
    key = next((k for k in ("map50", "accuracy") if k in valid), None)
    return f"{key} {_fmt(valid[key])}" if key else "-"


def _print_model(s) -> None:
    state = "trained" if s.created else "model"
    out.print(f"{state} {s.name} ({s.ref}): {s.backend} on {s.project}@{s.version[:12]} [{s.status}]")
    out.print(f"  id: {s.model}")
    out.print(f"  task: {s.task}, classes: {', '.join(s.classes)}")
    p = s.params
    init = s.metrics.get("init") or {}
    if p:
        pre = (p.get("pretrained") or {}).get("file") or "random init"
        if p.get("init_from"):
            pre = f"from model {init.get('name') or p['init_from'][:12]} ({p['init_from'][:12]})"
        out.print(
            f"  params: epochs {p.get('epochs')}, image size {p.get('image_size')}, batch {p.get('batch_size')}, "
            f"lr {p.get('lr')} ({p.get('optimizer')}), seed {p.get('seed')}, width {p.get('width')}, weights: {pre}"
        )
    out.print(f"  code: {s.code_version}")
    if init:
        remapped = f", {len(init['remapped'])} remapped by class" if init.get("remapped") else ""
        out.print(
            f"  init: {init['loaded']} of {init['total']} tensors loaded{remapped}, {len(init['skipped'])} skipped; "
            f"shared classes: {', '.join(init['classes_matched']) or 'none'}"
        )
    mix = s.metrics.get("mix")
    if mix:
        out.print(
            f"  mix: {mix['own_train_images']} own + {mix['base_train_images_used']} of {mix['base_train_images_available']} "
            f"inherited train images (base mix {_fmt(mix['base_mix'])})"
        )
    if s.metrics.get("error"):
        out.print(f"  error: {s.metrics['error']}")
    else:
        out.print(f"  validation: {_headline(s.metrics)}")
        epochs = s.metrics.get("epochs") or []
        if epochs:
            out.print(f"  loss: {epochs[0]['loss']:.4f} (epoch 1) -> {epochs[-1]['loss']:.4f} (epoch {epochs[-1]['epoch']})")
    for key, f in (s.files or {}).items():
        extra = ""
        if key == "onnx":
            v = f.get("verified") or {}
            extra = f", {f.get('exporter')} exporter, opset {f.get('opset')}, matches PyTorch: {'yes' if v.get('ok') else 'no'}"
        out.print(f"  {f['name']}: {f['sha256'][:12]} ({f['size']} bytes{extra})")


def _epoch_line(entry: dict[str, Any], epochs: int) -> str:
    text = f"epoch {entry['epoch']}/{epochs}: loss {entry['loss']:.4f}, lr {entry['lr']:.2e}, {entry['seconds']:.1f}s"
    valid = entry.get("valid")
    if valid:
        text += "".join(f", {k} {_fmt(valid[k])}" for k in ("map50", "map", "mask_map50", "accuracy") if k in valid)
    return text


def train_cmd(
    ref: Annotated[str, typer.Argument(help="PROJECT@VERSION (id prefix, vN, name or latest), or PROJECT for its latest version.")],
    model: Annotated[
        str | None, typer.Option("--model", "-m", help="Backend: ssdlite, fasterrcnn_mobilenet, retinanet, fcos, maskrcnn_mobilenet, maskrcnn, mobilenet_v3_small, resnet18, timm:ARCH (any timm classifier, e.g. timm:resnet10t), ultralytics:yolov8n|yolo11n (AGPL extra) (default: the task's).")
    ] = None,
    epochs: Annotated[int, typer.Option("--epochs", help="Passes over the train split.")] = 10,
    image_size: Annotated[int | None, typer.Option("--image-size", help="Square network input, pixels (default: the backend's).")] = None,
    batch_size: Annotated[int | None, typer.Option("--batch-size", help="Images per step (default: the backend's).")] = None,
    lr: Annotated[float | None, typer.Option("--lr", help="Peak learning rate (default: the backend's).")] = None,
    optimizer: Annotated[str | None, typer.Option("--optimizer", help="sgd or adamw (default: the backend's).")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed for the initial weights and the data order.")] = 0,
    pretrained: Annotated[
        str, typer.Option("--pretrained", help="auto: use weights found in the local torch cache; yes: require them; no: random init. Never downloads.")
    ] = "auto",
    width: Annotated[
        float | None, typer.Option("--width", help="Channel multiplier where the backend has one (e.g. 0.5 for a quick model; default 1, or the --from model's).")
    ] = None,
    name: Annotated[str | None, typer.Option("--name", help="A name to address the model by.")] = None,
    eval_every: Annotated[int, typer.Option("--eval-every", help="Also evaluate on the validation split every N epochs (always after the last).")] = 0,
    log_file: Annotated[Path | None, typer.Option("--log", help="Append each epoch's metrics to this file as JSON lines.")] = None,
    init_from: Annotated[
        str | None,
        typer.Option("--from", help="Fine-tune: start from this registered model's weights (name or id prefix; same backend, which is then the default)."),
    ] = None,
    base_mix: Annotated[
        float | None,
        typer.Option("--base-mix", help="Fraction (0-1) of the version's inherited base train images to train on; the project's own are always used (default: all)."),
    ] = None,
    workspace: WorkspaceOpt = DEFAULT_WORKSPACE,
    as_json: JsonOpt = False,
) -> None:
    """Train a model on a version's train split (or fine-tune one with --from), evaluate it on its valid split, export it to ONNX and register it."""
    from winnow.services.training import train_model
    from winnow.services.versions import parse_ref

    def log(entry: dict[str, Any]) -> None:
        if log_file is not None:
            with log_file.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps(entry, sort_keys=True) + "\n")
        if not as_json:
            err.print(_epoch_line(entry, epochs))

    with _errors(as_json), _progress("training", not as_json) as progress:
        project, version = parse_ref(ref)
        summary = train_model(
            _store(),
            project,
            version,
            workspace=workspace,
            model=model,
            epochs=epochs,
            image_size=image_size,
            batch_size=batch_size,
            lr=lr,
            optimizer=optimizer,
            seed=seed,
            pretrained=pretrained,
            width=width,
            name=name,
            eval_every=eval_every,
            progress=progress,
            log=log,
            init_from=init_from,
            base_mix=base_mix,
        )
    if as_json:
        _emit_json(summary.as_dict())
    else:
        _print_model(summary)


def predict_cmd(
    model: Annotated[str, typer.Argument(help="A model's name or id prefix (`winnow model list`).")],
    path: Annotated[Path | None, typer.Argument(help="An image file or a folder of images (searched recursively).")] = None,
    store_on: Annotated[
        bool, typer.Option("--store", help="Predict the project's unlabelled images and store the predictions as source=model annotations (undoable).")
    ] = False,
    project: Annotated[str | None, typer.Option("--project", help="With --store: the project to pre-label (default: the model's).")] = None,
    split: Annotated[str | None, typer.Option("--split", help="With --store: only this split's images.")] = None,
    all_images: Annotated[bool, typer.Option("--all", help="With --store: every image, not only the unlabelled ones.")] = False,
    min_score: Annotated[float | None, typer.Option("--min-score", help="Drop predictions below this score (default 0.25; 0.5 with --store).")] = None,
    engine: Annotated[str, typer.Option("--engine", help="auto (ONNX when its export matched PyTorch), onnx or torch.")] = "auto",
    out_file: Annotated[Path | None, typer.Option("--out", help="Write the predictions to this JSON file.")] = None,
    workspace: WorkspaceOpt = DEFAULT_WORKSPACE,
    as_json: JsonOpt = False,
) -> None:
    """Predict with a registered model: print (or --out) predictions for images, or --store them on a project as pre-labels."""
    from winnow.errors import InvalidInputError
    from winnow.services.training import predict, show_model, store_predictions

    with _errors(as_json):
        if (path is None) == (not store_on):
            raise InvalidInputError("give an image or folder to predict, or --store to pre-label a project's images (not both)")
        store = _store()
        if store_on:
            target = project or show_model(store, model, workspace=workspace).project
            with _progress("predicting", not as_json) as progress:
                report = store_predictions(
                    store,
                    target,
                    model,
                    split=split,
                    only_unlabeled=not all_images,
                    min_score=0.5 if min_score is None else min_score,
                    engine=engine,
                    workspace=workspace,
                    progress=progress,
                )
            if as_json:
                _emit_json(report.as_dict())
                return
            out.print(
                f"stored {report.annotations_added} predictions on {report.images} images of {report.project}"
                + (f" (replaced {report.annotations_replaced})" if report.annotations_replaced else "")
                + (f"; {report.skipped_unknown_class} of classes the project lacks were left out" if report.skipped_unknown_class else "")
            )
            if report.change_id is not None:
                out.print(f"recorded as change {report.change_id}")
            return
        with _progress("predicting", not as_json) as progress:
            results = predict(
                store, model, [path], engine=engine, min_score=0.25 if min_score is None else min_score, workspace=workspace, progress=progress
            )
    doc = [r.as_dict() for r in results]
    if out_file is not None:
        out_file.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    if as_json:
        _emit_json(doc)
        return
    for r in results:
        if r.error is not None:
            out.print(f"{r.image}: skipped: {r.error}")
            continue
        out.print(f"{r.image} ({r.width}x{r.height}): {len(r.predictions)} predictions")
        for p in r.predictions[:20]:
            box = " [" + ", ".join(f"{v:.1f}" for v in p["bbox"]) + "]" if "bbox" in p else ""
            out.print(f"  {p['label']} {p['score']:.3f}{box}")
        if len(r.predictions) > 20:
            out.print(f"  ... {len(r.predictions) - 20} more (--json lists all)")
    if out_file is not None:
        out.print(f"wrote {out_file}")


@model_app.command("list")
def model_list(
    project: Annotated[str | None, typer.Option("--project", help="Only this project's models.")] = None,
    workspace: WorkspaceOpt = DEFAULT_WORKSPACE,
    as_json: JsonOpt = False,
) -> None:
    """The registered models, oldest first."""
    from winnow.services.training import list_models

    with _errors(as_json):
        rows = list_models(_store(), project, workspace=workspace)
    if as_json:
        _emit_json([r.as_dict() for r in rows])
        return
    table = Table("id", "name", "project", "version", "backend", "status", "epochs", "valid", "created", box=None, pad_edge=False)
    for r in rows:
        table.add_row(
            r.ref, r.name, r.project, r.version[:12], r.backend, r.status,
            str(r.metrics.get("epochs_run", "-")), _primary(r.metrics), r.created_at,
        )
    out.print(table)


@model_app.command("show")
def model_show(
    model: Annotated[str, typer.Argument(help="A model's name or id prefix.")],
    workspace: WorkspaceOpt = DEFAULT_WORKSPACE,
    as_json: JsonOpt = False,
) -> None:
    """A model's version, backend, hyper-parameters, code version, metrics and files."""
    from winnow.services.training import show_model

    with _errors(as_json):
        summary = show_model(_store(), model, workspace=workspace)
    if as_json:
        _emit_json(summary.as_dict())
    else:
        _print_model(summary)
