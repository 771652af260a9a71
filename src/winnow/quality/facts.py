"""The expensive per-image facts, computed once per blob and cached by content.

Two tiers, each cached in its own Parquet table (:class:`~winnow.store.cache.FactTable`):

**The hash tier** (:data:`HASHES_TABLE`, :func:`hashes_of_file`): what the duplicate checks need
to find candidate pairs, and nothing else. The image is decoded in grey at a reduced scale (a
JPEG at libjpeg's DCT scaling, 1/2 to 1/8, so both sides stay >= 64 px; other formats in full),
box-reduced by an integer factor while both sides stay >= 64 px, then area-averaged (BOX) to
32x32 for the pHash and from that to 9x8 for the dHash; a 32-bin histogram of its grey levels comes with
them (``ghist``: it lets a crop through the loose tier of the near-duplicate rule, and keeps
unrelated pictures out of it). A fraction of the full pass's cost, and of imagehash's
on large photos (it decodes every pixel at full scale).

**The full pass** (:data:`FACTS_TABLE`, :func:`facts_of_file`): one decode whose longer side is
>= 256 px (a JPEG at libjpeg's DCT scale), shrunk to fit 256 px, measures
every pixel fact of every check, plus the hashes, computed by the hash tier's own function on the
same bytes (so the two tiers never disagree on a hash):

========================  =================================================================
``decode_error``          ``""`` when the image decodes, else why it does not (truncated...)
``mean``, ``std``         luminance mean and standard deviation, 0..255
``dark_fraction``         share of pixels with luminance < 40
``bright_fraction``       share of pixels with luminance > 220
``blur``                  variance of the Laplacian of the luminance at 256 px (low = blurry)
``entropy``               Shannon entropy of the luminance histogram, bits (0..8)
``colour_spread``         mean over pixels of max-min across R, G, B (0 = grey pixels)
``colour_pixels``         share of pixels whose max-min exceeds 24: visibly coloured ones (a
                          colour drawing on a large grey or white background has a low mean
                          spread but not a low share)
``phash``, ``dhash``      64-bit perceptual hashes (signed int64 for Parquet), the hash tier's
``ghist``                 the hash tier's 32-bin grey histogram (float32, sums to 1)
``embedding``             the default (``classical``) embedding, float32
========================  =================================================================

The duplicate checks read the hash tier and ask for embeddings only for the blobs in a candidate
pair (:func:`embedding_of_file`: the very embedding the full pass stores). Every pass runs on a
process pool (one worker per core) past a few dozen images, in chunks, returning small rows.
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

FACTS_TABLE = "facts-v5"  # v5: alpha over mid-grey, JPEGs decoded to fit 256 px, colour_pixels
HASHES_TABLE = "hashes-v3"  # v3: alpha over mid-grey, BOX-averaged 32x32 and 9x8
_STATS_SIDE = 256
_HASH_SIDE = 64
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
#: A pixel whose max(R,G,B) - min(R,G,B) exceeds this is visibly coloured (``colour_pixels``).
COLOUR_PIXEL_SPREAD = 24


def _dct_rows(n: int = 32, k: int = 8) -> np.ndarray:
    """The first ``k`` rows of the orthonormal ``n``-point DCT-II matrix (``scipy.fft.dct(norm="ortho")``)."""
    x = np.arange(n)[None, :]
    rows = np.cos(np.pi * (2 * x + 1) * np.arange(k)[:, None] / (2 * n)) * np.sqrt(2.0 / n)
    rows[0] /= np.sqrt(2.0)
    return rows


_DCT8 = _dct_rows()


def _bits_to_int64(bits: np.ndarray) -> int:
    """64 booleans, first = most significant, as a signed int64 (Parquet has no uint64)."""
    return int(np.packbits(bits.ravel().astype(np.uint8)).view(">i8")[0])


def phash(gray32: np.ndarray) -> int:
    """Perceptual hash: sign of the 8x8 lowest DCT frequencies of a 32x32 grey image vs their median.

    The 2-D orthonormal DCT-II restricted to its 8x8 corner, as two small matrix products.
    """
    coeffs = (_DCT8 @ gray32.astype(np.float64) @ _DCT8.T).ravel()
    mid = np.partition(coeffs, (31, 32))  # the median of 64 values, without np.median's overhead
    return _bits_to_int64(coeffs > (mid[31] + mid[32]) / 2)


def dhash(gray9x8: np.ndarray) -> int:
    """Difference hash: is each pixel brighter than its right neighbour (8x9 grey image)."""
    return _bits_to_int64(gray9x8[:, 1:] > gray9x8[:, :-1])


def hash_image(im: Image.Image) -> tuple[int, int]:
    """``(phash, dhash)`` of an image decoded by :func:`decode_for_hashes` (or any image: grey is taken)."""
    grey = im if im.mode == "L" else im.convert("L")
    factor = min(grey.size) // _HASH_SIDE
    if factor > 1:  # an integer box average first: cheap, and exact
        grey = grey.reduce(factor)
    # area averages (BOX): a third of LANCZOS's cost on a 128x96 source, and the 8x8 lowest DCT
    # frequencies barely notice the filter (0.3 bits apart on average, max 4, on the bench)
    small = grey.resize((32, 32), Image.Resampling.BOX)
    g32 = np.asarray(small, dtype=np.float32)
    g98 = np.asarray(small.resize((9, 8), Image.Resampling.BOX), dtype=np.float32)
    return phash(g32), dhash(g98)


def decode_for_hashes(data: bytes, name: str) -> Image.Image:
    """The grey image the hashes are taken from (a JPEG at a reduced DCT scale, sides >= 64 px)."""
    return media.decode(data, name, mode="L", min_side=_HASH_SIDE)


#: Bins of the grey histogram the hash tier keeps (``ghist``).
GHIST_BINS = 32


def grey_histogram(im: Image.Image) -> np.ndarray:
    """The normalised ``GHIST_BINS``-bin histogram of an image's grey levels (sums to 1): what a
    crop barely moves (a 5% crop: L1 <= 0.12 on the bench) while it shifts the pHash grid."""
    grey = im if im.mode == "L" else im.convert("L")
    counts = np.asarray(grey.histogram(), dtype=np.float64).reshape(GHIST_BINS, -1).sum(axis=1)
    return (counts / max(counts.sum(), 1.0)).astype(np.float32)


def _zero_histogram() -> np.ndarray:
    return np.zeros(GHIST_BINS, dtype=np.float32)


def hashes_of_bytes(data: bytes, name: str) -> dict[str, Any]:
    """``{"decode_error", "phash", "dhash", "ghist"}`` of an encoded image (never raises for a bad one)."""
    try:
        im = decode_for_hashes(data, name)
    except media.InvalidImageError as exc:
        return {"decode_error": _reason(exc), "phash": 0, "dhash": 0, "ghist": _zero_histogram()}
    ph, dh = hash_image(im)
    return {"decode_error": "", "phash": ph, "dhash": dh, "ghist": grey_histogram(im)}


def hashes_of_file(path: str) -> dict[str, Any]:
    """The hash tier of the image stored at ``path``."""
    return hashes_of_bytes(Path(path).read_bytes(), Path(path).name)


def laplacian_variance(gray: np.ndarray) -> float:
    lap = -4 * gray[1:-1, 1:-1] + gray[:-2, 1:-1] + gray[2:, 1:-1] + gray[1:-1, :-2] + gray[1:-1, 2:]
    return float(lap.var()) if lap.size else 0.0


def _reason(exc: Exception) -> str:
    return str(exc).split(": ", 1)[-1] or "undecodable"


def _stats_image(im: Image.Image) -> Image.Image:
    """The <= 256 px image the statistics and the embedding are measured on."""
    if max(im.size) <= _STATS_SIDE:
        return im
    small = im.copy()
    small.thumbnail((_STATS_SIDE, _STATS_SIDE), Image.Resampling.BILINEAR)
    return small


def _decode_for_stats(data: bytes, name: str) -> Image.Image:
    return _stats_image(media.decode(data, name, mode="RGB", fit=_STATS_SIDE))


def measure(im: Image.Image) -> dict[str, Any]:
    """Every pixel statistic and the embedding of one decoded RGB image (see the module table;
    the hashes come from :func:`hashes_of_bytes`)."""
    from winnow.embed.classical import ClassicalEmbedder

    small = _stats_image(im)
    rgb = np.asarray(small, dtype=np.uint8)
    gray = rgb.astype(np.float32) @ _LUMA
    hist = np.bincount(np.clip(gray, 0, 255).astype(np.uint8).ravel(), minlength=256).astype(np.float64)
    p = hist[hist > 0] / gray.size
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    spread = np.maximum(np.maximum(r, g), b) - np.minimum(np.minimum(r, g), b)  # channel-wise: no axis reduction
    return {
        "decode_error": "",
        "mean": float(gray.mean()),
        "std": float(gray.std()),
        "dark_fraction": float((gray < 40).mean()),
        "bright_fraction": float((gray > 220).mean()),
        "blur": laplacian_variance(gray),
        "entropy": float(-(p * np.log2(p)).sum()),
        "colour_spread": float(spread.mean()),
        "colour_pixels": float((spread > COLOUR_PIXEL_SPREAD).mean()),
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
    "colour_pixels": float("nan"),
    "phash": 0,
    "dhash": 0,
}


def _zero_embedding() -> np.ndarray:
    from winnow.embed.classical import ClassicalEmbedder

    return np.zeros(ClassicalEmbedder.dim, dtype=np.float32)


def facts_of_file(path: str) -> dict[str, Any]:
    """Facts of the image stored at ``path`` (never raises for a bad image: ``decode_error``)."""
    data = Path(path).read_bytes()
    name = Path(path).name
    try:
        im = media.decode(data, name, mode="RGB", fit=_STATS_SIDE)
    except media.InvalidImageError as exc:
        return dict(_EMPTY, decode_error=_reason(exc), embedding=_zero_embedding(), ghist=_zero_histogram())
    hashes = hashes_of_bytes(data, name)
    return dict(measure(im), phash=hashes["phash"], dhash=hashes["dhash"], ghist=hashes["ghist"])


def embedding_of_file(path: str) -> np.ndarray:
    """The full pass's ``embedding`` of the image at ``path`` alone (zeros when it does not decode)."""
    from winnow.embed.classical import ClassicalEmbedder

    try:
        small = _decode_for_stats(Path(path).read_bytes(), Path(path).name)
    except media.InvalidImageError:
        return _zero_embedding()
    return ClassicalEmbedder().embed_one(small)


def run_pool(
    fn: Callable[[str], Any],
    paths: dict[str, Path],
    *,
    workers: int | None = None,
    min_pool: int = 64,
    progress: Callable[[int, int], None] | None = None,
) -> list[tuple[str, Any]]:
    """``[(sha, fn(path))]`` for every ``{sha: blob path}``, sorted by sha.

    Runs in this process for fewer than ``min_pool`` blobs (a pool costs tens of milliseconds to
    start), else on a process pool, in chunks of about an eighth of each worker's share (at most
    256 paths per round trip), so workers stay busy and only paths and small results are pickled.
    """
    items: Sequence[tuple[str, Path]] = sorted(paths.items())
    total = len(items)
    workers = workers if workers is not None else (os.cpu_count() or 1)
    out: list[tuple[str, Any]] = []
    if total < min_pool or workers <= 1:
        for n, (sha, path) in enumerate(items, 1):
            out.append((sha, fn(str(path))))
            if progress is not None:
                progress(n, total)
        return out
    chunk = max(4, min(256, total // (workers * 8)))
    with ProcessPoolExecutor(max_workers=workers) as pool:
        results = pool.map(fn, [str(p) for _, p in items], chunksize=chunk)
        for n, ((sha, _), value) in enumerate(zip(items, results, strict=True), 1):
            out.append((sha, value))
            if progress is not None:
                progress(n, total)
    return out


def compute(
    paths: dict[str, Path],
    *,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[dict[str, Any]]:
    """Facts rows (with ``sha256``) for every ``{sha: blob path}``."""
    return [dict(row, sha256=sha) for sha, row in run_pool(facts_of_file, paths, workers=workers, progress=progress)]


def compute_hashes(
    paths: dict[str, Path],
    *,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[dict[str, Any]]:
    """Hash-tier rows (``sha256``, ``decode_error``, ``phash``, ``dhash``, ``ghist``) for every ``{sha: blob path}``."""
    rows = run_pool(hashes_of_file, paths, workers=workers, min_pool=256, progress=progress)
    return [dict(row, sha256=sha) for sha, row in rows]


def compute_embeddings(
    paths: dict[str, Path],
    *,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[dict[str, Any]]:
    """The classical embedding (as in the full pass) of every ``{sha: blob path}``: rows ``sha256``, ``embedding``."""
    rows = run_pool(embedding_of_file, paths, workers=workers, progress=progress)
    return [{"sha256": sha, "embedding": emb} for sha, emb in rows]
