"""What checks look at: a project's records plus facts computed once and shared.

:class:`ProjectView` is built once per ``winnow check`` run. Everything expensive is a lazy,
cached property: the pixel facts (one decode per blob, cached in Parquet across runs), the
embedding matrix and the k-nearest-neighbour graph. Checks index these by record position
``i`` (``view.records[i]``); records that share bytes share facts. The duplicate checks need less:
:attr:`ProjectView.hashes` (a cheap hash tier, its own cache) and :meth:`ProjectView.embeddings_of`
(embeddings of the few candidates only), so ``--only near_duplicate`` never runs the full pass.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property
from typing import Any

import numpy as np
from sqlalchemy import select

from winnow.config import DEFAULT_WORKSPACE
from winnow.core.types import Dataset, ImageRecord, Task
from winnow.quality import facts as facts_mod
from winnow.services.datasets import load_dataset
from winnow.store import models as m
from winnow.store.cache import FactTable
from winnow.store.db import Store

ProgressFn = Callable[[int, int], None]


class ProjectView:
    def __init__(
        self,
        store: Store,
        project: str,
        *,
        workspace: str = DEFAULT_WORKSPACE,
        dataset: Dataset | None = None,
        embedder: str = "classical",
        progress: ProgressFn | None = None,
    ):
        self.store = store
        self.project = project
        self.workspace = workspace
        self._dataset = dataset
        self.embedder = embedder
        self.progress = progress

    # ------------------------------------------------------------------ records

    @cached_property
    def dataset(self) -> Dataset:
        return self._dataset if self._dataset is not None else load_dataset(self.store, self.project, workspace=self.workspace)

    @property
    def records(self) -> list[ImageRecord]:
        return self.dataset.images

    @property
    def task(self) -> Task:
        return self.dataset.task or Task.DETECT

    @property
    def classes(self) -> list[str]:
        return self.dataset.classes

    def __len__(self) -> int:
        return len(self.records)

    @cached_property
    def shas(self) -> list[str]:
        return [r.sha256 for r in self.records]

    @cached_property
    def blobs(self) -> dict[str, dict[str, Any]]:
        """Header facts of each blob: ``format``, ``channels``, ``mode``, ``orientation``, ``size``, raw size."""
        out: dict[str, dict[str, Any]] = {}
        shas = sorted(set(self.shas))
        keys = ("format", "channels", "mode", "orientation", "size", "raw_width", "raw_height")
        columns = [m.Blob.sha256, *(getattr(m.Blob, k) for k in keys)]
        with self.store.read() as session:
            for i in range(0, len(shas), 500):  # plain rows, not ORM objects: 5x faster on 5,000 blobs
                for sha, *values in session.execute(select(*columns).where(m.Blob.sha256.in_(shas[i : i + 500]))):
                    out[sha] = dict(zip(keys, values, strict=True))
        return out

    @cached_property
    def notes(self) -> list[dict[str, str]]:
        """What checks want the report summary to say beyond findings (what they skipped, why)."""
        return []

    def note(self, check: str, message: str) -> None:
        self.notes.append({"check": check, "message": message})

    def memo(self, key: Any, compute: Callable[[], Any]) -> Any:
        """A derived fact shared by several checks (box tables, duplicate groups), computed once
        per view and keyed by ``key`` (include any parameter the fact depends on)."""
        store = self.__dict__.setdefault("_memo", {})
        if key not in store:
            store[key] = compute()
        return store[key]

    # ------------------------------------------------------------------ pixel facts

    @cached_property
    def facts(self) -> dict[str, np.ndarray]:
        """Column arrays aligned with :attr:`records` (see :mod:`winnow.quality.facts`)."""
        table = FactTable(self.store.home, facts_mod.FACTS_TABLE)
        wanted = sorted(set(self.shas))
        cached = table.read(wanted)
        missing = {sha: self.store.blobs.path(sha) for sha in wanted if sha not in cached}
        if missing:
            rows = facts_mod.compute(missing, progress=self.progress)
            table.append(rows)
            cached.update({r["sha256"]: r for r in rows})
        columns: dict[str, np.ndarray] = {}
        if not self.records:
            return {"embedding": np.zeros((0, 1), dtype=np.float32)}
        keys = [k for k in next(iter(cached.values())) if k != "sha256"]
        for k in keys:
            values = [cached[sha][k] for sha in self.shas]
            if k in ("embedding", "ghist"):
                columns[k] = np.asarray(values, dtype=np.float32)
            elif k == "decode_error":
                columns[k] = np.asarray(values, dtype=object)
            elif k in ("phash", "dhash"):
                columns[k] = np.asarray(values, dtype=np.int64).view(np.uint64)
            else:
                columns[k] = np.asarray(values, dtype=np.float64)
        return columns

    @cached_property
    def hashes(self) -> dict[str, np.ndarray]:
        """The hash tier, aligned with :attr:`records`: ``decode_error`` (object), ``phash`` and
        ``dhash`` (``uint64``), ``ghist`` (``(N, 32)`` float32) - all the duplicate checks need
        before they confirm a candidate.

        Taken from :attr:`facts` when this view has them; else read from the hash table, then from
        the full pass's table (the same hashes), and computed (the cheap hash tier of
        :mod:`winnow.quality.facts`) only for blobs neither holds.
        """
        keys = ("decode_error", "phash", "dhash", "ghist")
        if "facts" in self.__dict__:
            return {k: self.facts[k] for k in keys}
        wanted = sorted(set(self.shas))
        table = FactTable(self.store.home, facts_mod.HASHES_TABLE)
        cached = table.read(wanted)
        if len(cached) < len(wanted):
            rest = [sha for sha in wanted if sha not in cached]
            cached.update(FactTable(self.store.home, facts_mod.FACTS_TABLE).read(rest, columns=list(keys)))
        missing = {sha: self.store.blobs.path(sha) for sha in wanted if sha not in cached}
        if missing:
            rows = facts_mod.compute_hashes(missing, progress=self.progress)
            table.append(rows)
            cached.update({r["sha256"]: r for r in rows})
        return {
            "decode_error": np.asarray([cached[sha]["decode_error"] for sha in self.shas], dtype=object),
            "phash": np.asarray([cached[sha]["phash"] for sha in self.shas], dtype=np.int64).view(np.uint64),
            "dhash": np.asarray([cached[sha]["dhash"] for sha in self.shas], dtype=np.int64).view(np.uint64),
            "ghist": np.asarray([cached[sha]["ghist"] for sha in self.shas], dtype=np.float32).reshape(-1, facts_mod.GHIST_BINS),
        }

    @cached_property
    def embeddings(self) -> np.ndarray:
        """``(N, D)`` float32, L2-normalised rows (zeros for undecodable images).

        The default ``classical`` embedding comes with the pixel facts; another embedder
        (``onnx:/path/model.onnx``) is run once per blob and cached under its own key.
        """
        if self.embedder == "classical":
            return self.facts["embedding"]
        by_sha = self._embedding_rows(sorted(set(self.shas)))
        return np.asarray([by_sha[sha] for sha in self.shas], dtype=np.float32).reshape(len(self.shas), -1)

    def embeddings_of(self, rows: np.ndarray) -> np.ndarray:
        """``(len(rows), D)``: the rows of :attr:`embeddings` at record positions ``rows``.

        Computes (and caches by content) the embeddings of those records' blobs only, unless this
        view already holds the whole matrix: what the duplicate checks use to confirm their few
        candidate pairs without embedding every image. ``rows`` must not be empty.
        """
        rows = np.asarray(rows, dtype=np.int64).ravel()
        if "embeddings" in self.__dict__ or (self.embedder == "classical" and "facts" in self.__dict__):
            return self.embeddings[rows]
        shas = [self.shas[k] for k in rows.tolist()]
        by_sha = self._embedding_rows(sorted(set(shas)))
        return np.asarray([by_sha[sha] for sha in shas], dtype=np.float32).reshape(len(shas), -1)

    def _embedding_rows(self, wanted: list[str]) -> dict[str, np.ndarray]:
        """``{sha: embedding}`` for the blobs ``wanted``, from the caches or computed and cached."""
        from winnow import media
        from winnow.embed.base import get_embedder

        embedder = get_embedder(self.embedder)
        table = FactTable(self.store.home, f"emb-{embedder.cache_key}")
        cached = table.read(wanted)
        if self.embedder == "classical":  # the full pass's table holds the same vectors
            if len(cached) < len(wanted):
                rest = [sha for sha in wanted if sha not in cached]
                cached.update(FactTable(self.store.home, facts_mod.FACTS_TABLE).read(rest, columns=["embedding"]))
            missing = {sha: self.store.blobs.path(sha) for sha in wanted if sha not in cached}
            if missing:
                rows = facts_mod.compute_embeddings(missing, progress=self.progress)
                table.append(rows)
                cached.update({r["sha256"]: r for r in rows})
            return {sha: cached[sha]["embedding"] for sha in wanted}
        missing_shas = [sha for sha in wanted if sha not in cached]
        for start in range(0, len(missing_shas), 64):
            chunk = missing_shas[start : start + 64]
            images, ok = [], []
            for sha in chunk:
                try:
                    images.append(media.decode(self.store.blobs.read(sha), sha))
                    ok.append(sha)
                except media.InvalidImageError:
                    cached[sha] = {"sha256": sha, "embedding": np.zeros(embedder.dim, dtype=np.float32)}
            vectors = embedder.embed(images)
            rows = [{"sha256": sha, "embedding": v} for sha, v in zip(ok, vectors, strict=True)]
            table.append(rows)
            cached.update({r["sha256"]: r for r in rows})
            if self.progress is not None:
                self.progress(min(start + 64, len(missing_shas)), len(missing_shas))
        return {sha: cached[sha]["embedding"] for sha in wanted}

    @cached_property
    def decodable(self) -> np.ndarray:
        """Boolean mask of records whose image decodes."""
        return np.array([e == "" for e in self.facts["decode_error"]], dtype=bool)

    def neighbours(self, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """The shared k-nearest-neighbour graph over embeddings (cosine distance, self excluded).

        Returns ``(indices, distances)``, each ``(N, k')`` with ``k' = min(k, N - 1)``; computed
        once per view for the largest ``k`` asked and sliced after.
        """
        cache = getattr(self, "_knn", None)
        if cache is None or cache[0].shape[1] < min(k, max(len(self) - 1, 0)):
            cache = self._compute_knn(max(k, 10))
            self._knn = cache
        kk = min(k, cache[0].shape[1])
        return cache[0][:, :kk], cache[1][:, :kk]

    def _compute_knn(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        emb = self.embeddings
        n = len(emb)
        k = min(k, max(n - 1, 0))
        idx = np.zeros((n, k), dtype=np.int64)
        dist = np.zeros((n, k), dtype=np.float32)
        if k == 0:
            return idx, dist
        for start in range(0, n, 1024):  # exact top-k by blocks: bounded memory, BLAS speed
            sims = emb[start : start + 1024] @ emb.T
            rows = np.arange(sims.shape[0])
            sims[rows, start + rows] = -np.inf
            part = np.argpartition(-sims, k - 1, axis=1)[:, :k]
            part_sims = np.take_along_axis(sims, part, axis=1)
            order = np.argsort(-part_sims, axis=1)
            idx[start : start + 1024] = np.take_along_axis(part, order, axis=1)
            dist[start : start + 1024] = 1.0 - np.take_along_axis(part_sims, order, axis=1)
        return idx, dist
