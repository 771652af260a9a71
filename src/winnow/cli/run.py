"""``winnow run FILE`` and ``winnow runs list|show``: pipelines (docs/pipelines.md).

Exit status of ``winnow run``: 0 every step ran or was skipped and every gate passed; 1 an error
(a bad file, a failing step); 2 a gate failed. So a pipeline file runs in any CI as it is.

Registered by ``cli/main.py``: ``app.command("run")(run_cmd)``, ``app.add_typer(runs_app, name="runs")``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from winnow.cli._common import (
    JsonOpt,
    WorkspaceOpt,
    _emit_json,
    _errors,
    _store,
    err,
    out,
)
from winnow.config import DEFAULT_WORKSPACE

runs_app = typer.Typer(help="Recorded pipeline runs: what ran, inputs, outputs, timings.", no_args_is_help=True)


def _detail(step: dict[str, Any]) -> str:
    from winnow.pipelines.report import _headline

    if step.get("error"):
        return f"error: {step['error']}"
    if step["status"] == "not_run":
        return ""
    text = _headline(step)
    failed = [g for g in step.get("gates") or [] if not g["passed"]]
    passed = [g for g in step.get("gates") or [] if g["passed"]]
    if failed:
        text += f"; gate failed: {failed[0]['gate']} ({failed[0]['actual']})"
    elif passed:
        text += f"; {len(passed)} gate{'s' if len(passed) > 1 else ''} passed"
    return text


def _print_run(doc: dict[str, Any], *, show_error: bool = True) -> None:
    table = Table("step", "uses", "status", "seconds", "result", box=None, pad_edge=False)
    for s in doc.get("steps", []):
        table.add_row(s["id"], s["uses"], s["status"], f"{s.get('seconds') or 0:.2f}", _detail(s))
    out.print(table)
    counts = doc.get("counts") or {}
    summary = ", ".join(f"{v} {k}" for k, v in counts.items())
    out.print(f"run {doc['run']} of {doc['pipeline']} ({doc['project']}): {doc['status']} in {doc.get('seconds') or 0:.1f}s ({summary})")
    failed = doc.get("failed_gate")
    if failed:
        out.print(f"gate failed at step {failed['step']!r}: {failed['gate']} ({failed['actual']})")
    if show_error and doc.get("error"):
        out.print(f"error: {doc['error']}")
    if doc.get("out_dir"):
        out.print(f"report: {Path(doc['out_dir']) / 'report.html'}")


def run_cmd(
    file: Annotated[Path, typer.Argument(help="The pipeline file (YAML), e.g. winnow.yaml.")],
    force: Annotated[bool, typer.Option("--force", help="Run every step, even those whose inputs did not change.")] = False,
    from_step: Annotated[str | None, typer.Option("--from", help="Run this step and every later one (earlier ones are cached as usual).")] = None,
    out_dir: Annotated[Path | None, typer.Option("--out", help="Write run.json and report.html here (default <home>/runs/<pipeline>-<run>).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Run a pipeline file: skip the steps whose inputs did not change, stop at the first failed gate.

    Exit status: 0 ok, 1 error, 2 a gate failed.
    """
    from winnow.pipelines.runner import run_pipeline
    from winnow.pipelines.spec import load_pipeline

    def on_step(event: str, step, rec) -> None:
        if as_json or not err.is_terminal:
            return
        if event == "start":
            err.print(f"  {step.id} ({step.uses}) ...")

    with _errors(as_json):
        pipeline = load_pipeline(file)
        report = run_pipeline(_store(), pipeline, force=force, from_step=from_step, out_dir=out_dir, on_step=on_step)
    doc = report.as_dict()
    if as_json:
        _emit_json(doc)
        if report.failed_gate:  # CI logs show why, whatever reads stdout
            g = report.failed_gate
            err.print(f"gate failed at step {g['step']!r}: {g['gate']} ({g['actual']})")
    else:
        _print_run(doc, show_error=False)
    if report.error:
        err.print(f"error: {report.error}")
    raise typer.Exit(report.exit_code)


@runs_app.command("list")
def runs_list(
    pipeline: Annotated[str | None, typer.Option("--pipeline", "-p", help="Only the runs of this pipeline (its name).")] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", help="How many runs, newest first.")] = 20,
    workspace: WorkspaceOpt = DEFAULT_WORKSPACE,
    as_json: JsonOpt = False,
) -> None:
    """List recorded pipeline runs, newest first."""
    from winnow.pipelines.runner import list_runs

    with _errors(as_json):
        rows = list_runs(_store(), workspace=workspace, pipeline=pipeline, limit=limit)
    if as_json:
        _emit_json(rows)
        return
    table = Table("run", "pipeline", "project", "status", "started", "seconds", "steps", box=None, pad_edge=False)
    for r in rows:
        steps = ", ".join(f"{v} {k}" for k, v in (r["counts"] or {}).items())
        table.add_row(str(r["run"]), r["pipeline"], r["project"], r["status"], r["started_at"], f"{r['seconds'] or 0:.1f}", steps)
    out.print(table)


@runs_app.command("show")
def runs_show(
    run: Annotated[int, typer.Argument(help="The run number (winnow runs list).")],
    workspace: WorkspaceOpt = DEFAULT_WORKSPACE,
    as_json: JsonOpt = False,
) -> None:
    """Show a recorded run: its steps, fingerprints, outputs, gates and timings."""
    from winnow.pipelines.runner import show_run

    with _errors(as_json):
        doc = show_run(_store(), run, workspace=workspace)
    if as_json:
        _emit_json(doc)
        return
    _print_run(doc | {"counts": doc.get("counts") or {}, "seconds": doc.get("seconds") or 0})
    for s in doc.get("steps", []):
        if s.get("fingerprint"):
            out.print(f"  {s['id']}: fingerprint {s['fingerprint'][:16]}" + (f", reused from run {s['reused_from']}" if s.get("reused_from") else ""))
