"""A real winnow server on a free localhost port, over a fresh store, for each test module
that asks for ``server``; clients talk to it with httpx over TCP."""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass

import httpx
import pytest
import uvicorn

from winnow.api.app import create_app
from winnow.api.limits import Limits
from winnow.services.auth import create_key
from winnow.store.db import Store


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    url: str
    store: Store
    app: object

    def key(self, workspace: str = "acme", role: str = "admin", name: str | None = None) -> str:
        return create_key(self.store, workspace, role, name=name).key

    def client(self, key: str | None = None, **kw) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.url + "/api/v1", headers=headers, timeout=kw.pop("timeout", 60), **kw)


def start_server(store: Store, limits: Limits | None = None, **app_options):
    app = create_app(store, limits=limits, **app_options)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    return Server(f"http://127.0.0.1:{port}", store, app), server, thread


@pytest.fixture
def server(tmp_path):
    store = Store.open(tmp_path / "home")
    srv, uv, thread = start_server(store, Limits(max_upload_bytes=2 * 1024 * 1024, max_predict_bytes=1024 * 1024, max_body_bytes=256 * 1024))
    yield srv
    uv.should_exit = True
    thread.join(10)
    store.close()
