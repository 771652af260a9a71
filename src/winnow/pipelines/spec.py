"""Reading a pipeline file (``winnow.yaml``) into a checked :class:`Pipeline`.

The schema (``docs/pipelines.md``)::

    name: demo                 # optional; default: the file's stem. Runs are cached per name.
    project: demo-shapes       # required: the project every step works on
    workspace: default         # optional
    task: detect               # optional (detect); the project is created with it when missing
    steps:                     # required, in order
      - id: v1                 # optional when the kind appears once (the id is then the kind)
        uses: version          # import | label | check | fix | version | train | evaluate | deploy | select
        with: {seed: 0}        # the kind's parameters (winnow.pipelines.steps)
        gates: ["images >= 100"]   # optional: conditions on the step's outputs (winnow.pipelines.gates)

A text value in ``with:`` may refer to an earlier step's output: ``${steps.v1.outputs.version}``
(a whole-value reference keeps the output's type). ``train`` without ``version`` takes the last
``version`` step's; ``evaluate``, ``deploy`` and ``select`` without ``model`` take the last
``train`` step's (``select`` the newest ready model when there is none).

Every mistake raises :class:`PipelineError` naming the file, the step and the key.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from winnow.config import DEFAULT_WORKSPACE
from winnow.errors import InvalidInputError, NotFoundError
from winnow.pipelines.gates import Gate, GateSyntaxError, parse_gate
from winnow.versions.manifest import canonical_json

TOP_KEYS = ("name", "project", "workspace", "task", "steps", "description")
STEP_KEYS = ("id", "uses", "with", "gates", "description")
TASKS = ("classify", "detect", "segment")
MAX_STEPS = 100

_ID_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,99}$")
_REF_RE = re.compile(r"\$\{([^}]*)\}")
_REF_BODY_RE = re.compile(r"^\s*steps\.([A-Za-z][A-Za-z0-9_-]*)\.outputs\.([A-Za-z_][A-Za-z0-9_]*)\s*$")


class PipelineError(InvalidInputError):
    """A pipeline file that cannot be run as written."""


@dataclass(frozen=True)
class Ref:
    step: str
    output: str


@dataclass
class StepSpec:
    """One step as written (``with_`` holds defaults filled in, references still unresolved)."""

    id: str
    uses: str
    with_: dict[str, Any]
    gates: list[Gate] = field(default_factory=list)
    position: int = 0  # 1-based
    description: str | None = None

    @property
    def refs(self) -> list[Ref]:
        return [r for v in self.with_.values() for r in find_refs(v)]

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "uses": self.uses, "with": dict(self.with_), "gates": [g.text for g in self.gates]}


@dataclass
class Pipeline:
    name: str
    project: str
    workspace: str
    task: str
    steps: list[StepSpec]
    file: Path | None = None
    base_dir: Path = field(default_factory=Path.cwd)
    description: str | None = None

    @property
    def sha256(self) -> str:
        doc = {"name": self.name, "project": self.project, "workspace": self.workspace, "task": self.task,
               "steps": [s.as_dict() for s in self.steps]}
        return hashlib.sha256(canonical_json(doc).encode()).hexdigest()

    def step(self, step_id: str) -> StepSpec:
        for s in self.steps:
            if s.id == step_id:
                return s
        raise PipelineError(f"pipeline {self.name!r} has no step {step_id!r}; its steps: {', '.join(s.id for s in self.steps)}")

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "project": self.project, "workspace": self.workspace, "task": self.task,
                "file": None if self.file is None else str(self.file), "steps": [s.as_dict() for s in self.steps]}


def find_refs(value: Any) -> list[Ref]:
    """The ``${steps.ID.outputs.KEY}`` references in a ``with:`` value (texts, lists, mappings)."""
    if isinstance(value, str):
        out = []
        for body in _REF_RE.findall(value):
            m = _REF_BODY_RE.match(body)
            if m is None:
                raise PipelineError(f"unknown reference ${{{body}}}: write ${{steps.STEP_ID.outputs.KEY}}")
            out.append(Ref(m[1], m[2]))
        return out
    if isinstance(value, list):
        return [r for v in value for r in find_refs(v)]
    if isinstance(value, dict):
        return [r for v in value.values() for r in find_refs(v)]
    return []


def resolve_refs(value: Any, outputs: dict[str, dict[str, Any]]) -> Any:
    """``value`` with every reference replaced by the step's recorded output (``outputs[step][key]``)."""
    if isinstance(value, str):
        whole = _REF_RE.fullmatch(value.strip())
        if whole is not None:
            r = find_refs(value)[0]
            return outputs.get(r.step, {}).get(r.output)

        def sub(match: re.Match[str]) -> str:
            r = find_refs(match.group(0))[0]
            got = outputs.get(r.step, {}).get(r.output)
            return "" if got is None else str(got)

        return _REF_RE.sub(sub, value)
    if isinstance(value, list):
        return [resolve_refs(v, outputs) for v in value]
    if isinstance(value, dict):
        return {k: resolve_refs(v, outputs) for k, v in value.items()}
    return value


def _has_ref(value: Any) -> bool:
    return isinstance(value, str) and _REF_RE.search(value) is not None


def load_pipeline(path: str | Path) -> Pipeline:
    """Read and check the pipeline file at ``path`` (YAML, read with ``yaml.safe_load``)."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise NotFoundError(f"{path}: no such pipeline file")
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise PipelineError(f"{path}: not UTF-8 text ({exc.reason})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise PipelineError(f"{path}: not valid YAML{where}: {problem}") from None
    return parse_pipeline(doc, file=path.resolve())


def parse_pipeline(doc: Any, *, file: Path | None = None, base_dir: Path | None = None) -> Pipeline:
    """Check a pipeline document (the parsed YAML) and return it as a :class:`Pipeline`."""
    from winnow.pipelines.steps import KINDS, check_value

    where = f"{file}: " if file is not None else ""

    def fail(msg: str) -> PipelineError:
        return PipelineError(where + msg)

    if not isinstance(doc, dict):
        raise fail("a pipeline is a mapping with 'project' and 'steps'")
    unknown = [k for k in doc if k not in TOP_KEYS]
    if unknown:
        raise fail(f"unknown key {unknown[0]!r} at the top; a pipeline has: {', '.join(TOP_KEYS)}")
    project = doc.get("project")
    if not isinstance(project, str) or not project.strip():
        raise fail("'project' is required: the name of the project the steps work on")
    workspace = doc.get("workspace", DEFAULT_WORKSPACE)
    if not isinstance(workspace, str) or not workspace.strip():
        raise fail(f"'workspace' must be a name, got {workspace!r}")
    task = doc.get("task", "detect")
    if task not in TASKS:
        raise fail(f"'task' must be one of {', '.join(TASKS)}, got {task!r}")
    name = doc.get("name", file.stem if file is not None else project)
    if not isinstance(name, str) or not name.strip() or len(name) > 200:
        raise fail(f"'name' must be a short text, got {name!r}")
    raw_steps = doc.get("steps")
    if not isinstance(raw_steps, list) or not raw_steps:
        raise fail("'steps' is required: a list of steps, each with 'uses'")
    if len(raw_steps) > MAX_STEPS:
        raise fail(f"at most {MAX_STEPS} steps")

    kinds_seen = [s.get("uses") for s in raw_steps if isinstance(s, dict)]
    steps: list[StepSpec] = []
    ids: set[str] = set()
    last_of: dict[str, str] = {}
    for n, raw in enumerate(raw_steps, 1):
        if not isinstance(raw, dict):
            raise fail(f"step {n}: a step is a mapping with 'uses', got {raw!r}")
        uses = raw.get("uses")
        label = f"step {n}" + (f" ({raw['id']!r})" if isinstance(raw.get("id"), str) else "")
        if uses not in KINDS:
            raise fail(f"{label}: unknown step kind {uses!r} in 'uses'; known kinds: {', '.join(KINDS)}")
        unknown = [k for k in raw if k not in STEP_KEYS]
        if unknown:
            raise fail(f"{label}: unknown key {unknown[0]!r}; a step has: {', '.join(STEP_KEYS)}")
        step_id = raw.get("id")
        if step_id is None:
            if kinds_seen.count(uses) > 1:
                raise fail(f"{label}: there are {kinds_seen.count(uses)} {uses!r} steps; give each an 'id'")
            step_id = uses
        if not isinstance(step_id, str) or not _ID_RE.match(step_id):
            raise fail(f"{label}: 'id' must start with a letter and hold letters, digits, '-' or '_', got {step_id!r}")
        if step_id in ids:
            raise fail(f"{label}: two steps have the id {step_id!r}")
        label = f"step {step_id!r}"
        kind = KINDS[uses]
        given = raw.get("with") or {}
        if not isinstance(given, dict):
            raise fail(f"{label}: 'with' must be a mapping of parameters, got {given!r}")
        with_: dict[str, Any] = {}
        for key, value in given.items():
            if key not in kind.params:
                raise fail(f"{label}: {uses} has no parameter {key!r}; it takes: {', '.join(kind.params)}")
            try:
                for r in find_refs(value):
                    if r.step not in ids:
                        later = any(isinstance(s, dict) and s.get("id", s.get("uses")) == r.step for s in raw_steps)
                        raise PipelineError(
                            f"${{steps.{r.step}...}} refers to " + ("a later step" if later else "no step of this pipeline")
                            + f"; earlier steps: {', '.join(s.id for s in steps) or 'none'}"
                        )
                    ref_kind = KINDS[next(s.uses for s in steps if s.id == r.step)]
                    if r.output not in ref_kind.outputs:
                        raise PipelineError(
                            f"step {r.step!r} ({ref_kind.name}) has no output {r.output!r}; it has: {', '.join(ref_kind.outputs)}"
                        )
                with_[key] = value if _has_ref(value) else check_value(key, kind.params[key], value)
            except PipelineError as exc:
                raise fail(f"{label}: with.{key}: {exc}") from None
            except InvalidInputError as exc:
                raise fail(f"{label}: with.{key}: {exc}") from None
        # implicit wiring: the last version's id, the last trained model
        if uses == "train" and "version" not in with_:
            if "version" not in last_of:
                raise fail(f"{label}: 'version' is required (no earlier version step to take it from)")
            with_["version"] = f"${{steps.{last_of['version']}.outputs.version}}"
        if uses in ("evaluate", "deploy", "select") and "model" not in with_:
            if "train" in last_of:
                with_["model"] = f"${{steps.{last_of['train']}.outputs.model}}"
            elif uses != "select":
                raise fail(f"{label}: 'model' is required (no earlier train step to take it from)")
        for key, p in kind.params.items():
            if key not in with_:
                if p.required:
                    raise fail(f"{label}: with.{key} is required ({p.help})" if p.help else f"{label}: with.{key} is required")
                if p.default is not None:
                    with_[key] = p.default
        raw_gates = raw.get("gates") or []
        if isinstance(raw_gates, str):
            raw_gates = [raw_gates]
        if not isinstance(raw_gates, list):
            raise fail(f"{label}: 'gates' must be a list of conditions like 'map50 >= 0.6'")
        gates: list[Gate] = []
        for g, text in enumerate(raw_gates, 1):
            try:
                gate = parse_gate(text)
                kind.check_gate(gate, with_, task)
            except (GateSyntaxError, InvalidInputError) as exc:
                raise fail(f"{label}: gate {g} {text!r}: {exc}") from None
            gates.append(gate)
        desc = raw.get("description")
        steps.append(StepSpec(step_id, uses, with_, gates, n, desc if isinstance(desc, str) else None))
        ids.add(step_id)
        last_of[uses] = step_id

    return Pipeline(
        name=name.strip(), project=project.strip(), workspace=workspace.strip(), task=task, steps=steps, file=file,
        base_dir=base_dir or (file.parent if file is not None else Path.cwd()),
        description=doc.get("description") if isinstance(doc.get("description"), str) else None,
    )
