"""Content fingerprints of what pipeline steps read: a project's records and a folder of files.

``project_state`` is the SHA-256 of everything a check, a fix or a version reads from a project:
the task, the class list, and per image (by name) the blob it points at, its split, tags,
metadata and the revision of each annotation (:func:`winnow.versions.manifest.annotation_revision`:
label, geometry, flags, source, score). Ids and timestamps are left out, so an edit that is undone
gives the same state again. ``files_fingerprint`` hashes a file or a folder's files (relative
path and bytes).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from winnow.config import DEFAULT_WORKSPACE
from winnow.store.db import Store
from winnow.versions.manifest import annotation_revision, canonical_json

_CHUNK = 1 << 20


def fingerprint(doc: Any) -> str:
    """SHA-256 of ``doc``'s canonical JSON (sorted keys, no spaces)."""
    return hashlib.sha256(canonical_json(doc).encode()).hexdigest()


def project_state(store: Store, project: str, *, workspace: str = DEFAULT_WORKSPACE) -> dict[str, Any]:
    """``{"state": sha256, "images": N, "annotations": M}`` of the project's records now."""
    from winnow.services.datasets import load_dataset

    dataset = load_dataset(store, project, workspace=workspace)
    h = hashlib.sha256()
    task = dataset.task.value if dataset.task is not None else None
    h.update(canonical_json({"task": task, "classes": list(dataset.classes)}).encode())
    annotations = 0
    for rec in sorted(dataset.images, key=lambda r: r.name):
        meta = canonical_json({str(k): v for k, v in rec.metadata.items()}) if rec.metadata else "{}"
        h.update(f"\n{rec.name}\t{rec.sha256}\t{rec.split}\t{','.join(sorted(rec.tags))}\t{meta}".encode())
        for rev in sorted(annotation_revision(a) for a in rec.annotations):
            h.update(f"\t{rev}".encode())
        annotations += len(rec.annotations)
    return {"state": h.hexdigest(), "images": len(dataset.images), "annotations": annotations}


def files_fingerprint(path: Path) -> dict[str, Any]:
    """``{"sha256", "files", "bytes"}`` of a file, or of every file under a folder (hidden ones
    and symlinks included by name; each file's path relative to ``path`` and its bytes)."""
    path = Path(path)
    h = hashlib.sha256()
    files = size = 0
    if path.is_file():
        entries = [(path.name, path)]
    else:
        entries = []
        for root, dirs, names in os.walk(path):
            dirs.sort()
            for name in sorted(names):
                full = Path(root, name)
                entries.append((full.relative_to(path).as_posix(), full))
    for rel, full in entries:
        fh = hashlib.sha256()
        with full.open("rb") as f:
            while chunk := f.read(_CHUNK):
                fh.update(chunk)
                size += len(chunk)
        h.update(f"{rel}\t{fh.hexdigest()}\n".encode())
        files += 1
    return {"sha256": h.hexdigest(), "files": files, "bytes": size}
