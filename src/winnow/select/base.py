"""The shape of an active-learning strategy, the pool it picks from, and the rules every strategy shares.

A strategy is one small class in its own module (``random``, ``uncertainty``, ``margin``,
``entropy``, ``diversity``, ``hybrid``, ``slice``), decorated with :func:`register`. It reads a
:class:`Pool` - plain numpy arrays, no store - and returns a :class:`Selection`: which candidates
to label, in pick order, each with a score (higher = more worth labelling) and the evidence.

Every strategy picks through one :class:`Picker`, which applies the shared rules:

* **near duplicates** - a candidate whose embedding has cosine similarity ``> near_duplicate``
  (default :data:`DEFAULT_NEAR_DUPLICATE` = 0.995) with any labeled (or otherwise already known)
  image is never picked; once a candidate is picked, every other candidate that close to it is
  dropped too (one labeled copy of an image is enough). ``near_duplicate=1.0`` turns it off.
* **class balance** (when the pool has predicted classes) - each predicted class gets a quota:
  the budget is first water-filled over the classes so that *labeled + picked* counts become as
  even as possible (the rarest labeled class is filled first), then each class may take up to
  ``balance`` times its share (at least one image). The most common classes are capped, the
  rare ones are free to take more. When quotas would leave the budget unspent, they are lifted.
  ``balance=0`` turns it off.

Uncertainty from detections (boxes with scores, no class distribution): see
:func:`detection_uncertainty`.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from winnow.errors import InvalidInputError

#: Cosine similarity above which a candidate counts as a near duplicate of a labeled or picked image.
#: The default ``classical`` embedding gives re-encoded/resized copies ``>= 0.999`` and distinct
#: small grey images (scikit-learn digits at 32 px) at most ``~0.992``.
DEFAULT_NEAR_DUPLICATE = 0.995
#: A class may take up to this many times its water-filled share of the budget.
DEFAULT_BALANCE = 2.0
#: Detection: boxes scoring below this are ignored by :func:`detection_uncertainty`.
DETECTION_MIN_SCORE = 0.05
#: Detection: an image with no box scoring at least this counts as fully uncertain (1.0).
DETECTION_CONFIDENT = 0.5


# ----------------------------------------------------------------------------- the pool


@dataclass
class Pool:
    """What a strategy sees: candidates (the images that could be labelled) and what is known.

    Attributes:
        embeddings: ``(N, D)`` float32, L2-normalised rows, one per candidate.
        probs: ``(N, K)`` class probabilities (classification), rows summing to 1, or ``None``.
        box_scores: detection: one ``(n_i,)`` array of box scores in ``[0, 1]`` per candidate, or ``None``.
        predicted: ``(N,)`` int predicted class per candidate (``-1`` = none); default: the
            argmax of ``probs``. Detection: the class of the image's highest-scoring box.
        labeled: ``(M, D)`` float32 L2-normalised embeddings of the labeled images (and any
            other image that must not be duplicated, e.g. ones already waiting in the queue).
        class_counts: ``(K,)`` labeled images (or objects) per class, for class balance.
        slices: per candidate, the names of the slices it belongs to (``tag:night``, ``camera=3``,
            ``class:cat``).
        slice_scores: the model's metric (higher = better, in ``[0, 1]``) on each slice, measured
            on labeled images.
        overall: the model's metric on all of them (the default for a candidate in no scored slice).
    """

    embeddings: np.ndarray
    probs: np.ndarray | None = None
    box_scores: list[np.ndarray] | None = None
    predicted: np.ndarray | None = None
    labeled: np.ndarray | None = None
    class_counts: np.ndarray | None = None
    slices: list[Sequence[str]] | None = None
    slice_scores: dict[str, float] = field(default_factory=dict)
    overall: float | None = None

    def __post_init__(self) -> None:
        self.embeddings = np.asarray(self.embeddings, dtype=np.float32)
        if self.embeddings.ndim != 2:
            raise InvalidInputError(f"embeddings must be (N, D), got shape {self.embeddings.shape}")
        n = len(self.embeddings)
        if self.probs is not None:
            self.probs = np.asarray(self.probs, dtype=np.float64)
            if self.probs.ndim != 2 or len(self.probs) != n:
                raise InvalidInputError(f"probs must be (N={n}, K), got shape {self.probs.shape}")
            if self.predicted is None:
                self.predicted = self.probs.argmax(axis=1) if self.probs.shape[1] else np.full(n, -1)
        if self.box_scores is not None:
            if len(self.box_scores) != n:
                raise InvalidInputError(f"box_scores has {len(self.box_scores)} entries for {n} candidates")
            self.box_scores = [np.asarray(s, dtype=np.float64).reshape(-1) for s in self.box_scores]
        if self.predicted is not None:
            self.predicted = np.asarray(self.predicted, dtype=np.int64).reshape(-1)
            if len(self.predicted) != n:
                raise InvalidInputError(f"predicted has {len(self.predicted)} entries for {n} candidates")
        if self.labeled is not None:
            self.labeled = np.asarray(self.labeled, dtype=np.float32).reshape(-1, self.embeddings.shape[1])
        if self.class_counts is not None:
            self.class_counts = np.asarray(self.class_counts, dtype=np.float64).reshape(-1)
        if self.slices is not None and len(self.slices) != n:
            raise InvalidInputError(f"slices has {len(self.slices)} entries for {n} candidates")

    def __len__(self) -> int:
        return len(self.embeddings)

    @property
    def has_model(self) -> bool:
        return self.probs is not None or self.box_scores is not None

    def max_similarity_to_labeled(self, block: int = 2048) -> np.ndarray:
        """``(N,)`` highest cosine similarity of each candidate to any labeled image (-1 when none);
        computed once."""
        cached = self.__dict__.get("_max_sim")
        if cached is not None:
            return cached
        out = np.full(len(self), -1.0, dtype=np.float32)
        self.__dict__["_max_sim"] = out
        if self.labeled is None or not len(self.labeled) or not len(self):
            return out
        for start in range(0, len(self.labeled), block):
            sims = self.embeddings @ self.labeled[start : start + block].T
            np.maximum(out, sims.max(axis=1), out=out)
        return out


# ----------------------------------------------------------------------------- uncertainty measures


def least_confidence(probs: np.ndarray) -> np.ndarray:
    """``1 - max_k p_k`` per row, rescaled by ``K / (K - 1)`` to ``[0, 1]``."""
    k = probs.shape[1]
    u = 1.0 - probs.max(axis=1)
    return u * (k / (k - 1)) if k > 1 else u


def margin_uncertainty(probs: np.ndarray) -> np.ndarray:
    """``1 - (p_(1) - p_(2))``: one minus the gap between the two most probable classes."""
    if probs.shape[1] < 2:
        return 1.0 - probs.max(axis=1)
    top2 = -np.partition(-probs, 1, axis=1)[:, :2]
    return 1.0 - (top2[:, 0] - top2[:, 1])


def normalised_entropy(probs: np.ndarray) -> np.ndarray:
    """``-sum_k p_k log p_k / log K``, in ``[0, 1]``."""
    p = np.clip(probs, 1e-12, 1.0)
    h = -(probs * np.log(p)).sum(axis=1)
    k = probs.shape[1]
    return h / math.log(k) if k > 1 else h


def binary_entropy(s: np.ndarray) -> np.ndarray:
    """``H(s) = -s log2 s - (1 - s) log2 (1 - s)``, in ``[0, 1]`` (1 at ``s = 0.5``)."""
    s = np.clip(np.asarray(s, dtype=np.float64), 1e-12, 1 - 1e-12)
    return -(s * np.log2(s) + (1 - s) * np.log2(1 - s))


def binary_least_confidence(s: np.ndarray) -> np.ndarray:
    """``1 - |2s - 1|``: a box's "is it an object" margin, in ``[0, 1]`` (1 at ``s = 0.5``)."""
    return 1.0 - np.abs(2.0 * np.asarray(s, dtype=np.float64) - 1.0)


def detection_uncertainty(
    box_scores: Sequence[np.ndarray],
    per_box: Callable[[np.ndarray], np.ndarray] = binary_entropy,
    *,
    min_score: float = DETECTION_MIN_SCORE,
    confident: float = DETECTION_CONFIDENT,
) -> np.ndarray:
    """Per-image uncertainty from its predicted box scores, in ``[0, 1]``.

    Each box with score ``s >= min_score`` (0.05) is treated as a yes/no "is this an object"
    decision with uncertainty ``per_box(s)`` (binary entropy by default: 1 at ``s = 0.5``, 0 at
    0 or 1). The image's uncertainty is the **max** over its boxes (one doubtful object is
    enough to be worth a look). An image with no box scoring at least ``confident`` (0.5) counts
    as fully uncertain (1.0): the model found nothing it believes in - a miss, an unseen
    background or a truly empty image, which a person should settle.
    """
    out = np.ones(len(box_scores), dtype=np.float64)
    for i, s in enumerate(box_scores):
        s = np.asarray(s, dtype=np.float64).reshape(-1)
        if s.size and s.max() >= confident:
            kept = s[s >= min_score]
            out[i] = float(per_box(kept).max())
    return out


# ----------------------------------------------------------------------------- picking


def class_quotas(class_counts: np.ndarray, available: np.ndarray, budget: int, balance: float = DEFAULT_BALANCE) -> np.ndarray:
    """Per-class caps on the picks.

    ``class_counts``: ``(K,)`` labeled counts; ``available``: ``(K,)`` candidates predicted as each
    class. The budget is water-filled: each unit goes to the class with the fewest *labeled +
    allotted* (ties: lowest class index) among those with candidates left, giving the shares
    ``t_k``; the quota is ``max(1, ceil(balance * t_k))`` for classes with candidates (0 without).
    """
    k = len(class_counts)
    have = np.asarray(available, dtype=np.int64)[:k]
    level = np.asarray(class_counts, dtype=np.float64)[:k].copy()
    share = np.zeros(k, dtype=np.int64)
    for _ in range(int(min(budget, have.sum()))):
        open_ = share < have
        c = int(np.argmin(np.where(open_, level, np.inf)))
        share[c] += 1
        level[c] += 1
    quota = np.maximum(1, np.ceil(balance * share)).astype(np.int64)
    return np.where(have > 0, quota, 0)


@dataclass
class Selection:
    """What a strategy picked, in pick order.

    Attributes:
        indices: ``(B,)`` int64 indices into the pool's candidates.
        scores: ``(B,)`` why each was picked (higher = more worth labelling; the strategy's own scale).
        reasons: per pick, the evidence (JSON-able dict).
        excluded_near_duplicates: candidates left out as near duplicates of labeled images.
        notes: what the strategy had to do differently (fallbacks, lifted quotas).
    """

    indices: np.ndarray
    scores: np.ndarray
    reasons: list[dict[str, Any]]
    excluded_near_duplicates: int = 0
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.indices)


class Picker:
    """Sequential picks under the shared rules (see the module docstring).

    ``eligible()`` is the mask of candidates that may be picked now; ``take(i, score, reason)``
    picks one. Strategies loop ``while not picker.done`` and pick the best eligible candidate by
    their own measure.
    """

    def __init__(
        self,
        pool: Pool,
        budget: int,
        *,
        near_duplicate: float = DEFAULT_NEAR_DUPLICATE,
        balance: float = DEFAULT_BALANCE,
    ):
        if not isinstance(budget, int | np.integer) or budget < 1:
            raise InvalidInputError(f"budget must be a positive number of images, got {budget!r}")
        if not 0.0 < near_duplicate <= 1.0:
            raise InvalidInputError(f"near-duplicate similarity must be in (0, 1], got {near_duplicate!r}")
        if balance < 0:
            raise InvalidInputError(f"balance must be >= 0 (0 = off), got {balance!r}")
        self.pool = pool
        self.budget = int(budget)
        self.threshold = float(near_duplicate)
        n = len(pool)
        self.available = np.ones(n, dtype=bool)
        if near_duplicate < 1.0:
            self.available &= pool.max_similarity_to_labeled() <= near_duplicate
        self.excluded_near_duplicates = int(n - self.available.sum())
        self.picked: list[int] = []
        self.scores: list[float] = []
        self.reasons: list[dict[str, Any]] = []
        self.notes: list[str] = []
        self.quota: np.ndarray | None = None
        self.taken: np.ndarray | None = None
        pred = pool.predicted
        if balance > 0 and pred is not None and pool.class_counts is not None and (pred >= 0).any():
            k = max(len(pool.class_counts), int(pred.max()) + 1)
            counts = np.zeros(k)
            counts[: len(pool.class_counts)] = pool.class_counts
            have = np.bincount(pred[(pred >= 0) & self.available], minlength=k)
            self.quota = class_quotas(counts, have, self.budget, balance)
            self.taken = np.zeros(k, dtype=np.int64)

    @property
    def done(self) -> bool:
        return len(self.picked) >= self.budget or not self.available.any()

    def eligible(self) -> np.ndarray:
        """Candidates that may be picked now: not picked, not a near duplicate, class under quota."""
        if self.quota is None:
            return self.available
        pred = self.pool.predicted
        assert pred is not None and self.taken is not None
        full = self.taken >= self.quota
        mask = self.available & ~((pred >= 0) & full[np.clip(pred, 0, None)])
        if not mask.any() and self.available.any():
            self.notes.append(f"class quotas lifted after {len(self.picked)} picks: the other classes had no candidates left")
            self.quota = None
            return self.available
        return mask

    def _over_quota(self, i: int) -> bool:
        if self.quota is None or self.taken is None or self.pool.predicted is None:
            return False
        c = int(self.pool.predicted[i])
        return c >= 0 and self.taken[c] >= self.quota[c]

    def take(self, i: int, score: float, reason: dict[str, Any] | None = None) -> None:
        i = int(i)
        if not self.available[i]:
            raise ValueError(f"candidate {i} is not available")
        self.picked.append(i)
        self.scores.append(float(score))
        self.reasons.append(dict(reason or {}))
        self.available[i] = False
        if self.threshold < 1.0:
            sims = self.pool.embeddings @ self.pool.embeddings[i]
            self.available &= sims <= self.threshold
        if self.taken is not None and self.pool.predicted is not None and self.pool.predicted[i] >= 0:
            self.taken[self.pool.predicted[i]] += 1

    def pick_by_priority(
        self,
        priority: np.ndarray,
        rng: np.random.Generator,
        reason: Callable[[int], dict[str, Any]] | None = None,
        *,
        among: np.ndarray | None = None,
        limit: int | None = None,
    ) -> int:
        """Pick the highest ``priority`` first (ties broken at random with ``rng``) until done, or
        ``limit`` picks; only from the ``among`` mask when given (then class quotas are never
        lifted here). Returns how many were picked."""
        priority = np.asarray(priority, dtype=np.float64)
        start = len(self.picked)
        stop = self.budget if limit is None else min(self.budget, start + int(limit))
        order = np.lexsort((rng.random(len(priority)), -priority))
        if among is not None:
            order = order[np.asarray(among, dtype=bool)[order]]
        deferred: list[int] = []
        for i in order:
            if len(self.picked) >= stop or self.done:
                break
            if not self.available[i]:
                continue
            if self._over_quota(int(i)):
                deferred.append(int(i))
                continue
            self.take(i, priority[i], reason(int(i)) if reason else None)
        if among is None and len(self.picked) < stop and deferred and self.quota is not None:
            self.notes.append(f"class quotas lifted after {len(self.picked)} picks: the other classes had no candidates left")
            self.quota = None
            for i in deferred:
                if len(self.picked) >= stop or self.done:
                    break
                if self.available[i]:
                    self.take(i, priority[i], reason(i) if reason else None)
        return len(self.picked) - start

    def k_center(
        self,
        rng: np.random.Generator,
        reason: Callable[[int, float], dict[str, Any]] | None = None,
        *,
        among: np.ndarray | None = None,
    ) -> int:
        """k-center greedy (coreset): repeatedly pick the eligible candidate farthest (cosine
        distance ``1 - cos``) from every labeled and already-picked image, until done; only from
        ``among`` when given. With no labeled image the first pick is drawn at random (``rng``).
        Returns how many were picked."""
        emb = self.pool.embeddings
        start = len(self.picked)
        dist = np.full(len(emb), np.inf)
        if self.pool.labeled is not None and len(self.pool.labeled):
            dist = 1.0 - self.pool.max_similarity_to_labeled().astype(np.float64)
        for j in self.picked:
            dist = np.minimum(dist, 1.0 - emb @ emb[j])
        while not self.done:
            mask = self.eligible()
            if among is not None:
                mask = mask & among
            if not mask.any():
                break
            masked = np.where(mask, dist, -np.inf)
            i = int(rng.choice(np.flatnonzero(mask))) if np.isinf(masked.max()) else int(np.argmax(masked))
            d = float(min(dist[i], 2.0))
            self.take(i, d, reason(i, d) if reason else {"distance": round(d, 6)})
            dist = np.minimum(dist, 1.0 - emb @ emb[i])
        return len(self.picked) - start

    def result(self) -> Selection:
        return Selection(
            np.asarray(self.picked, dtype=np.int64),
            np.asarray(self.scores, dtype=np.float64),
            self.reasons,
            self.excluded_near_duplicates,
            list(dict.fromkeys(self.notes)),
        )


# ----------------------------------------------------------------------------- strategies


class Strategy(ABC):
    """One way to choose what to label next. Subclasses set the class attributes and :meth:`select`."""

    id: ClassVar[str]
    description: ClassVar[str]
    #: Whether the strategy needs the model's predictions (probabilities or box scores).
    needs_model: ClassVar[bool] = True

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        for attr in ("id", "description"):
            if not getattr(cls, attr, None):
                raise TypeError(f"strategy class {cls.__name__} must set `{attr}`")

    @abstractmethod
    def select(self, pool: Pool, picker: Picker, rng: np.random.Generator) -> None:
        """Pick through ``picker`` (until ``picker.done``) from ``pool``."""

    def check(self, pool: Pool) -> None:
        if self.needs_model and not pool.has_model:
            raise InvalidInputError(
                f"strategy {self.id!r} needs a model's predictions (class probabilities or box scores); "
                "train a model first, or use the random or diversity strategy"
            )


def uncertainty_scores(pool: Pool, measure: str = "least_confidence") -> np.ndarray:
    """``(N,)`` uncertainty in ``[0, 1]`` by ``measure`` (``least_confidence``, ``margin``, ``entropy``).

    Classification uses ``pool.probs``; detection uses ``pool.box_scores`` through
    :func:`detection_uncertainty` with the binary form of the measure (least confidence and margin
    are both ``1 - |2s - 1|`` for a yes/no score; entropy is the binary entropy).
    """
    if pool.probs is not None:
        fn = {"least_confidence": least_confidence, "margin": margin_uncertainty, "entropy": normalised_entropy}[measure]
        return fn(pool.probs)
    if pool.box_scores is not None:
        per_box = binary_entropy if measure == "entropy" else binary_least_confidence
        return detection_uncertainty(pool.box_scores, per_box)
    raise InvalidInputError("uncertainty needs class probabilities or box scores")


_REGISTRY: dict[str, type[Strategy]] = {}
BUILTIN = ("random", "uncertainty", "margin", "entropy", "diversity", "hybrid", "slice")


def register(cls: type[Strategy]) -> type[Strategy]:
    """Class decorator: make a strategy available by its ``id``."""
    if cls.id in _REGISTRY and _REGISTRY[cls.id] is not cls:
        raise ValueError(f"strategy {cls.id!r} registered twice")
    _REGISTRY[cls.id] = cls
    return cls


def _load_builtin() -> None:
    import importlib

    for module in BUILTIN:
        importlib.import_module(f"winnow.select.{module}")


def all_strategies() -> dict[str, type[Strategy]]:
    """Every registered strategy by id."""
    _load_builtin()
    return dict(_REGISTRY)


def get_strategy(strategy_id: str, **params: Any) -> Strategy:
    strategies = all_strategies()
    try:
        cls = strategies[strategy_id]
    except KeyError:
        raise InvalidInputError(f"unknown strategy {strategy_id!r}; known strategies: {', '.join(BUILTIN)}") from None
    try:
        return cls(**params)
    except TypeError as exc:
        raise InvalidInputError(f"strategy {strategy_id!r}: {exc}") from None


def select(
    pool: Pool,
    budget: int,
    strategy: str = "uncertainty",
    *,
    seed: int = 0,
    near_duplicate: float = DEFAULT_NEAR_DUPLICATE,
    balance: float = DEFAULT_BALANCE,
    **params: Any,
) -> Selection:
    """Pick up to ``budget`` candidates of ``pool`` with ``strategy`` (an id; ``params`` go to its
    constructor). The same pool, budget, strategy and ``seed`` give the same selection.

    Fewer than ``budget`` come back only when the pool runs out (after near duplicates).
    """
    chosen = get_strategy(strategy, **params)
    chosen.check(pool)
    picker = Picker(pool, budget, near_duplicate=near_duplicate, balance=balance)
    if not picker.done:
        chosen.select(pool, picker, np.random.default_rng(seed))
    return picker.result()
