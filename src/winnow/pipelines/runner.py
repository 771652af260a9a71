"""Running a pipeline: steps in order, each skipped when its inputs did not change, gates checked,
the run recorded.

For each step the runner resolves its ``with:`` (references to earlier outputs), takes its input
fingerprint (:mod:`winnow.pipelines.steps`) and looks up this step's last successful record in
this pipeline's earlier runs (the ``pipeline_steps`` table, migration 0006). The step is
**skipped** - its recorded outputs reused - when

* the fingerprint equals that record's and the record's outputs still exist in the store (the
  version, the model, the deployment, the import, the labeling batch), or
* the fingerprint equals the record's ``settled`` one: a step that changes the project (``fix``,
  ``label``) finding the project in exactly the state it left.

Otherwise it **runs**. Gates are then checked on the outputs, whether the step ran or was
skipped; the first failing gate stops the run (status ``gate_failed``, exit status 2), later
steps are recorded as ``not_run``. An error stops it too (status ``error``, exit status 1).

Every run is recorded: one ``pipeline_runs`` row (its whole report as JSON) and one
``pipeline_steps`` row per step (status, fingerprint, inputs, outputs, gate results, timing),
written as each step ends, so a crash leaves the steps that finished. The report is also written
as ``run.json`` and ``report.html`` to the run's folder (``<home>/runs/<pipeline>-<run id>/``
unless another is given).
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select

from winnow.errors import InvalidInputError, NotFoundError, WinnowError
from winnow.pipelines.gates import GateSyntaxError, evaluate_gate
from winnow.pipelines.spec import Pipeline, PipelineError, StepSpec, resolve_refs
from winnow.pipelines.steps import KINDS, StepContext, check_value, step_fingerprint
from winnow.store import models as m
from winnow.store.db import Store

#: ``winnow run`` exit statuses.
EXIT_OK, EXIT_ERROR, EXIT_GATE = 0, 1, 2
_DONE = ("ran", "skipped", "failed")  # statuses whose record holds outputs (failed: a gate failed)

OnStep = Callable[[str, StepSpec, "StepRecord | None"], None]


@dataclass
class StepRecord:
    """One step of a run. Field names are part of the ``winnow run --json`` contract."""

    id: str
    uses: str
    status: str  # ran | skipped | failed | error | not_run
    fingerprint: str | None = None
    settled: str | None = None
    inputs: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, Any] | None = None
    gates: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    started_at: str | None = None
    seconds: float = 0.0
    reused_from: int | None = None  # the run whose outputs a skipped step reused

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class RunReport:
    """A pipeline run. Field names are part of the ``winnow run --json`` contract."""

    run: int
    pipeline: str
    project: str
    workspace: str
    file: str | None
    spec_sha256: str
    status: str  # ok | gate_failed | error
    started_at: str
    finished_at: str | None = None
    seconds: float = 0.0
    steps: list[StepRecord] = field(default_factory=list)
    failed_gate: dict[str, Any] | None = None  # {"step", "gate", "values", "actual"}
    error: str | None = None
    out_dir: str | None = None
    forced: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return {"ok": EXIT_OK, "gate_failed": EXIT_GATE}.get(self.status, EXIT_ERROR)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for s in self.steps:
            out[s.status] = out.get(s.status, 0) + 1
        return out

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["steps"] = [s.as_dict() for s in self.steps]
        return d | {"exit_code": self.exit_code, "counts": self.counts()}


def _iso(value: Any) -> str:
    return value.isoformat(timespec="seconds") + "Z"


def _ensure_project(store: Store, pipeline: Pipeline) -> None:
    from winnow.services.projects import create_project, show_project

    try:
        summary = show_project(store, pipeline.project, pipeline.workspace)
    except NotFoundError:
        create_project(store, pipeline.project, pipeline.task, pipeline.workspace)
        return
    if summary.task != pipeline.task:
        raise PipelineError(
            f"project {pipeline.project!r} is a {summary.task} project; the pipeline says task: {pipeline.task}"
        )


def _last_done(store: Store, workspace_id: int, pipeline: str, step: StepSpec, before_run: int) -> dict[str, Any] | None:
    """This step's newest record with outputs in an earlier run of the pipeline:
    ``{"run_id", "fingerprint", "settled", "outputs"}``."""
    with store.read() as session:
        found = session.execute(
            select(m.PipelineStep.run_id, m.PipelineStep.fingerprint, m.PipelineStep.settled, m.PipelineStep.outputs)
            .join(m.PipelineRun, m.PipelineRun.id == m.PipelineStep.run_id)
            .where(
                m.PipelineRun.workspace_id == workspace_id,
                m.PipelineRun.pipeline == pipeline,
                m.PipelineRun.id < before_run,
                m.PipelineStep.step == step.id,
                m.PipelineStep.kind == step.uses,
                m.PipelineStep.status.in_(_DONE),
            )
            .order_by(m.PipelineStep.id.desc())
            .limit(1)
        ).first()
        return None if found is None else dict(found._mapping)


def _resolve(step: StepSpec, outputs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    kind = KINDS[step.uses]
    params: dict[str, Any] = {}
    for key, value in step.with_.items():
        resolved = resolve_refs(value, outputs)
        try:
            params[key] = check_value(key, kind.params[key], resolved)
        except InvalidInputError as exc:
            raise PipelineError(f"with.{key} (from {value!r}): {exc}") from None
    return params


def _save_step(store: Store, run_id: int, position: int, rec: StepRecord) -> None:
    from datetime import datetime

    with store.write() as session:
        session.add(
            m.PipelineStep(
                run_id=run_id, position=position, step=rec.id, kind=rec.uses, status=rec.status,
                fingerprint=rec.fingerprint, settled=rec.settled, inputs=rec.inputs, outputs=rec.outputs,
                gates=rec.gates, error=rec.error, seconds=round(rec.seconds, 4),
                started_at=None if rec.started_at is None else datetime.fromisoformat(rec.started_at.rstrip("Z")),
            )
        )


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-.")[:80] or "pipeline"


def run_pipeline(
    store: Store,
    pipeline: Pipeline,
    *,
    force: bool = False,
    from_step: str | None = None,
    out_dir: Path | str | None = None,
    user: str | None = None,
    on_step: OnStep | None = None,
) -> RunReport:
    """Run ``pipeline`` and return its report (also recorded in the store and written to ``out_dir``).

    ``force``: run every step, cached or not. ``from_step``: run that step and every later one
    (earlier steps are cached as usual). The report's ``exit_code`` is what ``winnow run`` exits
    with: 0 ok, 1 error, 2 a gate failed.
    """
    from winnow.services.projects import get_workspace

    start_index = 0
    if from_step is not None:
        start_index = next((i for i, s in enumerate(pipeline.steps) if s.id == from_step), -1)
        if start_index < 0:
            pipeline.step(from_step)  # raises, naming the steps
    _ensure_project(store, pipeline)
    started = time.perf_counter()
    with store.write() as session:
        ws = get_workspace(session, pipeline.workspace, create=True)
        row = m.PipelineRun(
            workspace_id=ws.id, pipeline=pipeline.name, project=pipeline.project,
            file=None if pipeline.file is None else str(pipeline.file), spec_sha256=pipeline.sha256,
            status="running", report={}, created_by=user,
        )
        session.add(row)
        session.flush()
        run_id, workspace_id, started_at = row.id, ws.id, row.started_at
    report = RunReport(
        run=run_id, pipeline=pipeline.name, project=pipeline.project, workspace=pipeline.workspace,
        file=None if pipeline.file is None else str(pipeline.file), spec_sha256=pipeline.sha256,
        status="running", started_at=_iso(started_at),
        forced=[s.id for i, s in enumerate(pipeline.steps) if force or (from_step is not None and i >= start_index)],
    )
    outputs: dict[str, dict[str, Any]] = {}
    shared: dict[str, Any] = {}
    pending: BaseException | None = None
    try:
        for index, step in enumerate(pipeline.steps):
            if report.status != "running":
                rec = StepRecord(step.id, step.uses, "not_run")
                report.steps.append(rec)
                _save_step(store, run_id, step.position, rec)
                if on_step is not None:
                    on_step("end", step, rec)
                continue
            if on_step is not None:
                on_step("start", step, None)
            rec = _run_step(store, pipeline, step, outputs, shared, workspace_id, run_id, step.id in report.forced)
            report.steps.append(rec)
            _save_step(store, run_id, step.position, rec)
            if rec.outputs is not None:
                outputs[step.id] = rec.outputs
            if rec.status == "error":
                report.status, report.error = "error", f"step {step.id!r} ({step.uses}): {rec.error}"
                pending = shared.pop("exception", None)
            elif rec.status == "failed":
                bad = next(g for g in rec.gates if not g["passed"])
                report.status = "gate_failed"
                report.failed_gate = {"step": step.id} | bad
            if on_step is not None:
                on_step("end", step, rec)
        if report.status == "running":
            report.status = "ok"
    except BaseException as exc:  # interrupted (Ctrl-C) or a bug in the runner: still record the run
        report.status, report.error = "error", f"{type(exc).__name__}: {exc}"
        raise
    finally:
        report.seconds = round(time.perf_counter() - started, 3)
        _finish(store, report, out_dir)
    if pending is not None and not isinstance(pending, WinnowError):
        raise pending
    return report


def _run_step(
    store: Store,
    pipeline: Pipeline,
    step: StepSpec,
    outputs: dict[str, dict[str, Any]],
    shared: dict[str, Any],
    workspace_id: int,
    run_id: int,
    forced: bool,
) -> StepRecord:
    kind = KINDS[step.uses]
    t0 = time.perf_counter()
    rec = StepRecord(step.id, step.uses, "ran", started_at=_iso(m.utcnow()))
    try:
        params = _resolve(step, outputs)
        ctx = StepContext(
            store=store, project=pipeline.project, workspace=pipeline.workspace, task=pipeline.task,
            base_dir=pipeline.base_dir, step=step.id, params=params, shared=shared,
        )
        rec.inputs = kind.inputs(ctx)
        rec.fingerprint = step_fingerprint(kind.name, rec.inputs)
        prev = None if forced else _last_done(store, workspace_id, pipeline.name, step, run_id)
        if prev is not None and (
            rec.fingerprint == prev["settled"]
            or (rec.fingerprint == prev["fingerprint"] and kind.still_valid(ctx, prev["outputs"] or {}))
        ):
            rec.status, rec.outputs, rec.settled = "skipped", prev["outputs"], prev["settled"]
            rec.reused_from = prev["run_id"]
        else:
            try:
                rec.outputs = kind.run(ctx)
            finally:
                if kind.changes_project:
                    ctx.forget_state()
            if kind.settles:
                rec.settled = step_fingerprint(kind.name, kind.inputs(ctx))
        env = kind.gate_env(rec.outputs or {}, pipeline.task)
        for gate in step.gates:
            result = evaluate_gate(gate, env).as_dict()
            rec.gates.append(result)
            if not result["passed"]:
                rec.status = "failed"
                break
    except GateSyntaxError as exc:
        rec.status, rec.error = "error", f"gate: {exc}"
    except Exception as exc:  # noqa: BLE001 - recorded; the runner re-raises what is not a WinnowError
        rec.status, rec.error = "error", str(exc) if isinstance(exc, WinnowError) else f"{type(exc).__name__}: {exc}"
        shared["exception"] = exc
    rec.seconds = round(time.perf_counter() - t0, 4)
    return rec


def _finish(store: Store, report: RunReport, out_dir: Path | str | None) -> None:
    folder = Path(out_dir) if out_dir is not None else store.home / "runs" / f"{_safe_name(report.pipeline)}-{report.run}"
    report.out_dir = str(folder.resolve())
    now = m.utcnow()
    report.finished_at = _iso(now)
    try:
        write_report(report, folder)
    except OSError as exc:
        report.error = (report.error + "; " if report.error else "") + f"could not write the report to {folder}: {exc}"
        report.out_dir = None
    with store.write() as session:
        row = session.get(m.PipelineRun, report.run)
        if row is not None:
            row.status = report.status
            row.finished_at = now
            row.seconds = report.seconds
            row.report = json.loads(json.dumps(report.as_dict(), default=str))


def write_report(report: RunReport, folder: Path) -> None:
    """``run.json`` and ``report.html`` of ``report`` in ``folder`` (each written atomically)."""
    from winnow.pipelines.report import render_html

    folder.mkdir(parents=True, exist_ok=True)
    for name, text in (
        ("run.json", json.dumps(report.as_dict(), indent=2, ensure_ascii=False, default=str) + "\n"),
        ("report.html", render_html(report.as_dict())),
    ):
        tmp = folder / f".{name}.tmp"
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, folder / name)


# ----------------------------------------------------------------------------- the record


def list_runs(store: Store, *, workspace: str, pipeline: str | None = None, limit: int = 20) -> list[dict[str, Any]]:
    """The newest runs (of ``pipeline``, or of every pipeline), newest first: one summary each."""
    from winnow.services.projects import get_workspace

    with store.read() as session:
        try:
            ws = get_workspace(session, workspace)
        except NotFoundError:
            return []
        q = select(m.PipelineRun).where(m.PipelineRun.workspace_id == ws.id)
        if pipeline is not None:
            q = q.where(m.PipelineRun.pipeline == pipeline)
        rows = session.scalars(q.order_by(m.PipelineRun.id.desc()).limit(max(1, int(limit))))
        return [
            {
                "run": r.id, "pipeline": r.pipeline, "project": r.project, "status": r.status,
                "started_at": _iso(r.started_at), "seconds": r.seconds, "file": r.file,
                "counts": (r.report or {}).get("counts", {}), "failed_gate": (r.report or {}).get("failed_gate"),
            }
            for r in rows
        ]


def show_run(store: Store, run_id: int, *, workspace: str) -> dict[str, Any]:
    """A run's whole report (the ``winnow run --json`` document)."""
    from winnow.services.projects import get_workspace

    with store.read() as session:
        ws = get_workspace(session, workspace)
        row = session.get(m.PipelineRun, int(run_id))
        if row is None or row.workspace_id != ws.id:
            raise NotFoundError(f"workspace {workspace!r} has no pipeline run {run_id}")
        if row.report:
            return dict(row.report)
        steps = session.scalars(select(m.PipelineStep).where(m.PipelineStep.run_id == row.id).order_by(m.PipelineStep.position))
        return {  # a run that never finished (killed): what its steps recorded
            "run": row.id, "pipeline": row.pipeline, "project": row.project, "workspace": workspace, "file": row.file,
            "status": row.status, "started_at": _iso(row.started_at),
            "steps": [
                {"id": s.step, "uses": s.kind, "status": s.status, "fingerprint": s.fingerprint, "outputs": s.outputs,
                 "gates": s.gates, "error": s.error, "seconds": s.seconds}
                for s in steps
            ],
        }
