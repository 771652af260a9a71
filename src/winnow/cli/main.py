"""The ``winnow`` command line: nouns and verbs over the services, nothing more.

Every command takes ``--json`` and then prints one JSON document on stdout (the field names are
documented in docs/cli.md and stable). Errors go to stderr as one line, ``error: ...``, with exit
status 1 (with ``--json``, ``{"error": ...}`` is printed on stdout too). Long work shows a
progress bar on stderr when it is a terminal.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from winnow.cli._common import JsonOpt, WorkspaceOpt, _emit_json, _errors, _progress, _store, err, out
from winnow.cli.deploy import capture_cmd, deploy_cmd
from winnow.cli.evaluate import compare_cmd, eval_cmd
from winnow.cli.fleet import fleet_cmd
from winnow.cli.forks import class_app, register_project_commands
from winnow.cli.merge_requests import mr_app, propose_cmd
from winnow.cli.queue import queue_app
from winnow.cli.run import run_cmd, runs_app
from winnow.cli.serve import key_app, serve_cmd
from winnow.cli.select import select_cmd
from winnow.cli.train import model_app, predict_cmd, train_cmd
from winnow.cli.versions import version_app
from winnow.config import DEFAULT_WORKSPACE

app = typer.Typer(
    name="winnow",
    help="winnow: a self-hosted, data-centric platform for computer vision datasets.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
project_app = typer.Typer(help="Create, list and inspect projects.", no_args_is_help=True)
app.add_typer(project_app, name="project")
register_project_commands(project_app)
app.add_typer(class_app, name="class")
app.add_typer(version_app, name="version")
app.command("eval")(eval_cmd)
app.command("compare")(compare_cmd)
app.command("train")(train_cmd)
app.command("predict")(predict_cmd)
app.command("select")(select_cmd)
app.add_typer(model_app, name="model")
app.command("serve")(serve_cmd)
app.add_typer(key_app, name="key")
app.add_typer(queue_app, name="queue")
app.command("deploy")(deploy_cmd)
app.command("capture")(capture_cmd)
app.command("run")(run_cmd)
app.add_typer(runs_app, name="runs")
app.command("propose")(propose_cmd)
app.add_typer(mr_app, name="mr")
app.command("fleet")(fleet_cmd)


# ----------------------------------------------------------------------------------- projects


@project_app.command("create")
def project_create(
    name: str,
    task: Annotated[str, typer.Option("--task", "-t", help="classify, detect or segment")] = "detect",
    workspace: WorkspaceOpt = DEFAULT_WORKSPACE,
    as_json: JsonOpt = False,
) -> None:
    """Create a project."""
    from winnow.services.projects import create_project

    with _errors(as_json):
        summary = create_project(_store(), name, task, workspace)
    if as_json:
        _emit_json(summary.as_dict())
    else:
        out.print(f"created project {summary.name} ({summary.task}) in workspace {summary.workspace}")


@project_app.command("list")
def project_list(
    workspace: Annotated[str | None, typer.Option("--workspace", "-w", help="Only this workspace.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """List projects with their image and annotation counts."""
    from winnow.services.projects import list_projects

    with _errors(as_json):
        projects = list_projects(_store(), workspace)
    if as_json:
        _emit_json({"projects": [p.as_dict() for p in projects]})
        return
    table = Table("workspace", "project", "task", "images", "annotations", "classes")
    for p in projects:
        table.add_row(p.workspace, p.name, p.task, str(p.images), str(p.annotations), str(len(p.classes)))
    out.print(table)


@project_app.command("show")
def project_show(name: str, workspace: WorkspaceOpt = DEFAULT_WORKSPACE, as_json: JsonOpt = False) -> None:
    """Counts, splits, tags and class balance of a project."""
    from winnow.services.projects import show_project

    with _errors(as_json):
        s = show_project(_store(), name, workspace)
    if as_json:
        _emit_json(s.as_dict())
        return
    out.print(f"{s.name}  task={s.task}  workspace={s.workspace}")
    out.print(f"images {s.images}  annotations {s.annotations}  unlabeled images {s.unlabeled_images}")
    if s.base:
        out.print(f"fork of {s.base} (its images are inherited by reference; `winnow project base {s.name}`)")
    if s.splits:
        out.print("splits  " + "  ".join(f"{k} {v}" for k, v in sorted(s.splits.items())))
    if s.tags:
        out.print("tags    " + "  ".join(f"{k} {v}" for k, v in s.tags.items()))
    table = Table("class", "annotations", "images", "share", "")
    total = max(s.annotations, 1)
    peak = max(s.class_counts.values(), default=0) or 1
    for c in s.classes:
        n = s.class_counts[c]
        table.add_row(c, str(n), str(s.class_images[c]), f"{100 * n / total:.1f}%", "█" * round(30 * n / peak))
    out.print(table)


@project_app.command("delete")
def project_delete(
    name: str,
    workspace: WorkspaceOpt = DEFAULT_WORKSPACE,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Delete a project with its images and annotations (stored bytes stay until `verify --gc`)."""
    from winnow.services.projects import delete_project

    if not yes and not as_json:
        typer.confirm(f"delete project {name!r} and all its labels?", abort=True)
    with _errors(as_json):
        delete_project(_store(), name, workspace)
    if as_json:
        _emit_json({"deleted": name, "workspace": workspace})
    else:
        out.print(f"deleted project {name}")


# ------------------------------------------------------------------------------ import/export


@app.command("import")
def import_cmd(
    project: str,
    path: Path,
    format: Annotated[str | None, typer.Option("--format", "-f", help="Dataset format; detected when omitted.")] = None,
    split: Annotated[str | None, typer.Option("--split", "-s", help="Put every image in this split.")] = None,
    tag: Annotated[list[str] | None, typer.Option("--tag", help="Tag every imported image (repeatable).")] = None,
    clip: Annotated[bool, typer.Option("--clip", help="Clip boxes to the image instead of flagging them.")] = False,
    match_existing: Annotated[
        bool, typer.Option("--match-existing", help="Label files only (COCO, YOLO): replace the labels of the project's images they name.")
    ] = False,
    workspace: WorkspaceOpt = DEFAULT_WORKSPACE,
    as_json: JsonOpt = False,
) -> None:
    """Import a dataset folder, file or archive (.zip/.tar) into a project, atomically."""
    from winnow.services.ingest import import_dataset

    with _errors(as_json), _progress("importing", not as_json) as progress:
        report = import_dataset(
            _store(), project, path, workspace=workspace, format=format, split=split,
            tags=tag or (), clip=clip, progress=progress, match_existing=match_existing,
        )
    if as_json:
        _emit_json(report.as_dict())
        return
    if match_existing:
        out.print(f"relabelled {report.images_relabeled} images ({report.annotations_added} annotations, replacing {report.annotations_removed})"
                  + (f"; undo with: winnow undo {project}" if report.change_id else ""))
    else:
        out.print(
            f"imported {report.images_added} images and {report.annotations_added} "
            f"annotations from {report.source} ({report.format}) in {report.seconds:.1f}s"
        )
    if report.classes_added:
        out.print("new classes: " + ", ".join(report.classes_added))
    if report.boxes_clipped:
        out.print(f"clipped {report.boxes_clipped} boxes to their image")
    if report.duplicates:
        out.print(f"{len(report.duplicates)} duplicate images (same bytes, kept as separate records):")
        for d in report.duplicates[:10]:
            out.print(f"  {d['name']} = {d['duplicate_of']} ({'already in project' if d['where'] == 'project' else 'in this import'})")
    skipped = report.errors
    if report.images_skipped or report.annotations_skipped:
        out.print(
            f"skipped {report.images_skipped} images and {report.annotations_skipped} annotations:"
        )
    for p in skipped[:20]:
        out.print(f"  {p}")
    if len(skipped) > 20:
        out.print(f"  ... and {len(skipped) - 20} more (use --json for all)")
    if report.warnings:
        out.print(f"{len(report.warnings)} warnings" + (":" if len(report.warnings) <= 10 else " (first 10):"))
        for p in report.warnings[:10]:
            out.print(f"  {p}")


@app.command("export")
def export_cmd(
    project: Annotated[str, typer.Argument(help="PROJECT, or PROJECT@VERSION to export a version's files.")],
    dest: Path,
    format: Annotated[str, typer.Option("--format", "-f", help="Format to write.")],
    split: Annotated[str | None, typer.Option("--split", "-s", help="Only this split.")] = None,
    workspace: WorkspaceOpt = DEFAULT_WORKSPACE,
    as_json: JsonOpt = False,
) -> None:
    """Export a project (or one of its versions) to DEST (a new or empty folder) in a format."""
    from winnow.services.datasets import export_project
    from winnow.services.versions import export_version, parse_ref

    with _errors(as_json), _progress("exporting", not as_json) as progress:
        name, ref = parse_ref(project)
        if ref is None:
            report = export_project(_store(), name, dest, format, workspace=workspace, split=split, progress=progress)
        else:
            report = export_version(_store(), name, ref, dest, format, workspace=workspace, split=split, progress=progress)
    if as_json:
        _emit_json(report.as_dict())
    else:
        out.print(f"exported {report.images} images and {report.annotations} annotations to {report.dest} ({report.format})")


@app.command("images")
def images_cmd(
    project: str,
    class_name: Annotated[str | None, typer.Option("--class", "-c", help="Only images with this class.")] = None,
    tag: Annotated[str | None, typer.Option("--tag", help="Only images with this tag.")] = None,
    split: Annotated[str | None, typer.Option("--split", "-s", help="train, valid, test or unassigned.")] = None,
    limit: Annotated[int | None, typer.Option("--limit", help="At most this many.")] = None,
    offset: Annotated[int, typer.Option("--offset", help="Skip this many first.")] = 0,
    workspace: WorkspaceOpt = DEFAULT_WORKSPACE,
    as_json: JsonOpt = False,
) -> None:
    """List a project's images, filtered by class, tag and split."""
    from winnow.services.datasets import list_images

    with _errors(as_json):
        rows = list_images(
            _store(), project, workspace=workspace, class_name=class_name, tag=tag, split=split,
            limit=limit, offset=offset,
        )
    if as_json:
        _emit_json({"images": [r.as_dict() for r in rows], "count": len(rows)})
        return
    table = Table("name", "size", "split", "annotations", "classes", "tags")
    for r in rows:
        table.add_row(r.name, f"{r.width}x{r.height}", r.split or "-", str(r.annotations), ", ".join(r.classes), ", ".join(r.tags))
    out.print(table)
    out.print(f"{len(rows)} images")


@app.command("check")
def check_cmd(
    project: str,
    only: Annotated[str | None, typer.Option("--only", help="Comma-separated check ids to run (default: all).")] = None,
    skip: Annotated[str | None, typer.Option("--skip", help="Comma-separated check ids not to run.")] = None,
    param: Annotated[list[str] | None, typer.Option("--param", "-p", help="CHECK.NAME=VALUE (repeatable).")] = None,
    html: Annotated[Path | None, typer.Option("--html", help="Also write a self-contained HTML report here.")] = None,
    top: Annotated[int, typer.Option("--top", help="Findings to print (human output).")] = 25,
    embedder: Annotated[
        str, typer.Option("--embedder", help="classical (default, no download) or onnx:/path/model.onnx")
    ] = "classical",
    workspace: WorkspaceOpt = DEFAULT_WORKSPACE,
    as_json: JsonOpt = False,
) -> None:
    """Run the data health checks and list findings, worst first."""
    from winnow.quality.engine import parse_params, run_checks

    def ids(text: str | None) -> list[str] | None:
        return [t.strip() for t in text.split(",") if t.strip()] if text else None

    from winnow.quality.view import ProjectView

    with _errors(as_json), _progress("measuring images", not as_json) as progress:
        view = ProjectView(_store(), project, workspace=workspace, embedder=embedder, progress=progress)
        report = run_checks(
            view.store, project, workspace=workspace, only=ids(only), skip=ids(skip),
            params=parse_params(param), view=view,
        )
        if html is not None:
            from winnow.quality.report import write_html

            write_html(report, view, html)
    if as_json:
        _emit_json(report.as_dict())
        return
    s = report.summary
    out.print(
        f"{s['project']}: {s['images']} images, {s['annotations']} annotations, "
        f"{len(s['checks_run'])} checks in {s['seconds']:.1f}s"
    )
    out.print(
        f"{s['findings']} findings ({s['by_severity']['error']} errors, {s['by_severity']['warning']} warnings, "
        f"{s['by_severity']['info']} info) on {s['images_with_findings']} images"
    )
    if report.findings:
        table = Table("#", "check", "severity", "images", "finding", "suggestion")
        for i, f in enumerate(report.findings[:top], 1):
            table.add_row(
                str(i), f.check, f.severity, str(len(f.images)), f.message, f.suggestion.text if f.suggestion else ""
            )
        out.print(table)
        if len(report.findings) > top:
            out.print(f"... {len(report.findings) - top} more (--top N, or --json for all)")
        counts = ", ".join(f"{k} {v}" for k, v in s["by_check"].items() if v)
        out.print(f"by check: {counts}")
    for note in s["notes"]:
        out.print(f"note ({note['check']}): {note['message']}")
    if html is not None:
        out.print(f"report written to {html}")


@app.command("fix")
def fix_cmd(
    project: str,
    only: Annotated[str | None, typer.Option("--only", help="Checks whose safe suggestions to apply (comma-separated).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would change; change nothing.")] = False,
    workspace: WorkspaceOpt = DEFAULT_WORKSPACE,
    as_json: JsonOpt = False,
) -> None:
    """Apply the safe suggestions (merge exact duplicates, clip boxes, drop degenerate and duplicate boxes) as one undoable change."""
    from winnow.services.fixes import apply_fixes

    with _errors(as_json):
        checks = [c.strip() for c in only.split(",") if c.strip()] if only else None
        report = apply_fixes(_store(), project, workspace=workspace, checks=checks, dry_run=dry_run)
    if as_json:
        _emit_json(report.as_dict())
        return
    verb = "would remove" if dry_run else "removed"
    out.print(
        f"{verb} {len(report.images_removed)} duplicate images and {len(report.annotations_removed)} annotations, "
        f"{'would clip' if dry_run else 'clipped'} {len(report.boxes_clipped)} boxes ({report.findings_applied} findings applied, "
        f"{report.findings_skipped} left for review)"
    )
    if report.change_id is not None:
        out.print(f"recorded as change {report.change_id}; undo with: winnow undo {project}")


@app.command("undo")
def undo_cmd(
    project: str,
    change: Annotated[int | None, typer.Option("--change", help="Change id (default: the latest).")] = None,
    workspace: WorkspaceOpt = DEFAULT_WORKSPACE,
    as_json: JsonOpt = False,
) -> None:
    """Revert a recorded change (the latest by default)."""
    from winnow.services.fixes import undo

    with _errors(as_json):
        result = undo(_store(), project, change, workspace=workspace)
    if as_json:
        _emit_json(result)
    else:
        out.print(f"undid change {result['change_id']} ({result['undone']} operations)")


@app.command("changes")
def changes_cmd(project: str, workspace: WorkspaceOpt = DEFAULT_WORKSPACE, as_json: JsonOpt = False) -> None:
    """List a project's recorded changes."""
    from winnow.services.fixes import list_changes

    with _errors(as_json):
        rows = list_changes(_store(), project, workspace=workspace)
    if as_json:
        _emit_json({"changes": rows})
        return
    table = Table("id", "kind", "when", "operations", "undone", "description")
    for r in rows:
        table.add_row(str(r["id"]), r["kind"], r["created_at"], str(r["operations"]), r["undone_at"] or "", r["description"])
    out.print(table)


@app.command("checks")
def checks_cmd(as_json: JsonOpt = False) -> None:
    """List the health checks with their family, severity and parameters."""
    from winnow.quality.base import all_checks

    rows = [
        {"id": c.id, "family": c.family, "severity": c.severity, "description": c.description,
         "params": dict(c.params), "tasks": sorted(c.tasks) if c.tasks else None}
        for c in all_checks().values()
    ]
    if as_json:
        _emit_json({"checks": rows})
        return
    table = Table("check", "family", "severity", "description", "parameters")
    for r in rows:
        table.add_row(r["id"], r["family"], r["severity"], r["description"],
                      ", ".join(f"{k}={v}" for k, v in r["params"].items()))
    out.print(table)


@app.command("formats")
def formats_cmd(as_json: JsonOpt = False) -> None:
    """List the dataset formats winnow reads and writes."""
    from winnow.formats import available, get_format

    rows = [{"name": n, "tasks": sorted(t.value for t in get_format(n).tasks), "description": get_format(n).description} for n in available()]
    if as_json:
        _emit_json({"formats": rows})
        return
    table = Table("format", "tasks", "description")
    for r in rows:
        table.add_row(r["name"], ", ".join(r["tasks"]), r["description"])
    out.print(table)


@app.command("verify")
def verify_cmd(
    gc: Annotated[bool, typer.Option("--gc", help="Also delete blobs that no record references.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Check every stored blob: missing, corrupted (hash mismatch) or unreferenced."""
    from winnow.services.maintenance import verify

    with _errors(as_json), _progress("verifying", not as_json) as progress:
        report = verify(_store(), gc=gc, progress=progress)
    if as_json:
        _emit_json(report.as_dict())
    else:
        out.print(
            f"checked {report.checked} blobs: {len(report.missing)} missing, {len(report.corrupt)} corrupt, "
            f"{len(report.unreferenced)} unreferenced" + (f" ({report.removed} removed)" if gc else "")
        )
        for sha in report.missing + report.corrupt:
            out.print(f"  {sha}: " + ("missing" if sha in report.missing else "corrupt (moved to quarantine)"))
    if report.missing or report.corrupt:
        raise typer.Exit(1)


@app.command("demo")
def demo_cmd(
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for the demo's files (demo.json, demo.html, data).")] = Path("demo-out"),
    serve: Annotated[
        bool | None,
        typer.Option("--serve/--no-serve", help="Serve the API after the loop until Ctrl-C (default: only when run in a terminal)."),
    ] = None,
    port: Annotated[int, typer.Option(help="Port to serve on after the loop (127.0.0.1 only).")] = 8000,
    quick: Annotated[bool, typer.Option("--quick", help="A small, fast run (tiny model; what the tests run).")] = False,
    seed: Annotated[int | None, typer.Option(help="Seed of the data and the training (default 7).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Run the whole data-centric loop on the built-in synthetic data, then serve the API.

    Generate, import, check, fix, version, train, evaluate by slice, deploy, capture production
    images through the inference API, select a batch, label and review it, version, retrain,
    evaluate again; print the before/after table per slice and write demo.json and demo.html
    under --out. Then, in a terminal (or with --serve), serve the HTTP API on
    http://127.0.0.1:PORT until Ctrl-C, with an admin key for the demo's workspace; scripts and CI
    (no terminal) end after the loop. See docs/demo.md.
    """
    from winnow.services.demo import run_demo

    store = _store()
    with _errors(as_json):
        summary = run_demo(store, out_dir, quick=quick, seed=seed, echo=None if as_json else out.print)
    if as_json:
        _emit_json(summary)
    if serve is None:
        serve = sys.stdin.isatty() and sys.stdout.isatty()
    if not serve:
        (err if as_json else out).print(f"to browse it all: winnow serve --port {port} (with a key from `winnow key create`)")
        return
    from datetime import UTC, datetime

    import uvicorn

    from winnow.api.app import create_app
    from winnow.services.auth import create_key

    key = create_key(store, DEFAULT_WORKSPACE, "admin", name=f"demo-admin-{datetime.now(UTC):%Y%m%d%H%M%S}", user="demo")
    console = err if as_json else out
    console.print(f"serving everything above on http://127.0.0.1:{port} (Ctrl-C to stop)")
    console.print(f"  web app:   http://127.0.0.1:{port}/  (projects, image grid with boxes, health; the demo's reports listed)")
    console.print(f"  API docs:  http://127.0.0.1:{port}/docs")
    console.print(f"  admin key for workspace {DEFAULT_WORKSPACE!r} (shown once): {key.key}")
    console.print(f"  try: curl -H 'Authorization: Bearer {key.key[:8]}...' http://127.0.0.1:{port}/api/v1/projects")
    console.print(f"open http://127.0.0.1:{port}/#key={key.key}")  # lands signed in: the app keeps the key for the tab and clears the address bar
    uvicorn.run(create_app(store, reports=out_dir), host="127.0.0.1", port=port, log_level="warning")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
