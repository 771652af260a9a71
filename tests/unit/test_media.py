"""Image probing and decoding against BAD_INPUTS rows 13-15. Every file is generated here."""

from __future__ import annotations

import io
import os
import struct
import time
import zlib

import numpy as np
import pytest
from PIL import Image

from winnow import media
from winnow.media import InvalidImageError

# --------------------------------------------------------------------------- helpers


def encode(im: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kwargs)
    return buf.getvalue()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_claiming(width: int, height: int) -> bytes:
    """A valid-looking PNG header for a ``width`` x ``height`` RGB image, with a tiny IDAT."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB, no interlace
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", zlib.compress(b"\0" * 16))
        + png_chunk(b"IEND", b"")
    )


def gif_claiming(width: int, height: int) -> bytes:
    """A 1x1 GIF whose logical screen descriptor claims ``width`` x ``height``."""
    data = bytearray(encode(Image.new("P", (1, 1)), "GIF"))
    assert data[:6] in (b"GIF87a", b"GIF89a")
    data[6:10] = struct.pack("<HH", width, height)
    return bytes(data)


def two_halves(size: tuple[int, int] = (40, 20)) -> Image.Image:
    """Red left half, blue right half: shows where the left edge went after a rotation."""
    w, h = size
    im = Image.new("RGB", size, (0, 0, 255))
    im.paste((255, 0, 0), (0, 0, w // 2, h))
    return im


def exif_orientation(value: int) -> Image.Exif:
    exif = Image.Exif()
    exif[0x0112] = value
    return exif


def noise_jpeg(size: int = 256) -> bytes:
    rng = np.random.default_rng(0)
    return encode(Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)), "JPEG", quality=90)


# --------------------------------------------------------------------------- decompression bombs (row 13)


@pytest.mark.parametrize(
    "make, size",
    [(png_claiming, 100_000), (gif_claiming, 65_535)],  # 65535 is the largest a GIF can claim
    ids=["png-100k", "gif-64k"],
)
def test_bomb_is_refused_from_the_header_without_decoding(make, size):
    data = make(size, size)
    pixels = size * size
    assert len(data) < 200
    start = time.perf_counter()
    with pytest.raises(InvalidImageError, match="bomb.png: refused as a decompression bomb") as err:
        media.probe(data, "bomb.png")
    assert f"({pixels} pixels)" in str(err.value)
    with pytest.raises(InvalidImageError, match="decompression bomb"):
        media.decode(data, "bomb.png")
    assert time.perf_counter() - start < 1.0  # header only: no 30 GB allocation


def test_a_large_but_allowed_header_is_probed():
    info = media.probe(png_claiming(10_000, 10_000))  # 100 Mpx: under the 179 Mpx limit
    assert (info.width, info.height, info.format, info.channels) == (10_000, 10_000, "png", 3)


# --------------------------------------------------------------------------- not images (row 14)


def test_zero_byte_file_is_refused(tmp_path):
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    with pytest.raises(InvalidImageError) as err:
        media.probe_file(path)
    assert str(err.value) == f"{path}: not an image (an empty file)"


@pytest.mark.parametrize(
    "data, what",
    [
        (b"<!DOCTYPE html><html><script>alert(1)</script></html>", "an HTML document"),
        (b"  \n<html><body>hi</body></html>", "an HTML document"),
        (b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>', "an SVG document"),
        (b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"/>', "an XML document"),
        (b"%PDF-1.7\n", "a PDF document"),
        (b"PK\x03\x04" + b"\0" * 40, "a zip archive"),
    ],
    ids=["html", "html-leading-space", "svg", "svg-xml-prolog", "pdf", "zip"],
)
def test_documents_named_jpg_are_refused_by_magic_bytes(tmp_path, data, what):
    path = tmp_path / "photo.jpg"
    path.write_bytes(data)
    with pytest.raises(InvalidImageError) as err:
        media.probe_file(path)
    assert str(err.value) == f"{path}: not an image ({what})"
    with pytest.raises(InvalidImageError, match=f"not an image \\({what}\\)"):
        media.decode(data, "photo.jpg")


def test_truncated_jpeg_probes_but_does_not_decode():
    data = noise_jpeg()
    truncated = data[: len(data) // 2]
    info = media.probe(truncated, "cut.jpg")
    assert (info.width, info.height, info.format, info.mode) == (256, 256, "jpeg", "RGB")
    with pytest.raises(InvalidImageError, match=r"^cut.jpg: cannot decode image \(image file is truncated"):
        media.decode(truncated, "cut.jpg")
    assert media.decode(data, "whole.jpg").size == (256, 256)  # the untruncated file is fine


def test_truncated_png_probes_but_does_not_decode():
    rng = np.random.default_rng(1)
    data = encode(Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)), "PNG")
    truncated = data[: len(data) // 2]
    assert media.probe(truncated).width == 64
    with pytest.raises(InvalidImageError, match="cannot decode image"):
        media.decode(truncated, "cut.png")


def test_a_header_cut_short_is_an_unreadable_header():
    data = noise_jpeg()[:100]
    with pytest.raises(InvalidImageError, match=r"^short.jpg: unreadable image header"):
        media.probe(data, "short.jpg")


# --------------------------------------------------------------------------- unsupported formats (row 15)


@pytest.mark.parametrize(
    "data, what",
    [
        (b"SIMPLE  =                    T".ljust(80) + b"END".ljust(80) + b" " * (2880 - 160), "a FITS file"),
        (b"8BPS\x00\x01" + b"\x00" * 6 + struct.pack(">HIIHH", 3, 64, 64, 8, 3), "a PSD file"),
    ],
    ids=["fits", "psd"],
)
def test_fits_and_psd_are_refused(data, what):
    with pytest.raises(InvalidImageError) as err:
        media.probe(data, "scan.png")
    assert str(err.value) == f"scan.png: not an image ({what})"


def test_formats_pillow_knows_but_winnow_does_not_are_refused():
    data = encode(Image.new("RGB", (5, 5)), "PCX")
    with pytest.raises(InvalidImageError) as err:
        media.probe(data, "x.pcx")
    assert str(err.value) == "x.pcx: not a supported image (accepted: jpeg, png, bmp, gif, tiff, webp)"


def test_tiff_is_accepted_including_multi_frame():
    single = media.probe(encode(Image.new("RGB", (7, 9), "green"), "TIFF"))
    assert (single.width, single.height, single.format, single.channels, single.mode) == (7, 9, "tiff", 3, "RGB")
    frames = [Image.new("L", (5, 4), v) for v in (0, 128, 255)]
    data = encode(frames[0], "TIFF", save_all=True, append_images=frames[1:])
    assert Image.open(io.BytesIO(data)).n_frames == 3
    multi = media.probe(data)
    assert (multi.width, multi.height, multi.format, multi.channels) == (5, 4, "tiff", 1)
    assert media.decode(data).getpixel((0, 0)) == (0, 0, 0)  # the first frame


def test_multi_frame_gif_probes_and_decodes_the_first_frame():
    frames = [Image.new("RGB", (10, 6), c) for c in ("red", "green", "blue")]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100)
    assert Image.open(io.BytesIO(data)).n_frames == 3
    info = media.probe(data)
    assert (info.width, info.height, info.format, info.mode, info.channels) == (10, 6, "gif", "P", 3)
    decoded = media.decode(data)
    assert (decoded.mode, decoded.size, decoded.getpixel((0, 0))) == ("RGB", (10, 6), (255, 0, 0))


# --------------------------------------------------------------------------- EXIF orientation (row 15)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_exif_orientation_6_swaps_the_displayed_size(fmt):
    data = encode(two_halves((40, 20)), fmt, exif=exif_orientation(6))
    if fmt == "PNG":
        assert b"eXIf" in data
    info = media.probe(data)
    assert info.orientation == 6
    assert (info.raw_width, info.raw_height) == (40, 20)
    assert (info.width, info.height) == (20, 40)
    decoded = media.decode(data)
    assert decoded.size == (20, 40)
    # Orientation 6 means "rotate 90 degrees clockwise to display": the left (red) half is on top.
    top, bottom = decoded.getpixel((10, 5)), decoded.getpixel((10, 35))
    assert top[0] > 200 and top[2] < 60
    assert bottom[2] > 200 and bottom[0] < 60


def test_orientations_that_keep_the_axes():
    info = media.probe(encode(two_halves((40, 20)), "JPEG", exif=exif_orientation(3)))
    assert (info.orientation, info.width, info.height) == (3, 40, 20)
    assert media.probe(encode(two_halves((40, 20)), "JPEG")).orientation == 1


def test_out_of_range_orientation_is_ignored():
    info = media.probe(encode(two_halves((40, 20)), "JPEG", exif=exif_orientation(42)))
    assert (info.orientation, info.width, info.height) == (1, 40, 20)


# --------------------------------------------------------------------------- modes and channels (row 15)


def test_16_bit_grayscale_png_has_one_channel_and_decodes_scaled():
    values = (np.arange(16, dtype=np.uint16).reshape(4, 4) * 4369).astype(np.uint16)  # 0 .. 65535
    data = encode(Image.fromarray(values), "PNG")
    info = media.probe(data)
    assert (info.mode, info.channels, info.width, info.height) == ("I;16", 1, 4, 4)
    gray = np.asarray(media.decode(data, mode="L"))
    np.testing.assert_array_equal(gray, (values // 256).astype(np.uint8))  # not clipped to white
    rgb = media.decode(data)
    assert rgb.mode == "RGB"
    np.testing.assert_array_equal(np.asarray(rgb)[..., 0], gray)
    assert media.decode(data, mode="I;16").getpixel((3, 3)) == 65535  # a 16-bit request is untouched


def test_cmyk_jpeg_has_four_channels_and_decodes_to_rgb():
    data = encode(Image.new("CMYK", (10, 5), (0, 255, 255, 0)), "JPEG")  # pure red in CMYK
    info = media.probe(data)
    assert (info.mode, info.channels, info.format) == ("CMYK", 4, "jpeg")
    decoded = media.decode(data)
    assert (decoded.mode, decoded.size) == ("RGB", (10, 5))
    r, g, b = decoded.getpixel((5, 2))
    assert r > 200 and g < 60 and b < 60


def test_palette_png_channels_depend_on_transparency():
    im = Image.new("P", (8, 8), 1)
    im.putpalette([0, 0, 0, 255, 0, 0] + [0, 0, 0] * 254)
    with_alpha = media.probe(encode(im, "PNG", transparency=0))
    without = media.probe(encode(im, "PNG"))
    assert (with_alpha.mode, with_alpha.channels) == ("P", 4)
    assert (without.mode, without.channels) == ("P", 3)
    assert media.decode(encode(im, "PNG", transparency=0), mode="RGBA").getpixel((0, 0)) == (255, 0, 0, 255)


@pytest.mark.parametrize(
    "mode, channels", [("RGBA", 4), ("RGB", 3), ("L", 1), ("LA", 2), ("1", 1)], ids=["rgba", "rgb", "l", "la", "1"]
)
def test_channels_per_mode(mode, channels):
    info = media.probe(encode(Image.new(mode, (3, 2)), "PNG"))
    assert (info.mode, info.channels, info.width, info.height) == (mode, channels, 3, 2)


def test_decode_keeps_alpha_when_asked_and_composites_it_over_grey_by_default():
    data = encode(Image.new("RGBA", (2, 2), (10, 20, 30, 40)), "PNG")
    a = 40 / 255
    assert media.ALPHA_BACKGROUND == (128, 128, 128)
    want = tuple(round(128 * (1 - a) + c * a) for c in (10, 20, 30))
    got = media.decode(data).getpixel((0, 0))
    assert all(abs(g - w) <= 1 for g, w in zip(got, want)), (got, want)
    assert media.decode(data, mode="RGBA").getpixel((0, 0)) == (10, 20, 30, 40)
    opaque = encode(Image.new("RGBA", (2, 2), (10, 20, 30, 255)), "PNG")
    assert media.decode(opaque).getpixel((0, 0)) == (10, 20, 30)


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P"])
def test_shapes_drawn_only_in_alpha_keep_their_shape(mode):
    """GNOME's symbolic icons: black RGB everywhere, the glyph in the alpha channel. Dropping alpha
    made every one of them the same black square (one 3,708-image near-duplicate group on a real
    scrape); composited over mid-grey, two glyphs differ."""
    def glyph(box):
        alpha = Image.new("L", (16, 16), 0)
        alpha.paste(255, box)
        im = Image.new("RGBA", (16, 16), (0, 0, 0, 0))
        im.putalpha(alpha)
        if mode == "LA":
            return im.convert("LA")
        if mode == "P":
            p = Image.new("P", (16, 16), 0)
            p.putpalette([0, 0, 0, 0, 0, 0] + [0, 0, 0] * 254)
            p.paste(1, box)
            return p
        return im

    kw = {"transparency": 0} if mode == "P" else {}
    a = np.asarray(media.decode(encode(glyph((2, 2, 8, 14)), "PNG", **kw), mode="L"))
    b = np.asarray(media.decode(encode(glyph((8, 2, 14, 8)), "PNG", **kw), mode="L"))
    assert a[5, 4] == 0 and a[5, 12] == 128 and b[5, 4] == 128 and b[5, 12] == 0
    assert (a != b).mean() > 0.3


def test_probe_file_reads_from_disk(tmp_path):
    path = tmp_path / "a b#?.png"
    path.write_bytes(encode(Image.new("RGB", (6, 3)), "PNG"))
    info = media.probe_file(path)
    assert (info.width, info.height, info.format, os.fspath(path).endswith("#?.png")) == (6, 3, "png", True)


def test_fit_lets_a_jpeg_decode_at_the_smallest_dct_scale_whose_longer_side_still_fits():
    data = encode(Image.new("RGB", (640, 480), (90, 120, 150)), "JPEG")
    assert media.decode(data, min_side=256).size == (640, 480)  # both sides >= 256: no scaling
    assert media.decode(data, fit=256).size == (320, 240)  # longer side >= 256: half scale
    assert media.decode(data, fit=100).size == (160, 120)
    assert media.decode(encode(Image.new("RGB", (640, 480)), "PNG"), fit=256).size == (640, 480)  # JPEG only
