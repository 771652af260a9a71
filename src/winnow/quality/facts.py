"""The expensive per-image facts, computed in one decode per blob and cached by content.

One pass decodes each image once and measures everything the checks need from pixels:

========================  =================================================================
``decode_error``          ``""`` when the image decodes, else why it does not (truncated...)
``mean``, ``std``         luminance mean and standard deviation, 0..255
``dark_fraction``         share of pixels with luminance < 40
``bright_fraction``       share of pixels with luminance > 220
``blur``                  variance of the Laplacian of the luminance at 256 px (low = blurry)
``entropy``               Shannon entropy of the luminance histogram, bits (0..8)
``colour_spread``         mean over pixels of max-min across R, G, B (0 = grey pixels)
``phash``, ``dhash``      64-bit perceptual hashes (signed int64 for Parquet)
``embedding``             the default (``classical``) embedding, float32
========================  =================================================================

The pass runs on a process pool (one worker per core) for more than a few dozen images, and
its rows are cached in Parquet (:class:`~winnow.store.cache.FactTable`), so the second
``winnow check`` decodes nothing.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from winnow import media

FACTS_TABLE = "facts-v2"
_STATS_SIDE = 256
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def _bits_to_int64(bits: np.ndarray) -> int:
    """64 booleans, first = most significant, as a signed int64 (Parquet has no uint64)."""
    return int(np.packbits(bits.ravel().astype(np.uint8)).view(">i8")[0])


def phash(gray32: np.ndarray) -> int:
    """Perceptual hash: sign of the 8x8 lowest DCT frequencies of a 32x32 grey image vs their median."""
    from scipy.fft import dctn

    coeffs = dctn(gray32.astype(np.float64), norm="ortho")[:8, :8]
    return _bits_to_int64(coeffs > np.median(coeffs))


def dhash(gray9x8: np.ndarray) -> int:
    """Difference hash: is each pixel brighter than its right neighbour (8x9 grey image)."""
    return _bits_to_int64(gray9x8[:, 1:] > gray9x8[:, :-1])


def laplacian_variance(gray: np.ndarray) -> float:
    lap = -4 * gray[1:-1, 1:-1] + gray[:-2, 1:-1] + gray[2:, 1:-1] + gray[1:-1, :-2] + gray[1:-1, 2:]
    return float(lap.var()) if lap.size else 0.0


def measure(im: Image.Image) -> dict[str, Any]:
    """Every pixel fact of one decoded RGB image (see the module table)."""
    from winnow.embed.classical import ClassicalEmbedder

    small = im
    if max(im.size) > _STATS_SIDE:
        small = im.copy()
        small.thumbnail((_STATS_SIDE, _STATS_SIDE), Image.Resampling.BILINEAR)
    rgb = np.asarray(small, dtype=np.uint8)
    gray = rgb.astype(np.float32) @ _LUMA
    hist = np.bincount(np.clip(gray, 0, 255).astype(np.uint8).ravel(), minlength=256).astype(np.float64)
    p = hist[hist > 0] / gray.size
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    spread = np.maximum(np.maximum(r, g), b) - np.minimum(np.minimum(r, g), b)  # channel-wise: no axis reduction
    grey_img = small.convert("L")  # hashes from the thumbnail: same bits, a fraction of the resize cost
    g32 = np.asarray(grey_img.resize((32, 32), Image.Resampling.LANCZOS), dtype=np.float32)
    g98 = np.asarray(grey_img.resize((9, 8), Image.Resampling.LANCZOS), dtype=np.float32)
    return {
        "decode_error": "",
        "mean": float(gray.mean()),
        "std": float(gray.std()),
        "dark_fraction": float((gray < 40).mean()),
        "bright_fraction": float((gray > 220).mean()),
        "blur": laplacian_variance(gray),
        "entropy": float(-(p * np.log2(p)).sum()),
        "colour_spread": float(spread.mean()),
        "phash": phash(g32),
        "dhash": dhash(g98),
        "embedding": ClassicalEmbedder().embed_one(small),
    }


_EMPTY = {
    "mean": float("nan"),
    "std": float("nan"),
    "dark_fraction": float("nan"),
    "bright_fraction": float("nan"),
    "blur": float("nan"),
    "entropy": float("nan"),
    "colour_spread": float("nan"),
    "phash": 0,
    "dhash": 0,
}


def facts_of_file(path: str) -> dict[str, Any]:
    """Facts of the image stored at ``path`` (never raises for a bad image: ``decode_error``)."""
    data = Path(path).read_bytes()
    try:
        im = media.decode(data, Path(path).name, mode="RGB", min_side=_STATS_SIDE)
    except media.InvalidImageError as exc:
        from winnow.embed.classical import ClassicalEmbedder

        return dict(_EMPTY, decode_error=str(exc).split(": ", 1)[-1] or "undecodable",
                    embedding=np.zeros(ClassicalEmbedder.dim, dtype=np.float32))
    return measure(im)


def compute(
    paths: dict[str, Path],
    *,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[dict[str, Any]]:
    """Facts rows (with ``sha256``) for every ``{sha: blob path}``."""
    items: Sequence[tuple[str, Path]] = sorted(paths.items())
    total = len(items)
    rows: list[dict[str, Any]] = []
    workers = workers if workers is not None else (os.cpu_count() or 1)
    if total < 64 or workers <= 1:
        for n, (sha, path) in enumerate(items, 1):
            rows.append(dict(facts_of_file(str(path)), sha256=sha))
            if progress is not None:
                progress(n, total)
        return rows
    with ProcessPoolExecutor(max_workers=workers) as pool:
        results = pool.map(facts_of_file, [str(p) for _, p in items], chunksize=16)
        for n, ((sha, _), row) in enumerate(zip(items, results, strict=True), 1):
            rows.append(dict(row, sha256=sha))
            if progress is not None:
                progress(n, total)
    return rows
