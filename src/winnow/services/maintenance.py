"""Keeping the store sound: verify every blob (like ``git lfs fsck``) and collect garbage.

``verify`` re-hashes every blob the database references: a missing one is reported, a corrupted
one (its bytes no longer hash to its name) is moved to ``<home>/quarantine`` and reported. Blobs
on disk that no record, no version and no model references (left by an interrupted import) are listed, and removed with
``gc=True`` once they are older than ``grace_seconds`` (an hour by default), so a gc never
deletes the blobs of an import that is still running.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import select

from winnow.store import models as m
from winnow.store.db import Store


@dataclass
class VerifyReport:
    """Field names are part of the ``--json`` contract."""

    checked: int = 0
    missing: list[str] = field(default_factory=list)
    corrupt: list[str] = field(default_factory=list)
    unreferenced: list[str] = field(default_factory=list)
    removed: int = 0
    removed_versions: int = 0  # manifest folders of versions that no longer exist

    @property
    def ok(self) -> bool:
        return not self.missing and not self.corrupt

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"ok": self.ok}


#: ``gc`` leaves unreferenced blobs younger than this alone: an import writes its blobs before it
#: commits the rows that reference them, and may still be running.
GC_GRACE_SECONDS = 3600.0


def verify(
    store: Store,
    *,
    gc: bool = False,
    grace_seconds: float = GC_GRACE_SECONDS,
    progress: Callable[[int, int], None] | None = None,
) -> VerifyReport:
    from winnow.services.merge_requests import referenced_request_blobs
    from winnow.services.training import referenced_model_blobs
    from winnow.services.versions import orphan_version_folders, referenced_blobs

    report = VerifyReport()
    with store.read() as session:
        referenced = set(session.scalars(select(m.Image.sha256).distinct()))
    referenced |= referenced_blobs(store)  # a version keeps its images (even deleted ones) and outputs
    referenced |= referenced_model_blobs(store)  # a model keeps its weights and ONNX file
    referenced |= referenced_request_blobs(store)  # an open merge request keeps the images it proposes
    total = len(referenced)
    quarantine = store.home / "quarantine"
    for n, sha in enumerate(sorted(referenced), 1):
        if progress is not None:
            progress(n, total)
        report.checked += 1
        path = store.blobs.path(sha)
        if not path.is_file():
            report.missing.append(sha)
        elif not store.blobs.verify(sha):
            report.corrupt.append(sha)
            quarantine.mkdir(parents=True, exist_ok=True)
            os.replace(path, quarantine / sha)
    for sha in store.blobs.iter_shas():
        if sha not in referenced:
            report.unreferenced.append(sha)
    if gc:
        with store.write() as session:  # hold the write lock: no import can reference them meanwhile
            still = (
                set(session.scalars(select(m.Image.sha256).distinct()))
                | referenced_blobs(store) | referenced_model_blobs(store) | referenced_request_blobs(store)
            )
            for sha in report.unreferenced:
                if sha not in still and store.blobs.age(sha) >= grace_seconds:
                    store.blobs.remove(sha)
                    session.execute(m.Blob.__table__.delete().where(m.Blob.sha256 == sha))
                    report.removed += 1
            for folder in orphan_version_folders(store):
                if time.time() - folder.stat().st_mtime >= grace_seconds:
                    shutil.rmtree(folder)
                    report.removed_versions += 1
        store.blobs.clean_tmp(older_than=grace_seconds)
    return report
