"""What checks look at: a project's records plus facts computed once and shared.

:class:`ProjectView` is built once per ``winnow check`` run. Everything expensive is a lazy,
cached property: the pixel facts (one decode per blob, cached in Parquet across runs), the
embedding matrix and the k-nearest-neighbour graph. Checks index these by record position
``i`` (``view.records[i]``); records that share bytes share facts. The duplicate checks need less:
:attr:`ProjectView.hashes` (a cheap hash tier, its own cache) and :meth:`ProjectView.embeddings_of`
(embeddings of the few candidates only), so ``--only near_duplicate`` never runs the full pass.
"""

from __future__ import annotations

import importlib.util
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
        return knn_graph(self.embeddings, k)


#: From this many rows the graph comes from an HNSW index rather than an exact search, which
#: grows as N^2 (bench/neighbours.py: 100,000 rows of 224 dimensions on 2 cores).
ANN_FROM = 20_000


def knn_graph(
    emb: np.ndarray, k: int, block: int | None = None, *, exact: bool | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Every row's ``k`` nearest other rows by cosine distance (rows L2-normalised).

    Returns ``(indices, distances)``, each ``(N, k')`` with ``k' = min(k, N - 1)``, nearest first;
    a row is never its own neighbour. ``exact=None`` (the default) searches exactly below
    :data:`ANN_FROM` rows and approximately (HNSW) from there; ``True`` / ``False`` force
    either. Both run in faiss (:func:`faiss_graph`); without faiss the search is exact, in numpy,
    by blocks of rows (``block``; at most ~64M similarities, 256 MB, at a time).
    """
    emb = np.ascontiguousarray(emb, dtype=np.float32)
    n = len(emb)
    k = min(k, max(n - 1, 0))
    if k == 0:
        return np.zeros((n, 0), dtype=np.int64), np.zeros((n, 0), dtype=np.float32)
    have_faiss = importlib.util.find_spec("faiss") is not None
    exact = (n < ANN_FROM or not have_faiss) if exact is None else exact
    if have_faiss:
        return faiss_graph(emb, k, exact=exact)
    idx = np.zeros((n, k), dtype=np.int64)
    dist = np.zeros((n, k), dtype=np.float32)
    block = block or int(max(64, min(1024, 2**26 // n)))
    for start in range(0, n, block):
        stop = min(start + block, n)
        rows = np.arange(stop - start)
        sims = emb[start:stop] @ emb.T
        sims[rows, start + rows] = -np.inf
        part = np.argpartition(sims, n - k, axis=1)[:, n - k :]
        part_sims = np.take_along_axis(sims, part, axis=1)
        order = np.argsort(-part_sims, axis=1)
        idx[start:stop] = np.take_along_axis(part, order, axis=1)
        dist[start:stop] = 1.0 - np.take_along_axis(part_sims, order, axis=1)
    return idx, dist


def faiss_graph(emb: np.ndarray, k: int, *, exact: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """:func:`knn_graph` in faiss: an exact inner-product search (``IndexFlatIP``), or an HNSW
    index (``M = 16``, ``efConstruction = 40``, ``efSearch = max(32, 2k)``; recall@10 0.994 and
    0.978 against the exact graph on the benchmark's 50,000 and 100,000 clustered embeddings).

    A row's own entry is dropped from its result; a slot the index could not fill (rare with
    HNSW) repeats the row's farthest neighbour found.
    """
    import faiss

    emb = np.ascontiguousarray(emb, dtype=np.float32)
    n = len(emb)
    k = min(k, max(n - 1, 0))
    if exact:
        index = faiss.IndexFlatIP(emb.shape[1])
    else:
        index = faiss.IndexHNSWFlat(emb.shape[1], 16, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = 40
    index.add(emb)
    if not exact:
        index.hnsw.efSearch = max(32, 2 * k)
    sims, idx = index.search(emb, k + 1)
    # the row itself out (wherever ties put it): a stable sort moves it, and empty slots, last
    drop = (idx == np.arange(n)[:, None]) | (idx < 0)
    order = np.argsort(drop, axis=1, kind="stable")[:, :k]
    idx = np.take_along_axis(idx, order, axis=1)
    sims = np.take_along_axis(sims, order, axis=1)
    missing = np.take_along_axis(drop, order, axis=1)
    for r in np.flatnonzero(missing.any(axis=1)):  # fewer than k found: repeat the farthest found
        ok = ~missing[r]
        last_i, last_s = (idx[r][ok][-1], sims[r][ok][-1]) if ok.any() else (r, -1.0)
        idx[r][~ok], sims[r][~ok] = last_i, last_s
    return idx.astype(np.int64), (1.0 - sims).astype(np.float32)
