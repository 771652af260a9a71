"""Background jobs of the API server: long work (training, slow evaluations) runs on a thread of
its own while the request answers ``202`` with the job; ``GET /api/v1/jobs/{id}`` follows it.

A small in-process runner, on purpose: one server process, no broker, nothing to install.
What it promises and what it does not:

* a job belongs to the workspace of the key that started it; any key of that workspace can read
  it, a key of another workspace gets 404 (as for projects);
* at most ``limit`` jobs of one kind run at a time (training: ``WINNOW_MAX_TRAINING_JOBS``,
  default 1; evaluation: ``WINNOW_MAX_EVALUATION_JOBS``, default 2); the others wait, ``queued``,
  in the order they came;
* a job can be cancelled: a queued one never starts, a running one stops when its work next
  asks (training asks after every epoch; the model is then marked ``failed``);
* jobs live in memory: a restart forgets them (a model whose training was cut short stays
  ``training``/``failed`` in the registry and trains again when asked). The newest
  ``WINNOW_JOBS_KEPT`` (default 1000) finished jobs are kept.

States: ``queued`` -> ``running`` -> ``succeeded`` | ``failed`` | ``cancelled``.
"""

from __future__ import annotations

import os
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from winnow.errors import InvalidInputError, NotFoundError, WinnowError

FINISHED = ("succeeded", "failed", "cancelled")
DEFAULT_LIMITS = {"train": 1, "evaluate": 2}


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


class Cancelled(WinnowError):
    """The job was cancelled while it ran."""


@dataclass
class Job:
    """One background job. ``as_dict`` is the ``/jobs/{id}`` document."""

    id: str
    kind: str
    workspace: str
    project: str | None
    created_by: str
    params: dict[str, Any] = field(default_factory=dict)
    status: str = "queued"
    progress: dict[str, Any] = field(default_factory=dict)
    log: list[dict[str, Any]] = field(default_factory=list)
    result: Any = None
    error: dict[str, Any] | None = None
    created_at: str = field(default_factory=_now)
    started_at: str | None = None
    finished_at: str | None = None
    cancel_requested: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    # ------------------------------------------------------------------ called by the work

    def report(self, done: int, total: int, **extra: Any) -> None:
        """Progress: ``done`` of ``total`` units (training: batches), plus any extra facts."""
        with self._lock:
            self.progress = {"done": int(done), "total": int(total), "fraction": round(done / total, 4) if total else None} | extra
        if self.cancel_requested:
            raise Cancelled(f"job {self.id} was cancelled")

    def append_log(self, entry: dict[str, Any], keep: int = 200) -> None:
        with self._lock:
            self.log.append(entry)
            del self.log[:-keep]

    # ------------------------------------------------------------------ read by the API

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    def as_dict(self) -> dict[str, Any]:
        with self._lock:
            return {
                "id": self.id,
                "kind": self.kind,
                "project": self.project,
                "status": self.status,
                "progress": dict(self.progress),
                "params": dict(self.params),
                "created_by": self.created_by,
                "created_at": self.created_at,
                "started_at": self.started_at,
                "finished_at": self.finished_at,
                "cancel_requested": self.cancel_requested,
                "log": list(self.log),
                "result": self.result,
                "error": self.error,
            }


Work = Callable[[Job], Any]


class JobRunner:
    """Runs :class:`Job` work on threads, ``limits[kind]`` at a time per kind."""

    def __init__(self, limits: dict[str, int] | None = None, *, keep: int = 1000, status_of: Callable[[Exception], int] | None = None):
        self.limits = DEFAULT_LIMITS | dict(limits or {})
        for kind, n in self.limits.items():
            if n < 1:
                raise ValueError(f"at least one {kind} job must be allowed to run, got {n}")
        self.keep = keep
        self.status_of = status_of or (lambda exc: 500)
        self._jobs: dict[str, Job] = {}
        self._slots = {kind: threading.BoundedSemaphore(n) for kind, n in self.limits.items()}
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._closed = False

    @classmethod
    def from_env(cls, **kw: Any) -> JobRunner:
        def count(env: str, default: int) -> int:
            text = os.environ.get(env, str(default))
            try:
                value = int(text)
            except ValueError:
                raise ValueError(f"{env} must be a whole number, got {text!r}") from None
            if value < 1:
                raise ValueError(f"{env} must be at least 1, got {value}")
            return value

        return cls(
            {"train": count("WINNOW_MAX_TRAINING_JOBS", 1), "evaluate": count("WINNOW_MAX_EVALUATION_JOBS", 2)},
            keep=count("WINNOW_JOBS_KEPT", 1000),
            **kw,
        )

    def submit(
        self, kind: str, work: Work, *, workspace: str, user: str, project: str | None = None, params: dict[str, Any] | None = None
    ) -> Job:
        """Queue ``work(job)``; its return value (JSON-able) becomes the job's ``result``."""
        if kind not in self._slots:
            raise InvalidInputError(f"unknown job kind {kind!r}")
        job = Job(secrets.token_hex(8), kind, workspace, project, user, dict(params or {}))
        with self._lock:
            if self._closed:
                raise InvalidInputError("the server is shutting down; try again")
            self._jobs[job.id] = job
            self._forget_old()
            thread = threading.Thread(target=self._run, args=(job, work), name=f"winnow-job-{job.id}", daemon=True)
            self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()
        return job

    def _run(self, job: Job, work: Work) -> None:
        slot = self._slots[job.kind]
        while not slot.acquire(timeout=0.5):
            if job.cancel_requested or self._closed:
                self._finish(job, "cancelled", error={"error": "cancelled before it started", "type": "Cancelled", "status": 409})
                return
        try:
            if job.cancel_requested or self._closed:
                self._finish(job, "cancelled", error={"error": "cancelled before it started", "type": "Cancelled", "status": 409})
                return
            with job._lock:
                job.status, job.started_at = "running", _now()
            try:
                result = work(job)
            except BaseException as exc:  # noqa: BLE001 - every failure is the job's result
                if job.cancel_requested:
                    self._finish(job, "cancelled", error={"error": f"cancelled: {exc}", "type": "Cancelled", "status": 409})
                else:
                    status = self.status_of(exc) if isinstance(exc, Exception) else 500
                    message = str(exc) if isinstance(exc, WinnowError) else f"{type(exc).__name__}: {exc}"
                    self._finish(job, "failed", error={"error": message, "type": type(exc).__name__, "status": status})
                return
            self._finish(job, "succeeded", result=result)
        finally:
            slot.release()

    def _finish(self, job: Job, status: str, *, result: Any = None, error: dict[str, Any] | None = None) -> None:
        with job._lock:
            job.status, job.result, job.error, job.finished_at = status, result, error, _now()

    def _forget_old(self) -> None:
        finished = [j for j in self._jobs.values() if j.finished]
        for job in finished[: max(0, len(finished) - self.keep)]:
            del self._jobs[job.id]

    # ------------------------------------------------------------------ lookups

    def get(self, job_id: str, workspace: str) -> Job:
        """The job, when it belongs to ``workspace`` (404 otherwise, like a job that never was)."""
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None or job.workspace != workspace:
            raise NotFoundError(f"no job {job_id!r} in workspace {workspace!r}")
        return job

    def list(self, workspace: str, *, project: str | None = None, kind: str | None = None, status: str | None = None) -> list[Job]:
        """The workspace's jobs, newest first."""
        with self._lock:
            jobs = [j for j in self._jobs.values() if j.workspace == workspace]
        jobs = [j for j in jobs if (project is None or j.project == project) and (kind is None or j.kind == kind)
                and (status is None or j.status == status)]
        return jobs[::-1]

    def cancel(self, job_id: str, workspace: str) -> Job:
        job = self.get(job_id, workspace)
        if not job.finished:
            job.cancel_requested = True
        return job

    def wait(self, job_id: str, workspace: str, timeout: float) -> Job:
        """The job once finished, or as it is after ``timeout`` seconds (tests, scripts)."""
        deadline = time.monotonic() + timeout
        job = self.get(job_id, workspace)
        while not job.finished and time.monotonic() < deadline:
            time.sleep(0.05)
        return job

    def close(self, timeout: float = 5.0) -> None:
        """Stop taking jobs, cancel the queued and running ones, give threads ``timeout`` s to end."""
        with self._lock:
            self._closed = True
            jobs = list(self._jobs.values())
            threads = list(self._threads)
        for job in jobs:
            if not job.finished:
                job.cancel_requested = True
        deadline = time.monotonic() + timeout
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))
