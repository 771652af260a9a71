"""The in-process job runner: per-kind concurrency, workspace scoping, failures, cancelling."""

from __future__ import annotations

import threading

import pytest

from winnow.api.app import _status
from winnow.api.jobs import JobRunner
from winnow.errors import NotFoundError


@pytest.fixture
def runner():
    r = JobRunner({"train": 1, "evaluate": 2}, status_of=_status)
    yield r
    r.close()


def blocked(gate: threading.Event, started: list, value):
    def work(job):
        started.append(job.id)
        job.report(0, 2)
        assert gate.wait(10)
        job.report(2, 2)
        return value

    return work


def test_one_training_at_a_time_the_next_waits_queued(runner):
    gate, started = threading.Event(), []
    a = runner.submit("train", blocked(gate, started, "a"), workspace="acme", user="u", project="p")
    b = runner.submit("train", blocked(gate, started, "b"), workspace="acme", user="u", project="p")
    while not started:
        threading.Event().wait(0.01)
    threading.Event().wait(0.3)
    assert started == [a.id] and runner.get(a.id, "acme").status == "running" and b.status == "queued"
    gate.set()
    assert runner.wait(a.id, "acme", 10).result == "a" and runner.wait(b.id, "acme", 10).result == "b"
    assert a.status == b.status == "succeeded" and a.progress == {"done": 2, "total": 2, "fraction": 1.0}
    assert [j.id for j in runner.list("acme")] == [b.id, a.id]


def test_jobs_belong_to_their_workspace(runner):
    job = runner.submit("evaluate", lambda j: {"ok": True}, workspace="acme", user="u")
    assert runner.wait(job.id, "acme", 10).result == {"ok": True}
    with pytest.raises(NotFoundError):
        runner.get(job.id, "other")
    with pytest.raises(NotFoundError):
        runner.cancel(job.id, "other")
    assert runner.list("other") == []


def test_a_failure_is_the_jobs_error_with_the_status_a_request_would_get(runner):
    def work(job):
        raise NotFoundError("no version 'v9'")

    job = runner.wait(runner.submit("train", work, workspace="acme", user="u").id, "acme", 10)
    assert job.status == "failed" and job.error == {"error": "no version 'v9'", "type": "NotFoundError", "status": 404}
    crash = runner.wait(runner.submit("train", lambda j: 1 / 0, workspace="acme", user="u").id, "acme", 10)
    assert crash.error["status"] == 500 and crash.error["type"] == "ZeroDivisionError"


def test_cancel_a_queued_job_and_a_running_one(runner):
    gate, started = threading.Event(), []
    running = runner.submit("train", blocked(gate, started, "a"), workspace="acme", user="u")
    queued = runner.submit("train", blocked(gate, started, "b"), workspace="acme", user="u")
    runner.cancel(queued.id, "acme")
    runner.cancel(running.id, "acme")
    gate.set()
    assert runner.wait(running.id, "acme", 10).status == "cancelled", "stopped at its next progress report"
    assert runner.wait(queued.id, "acme", 10).status == "cancelled" and queued.started_at is None
    assert queued.id not in started


def test_limits_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("WINNOW_MAX_TRAINING_JOBS", "3")
    assert JobRunner.from_env().limits["train"] == 3
    monkeypatch.setenv("WINNOW_MAX_TRAINING_JOBS", "0")
    with pytest.raises(ValueError, match="at least 1"):
        JobRunner.from_env()
