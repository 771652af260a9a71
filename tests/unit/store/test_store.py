import hashlib
import sqlite3

from alembic.config import Config
from alembic.script import ScriptDirectory

from winnow.store.blobs import BlobStore
from winnow.store.db import MIGRATIONS, SCHEMA_HEAD, Store


def test_schema_head_matches_alembic_head():
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    assert ScriptDirectory.from_config(cfg).get_current_head() == SCHEMA_HEAD


def test_open_creates_sqlite_in_wal_mode_with_schema(tmp_path):
    store = Store.open(tmp_path / "home")
    store.close()
    con = sqlite3.connect(tmp_path / "home" / "winnow.db")
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tables = {r[0] for r in con.execute("select name from sqlite_master where type='table'")}
    assert {"projects", "images", "annotations", "blobs", "classes", "image_tags", "image_metadata"} <= tables
    assert con.execute("select version_num from alembic_version").fetchone()[0] == SCHEMA_HEAD
    # reopening is a no-op migration
    Store.open(tmp_path / "home").close()


def test_blob_store_is_content_addressed_and_idempotent(tmp_path):
    blobs = BlobStore(tmp_path)
    sha = blobs.put(b"hello")
    assert sha == hashlib.sha256(b"hello").hexdigest()
    assert blobs.path(sha) == tmp_path / sha[:2] / sha[2:4] / sha
    assert blobs.put(b"hello") == sha
    assert blobs.read(sha) == b"hello"
    assert list(blobs.iter_shas()) == [sha]
    assert not any((tmp_path / ".tmp").iterdir())


def test_blob_verify_detects_bit_flip_and_deletion(tmp_path):
    blobs = BlobStore(tmp_path)
    sha = blobs.put(b"some image bytes", durable=False)
    blobs.sync()
    assert blobs.verify(sha)
    p = blobs.path(sha)
    data = bytearray(p.read_bytes())
    data[3] ^= 0x01
    p.write_bytes(bytes(data))
    assert not blobs.verify(sha)
    p.unlink()
    assert not blobs.verify(sha) and not blobs.exists(sha)


def test_blob_path_refuses_non_digests(tmp_path):
    import pytest

    with pytest.raises(ValueError):
        BlobStore(tmp_path).path("../../etc/passwd")
