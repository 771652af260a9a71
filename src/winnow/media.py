"""Reading image files safely: magic bytes, header probe, bomb limits, EXIF orientation.

Only the decoders winnow needs are enabled (``Image.open(formats=...)``); FITS, PSD, SVG and
friends are refused. The probe reads headers only - it never decodes pixels - so it is cheap
enough to run on every imported file; :func:`decode` is the full, checked decode.
"""

from __future__ import annotations

import io
import math
import warnings
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from winnow.errors import WinnowError

#: Pillow format names winnow will open. Everything else is refused before any decoder runs.
ALLOWED_FORMATS = ("JPEG", "PNG", "BMP", "GIF", "TIFF", "WEBP")

#: Larger images are refused from their header, before decoding (Pillow's own error threshold).
MAX_IMAGE_PIXELS = 2 * 89_478_485

_ORIENTATION_TAG = 0x0112
_SWAPS_AXES = {5, 6, 7, 8}

# Magic bytes of things users upload by mistake (or on purpose) instead of an image.
_NOT_IMAGES = (
    (b"<!doctype html", "an HTML document"),
    (b"<html", "an HTML document"),
    (b"<svg", "an SVG document"),
    (b"<?xml", "an XML document"),
    (b"%pdf", "a PDF document"),
    (b"pk\x03\x04", "a zip archive"),
    (b"simple  =", "a FITS file"),
    (b"8bps", "a PSD file"),
)


class InvalidImageError(WinnowError):
    """The bytes are not an image winnow accepts (empty, truncated, unsupported, a bomb)."""


@dataclass(frozen=True)
class ImageInfo:
    """What the header says about an image.

    ``width``/``height`` are as displayed (EXIF orientation applied); ``raw_width``/``raw_height``
    are as stored. ``format`` is lower case (``jpeg``, ``png``...).
    """

    width: int
    height: int
    raw_width: int
    raw_height: int
    channels: int
    mode: str
    format: str
    orientation: int = 1


def sniff(head: bytes) -> str | None:
    """Name what ``head`` (the first bytes of a file) looks like when it is *not* an image."""
    if not head:
        return "an empty file"
    lowered = head.lstrip()[:32].lower()
    for magic, what in _NOT_IMAGES:
        if lowered.startswith(magic):
            return what
    return None


def _channels(im: Image.Image) -> int:
    if im.mode == "P":
        return 4 if "transparency" in im.info else 3
    if im.mode in ("I;16", "I;16B", "I;16L", "I", "F", "1", "L"):
        return 1
    return len(im.getbands())


def _orientation(im: Image.Image) -> int:
    try:
        if im.format == "PNG":
            raw = im.info.get("exif")
            if not raw:
                return 1
            exif = Image.Exif()
            exif.load(raw)
        else:
            exif = im.getexif()
        value = int(exif.get(_ORIENTATION_TAG, 1))
    except Exception:  # a broken EXIF block must not make the image unreadable
        return 1
    return value if 1 <= value <= 8 else 1


def _open(data: bytes, name: str) -> Image.Image:
    what = sniff(data[:64])
    if what is not None:
        raise InvalidImageError(f"{name}: not an image ({what})")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            im = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
        except Image.DecompressionBombError as exc:
            raise InvalidImageError(f"{name}: refused as a decompression bomb ({exc})") from None
        except UnidentifiedImageError:
            raise InvalidImageError(
                f"{name}: not a supported image (accepted: {', '.join(f.lower() for f in ALLOWED_FORMATS)})"
            ) from None
        except (OSError, ValueError, SyntaxError) as exc:
            raise InvalidImageError(f"{name}: unreadable image header ({exc})") from None
    w, h = im.size
    if w <= 0 or h <= 0:
        raise InvalidImageError(f"{name}: image has no pixels ({w}x{h})")
    if w * h > MAX_IMAGE_PIXELS:
        raise InvalidImageError(
            f"{name}: refused as a decompression bomb ({w}x{h} = {w * h} pixels > {MAX_IMAGE_PIXELS})"
        )
    return im


def probe(data: bytes, name: str = "<bytes>") -> ImageInfo:
    """Read the header of an encoded image; raise :class:`InvalidImageError` when refused."""
    im = _open(data, name)
    orientation = _orientation(im)
    w, h = im.size
    dw, dh = (h, w) if orientation in _SWAPS_AXES else (w, h)
    return ImageInfo(
        width=dw,
        height=dh,
        raw_width=w,
        raw_height=h,
        channels=_channels(im),
        mode=im.mode,
        format=(im.format or "").lower(),
        orientation=orientation,
    )


def probe_file(path: Path) -> ImageInfo:
    """:func:`probe` on a file's bytes."""
    return probe(Path(path).read_bytes(), str(path))


#: What transparent pixels are shown on when an image with alpha is decoded to a mode without it.
ALPHA_BACKGROUND = (128, 128, 128)


def _has_alpha(im: Image.Image) -> bool:
    return im.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in im.info


def flatten_alpha(im: Image.Image, background: tuple[int, int, int] = ALPHA_BACKGROUND) -> Image.Image:
    """``im`` composited over an opaque ``background`` (RGB; mid-grey by default).

    Dropping the alpha channel instead keeps whatever colour sits under the transparent pixels:
    icons drawn only in alpha (every GNOME "symbolic" icon is black RGB under its alpha) all
    become the same black square, so their hashes, embeddings and pixel statistics agree.
    Mid-grey rather than white or black keeps both dark and light drawings visible and does
    not make a transparent background count as over- or under-exposed.
    """
    rgba = im.convert("RGBA")
    out = Image.new("RGBA", rgba.size, (*background, 255))
    out.alpha_composite(rgba)
    return out.convert("RGB")


def decode(
    data: bytes, name: str = "<bytes>", mode: str = "RGB", *, min_side: int | None = None, fit: int | None = None
) -> Image.Image:
    """Fully decode an image, apply its EXIF orientation and convert it to ``mode``.

    An image with transparency decoded to a mode without alpha (``RGB``, ``L``) is composited
    over mid-grey (:func:`flatten_alpha`) rather than losing its alpha channel.

    ``min_side`` lets a JPEG decode at a reduced scale (DCT scaling, much faster) as long as
    both sides stay at least that large (in grey when ``mode="L"``); ``fit`` as long as the
    longer side stays at least that large (for an image that will be shrunk to fit a
    ``fit`` x ``fit`` box anyway). Other formats decode at full size.
    Raises :class:`InvalidImageError` on truncated or corrupt data.
    """
    im = _open(data, name)
    try:
        if (min_side or fit) and im.format == "JPEG":
            if fit:  # the box of the image's shape whose longer side is `fit`
                w, h = im.size
                scale = fit / max(w, h)
                request = (max(1, math.ceil(w * scale)), max(1, math.ceil(h * scale)))
            else:
                request = (min_side, min_side)
            # libjpeg decodes straight to grey when only grey is wanted (no chroma IDCT/colour pass)
            im.draft("L" if mode == "L" else "RGB", request)
        im.load()
        im = ImageOps.exif_transpose(im)
        if im.mode.startswith("I;16") and mode and not mode.startswith(("I", "F")):
            # Pillow clips 16-bit values to 0..255 when converting to an 8-bit mode, which turns
            # nearly every 16-bit image white; scale 0..65535 down to 0..255 instead.
            im = im.convert("I").point(lambda v: v * (1 / 256)).convert("L")
        if mode and "A" not in mode and _has_alpha(im):
            im = flatten_alpha(im)
        return im.convert(mode) if mode and im.mode != mode else im
    except (OSError, ValueError, SyntaxError) as exc:
        raise InvalidImageError(f"{name}: cannot decode image ({exc})") from None
