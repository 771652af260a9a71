"""Pagination of list endpoints: ``?limit=&offset=`` in, ``{<items>, "offset", "limit", "more"}`` out."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import Query

#: The most items one page may hold.
MAX_LIMIT = 1000


class Page:
    """A ``limit`` / ``offset`` pair from the query string (a FastAPI dependency)."""

    def __init__(self, limit: int = Query(default=100, ge=1, le=MAX_LIMIT), offset: int = Query(default=0, ge=0)):
        self.limit, self.offset = limit, offset

    def of(self, name: str, items: Sequence[Any]) -> dict[str, Any]:
        """One page of ``items`` (already in order, already as dicts) under the key ``name``."""
        part = list(items[self.offset : self.offset + self.limit])
        return {name: part, "offset": self.offset, "limit": self.limit, "more": len(items) > self.offset + self.limit}
