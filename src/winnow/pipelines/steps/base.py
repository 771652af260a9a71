"""The step kinds of a pipeline: what each takes (``with:``), reads (its input fingerprint),
does (one service call), records (outputs) and lets gates test.

Every kind is one :class:`StepKind` registered in :data:`KINDS` by its ``uses:`` name. A kind says:

* ``params``: the keys ``with:`` may hold, their types and defaults (checked when the file loads);
* ``outputs``: the keys later steps may reference as ``${steps.ID.outputs.KEY}``;
* ``inputs(ctx)``: a JSON document of everything the step reads - content hashes, never paths or
  times. Its SHA-256 is the step's **fingerprint**; the runner skips the step when it equals the
  last successful record's and ``still_valid`` says that record's outputs still exist;
* ``run(ctx)``: the service call; returns the outputs;
* ``gate_env(outputs, task)``: the names and functions its gates read.

``settles`` kinds (``fix``, ``label``) change the project's records: after running, their
inputs are taken again, and that fingerprint (the state they left) counts as done too, so a
second run finds nothing to redo. Services are imported inside the functions: importing this
module is cheap.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from winnow.errors import InvalidInputError
from winnow.pipelines.gates import Gate, GateEnv, GateSyntaxError
from winnow.pipelines.state import fingerprint, project_state
from winnow.store.db import Store

# ----------------------------------------------------------------------------- parameters


@dataclass(frozen=True)
class Param:
    """One ``with:`` key. ``kind``: ``int``, ``number``, ``text``, ``bool``, ``texts`` (a list of
    texts, or one text), ``mapping``. ``ref``: it may hold a ``${steps...}`` reference."""

    kind: str
    default: Any = None
    required: bool = False
    help: str = ""
    choices: tuple[str, ...] = ()


def check_value(key: str, p: Param, value: Any) -> Any:
    """``value`` as ``p`` wants it, or :class:`InvalidInputError` saying what was expected."""
    if value is None:
        if p.required:
            raise InvalidInputError(f"'{key}' is required")
        return None
    ok = {
        "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
        "text": lambda v: isinstance(v, str),
        "bool": lambda v: isinstance(v, bool),
        "texts": lambda v: isinstance(v, str) or (isinstance(v, list) and all(isinstance(x, str) for x in v)),
        "mapping": lambda v: isinstance(v, dict),
        "any": lambda v: True,
    }[p.kind]
    if not ok(value):
        what = {"int": "a whole number", "number": "a number", "text": "a text", "bool": "true or false",
                "texts": "a list of texts", "mapping": "a mapping", "any": "a value"}[p.kind]
        raise InvalidInputError(f"'{key}' must be {what}, got {value!r}")
    if p.choices and value not in p.choices:
        raise InvalidInputError(f"'{key}' must be one of {', '.join(p.choices)}, got {value!r}")
    if p.kind == "texts" and isinstance(value, str):
        return [value]
    return value


# ----------------------------------------------------------------------------- context


@dataclass
class StepContext:
    """What a step runs against. ``params``: its ``with:`` with references resolved and defaults
    filled in. ``state()`` memoises the project's state until a step changes the project."""

    store: Store
    project: str
    workspace: str
    task: str
    base_dir: Path
    step: str
    params: dict[str, Any]
    #: shared by the steps of one run: the project's state until a step changes the project
    shared: dict[str, Any] = field(default_factory=dict, repr=False)
    _memo: dict[str, Any] = field(default_factory=dict, repr=False)

    def state(self) -> dict[str, Any]:
        if self.shared.get("state") is None:
            self.shared["state"] = project_state(self.store, self.project, workspace=self.workspace)
        return self.shared["state"]

    def forget_state(self) -> None:
        self.shared.pop("state", None)

    def path(self, value: str) -> Path:
        p = Path(value).expanduser()
        return p if p.is_absolute() else (self.base_dir / p)


# ----------------------------------------------------------------------------- the kinds


@dataclass
class StepKind:
    name: str
    help: str
    params: dict[str, Param]
    outputs: tuple[str, ...]
    inputs: Callable[[StepContext], dict[str, Any]]
    run: Callable[[StepContext], dict[str, Any]]
    still_valid: Callable[[StepContext, dict[str, Any]], bool] = lambda ctx, out: True
    #: names gates may read: a fixed set, or ``None`` when they are known only from the outputs
    gate_names: Callable[[str], set[str] | None] = lambda task: set()
    #: ``name -> (check of the argument at load time or None)``
    gate_functions: dict[str, Callable[[str, dict[str, Any], str], None] | None] = field(default_factory=dict)
    gate_env: Callable[[dict[str, Any], str], GateEnv] = lambda out, task: GateEnv({})
    settles: bool = False
    changes_project: bool = False

    def check_gate(self, gate: Gate, params: dict[str, Any], task: str) -> None:
        """Load-time check: every function and (where known) every name exists for this kind."""
        for fname, args in gate.calls:
            if fname not in self.gate_functions:
                known = ", ".join(f"{f}(...)" for f in sorted(self.gate_functions)) or "none"
                raise GateSyntaxError(f"{self.name} steps have no function {fname!r}; they have: {known}")
            if len(args) != 1:
                raise GateSyntaxError(f"{fname}(...) takes one argument, got {len(args)}")
            check = self.gate_functions[fname]
            if check is not None:
                check(args[0], params, task)
        names = self.gate_names(task)
        if names is not None:
            for n in gate.names:
                if n not in names:
                    known = ", ".join(sorted(names)) or "none"
                    raise GateSyntaxError(f"{self.name} steps have no value {n!r}; gates can read: {known}")


KINDS: dict[str, StepKind] = {}


def register(kind: StepKind) -> StepKind:
    KINDS[kind.name] = kind
    return kind


def project_row_exists(ctx: StepContext, table: Any, row_id: Any, **where: Any) -> bool:
    """True when the project's row ``row_id`` of ``table`` still exists."""
    from sqlalchemy import select

    from winnow.errors import NotFoundError
    from winnow.services.projects import get_project

    if row_id is None:
        return True
    with ctx.store.read() as session:
        try:
            proj = get_project(session, ctx.project, ctx.workspace)
        except NotFoundError:
            return False
        q = select(table.id).where(table.id == row_id, table.project_id == proj.id)
        for col, value in where.items():
            q = q.where(getattr(table, col) == value)
        return session.scalar(q) is not None


def problem_counts(report: dict[str, Any]) -> tuple[int, int]:
    problems = report.get("problems") or []
    return (sum(1 for p in problems if p.get("level") == "error"), sum(1 for p in problems if p.get("level") == "warning"))

def numbers(out: dict[str, Any], names: set[str]) -> dict[str, Any]:
    return {k: out.get(k) for k in names}


def step_fingerprint(kind: str, inputs: dict[str, Any]) -> str:
    """The fingerprint of a step of ``kind`` with ``inputs``."""
    return fingerprint({"kind": kind, "inputs": inputs})
