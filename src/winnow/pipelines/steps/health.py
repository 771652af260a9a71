"""The ``check`` and ``fix`` steps: the health checks (with gates on their counts and rates) and
the safe automatic fixes."""

from __future__ import annotations

from typing import Any

from winnow.errors import InvalidInputError
from winnow.pipelines.gates import GateEnv, GateSyntaxError
from winnow.pipelines.steps.base import Param, StepContext, StepKind, numbers, register


_CHECK_NAMES = {"images", "annotations", "findings", "errors", "warnings", "infos", "images_with_findings"}


def _checks_run(params: dict[str, Any], task: str) -> list[str]:
    """The checks a check step with ``params`` runs on a ``task`` project (as ``run_checks`` picks them)."""
    from winnow.quality.base import all_checks

    known = all_checks()
    only, skip = params.get("only") or [], params.get("skip") or []
    for cid in list(only) + list(skip):
        if cid not in known:
            raise InvalidInputError(f"unknown check {cid!r}; known checks: {', '.join(sorted(known))}")
    chosen = list(only) if only else list(known)
    return [c for c in chosen if c not in set(skip) and (known[c].tasks is None or task in known[c].tasks)]


def _check_arg(arg: str, params: dict[str, Any], task: str) -> None:
    from winnow.quality.base import all_checks

    known = all_checks()
    if arg not in known:
        raise GateSyntaxError(f"unknown check {arg!r}; known checks: {', '.join(sorted(known))}")
    if arg not in _checks_run(params, task):
        tasks = known[arg].tasks
        why = f"it applies to {', '.join(sorted(tasks))} projects, this one is {task}" if tasks is not None and task not in tasks else "'only'/'skip' leave it out"
        raise GateSyntaxError(f"check {arg!r} does not run in this step ({why})")


def _check_inputs(ctx: StepContext) -> dict[str, Any]:
    keep = ("only", "skip", "params")
    return {"project": [ctx.workspace, ctx.project], "state": ctx.state()["state"]} | {k: ctx.params.get(k) for k in keep}


def _check_run(ctx: StepContext) -> dict[str, Any]:
    from winnow.quality.engine import run_checks

    p = ctx.params
    report = run_checks(ctx.store, ctx.project, workspace=ctx.workspace, only=p.get("only"), skip=p.get("skip"), params=p.get("params"))
    summary = report.summary
    flagged: dict[str, set[str]] = {c: set() for c in report.checks}
    for f in report.findings:
        flagged.setdefault(f.check, set()).update(f.images)
    return {
        "images": summary["images"],
        "annotations": summary["annotations"],
        "findings": summary["findings"],
        "errors": summary["by_severity"]["error"],
        "warnings": summary["by_severity"]["warning"],
        "infos": summary["by_severity"]["info"],
        "images_with_findings": summary["images_with_findings"],
        "checks_run": list(report.checks),
        "by_check": dict(summary["by_check"]),
        "images_by_check": {c: len(v) for c, v in flagged.items()},
        "seconds_by_check": summary["timings"],
    }


def _check_env(out: dict[str, Any], task: str) -> GateEnv:
    ran = set(out.get("checks_run") or [])

    def _known(check: str) -> None:
        if check not in ran:
            raise GateSyntaxError(f"check {check!r} did not run in this step; it ran: {', '.join(sorted(ran)) or 'none'}")

    def count(check: str) -> int:
        _known(check)
        return int(out["by_check"].get(check, 0))

    def rate(check: str) -> float | None:
        _known(check)
        images = out.get("images") or 0
        return None if images == 0 else out["images_by_check"].get(check, 0) / images

    return GateEnv(numbers(out, _CHECK_NAMES), {"count": count, "rate": rate})


register(StepKind(
    name="check",
    help="Run the health checks; gates read the findings per check.",
    params={
        "only": Param("texts", help="run only these checks"),
        "skip": Param("texts", help="leave these checks out"),
        "params": Param("mapping", help="check parameters: {check: {name: value}}"),
    },
    outputs=("checks_run", "by_check", "images_by_check", "seconds_by_check", *sorted(_CHECK_NAMES)),
    inputs=_check_inputs,
    run=_check_run,
    gate_names=lambda task: set(_CHECK_NAMES),
    gate_functions={"count": _check_arg, "rate": _check_arg},
    gate_env=_check_env,
))


# ---------------------------------------------------------------------- fix

_FIX_NAMES = {"findings_applied", "findings_skipped", "images_removed", "annotations_removed", "boxes_clipped"}


def _fix_inputs(ctx: StepContext) -> dict[str, Any]:
    return {"project": [ctx.workspace, ctx.project], "state": ctx.state()["state"], "checks": ctx.params.get("checks")}


def _fix_run(ctx: StepContext) -> dict[str, Any]:
    from winnow.services.fixes import apply_fixes

    r = apply_fixes(ctx.store, ctx.project, workspace=ctx.workspace, checks=ctx.params.get("checks"))
    return {
        "change_id": r.change_id, "findings_applied": r.findings_applied, "findings_skipped": r.findings_skipped,
        "images_removed": len(r.images_removed), "annotations_removed": len(r.annotations_removed),
        "boxes_clipped": len(r.boxes_clipped),
    }


register(StepKind(
    name="fix",
    help="Apply the automatic fixes of the health checks (one undoable change).",
    params={"checks": Param("texts", help="the checks whose automatic suggestions to apply (default: winnow fix's)")},
    outputs=("change_id", *sorted(_FIX_NAMES)),
    inputs=_fix_inputs,
    run=_fix_run,
    still_valid=lambda ctx, out: False,  # done only when the project is in the state it left (settled)
    gate_names=lambda task: set(_FIX_NAMES),
    gate_env=lambda out, task: GateEnv(numbers(out, _FIX_NAMES)),
    settles=True,
    changes_project=True,
))
