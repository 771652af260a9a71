"""The default embedder: classical descriptors, no weights, no download.

Three blocks, each L2-normalised then concatenated and normalised again (dim 224):

* a 12x12 grayscale thumbnail, zero-mean (layout and shape: 144 values);
* a 4x4x4 RGB colour histogram (64 values, square-rooted: Hellinger);
* a 2x2-cell histogram of gradient orientations, 4 bins per cell, magnitude-weighted (16 values).

Good enough to find near duplicates and gross outliers and to feed a classical classifier for
label-error detection; swap in a network embedder for semantic neighbours.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

from winnow.embed.base import Embedder, l2_normalise, register

_THUMB = 12


def _thumbnail(im: Image.Image) -> np.ndarray:
    g = np.asarray(im.convert("L").resize((_THUMB, _THUMB), Image.Resampling.BILINEAR), dtype=np.float32)
    g = g - g.mean()
    return l2_normalise(g.ravel())


def _colour_histogram(rgb: np.ndarray) -> np.ndarray:
    q = (rgb // 64).astype(np.int32)
    idx = q[..., 0] * 16 + q[..., 1] * 4 + q[..., 2]
    hist = np.bincount(idx.ravel(), minlength=64).astype(np.float32)
    return l2_normalise(np.sqrt(hist / max(idx.size, 1)))


def _gradient_histogram(gray: np.ndarray) -> np.ndarray:
    gx = np.zeros_like(gray)
    gy = np.zeros_like(gray)
    gx[:, 1:-1] = gray[:, 2:] - gray[:, :-2]
    gy[1:-1, :] = gray[2:, :] - gray[:-2, :]
    mag = np.hypot(gx, gy)
    ang = np.mod(np.arctan2(gy, gx), np.pi)  # unsigned orientation
    bins = np.minimum((ang / np.pi * 4).astype(np.int32), 3)
    h, w = gray.shape
    out = []
    for cy in range(2):
        for cx in range(2):
            sl = (slice(cy * h // 2, (cy + 1) * h // 2), slice(cx * w // 2, (cx + 1) * w // 2))
            out.append(np.bincount(bins[sl].ravel(), weights=mag[sl].ravel(), minlength=4))
    return l2_normalise(np.concatenate(out).astype(np.float32))


@register
class ClassicalEmbedder(Embedder):
    name = "classical"
    version = 2  # 2: images with alpha are composited over mid-grey (media.decode)
    dim = _THUMB * _THUMB + 64 + 16

    def embed_one(self, im: Image.Image) -> np.ndarray:
        small = im.convert("RGB")
        if max(small.size) > 128:
            small = small.copy()
            small.thumbnail((128, 128), Image.Resampling.BILINEAR)
        rgb = np.asarray(small, dtype=np.uint8)
        gray = rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        parts = [_thumbnail(small), _colour_histogram(rgb), _gradient_histogram(gray)]
        return l2_normalise(np.concatenate(parts))

    def embed(self, images: Sequence[Image.Image]) -> np.ndarray:
        if not images:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([self.embed_one(im) for im in images])
