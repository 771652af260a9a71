"""Content-addressed blob store on the local disk.

A blob lives at ``<root>/<sha[:2]>/<sha[2:4]>/<sha>``. Writes go to a temporary file in
``<root>/.tmp``, then ``os.replace`` into place, so a reader never sees half a blob. Durability
is batched: :meth:`BlobStore.put` with ``durable=False`` defers the ``fsync`` to one
:meth:`BlobStore.sync` call that the importer makes before it commits the metadata that points at
the new blobs (a crash before that commit leaves only unreferenced blobs, which ``verify``
reports and ``gc`` removes).

The interface (``put``, ``open``, ``path``, ``exists``, ``verify``) is what an S3 back-end will
implement too.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class BlobStore:
    def __init__(self, root: Path):
        self.root = Path(root)
        self._tmp = self.root / ".tmp"
        self._pending: list[Path] = []

    def path(self, sha: str) -> Path:
        if len(sha) != 64 or not all(c in "0123456789abcdef" for c in sha):
            raise ValueError(f"not a sha256 hex digest: {sha!r}")
        return self.root / sha[:2] / sha[2:4] / sha

    def exists(self, sha: str) -> bool:
        return self.path(sha).is_file()

    def put(self, data: bytes, sha: str | None = None, *, durable: bool = True) -> str:
        """Store ``data`` (idempotent) and return its SHA-256.

        With ``durable=False`` the file is not fsynced until :meth:`sync`.
        """
        sha = sha or sha256_bytes(data)
        target = self.path(sha)
        if target.is_file():
            return sha
        target.parent.mkdir(parents=True, exist_ok=True)
        self._tmp.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self._tmp, prefix=sha[:16] + ".")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                if durable:
                    fh.flush()
                    os.fsync(fh.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        if not durable:
            self._pending.append(target)
        return sha

    def sync(self) -> None:
        """Make every blob written with ``durable=False`` durable (fsync files, then folders)."""
        if not self._pending:
            return
        folders = set()
        for path in self._pending:
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            folders.add(path.parent)
        for folder in folders:
            fd = os.open(folder, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        self._pending.clear()

    def read(self, sha: str) -> bytes:
        return self.path(sha).read_bytes()

    def copy_to(self, sha: str, dest: Path) -> None:
        shutil.copyfile(self.path(sha), dest)

    def iter_shas(self) -> Iterator[str]:
        """Every blob on disk (not the temporary area)."""
        if not self.root.is_dir():
            return
        for first in sorted(self.root.iterdir()):
            if first.name.startswith(".") or not first.is_dir():
                continue
            for second in sorted(first.iterdir()):
                for blob in sorted(second.iterdir()):
                    yield blob.name

    def verify(self, sha: str) -> bool:
        """True when the blob exists and its bytes still hash to its name."""
        path = self.path(sha)
        if not path.is_file():
            return False
        digest = hashlib.sha256()
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
        return digest.hexdigest() == sha

    def remove(self, sha: str) -> None:
        self.path(sha).unlink(missing_ok=True)

    def clean_tmp(self) -> None:
        """Remove temporary files left by a killed writer."""
        if self._tmp.is_dir():
            for leftover in self._tmp.iterdir():
                leftover.unlink(missing_ok=True)
