"""The capture writer: one thread that stores the images the predict endpoint captures.

SQLite has one writer, and a capture is an import transaction plus a durable blob write; done in
each request's thread, concurrent captures queue on the write lock one by one. The writer takes
every capture that queued up while it wrote the previous ones and stores them in one
transaction (:func:`~winnow.services.deploy.capture_many`), so the cost of a commit is shared.
The request still waits for its own capture's result, so the response says what was stored.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import defaultdict
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from winnow.services.deploy import CaptureRequest, CaptureResult, capture_many

log = logging.getLogger("winnow.serve")

#: Most captures stored in one transaction.
MAX_BATCH = 64


@dataclass
class _Job:
    project: str
    workspace: str
    max_per_day: int | None
    user: str | None
    request: CaptureRequest
    future: Future = field(default_factory=Future)


@dataclass
class WriterStats:
    captures: int = 0
    transactions: int = 0
    largest_batch: int = 0

    def as_dict(self) -> dict[str, Any]:
        mean = self.captures / self.transactions if self.transactions else 0.0
        return {"captures": self.captures, "transactions": self.transactions, "mean_batch": round(mean, 2), "largest_batch": self.largest_batch}


class CaptureWriter:
    """Queue captures with :meth:`submit`; one thread writes them in batches."""

    def __init__(self, store: Any, *, max_batch: int = MAX_BATCH):
        self.store = store
        self.max_batch = max_batch
        self.stats = WriterStats()
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="winnow-capture", daemon=True)
        self._closed = False
        self._thread.start()

    def submit(
        self, project: str, workspace: str, request: CaptureRequest, *, max_per_day: int | None = None, user: str | None = None
    ) -> Future:
        """A future of the capture's :class:`CaptureResult` (or the exception that refused it)."""
        if self._closed:
            raise RuntimeError("the capture writer is closed")
        job = _Job(project, workspace, max_per_day, user, request)
        self._queue.put(job)
        return job.future

    def close(self, timeout: float = 30.0) -> None:
        """Store what is queued, then stop."""
        if not self._closed:
            self._closed = True
            self._queue.put(None)
            self._thread.join(timeout)

    def _run(self) -> None:
        stop = False
        while not stop:
            job = self._queue.get()
            if job is None:
                break
            jobs = [job]
            while len(jobs) < self.max_batch:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stop = True
                    break
                jobs.append(more)
            groups: dict[tuple[str, str, int | None], list[_Job]] = defaultdict(list)
            for j in jobs:
                groups[(j.workspace, j.project, j.max_per_day)].append(j)
            for (workspace, project, max_per_day), group in groups.items():
                self._write(workspace, project, max_per_day, group)

    def _write(self, workspace: str, project: str, max_per_day: int | None, group: list[_Job]) -> None:
        try:
            results = capture_many(
                self.store, project, [j.request for j in group], workspace=workspace, max_per_day=max_per_day, user=group[0].user,
            )
        except Exception as exc:  # noqa: BLE001 - the project vanished, the disk is full...: every waiting request hears it
            log.exception("capture batch failed for project %s", project)
            results = [exc] * len(group)
        self.stats.captures += len(group)
        self.stats.transactions += 1
        self.stats.largest_batch = max(self.stats.largest_batch, len(group))
        for j, result in zip(group, results, strict=True):
            if isinstance(result, CaptureResult):
                j.future.set_result(result)
            else:
                j.future.set_exception(result)
