"""``winnow select``: active learning - pick the unlabeled images worth labelling next and queue them.

Registered by ``cli/main.py``: ``app.command("select")(select_cmd)``.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from winnow.cli._common import (
    JsonOpt,
    WorkspaceOpt,
    _emit_json,
    _errors,
    _progress,
    _store,
    out,
)
from winnow.config import DEFAULT_WORKSPACE


def _fmt_reason(reason: dict) -> str:
    return ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in reason.items() if k not in ("strategy", "predicted"))


def select_cmd(
    project: Annotated[str, typer.Argument(help="The project to select from.")],
    budget: Annotated[int, typer.Option("--budget", "-n", help="How many images to pick.")] = 50,
    strategy: Annotated[
        str, typer.Option("--strategy", "-s", help="uncertainty, margin, entropy, diversity, hybrid, slice or random.")
    ] = "hybrid",
    model: Annotated[str | None, typer.Option("--model", "-m", help="Model name or id prefix (default: the project's newest ready model).")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed for ties and random draws.")] = 0,
    near_duplicate: Annotated[
        float | None, typer.Option("--near-duplicate", help="Cosine similarity above which a candidate is a near duplicate of a labeled or picked image (default 0.995; 1 = off).")
    ] = None,
    batch_name: Annotated[str | None, typer.Option("--batch-name", help="Name of the queue batch (default batch-N).")] = None,
    assignee: Annotated[str | None, typer.Option("--assignee", help="Who labels the batch.")] = None,
    no_batch: Annotated[bool, typer.Option("--no-batch", help="Only print the picks; put nothing in the queue.")] = False,
    workspace: WorkspaceOpt = DEFAULT_WORKSPACE,
    as_json: JsonOpt = False,
) -> None:
    """Pick BUDGET unlabeled (or captured) images with an active-learning strategy and put them in the labeling queue as one batch."""
    from winnow.services.selection import select_images

    with _errors(as_json), _progress("predicting", not as_json) as progress:
        report = select_images(
            _store(),
            project,
            budget=budget,
            strategy=strategy,
            model=model,
            seed=seed,
            near_duplicate=near_duplicate,
            workspace=workspace,
            batch_name=batch_name,
            assignee=assignee,
            create_batch=not no_batch,
            progress=progress,
        )
    if as_json:
        _emit_json(report.as_dict())
        return
    using = f" with model {report.model_name} ({report.model[:12]})" if report.model else ""
    out.print(
        f"{report.strategy}{using}: picked {len(report.picked)} of {report.candidates} candidates "
        f"({report.labeled} labeled, {report.waiting} waiting in the queue, "
        f"{report.excluded_near_duplicates} near duplicates of known images left out)"
    )
    if report.picked:
        table = Table("#", "image", "score", "predicted", "why")
        for n, p in enumerate(report.picked, 1):
            table.add_row(str(n), p["image"], f"{p['score']:.4f}", p["predicted"] or "-", _fmt_reason(p["reason"]))
        out.print(table)
    for note in report.notes:
        out.print(f"note: {note}")
    if report.batch:
        b = report.batch
        out.print(f"queued as batch {b['name']} (#{b['id']}, {b['items']} images" + (f", assigned to {b['assignee']}" if b["assignee"] else "") + ")")
    elif report.picked:
        out.print("not queued (--no-batch)")
