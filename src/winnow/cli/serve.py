"""``winnow serve`` (the HTTP API) and ``winnow key`` (its API keys)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from winnow.cli._common import JsonOpt, _emit_json, _errors, _store, err, out

key_app = typer.Typer(help="Create, list and revoke HTTP API keys.", no_args_is_help=True)


def serve_cmd(
    host: Annotated[str, typer.Option(help="Interface to bind; 127.0.0.1 keeps the server on this machine.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    reports: Annotated[
        Path | None, typer.Option(help="A folder of HTML reports (e.g. winnow demo's --out) to serve at / without a key.")
    ] = None,
) -> None:
    """Serve the HTTP API (OpenAPI at /openapi.json, docs at /docs) on the store in $WINNOW_HOME."""
    import uvicorn

    from winnow.api.app import create_app

    if host not in ("127.0.0.1", "localhost", "::1"):
        err.print(f"note: serving on {host}: every request needs an API key; put TLS in front of it")
    if reports is not None and not reports.is_dir():
        err.print(f"error: --reports {reports}: not a folder")
        raise typer.Exit(1)
    uvicorn.run(create_app(_store(), reports=reports), host=host, port=port, log_level="info")


@key_app.command("create")
def key_create(
    workspace: Annotated[str, typer.Option("--workspace", "-w", help="Workspace the key is for (created if new).")],
    role: Annotated[str, typer.Option("--role", "-r", help="viewer, labeler or admin")] = "viewer",
    name: Annotated[str | None, typer.Option(help="A name to tell the key apart.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Create an API key. The key is printed once; only its hash is kept."""
    from winnow.services.auth import create_key

    with _errors(as_json):
        summary = create_key(_store(), workspace, role, name=name, user="cli")
    if as_json:
        _emit_json(summary.as_dict())
    else:
        out.print(summary.key)
        err.print(f"created {summary.role} key {summary.name!r} for workspace {summary.workspace}; it is shown only this once")


@key_app.command("list")
def key_list(
    workspace: Annotated[str | None, typer.Option("--workspace", "-w", help="Only this workspace's keys.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """List API keys (never the keys themselves)."""
    from winnow.services.auth import list_keys

    with _errors(as_json):
        keys = list_keys(_store(), workspace)
    if as_json:
        _emit_json([k.as_dict() for k in keys])
        return
    table = Table("id", "name", "workspace", "role", "prefix", "created", "revoked")
    for k in keys:
        table.add_row(str(k.id), k.name, k.workspace, k.role, k.prefix + "...", k.created_at, "yes" if k.revoked else "")
    out.print(table)


@key_app.command("revoke")
def key_revoke(ref: Annotated[str, typer.Argument(help="The key's id, name or prefix.")], as_json: JsonOpt = False) -> None:
    """Revoke an API key: requests with it get 401 from now on."""
    from winnow.services.auth import revoke_key

    with _errors(as_json):
        summary = revoke_key(_store(), ref)
    if as_json:
        _emit_json(summary.as_dict())
    else:
        out.print(f"revoked key {summary.name!r} ({summary.prefix}...) of workspace {summary.workspace}")
