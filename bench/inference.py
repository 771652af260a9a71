#!/usr/bin/env python
"""Benchmark: the inference server (``POST /projects/{p}/predict``) under concurrent load.

    .venv/bin/python bench/inference.py [--seconds 6] [--concurrency 1,8,32] [--image-size 64]
        [--out bench/out/inference] [--docs docs/benchmarks.md]

A small classifier (``mobilenet_v3_small``, width 0.5, ``--image-size`` input, 1 epoch on 24
generated images: its accuracy does not matter here, its cost does) is trained once and cached
under ``--out``, deployed, and served by a real server in a subprocess (uvicorn over
``create_app``, the same app ``winnow serve`` runs, rate limits lifted). A load client in this
process runs N threads, each with its own HTTP connection (httpx), sending 96x72 PNGs back to back
for ``--seconds`` per row; it reports requests/s and the p50/p99 latency seen by the client, and
the server's mean batch size (from ``GET /projects/{p}/deployment``).

Rows: capture ``off``, and capture ``all`` with every request a distinct image (each one stored
in the project with its pre-labels, in the request thread after the prediction). Server and client
share the machine's cores (2 on the reference machine), so the numbers are a floor.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import shutil
import socket
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from _docs import write_block  # bench/ is on sys.path when a script runs

BEGIN, END = "<!-- bench:inference:begin -->", "<!-- bench:inference:end -->"


def _model(out: Path, image_size: int) -> Path:
    """A store with a deployed classifier (cached by image size)."""
    from winnow.core.types import Task
    from winnow.formats import get_format
    from winnow.services.deploy import deploy, deployment
    from winnow.services.ingest import import_dataset
    from winnow.services.projects import create_project
    from winnow.services.training import train_model
    from winnow.services.versions import create_version
    from winnow.store.db import Store
    from winnow.synthetic import generate

    home = out / f"home-{image_size}"
    if home.exists():
        with Store.open(home) as store:
            if deployment(store, "bench").active:
                return home
        shutil.rmtree(home)
    src = out / "src"
    shutil.rmtree(src, ignore_errors=True)
    ds = generate(src, 24, seed=0, task=Task.CLASSIFY)
    get_format("folders").write(ds, src / "folders", lambda rec, path: path.write_bytes(rec.file.read_bytes()))
    with Store.open(home) as store:
        create_project(store, "bench", "classify")
        import_dataset(store, "bench", src / "folders", format="folders")
        version = create_version(store, "bench", split="train=0.75,valid=0.25", resplit=True, seed=0)
        started = time.perf_counter()
        s = train_model(store, "bench", version.version, image_size=image_size, width=0.5, epochs=1, batch_size=8, name="bench-model")
        print(f"trained {s.name} ({s.model[:12]}) in {time.perf_counter() - started:.1f}s", flush=True)
        deploy(store, s.name, user="bench")
    return home


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(home: Path, port: int) -> subprocess.Popen:
    env = os.environ | {
        "WINNOW_HOME": str(home),
        "WINNOW_RATE_PREDICT": "1000000/1000000",
        "PYTHONPATH": str(ROOT / "src"),
    }
    code = (
        "import uvicorn; from winnow.api.app import create_app; "
        f"uvicorn.run(create_app(), host='127.0.0.1', port={port}, log_level='warning')"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], env=env)
    import httpx

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/v1/health", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("the server did not start")


def _images(n: int, seed: int) -> list[bytes]:
    """``n`` distinct 96x72 PNGs."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (72, 96, 3), dtype=np.uint8)
    out = []
    for i in range(n):
        im = base.copy()
        im[0, :4, 0] = np.frombuffer(i.to_bytes(4, "big"), np.uint8)
        buf = io.BytesIO()
        Image.fromarray(im).save(buf, "PNG")
        out.append(buf.getvalue())
    return out


def _load(url: str, key: str, images: list[bytes], concurrency: int, seconds: float) -> dict:
    import httpx
    import numpy as np

    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    counter = iter(range(10**9))
    stop_at = time.monotonic() + seconds
    gate = threading.Barrier(concurrency)

    def worker() -> None:
        mine: list[float] = []
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60) as c:
            gate.wait()
            while time.monotonic() < stop_at:
                with lock:
                    i = next(counter)
                data = images[i % len(images)]
                t0 = time.perf_counter()
                r = c.post("/projects/bench/predict", content=data)
                mine.append(time.perf_counter() - t0)
                if r.status_code != 200:
                    with lock:
                        errors.append(f"{r.status_code} {r.text[:80]}")
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - started
    lat = np.asarray(latencies) * 1000
    return {
        "requests": len(lat),
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
        "rps": len(lat) / wall,
        "p50": float(np.percentile(lat, 50)) if len(lat) else 0.0,
        "p99": float(np.percentile(lat, 99)) if len(lat) else 0.0,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=6.0)
    ap.add_argument("--concurrency", default="1,8,32")
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "inference")
    ap.add_argument("--docs", type=Path, default=None)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    levels = [int(x) for x in args.concurrency.split(",")]

    home = _model(args.out, args.image_size)
    from winnow.services.auth import create_key
    from winnow.store.db import Store

    with Store.open(home) as store:
        key = create_key(store, "default", "admin", name=f"bench-{time.time_ns()}").key
    port = _free_port()
    proc = _serve(home, port)
    url = f"http://127.0.0.1:{port}/api/v1"
    rows = []
    try:
        import httpx

        admin = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60)
        same = _images(64, 1)
        _load(url, key, same, 4, 1.0)  # warm up: the model loads on the first request
        for capture in ("off", "all"):
            admin.put("/projects/bench/capture", json={"mode": capture}).raise_for_status()
            time.sleep(1.1)  # the server re-reads the policy at most every second
            for n in levels:
                images = same if capture == "off" else _images(4000, 100 + n)
                before = admin.get("/projects/bench/deployment").json()["stats"]
                result = _load(url, key, images, n, args.seconds)
                after = admin.get("/projects/bench/deployment").json()["stats"]
                batches = after["batches"] - before["batches"]
                result |= {
                    "capture": capture, "concurrency": n,
                    "mean_batch": (after["requests"] - before["requests"]) / batches if batches else 0.0,
                    "max_batch": after["max_batch"],
                }
                rows.append(result)
                print(
                    f"capture {capture:3} x{n:<3} {result['requests']:6d} req {result['rps']:8.1f} req/s  "
                    f"p50 {result['p50']:7.1f} ms  p99 {result['p99']:7.1f} ms  batch {result['mean_batch']:.2f}  "
                    f"errors {result['errors']}" + (f" ({result['first_error']})" if result["errors"] else ""),
                    flush=True,
                )
        admin.put("/projects/bench/capture", json={"mode": "off"})
        admin.close()
    finally:
        proc.terminate()
        proc.wait(10)

    cores = os.cpu_count()
    lines = [
        f"_{datetime.now(UTC):%Y-%m-%d}, {platform.processor() or platform.machine()}, {cores} cores (server and client share them), "
        f"load average {'/'.join(f'{v:.1f}' for v in os.getloadavg())} after the run; `mobilenet_v3_small` width 0.5 at "
        f"{args.image_size} px (ONNX, onnxruntime CPU), 96x72 PNG requests, {args.seconds:.0f} s per row, "
        "pool defaults (batch 16, wait 5 ms, queue 256)._",
        "",
        "| capture | connections | requests | requests/s | p50 ms | p99 ms | mean batch | errors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        what = "off" if r["capture"] == "off" else "all (every image stored)"
        lines.append(
            f"| {what} | {r['concurrency']} | {r['requests']} | {r['rps']:.1f} | {r['p50']:.1f} | {r['p99']:.1f} | {r['mean_batch']:.2f} | {r['errors']} |"
        )
    block = "\n".join(lines)
    print()
    print(block)
    if args.docs:
        write_block(args.docs, BEGIN, END, block, heading="## Inference server")
        print(f"written to {args.docs}")


if __name__ == "__main__":
    main()
