"""The capture writer stores what queued up in one transaction, answers each request with its
own result, and never lets one bad capture refuse the others."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import func, select

from tests.integration.api.test_auth_uploads import png
from winnow.serve.capture import CaptureWriter
from winnow.services.deploy import CaptureRequest, CaptureResult, capture_many
from winnow.services.projects import create_project
from winnow.store import models as m
from winnow.store.db import Store


@pytest.fixture
def store(tmp_path):
    s = Store.open(tmp_path / "home")
    create_project(s, "p", "classify")
    yield s
    s.close()


def images(store) -> int:
    with store.read() as session:
        return session.scalar(select(func.count()).select_from(m.Image))


def test_captures_queued_together_share_a_transaction_and_all_land(store):
    writer = CaptureWriter(store)
    gate = threading.Event()
    real = writer._write

    def slow_first(*args):  # hold the first batch until the others are queued behind it
        gate.wait(10)
        real(*args)

    writer._write = slow_first
    with ThreadPoolExecutor(8) as pool:
        futures = list(pool.map(lambda i: writer.submit("p", "default", CaptureRequest(png(i), [], {"camera": "n"}, "model-x")), range(40)))
        gate.set()
        results = [f.result(30) for f in futures]
    writer.close()
    assert all(isinstance(r, CaptureResult) and r.stored for r in results)
    assert len({r.image for r in results}) == 40 and images(store) == 40
    assert writer.stats.captures == 40 and writer.stats.transactions < 40 and writer.stats.largest_batch > 1


def test_the_same_frame_twice_in_a_batch_is_stored_once(store):
    data = png(7)
    results = capture_many(store, "p", [CaptureRequest(data, [], None, "m"), CaptureRequest(data, [], None, "m")])
    assert [r.stored for r in results] == [True, False] and results[0].image == results[1].image
    again = capture_many(store, "p", [CaptureRequest(data, [], None, "m")])[0]
    assert again.stored is False and again.image == results[0].image and images(store) == 1


def test_a_bad_capture_refuses_only_itself(store):
    truncated = png(3)[:80]
    results = capture_many(
        store, "p",
        [CaptureRequest(png(1), [], None, "m"), CaptureRequest(truncated, [], None, "m"), CaptureRequest(png(2), [], {"lens": "x"}, "m")],
    )
    assert isinstance(results[0], CaptureResult) and results[0].stored
    assert isinstance(results[1], Exception)  # probes fine, fails the full decode: refused alone
    assert isinstance(results[2], Exception) and "lens" in str(results[2])
    assert images(store) == 1


def test_the_daily_cap_counts_the_batch_itself(store):
    results = capture_many(store, "p", [CaptureRequest(png(i), [], None, "m") for i in range(5)], max_per_day=3)
    assert [r.stored for r in results] == [True, True, True, False, False]
    assert "daily cap" in results[3].reason and images(store) == 3
