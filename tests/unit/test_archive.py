"""Safe archive extraction (BAD_INPUTS rows 11, 12, 16). Every archive is generated here."""

from __future__ import annotations

import contextlib
import copy
import gzip
import io
import os
import stat
import tarfile
import unicodedata
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from winnow import archive
from winnow.errors import ConflictError, FormatError, UnsafeInputError

# --------------------------------------------------------------------------- helpers

Entry = tuple[str | zipfile.ZipInfo, bytes]


def make_zip(path: Path, entries: list[Entry], compression: int = zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(path, "w", compression=compression) as zf:
        for name, data in entries:
            zf.writestr(name, data)
    return path


def zip_bytes(entries: list[Entry]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries:
            zf.writestr(name, data)
    return buf.getvalue()


def tar_member(name: str, data: bytes | None = None, *, type: bytes = tarfile.REGTYPE, linkname: str = "") -> tuple:
    info = tarfile.TarInfo(name)
    info.type = type
    info.linkname = linkname
    if data is not None:
        info.size = len(data)
    return info, data


def make_tar(path: Path, members: list[tuple], mode: str = "w") -> Path:
    with tarfile.open(path, mode) as tf:
        for info, data in members:
            tf.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def files_under(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def assert_nothing_left(dest: Path) -> None:
    """No destination and no temporary folder next to it."""
    assert not dest.exists()
    if dest.parent.exists():
        assert [p.name for p in dest.parent.iterdir() if p.name.startswith(f".{dest.name}.")] == []


def assert_no_file_named(name: str, tmp_path: Path) -> None:
    """``name`` exists nowhere under the test's parent folder (where a zip slip would land)."""
    assert list(tmp_path.parent.rglob(name)) == []


# --------------------------------------------------------------------------- normal extraction


def test_zip_with_nested_folder_extracts_and_returns_the_single_root(tmp_path):
    src = make_zip(
        tmp_path / "data.zip",
        [
            ("ds/", b""),
            ("ds/images/a.jpg", b"jpeg-a"),
            ("ds/images/sub/b.png", b"png-b"),
            ("ds/labels/a.txt", b"0 0.5 0.5 0.1 0.1\n"),
            ("ds/.DS_Store", b"finder"),
            ("__MACOSX/ds/images/._a.jpg", b"resource fork"),
        ],
    )
    dest = tmp_path / "out" / "x"
    root = archive.extract(src, dest)
    assert root == dest / "ds"
    assert files_under(dest) == {
        "ds/images/a.jpg": b"jpeg-a",
        "ds/images/sub/b.png": b"png-b",
        "ds/labels/a.txt": b"0 0.5 0.5 0.1 0.1\n",
    }
    assert not (dest / "__MACOSX").exists()
    assert [p.name for p in dest.parent.iterdir()] == ["x"]  # the temporary folder was renamed


def test_several_top_level_entries_return_dest(tmp_path):
    src = make_zip(tmp_path / "d.zip", [("images/a.jpg", b"a"), ("annotations.json", b"{}")])
    dest = tmp_path / "out"
    assert archive.extract(src, dest) == dest
    assert files_under(dest) == {"images/a.jpg": b"a", "annotations.json": b"{}"}


def test_a_single_top_level_file_returns_dest(tmp_path):
    src = make_zip(tmp_path / "d.zip", [("annotations.json", b"{}")])
    assert archive.extract(src, tmp_path / "out") == tmp_path / "out"


def test_an_existing_empty_dest_is_used_and_a_non_empty_one_refused(tmp_path):
    src = make_zip(tmp_path / "d.zip", [("a.txt", b"a")])
    empty = tmp_path / "empty"
    empty.mkdir()
    assert archive.extract(src, empty) == empty
    assert files_under(empty) == {"a.txt": b"a"}
    with pytest.raises(ConflictError, match="not an empty folder"):
        archive.extract(src, empty)
    assert files_under(empty) == {"a.txt": b"a"}


def test_tar_gz_extracts_with_root_and_dot_entry(tmp_path):
    src = make_tar(
        tmp_path / "d.tar.gz",
        [
            tar_member("./", type=tarfile.DIRTYPE),
            tar_member("./ds", type=tarfile.DIRTYPE),
            tar_member("./ds/a.txt", b"hello"),
            tar_member("./ds/sub/b.txt", b"world"),
        ],
        mode="w:gz",
    )
    dest = tmp_path / "out"
    assert archive.extract(src, dest) == dest / "ds"
    assert files_under(dest) == {"ds/a.txt": b"hello", "ds/sub/b.txt": b"world"}


@pytest.mark.parametrize("mode", ["w", "w:bz2", "w:xz"])
def test_plain_bz2_and_xz_tars_extract(tmp_path, mode):
    src = make_tar(tmp_path / "d.archive", [tar_member("ds/a.txt", b"abc")], mode=mode)
    assert files_under(archive.extract(src, tmp_path / "out")) == {"a.txt": b"abc"}


def test_links_inside_a_tar_become_plain_copies(tmp_path):
    src = make_tar(
        tmp_path / "d.tar",
        [
            tar_member("ds/a.txt", b"payload"),
            tar_member("ds/sym.txt", type=tarfile.SYMTYPE, linkname="a.txt"),
            tar_member("ds/sub/up.txt", type=tarfile.SYMTYPE, linkname="../sym.txt"),  # a chain
            tar_member("ds/hard.txt", type=tarfile.LNKTYPE, linkname="ds/a.txt"),
        ],
    )
    root = archive.extract(src, tmp_path / "out")
    assert files_under(root) == {"a.txt": b"payload", "hard.txt": b"payload", "sub/up.txt": b"payload", "sym.txt": b"payload"}
    assert not any(p.is_symlink() for p in root.rglob("*"))
    assert (root / "hard.txt").stat().st_ino != (root / "a.txt").stat().st_ino


def test_nested_zip_is_extracted_as_a_plain_file(tmp_path):
    inner = zip_bytes([("deep/secret.txt", b"inner")])
    src = make_zip(tmp_path / "outer.zip", [("ds/inner.zip", inner), ("ds/a.txt", b"a")])
    root = archive.extract(src, tmp_path / "out")
    assert files_under(root) == {"inner.zip": inner, "a.txt": b"a"}
    assert not list((tmp_path / "out").rglob("secret.txt"))


def test_unicode_names_are_stored_nfc(tmp_path):
    nfd = unicodedata.normalize("NFD", "ds/café/été.txt")
    assert nfd != unicodedata.normalize("NFC", nfd)
    src = make_zip(tmp_path / "u.zip", [(nfd, b"x"), ("ds/日本語 #1 %2e%2e.txt", b"y")])
    root = archive.extract(src, tmp_path / "out")
    assert sorted(os.listdir(root)) == sorted(["café", "日本語 #1 %2e%2e.txt"])
    assert os.listdir(root / "café") == ["été.txt"]  # NFC on disk
    assert (root / "café" / "été.txt").read_bytes() == b"x"


# --------------------------------------------------------------------------- zip slip and links


def test_zip_slip_is_refused_and_leaves_nothing(tmp_path):
    src = make_zip(tmp_path / "slip.zip", [("ds/ok.txt", b"fine"), ("../../evil.txt", b"pwned")])
    dest = tmp_path / "a" / "b" / "dest"
    with pytest.raises(UnsafeInputError) as err:
        archive.extract(src, dest)
    assert "slip.zip" in str(err.value)
    assert "../../evil.txt" in str(err.value)
    assert_nothing_left(dest)
    assert_no_file_named("evil.txt", tmp_path)
    assert_no_file_named("ok.txt", tmp_path)


@pytest.mark.parametrize(
    "name, reason",
    [
        ("/tmp/x_winnow_abs", "absolute path"),
        ("C:\\x_winnow_drive", "absolute path"),
        ("C:/x_winnow_drive", "absolute path"),
        ("..\\..\\x_winnow_back", "escapes"),
        ("ds/../../x_winnow_mid", "escapes"),
    ],
)
def test_absolute_drive_and_parent_names_are_refused(tmp_path, name, reason):
    src = make_zip(tmp_path / "bad.zip", [("ds/a.txt", b"a"), (name, b"x")])
    dest = tmp_path / "out"
    with pytest.raises(UnsafeInputError, match=reason) as err:
        archive.extract(src, dest)
    assert "bad.zip" in str(err.value) and repr(name) in str(err.value)
    assert_nothing_left(dest)
    assert not Path("/tmp/x_winnow_abs").exists()


def test_zip_symlink_entry_is_refused(tmp_path):
    link = zipfile.ZipInfo("ds/passwd")
    link.create_system = 3
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    src = make_zip(tmp_path / "link.zip", [("ds/a.txt", b"a"), (link, b"/etc/passwd")])
    dest = tmp_path / "out"
    with pytest.raises(UnsafeInputError, match=r"'ds/passwd' \(symbolic links are not allowed"):
        archive.extract(src, dest)
    assert_nothing_left(dest)


@pytest.mark.parametrize(
    "member, match",
    [
        (tar_member("ds/passwd", type=tarfile.SYMTYPE, linkname="/etc/passwd"), "symbolic link to an absolute path"),
        (tar_member("ds/up", type=tarfile.SYMTYPE, linkname="../../etc/passwd"), "outside the archive"),
        (tar_member("ds/hard", type=tarfile.LNKTYPE, linkname="/etc/passwd"), "hard link to an absolute path"),
        (tar_member("ds/hard", type=tarfile.LNKTYPE, linkname="../outside.txt"), "outside the archive"),
        (tar_member("../evil.txt", b"pwned"), "escapes its root"),
        (tar_member("/tmp/x_winnow_tar_abs", b"pwned"), "absolute path"),
        (tar_member("ds/fifo", type=tarfile.FIFOTYPE), "device or FIFO"),
        (tar_member("ds/dev", type=tarfile.CHRTYPE), "device or FIFO"),
    ],
    ids=["abs-symlink", "rel-symlink-out", "abs-hardlink", "rel-hardlink-out", "dotdot", "abs", "fifo", "chardev"],
)
def test_tar_escapes_links_and_devices_are_refused(tmp_path, member, match):
    # The good file comes first, so it has been written when the bad member is met.
    src = make_tar(tmp_path / "bad.tar.gz", [tar_member("ds/ok.txt", b"ok"), member], mode="w:gz")
    dest = tmp_path / "out"
    with pytest.raises(UnsafeInputError, match=match) as err:
        archive.extract(src, dest)
    assert "bad.tar.gz" in str(err.value)
    assert_nothing_left(dest)
    assert_no_file_named("evil.txt", tmp_path)
    assert not Path("/tmp/x_winnow_tar_abs").exists()


def test_tar_link_to_a_folder_is_refused(tmp_path):
    src = make_tar(
        tmp_path / "d.tar",
        [tar_member("ds/sub", type=tarfile.DIRTYPE), tar_member("ds/latest", type=tarfile.SYMTYPE, linkname="sub")],
    )
    with pytest.raises(UnsafeInputError, match="not a file in the archive"):
        archive.extract(src, tmp_path / "out")
    assert_nothing_left(tmp_path / "out")


def test_duplicate_and_nfc_twin_names_are_refused(tmp_path):
    nfc = "ds/café.txt"
    nfd = unicodedata.normalize("NFD", nfc)
    for i, entries in enumerate([[(nfc, b"1"), (nfd, b"2")], [("ds/a.txt", b"1"), ("ds/a.txt", b"2")]]):
        with pytest.warns(UserWarning, match="Duplicate name") if i == 1 else contextlib.nullcontext():
            src = make_zip(tmp_path / f"dup{i}.zip", entries)
        dest = tmp_path / f"out{i}"
        with pytest.raises(UnsafeInputError, match="another entry already has this path"):
            archive.extract(src, dest)
        assert_nothing_left(dest)


def test_file_where_a_folder_is_needed_is_refused(tmp_path):
    src = make_zip(tmp_path / "c.zip", [("ds/a", b"file"), ("ds/a/b.txt", b"inside")])
    with pytest.raises(UnsafeInputError, match="'ds/a/b.txt'"):
        archive.extract(src, tmp_path / "out")
    assert_nothing_left(tmp_path / "out")


# --------------------------------------------------------------------------- bombs and caps

ZEROS = b"\0" * (5 * 2**20)  # 5 MiB that deflate to about 5 KiB


def test_zip_bomb_is_refused_by_the_total_size_cap(tmp_path):
    src = make_zip(tmp_path / "bomb.zip", [("ds/a.bin", ZEROS[:600_000]), ("ds/b.bin", ZEROS[:600_000])])
    assert src.stat().st_size < 10_000
    dest = tmp_path / "out"
    with pytest.raises(UnsafeInputError, match="'ds/b.bin'.*declares more than 1000000 uncompressed bytes"):
        archive.extract(src, dest, max_total_bytes=1_000_000, max_ratio=1e9)
    assert_nothing_left(dest)


def test_zip_bomb_is_refused_by_the_ratio_cap(tmp_path):
    src = make_zip(tmp_path / "bomb.zip", [("ds/zeros.bin", ZEROS)])
    dest = tmp_path / "out"
    with pytest.raises(UnsafeInputError, match=r"'ds/zeros.bin'.*ratio above 200.*zip bomb"):
        archive.extract(src, dest)
    assert_nothing_left(dest)
    # The same archive passes when the caller allows the ratio.
    assert files_under(archive.extract(src, dest, max_ratio=1e6)) == {"zeros.bin": ZEROS}


def test_small_highly_compressible_files_are_not_bombs(tmp_path):
    src = make_zip(tmp_path / "ok.zip", [("ds/empty-mask.bin", b"\0" * 100_000)])
    assert files_under(archive.extract(src, tmp_path / "out")) == {"empty-mask.bin": b"\0" * 100_000}


def test_tar_gz_bomb_is_refused_by_the_ratio_and_total_caps(tmp_path):
    src = make_tar(tmp_path / "bomb.tgz", [tar_member("ds/zeros.bin", ZEROS)], mode="w:gz")
    dest = tmp_path / "out"
    with pytest.raises(UnsafeInputError, match="ratio above 200"):
        archive.extract(src, dest)
    assert_nothing_left(dest)
    with pytest.raises(UnsafeInputError, match="'ds/zeros.bin'.*declares more than 1000000"):
        archive.extract(src, dest, max_total_bytes=1_000_000, max_ratio=1e9)
    assert_nothing_left(dest)


@pytest.mark.parametrize("kind", ["zip", "tar"])
def test_entry_count_cap(tmp_path, kind):
    names = [f"ds/{i}.txt" for i in range(11)]
    if kind == "zip":
        src = make_zip(tmp_path / "many.zip", [(n, b"x") for n in names])
    else:
        src = make_tar(tmp_path / "many.tar", [tar_member(n, b"x") for n in names])
    dest = tmp_path / "out"
    with pytest.raises(UnsafeInputError, match=r"'ds/10.txt' \(more than 10 entries"):
        archive.extract(src, dest, max_entries=10)
    assert_nothing_left(dest)
    assert len(files_under(archive.extract(src, dest, max_entries=11))) == 11


def test_a_giant_tar_header_is_refused_before_it_is_read(tmp_path):
    # A GNU long-name header claiming 100 MiB: tarfile would read it into memory in one go.
    header = tarfile.TarInfo("././@LongLink")
    header.type = tarfile.GNUTYPE_LONGNAME
    header.size = 100 << 20
    raw = header.tobuf(format=tarfile.GNU_FORMAT) + b"ds/a.txt\0".ljust(512, b"\0")
    for name, opener in [("long.tar", open), ("long.tar.gz", gzip.open)]:
        with opener(tmp_path / name, "wb") as fh:
            fh.write(raw)
        with pytest.raises(UnsafeInputError, match="a tar header at the start asks to read 104857600 bytes"):
            archive.extract(tmp_path / name, tmp_path / "out")
        assert_nothing_left(tmp_path / "out")


def _lying_zip(path: Path, payload: bytes, claimed: int) -> Path:
    """A zip whose local and central headers both claim ``claimed`` uncompressed bytes."""
    data = bytearray(zip_bytes([("ds/big.bin", payload)]))
    assert data[:4] == b"PK\x03\x04"
    data[22:26] = claimed.to_bytes(4, "little")  # local header: uncompressed size
    cd = data.rfind(b"PK\x01\x02")
    data[cd + 24 : cd + 28] = claimed.to_bytes(4, "little")  # central directory: uncompressed size
    path.write_bytes(bytes(data))
    with zipfile.ZipFile(path) as zf:  # the lie is what a reader sees
        assert zf.getinfo("ds/big.bin").file_size == claimed
    return path


LYING_PAYLOAD = os.urandom(300_000)  # incompressible: the ratio cap stays out of the way


def test_a_header_that_lies_about_its_size_is_refused(tmp_path):
    src = _lying_zip(tmp_path / "liar.zip", LYING_PAYLOAD, claimed=1_000)
    dest = tmp_path / "out"
    with pytest.raises(UnsafeInputError, match="'ds/big.bin'.*lies about its size"):
        archive.extract(src, dest, max_total_bytes=100_000)
    assert_nothing_left(dest)


def test_the_written_bytes_counter_stops_a_reader_that_trusts_the_data(tmp_path, monkeypatch):
    # zipfile itself stops at the declared size; simulate a reader that does not, to check that
    # the byte counter (not the header) is what enforces the cap.
    src = _lying_zip(tmp_path / "liar.zip", LYING_PAYLOAD, claimed=1_000)

    def open_ignoring_the_header(zf, info):
        honest = copy.copy(info)
        honest.file_size = len(LYING_PAYLOAD)
        return zf.open(honest)

    monkeypatch.setattr(archive, "_open_member", open_ignoring_the_header)
    dest = tmp_path / "out"
    with pytest.raises(UnsafeInputError, match=r"'ds/big.bin' \(the archive expands to more than 100000 bytes"):
        archive.extract(src, dest, max_total_bytes=100_000)
    assert_nothing_left(dest)
    with pytest.raises(UnsafeInputError, match="inflates to more than the 1000 bytes its header declares"):
        archive.extract(src, dest)
    assert_nothing_left(dest)


def test_encrypted_zip_entries_are_refused(tmp_path):
    data = bytearray(zip_bytes([("ds/a.txt", b"secret")]))
    data[6] |= 0x1  # local header general purpose flags: encrypted
    cd = data.rfind(b"PK\x01\x02")
    data[cd + 8] |= 0x1
    (tmp_path / "enc.zip").write_bytes(bytes(data))
    with pytest.raises(UnsafeInputError, match="encrypted"):
        archive.extract(tmp_path / "enc.zip", tmp_path / "out")


def test_not_an_archive_is_a_format_error(tmp_path):
    (tmp_path / "notes.zip").write_bytes(b"just some text, not an archive\n" * 40)
    with pytest.raises(FormatError, match="not a zip or tar archive"):
        archive.extract(tmp_path / "notes.zip", tmp_path / "out")
    assert_nothing_left(tmp_path / "out")


# --------------------------------------------------------------------------- is_archive


def _png_bytes() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (4, 4), "red").save(buf, "PNG")
    return buf.getvalue()


def test_is_archive_goes_by_content_not_extension(tmp_path):
    (tmp_path / "data.bin").write_bytes(zip_bytes([("a.txt", b"a")]))
    make_tar(tmp_path / "data.txt", [tar_member("a.txt", b"a")], mode="w:gz")
    make_tar(tmp_path / "plain", [tar_member("a.txt", b"a")])
    make_tar(tmp_path / "x.jpg", [tar_member("a.txt", b"a")], mode="w:xz")
    (tmp_path / "empty.zip").write_bytes(zip_bytes([]))
    (tmp_path / "image.zip").write_bytes(_png_bytes())
    (tmp_path / "text.tar").write_bytes(b"hello\n")
    (tmp_path / "zero.zip").write_bytes(b"")
    (tmp_path / "folder.zip").mkdir()
    assert archive.is_archive(tmp_path / "data.bin") is True
    assert archive.is_archive(tmp_path / "data.txt") is True
    assert archive.is_archive(tmp_path / "plain") is True
    assert archive.is_archive(tmp_path / "x.jpg") is True
    assert archive.is_archive(tmp_path / "empty.zip") is True
    assert archive.is_archive(tmp_path / "image.zip") is False
    assert archive.is_archive(tmp_path / "text.tar") is False
    assert archive.is_archive(tmp_path / "zero.zip") is False
    assert archive.is_archive(tmp_path / "folder.zip") is False
    assert archive.is_archive(tmp_path / "missing.zip") is False
