"""Server limits: request body sizes (checked while the body streams in) and per-key rate limits.

Defaults fit one machine; each can be set from the environment:

==============================  ==========  ===============================================
``WINNOW_MAX_UPLOAD_MB``        512         one upload request (images or an archive)
``WINNOW_MAX_PREDICT_MB``       32          one predict request
``WINNOW_MAX_BODY_MB``          16          any other request
``WINNOW_RATE_PREDICT``         ``50/200``  predict requests per second per key / burst
``WINNOW_RATE_UPLOAD``          ``5/20``    upload requests per second per key / burst
==============================  ==========  ===============================================
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field

from winnow.errors import RateLimitedError

_MB = 1024 * 1024


def _rate(env: str, default: str) -> tuple[float, float]:
    text = os.environ.get(env, default)
    try:
        rate, burst = (float(x) for x in text.split("/"))
    except ValueError:
        raise ValueError(f"{env} must look like RATE/BURST (e.g. 50/200), got {text!r}") from None
    if rate <= 0 or burst < 1:
        raise ValueError(f"{env}: rate must be > 0 and burst >= 1, got {text!r}")
    return rate, burst


@dataclass
class Limits:
    max_upload_bytes: int = 512 * _MB
    max_predict_bytes: int = 32 * _MB
    max_body_bytes: int = 16 * _MB
    rates: dict[str, tuple[float, float]] = field(default_factory=lambda: {"predict": (50.0, 200.0), "upload": (5.0, 20.0)})

    @classmethod
    def from_env(cls) -> Limits:
        def mb(env: str, default: int) -> int:
            return int(float(os.environ.get(env, default)) * _MB)

        return cls(
            max_upload_bytes=mb("WINNOW_MAX_UPLOAD_MB", 512),
            max_predict_bytes=mb("WINNOW_MAX_PREDICT_MB", 32),
            max_body_bytes=mb("WINNOW_MAX_BODY_MB", 16),
            rates={"predict": _rate("WINNOW_RATE_PREDICT", "50/200"), "upload": _rate("WINNOW_RATE_UPLOAD", "5/20")},
        )

    def body_limit(self, path: str, method: str) -> int:
        if method == "POST" and path.endswith("/predict"):
            return self.max_predict_bytes
        if method == "POST" and path.endswith("/images"):
            return self.max_upload_bytes
        return self.max_body_bytes


class RateLimiter:
    """Token buckets by ``(key id, kind)``: ``rate`` tokens a second up to ``burst``."""

    def __init__(self, rates: dict[str, tuple[float, float]]):
        self.rates = dict(rates)
        self._buckets: dict[tuple[int, str], tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, key_id: int, kind: str) -> None:
        if kind not in self.rates:
            return
        rate, burst = self.rates[kind]
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get((key_id, kind), (burst, now))
            tokens = min(burst, tokens + (now - last) * rate)
            if tokens < 1.0:
                self._buckets[(key_id, kind)] = (tokens, now)
                wait = (1.0 - tokens) / rate
                raise RateLimitedError(f"too many {kind} requests for this key; retry in {wait:.2f} s", retry_after=wait)
            self._buckets[(key_id, kind)] = (tokens - 1.0, now)


class BodyTooLarge(Exception):
    pass


class BodyLimitMiddleware:
    """Refuse a request body over its limit with 413: from ``Content-Length`` before reading,
    else as soon as the streamed bytes pass it (a chunked body cannot sneak by)."""

    def __init__(self, app, limits: Limits):
        self.app = app
        self.limits = limits

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limits.body_limit(scope["path"], scope["method"])
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None:
            try:
                too_big = int(declared) > limit
            except ValueError:
                await _plain(send, 400, "invalid Content-Length")
                return
            if too_big:
                await _plain(send, 413, f"request body is over the {limit // _MB} MB limit")
                return
        seen = 0
        started = False

        async def counted():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge()
            return message

        async def tracking_send(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted, tracking_send)
        except BodyTooLarge:
            if not started:
                await _plain(send, 413, f"request body is over the {limit // _MB} MB limit")


async def _plain(send, status: int, message: str) -> None:
    import json

    body = json.dumps({"error": message, "type": "TooLargeError" if status == 413 else "InvalidInputError"}).encode()
    await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
