"""``winnow fleet BASE``: every customer forked from BASE, its model, and base vs customer model on its test set.

Registered by ``cli/main.py`` as ``app.command("fleet")(fleet_cmd)``. The ``--json`` document is
:func:`winnow.services.fleet.fleet`'s answer (fields in docs/fleet.md).
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from winnow.cli._common import JsonOpt, WorkspaceOpt, _emit_json, _errors, _store, out
from winnow.config import DEFAULT_WORKSPACE


def _score(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _worst(s: dict[str, Any] | None) -> str:
    return "-" if not s else f"{s['name']} {_score(s['score'])} ({s['images']})"


def _print(doc: dict[str, Any]) -> None:
    b = doc["base"]
    model = b["model"]
    version = f"v{b['version']['number']}" if b["version"] else "no version"
    out.print(
        f"base {b['workspace']}/{b['project']} ({version}); base model: "
        + (f"{model['name']} ({model['ref']}, {model['source']})" if model else "none")
    )
    if not doc["customers"]:
        out.print("no customer project is forked from it (`winnow project fork`)")
        return
    metric = next((c["metric"] for c in doc["customers"] if c["metric"]), "score")
    table = Table("customer", "base version", "model", "test", f"base {metric}", f"customer {metric}", "delta", "worst slice",
                  "own labels", "verdict", box=None, pad_edge=False)
    for c in doc["customers"]:
        bv = c["base_version"]
        own = c["labels"]
        labels = "-" if own is None else str(own["own_train_images"]) + (f" ({100 * own['share']:.1f}%)" if own["share"] is not None else "")
        delta = "-" if c["delta"] is None else f"{c['delta']:+.3f}"
        table.add_row(
            f"{c['workspace']}/{c['project']}",
            f"v{bv['number']}" + (f" (behind v{bv['latest']})" if bv["behind"] else ""),
            "-" if c["model"] is None else f"{c['model']['name']} ({c['model']['source']})",
            str(c["test_images"]), _score(c["base_score"]), _score(c["score"]), delta,
            _worst(c["worst_slice"] or (c["base_worst_slice"] if c["model"] is None else None)),
            labels, c["verdict"],
        )
    out.print(table)
    for c in doc["customers"]:
        if c["error"]:
            out.print(f"{c['workspace']}/{c['project']}: {c['error']}")
    e = doc["evaluations"]
    out.print("own labels: the customer's own labelled train+valid images (share of the base version's train+valid images)")
    out.print(f"on each customer's {doc['split']} split; {e['run']} evaluations run, {e['cached']} from the cache, {e['seconds']:.1f}s")


def fleet_cmd(
    base: Annotated[str, typer.Argument(help="The base project whose forks (customers) to list.")],
    base_model: Annotated[
        str | None, typer.Option("--base-model", help="The base model to compare with (default: the deployed one, else the newest ready one).")
    ] = None,
    workspace: WorkspaceOpt = DEFAULT_WORKSPACE,
    as_json: JsonOpt = False,
) -> None:
    """Every customer forked from BASE: its model, base vs customer model on its own test set, its worst slice and the labels it added."""
    from winnow.services.fleet import fleet

    with _errors(as_json):
        doc = fleet(_store(), base, workspace=workspace, base_model=base_model)
    if as_json:
        _emit_json(doc)
    else:
        _print(doc)
