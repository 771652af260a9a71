"""``winnow queue list|show|assign|next|submit|review|from-findings``: the labeling queue.

Who is acting is ``--user`` (default: ``$WINNOW_USER``, else the login name); it is what the queue
records as labeler and reviewer, and a reviewer must not be the item's labeler.
"""

from __future__ import annotations

import getpass
import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from winnow.cli._common import JsonOpt, WorkspaceOpt, _emit_json, _errors, _store, out
from winnow.config import DEFAULT_WORKSPACE
from winnow.errors import InvalidInputError

queue_app = typer.Typer(help="Work the labeling queue: batches to label or check, submit and review.", no_args_is_help=True)


def _default_user() -> str:
    env = os.environ.get("WINNOW_USER", "").strip()
    if env:
        return env
    try:
        return getpass.getuser()
    except Exception:  # no login name (a container without a passwd entry)
        return "cli"


UserOpt = Annotated[str | None, typer.Option("--user", "-u", help="Who is acting (default: $WINNOW_USER or the login name).")]


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(Path(path).read_bytes().decode("utf-8-sig"))
    except OSError as exc:
        raise InvalidInputError(f"{path}: cannot read {what} ({exc.strerror or exc})") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidInputError(f"{path}: {what} is not valid JSON ({exc})") from None


def _print_item(item: dict[str, Any]) -> None:
    out.print(f"item {item['id']}: {item['image']} ({item['state']}{', ' + item['decision'] if item['decision'] else ''}) in batch {item['batch']}")
    if item.get("assignee"):
        out.print(f"  assignee: {item['assignee']}")
    reason = item.get("reason")
    if isinstance(reason, dict) and reason.get("message"):
        out.print(f"  finding: [{reason.get('check')}] {reason['message']}")
    for p in item.get("prelabels") or []:
        extra = f" (was {p['relabeled_from']})" if p.get("relabeled_from") else ""
        out.print(f"  pre-label: {p.get('label')}{extra} {p.get('bbox') or ''}")
    if item.get("review") and item["review"].get("comment"):
        out.print(f"  review: {item['review']['comment']}")


@queue_app.command("list")
def queue_list(
    project: str,
    state: Annotated[str | None, typer.Option("--state", help="Only batches in this state: to_label, in_review or done.")] = None,
    assignee: Annotated[str | None, typer.Option("--assignee", help="Only batches with work for this person.")] = None,
    workspace: WorkspaceOpt = DEFAULT_WORKSPACE,
    as_json: JsonOpt = False,
) -> None:
    """List the project's batches with their state and item counts."""
    from winnow.services.queue import list_batches

    with _errors(as_json):
        batches = list_batches(_store(), project, state=state, assignee=assignee, workspace=workspace)
    if as_json:
        _emit_json({"batches": [b.as_dict() for b in batches]})
        return
    table = Table("id", "batch", "kind", "state", "to_label", "in_review", "done", "assignee", "created")
    for b in batches:
        c = b.counts
        table.add_row(str(b.id), b.name, b.kind, b.state, str(c["to_label"]), str(c["in_review"]), str(c["done"]), b.assignee or "", b.created_at)
    out.print(table)


@queue_app.command("show")
def queue_show(project: str, batch: str, workspace: WorkspaceOpt = DEFAULT_WORKSPACE, as_json: JsonOpt = False) -> None:
    """Show a batch (by name or id) and its items."""
    from winnow.services.queue import show_batch

    with _errors(as_json):
        shown = show_batch(_store(), project, batch, workspace=workspace)
    if as_json:
        _emit_json(shown)
        return
    out.print(f"batch {shown['name']} (#{shown['id']}, {shown['kind']}): {shown['state']}, {shown['items']} items")
    table = Table("item", "image", "state", "decision", "assignee", "labeled by", "reviewed by", "reason")
    for it in shown["items"]:
        reason = it["reason"]
        text = (reason.get("message") or reason.get("check") or "") if isinstance(reason, dict) else str(reason or "")
        table.add_row(
            str(it["id"]), it["image"], it["state"], it["decision"] or "", it["assignee"] or "", it["labeled_by"] or "",
            it["reviewed_by"] or "", str(text)[:80],
        )
    out.print(table)


@queue_app.command("assign")
def queue_assign(
    project: str,
    batch: str,
    assignee: Annotated[str | None, typer.Argument(help="Who labels it; omit with --clear.")] = None,
    item: Annotated[list[int] | None, typer.Option("--item", help="Only this item (repeatable).")] = None,
    reviewer: Annotated[str | None, typer.Option("--reviewer", help="Record who reviews the batch.")] = None,
    clear: Annotated[bool, typer.Option("--clear", help="Unassign: anyone may take the items.")] = False,
    workspace: WorkspaceOpt = DEFAULT_WORKSPACE,
    as_json: JsonOpt = False,
) -> None:
    """Assign a batch (or some of its items) to a labeler."""
    from winnow.services.queue import assign

    with _errors(as_json):
        if (assignee is None) == (not clear):
            raise InvalidInputError("give an ASSIGNEE, or --clear to unassign")
        summary = assign(_store(), project, batch, assignee=assignee, items=item, reviewer=reviewer, workspace=workspace, user=_default_user())
    if as_json:
        _emit_json(summary.as_dict())
    else:
        out.print(f"batch {summary.name}: " + (f"assigned to {assignee}" if assignee else "unassigned"))


@queue_app.command("next")
def queue_next(project: str, batch: str, user: UserOpt = None, workspace: WorkspaceOpt = DEFAULT_WORKSPACE, as_json: JsonOpt = False) -> None:
    """Take the next item to label in a batch (it is assigned to you)."""
    from winnow.services.queue import next_item

    with _errors(as_json):
        item = next_item(_store(), project, batch, user=user or _default_user(), workspace=workspace)
    if as_json:
        _emit_json({"item": None if item is None else item.as_dict()})
    elif item is None:
        out.print(f"nothing left to label in batch {batch}")
    else:
        _print_item(item.as_dict())


@queue_app.command("submit")
def queue_submit(
    project: str,
    item: int,
    accept: Annotated[bool, typer.Option("--accept", help="The pre-labels are right.")] = False,
    reject: Annotated[bool, typer.Option("--reject", help="The image is not worth labelling.")] = False,
    labels: Annotated[
        Path | None, typer.Option("--labels", help="JSON list of annotations ({label, bbox: [x1,y1,x2,y2]} in pixels) that are right.")
    ] = None,
    user: UserOpt = None,
    workspace: WorkspaceOpt = DEFAULT_WORKSPACE,
    as_json: JsonOpt = False,
) -> None:
    """Submit an item for review: --accept, --reject or --labels FILE.json (corrected)."""
    from winnow.services.queue import submit

    with _errors(as_json):
        if accept + reject + (labels is not None) != 1:
            raise InvalidInputError("give exactly one of --accept, --reject and --labels FILE.json")
        annotations = None
        if labels is not None:
            doc = _read_json(labels, "the labels file")
            annotations = doc.get("annotations") if isinstance(doc, dict) else doc
            if not isinstance(annotations, list):
                raise InvalidInputError(f"{labels}: expected a JSON list of annotations (or an object with 'annotations')")
        decision = "accepted" if accept else "rejected" if reject else "corrected"
        got = submit(_store(), project, item, decision=decision, annotations=annotations, user=user or _default_user(), workspace=workspace)
    if as_json:
        _emit_json(got.as_dict())
    else:
        out.print(f"item {got.id} ({got.image}) submitted as {got.decision}; waiting for review")


@queue_app.command("review")
def queue_review(
    project: str,
    item: int,
    approve: Annotated[bool, typer.Option("--approve", help="Accept the labeler's answer; the labels are written.")] = False,
    send_back: Annotated[bool, typer.Option("--send-back", help="Back to the labeler.")] = False,
    comment: Annotated[str | None, typer.Option("--comment", "-m", help="Why (shown to the labeler).")] = None,
    user: UserOpt = None,
    workspace: WorkspaceOpt = DEFAULT_WORKSPACE,
    as_json: JsonOpt = False,
) -> None:
    """Review a submitted item: --approve or --send-back."""
    from winnow.services.queue import review

    with _errors(as_json):
        if approve == send_back:
            raise InvalidInputError("give exactly one of --approve and --send-back")
        got = review(_store(), project, item, approve=approve, user=user or _default_user(), comment=comment, workspace=workspace)
    if as_json:
        _emit_json(got.as_dict())
    else:
        out.print(f"item {got.id} ({got.image}): " + ("approved, labels written" if approve else "sent back to the labeler"))


@queue_app.command("from-findings")
def queue_from_findings(
    project: str,
    only: Annotated[list[str] | None, typer.Option("--only", help="Checks whose findings to queue (repeatable; default label_error).")] = None,
    report: Annotated[Path | None, typer.Option("--from", help="A `winnow check --json` report to read instead of running the checks.")] = None,
    name: Annotated[str | None, typer.Option("--name", help="Batch name (default batch-<n>).")] = None,
    assignee: Annotated[str | None, typer.Option("--assignee", help="Who checks them.")] = None,
    workspace: WorkspaceOpt = DEFAULT_WORKSPACE,
    as_json: JsonOpt = False,
) -> None:
    """Turn health-check findings into a batch of "please check" items with the suggested fix."""
    from winnow.services.queue import findings_to_queue

    with _errors(as_json):
        findings = None
        if report is not None:
            doc = _read_json(report, "the check report")
            findings = doc.get("findings") if isinstance(doc, dict) else None
            if not isinstance(findings, list) or not all(isinstance(f, dict) for f in findings):
                raise InvalidInputError(f"{report}: expected a `winnow check --json` report with a 'findings' list")
        result = findings_to_queue(
            _store(), project, findings, checks=only, name=name, assignee=assignee, workspace=workspace, user=_default_user()
        )
    if as_json:
        _emit_json(result.as_dict())
        return
    if result.batch is None:
        out.print(f"nothing to queue ({result.findings} findings, {len(result.skipped)} skipped)")
    else:
        out.print(f"created check batch {result.batch.name} with {result.items} items from {result.findings} findings")
    for s in result.skipped[:10]:
        out.print(f"  skipped {s['image'] or '-'} [{s['check']}]: {s['why']}")
