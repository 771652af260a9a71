"""``winnow deploy`` (make a model its project's active model, or ``--undeploy`` it) and
``winnow capture`` (show or set a project's capture policy).

Registered by ``cli/main.py``: ``app.command("deploy")(deploy_cmd)``,
``app.command("capture")(capture_cmd)``.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from winnow.cli._common import JsonOpt, WorkspaceOpt, _emit_json, _errors, _store, out
from winnow.config import DEFAULT_WORKSPACE


def deploy_cmd(
    model: Annotated[str, typer.Argument(help="A model's name or id prefix (`winnow model list`).")],
    undeploy: Annotated[bool, typer.Option("--undeploy", help="End this model's deployment instead.")] = False,
    workspace: WorkspaceOpt = DEFAULT_WORKSPACE,
    as_json: JsonOpt = False,
) -> None:
    """Make a model (ready, with a verified ONNX export) the active model of its project; a running
    server picks it up within about a second and swaps without dropping a request."""
    from winnow.services import deploy as svc

    with _errors(as_json):
        if undeploy:
            summary = svc.undeploy(_store(), model, workspace=workspace, user="cli")
        else:
            summary = svc.deploy(_store(), model, workspace=workspace, user="cli")
    if as_json:
        _emit_json(summary.as_dict())
    elif undeploy:
        out.print(f"undeployed {summary.previous[:12] if summary.previous else model}: project {summary.project} has no active model")
    elif not summary.changed:
        out.print(f"{summary.name} ({summary.model[:12]}) is already the active model of {summary.project}")
    else:
        before = f" (was {summary.previous[:12]})" if summary.previous else ""
        out.print(f"deployed {summary.name} ({summary.model[:12]}) as the active model of {summary.project}{before}")


def _describe(policy: dict[str, Any]) -> str:
    mode = policy["mode"]
    detail = {
        "off": "nothing is captured",
        "all": "every predicted image is captured",
        "fraction": f"a fraction {policy['fraction']} of the images (seed {policy['seed']})",
        "low_confidence": f"images whose top score is below {policy['threshold']}",
        "rare_class": "images predicted as " + (", ".join(policy["rare_classes"]) if policy["rare_classes"] else "the rarest classes (automatic)"),
        "client": "images whose request says capture=true",
    }[mode]
    cap = "" if policy["max_per_day"] is None else f"; at most {policy['max_per_day']} a day"
    return f"capture: {mode}: {detail}{cap}"


def capture_cmd(
    project: Annotated[str, typer.Argument(help="The project whose capture policy to show or set.")],
    mode: Annotated[str | None, typer.Option("--mode", help="off, all, fraction, low_confidence, rare_class or client")] = None,
    fraction: Annotated[float | None, typer.Option("--fraction", help="fraction mode: share of images kept, in (0, 1].")] = None,
    threshold: Annotated[float | None, typer.Option("--threshold", help="low_confidence mode: keep images whose top score is below this.")] = None,
    rare_class: Annotated[list[str] | None, typer.Option("--rare-class", help="rare_class mode: a class to capture (repeatable).")] = None,
    auto_rare: Annotated[bool, typer.Option("--auto-rare", help="rare_class mode: the classes with the fewest labels.")] = False,
    max_per_day: Annotated[int | None, typer.Option("--max-per-day", help="At most this many captures a UTC day (-1: no cap).")] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="fraction mode: mixed into the per-image draw.")] = None,
    workspace: WorkspaceOpt = DEFAULT_WORKSPACE,
    as_json: JsonOpt = False,
) -> None:
    """Show a project's capture policy, or change the fields given (the others stay)."""
    from winnow.errors import InvalidInputError
    from winnow.services import deploy as svc

    changes: dict[str, Any] = {}
    for key, value in (("mode", mode), ("fraction", fraction), ("threshold", threshold), ("seed", seed)):
        if value is not None:
            changes[key] = value
    with _errors(as_json):
        if rare_class and auto_rare:
            raise InvalidInputError("give --rare-class names or --auto-rare, not both")
        if rare_class:
            changes["rare_classes"] = rare_class
        if auto_rare:
            changes["rare_classes"] = None
        if max_per_day is not None:
            changes["max_per_day"] = None if max_per_day < 0 else max_per_day
        store = _store()
        if changes:
            policy = svc.set_capture_policy(store, project, changes, workspace=workspace, user="cli")
        else:
            policy = svc.get_capture_policy(store, project, workspace=workspace)
    if as_json:
        _emit_json(policy)
    else:
        out.print(_describe(policy))
