"""Grouping items joined by pairwise links (duplicate groups, overlapping boxes): union-find."""

from __future__ import annotations

from collections.abc import Hashable, Iterable


class UnionFind:
    """Disjoint sets over hashable items, with path halving; the smallest item is each set's root."""

    def __init__(self) -> None:
        self.parent: dict[Hashable, Hashable] = {}

    def find(self, x: Hashable) -> Hashable:
        parent = self.parent
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def union(self, a: Hashable, b: Hashable) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            lo, hi = (ra, rb) if ra <= rb else (rb, ra)
            self.parent[hi] = lo

    def union_all(self, pairs: Iterable[tuple[Hashable, Hashable]]) -> None:
        for a, b in pairs:
            self.union(a, b)

    def groups(self) -> list[list[Hashable]]:
        """Every set (items in insertion order), sets ordered by their smallest item."""
        out: dict[Hashable, list[Hashable]] = {}
        for x in list(self.parent):
            out.setdefault(self.find(x), []).append(x)
        return sorted(out.values(), key=min)
