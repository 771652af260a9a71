"""The inference pool: each project's active ONNX model, loaded once, fed in batches.

* **One lane per project** (keyed by project id): a bounded queue and one worker thread. A
  request is decoded in its own thread, then :meth:`InferencePool.submit` puts it on the lane's
  queue and returns a :class:`~concurrent.futures.Future`.
* **Batching**: the worker takes the first waiting request, then gathers more until it has
  ``max_batch`` or ``max_wait_ms`` has passed, and runs them with one
  ``LoadedModel.predict_arrays`` call. (winnow's ONNX exports have a static batch of one, so the
  images of a batch still run back to back inside onnxruntime; the batch saves the per-request
  hand-offs between threads, which is what a small CPU model spends most of its time on.)
* **Hot swap**: each request is pinned, when it is accepted, to the model that is live then (a
  :class:`Served`). A new deployment is loaded *beside* the old model, then the lane's pointer is
  swapped in one assignment; requests already accepted finish on the model they were pinned to,
  later ones get the new one; none fail. The old session is freed when its last request is done.
* **Noticing a deploy**: the pool re-reads the project's live deployment id at most every
  ``check_interval`` seconds (one small query), so ``winnow deploy`` run in another process is
  picked up within about a second; the API's deploy endpoint calls :meth:`InferencePool.refresh`
  so a deploy through this server swaps at once.
* **Bounded queue**: when a lane already holds ``max_queue`` requests, :meth:`submit` raises
  :class:`PoolBusy` (the API answers 503 with ``Retry-After``: the server, not the caller, is over
  capacity; the per-key rate limit answers 429).

Nothing here imports onnxruntime or touches the database at import time.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from winnow.config import DEFAULT_WORKSPACE
from winnow.errors import ConflictError, WinnowError


class PoolBusy(WinnowError):
    """The project's queue is full (or the pool is closing); retry after ``retry_after`` seconds."""

    def __init__(self, message: str, retry_after: float = 1.0):
        super().__init__(message)
        self.retry_after = retry_after


class NotDeployedError(ConflictError):
    """The project has no deployed model (409)."""


@dataclass
class PoolConfig:
    """How the pool batches and bounds work. From the environment with :meth:`from_env`:
    ``WINNOW_PREDICT_BATCH`` (16), ``WINNOW_PREDICT_WAIT_MS`` (5), ``WINNOW_PREDICT_QUEUE`` (256),
    ``WINNOW_PREDICT_CHECK_S`` (1.0)."""

    max_batch: int = 16
    max_wait_ms: float = 5.0
    max_queue: int = 256
    check_interval: float = 1.0

    @classmethod
    def from_env(cls) -> PoolConfig:
        env = os.environ.get
        try:
            return cls(
                max_batch=int(env("WINNOW_PREDICT_BATCH", 16)),
                max_wait_ms=float(env("WINNOW_PREDICT_WAIT_MS", 5)),
                max_queue=int(env("WINNOW_PREDICT_QUEUE", 256)),
                check_interval=float(env("WINNOW_PREDICT_CHECK_S", 1.0)),
            ).checked()
        except ValueError as exc:
            raise ValueError(f"WINNOW_PREDICT_*: {exc}") from None

    def checked(self) -> PoolConfig:
        if self.max_batch < 1 or self.max_queue < 1 or self.max_wait_ms < 0 or self.check_interval < 0:
            raise ValueError(f"invalid inference pool settings: {self}")
        return self


@dataclass(frozen=True)
class Served:
    """A loaded model as the pool serves it: ``loaded`` has ``predict_arrays(images)``,
    ``classes`` and ``task`` (a :class:`~winnow.services.training.LoadedModel`)."""

    project_id: int
    deployment: int
    model: str  # model id
    name: str
    loaded: Any


@dataclass
class _Route:
    project_id: int
    deployment: int | None
    checked_at: float


@dataclass
class _Item:
    served: Served
    image: Any
    future: Future
    queued_at: float


@dataclass
class _Lane:
    project_id: int
    queue: queue.Queue
    served: Served | None = None
    load_lock: threading.Lock = field(default_factory=threading.Lock)
    thread: threading.Thread | None = None
    stats_lock: threading.Lock = field(default_factory=threading.Lock)
    requests: int = 0
    batches: int = 0
    batch_sizes: Counter = field(default_factory=Counter)
    rejected: int = 0
    failed: int = 0
    loads: int = 0
    swaps: int = 0
    wait_seconds: float = 0.0
    run_seconds: float = 0.0


def _default_active(store: Any, workspace: str, project: str):
    from winnow.services.deploy import active_model

    return active_model(store, project, workspace)


def _default_loader(store: Any, workspace: str, model: str):
    from winnow.services.training import load_model

    return load_model(store, model, engine="onnx", workspace=workspace)


class InferencePool:
    """Every project's active model, batched and hot-swapped (see the module's docstring).

    ``active(store, workspace, project)`` returns the live deployment (an object with
    ``project_id``, ``deployment``, ``model``, ``name``) or ``None``, and ``loader(store,
    workspace, model_id)`` a loaded model; both default to winnow's services and are injectable
    for tests.
    """

    def __init__(
        self,
        config: PoolConfig | None = None,
        *,
        active: Callable[[Any, str, str], Any] | None = None,
        loader: Callable[[Any, str, str], Any] | None = None,
    ):
        self.config = (config or PoolConfig()).checked()
        self._active = active or _default_active
        self._loader = loader or _default_loader
        self._routes: dict[tuple[str, str], _Route] = {}
        self._lanes: dict[int, _Lane] = {}
        self._lock = threading.Lock()
        self._closed = threading.Event()

    # -- which model

    def model_for(self, store: Any, project: str, workspace: str = DEFAULT_WORKSPACE) -> Served:
        """The model to run the project's next request on, loading (or swapping to) its active
        model when the deployment changed. Raises :class:`NotDeployedError` when nothing is
        deployed, :class:`~winnow.errors.NotFoundError` for an unknown project."""
        if self._closed.is_set():
            raise PoolBusy("the inference server is shutting down")
        key = (workspace, project)
        now = time.monotonic()
        route = self._routes.get(key)
        active = None
        if route is None or now - route.checked_at >= self.config.check_interval:
            active = self._active(store, workspace, project)
            route = self._remember(key, active, now)
        if route.deployment is None:
            raise NotDeployedError(f"project {project!r} has no deployed model; deploy one with `winnow deploy MODEL`")
        lane = self._lane(route.project_id)
        served = lane.served
        if served is not None and served.deployment == route.deployment:
            return served
        # a new deployment: the first request to see it loads it; the others keep going on the
        # old model meanwhile (when there is one) instead of waiting
        if not lane.load_lock.acquire(blocking=served is None):
            return served  # type: ignore[return-value]
        try:
            served = lane.served
            if served is not None and served.deployment == route.deployment:
                return served
            if active is None or active.deployment != route.deployment:
                active = self._active(store, workspace, project)
                route = self._remember(key, active, time.monotonic())
                if active is None:
                    raise NotDeployedError(f"project {project!r} has no deployed model; deploy one with `winnow deploy MODEL`")
                if served is not None and served.deployment == active.deployment:
                    return served
            return self._swap(store, workspace, lane, active)
        finally:
            lane.load_lock.release()

    def refresh(self, store: Any, project: str, workspace: str = DEFAULT_WORKSPACE) -> Served | None:
        """Re-read the project's deployment now and, when it changed and the project is being
        served, load the new model beside the old and swap (the API's deploy endpoint calls this
        so a deploy through the server is live when it answers)."""
        key = (workspace, project)
        active = self._active(store, workspace, project)
        route = self._remember(key, active, time.monotonic())
        lane = self._lanes.get(route.project_id)
        if active is None or lane is None:
            return None
        with lane.load_lock:
            if lane.served is not None and lane.served.deployment == active.deployment:
                return lane.served
            return self._swap(store, workspace, lane, active)

    def _remember(self, key: tuple[str, str], active: Any, now: float) -> _Route:
        if active is None:
            old = self._routes.get(key)
            # the project id is only needed to find a lane; with nothing deployed there is none to find
            route = _Route(old.project_id if old else -1, None, now)
        else:
            route = _Route(active.project_id, active.deployment, now)
        self._routes[key] = route
        return route

    def _swap(self, store: Any, workspace: str, lane: _Lane, active: Any) -> Served:
        loaded = self._loader(store, workspace, active.model)  # beside the old model, which keeps serving
        served = Served(lane.project_id, active.deployment, active.model, active.name, loaded)
        with lane.stats_lock:
            lane.loads += 1
            if lane.served is not None:
                lane.swaps += 1
        lane.served = served  # the swap: one reference assignment
        return served

    def _lane(self, project_id: int) -> _Lane:
        lane = self._lanes.get(project_id)
        if lane is not None:
            return lane
        with self._lock:
            lane = self._lanes.get(project_id)
            if lane is None:
                lane = _Lane(project_id, queue.Queue(maxsize=self.config.max_queue))
                lane.thread = threading.Thread(target=self._work, args=(lane,), name=f"winnow-infer-{project_id}", daemon=True)
                self._lanes[project_id] = lane
                lane.thread.start()
        return lane

    # -- running

    def submit(self, served: Served, image: Any) -> Future:
        """Queue one decoded RGB image for ``served``; the future gives its
        :class:`~winnow.train.base.Prediction` (boxes ``xyxy`` in the image's pixels). Raises
        :class:`PoolBusy` when the project's queue is full."""
        if self._closed.is_set():
            raise PoolBusy("the inference server is shutting down")
        lane = self._lane(served.project_id)
        future: Future = Future()
        try:
            lane.queue.put_nowait(_Item(served, image, future, time.monotonic()))
        except queue.Full:
            with lane.stats_lock:
                lane.rejected += 1
            raise PoolBusy(
                f"the inference queue of this project is full ({self.config.max_queue} waiting requests); retry shortly",
                retry_after=1.0,
            ) from None
        return future

    def predict(self, store: Any, project: str, image: Any, workspace: str = DEFAULT_WORKSPACE, timeout: float | None = None) -> tuple[Served, Any]:
        """Blocking convenience: ``(served, prediction)`` for one image."""
        served = self.model_for(store, project, workspace)
        return served, self.submit(served, image).result(timeout)

    def _gather(self, lane: _Lane) -> list[_Item]:
        try:
            first = lane.queue.get(timeout=0.2)
        except queue.Empty:
            return []
        batch = [first]
        deadline = time.monotonic() + self.config.max_wait_ms / 1000
        while len(batch) < self.config.max_batch:
            left = deadline - time.monotonic()
            try:
                batch.append(lane.queue.get(timeout=left) if left > 0 else lane.queue.get_nowait())
            except queue.Empty:
                break
        return batch

    def _work(self, lane: _Lane) -> None:
        while not self._closed.is_set():
            batch = self._gather(lane)
            if not batch:
                continue
            started = time.monotonic()
            # one run per model: a batch taken across a swap holds requests pinned to either
            groups: dict[int, list[_Item]] = {}
            for item in batch:
                groups.setdefault(id(item.served), []).append(item)
            for items in groups.values():
                if self._closed.is_set():
                    break
                self._run(items)
            with lane.stats_lock:
                lane.requests += len(batch)
                lane.batches += 1
                lane.batch_sizes[len(batch)] += 1
                lane.wait_seconds += sum(started - it.queued_at for it in batch)
                lane.run_seconds += time.monotonic() - started
                lane.failed += sum(1 for it in batch if it.future.done() and it.future.exception() is not None)
        self._drain(lane)

    @staticmethod
    def _run(items: list[_Item]) -> None:
        live = [it for it in items if it.future.set_running_or_notify_cancel()]
        if not live:
            return
        try:
            preds = live[0].served.loaded.predict_arrays([it.image for it in live])
        except BaseException as exc:  # noqa: BLE001 - every waiting request gets the error
            for it in live:
                it.future.set_exception(exc)
            return
        for it, pred in zip(live, preds, strict=True):
            it.future.set_result(pred)

    def _drain(self, lane: _Lane) -> None:
        while True:
            try:
                item = lane.queue.get_nowait()
            except queue.Empty:
                return
            if item.future.set_running_or_notify_cancel():
                item.future.set_exception(PoolBusy("the inference server is shutting down"))

    # -- facts and shutdown

    def stats(self, project_id: int | None = None) -> dict[str, Any] | None:
        """A lane's counters (``None`` when the project has not been served since the start):
        requests, batches, mean and largest batch, the batch-size histogram, queue depth,
        rejected (queue full) and failed requests, model loads and swaps, the served model, and
        the mean seconds a request waited in the queue and a batch took to run."""
        lanes = [self._lanes[project_id]] if project_id in self._lanes else [] if project_id is not None else list(self._lanes.values())
        if not lanes:
            return None
        out = []
        for lane in lanes:
            with lane.stats_lock:
                served = lane.served
                out.append({
                    "project_id": lane.project_id,
                    "model": served.model if served else None,
                    "deployment": served.deployment if served else None,
                    "requests": lane.requests,
                    "batches": lane.batches,
                    "mean_batch": round(lane.requests / lane.batches, 3) if lane.batches else 0.0,
                    "max_batch": max(lane.batch_sizes, default=0),
                    "batch_sizes": {str(k): v for k, v in sorted(lane.batch_sizes.items())},
                    "queued": lane.queue.qsize(),
                    "rejected": lane.rejected,
                    "failed": lane.failed,
                    "loads": lane.loads,
                    "swaps": lane.swaps,
                    "mean_wait_s": round(lane.wait_seconds / lane.requests, 6) if lane.requests else 0.0,
                    "mean_batch_run_s": round(lane.run_seconds / lane.batches, 6) if lane.batches else 0.0,
                    "config": {"max_batch": self.config.max_batch, "max_wait_ms": self.config.max_wait_ms, "max_queue": self.config.max_queue},
                })
        return out[0] if project_id is not None else {"lanes": out}

    def project_id(self, project: str, workspace: str = DEFAULT_WORKSPACE) -> int | None:
        route = self._routes.get((workspace, project))
        return None if route is None or route.project_id < 0 else route.project_id

    def close(self, timeout: float = 5.0) -> None:
        """Stop the workers: the batch running finishes; requests still queued fail with
        :class:`PoolBusy`."""
        self._closed.set()
        deadline = time.monotonic() + timeout
        for lane in list(self._lanes.values()):
            if lane.thread is not None:
                lane.thread.join(max(0.0, deadline - time.monotonic()))
            self._drain(lane)

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

