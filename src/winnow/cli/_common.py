"""What every ``winnow`` command shares: the consoles, the common options, JSON output, error
reporting and the progress bar."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from winnow.errors import WinnowError

# markup=False: dataset strings (labels, names, messages) are printed as they are, never parsed
# as Rich markup - a class called "" stays "".
out = Console(highlight=False, soft_wrap=True, markup=False)
err = Console(stderr=True, highlight=False, soft_wrap=True, markup=False)  # an error stays one line

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]
WorkspaceOpt = Annotated[str, typer.Option("--workspace", "-w", help="Workspace name.")]


def _store():
    from winnow.store.db import Store

    return Store.open()


def _emit_json(doc: Any) -> None:
    sys.stdout.write(json.dumps(doc, indent=2, ensure_ascii=False, default=str) + "\n")


@contextmanager
def _errors(as_json: bool) -> Iterator[None]:
    try:
        yield
    except WinnowError as exc:
        if as_json:
            _emit_json({"error": str(exc), "type": type(exc).__name__})
        err.print(f"error: {exc}")
        raise typer.Exit(1) from None


@contextmanager
def _progress(description: str, enabled: bool) -> Iterator[Callable[[int, int], None] | None]:
    if not enabled or not err.is_terminal:
        yield None
        return
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
    ) as bar:
        task = bar.add_task(description, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update
