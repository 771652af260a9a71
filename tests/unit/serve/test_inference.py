"""The inference pool without HTTP: batching, hot swap (loaded beside the old model, requests
pinned to the model they were accepted on), the deployment re-check, the bounded queue, close."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest

from winnow.errors import NotFoundError
from winnow.serve.inference import InferencePool, NotDeployedError, PoolBusy, PoolConfig


@dataclass
class Active:
    project_id: int
    deployment: int
    model: str
    name: str


class FakeModel:
    """Answers ``(model name, image)`` for each image; records its batch sizes."""

    def __init__(self, name: str, delay: float = 0.0, gate: threading.Event | None = None):
        self.name, self.delay, self.gate, self.batches = name, delay, gate, []

    def predict_arrays(self, images):
        if self.gate is not None:
            assert self.gate.wait(10)
        time.sleep(self.delay)
        self.batches.append(len(images))
        return [(self.name, im) for im in images]


class World:
    """A fake store: which model is deployed, and the models the loader hands out."""

    def __init__(self, **models: FakeModel):
        self.models = models
        self.active: Active | None = None
        self.asked = 0
        self.loads: list[str] = []
        self.load_gate: dict[str, threading.Event] = {}

    def deploy(self, model: str) -> None:
        self.active = Active(1, (self.active.deployment + 1) if self.active else 1, model, model)

    def active_fn(self, store, workspace, project):
        if project != "p":
            raise NotFoundError(f"project {project!r} does not exist")
        self.asked += 1
        return self.active

    def loader(self, store, workspace, model):
        gate = self.load_gate.get(model)
        if gate is not None:
            assert gate.wait(10)
        self.loads.append(model)
        return self.models[model]


def pool_for(world: World, **config) -> InferencePool:
    return InferencePool(PoolConfig(**({"max_wait_ms": 20, "check_interval": 0.0} | config)), active=world.active_fn, loader=world.loader)


def test_concurrent_requests_are_batched_and_each_gets_its_own_answer():
    world = World(a=FakeModel("a", delay=0.002))
    world.deploy("a")
    pool = pool_for(world, max_batch=8)
    try:
        with ThreadPoolExecutor(24) as ex:
            results = list(ex.map(lambda i: pool.predict(None, "p", i), range(48)))
        assert [r[1] for r in results] == [("a", i) for i in range(48)]
        assert all(r[0].model == "a" for r in results)
        stats = pool.stats(1)
        assert stats["requests"] == 48 and sum(world.models["a"].batches) == 48
        assert 1 < stats["max_batch"] <= 8 and stats["batches"] < 48 and max(world.models["a"].batches) <= 8
        assert stats["loads"] == 1 and stats["swaps"] == 0 and world.loads == ["a"], "loaded once"
    finally:
        pool.close()


def test_a_swap_loads_beside_the_old_model_and_requests_finish_on_the_model_they_were_accepted_on():
    gate = threading.Event()
    world = World(a=FakeModel("a", gate=gate), b=FakeModel("b"))
    world.deploy("a")
    pool = pool_for(world, max_batch=4, max_wait_ms=1)
    try:
        served_a = pool.model_for(None, "p")
        early = [pool.submit(served_a, i) for i in range(6)]  # A is stuck: these wait
        world.deploy("b")
        world.load_gate["b"] = threading.Event()
        loading = threading.Thread(target=pool.refresh, args=(None, "p"))
        loading.start()
        time.sleep(0.05)
        assert pool.model_for(None, "p") is served_a, "while B loads, requests keep going to A"
        world.load_gate["b"].set()
        loading.join(5)
        served_b = pool.model_for(None, "p")
        assert served_b.model == "b" and served_b.deployment == 2
        late = [pool.submit(served_b, i) for i in range(6)]
        gate.set()
        assert [f.result(5) for f in early] == [("a", i) for i in range(6)]
        assert [f.result(5) for f in late] == [("b", i) for i in range(6)]
        stats = pool.stats(1)
        assert stats["swaps"] == 1 and stats["loads"] == 2 and stats["failed"] == 0 and stats["model"] == "b"
    finally:
        gate.set()
        pool.close()


def test_a_stream_across_a_swap_has_no_failure_and_switches_once_per_client():
    world = World(a=FakeModel("a", delay=0.001), b=FakeModel("b", delay=0.001))
    world.deploy("a")
    pool = pool_for(world)
    stop = threading.Event()
    seen: list[list[str]] = [[] for _ in range(4)]

    def client(k):
        while not stop.is_set():
            served, (name, _) = pool.predict(None, "p", k)
            assert served.model == name
            seen[k].append(name)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(4)]
    try:
        for t in threads:
            t.start()
        time.sleep(0.1)
        world.deploy("b")  # another process deployed: noticed on the next check
        time.sleep(0.1)
    finally:
        stop.set()
        for t in threads:
            t.join(5)
        pool.close()
    for names in seen:
        assert names[0] == "a" and names[-1] == "b" and names == sorted(names)


def test_the_deployment_is_rechecked_at_most_every_interval():
    world = World(a=FakeModel("a"), b=FakeModel("b"))
    world.deploy("a")
    pool = pool_for(world, check_interval=0.3, max_wait_ms=0)
    try:
        assert pool.predict(None, "p", 0)[0].model == "a"
        asked = world.asked
        world.deploy("b")
        for _ in range(20):
            assert pool.predict(None, "p", 0)[0].model == "a", "cached for the interval"
        assert world.asked == asked, "no query while the cached deployment is fresh"
        time.sleep(0.35)
        assert pool.predict(None, "p", 0)[0].model == "b"
        world.active = None
        assert pool.refresh(None, "p") is None
        with pytest.raises(NotDeployedError):
            pool.model_for(None, "p")
        with pytest.raises(NotFoundError):
            pool.model_for(None, "other")
    finally:
        pool.close()


def test_a_full_queue_refuses_with_poolbusy_and_the_accepted_requests_still_finish():
    gate = threading.Event()
    world = World(a=FakeModel("a", gate=gate))
    world.deploy("a")
    pool = pool_for(world, max_batch=1, max_queue=3, max_wait_ms=0)
    try:
        served = pool.model_for(None, "p")
        accepted = []
        with pytest.raises(PoolBusy) as refused:
            for i in range(10):
                accepted.append(pool.submit(served, i))
        assert refused.value.retry_after >= 1
        assert 3 <= len(accepted) <= 4, "the queue's 3 plus the one the worker holds"
        assert pool.stats(1)["rejected"] == 1
        gate.set()
        assert [f.result(5) for f in accepted] == [("a", i) for i in range(len(accepted))]
    finally:
        gate.set()
        pool.close()


def test_close_stops_the_workers_and_fails_what_is_still_queued():
    gate = threading.Event()
    world = World(a=FakeModel("a", gate=gate))
    world.deploy("a")
    pool = pool_for(world, max_batch=1, max_wait_ms=0)
    served = pool.model_for(None, "p")
    futures = [pool.submit(served, i) for i in range(5)]
    time.sleep(0.05)
    closer = threading.Thread(target=pool.close)
    closer.start()
    time.sleep(0.05)
    gate.set()
    closer.join(10)
    assert not closer.is_alive() and pool.closed
    outcomes = [f.exception(5) for f in futures]
    assert outcomes[0] is None, "the batch running when close() came finishes"
    assert all(isinstance(e, PoolBusy) for e in outcomes[1:])
    with pytest.raises(PoolBusy):
        pool.submit(served, 9)
    with pytest.raises(PoolBusy):
        pool.model_for(None, "p")


def test_a_failing_model_fails_its_batch_only():
    class Broken(FakeModel):
        def predict_arrays(self, images):
            raise RuntimeError("onnxruntime fell over")

    world = World(a=Broken("a"))
    world.deploy("a")
    pool = pool_for(world)
    try:
        with pytest.raises(RuntimeError, match="fell over"):
            pool.predict(None, "p", 1)
        assert pool.stats(1)["failed"] == 1
        world.models["b"] = FakeModel("b")
        world.deploy("b")
        assert pool.predict(None, "p", 2)[1] == ("b", 2)
    finally:
        pool.close()


def test_config_from_the_environment(monkeypatch):
    monkeypatch.setenv("WINNOW_PREDICT_BATCH", "4")
    monkeypatch.setenv("WINNOW_PREDICT_QUEUE", "10")
    c = PoolConfig.from_env()
    assert (c.max_batch, c.max_queue, c.max_wait_ms) == (4, 10, 5.0)
    monkeypatch.setenv("WINNOW_PREDICT_BATCH", "0")
    with pytest.raises(ValueError):
        PoolConfig.from_env()
