"""A version's manifest: Parquet tables of images and annotation revisions, a content id, checksums.

A version lives in ``<home>/versions/<project id>/<version_id>/``:

- ``images.parquet``: one row per image (``name``, ``sha256`` of its bytes, ``split``, size, the
  store's image id, tags, metadata as JSON);
- ``annotations.parquet``: one row per annotation (``image`` name, the store's annotation id,
  label, box, polygon/RLE/attributes as JSON, iscrowd, source, score) and its ``revision``: a hash
  of its content, so a changed label is a changed revision;
- ``version.json``: the task, classes and recipe, the counts, and the SHA-256 of each Parquet file;
- ``outputs.parquet`` (written once, when the version is first materialised): the files the
  recipe makes (preprocessed, tiled, augmented), each pointing at a blob.

The **version id** is a SHA-256 over the canonical content (classes, task, recipe, every image's
name, bytes and split, every annotation's revision), not over Parquet bytes, so it does not depend
on how a library encodes a file. The files are written read-only; every read re-hashes them
against the checksums (``version.json``'s own hash is kept in the database), so a changed file is
detected, never used.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from winnow.core.types import Annotation, ImageRecord, Source
from winnow.errors import WinnowError

#: Bump when the manifest layout or the id's definition changes.
SCHEMA = 1

IMAGES_FILE = "images.parquet"
ANNOTATIONS_FILE = "annotations.parquet"
OUTPUTS_FILE = "outputs.parquet"
VERSION_FILE = "version.json"


class TamperedError(WinnowError):
    """A version's files no longer match their checksums."""


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no spaces: equal values give equal text on any machine."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _number(x: float | None) -> float | None:
    """Floats rounded to 1e-6 px for hashing (a box read back from a file may differ in the last bit)."""
    return None if x is None else round(float(x), 6)


def annotation_revision(a: Annotation) -> str:
    """A hash of what an annotation says (geometry, label, flags, attributes), not of its id."""
    body = [
        a.label,
        None if a.bbox is None else [_number(v) for v in a.bbox],
        None if a.polygon is None else [[_number(v) for v in part] for part in a.polygon],
        a.rle,
        bool(a.iscrowd),
        _number(a.score),
        Source(a.source).value,
        a.attributes or {},
    ]
    return hashlib.sha256(canonical_json(body).encode()).hexdigest()[:32]


@dataclass
class Manifest:
    """A version's content, as written to and read from its folder."""

    task: str
    classes: list[str]
    recipe: dict[str, Any]
    images: list[ImageRecord]  # sorted by name; ``annotations`` hold the revisions

    def content_id(self) -> str:
        """The version id: SHA-256 of the canonical content."""
        h = hashlib.sha256()
        h.update(canonical_json({"schema": SCHEMA, "task": self.task, "classes": self.classes, "recipe": self.recipe}).encode())
        for rec in self.images:
            h.update(f"\n{rec.name}\t{rec.sha256}\t{rec.split}".encode())
            for rev in sorted(annotation_revision(a) for a in rec.annotations):
                h.update(f"\t{rev}".encode())
        return h.hexdigest()

    def counts(self) -> dict[str, Any]:
        """Images and annotations per split, and per class per split (the ``summary`` of a version)."""
        splits: dict[str, dict[str, Any]] = {}
        for rec in self.images:
            s = splits.setdefault(rec.split or "unassigned", {"images": 0, "annotations": 0, "classes": {}})
            s["images"] += 1
            s["annotations"] += len(rec.annotations)
            for a in rec.annotations:
                s["classes"][a.label] = s["classes"].get(a.label, 0) + 1
        return {
            "images": len(self.images),
            "annotations": sum(s["annotations"] for s in splits.values()),
            "splits": {k: splits[k] for k in sorted(splits)},
        }


# ----------------------------------------------------------------------------- files


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _write_readonly(path: Path, write) -> str:
    """Write ``path`` atomically through ``write(tmp_path)``, fsync it, make it read-only; return its sha."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    write(tmp)
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.chmod(tmp, stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
    sha = sha256_file(tmp)
    os.replace(tmp, path)  # a file left by a version whose row never committed is replaced
    return sha


def _images_table(images: list[ImageRecord]):
    import pyarrow as pa

    return pa.table(
        {
            "name": pa.array([r.name for r in images], pa.string()),
            "sha256": pa.array([r.sha256 for r in images], pa.string()),
            "split": pa.array([r.split for r in images], pa.string()),
            "width": pa.array([r.width for r in images], pa.int32()),
            "height": pa.array([r.height for r in images], pa.int32()),
            "image_id": pa.array([r.id for r in images], pa.int64()),
            "tags": pa.array([list(r.tags) for r in images], pa.list_(pa.string())),
            "metadata": pa.array([canonical_json(r.metadata) for r in images], pa.string()),
        }
    )


def _json_or_none(value: Any) -> str | None:
    return None if value is None else canonical_json(value)


def annotations_table(images: list[ImageRecord], *, revisions: bool = True):
    """Annotation rows of ``images`` (one column per field; JSON for the nested ones)."""
    import pyarrow as pa

    cols: dict[str, list[Any]] = {k: [] for k in (
        "image", "ann_id", "label", "x1", "y1", "x2", "y2", "polygon", "rle", "iscrowd", "score", "source", "attributes",
        "external_id",
    )}
    if revisions:
        cols["revision"] = []
    for rec in images:
        for a in rec.annotations:
            cols["image"].append(rec.name)
            cols["ann_id"].append(a.id)
            cols["label"].append(a.label)
            box = a.bbox if a.bbox is not None else (None, None, None, None)
            for k, v in zip(("x1", "y1", "x2", "y2"), box, strict=True):
                cols[k].append(None if v is None else float(v))
            cols["polygon"].append(_json_or_none(a.polygon))
            cols["rle"].append(_json_or_none(a.rle))
            cols["iscrowd"].append(bool(a.iscrowd))
            cols["score"].append(a.score)
            cols["source"].append(Source(a.source).value)
            cols["attributes"].append(_json_or_none(a.attributes or None))
            cols["external_id"].append(None if a.external_id is None else str(a.external_id))
            if revisions:
                cols["revision"].append(annotation_revision(a))
    types = {"ann_id": pa.int64(), "x1": pa.float64(), "y1": pa.float64(), "x2": pa.float64(), "y2": pa.float64(),
             "iscrowd": pa.bool_(), "score": pa.float64()}
    return pa.table({k: pa.array(v, types.get(k, pa.string())) for k, v in cols.items()})


def annotations_from_table(table) -> dict[str, list[Annotation]]:
    """Annotations by image name, from a table :func:`annotations_table` wrote."""
    cols = table.to_pydict()
    out: dict[str, list[Annotation]] = {}
    load = lambda s: None if s is None else json.loads(s)  # noqa: E731
    for i, image in enumerate(cols["image"]):
        x1 = cols["x1"][i]
        out.setdefault(image, []).append(
            Annotation(
                label=cols["label"][i],
                bbox=None if x1 is None else (x1, cols["y1"][i], cols["x2"][i], cols["y2"][i]),
                polygon=load(cols["polygon"][i]),
                rle=load(cols["rle"][i]),
                iscrowd=bool(cols["iscrowd"][i]),
                score=cols["score"][i],
                source=Source(cols["source"][i]),
                attributes=load(cols["attributes"][i]) or {},
                external_id=cols["external_id"][i],
                id=cols["ann_id"][i],
            )
        )
    return out


def write_manifest(folder: Path, manifest: Manifest, version_id: str) -> str:
    """Write the manifest's files into ``folder`` (created); return ``version.json``'s SHA-256."""
    import pyarrow.parquet as pq

    folder.mkdir(parents=True, exist_ok=True)
    files = {
        IMAGES_FILE: _write_readonly(folder / IMAGES_FILE, lambda p: pq.write_table(_images_table(manifest.images), p)),
        ANNOTATIONS_FILE: _write_readonly(
            folder / ANNOTATIONS_FILE, lambda p: pq.write_table(annotations_table(manifest.images), p)
        ),
    }
    doc = {
        "schema": SCHEMA,
        "version_id": version_id,
        "task": manifest.task,
        "classes": manifest.classes,
        "recipe": manifest.recipe,
        "counts": manifest.counts(),
        "files": files,
    }
    text = json.dumps(doc, sort_keys=True, indent=1, ensure_ascii=False) + "\n"
    return _write_readonly(folder / VERSION_FILE, lambda p: p.write_text(text, encoding="utf-8"))


def _check(path: Path, expected: str, version_id: str) -> None:
    if not path.is_file():
        raise TamperedError(f"version {version_id[:12]}: {path.name} is missing from {path.parent}")
    if sha256_file(path) != expected:
        raise TamperedError(
            f"version {version_id[:12]}: {path.name} was modified after the version was made "
            f"(its SHA-256 no longer matches); restore it from a backup or re-create the version"
        )


def read_manifest(folder: Path, version_id: str, manifest_sha256: str) -> Manifest:
    """Read and verify a version's manifest (raises :class:`TamperedError` on any mismatch)."""
    import pyarrow.parquet as pq

    _check(folder / VERSION_FILE, manifest_sha256, version_id)
    doc = json.loads((folder / VERSION_FILE).read_text(encoding="utf-8"))
    for name, sha in doc["files"].items():
        _check(folder / name, sha, version_id)
    cols = pq.read_table(folder / IMAGES_FILE).to_pydict()
    anns = annotations_from_table(pq.read_table(folder / ANNOTATIONS_FILE))
    images = [
        ImageRecord(
            name=name,
            width=cols["width"][i],
            height=cols["height"][i],
            split=cols["split"][i],
            sha256=cols["sha256"][i],
            id=cols["image_id"][i],
            tags=list(cols["tags"][i] or []),
            metadata=json.loads(cols["metadata"][i]),
            annotations=anns.get(name, []),
        )
        for i, name in enumerate(cols["name"])
    ]
    return Manifest(task=doc["task"], classes=list(doc["classes"]), recipe=doc["recipe"], images=images)


def write_outputs(folder: Path, table) -> str:
    """Write a version's materialised outputs (once); return the file's SHA-256."""
    import pyarrow.parquet as pq

    return _write_readonly(folder / OUTPUTS_FILE, lambda p: pq.write_table(table, p))


def read_outputs(folder: Path, version_id: str, outputs_sha256: str):
    import pyarrow.parquet as pq

    _check(folder / OUTPUTS_FILE, outputs_sha256, version_id)
    return pq.read_table(folder / OUTPUTS_FILE)
