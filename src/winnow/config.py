"""Settings in one place, read from the environment.

``WINNOW_HOME`` is the data home (default ``./.winnow`` beside where the command runs): the
SQLite database, the content-addressed blobs and scratch space all live under it.
"""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_WORKSPACE = "default"


def home() -> Path:
    """The data home as an absolute path (not created here)."""
    return Path(os.environ.get("WINNOW_HOME", ".winnow")).expanduser().resolve()


def database_url(data_home: Path) -> str:
    """``WINNOW_DATABASE_URL`` when set (PostgreSQL later), else SQLite inside the data home."""
    return os.environ.get("WINNOW_DATABASE_URL") or f"sqlite:///{data_home / 'winnow.db'}"
