"""Uploads: image files and archives sent to a project (the HTTP API's upload endpoint).

Every file is judged by its bytes, never its name: an archive (zip or tar) is extracted with the
caps of :mod:`winnow.archive` and imported as a dataset (labels included when a format is
recognised, else as plain unlabeled images); anything else must be an image winnow accepts
(:func:`winnow.media.probe`: magic bytes, header dimensions against the decompression-bomb
limit). An upload is all or nothing: one bad file refuses the request and stores nothing.
"""

from __future__ import annotations

import shutil
import tempfile
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from winnow import archive, media
from winnow.config import DEFAULT_WORKSPACE
from winnow.core.types import UNLABELED_TAG, Dataset, ImageRecord
from winnow.errors import InvalidInputError, UnsupportedMediaError
from winnow.formats.base import IMAGE_EXTENSIONS, detect_format
from winnow.services.ingest import ImportReport, import_dataset, import_records
from winnow.store.db import Store

MAX_NAME_BYTES = 255


def upload_name(filename: str | None) -> str:
    """The record name of an uploaded file: its base name, NFC; no path survives."""
    base = PurePosixPath((filename or "").replace("\\", "/")).name
    base = unicodedata.normalize("NFC", base).strip()
    if not base or base in (".", "..") or "\x00" in base:
        raise InvalidInputError(f"an uploaded file needs a file name, got {filename!r}")
    if len(base.encode("utf-8")) > MAX_NAME_BYTES:
        raise InvalidInputError(f"file name is longer than {MAX_NAME_BYTES} bytes: {base[:40]!r}...")
    return base


def _probe_file(path: Path, name: str) -> None:
    with open(path, "rb") as fh:
        head = fh.read(64)
    if not head:
        raise InvalidInputError(f"{name}: the file is empty")
    what = media.sniff(head)
    if what is not None:
        raise UnsupportedMediaError(f"{name}: not an image ({what})")
    media.probe_file(path)  # InvalidImageError: unsupported, a decompression bomb (from the header)


def _plain_images(root: Path) -> Dataset:
    images = [
        ImageRecord(name=p.relative_to(root).as_posix(), file=p, tags=[UNLABELED_TAG])
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
    ]
    if not images:
        raise InvalidInputError("the archive holds no image files")
    return Dataset(classes=[], images=images)


def upload_files(
    store: Store,
    project: str,
    files: Sequence[tuple[str | None, Path]],
    *,
    workspace: str = DEFAULT_WORKSPACE,
    split: str | None = None,
    tags: Iterable[str] = (),
    metadata: Mapping[str, Any] | None = None,
    user: str | None = None,
) -> ImportReport:
    """Import uploaded files (``(filename, path on disk)``) into ``project``, all or nothing.

    Single images have no labels yet: they are tagged ``unlabeled`` and given ``metadata``.
    At most one archive per request, and not mixed with images.
    """
    if not files:
        raise InvalidInputError("no file in the upload")
    archives = [(n, p) for n, p in files if archive.is_archive(p)]
    if archives:
        if len(files) > 1:
            raise InvalidInputError("send an archive alone, not with other files")
        name, path = archives[0]
        scratch = Path(tempfile.mkdtemp(prefix="upload-", dir=store.tmp))
        try:
            root = archive.extract(path, scratch / "x")
            try:
                detect_format(root)
            except InvalidInputError:
                dataset = _plain_images(root)
                return import_records(
                    store, project, dataset, root, workspace=workspace, source=upload_name(name),
                    format="images", split=split, tags=tags, strict=True,
                )
            return import_dataset(
                store, project, root, workspace=workspace, split=split, tags=tags, strict=True, source=upload_name(name)
            )
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    records = []
    seen: set[str] = set()
    for filename, path in files:
        name = upload_name(filename)
        if name in seen:
            raise InvalidInputError(f"two uploaded files are named {name!r}")
        seen.add(name)
        _probe_file(path, name)
        records.append(ImageRecord(name=name, file=path, tags=[UNLABELED_TAG], metadata=dict(metadata or {})))
    root = Path(files[0][1]).parent
    outside = [n for (n, p) in files if Path(p).parent != root]
    if outside:
        raise InvalidInputError("uploaded files must be staged in one folder")
    return import_records(
        store, project, Dataset(classes=[], images=records), root, workspace=workspace,
        source="upload", format="upload", split=split, tags=tags, strict=True,
    )
