"""``winnow eval``: COCO metrics, per-class AP, confusion matrix, errors and slices of a model's predictions.

Registered by ``cli/main.py`` as ``app.command("eval")(eval_cmd)``. The ``--json`` document is
:meth:`winnow.evaluate.coco.DetectionReport.as_dict` (documented in docs/evaluation.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from winnow.cli._common import JsonOpt, WorkspaceOpt, _emit_json, _errors, _progress, _store, out
from winnow.config import DEFAULT_WORKSPACE
from winnow.errors import InvalidInputError


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    return "n/a" if value < 0 else f"{value:.3f}"


def _print_report(report) -> None:
    d = report.as_dict()
    c = d["counts"]
    out.print(
        f"{d['iou_type']} evaluation ({d['engine']}): {c['images']} images, {c['annotations']} objects "
        f"({c['crowd']} crowd), {c['predictions']} predictions"
    )
    table = Table("metric", "value", "metric", "value", box=None, pad_edge=False)
    names = ["map", "map50", "map75", "map_small", "map_medium", "map_large"]
    recalls = ["mar_1", "mar_10", "mar_100", "mar_small", "mar_medium", "mar_large"]
    for a, b in zip(names, recalls, strict=True):
        table.add_row(a, _fmt(d[a]), b, _fmt(d[b]))
    out.print(table)
    out.print(f"\nper class (precision and recall at score >= {d['score_threshold']:g}, IoU 0.5):")
    table = Table("class", "gt", "predictions", "AP", "AP50", "precision", "recall", box=None, pad_edge=False)
    for name, v in d["per_class"].items():
        table.add_row(name, str(v["gt"]), str(v["predictions"]), _fmt(v["ap"]), _fmt(v["ap50"]), _fmt(v["precision"]), _fmt(v["recall"]))
    out.print(table)
    cm = d["confusion_matrix"]
    classes, matrix = cm["classes"], cm["matrix"]
    pairs = [
        (matrix[i][j], classes[i], classes[j])
        for i in range(len(classes) - 1)
        for j in range(len(classes) - 1)
        if i != j and matrix[i][j]
    ]
    pairs.sort(reverse=True)
    if pairs:
        out.print("\nmost frequent confusions (true -> predicted):")
        for n, a, b in pairs[:10]:
            out.print(f"  {a} -> {b}: {n}")
    e = d["errors"]
    counts = e["counts"]
    out.print(
        f"\nerrors at score >= {e['score_threshold']:g}: {counts['false_positives']} false positives "
        f"({counts['duplicate']} duplicates), {counts['low_iou']} poorly localised, {counts['confusions']} confusions, "
        f"{counts['false_negatives']} missed"
    )
    for title, key in (("false positives", "false_positives"), ("missed", "false_negatives"), ("confusions", "confusions")):
        rows = e[key][:5]
        if not rows:
            continue
        out.print(f"  top {title}:")
        for r in rows:
            if key == "false_negatives":
                out.print(f"    {r['image']}: {r['class']} (area {r['area']:.0f}, gt id {r['gt_id']})")
            elif key == "confusions":
                out.print(f"    {r['image']}: {r['actual']} predicted as {r['predicted']} (score {r['score']:.2f}, IoU {r['iou']:.2f})")
            else:
                out.print(f"    {r['image']}: {r['class']} score {r['score']:.2f} ({r['kind']})")
    s = d.get("slices")
    if s and s["worst_slices"]:
        out.print(f"\nworst slices by {s['metric']} (overall {_fmt(s['overall'])}; ranked: >= {s['min_size']} images):")
        table = Table("slice", "images", s["metric"], "95% interval", "gap", "significant", box=None, pad_edge=False)
        for r in s["worst_slices"]:
            table.add_row(
                r["name"], str(r["images"]) + (f" ({r['objects']} objects)" if r["objects"] is not None else ""), _fmt(r["score"]), f"[{_fmt(r['ci_low'])}, {_fmt(r['ci_high'])}]",
                f"{r['gap']:+.3f}", "yes" if r["significant"] else "",
            )
        out.print(table)


def eval_cmd(
    model: Annotated[str | None, typer.Argument(help="A registered model (name or id prefix).", show_default=False)] = None,
    target: Annotated[str | None, typer.Argument(help="PROJECT@VERSION to evaluate MODEL on.", show_default=False)] = None,
    split: Annotated[str, typer.Option("--split", help="With MODEL: the version's split to evaluate on.")] = "test",
    gt: Annotated[Path | None, typer.Option("--gt", help="COCO ground-truth JSON.")] = None,
    predictions: Annotated[Path | None, typer.Option("--predictions", help="COCO results JSON (a list of detections).")] = None,
    iou_type: Annotated[str, typer.Option("--iou-type", help="bbox or segm.")] = "bbox",
    score_threshold: Annotated[
        float, typer.Option("--score-threshold", help="Operating point of the confusion matrix and the error lists.")
    ] = 0.25,
    slices: Annotated[bool, typer.Option("--slices", help="Also mAP50 per class, box size and image metadata, with bootstrap intervals.")] = False,
    max_errors: Annotated[int, typer.Option("--max-errors", help="Entries kept per error list.")] = 100,
    html: Annotated[Path | None, typer.Option("--html", help="Also write a self-contained HTML report with plots and error previews.")] = None,
    workspace: WorkspaceOpt = DEFAULT_WORKSPACE,
    as_json: JsonOpt = False,
) -> None:
    """Evaluate predictions against ground truth (or a registered MODEL on PROJECT@VERSION, by slice): the 12 COCO numbers, per-class AP, PR curves,
    a confusion matrix and the errors worth looking at."""
    from winnow.services.evaluation import evaluate_files

    with _errors(as_json):
        if model is not None or target is not None:
            _eval_model(model, target, split, score_threshold, max_errors, workspace, as_json, html)
            return
        if gt is None or predictions is None:
            raise InvalidInputError("give both --gt GT.json and --predictions PRED.json")
        if max_errors < 0:
            raise InvalidInputError("--max-errors must be >= 0")
        report = evaluate_files(gt, predictions, iou_type, score_threshold=score_threshold, slices=slices, max_errors=max_errors)
        if html is not None:
            _write_html(report, html, f"Evaluation of {predictions.name} against {gt.name}", _images_beside(gt))
    if as_json:
        _emit_json(report.as_dict())
    else:
        _print_report(report)


def _images_beside(gt: Path) -> dict[str, Path]:
    """Image ``file_name`` values of a COCO file that exist under its folder (for error previews)."""
    import json

    from winnow.formats.base import safe_join

    root = gt.resolve().parent
    out: dict[str, Path] = {}
    try:
        doc = json.loads(gt.read_text(encoding="utf-8"))
        for im in doc.get("images", []):
            name = im.get("file_name")
            if isinstance(name, str):
                try:
                    path = safe_join(root, name)
                except Exception:  # an unsafe name (absolute, ../) only loses its preview
                    continue
                if path.is_file():
                    out[name] = path
    except (OSError, ValueError, AttributeError):
        pass
    return out


def _write_html(report, path: Path, title: str, images) -> None:
    from winnow.evaluate.report import write_html

    if not hasattr(report, "pr_curves"):
        raise InvalidInputError("--html writes detection and segmentation reports; this is a classification report")
    write_html(report.as_dict(), path, title=title, images=images)


def _eval_model(
    model: str | None, target: str | None, split: str, score_threshold: float, max_errors: int, workspace: str, as_json: bool,
    html: Path | None = None,
) -> None:
    from winnow.services.evaluation import evaluate_model
    from winnow.services.versions import parse_ref

    if model is None or target is None:
        raise InvalidInputError("give both MODEL and PROJECT@VERSION (or --gt and --predictions)")
    project, ref = parse_ref(target)
    with _progress("predicting", not as_json) as progress:
        result = evaluate_model(
            _store(), model, project, ref, split=split, workspace=workspace,
            score_threshold=score_threshold, max_errors=max_errors, progress=progress,
        )
    if html is not None:
        _write_html(result.report, html, f"{result.model} on {result.project}@{result.version[:12]} ({result.split})", result.images)
    if as_json:
        _emit_json(result.as_dict())
        return
    out.print(f"{result.model} on {result.project}@{result.version[:12]} ({result.split})")
    _print_report(result.report)
    slices = getattr(result.report, "slices", None)
    if slices is not None and slices.worst_slices:
        worst = slices.worst_slices[0]
        out.print(
            f"worst slice: {worst.kind} {worst.name}: {slices.metric} {worst.score:.3f} "
            f"(95% CI {worst.ci_low:.3f}-{worst.ci_high:.3f}) vs {slices.overall:.3f} overall, {worst.images} images"
        )


def compare_cmd(
    model_a: Annotated[str, typer.Argument(help="The model before.")],
    model_b: Annotated[str, typer.Argument(help="The model after.")],
    target: Annotated[str, typer.Argument(help="PROJECT@VERSION both are evaluated on.")],
    split: Annotated[str, typer.Option("--split", help="The version's split to evaluate on.")] = "test",
    workspace: WorkspaceOpt = DEFAULT_WORKSPACE,
    as_json: JsonOpt = False,
) -> None:
    """Which slices got better or worse from MODEL_A to MODEL_B (by non-overlapping bootstrap intervals)."""
    from winnow.services.evaluation import compare_models
    from winnow.services.versions import parse_ref

    with _errors(as_json):
        project, ref = parse_ref(target)
        result = compare_models(_store(), model_a, model_b, project, ref, split=split, workspace=workspace)
    if as_json:
        _emit_json(result)
        return
    a, b = result["a"], result["b"]
    out.print(f"{result['metric']} on {project}@{result['version'][:12]} ({split}): {a['model']} {a['overall']} -> {b['model']} {b['overall']}")
    for row in result["slices"]:
        out.print(f"  {row['verdict']:<6} {row['kind']}:{row['name']:<30} {row['a']:.3f} -> {row['b']:.3f} ({row['delta']:+.3f}, {row['images']} images)")
