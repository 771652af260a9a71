"""The embedder interface and registry.

An embedder turns decoded RGB images into fixed-length float32 vectors (L2-normalised, so a dot
product is a cosine similarity). The default, ``classical``, needs no download and no network;
real networks (torchvision, timm, open_clip, an ONNX file) plug in with the same two methods.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import ClassVar

import numpy as np
from PIL import Image

from winnow.errors import InvalidInputError

_REGISTRY: dict[str, type[Embedder]] = {}


class Embedder(ABC):
    """``name`` identifies the embedder in caches (change ``version`` when its output changes)."""

    name: ClassVar[str]
    version: ClassVar[int] = 1
    dim: int

    @abstractmethod
    def embed(self, images: Sequence[Image.Image]) -> np.ndarray:
        """``(len(images), dim)`` float32, each row L2-normalised."""

    @property
    def cache_key(self) -> str:
        return f"{self.name}-v{self.version}"


def register(cls: type[Embedder]) -> type[Embedder]:
    _REGISTRY[cls.name] = cls
    return cls


def get_embedder(spec: str = "classical", **kwargs) -> Embedder:
    """An embedder from a spec: ``classical``, or ``NAME:ARGUMENT`` such as ``onnx:/path/model.onnx``."""
    from winnow.embed import classical, onnx  # noqa: F401  (registers the built-in embedders)

    name, _, argument = spec.partition(":")
    if name not in _REGISTRY:
        raise InvalidInputError(f"unknown embedder {name!r}; known: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name](argument, **kwargs) if argument else _REGISTRY[name](**kwargs)


def l2_normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.where(norm > 0, norm, 1.0)
