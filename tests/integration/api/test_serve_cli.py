"""``winnow key`` and ``winnow serve`` as a user runs them: separate processes, one data home."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import httpx

from tests.integration.api.conftest import free_port


def winnow(home, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "WINNOW_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "winnow.cli.main", *args], env=env, capture_output=True, text=True, timeout=120)


def test_keys_from_the_cli_open_the_served_api(tmp_path):
    home = tmp_path / "home"
    made = winnow(home, "key", "create", "--workspace", "acme", "--role", "admin", "--name", "ops", "--json")
    assert made.returncode == 0, made.stderr
    key = json.loads(made.stdout)["key"]
    assert key.startswith("wn_") and len(key) > 40
    listed = winnow(home, "key", "list", "--json")
    assert key not in listed.stdout and key[:10] in listed.stdout  # only the prefix is ever shown again
    assert "key_hash" not in listed.stdout

    port = free_port()
    env = {**os.environ, "WINNOW_HOME": str(home)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "winnow.cli.main", "serve", "--port", str(port)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        base = f"http://127.0.0.1:{port}/api/v1"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(base + "/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, proc.stdout.read()
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.2)
        auth = {"Authorization": f"Bearer {key}"}
        assert httpx.post(base + "/projects", json={"name": "p", "task": "classify"}, headers=auth).status_code == 201
        assert [p["name"] for p in httpx.get(base + "/projects", headers=auth).json()] == ["p"]
        # the project is in the store the CLI sees
        shown = winnow(home, "project", "show", "p", "--workspace", "acme", "--json")
        assert json.loads(shown.stdout)["task"] == "classify"
        assert winnow(home, "key", "revoke", "ops").returncode == 0
        assert httpx.get(base + "/projects", headers=auth).status_code == 401
    finally:
        proc.terminate()
        proc.wait(20)


def test_an_unknown_role_is_refused(tmp_path):
    r = winnow(tmp_path / "home", "key", "create", "--workspace", "acme", "--role", "root")
    assert r.returncode == 1 and "role must be one of" in r.stderr


def test_the_landing_page_lists_the_served_reports_and_nothing_escapes_the_folder(tmp_path):
    from tests.integration.api.conftest import start_server
    from winnow.store.db import Store

    reports = tmp_path / "demo-out"
    reports.mkdir()
    (reports / "demo.html").write_text("<!doctype html><p>the demo</p>")
    (reports / "<i>odd.html").write_text("x")
    (tmp_path / "secret.txt").write_text("not for you")
    store = Store.open(tmp_path / "home")
    srv, uv, thread = start_server(store, reports=reports)
    try:
        page = httpx.get(srv.url + "/")
        assert page.status_code == 200 and "/reports/demo.html" in page.text and "/docs" in page.text
        assert "<i>odd" not in page.text and "&lt;i&gt;odd.html" in page.text  # names are escaped
        assert "default-src 'none'" in page.headers["content-security-policy"]
        assert httpx.get(srv.url + "/reports/demo.html").text == "<!doctype html><p>the demo</p>"
        for path in ("/reports/../secret.txt", "/reports/%2e%2e/secret.txt", "/reports/..%2fsecret.txt"):
            r = httpx.get(srv.url + path)
            assert r.status_code == 404 and "not for you" not in r.text, path
        assert httpx.get(srv.url + "/api/v1/projects").status_code == 401  # the API still needs a key
    finally:
        uv.should_exit = True
        thread.join(10)
        store.close()


def test_without_reports_the_landing_page_still_points_at_the_docs(server):
    page = httpx.get(server.url + "/")
    assert page.status_code == 200 and "/docs" in page.text and "Reports" not in page.text
