"""Images: upload (single files, several, or one zip/tar archive), list with filters, get one
with its annotations, and fetch its bytes.

Uploads are ``multipart/form-data`` (fields ``file``, repeated, plus optional ``split``, ``tag``
(repeated) and ``metadata`` (a JSON object)) or a raw body with ``?name=`` - the kind of file is
judged from its bytes. Bodies over the upload limit get 413 while they stream in.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse

from winnow.api.deps import Context, Read, Upload
from winnow.errors import InvalidInputError
from winnow.services import datasets
from winnow.services.uploads import upload_files

router = APIRouter(tags=["images"])

_MAX_FILES = 10_000
_CHUNK = 1024 * 1024
#: Formats served back as themselves; anything else goes out as a download, never inline.
_SERVED = {"jpeg": "image/jpeg", "png": "image/png", "gif": "image/gif", "webp": "image/webp", "bmp": "image/bmp", "tiff": "image/tiff"}


def _metadata(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise InvalidInputError(f"metadata must be a JSON object: {exc}") from None
    if not isinstance(value, dict) or not all(isinstance(k, str) and len(k) <= 200 for k in value):
        raise InvalidInputError("metadata must be a JSON object with text keys (at most 200 characters)")
    return value


@router.post("/projects/{project}/images", status_code=201)
async def upload(
    project: str,
    request: Request,
    ctx: Context = Upload,
    name: str | None = Query(default=None, description="file name of a raw (non-multipart) body"),
    split: str | None = None,
    tag: list[str] = Query(default=[]),
    metadata: str | None = Query(default=None, description="a JSON object of metadata for every image"),
) -> dict:
    """Upload images or one archive; all or nothing. Returns the import report."""
    ctx.rate("upload")
    await run_in_threadpool(ctx.project, project)  # 404 before the body is read
    staging = Path(tempfile.mkdtemp(prefix="upload-", dir=ctx.store.tmp))
    try:
        files: list[tuple[str | None, Path]] = []
        ctype = request.headers.get("content-type", "")
        if ctype.startswith("multipart/form-data"):
            async with request.form(max_files=_MAX_FILES, max_fields=1000) as form:
                for n, part in enumerate(form.getlist("file")):
                    if isinstance(part, str):
                        raise InvalidInputError("field 'file' must be a file, not text")
                    dest = staging / f"{n:06d}"
                    with open(dest, "wb") as fh:
                        while chunk := await part.read(_CHUNK):
                            fh.write(chunk)
                    files.append((part.filename, dest))
                split = form.get("split") or split
                tag = [*tag, *[t for t in form.getlist("tag") if isinstance(t, str)]]
                metadata = form.get("metadata") or metadata
        else:
            dest = staging / "000000"
            with open(dest, "wb") as fh:
                async for chunk in request.stream():
                    fh.write(chunk)
            files.append((name, dest))
        meta = _metadata(metadata if isinstance(metadata, str) else None)
        report = await run_in_threadpool(
            lambda: upload_files(
                ctx.store, project, files, workspace=ctx.workspace, split=split, tags=tag, metadata=meta, user=ctx.user
            )
        )
        return report.as_dict()
    finally:
        shutil.rmtree(staging, ignore_errors=True)


@router.get("/projects/{project}/images")
def list_images(
    project: str,
    ctx: Context = Read,
    split: str | None = None,
    tag: str | None = None,
    class_name: str | None = Query(default=None, alias="class"),
    limit: int = Query(default=100, ge=1, le=1000),
    offset: int = Query(default=0, ge=0),
    annotations: bool = Query(default=False, description="also list each image's annotations (annotation_list)"),
) -> dict:
    """Images, filtered by split, tag and class, ordered by name, a page at a time."""
    rows = datasets.list_images(
        ctx.store, project, workspace=ctx.workspace, class_name=class_name, tag=tag, split=split, limit=limit + 1, offset=offset,
        with_annotations=annotations,
    )
    total = datasets.count_images(ctx.store, project, workspace=ctx.workspace, class_name=class_name, tag=tag, split=split)
    return {"images": [r.as_dict() for r in rows[:limit]], "offset": offset, "limit": limit, "more": len(rows) > limit,
            "total": total}


@router.get("/projects/{project}/images/{name:path}/file")
def image_file(project: str, name: str, ctx: Context = Read) -> FileResponse:
    """The image's bytes, as stored. Only image types are served inline."""
    rec = datasets.get_image(ctx.store, project, name, workspace=ctx.workspace)
    return blob_response(ctx, rec.sha256)


def blob_response(ctx: Context, sha256: str) -> FileResponse:
    """A stored image's bytes: its own media type when it is an image type, never sniffed, no
    active content."""
    from winnow.store import models as m

    with ctx.store.read() as session:
        fmt = session.get(m.Blob, sha256).format
    return FileResponse(
        ctx.store.blobs.path(sha256),
        media_type=_SERVED.get(fmt, "application/octet-stream"),
        headers={"X-Content-Type-Options": "nosniff", "Content-Security-Policy": "default-src 'none'"},
    )


@router.get("/projects/{project}/images/{name:path}")
def get_image(project: str, name: str, ctx: Context = Read) -> dict:
    """One image with its annotations (with their ids), tags and metadata."""
    return datasets.image_dict(datasets.get_image(ctx.store, project, name, workspace=ctx.workspace))
