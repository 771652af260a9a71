"""Per-blob facts cached in Parquet, keyed by SHA-256 (computed once, reused by every check).

A fact table is a folder ``<home>/cache/<name>/`` of Parquet parts; each part is written
atomically (temporary name, then rename) and holds rows for some blobs. Because blobs are
immutable, a fact never goes stale; changing how a fact is computed changes the table's name
(e.g. ``facts-v2``). Reading takes the newest row per blob.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np


class FactTable:
    def __init__(self, root: Path, name: str):
        self.dir = Path(root) / "cache" / name

    def read(self, shas: Iterable[str] | None = None, columns: list[str] | None = None) -> dict[str, dict[str, Any]]:
        """Rows by sha (only those in ``shas`` when given; only ``columns``, plus ``sha256``, when given)."""
        import pyarrow.parquet as pq

        if not self.dir.is_dir():
            return {}
        wanted = set(shas) if shas is not None else None
        if wanted is not None and not wanted:
            return {}
        if columns is not None:
            columns = ["sha256", *(c for c in columns if c != "sha256")]
        rows: dict[str, dict[str, Any]] = {}
        for part in sorted(self.dir.glob("*.parquet"), key=lambda p: p.stat().st_mtime):
            table = pq.read_table(part, columns=columns)
            cols = table.to_pydict()
            for i, sha in enumerate(cols["sha256"]):
                if wanted is None or sha in wanted:
                    rows[sha] = {k: v[i] for k, v in cols.items()}
        return rows

    def append(self, rows: list[dict[str, Any]]) -> None:
        """Write ``rows`` (each with a ``sha256``) as a new part."""
        if not rows:
            return
        import pyarrow as pa
        import pyarrow.parquet as pq

        self.dir.mkdir(parents=True, exist_ok=True)
        columns = {k: [r[k] for r in rows] for k in rows[0]}
        for k, v in columns.items():
            if v and isinstance(v[0], np.ndarray):
                columns[k] = [x.astype(np.float32).tolist() for x in v]
        table = pa.table(columns)
        name = f"{uuid.uuid4().hex}.parquet"
        tmp = self.dir / f".{name}.tmp"
        pq.write_table(table, tmp)
        os.replace(tmp, self.dir / name)
