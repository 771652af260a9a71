"""Turning a version into its output images: preprocessing on every image, N augmented copies of
each train image, each output stored as a blob (shared by every version that makes the same one).

An image that the recipe leaves as it is (no pixel step; upright or no ``auto-orient``; not
augmented) is its own output: its blob is reused, nothing is decoded or encoded. Other outputs
are encoded as JPEG (quality 95) when the source was a JPEG, else PNG; both encoders are
deterministic, so the same recipe on the same image gives the same bytes and the same blob.

Each output's random draw is seeded from the recipe's seed, the source's name and bytes and the
output's index (:func:`output_seed`), so an output does not depend on which other images are in
the version (mosaic partners aside) and two versions share the outputs they have in common.
Work is spread over a process pool; the results are sorted by name, so the outputs table does
not depend on the number of workers.
"""

from __future__ import annotations

import copy
import ctypes
import hashlib
import io
import json
import multiprocessing
import os
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from winnow.core.types import Annotation, ImageRecord, Source
from winnow.store.blobs import BlobStore
from winnow.versions import spec, transforms
from winnow.versions.manifest import Manifest

ProgressFn = Callable[[int, int], None]

#: Pillow format name -> (format to encode outputs in, file extension when it changes).
_ENCODINGS = {"JPEG": ("JPEG", ".jpg"), "PNG": ("PNG", ".png")}
_JPEG_EXTS = {".jpg", ".jpeg", ".jpe", ".jfif"}

#: Below this many images to decode, work in this process (a pool costs more than it saves).
_POOL_MIN_JOBS = 32


def output_seed(seed: int, *parts: object) -> int:
    """A 63-bit seed from the recipe's seed and what identifies one output (stable across machines)."""
    text = "\x1f".join(str(p) for p in (seed, *parts))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") >> 1


def annotation_to_dict(a: Annotation) -> dict[str, Any]:
    return {
        "label": a.label,
        "bbox": None if a.bbox is None else [float(v) for v in a.bbox],
        "polygon": a.polygon,
        "rle": a.rle,
        "iscrowd": bool(a.iscrowd),
        "score": a.score,
        "source": Source(a.source).value,
        "attributes": a.attributes or {},
        "id": a.id,
    }


def annotation_from_dict(d: dict[str, Any]) -> Annotation:
    return Annotation(
        label=d["label"],
        bbox=None if d["bbox"] is None else tuple(d["bbox"]),
        polygon=d["polygon"],
        rle=d["rle"],
        iscrowd=d["iscrowd"],
        score=d["score"],
        source=Source(d["source"]),
        attributes=d["attributes"] or {},
        id=d["id"],
    )


@dataclass(frozen=True)
class _Context:
    """What every worker needs, sent once per worker."""

    blob_root: str
    images: list[tuple[str, str, str | None, list[Annotation]]]  # name, sha, split, annotations
    facts: dict[str, tuple[str, int]]  # sha -> (format, EXIF orientation)
    steps: list[dict[str, Any]]
    augment: dict[str, Any]
    seed: int
    train: list[int]  # indices of train images (mosaic partners)


_CTX: _Context | None = None


def _init(ctx: _Context, tune: bool = True) -> None:
    global _CTX
    _CTX = ctx
    if tune:
        _tune_worker()


def _tune_worker() -> None:
    """One OpenCV thread per worker (the pool already fills the cores), and glibc's allocator told
    to keep the large float buffers augmentations allocate per call instead of returning them to
    the OS each time (measured: the noise op 6 ms -> 2 ms on a 640x480 image)."""
    transforms.load_albumentations()
    import cv2

    cv2.setNumThreads(1)
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL("libc.so.6")
            libc.mallopt(-3, 64 << 20)  # M_MMAP_THRESHOLD
            libc.mallopt(-1, 256 << 20)  # M_TRIM_THRESHOLD
        except (OSError, AttributeError):
            pass


def _decode(blobs: BlobStore, name: str, sha: str) -> np.ndarray:
    from winnow.media import decode

    return np.asarray(decode(blobs.read(sha), name, "RGB"))


def _output_name(name: str, suffix: str, ext: str) -> str:
    p = PurePosixPath(name)
    return str(p.with_name(f"{p.stem}{suffix}{ext}"))


def _encode(image: np.ndarray, fmt: str) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    im = Image.fromarray(image)
    if fmt == "JPEG":
        im.save(buf, "JPEG", quality=95, subsampling=0)
    else:
        im.save(buf, "PNG", compress_level=1)
    return buf.getvalue()


def _make(index: int) -> list[dict[str, Any]]:
    """Every output of image ``index``: its preprocessed samples, then their augmented copies."""
    ctx = _CTX
    assert ctx is not None
    blobs = BlobStore(Path(ctx.blob_root))
    name, sha, split, anns = ctx.images[index]
    source_format, orientation = ctx.facts.get(sha, ("", 1))
    fmt, ext = _ENCODINGS.get(source_format.upper(), ("PNG", ".png"))
    if fmt == "JPEG" and PurePosixPath(name).suffix.lower() in _JPEG_EXTS:
        ext = PurePosixPath(name).suffix
    elif fmt == "PNG" and PurePosixPath(name).suffix.lower() == ".png":
        ext = PurePosixPath(name).suffix
    base = transforms.Sample(image=_decode(blobs, name, sha), annotations=[_copy(a) for a in anns])
    samples = transforms.preprocess(base, spec.pixel_steps(ctx.steps))
    outputs: list[tuple[transforms.Sample, str]] = [(s, s.suffix) for s in samples]
    if split == "train" and ctx.augment.get("outputs"):
        for s in samples:
            for k in range(1, int(ctx.augment["outputs"]) + 1):
                seed = output_seed(ctx.seed, sha, name, s.suffix, k)
                partners = _partner_loader(ctx, blobs, index, seed)
                out = transforms.augment(s, ctx.augment, seed, partners)
                outputs.append((out, f"{s.suffix}_aug{k}"))
    unchanged = _is_identity(ctx.steps, orientation, augmented=False)
    rows = []
    for sample, suffix in outputs:
        if unchanged and suffix == "":  # the plain output of an image the preprocessing leaves alone
            out_sha, out_name = sha, name
        else:
            out_sha = blobs.put(_encode(np.ascontiguousarray(sample.image), fmt), durable=False)
            out_name = _output_name(name, suffix, ext)
        h, w = sample.image.shape[:2]
        rows.append(
            {
                "name": out_name,
                "source": name,
                "split": split,
                "sha256": out_sha,
                "width": int(w),
                "height": int(h),
                "annotations": [annotation_to_dict(a) for a in sample.annotations],
            }
        )
    return rows


def _copy(a: Annotation) -> Annotation:
    return copy.deepcopy(a)


def _partner_loader(ctx: _Context, blobs: BlobStore, index: int, seed: int) -> Callable[[int], list[transforms.Sample]]:
    """Mosaic partners: ``n`` other train images drawn with the output's seed, preprocessed."""

    def load(n: int) -> list[transforms.Sample]:
        pool = [i for i in ctx.train if i != index] or [index]
        rng = np.random.default_rng(seed ^ 0x5EED)
        picks = rng.choice(len(pool), size=n, replace=len(pool) < n)
        out = []
        for p in picks:
            pname, psha, _, panns = ctx.images[pool[int(p)]]
            sample = transforms.Sample(image=_decode(blobs, pname, psha), annotations=[_copy(a) for a in panns])
            out.append(transforms.preprocess(sample, spec.pixel_steps(ctx.steps))[0])
        return out

    return load


def _pool_context() -> multiprocessing.context.BaseContext:
    """Workers forked from a clean server process that has imported albumentations once (forking
    this process could copy OpenCV's or torch's thread pools mid-lock and hang a worker)."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["winnow.versions.materialize"])
    return ctx


def _is_identity(steps: list[dict[str, Any]], orientation: int, augmented: bool) -> bool:
    """True when the recipe leaves this image's pixels as they are."""
    pixel = spec.pixel_steps(steps)
    if augmented:
        return False
    for step in pixel:
        if step["op"] == "auto-orient":
            if orientation != 1:
                return False
        else:
            return False
    return True


def materialize(
    manifest: Manifest,
    blobs: BlobStore,
    facts: dict[str, tuple[str, int]],
    *,
    workers: int | None = None,
    progress: ProgressFn | None = None,
) -> list[dict[str, Any]]:
    """The outputs of ``manifest``'s recipe, as rows sorted by name (blobs written, not yet synced).

    ``facts`` maps each image's sha to its Pillow format and EXIF orientation (from the store).
    """
    recipe = manifest.recipe
    steps, aug, seed = recipe["preprocess"], recipe["augment"], int(recipe["seed"])
    images = manifest.images
    rows: list[dict[str, Any]] = []
    jobs: list[int] = []
    for i, rec in enumerate(images):
        fmt, orientation = facts.get(rec.sha256, ("", 1))
        augmented = rec.split == "train" and bool(aug.get("outputs"))
        if _is_identity(steps, orientation, augmented):
            rows.append(
                {
                    "name": rec.name,
                    "source": rec.name,
                    "split": rec.split,
                    "sha256": rec.sha256,
                    "width": rec.width,
                    "height": rec.height,
                    "annotations": [annotation_to_dict(a) for a in rec.annotations],
                }
            )
        else:
            jobs.append(i)
    done = len(images) - len(jobs)
    total = len(images)
    if progress is not None:
        progress(done, total)
    ctx = _Context(
        blob_root=str(blobs.root),
        images=[(r.name, r.sha256, r.split, r.annotations) for r in images],
        facts=facts,
        steps=steps,
        augment=aug,
        seed=seed,
        train=[i for i, r in enumerate(images) if r.split == "train"],
    )
    workers = workers if workers is not None else int(os.environ.get("WINNOW_WORKERS", os.cpu_count() or 1))
    if jobs:
        if workers <= 1 or len(jobs) < _POOL_MIN_JOBS:
            _init(ctx, tune=False)
            results = map(_make, jobs)
            for made in results:
                rows.extend(made)
                done += 1
                if progress is not None:
                    progress(done, total)
        else:
            with ProcessPoolExecutor(
                max_workers=workers, mp_context=_pool_context(), initializer=_init, initargs=(ctx,)
            ) as pool:
                for made in pool.map(_make, jobs, chunksize=max(1, min(16, len(jobs) // (workers * 8) or 1))):
                    rows.extend(made)
                    done += 1
                    if progress is not None:
                        progress(done, total)
    _dedupe_names(rows)
    rows.sort(key=lambda r: r["name"])
    return rows


def _dedupe_names(rows: Sequence[dict[str, Any]]) -> None:
    """Make output names unique (an input may already be called ``x_aug1.jpg``): add ``~N``."""
    seen: set[str] = set()
    for row in rows:
        name = row["name"]
        if name in seen:
            p = PurePosixPath(name)
            n = 2
            while (candidate := str(p.with_name(f"{p.stem}~{n}{p.suffix}"))) in seen:
                n += 1
            row["name"] = name = candidate
        seen.add(name)


def outputs_table(rows: list[dict[str, Any]]):
    import pyarrow as pa

    from winnow.versions.manifest import canonical_json

    return pa.table(
        {
            "name": pa.array([r["name"] for r in rows], pa.string()),
            "source": pa.array([r["source"] for r in rows], pa.string()),
            "split": pa.array([r["split"] for r in rows], pa.string()),
            "sha256": pa.array([r["sha256"] for r in rows], pa.string()),
            "width": pa.array([r["width"] for r in rows], pa.int32()),
            "height": pa.array([r["height"] for r in rows], pa.int32()),
            "annotations": pa.array([canonical_json(r["annotations"]) for r in rows], pa.string()),
        }
    )


def records_from_outputs(table, blobs: BlobStore) -> list[ImageRecord]:
    """Output records (their ``file`` pointing at the blob) from an outputs table."""
    cols = table.to_pydict()
    return [
        ImageRecord(
            name=name,
            width=cols["width"][i],
            height=cols["height"][i],
            split=cols["split"][i],
            sha256=cols["sha256"][i],
            file=blobs.path(cols["sha256"][i]),
            annotations=[annotation_from_dict(d) for d in json.loads(cols["annotations"][i])],
            metadata={"source": cols["source"][i]},
        )
        for i, name in enumerate(cols["name"])
    ]
