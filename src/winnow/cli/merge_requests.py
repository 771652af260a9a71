"""``winnow propose`` and ``winnow mr list|show|accept|reject``: a customer's reviewed labels
proposed back to its base project, and the base team's decision (see
:mod:`winnow.services.merge_requests`).

``propose`` runs on the customer's side (``--workspace`` is the customer's), ``mr`` on the base's
(``--workspace`` is the base's). Who is acting is ``--user`` (default: ``$WINNOW_USER``, else the
login name).
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from winnow.cli._common import JsonOpt, WorkspaceOpt, _emit_json, _errors, _store, out
from winnow.cli.queue import UserOpt, _default_user
from winnow.config import DEFAULT_WORKSPACE

mr_app = typer.Typer(help="List, show, accept and reject merge requests proposed to a base project.", no_args_is_help=True)

IdArg = Annotated[int, typer.Argument(help="The merge request's id (winnow mr list BASE).")]


def _print_request(info: dict[str, Any]) -> None:
    out.print(f"merge request {info['id']} to {info['base_workspace']}/{info['base_project']} from {info['source']}: {info['state']}")
    out.print(f"  title: {info['title']}")
    out.print(f"  items: {info['counts'].get('add', 0)} new images, {info['counts'].get('relabel', 0)} relabelled")
    out.print(f"  proposed: {info['created_at']}" + (f" by {info['created_by']}" if info["created_by"] else ""))
    if info["decided_at"]:
        out.print(f"  decided: {info['decided_at']}" + (f" by {info['decided_by']}" if info["decided_by"] else ""))
    report = info["report"]
    if report.get("renamed"):
        out.print("  classes mapped back: " + ", ".join(f"{c} -> {b}" for c, b in report["renamed"].items()))
    if report.get("new_classes"):
        out.print(f"  new classes for the base: {', '.join(report['new_classes'])}")
    if report.get("ambiguous"):
        out.print("  ambiguous (kept as named): " + ", ".join(f"{c} (from {', '.join(b)})" for c, b in report["ambiguous"].items()))
    if report.get("unchanged"):
        out.print(f"  left out, the base already says the same: {len(report['unchanged'])}")
    if info["change_id"] is not None:
        undone = f", undone {info['reverted_at']}" if info["reverted_at"] else ""
        out.print(f"  applied: {report.get('added', 0)} added, {report.get('relabelled', 0)} relabelled as change {info['change_id']}{undone}")
    for c in report.get("conflicts") or []:
        out.print(f"  conflict: {c['name']}: {c['reason']}{' (applied with --force)' if c.get('forced') else ' (skipped)'}")
    if report.get("reason"):
        out.print(f"  reason: {report['reason']}")
    for item in info.get("items") or []:
        labels: dict[str, int] = {}
        for a in item["annotations"]:
            labels[a["label"]] = labels.get(a["label"], 0) + 1
        text = ", ".join(f"{k} x{v}" for k, v in sorted(labels.items())) or "no objects"
        target = item["name"] if item["kind"] == "add" else f"{item['name']} -> {item['base_name']}"
        out.print(f"    {item['kind']:8} {target}: {text}")


def propose_cmd(
    project: Annotated[str, typer.Argument(help="The customer project (a fork) whose labels to propose.")],
    image: Annotated[
        list[str] | None, typer.Option("--image", help="An image to propose (repeatable; default: every approved image not yet proposed).")
    ] = None,
    title: Annotated[str | None, typer.Option("--title", help="What the base team reads first.")] = None,
    user: UserOpt = None,
    workspace: WorkspaceOpt = DEFAULT_WORKSPACE,
    as_json: JsonOpt = False,
) -> None:
    """Propose PROJECT's reviewed labels back to its base project as a merge request."""
    from winnow.services.merge_requests import propose

    with _errors(as_json):
        info = propose(_store(), project, workspace=workspace, images=image or None, title=title, user=user or _default_user())
    if as_json:
        _emit_json(info.as_dict())
        return
    _print_request(info.as_dict())
    out.print(f"the base team decides with: winnow mr show {info.base_project} {info.id} -w {info.base_workspace}")


@mr_app.command("list")
def mr_list(
    base: Annotated[str, typer.Argument(help="The base project (with --proposed: the customer project).")],
    state: Annotated[str | None, typer.Option("--state", help="open, accepted or rejected.")] = None,
    proposed: Annotated[bool, typer.Option("--proposed", help="The requests this customer project proposed to its base.")] = False,
    workspace: WorkspaceOpt = DEFAULT_WORKSPACE,
    as_json: JsonOpt = False,
) -> None:
    """The merge requests proposed to BASE (or, with --proposed, by a customer project), oldest first."""
    from winnow.services.merge_requests import list_proposals, list_requests

    with _errors(as_json):
        rows = (list_proposals if proposed else list_requests)(_store(), base, workspace=workspace, state=state)
    if as_json:
        _emit_json({"merge_requests": [r.as_dict() for r in rows]})
        return
    table = Table("id", "state", "from", "new", "relabel", "proposed", "title", box=None, pad_edge=False)
    for r in rows:
        state_text = r.state + (" (undone)" if r.reverted_at else "")
        table.add_row(str(r.id), state_text, r.source, str(r.counts.get("add", 0)), str(r.counts.get("relabel", 0)), r.created_at, r.title)
    out.print(table)


@mr_app.command("show")
def mr_show(
    base: Annotated[str, typer.Argument(help="The base project.")],
    request_id: IdArg,
    workspace: WorkspaceOpt = DEFAULT_WORKSPACE,
    as_json: JsonOpt = False,
) -> None:
    """One merge request of BASE with its items and their labels (in the base's class names)."""
    from winnow.services.merge_requests import show_request

    with _errors(as_json):
        info = show_request(_store(), base, request_id, workspace=workspace)
    if as_json:
        _emit_json(info.as_dict())
    else:
        _print_request(info.as_dict())


@mr_app.command("accept")
def mr_accept(
    base: Annotated[str, typer.Argument(help="The base project.")],
    request_id: IdArg,
    force: Annotated[bool, typer.Option("--force", help="Apply conflicting items too (the customer's labels win).")] = False,
    user: UserOpt = None,
    workspace: WorkspaceOpt = DEFAULT_WORKSPACE,
    as_json: JsonOpt = False,
) -> None:
    """Apply the request to BASE as one recorded change (winnow undo BASE reverts it)."""
    from winnow.services.merge_requests import accept

    with _errors(as_json):
        info = accept(_store(), base, request_id, workspace=workspace, user=user or _default_user(), force=force)
    if as_json:
        _emit_json(info.as_dict())
        return
    _print_request(info.as_dict())
    out.print(f"undo with: winnow undo {base} --change {info.change_id}" + (f" -w {workspace}" if workspace != DEFAULT_WORKSPACE else ""))


@mr_app.command("reject")
def mr_reject(
    base: Annotated[str, typer.Argument(help="The base project.")],
    request_id: IdArg,
    reason: Annotated[str | None, typer.Option("--reason", help="Why, for the customer.")] = None,
    user: UserOpt = None,
    workspace: WorkspaceOpt = DEFAULT_WORKSPACE,
    as_json: JsonOpt = False,
) -> None:
    """Close the request without changing BASE."""
    from winnow.services.merge_requests import reject

    with _errors(as_json):
        info = reject(_store(), base, request_id, workspace=workspace, user=user or _default_user(), reason=reason)
    if as_json:
        _emit_json(info.as_dict())
    else:
        _print_request(info.as_dict())
