"""Running checks over a project and ranking what they find.

``run_checks`` builds one :class:`~winnow.quality.view.ProjectView` (so facts are computed once
for every check), runs each selected check with its parameters, scores each finding's impact
and returns them worst first in a :class:`CheckReport`.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from winnow.config import DEFAULT_WORKSPACE
from winnow.errors import InvalidInputError
from winnow.quality.base import Finding, all_checks, impact
from winnow.quality.view import ProgressFn, ProjectView
from winnow.store.db import Store


@dataclass
class CheckReport:
    """``{"summary": ..., "findings": [...]}`` - the ``winnow check --json`` document."""

    project: str
    images: int
    annotations: int
    checks: list[str]
    findings: list[Finding] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    notes: list[dict[str, str]] = field(default_factory=list)

    @property
    def summary(self) -> dict[str, Any]:
        by_check = Counter(f.check for f in self.findings)
        by_severity = Counter(f.severity for f in self.findings)
        flagged = {name for f in self.findings for name in f.images}
        return {
            "project": self.project,
            "images": self.images,
            "annotations": self.annotations,
            "checks_run": self.checks,
            "findings": len(self.findings),
            "by_severity": {s: by_severity.get(s, 0) for s in ("error", "warning", "info")},
            "by_check": {c: by_check.get(c, 0) for c in self.checks},
            "images_with_findings": len(flagged),
            "seconds": round(self.seconds, 3),
            "timings": {k: round(v, 4) for k, v in self.timings.items()},
            "notes": list(self.notes),
        }

    def as_dict(self) -> dict[str, Any]:
        return {"summary": self.summary, "findings": [f.as_dict() for f in self.findings]}


def parse_params(items: list[str] | None) -> dict[str, dict[str, Any]]:
    """``["near_duplicate.max_distance=8", ...]`` -> ``{"near_duplicate": {"max_distance": 8}}``.

    Values are read as JSON when they parse (numbers, booleans, lists), else kept as text.
    """
    out: dict[str, dict[str, Any]] = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        check_id, dot, name = key.partition(".")
        if not sep or not dot or not check_id or not name:
            raise InvalidInputError(f"parameter {item!r} must look like CHECK.NAME=VALUE")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        out.setdefault(check_id.strip(), {})[name.strip()] = value
    return out


def _select(only: list[str] | None, skip: list[str] | None) -> list[str]:
    known = all_checks()
    for cid in (only or []) + (skip or []):
        if cid not in known:
            raise InvalidInputError(f"unknown check {cid!r}; known checks: {', '.join(sorted(known))}")
    chosen = list(only) if only else list(known)
    return [c for c in chosen if c not in set(skip or [])]


def run_checks(
    store: Store,
    project: str,
    *,
    workspace: str = DEFAULT_WORKSPACE,
    only: list[str] | None = None,
    skip: list[str] | None = None,
    params: dict[str, dict[str, Any]] | None = None,
    view: ProjectView | None = None,
    progress: ProgressFn | None = None,
) -> CheckReport:
    """Run the selected checks (all by default) on a project; findings come back worst first."""
    started = time.perf_counter()
    ids = _select(only, skip)
    params = params or {}
    checks = all_checks()
    for cid, given in params.items():
        if cid not in checks:
            raise InvalidInputError(f"parameter for unknown check {cid!r}")
        unknown = set(given) - set(checks[cid].params)
        if unknown:
            raise InvalidInputError(
                f"check {cid!r} has no parameter {', '.join(sorted(unknown))}; "
                f"it takes: {', '.join(sorted(checks[cid].params)) or 'none'}"
            )
    view = view or ProjectView(store, project, workspace=workspace, progress=progress)
    task = view.task.value
    ran: list[str] = []
    findings: list[Finding] = []
    timings: dict[str, float] = {}
    for cid in ids:
        check = checks[cid]()
        if check.tasks is not None and task not in check.tasks:
            continue
        t0 = time.perf_counter()
        merged = dict(check.params) | params.get(cid, {})
        findings.extend(check.run(view, **merged))
        timings[cid] = time.perf_counter() - t0
        ran.append(cid)
    total = len(view)
    for f in findings:
        f.impact = impact(f, total)
    findings.sort(key=lambda f: (-f.impact, f.check, f.images[:1]))
    return CheckReport(
        project=project,
        images=total,
        annotations=view.dataset.annotation_count,
        checks=ran,
        findings=findings,
        timings=timings,
        seconds=time.perf_counter() - started,
        notes=list(view.notes),
    )
