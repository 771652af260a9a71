"""Duplicate checks: the same picture stored more than once, and what that hides.

Four checks share one grouping pass (:func:`duplicate_groups`):

``exact_duplicate``
    records whose bytes are identical (same SHA-256): one finding per group of records.
``near_duplicate``
    the same picture resized, re-encoded, slightly cropped or colour-shifted: one finding per
    connected component of near pairs (pairs of identical bytes are left to ``exact_duplicate``).
``duplicate_label_conflict``
    a group (exact or near) whose annotations disagree, compared in normalised coordinates.
``split_leakage``
    a group whose members sit in more than one of train / valid / test.

The near-duplicate rule
-----------------------
Every decodable blob has a 64-bit DCT perceptual hash (``phash``), a 64-bit difference hash
(``dhash``) - both from the cheap hash tier of :mod:`winnow.quality.facts`, not the full facts
pass - and an L2-normalised embedding, computed only for blobs in a candidate pair. For two blobs let ``h``
be the Hamming distance of their pHashes (0..64) and ``c`` the cosine distance of their
embeddings (``1 - cos``, 0..2). The pair is a near duplicate when either

* ``h <= max_distance``, the dHash distance ``<= max_dhash`` and ``c <= max_cosine`` (defaults
  10, 16 and 0.20) - the hash finds resized, re-encoded and brightness-shifted copies (which keep
  their dHash too); the embedding and the dHash confirm, so two different low-detail pictures
  that happen to share a pHash (flat backgrounds, where dHash is noise) are not joined; or
* ``h <= crop_distance``, the dHash distance ``<= crop_distance``, the L1 distance of the hash
  tier's grey histograms ``<= crop_hist`` and ``c <= crop_cosine`` (defaults 20, 20, 0.25 and
  0.08) - a crop shifts the picture under the DCT grid, so a cropped copy's pHash moves further
  (up to ~18 bits for a 5% crop) while its grey histogram (L1 <= 0.12) and its embedding (<= 0.06)
  stay very close. The histogram costs nothing (the hash tier's decode) and keeps the pictures
  that are merely alike at 20 bits (L1 >= 0.39 on the bench) from being embedded at all.

``crop_distance=0`` turns the crop rule off; with it, ``max_cosine=1`` is pHash alone (what
imagehash does). The defaults were calibrated on 300-600 synthetic 256x192 pictures and their copies
(``bench/near_duplicates.py``): resize 50% and JPEG q=60 move pHash by <= 2 bits, +20%
brightness by <= 6 bits but the colour histogram in the embedding by up to 0.17, a 5% crop pHash
by up to 18 bits and the embedding by <= 0.06; distinct pictures were >= 12 bits apart and,
among those within 20 bits, >= 0.18 apart in cosine distance.

Pairs are found by an exact, blocked, vectorised Hamming scan over the unique blobs
(``np.bitwise_count`` on XORed ``uint64`` tiles, a few threads): 100k pictures (5e9 pairs) take
~3 s for pHash alone and ~10 s for the whole rule on 2 busy cores (``bench/near_duplicates.py``).
Only the few candidates are embedded (:meth:`ProjectView.embeddings_of`, cached by content) and
confirmed with embedding dot products (a group of ``m`` pictures
that all look alike, e.g. a fixed camera's burst, costs ``m**2 / 2`` candidate pairs, ~18 bytes
each, while it is grouped). Groups are the connected components of the near pairs (``scipy.sparse.csgraph``).
"""

from __future__ import annotations

import itertools
import os
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from winnow.core import geometry
from winnow.core.grouping import UnionFind
from winnow.core.types import SPLITS, ImageRecord, Task
from winnow.quality.base import Check, Finding, Suggestion, register
from winnow.quality.view import ProjectView

#: Parameters of the grouping, shared by every duplicate check (each check takes them).
GROUP_PARAMS: dict[str, Any] = {
    "max_distance": 10,
    "max_dhash": 16,
    "max_cosine": 0.2,
    "crop_distance": 20,
    "crop_cosine": 0.08,
    "crop_hist": 0.25,
}

_TILE_ROWS = 64
_TILE_COLS = 4096  # 2 MB of XOR per tile: stays in cache between the three passes
_CONFIRM_CHUNK = 20000
_PAIRWISE_MAX = 1000
_ALL_PAIRS_MAX = 50  # label comparison: all pairs up to this group size, else each vs the first


# ----------------------------------------------------------------------------- groups


@dataclass(frozen=True)
class Group:
    """Records that hold the same picture.

    Attributes:
        kind: ``"exact"`` (identical bytes) or ``"near"`` (a component of near pairs; it holds
            every record of each of its blobs, so it may contain exact copies too).
        indices: positions in ``view.records``, ascending.
        names: the records' names, in the same order.
        max_hamming: the largest pHash Hamming distance between two of its blobs (0 for exact;
            for a component of more than 1,000 blobs, the largest over its near pairs).
        max_cosine: the same for the embedding cosine distance.
        parts: for a near group that is not a clique of near pairs (a chain: A~B, B~C, A far
            from C), its partition into *stars* - a centre and the pictures near it - as
            groups of their own; empty when every two of its pictures are near. A chain is what
            a leak-free split must keep together; the stars are what a person can review as
            "the same picture".
    """

    kind: str
    indices: tuple[int, ...]
    names: tuple[str, ...]
    max_hamming: int = 0
    max_cosine: float = 0.0
    parts: tuple[Group, ...] = ()

    def __len__(self) -> int:
        return len(self.indices)

    def pieces(self) -> tuple[Group, ...]:
        """The stars of a chained group, else the group itself."""
        return self.parts or (self,)


def hamming_pairs(
    hashes: np.ndarray,
    limit: int,
    *,
    second: np.ndarray | None = None,
    first_only: int = -1,
    workers: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Every pair ``i < j`` of 64-bit hashes within ``limit`` bits of each other.

    ``hashes`` (and ``second``) are ``(N,)`` ``uint64`` (or ``int64``, reinterpreted). With
    ``second`` (another hash of the same pictures), a pair passes when both its distances are
    ``<= limit``, or when its first distance alone is ``<= first_only``.

    Exact: every pair is compared once, in ``64 x 4096`` tiles of the upper triangle (a few MB
    of buffers per thread, so the XOR, popcount and compare passes stay in cache), spread over
    ``workers`` threads (numpy releases the GIL). Returns ``(i, j, d, d2)``: ``int64`` indices
    sorted by ``(i, j)`` and ``uint8`` distances (``d2`` is ``d`` without ``second``).
    """
    h = np.ascontiguousarray(np.asarray(hashes).view(np.uint64).ravel())
    h2 = None if second is None else np.ascontiguousarray(np.asarray(second).view(np.uint64).ravel())
    n = len(h)
    empty = (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.uint8), np.zeros(0, np.uint8))
    if n < 2 or max(limit, first_only) < 0:
        return empty
    # the upper triangle only: each row block starts at its own diagonal
    tiles = [(r, c) for r in range(0, n, _TILE_ROWS) for c in range(r, n, _TILE_COLS)]

    def scan(chunk: list[tuple[int, int]]) -> list[tuple[np.ndarray, ...]]:
        shape = (_TILE_ROWS, _TILE_COLS)
        xor = np.empty(shape, np.uint64)
        cnt, cnt2, both = np.empty(shape, np.uint8), np.empty(shape, np.uint8), np.empty(shape, np.uint8)
        hit, hit2 = np.empty(shape, bool), np.empty(shape, bool)
        out = []
        for r, c in chunk:
            rows, cols = min(_TILE_ROWS, n - r), min(_TILE_COLS, n - c)
            x, k, m = xor[:rows, :cols], cnt[:rows, :cols], hit[:rows, :cols]
            np.bitwise_xor(h[r : r + rows, None], h[None, c : c + cols], out=x)
            np.bitwise_count(x, out=k)
            if h2 is None:
                k2 = k
                np.less_equal(k, limit, out=m)
            else:
                k2, b = cnt2[:rows, :cols], both[:rows, :cols]
                np.bitwise_xor(h2[r : r + rows, None], h2[None, c : c + cols], out=x)
                np.bitwise_count(x, out=k2)
                np.less_equal(np.maximum(k, k2, out=b), limit, out=m)
                if first_only >= 0:
                    m |= np.less_equal(k, first_only, out=hit2[:rows, :cols])
            if m.any():  # nonzero costs more than the whole scan: run it on the rows that hit
                rows_hit = np.flatnonzero(m.any(axis=1))
                ii, jj = np.nonzero(m[rows_hit])
                ii = rows_hit[ii]
                keep = ii + r < jj + c
                ii, jj = ii[keep], jj[keep]
                out.append((ii + r, jj + c, k[ii, jj], k2[ii, jj]))
        return out

    workers = max(1, min(workers or os.cpu_count() or 1, 8, len(tiles)))
    if workers == 1:
        parts = scan(tiles)
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            parts = [p for res in pool.map(scan, [tiles[w::workers] for w in range(workers)]) for p in res]
    if not parts:
        return empty
    i, j, d, d2 = (np.concatenate([p[t] for p in parts]) for t in range(4))
    i, j = i.astype(np.int64), j.astype(np.int64)
    order = np.lexsort((j, i))
    return i[order], j[order], d[order], d2[order]


def _cosine_of_pairs(emb: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    out = np.empty(len(i), np.float32)
    for s in range(0, len(i), _CONFIRM_CHUNK):
        a = emb[i[s : s + _CONFIRM_CHUNK]]
        a *= emb[j[s : s + _CONFIRM_CHUNK]]
        out[s : s + _CONFIRM_CHUNK] = 1.0 - a.sum(axis=1)
    return np.clip(out, 0.0, 2.0)


def candidate_pairs(
    phash: np.ndarray,
    dhash: np.ndarray,
    *,
    max_distance: int = GROUP_PARAMS["max_distance"],
    max_dhash: int = GROUP_PARAMS["max_dhash"],
    crop_distance: int = GROUP_PARAMS["crop_distance"],
    crop_cosine: float = GROUP_PARAMS["crop_cosine"],
    ghist: np.ndarray | None = None,
    crop_hist: float = GROUP_PARAMS["crop_hist"],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The pairs whose hashes pass one of the rule's tiers: what the embedding must then confirm.

    ``phash``, ``dhash``: ``(N,)`` 64-bit hashes; ``ghist``: ``(N, bins)`` grey histograms (the
    hash tier's), which, when given, the crop tier also needs within ``crop_hist`` (L1). Returns
    ``(i, j, hamming, dhash distance)`` as :func:`hamming_pairs` does.
    """
    crop_on = crop_distance > 0 and crop_cosine > 0
    i, j, h, dd = hamming_pairs(phash, crop_distance if crop_on else -1, second=dhash, first_only=max_distance)
    ok = (h <= max_distance) & (dd <= max_dhash)
    if crop_on:
        crop = (h <= crop_distance) & (dd <= crop_distance) & ~ok
        if ghist is not None and crop_hist > 0 and crop.any():
            at = np.flatnonzero(crop)
            crop[at] = np.abs(ghist[i[at]] - ghist[j[at]]).sum(axis=1) <= crop_hist
        ok |= crop
    return i[ok], j[ok], h[ok], dd[ok]


def confirm_pairs(
    h: np.ndarray,
    dd: np.ndarray,
    cosine: np.ndarray,
    *,
    max_distance: int = GROUP_PARAMS["max_distance"],
    max_dhash: int = GROUP_PARAMS["max_dhash"],
    max_cosine: float = GROUP_PARAMS["max_cosine"],
    crop_distance: int = GROUP_PARAMS["crop_distance"],
    crop_cosine: float = GROUP_PARAMS["crop_cosine"],
) -> np.ndarray:
    """Which candidate pairs (pHash distance ``h``, dHash distance ``dd``, embedding ``cosine``
    distance, each ``(M,)``) are near duplicates: a boolean ``(M,)`` mask."""
    ok = (h <= max_distance) & (dd <= max_dhash) & (cosine <= max_cosine)
    if crop_distance > 0 and crop_cosine > 0:
        ok |= (h <= crop_distance) & (dd <= crop_distance) & (cosine <= crop_cosine)
    return ok


def near_pairs(
    phash: np.ndarray,
    dhash: np.ndarray,
    embeddings: np.ndarray,
    *,
    max_distance: int = GROUP_PARAMS["max_distance"],
    max_dhash: int = GROUP_PARAMS["max_dhash"],
    max_cosine: float = GROUP_PARAMS["max_cosine"],
    crop_distance: int = GROUP_PARAMS["crop_distance"],
    crop_cosine: float = GROUP_PARAMS["crop_cosine"],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The near-duplicate pairs among ``N`` pictures (the rule in the module docstring).

    ``phash``, ``dhash``: ``(N,)`` 64-bit hashes; ``embeddings``: ``(N, D)`` L2-normalised rows.
    Returns ``(i, j, hamming, cosine)`` for the pairs ``i < j`` that pass.
    """
    rule = {"max_distance": max_distance, "max_dhash": max_dhash, "crop_distance": crop_distance, "crop_cosine": crop_cosine}
    i, j, h, dd = candidate_pairs(phash, dhash, **rule)
    if not len(i):
        return i, j, h, np.zeros(0, np.float32)
    c = _cosine_of_pairs(np.asarray(embeddings, dtype=np.float32), i, j)
    ok = confirm_pairs(h, dd, c, max_cosine=max_cosine, **rule)
    return i[ok], j[ok], h[ok], c[ok]


def duplicate_groups(
    view: ProjectView,
    *,
    max_distance: int = GROUP_PARAMS["max_distance"],
    max_dhash: int = GROUP_PARAMS["max_dhash"],
    max_cosine: float = GROUP_PARAMS["max_cosine"],
    crop_distance: int = GROUP_PARAMS["crop_distance"],
    crop_cosine: float = GROUP_PARAMS["crop_cosine"],
    crop_hist: float = GROUP_PARAMS["crop_hist"],
    near: bool = True,
) -> list[Group]:
    """Exact groups (records with the same bytes) then near groups (components of near pairs).

    A near group is made of at least two different blobs and holds every record of each, so an
    exact group may also lie inside a near group; :func:`clusters` merges them into disjoint
    sets (what a leak-free split needs). Undecodable images take part in exact groups only.
    Results are cached on the view per parameter set.
    """
    key = (int(max_distance), int(max_dhash), float(max_cosine), int(crop_distance), float(crop_cosine), float(crop_hist), bool(near))
    return list(view.memo(("duplicate_groups", *key), lambda: _duplicate_groups(view, *key)))


def _duplicate_groups(
    view: ProjectView,
    max_distance: int,
    max_dhash: int,
    max_cosine: float,
    crop_distance: int,
    crop_cosine: float,
    crop_hist: float,
    near: bool,
) -> list[Group]:
    records = view.records
    by_sha: dict[str, list[int]] = defaultdict(list)
    for idx, rec in enumerate(records):
        by_sha[rec.sha256].append(idx)
    groups = [
        Group("exact", tuple(idxs), tuple(records[k].name for k in idxs))
        for idxs in sorted(by_sha.values())
        if len(idxs) > 1
    ]
    if not near or len(by_sha) < 2:
        return groups
    hashes = view.hashes  # the cheap hash tier: no full facts pass for the duplicate checks
    decodable = hashes["decode_error"] == ""
    blobs = [idxs for idxs in by_sha.values() if decodable[idxs[0]]]  # one entry per unique blob
    if len(blobs) < 2:
        return groups
    first = np.array([idxs[0] for idxs in blobs])
    phash, dhash = hashes["phash"][first], hashes["dhash"][first]
    rule = {"max_distance": max_distance, "max_dhash": max_dhash, "crop_distance": crop_distance, "crop_cosine": crop_cosine}
    i, j, h, dd = candidate_pairs(phash, dhash, ghist=hashes["ghist"][first], crop_hist=crop_hist, **rule)
    if not len(i):
        return groups
    # embeddings of the blobs in a candidate pair only (rows of `emb`: positions in `cand`)
    cand = np.unique(np.concatenate([i, j]))
    emb = view.embeddings_of(first[cand])
    pos = np.full(len(blobs), -1, np.int64)
    pos[cand] = np.arange(len(cand))
    c = _cosine_of_pairs(emb, pos[i], pos[j])
    ok = confirm_pairs(h, dd, c, max_cosine=max_cosine, **rule)
    i, j, h, c = i[ok], j[ok], h[ok], c[ok]
    if not len(i):
        return groups
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    graph = coo_matrix((np.ones(len(i), np.int8), (i, j)), shape=(len(blobs), len(blobs)))
    _, label = connected_components(graph, directed=False)
    members: dict[int, list[int]] = defaultdict(list)
    for b in np.unique(np.concatenate([i, j])).tolist():
        members[int(label[b])].append(b)
    edge_label = label[i]

    def near_group(comp: Sequence[int], parts: tuple[Group, ...] = ()) -> Group:
        sub = np.array(comp)
        if len(sub) <= _PAIRWISE_MAX:  # the largest distance between any two of its pictures
            ph = phash[sub].view(np.uint64)
            hmax = int(np.bitwise_count(ph[:, None] ^ ph[None, :]).max())
            e = emb[pos[sub]]
            cmax = float(np.clip(1.0 - e @ e.T, 0.0, 2.0).max())
        else:  # a huge component: the largest distance of its near pairs
            on = np.isin(i, sub) & np.isin(j, sub)
            hmax, cmax = int(h[on].max()), float(c[on].max())
        idxs = sorted(k for b in comp for k in blobs[b])
        return Group("near", tuple(idxs), tuple(records[k].name for k in idxs), hmax, round(cmax, 6), parts)

    near_groups = []
    for lab, comp in members.items():
        on = edge_label == lab
        m = len(comp)
        parts: tuple[Group, ...] = ()
        if int(on.sum()) < m * (m - 1) // 2:  # not every two pictures are near: a chain
            parts = tuple(sorted((near_group(star) for star in _stars(i[on], j[on], h[on])), key=lambda g: g.indices))
        near_groups.append(near_group(comp, parts))
    near_groups.sort(key=lambda g: g.indices)
    return groups + near_groups


def _stars(i: np.ndarray, j: np.ndarray, h: np.ndarray) -> list[list[int]]:
    """Partition a connected graph (edges ``i``-``j``, weights ``h``) into stars.

    Greedy, as duplicate finders report "X and the pictures like it": in order of degree (most
    neighbours first, ties: the smaller id), a node not yet taken becomes a centre and takes its
    neighbours not yet taken; a node left alone (every neighbour taken) joins the star of its
    closest neighbour. Every member is then near its centre or near a member. O(edges).
    """
    adj: dict[int, dict[int, int]] = defaultdict(dict)
    for a, b, w in zip(i.tolist(), j.tolist(), h.tolist(), strict=True):
        adj[a][b] = adj[b][a] = w
    star_of: dict[int, int] = {}
    stars: list[list[int]] = []
    for centre in sorted(adj, key=lambda n: (-len(adj[n]), n)):
        if centre in star_of:
            continue
        members = [centre] + sorted(x for x in adj[centre] if x not in star_of)
        if len(members) == 1:  # its neighbours are all taken: join the closest one's star
            nearest = min(adj[centre], key=lambda x: (adj[centre][x], x))
            star_of[centre] = star_of[nearest]
            stars[star_of[nearest]].append(centre)
            continue
        for x in members:
            star_of[x] = len(stars)
        stars.append(members)
    return [sorted(s) for s in stars]


def clusters(groups: Iterable[Group]) -> list[Group]:
    """Merge overlapping groups into disjoint ones (an exact group inside a near group joins it).

    A merged group's ``kind`` is ``"near"`` when any of its parts is near, and its distances are
    the largest of its parts'.
    """
    groups = list(groups)
    sets = UnionFind()
    for g in groups:
        sets.union_all((g.indices[0], k) for k in g.indices[1:])
    merged: dict[int, list[Group]] = defaultdict(list)
    for g in groups:
        merged[sets.find(g.indices[0])].append(g)
    out = []
    for parts in merged.values():
        if len(parts) == 1:
            out.append(parts[0])
            continue
        names = {k: n for g in parts for k, n in zip(g.indices, g.names, strict=True)}
        idxs = tuple(sorted(names))
        out.append(
            Group(
                "near" if any(g.kind == "near" for g in parts) else "exact",
                idxs,
                tuple(names[k] for k in idxs),
                max(g.max_hamming for g in parts),
                max(g.max_cosine for g in parts),
                # an exact group lies inside one star (a star holds every record of its blobs)
                tuple(star for g in parts for star in g.parts),
            )
        )
    out.sort(key=lambda g: g.indices)
    return out


def _group_params(params: dict[str, Any]) -> dict[str, Any]:
    return {k: params[k] for k in GROUP_PARAMS if k in params}


# ----------------------------------------------------------------------------- labels


@dataclass
class _Disagreement:
    a: int
    b: int
    reasons: list[str]
    ious: list[float]
    annotations: list[int]
    worst: float  # badness in [0, 1]


def _normalised_boxes(rec: ImageRecord) -> tuple[np.ndarray, list[Any]]:
    anns = [a for a in rec.annotations if a.bbox is not None]
    boxes = geometry.as_boxes([a.bbox for a in anns])
    w, h = rec.width or 0, rec.height or 0
    if w > 0 and h > 0:
        boxes = boxes / np.array([w, h, w, h], dtype=np.float64)
    return boxes, anns


def _compare(ra: ImageRecord, rb: ImageRecord, task: Task, min_iou: float) -> tuple[list[str], list[float], list[int], float]:
    """Why two records of one picture disagree (empty reasons: they agree).

    Reasons: ``class`` (image-level labels differ, or two matched boxes have different classes),
    ``count`` (a box has no partner on the other image) and ``box`` (two matched boxes overlap
    less than ``min_iou``). Boxes are divided by their image's width and height first, then
    matched greedily by decreasing IoU, whatever their class.
    """
    reasons: list[str] = []
    offending: list[int] = []
    worst = 0.0
    # image-level labels (every label of a classification project) compare as multisets;
    # boxes compare by matching, below
    level_a = [a for a in ra.annotations if task is Task.CLASSIFY or a.bbox is None]
    level_b = [a for a in rb.annotations if task is Task.CLASSIFY or a.bbox is None]
    labels_a, labels_b = Counter(a.label for a in level_a), Counter(a.label for a in level_b)
    if labels_a != labels_b:
        reasons.append("class")
        diff = (labels_a - labels_b) + (labels_b - labels_a)
        offending += [a.id for a in (*level_a, *level_b) if a.label in diff and a.id is not None]
        worst = 1.0
    if task is Task.CLASSIFY:
        return reasons, [], offending, worst
    boxes_a, anns_a = _normalised_boxes(ra)
    boxes_b, anns_b = _normalised_boxes(rb)
    if len(anns_a) != len(anns_b):
        reasons.append("count")
        worst = 1.0
    ious: list[float] = []
    matched_a: set[int] = set()
    matched_b: set[int] = set()
    if len(anns_a) and len(anns_b):
        m = geometry.iou(boxes_a, boxes_b)
        for flat in np.argsort(-m, axis=None, kind="stable"):
            p, q = divmod(int(flat), m.shape[1])
            if p in matched_a or q in matched_b or m[p, q] <= 0:
                continue
            matched_a.add(p)
            matched_b.add(q)
            v = float(m[p, q])
            ious.append(round(v, 4))
            bad_box = v < min_iou
            bad_class = anns_a[p].label != anns_b[q].label
            if bad_box and "box" not in reasons:
                reasons.append("box")
            if bad_class and "class" not in reasons:
                reasons.append("class")
            if bad_box or bad_class:
                offending += [x.id for x in (anns_a[p], anns_b[q]) if x.id is not None]
                worst = max(worst, 1.0 if bad_class else 1.0 - v)
    unmatched = [a for k, a in enumerate(anns_a) if k not in matched_a] + [b for k, b in enumerate(anns_b) if k not in matched_b]
    if unmatched:
        if "count" not in reasons:
            reasons.append("count")  # as many boxes, but some overlap nothing on the other image
        offending += [x.id for x in unmatched if x.id is not None]
        worst = 1.0
    return reasons, ious, offending, worst


def _label_signature(rec: ImageRecord) -> tuple:
    return tuple(sorted(Counter(a.label for a in rec.annotations).items()))


def _labels_agree(view: ProjectView, group: Group, min_iou: float = 0.5) -> bool:
    recs = [view.records[k] for k in group.indices]
    return all(not _compare(recs[0], r, view.task, min_iou)[0] for r in recs[1:])


def _largest(view: ProjectView, group: Group) -> str:
    """The member to keep: the most pixels, then the most bytes (the least compressed), then the first."""
    blobs = view.blobs

    def key(k: int) -> tuple:
        rec = view.records[k]
        return ((rec.width or 0) * (rec.height or 0), (blobs.get(rec.sha256) or {}).get("size") or 0, -k)

    return view.records[max(group.indices, key=key)].name


def _names(names: Sequence[str], limit: int = 3) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


# ----------------------------------------------------------------------------- checks


@register
class ExactDuplicate(Check):
    id = "exact_duplicate"
    family = "duplicates"
    description = "Records whose image bytes are identical (same SHA-256) under different names."
    severity = "warning"
    params = {"min_iou": 0.5}

    def run(self, view: ProjectView, **params) -> Iterable[Finding]:
        for g in duplicate_groups(view, near=False):
            keep = g.names[0]
            agree = _labels_agree(view, g, params.get("min_iou", 0.5))
            if agree:
                suggestion = Suggestion(
                    "merge_images",
                    f"keep {keep} and merge the other {len(g) - 1} record(s) into it",
                    {"keep": keep, "remove": list(g.names[1:])},
                )
            else:
                suggestion = Suggestion("review", "their labels disagree: fix them (see duplicate_label_conflict), then merge")
            yield self.finding(
                f"{len(g)} records hold the same bytes: {_names(g.names)}",
                images=list(g.names),
                evidence={"copies": len(g), "sha256": view.records[g.indices[0]].sha256, "labels_agree": agree},
                suggestion=suggestion,
                score=1.0,
            )


@register
class NearDuplicate(Check):
    id = "near_duplicate"
    family = "duplicates"
    description = (
        "The same picture stored more than once after a resize, re-encode, slight crop or colour shift "
        "(perceptual hash confirmed by embedding)."
    )
    severity = "warning"
    params = dict(GROUP_PARAMS, min_iou=0.5)

    def run(self, view: ProjectView, **params) -> Iterable[Finding]:
        stars = [
            (star, whole)
            for whole in duplicate_groups(view, **_group_params(params))
            if whole.kind == "near"
            for star in whole.pieces()
        ]
        for g, whole in stars:
            blobs = len({view.records[k].sha256 for k in g.indices})
            agree = _labels_agree(view, g, params.get("min_iou", 0.5))
            keep = _largest(view, g)
            # never automatic: a near copy may be wanted (another exposure, another crop)
            if agree:
                text = f"keep {keep} (the largest) and remove the others, unless the copies are wanted"
            else:
                text = f"their labels disagree: fix them (see duplicate_label_conflict), then keep {keep}"
            suggestion = Suggestion("review", text, {"keep": keep, "remove": [n for n in g.names if n != keep]})
            score = float(np.clip(1.0 - g.max_hamming / 64.0 - g.max_cosine, 0.0, 1.0))
            yield self.finding(
                f"{len(g)} images look like the same picture: {_names(g.names)}",
                images=list(g.names),
                evidence={
                    "images": len(g),
                    "distinct_files": blobs,
                    "max_hamming": g.max_hamming,
                    "max_cosine_distance": g.max_cosine,
                    "labels_agree": agree,
                    # a star of a chain: how many pictures the chain (kept in one split) links
                    "chain_images": len(whole),
                },
                suggestion=suggestion,
                score=score,
            )


@register
class DuplicateLabelConflict(Check):
    id = "duplicate_label_conflict"
    family = "duplicates"
    description = (
        "Exact or near duplicates whose annotations disagree: another class, another number of boxes, "
        "or boxes that overlap less than min_iou in normalised coordinates."
    )
    severity = "error"
    params = dict(GROUP_PARAMS, min_iou=0.5)

    def run(self, view: ProjectView, **params) -> Iterable[Finding]:
        min_iou = float(params.get("min_iou", 0.5))
        task = view.task
        stars = [star for whole in clusters(duplicate_groups(view, **_group_params(params))) for star in whole.pieces()]
        for g in stars:
            recs = [view.records[k] for k in g.indices]
            found: list[_Disagreement] = []
            # every pair; in a big group (a burst of frames), each member against the first
            pairs = (
                itertools.combinations(range(len(recs)), 2)
                if len(recs) <= _ALL_PAIRS_MAX
                else ((0, y) for y in range(1, len(recs)))
            )
            for x, y in pairs:
                reasons, ious, anns, worst = _compare(recs[x], recs[y], task, min_iou)
                if reasons:
                    found.append(_Disagreement(x, y, reasons, ious, anns, worst))
            if not found:
                continue
            reasons = sorted({r for d in found for r in d.reasons}, key=["class", "count", "box"].index)
            all_ious = [v for d in found for v in d.ious]
            annotations = sorted({a for d in found for a in d.annotations})
            what = {"class": "classes", "count": "box counts", "box": "boxes"}
            yield self.finding(
                f"{len(recs)} copies of one picture ({_names(g.names, 2)}) disagree on {' and '.join(what[r] for r in reasons)}",
                severity="error" if g.kind == "exact" else "warning",
                images=list(g.names),
                annotations=annotations,
                evidence={
                    "kind": g.kind,
                    "reasons": reasons,
                    "class_counts": {r.name: dict(_label_signature(r)) for r in recs},
                    "box_counts": {r.name: sum(a.bbox is not None for a in r.annotations) for r in recs},
                    "matched_ious": all_ious[:50],
                    "min_matched_iou": min(all_ious) if all_ious else None,
                    "pairs": [
                        {"images": [recs[d.a].name, recs[d.b].name], "reasons": d.reasons, "ious": d.ious[:20]}
                        for d in found[:20]
                    ],
                    "max_hamming": g.max_hamming,
                    "max_cosine_distance": g.max_cosine,
                },
                suggestion=Suggestion(
                    "relabel" if "class" in reasons and task is Task.CLASSIFY else "review",
                    "look at the copies side by side and make their labels agree",
                ),
                score=max(d.worst for d in found),
            )


@register
class SplitLeakage(Check):
    id = "split_leakage"
    family = "duplicates"
    description = "Exact or near duplicates that sit in more than one of train, valid and test, so evaluation sees training pictures."
    severity = "error"
    params = dict(GROUP_PARAMS)

    def run(self, view: ProjectView, **params) -> Iterable[Finding]:
        for g in clusters(duplicate_groups(view, **_group_params(params))):
            splits = [view.records[k].split for k in g.indices]
            counts = Counter(s for s in splits if s)
            if len(counts) < 2:
                continue
            order = {s: n for n, s in enumerate(SPLITS)}
            target = max(counts, key=lambda s: (counts[s], s == "train", -order.get(s, len(order))))
            move = [n for n, s in zip(g.names, splits, strict=True) if s and s != target]
            spread = " and ".join(sorted(counts, key=lambda s: order.get(s, len(order))))
            score = 1.0 if g.kind == "exact" else float(np.clip(1.0 - g.max_hamming / 64.0 - g.max_cosine, 0.0, 1.0))
            yield self.finding(
                f"{len(g)} copies of one picture are split across {spread}: {_names(g.names, 2)}",
                images=list(g.names),
                evidence={
                    "kind": g.kind,
                    "splits": dict(counts),
                    "max_hamming": g.max_hamming,
                    "max_cosine_distance": g.max_cosine,
                },
                suggestion=Suggestion(
                    "resplit",
                    f"move {len(move)} image(s) to {target} so the group stays in one split",
                    {"split": target, "images": move},
                ),
                score=score,
            )
