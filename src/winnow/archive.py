"""Safe extraction of dataset archives (zip, tar, tar.gz, tar.bz2, tar.xz).

An uploaded archive is untrusted input (BAD_INPUTS rows 11, 12 and 16). :func:`extract` refuses,
with an :class:`~winnow.errors.UnsafeInputError` naming the archive and the entry:

* entry names that would land outside the destination: ``..`` parts, absolute paths, drive
  letters, NUL bytes (every name goes through :func:`winnow.formats.base.safe_relpath`);
* links: symlink entries in a zip; in a tar, symlinks and hard links whose target lies outside
  the archive (tar's own ``data`` filter runs on every member as a second opinion). Links that
  stay inside a tar are written as plain *copies* of their target, so no link is ever created
  on disk and no later entry can be written through one;
* devices, FIFOs, encrypted zip entries and unknown compression methods;
* bombs: more than ``max_entries`` entries, more than ``max_total_bytes`` declared *or actually
  written* bytes, an entry (zip) or a whole archive (tar) that inflates more than ``max_ratio``
  times; the bytes are counted as they are written, so a header that lies about a size cannot
  get past the caps;
* two entries that would land on the same path (duplicates, or names equal after Unicode NFC
  normalisation), or a file where a folder is needed.

Nested archives are never opened: a ``.zip`` inside the archive is extracted as a plain file.
``__MACOSX/`` folders and ``.DS_Store`` files (macOS Finder litter) are skipped.

Names are normalised to Unicode NFC, so ``café`` written by macOS (NFD) and by Linux (NFC) is the
same file. Zip names without the UTF-8 flag are decoded as cp437, as the zip format says.
File modes, owners and timestamps in the archive are ignored: files are created with the
process's default permissions.

Extraction is all-or-nothing: everything is written to a private temporary folder next to
``dest`` and renamed into place at the end; on any error that folder is removed.
"""

from __future__ import annotations

import bz2
import errno
import gzip
import lzma
import os
import posixpath
import shutil
import stat
import tarfile
import tempfile
import unicodedata
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import IO, BinaryIO

from winnow.errors import ConflictError, FormatError, NotFoundError, UnsafeInputError, WinnowError
from winnow.formats.base import safe_relpath

__all__ = ["extract", "is_archive", "DEFAULT_MAX_TOTAL_BYTES", "DEFAULT_MAX_ENTRIES", "DEFAULT_MAX_RATIO"]

#: Default cap on the bytes an archive may expand to (20 GiB).
DEFAULT_MAX_TOTAL_BYTES = 20 * 2**30
#: Default cap on the number of entries (files, folders, links) in an archive.
DEFAULT_MAX_ENTRIES = 1_000_000
#: Default cap on uncompressed / compressed size, per zip entry or per tar archive.
DEFAULT_MAX_RATIO = 200.0

#: The ratio cap only applies above this many uncompressed bytes: small files of zeros or
#: whitespace legitimately compress far better than 200:1, and cannot hurt anyone.
RATIO_MIN_BYTES = 1 << 20

_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")  # a zip with entries; an empty zip
_GZIP_MAGIC = b"\x1f\x8b"
_BZIP2_MAGIC = b"BZh"
_XZ_MAGIC = b"\xfd7zXZ\x00"
_ZIP_METHODS = {
    zipfile.ZIP_STORED: "stored",
    zipfile.ZIP_DEFLATED: "deflate",
    zipfile.ZIP_BZIP2: "bzip2",
    zipfile.ZIP_LZMA: "lzma",
}
_JUNK_DIRS = frozenset({"__MACOSX"})
_JUNK_FILES = frozenset({".DS_Store"})
_CHUNK = 1 << 20
#: A tar member header (pax or GNU long name) larger than this is refused before it is read.
_MAX_TAR_HEADER_READ = 64 << 20
#: Bytes of tar framing (header blocks, long-name blocks, padding) allowed per entry.
_TAR_OVERHEAD_PER_ENTRY = 4096
_MAX_LINK_HOPS = 40
# Errors a decompressor or a corrupt archive raises while its data is read.
_READ_ERRORS = (zipfile.BadZipFile, tarfile.TarError, zlib.error, lzma.LZMAError, EOFError, ValueError, OSError)


# --------------------------------------------------------------------------- public API


def is_archive(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a zip or tar archive (plain, gzip, bzip2 or xz), by content.

    The file name and extension are ignored: a zip named ``data.bin`` is an archive, a PNG named
    ``data.zip`` is not. Missing files, folders and unreadable files are not archives.
    """
    path = Path(path)
    try:
        if not path.is_file():
            return False
        with open(path, "rb") as fh:
            head = fh.read(8)
        if head[:4] in _ZIP_MAGICS:
            return True
        return tarfile.is_tarfile(path)
    except (OSError, tarfile.TarError, EOFError, ValueError, zlib.error, lzma.LZMAError):
        return False


def extract(
    archive: str | os.PathLike[str],
    dest: str | os.PathLike[str],
    *,
    max_total_bytes: int = DEFAULT_MAX_TOTAL_BYTES,
    max_entries: int = DEFAULT_MAX_ENTRIES,
    max_ratio: float = DEFAULT_MAX_RATIO,
) -> Path:
    """Extract ``archive`` into the folder ``dest``, all or nothing; return the dataset root.

    ``dest`` must not exist, or be an empty folder; its parent is created if needed. The dataset
    root is ``dest / NAME`` when the archive holds exactly one top-level folder ``NAME`` and
    nothing else (``__MACOSX/`` and ``.DS_Store`` aside), else ``dest`` itself.

    Caps: ``max_total_bytes`` (uncompressed bytes, declared by headers and counted while
    writing), ``max_entries`` (entries of any kind, skipped ones included) and ``max_ratio``
    (uncompressed / compressed size of a zip entry, or of a whole tar archive, checked above
    :data:`RATIO_MIN_BYTES`).

    Raises :class:`~winnow.errors.UnsafeInputError` when an entry or a cap is refused,
    :class:`~winnow.errors.FormatError` when the file is not a readable zip or tar archive,
    :class:`~winnow.errors.NotFoundError` when it does not exist and
    :class:`~winnow.errors.ConflictError` when ``dest`` is not empty. On any error nothing is
    left in ``dest`` or next to it.
    """
    archive = Path(archive)
    dest = Path(dest)
    if not archive.is_file():
        raise NotFoundError(f"{archive}: no such archive file")
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise ConflictError(f"{dest}: cannot extract {archive.name} there: it exists and is not an empty folder")
    budget = _Budget(archive, max_total_bytes=max_total_bytes, max_entries=max_entries, max_ratio=max_ratio)
    with open(archive, "rb") as fh:
        head = fh.read(8)

    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".partial", dir=dest.parent))
    try:
        if head[:4] in _ZIP_MAGICS:
            _extract_zip(archive, tmp, budget)
        else:
            _extract_tar(archive, head, tmp, budget)
        top = list(tmp.iterdir())
        single = top[0].name if len(top) == 1 and top[0].is_dir() else None
        if dest.exists():
            dest.rmdir()  # empty, checked above
        os.rename(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest / single if single else dest


# --------------------------------------------------------------------------- limits and writing


class _Budget:
    """The caps of one extraction and what has been spent against them so far."""

    def __init__(self, archive: Path, *, max_total_bytes: int, max_entries: int, max_ratio: float):
        self.archive = archive
        self.max_total_bytes = max_total_bytes
        self.max_entries = max_entries
        self.max_ratio = max_ratio
        self.entries = 0
        self.declared = 0
        self.written = 0

    def refuse(self, entry: str | None, reason: str) -> UnsafeInputError:
        """The error for refusing ``entry`` (or the whole archive when ``None``)."""
        if entry is None:
            return UnsafeInputError(f"{self.archive}: refused ({reason})")
        return UnsafeInputError(f"{self.archive}: refused entry {entry!r} ({reason})")

    def count(self, entry: str) -> None:
        """One more entry; refuse past ``max_entries``."""
        self.entries += 1
        if self.entries > self.max_entries:
            raise self.refuse(entry, f"more than {self.max_entries} entries in the archive")

    def declare(self, entry: str, size: int, packed: int | None = None) -> None:
        """An entry's header says it holds ``size`` bytes, stored in ``packed`` bytes."""
        if size < 0:
            raise self.refuse(entry, f"negative size {size} in its header")
        self.declared += size
        if self.declared > self.max_total_bytes:
            raise self.refuse(entry, f"the archive declares more than {self.max_total_bytes} uncompressed bytes")
        self.check_ratio(entry, size, packed)

    def check_ratio(self, entry: str | None, size: int, packed: int | None) -> None:
        """Refuse when ``size`` bytes came out of ``packed`` bytes at more than ``max_ratio``."""
        if packed is None or size <= RATIO_MIN_BYTES:
            return
        if size > self.max_ratio * max(packed, 1):
            raise self.refuse(
                entry,
                f"{size} bytes from {packed} compressed bytes is a ratio above {self.max_ratio:g}; "
                "looks like a zip bomb",
            )

    def spend(self, entry: str, n: int) -> None:
        """``n`` more bytes were produced; refuse past ``max_total_bytes``."""
        self.written += n
        if self.written > self.max_total_bytes:
            raise self.refuse(entry, f"the archive expands to more than {self.max_total_bytes} bytes")


def _entry_path(budget: _Budget, raw_name: str, *, is_dir: bool) -> PurePosixPath | None:
    """The NFC-normalised, contained relative path of an entry; refuse unsafe names.

    ``None`` for a folder entry naming the root itself (``./``, as ``tar -C dir .`` writes).
    """
    name = unicodedata.normalize("NFC", raw_name)
    unified = name.replace("\\", "/")
    if is_dir and unified and not unified.startswith("/") and all(p in ("", ".") for p in unified.split("/")):
        return None
    try:
        return safe_relpath(name)
    except UnsafeInputError as exc:
        raise budget.refuse(None, str(exc)) from None


def _is_junk(rel: PurePosixPath) -> bool:
    return rel.parts[0] in _JUNK_DIRS or rel.name in _JUNK_FILES


def _mkdir(budget: _Budget, root: Path, rel: PurePosixPath, entry: str) -> None:
    try:
        root.joinpath(*rel.parts).mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise budget.refuse(entry, "a file of the same name is already in the archive") from None
    except OSError as exc:
        raise WinnowError(f"{budget.archive}: cannot create folder {entry!r}: {exc.strerror or exc}") from exc


def _copy_capped(
    budget: _Budget,
    src: IO[bytes],
    root: Path,
    rel: PurePosixPath,
    entry: str,
    *,
    declared: int | None = None,
    packed: int | None = None,
) -> None:
    """Stream ``src`` into a new file ``root/rel``, counting every byte against the caps.

    ``declared`` is the size the entry's header claims (more is refused, whatever the reader
    does); ``packed`` its compressed size (for the ratio cap). The target must not exist yet.
    """
    if rel.parent.parts:
        _mkdir(budget, root, rel.parent, entry)
    target = root.joinpath(*rel.parts)
    try:
        out = open(target, "xb")  # O_EXCL: never overwrite, never write through a link
    except (FileExistsError, IsADirectoryError, NotADirectoryError):
        raise budget.refuse(entry, "another entry already has this path (duplicate or Unicode/NFC twin)") from None
    except OSError as exc:
        raise WinnowError(f"{budget.archive}: cannot write {entry!r}: {exc.strerror or exc}") from exc
    with out:
        written = 0
        while True:
            try:
                chunk = src.read(_CHUNK)
            except UnsafeInputError:
                raise
            except _READ_ERRORS as exc:
                raise budget.refuse(entry, f"corrupt data, or a header that lies about its size: {exc}") from None
            if not chunk:
                break
            written += len(chunk)
            budget.spend(entry, len(chunk))
            if declared is not None and written > declared:
                raise budget.refuse(entry, f"inflates to more than the {declared} bytes its header declares")
            budget.check_ratio(entry, written, packed)
            try:
                out.write(chunk)
            except OSError as exc:
                raise WinnowError(f"{budget.archive}: cannot write {entry!r}: {exc.strerror or exc}") from exc


# --------------------------------------------------------------------------- zip


def _zip_file_type(info: zipfile.ZipInfo) -> int:
    """The ``S_IFMT`` bits of a zip entry's Unix mode (0 when the zip carries none)."""
    return stat.S_IFMT(info.external_attr >> 16)


def _open_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> IO[bytes]:
    """The decompressed stream of one zip entry (a seam for tests)."""
    return zf.open(info)


def _extract_zip(archive: Path, root: Path, budget: _Budget) -> None:
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise FormatError(archive, f"not a readable zip archive ({exc})") from None
    with zf:
        plan: list[tuple[zipfile.ZipInfo, PurePosixPath, bool]] = []
        # First pass: judge every entry from the central directory; nothing is written yet.
        for info in zf.infolist():
            entry = info.filename
            budget.count(entry)
            ftype = _zip_file_type(info)
            is_dir = info.is_dir() or ftype == stat.S_IFDIR
            rel = _entry_path(budget, entry, is_dir=is_dir)
            if rel is None or _is_junk(rel):
                continue
            if ftype == stat.S_IFLNK:
                raise budget.refuse(entry, "symbolic links are not allowed in a zip")
            if ftype not in (0, stat.S_IFREG, stat.S_IFDIR):
                raise budget.refuse(entry, "not a regular file or folder (device, FIFO or socket)")
            if is_dir:
                plan.append((info, rel, True))
                continue
            if info.flag_bits & 0x1:
                raise budget.refuse(entry, "encrypted entries are not supported")
            if info.compress_type not in _ZIP_METHODS:
                raise budget.refuse(
                    entry,
                    f"compression method {info.compress_type} is not supported "
                    f"(supported: {', '.join(_ZIP_METHODS.values())})",
                )
            budget.declare(entry, info.file_size, info.compress_size)
            plan.append((info, rel, False))
        # Second pass: write, counting the bytes that really come out.
        for info, rel, is_dir in plan:
            if is_dir:
                _mkdir(budget, root, rel, info.filename)
                continue
            try:
                src = _open_member(zf, info)
            except (zipfile.BadZipFile, NotImplementedError, RuntimeError, *_READ_ERRORS) as exc:
                raise budget.refuse(info.filename, f"cannot read the entry: {exc}") from None
            with src:
                _copy_capped(budget, src, root, rel, info.filename, declared=info.file_size, packed=info.compress_size)


# --------------------------------------------------------------------------- tar


class _CappedStream:
    """A read-only, seekable view of a (decompressed) tar stream with a hard size cap.

    Counts the bytes the decompressor produces, including headers and padding, so that neither a
    giant pax header nor a compressed stream of zeros can make tarfile read without bound.
    """

    def __init__(self, raw: BinaryIO, budget: _Budget, *, limit: int, packed: int | None):
        self._raw = raw
        self._budget = budget
        self._limit = limit
        self._packed = packed
        self._pos = 0
        #: The member being read (set by the extractor), to name it in errors.
        self.current: str | None = None

    def _check(self, end: int) -> None:
        if end > self._limit:
            raise self._budget.refuse(
                self.current,
                f"the tar stream expands beyond {self._limit} bytes "
                f"(the limit for {self._budget.max_total_bytes} bytes of files)",
            )
        self._budget.check_ratio(self.current, end, self._packed)

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0 or n > _MAX_TAR_HEADER_READ:
            # tarfile reads member data in small chunks; only a header read can be this big.
            where = f"after entry {self.current!r}" if self.current else "at the start"
            raise self._budget.refuse(None, f"a tar header {where} asks to read {n} bytes at once")
        n = min(n, self._limit + 1 - self._pos)  # never read more than one byte past the cap
        data = self._raw.read(n)
        self._pos += len(data)
        self._check(self._pos)
        return data

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        if whence == os.SEEK_CUR:
            offset += self._pos
        elif whence != os.SEEK_SET:
            raise OSError(errno.ESPIPE, "only absolute and relative seeks are supported")
        self._check(offset)
        self._pos = self._raw.seek(offset)
        return self._pos

    def tell(self) -> int:
        return self._pos

    def seekable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self._raw.close()


@contextmanager
def _tar_stream(archive: Path, head: bytes, budget: _Budget) -> Iterator[_CappedStream]:
    """The decompressed bytes of ``archive``, capped; the compression is told by magic bytes."""
    packed: int | None = archive.stat().st_size
    raw: BinaryIO
    if head.startswith(_GZIP_MAGIC):
        raw = gzip.open(archive, "rb")  # type: ignore[assignment]
    elif head.startswith(_BZIP2_MAGIC):
        raw = bz2.open(archive, "rb")  # type: ignore[assignment]
    elif head.startswith(_XZ_MAGIC):
        raw = lzma.open(archive, "rb")  # type: ignore[assignment]
    else:
        raw = open(archive, "rb")
        packed = None  # not compressed: no ratio to check
    limit = budget.max_total_bytes + _TAR_OVERHEAD_PER_ENTRY * budget.max_entries + 2 * tarfile.RECORDSIZE
    stream = _CappedStream(raw, budget, limit=limit, packed=packed)
    try:
        yield stream
    finally:
        stream.close()


def _link_target(budget: _Budget, member: tarfile.TarInfo, rel: PurePosixPath) -> PurePosixPath:
    """Where a tar link points, as a path inside the archive; refuse targets outside it."""
    linkname = unicodedata.normalize("NFC", member.linkname)
    kind = "symbolic link" if member.issym() else "hard link"
    if not linkname or linkname.startswith(("/", "\\")) or (len(linkname) > 1 and linkname[1] == ":"):
        raise budget.refuse(member.name, f"{kind} to an absolute path {member.linkname!r}")
    # Symlinks are relative to their folder, hard links to the archive root.
    base = rel.parent.as_posix() if member.issym() else ""
    joined = posixpath.normpath(posixpath.join(base, linkname.replace("\\", "/")))
    if joined == ".." or joined.startswith("../"):
        raise budget.refuse(member.name, f"{kind} to {member.linkname!r}, outside the archive")
    try:
        return safe_relpath(joined)
    except UnsafeInputError:
        raise budget.refuse(member.name, f"{kind} to {member.linkname!r}, outside the archive") from None


def _extract_tar(archive: Path, head: bytes, root: Path, budget: _Budget) -> None:
    links: dict[PurePosixPath, tuple[PurePosixPath, str]] = {}
    with _tar_stream(archive, head, budget) as stream:
        try:
            tf = tarfile.open(fileobj=stream, mode="r:")  # type: ignore[call-overload]
        except UnsafeInputError:
            raise
        except _READ_ERRORS as exc:
            raise FormatError(archive, f"not a zip or tar archive ({exc})") from None
        with tf:
            while True:
                try:
                    member = tf.next()
                except UnsafeInputError:
                    raise
                except _READ_ERRORS as exc:
                    raise FormatError(archive, f"corrupt tar archive after {budget.entries} entries ({exc})") from None
                if member is None:
                    break
                entry = member.name
                stream.current = entry
                budget.count(entry)
                rel = _entry_path(budget, entry, is_dir=member.isdir())
                if rel is None or _is_junk(rel):
                    continue
                if not (member.isreg() or member.isdir() or member.issym() or member.islnk()):
                    raise budget.refuse(entry, "not a regular file, folder or link (device or FIFO)")
                link = _link_target(budget, member, rel) if member.issym() or member.islnk() else None
                try:  # the standard library's verdict too (CVE-2007-4559 and friends)
                    tarfile.data_filter(member, str(root))
                except tarfile.FilterError as exc:
                    raise budget.refuse(entry, f"refused by tar's data filter: {exc}") from None
                if link is not None:
                    if rel in links:
                        raise budget.refuse(entry, "another entry already has this path (duplicate or Unicode/NFC twin)")
                    links[rel] = (link, entry)
                elif member.isdir():
                    _mkdir(budget, root, rel, entry)
                else:
                    budget.declare(entry, member.size)
                    src = tf.extractfile(member)
                    if src is None:  # pragma: no cover - regular members always have data
                        raise budget.refuse(entry, "no data")
                    with src:
                        _copy_capped(budget, src, root, rel, entry, declared=member.size)
    _materialise_links(root, links, budget)


def _materialise_links(root: Path, links: dict[PurePosixPath, tuple[PurePosixPath, str]], budget: _Budget) -> None:
    """Write each in-archive link as a copy of the regular file it finally points at."""
    for rel, (target, entry) in links.items():
        hops = 0
        while target in links:
            target = links[target][0]
            hops += 1
            if hops > _MAX_LINK_HOPS:
                raise budget.refuse(entry, "link loop")
        source = root.joinpath(*target.parts)
        if not source.is_file() or source.is_symlink():
            raise budget.refuse(
                entry,
                f"link to {target.as_posix()!r}, which is not a file in the archive "
                "(links to folders are not supported; re-create the archive with `tar -h`)",
            )
        size = source.stat().st_size
        budget.declare(entry, size)
        with open(source, "rb") as src:
            _copy_capped(budget, src, root, rel, entry, declared=size)
