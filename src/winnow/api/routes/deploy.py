"""Deploying a model, the capture policy, and predicting with the deployed model.

``POST /projects/{p}/predict`` takes one image, in the raw body or as the multipart field
``file``, plus optional fields (query or form): ``capture`` (``true``/``false``: the client's
flag), ``camera``, ``site``, ``time`` (ISO-8601 with an offset) and ``min_score`` (default 0.25,
as ``winnow predict``). Errors: 404 unknown project, 409 no deployed model, 413 body over
``WINNOW_MAX_PREDICT_MB``, 415 not an image (HTML, SVG, PDF...), 422 an empty body or an image
that cannot be read (0x0, truncated, a decompression bomb) or a bad field, 429 the key's rate
limit, 503 (``Retry-After``) the project's inference queue is full. See docs/serving.md.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any

from fastapi import APIRouter, Body, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict

from winnow import media
from winnow.api.deps import Context, Manage, Predict, Read
from winnow.errors import InvalidInputError, UnsupportedMediaError
from winnow.serve.capture import CaptureWriter
from winnow.serve.inference import InferencePool, PoolBusy, PoolConfig, Served
from winnow.services import deploy as svc
from winnow.services.training import prediction_dict

router = APIRouter(tags=["deploy"])
log = logging.getLogger(__name__)

DEFAULT_MIN_SCORE = 0.25
#: Seconds a request waits for its capture to be stored before answering without it.
_CAPTURE_TIMEOUT_S = 60.0
#: Seconds a project's capture policy (and its automatic rare classes) are cached per server.
POLICY_TTL = 1.0
RARE_TTL = 30.0
_pool_lock = threading.Lock()


class DeployBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str


def inference_pool(state: Any) -> InferencePool:
    """The server's pool (``app.state.inference``), made on first use."""
    pool = getattr(state, "inference", None)
    if pool is None:
        with _pool_lock:
            pool = getattr(state, "inference", None)
            if pool is None:
                pool = InferencePool(PoolConfig.from_env())
                state.inference = pool
    return pool


class _Policies:
    """Capture policies by ``(workspace, project)``, re-read at most every :data:`POLICY_TTL` s."""

    def __init__(self) -> None:
        self._policy: dict[tuple[str, str], tuple[float, dict[str, Any]]] = {}
        self._rare: dict[tuple[str, str], tuple[float, list[str]]] = {}

    def policy(self, ctx: Context, project: str) -> dict[str, Any]:
        key, now = (ctx.workspace, project), time.monotonic()
        hit = self._policy.get(key)
        if hit is None or now - hit[0] >= POLICY_TTL:
            hit = (now, svc.get_capture_policy(ctx.store, project, workspace=ctx.workspace))
            self._policy[key] = hit
        return hit[1]

    def rare(self, ctx: Context, project: str, policy: dict[str, Any]) -> list[str]:
        if policy.get("rare_classes"):
            return policy["rare_classes"]
        key, now = (ctx.workspace, project), time.monotonic()
        hit = self._rare.get(key)
        if hit is None or now - hit[0] >= RARE_TTL:
            hit = (now, svc.rare_classes(ctx.store, project, workspace=ctx.workspace))
            self._rare[key] = hit
        return hit[1]

    def forget(self, workspace: str, project: str) -> None:
        self._policy.pop((workspace, project), None)
        self._rare.pop((workspace, project), None)


def _policies(state: Any) -> _Policies:
    cache = getattr(state, "capture_policies", None)
    if cache is None:
        with _pool_lock:
            cache = getattr(state, "capture_policies", None)
            if cache is None:
                cache = state.capture_policies = _Policies()
    return cache


def _writer(state: Any) -> CaptureWriter:
    writer = getattr(state, "capture_writer", None)
    if writer is None:
        with _pool_lock:
            writer = getattr(state, "capture_writer", None)
            if writer is None:
                writer = state.capture_writer = CaptureWriter(state.store)
    return writer


# ----------------------------------------------------------------------------- deploy


@router.post("/projects/{project}/deploy")
def deploy_model(project: str, body: DeployBody, ctx: Context = Manage) -> dict:
    """Make a model of this project its active model (ready, with a verified ONNX export).
    The running server loads it beside the old one and swaps when it is ready."""
    summary = svc.deploy(ctx.store, body.model, workspace=ctx.workspace, user=ctx.user, project=project)
    pool = getattr(ctx.state, "inference", None)
    if pool is not None:
        pool.refresh(ctx.store, project, ctx.workspace)
    return summary.as_dict()


@router.delete("/projects/{project}/deployment")
def undeploy_model(project: str, ctx: Context = Manage) -> dict:
    """End the project's deployment: predict answers 409 from then on."""
    summary = svc.undeploy(ctx.store, project=project, workspace=ctx.workspace, user=ctx.user)
    pool = getattr(ctx.state, "inference", None)
    if pool is not None:
        pool.refresh(ctx.store, project, ctx.workspace)
    return summary.as_dict()


@router.get("/projects/{project}/deployment")
def get_deployment(project: str, ctx: Context = Read) -> dict:
    """The active model and this server's inference statistics for the project (``stats``:
    requests, batches, batch sizes, queue depth, swaps; ``null`` before the first request)."""
    summary = svc.deployment(ctx.store, project, workspace=ctx.workspace)
    pool = getattr(ctx.state, "inference", None)
    stats = pool.stats(ctx.project(project)[0]) if pool is not None else None
    writer = getattr(ctx.state, "capture_writer", None)
    return summary.as_dict() | {"stats": stats, "capture_writer": writer.stats.as_dict() if writer is not None else None}


@router.get("/projects/{project}/capture")
def get_capture(project: str, ctx: Context = Read) -> dict:
    """The project's capture policy."""
    return svc.get_capture_policy(ctx.store, project, workspace=ctx.workspace)


@router.put("/projects/{project}/capture")
def put_capture(project: str, ctx: Context = Manage, policy: dict = Body(...)) -> dict:
    """Replace the capture policy (fields left out take their defaults); returns it complete."""
    value = svc.set_capture_policy(ctx.store, project, policy, replace=True, workspace=ctx.workspace, user=ctx.user)
    _policies(ctx.state).forget(ctx.workspace, project)
    return value


# ----------------------------------------------------------------------------- predict


def _flag(value: str | None) -> bool | None:
    if value is None or value == "":
        return None
    text = value.strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off"):
        return False
    raise InvalidInputError(f"capture must be true or false, got {value!r}")


def _min_score(value: str | None) -> float:
    if value is None or value == "":
        return DEFAULT_MIN_SCORE
    try:
        score = float(value)
    except ValueError:
        raise InvalidInputError(f"min_score must be a number in [0, 1], got {value!r}") from None
    if not 0.0 <= score <= 1.0:
        raise InvalidInputError(f"min_score must be in [0, 1], got {value!r}")
    return score


def read_image(data: bytes, name: str = "request body"):
    """Decode a predict request's bytes to an RGB image (grayscale, palette, RGBA and 16-bit
    images are converted as ``winnow predict`` converts them): 422 when empty, 415 when they are
    not an image at all (HTML, SVG, PDF...), 422 when unreadable or a decompression bomb."""
    if not data:
        raise InvalidInputError(f"{name}: no image (the body is empty)")
    what = media.sniff(data[:64])
    if what is not None:
        raise UnsupportedMediaError(f"{name}: not an image ({what})")
    media.probe(data, name)  # the header: size, 0x0, bomb limits - before any pixel is decoded
    return media.decode(data, name, "RGB")


def _prepare(ctx: Context, pool: InferencePool, project: str, data: bytes) -> tuple[Served, Any]:
    served = pool.model_for(ctx.store, project, ctx.workspace)
    return served, read_image(data)


def _capture(ctx: Context, project: str, data: bytes, predictions: list[dict], meta: dict, top: float, client: bool | None, served: Served) -> tuple[bool, str | None, str | None]:
    """``(captured, image name, error)``: the policy's decision and, when it says so, the capture."""
    try:
        cache = _policies(ctx.state)
        policy = cache.policy(ctx, project)
        if policy["mode"] == "off":
            return False, None, None
        from winnow.store.blobs import sha256_bytes

        rare = cache.rare(ctx, project, policy) if policy["mode"] == "rare_class" else ()
        if not svc.wants_capture(policy, predictions, sha256=sha256_bytes(data), client=client, top_score=top, rare=rare):
            return False, None, None
        request = svc.CaptureRequest(data, predictions, meta, served.model)
        future = _writer(ctx.state).submit(project, ctx.workspace, request, max_per_day=policy.get("max_per_day"), user=ctx.user)
        result = future.result(timeout=_CAPTURE_TIMEOUT_S)
        return result.image is not None, result.image, result.reason if result.image is None else None
    except Exception as exc:  # noqa: BLE001 - a failed capture never fails the prediction
        log.exception("capture failed for project %s", project)
        return False, None, f"{type(exc).__name__}: {exc}"


@router.post("/projects/{project}/predict")
async def predict(
    project: str,
    request: Request,
    ctx: Context = Predict,
    capture: str | None = Query(default=None, description="true/false: ask to keep (or not keep) this image"),
    camera: str | None = Query(default=None),
    site: str | None = Query(default=None),
    time_: str | None = Query(default=None, alias="time", description="ISO-8601 with an offset; stored as UTC"),
    min_score: str | None = Query(default=None, description="drop predictions below this score (default 0.25)"),
):
    """Predict one image with the project's deployed model; capture it when the policy says so."""
    ctx.rate("predict")
    fields: dict[str, str | None] = {"capture": capture, "camera": camera, "site": site, "time": time_, "min_score": min_score}
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        async with request.form(max_files=1, max_fields=20) as form:
            part = form.get("file")
            if part is None or isinstance(part, str):
                raise InvalidInputError("send the image as the multipart field 'file' (or as the raw request body)")
            data = await part.read()
            for key in fields:
                value = form.get(key)
                if isinstance(value, str):
                    fields[key] = value
    else:
        data = await request.body()
    client = _flag(fields["capture"])
    threshold = _min_score(fields["min_score"])
    meta = svc.capture_metadata(fields["camera"], fields["site"], fields["time"])

    pool = inference_pool(ctx.state)
    served, image = await run_in_threadpool(_prepare, ctx, pool, project, data)
    try:
        future = pool.submit(served, image)
    except PoolBusy as exc:
        return JSONResponse(
            {"error": str(exc), "type": "PoolBusy"}, status_code=503, headers={"Retry-After": str(max(1, round(exc.retry_after)))}
        )
    try:
        pred = await asyncio.wrap_future(future)
    except PoolBusy as exc:  # the server is shutting down
        return JSONResponse({"error": str(exc), "type": "PoolBusy"}, status_code=503, headers={"Retry-After": "1"})
    loaded = served.loaded
    top = round(float(pred.scores.max()), 6) if len(pred) else 0.0  # as the response shows scores
    predictions = [prediction_dict(a) for a in pred[pred.scores >= threshold].to_annotations(loaded.classes, loaded.task)]
    captured, name, error = await run_in_threadpool(_capture, ctx, project, data, predictions, meta, top, client, served)
    doc = {
        "model": served.model,
        "model_name": served.name,
        "deployment": served.deployment,
        "predictions": predictions,
        "width": image.width,
        "height": image.height,
        "captured": captured,
        "image": name,
    }
    if error is not None:
        doc["capture_note"] = error  # why a capture the policy asked for stored nothing (daily cap, an error)
    return doc
