"""The HTTP API: ``create_app`` builds the FastAPI application over one store.

Routes live in :mod:`winnow.api.routes`, one module per resource, all under ``/api/v1``. Errors
are JSON, ``{"error": "...", "type": "..."}``, with the status the error's class maps to
(:data:`STATUS`). OpenAPI is at ``/openapi.json`` and the interactive docs at ``/docs``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from winnow import __version__, errors
from winnow.api.deps import Unauthenticated
from winnow.api.jobs import JobRunner
from winnow.api.limits import BodyLimitMiddleware, Limits, RateLimiter
from winnow.store.db import Store

#: The HTTP status of each error class (the first match in this order wins).
STATUS: list[tuple[type[Exception], int]] = [
    (Unauthenticated, 401),
    (errors.PermissionDeniedError, 403),
    (errors.NotFoundError, 404),
    (errors.ConflictError, 409),
    (errors.TooLargeError, 413),
    (errors.UnsupportedMediaError, 415),
    (errors.RateLimitedError, 429),
    (errors.WinnowError, 422),  # invalid input, formats, unsafe archives, bad images
]


def _status(exc: Exception) -> int:
    for cls, status in STATUS:
        if isinstance(exc, cls):
            return status
    return 500


def create_app(store: Store | None = None, *, limits: Limits | None = None, reports: Path | None = None) -> FastAPI:
    """The API over ``store`` (the one ``$WINNOW_HOME`` names when ``None``).

    ``reports``: a folder of self-contained HTML reports (``winnow demo``'s ``--out``) served
    read-only under ``/reports/`` and listed on the landing page ``/``. The folder is served without
    a key, so only serve one whose contents anyone who can reach the port may read.
    """
    from winnow.api.routes import ROUTERS

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        app.state.jobs.close()
        for name in ("capture_writer", "inference"):  # captures still queued are stored first
            service = getattr(app.state, name, None)
            if service is not None:
                service.close()

    app = FastAPI(
        lifespan=lifespan,
        title="winnow",
        version=__version__,
        description="A self-hosted, data-centric platform for computer vision: the HTTP API.",
    )
    app.state.store = store if store is not None else Store.open()
    app.state.limits = limits or Limits.from_env()
    app.state.limiter = RateLimiter(app.state.limits.rates)
    app.state.jobs = JobRunner.from_env(status_of=_status)  # background training/evaluation (api/jobs.py)
    app.add_middleware(BodyLimitMiddleware, limits=app.state.limits)

    @app.exception_handler(errors.WinnowError)
    async def _winnow_error(request: Request, exc: errors.WinnowError) -> JSONResponse:
        status = _status(exc)
        headers = {}
        if status == 401:
            headers["WWW-Authenticate"] = "Bearer"
        if isinstance(exc, errors.RateLimitedError):
            headers["Retry-After"] = str(max(1, round(exc.retry_after + 0.5)))
        return JSONResponse({"error": str(exc), "type": type(exc).__name__}, status_code=status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        details = [{"where": ".".join(str(p) for p in e.get("loc", ())), "message": e.get("msg", "")} for e in exc.errors()]
        first = details[0] if details else {"where": "", "message": "invalid request"}
        return JSONResponse(
            {"error": f"{first['where']}: {first['message']}", "type": "InvalidInputError", "details": details}, status_code=422
        )

    @app.get("/api/v1/health", tags=["server"])
    def health() -> dict:
        """Liveness: no key needed, nothing about the data."""
        return {"status": "ok", "version": __version__}

    for router in ROUTERS:
        app.include_router(router, prefix="/api/v1")

    pages: list[str] = []
    if reports is not None:
        from fastapi.staticfiles import StaticFiles

        reports = Path(reports).resolve()
        app.mount("/reports", StaticFiles(directory=reports, html=False), name="reports")
        pages = sorted(p.relative_to(reports).as_posix() for p in reports.glob("*.html"))

    from winnow.web import mount

    mount(app, reports=pages)  # the web app at / (reports listed in it), its script and styles under /app/

    return app
