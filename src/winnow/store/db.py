"""Opening the store: the metadata database (SQLite in WAL mode by default) and the blob store.

Writes go through :meth:`Store.write`, a transaction that takes SQLite's write lock up front
(``BEGIN IMMEDIATE``) so two writers serialise instead of failing half-way; readers never block
writers in WAL mode. The schema is brought to the latest Alembic revision when a store is opened.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.orm import Session, sessionmaker

from winnow import config
from winnow.store.blobs import BlobStore

MIGRATIONS = Path(__file__).with_name("migrations")
#: The newest migration; a test checks it equals Alembic's head.
SCHEMA_HEAD = "0007"

_BUSY_TIMEOUT_MS = 60_000


def _sqlite_engine(url: str) -> Engine:
    engine = create_engine(url, connect_args={"timeout": _BUSY_TIMEOUT_MS / 1000})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):
        dbapi_conn.isolation_level = None  # we emit BEGIN ourselves (below)
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: consistent after any crash
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):
        mode = "IMMEDIATE" if conn.get_execution_options().get("winnow_write") else "DEFERRED"
        conn.exec_driver_sql(f"BEGIN {mode}")

    return engine


def migrate(engine: Engine, lock_dir: Path | None = None) -> None:
    """Upgrade the schema to the newest revision (no-op when it is already there)."""
    with engine.connect() as conn:
        try:
            current = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
        except Exception:
            current = None
    if current == SCHEMA_HEAD:
        return
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    lock = None
    if lock_dir is not None:
        lock = open(lock_dir / ".migrate.lock", "w")  # noqa: SIM115 - held for the block below
        fcntl.flock(lock, fcntl.LOCK_EX)
    try:
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
    finally:
        if lock is not None:
            lock.close()


class Store:
    """The metadata database plus the blob store under one data home."""

    def __init__(self, data_home: Path, engine: Engine):
        self.home = Path(data_home)
        self.engine = engine
        self.blobs = BlobStore(self.home / "blobs")
        self._read = sessionmaker(engine, expire_on_commit=False)
        self._write = sessionmaker(engine.execution_options(winnow_write=True), expire_on_commit=False)

    @classmethod
    def open(cls, data_home: Path | None = None) -> Store:
        """Open (creating when needed) the store at ``data_home`` or ``$WINNOW_HOME``."""
        data_home = Path(data_home) if data_home is not None else config.home()
        data_home.mkdir(parents=True, exist_ok=True)
        url = config.database_url(data_home)
        engine = _sqlite_engine(url) if url.startswith("sqlite") else create_engine(url)
        migrate(engine, lock_dir=data_home)
        return cls(data_home, engine)

    @property
    def tmp(self) -> Path:
        """Scratch space inside the data home (same filesystem as the blobs: renames are atomic)."""
        path = self.home / "tmp"
        path.mkdir(parents=True, exist_ok=True)
        return path

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A read-only session (a consistent snapshot in WAL mode)."""
        with self._read() as session:
            yield session
            session.rollback()

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A write transaction: committed when the block ends, rolled back on any exception."""
        with self._write() as session, session.begin():
            yield session

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def pid_alive(pid: int) -> bool:
    """True when a process with ``pid`` exists on this host (for stale-lock detection)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
