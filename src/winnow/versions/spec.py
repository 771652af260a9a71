"""The recipe specs of a version, as typed on the command line, and their canonical form.

``parse_preprocess`` and ``parse_augment`` turn ``--preprocess`` and ``--augment`` text into
lists of ``{"op": ...}`` dicts with every parameter explicit; the version id hashes that form.
:mod:`winnow.versions.transforms` applies it to pixels and annotations.

Spec grammar
------------

A spec is comma-separated steps, each ``name`` or ``name=value``. Values: a number (``15``,
``0.2``, ``1e-1``); a range ``a:b`` (``-5:20``); a size ``WxH`` (``640x480``); a list joined
with ``+`` (``cat+dog``); a map ``old>new`` (``kitten>cat``). Names are case-insensitive; each
step may appear once. Class names cannot contain ``,`` ``+`` ``>`` or ``=``.

**Preprocess** (``--preprocess``, default ``auto-orient``; an empty spec means none):

============================  ================================================================
``auto-orient``               images are decoded upright (EXIF orientation applied); recorded,
                              no pixel work here
``resize=WxH[:MODE]``         ``stretch`` (default) to exactly ``W x H``; ``fit``: scale to fit
                              inside, letterbox with gray 114, centred; ``fill``: scale to cover,
                              centre-crop
``grayscale``                 luminance, kept as 3 equal channels so models still take RGB
``tile=RxC``                  cut into ``R`` rows x ``C`` columns of equal tiles (edges at
                              ``floor(i * size / n)``); output names get ``_tile{row}x{col}``
                              (0-based). See *tile* below for which pieces are kept
``remap=a>b+c>b``             rename classes; several old names to one new name merge them. The
                              map is applied at once (``a>b+b>a`` swaps)
``drop=a+b``                  delete those classes' annotations
``filter-null``               leave out images with no annotation left after remap/drop (an
                              image with no annotations to begin with too)
============================  ================================================================

Pixel steps (resize, grayscale, tile) run in the order given. Label steps (remap, drop) run in
the order given among themselves; ``filter-null`` is checked after all of them. The canonical
list is ``auto-orient`` first, then remap/drop, then ``filter-null``, then the pixel steps, so
moving a label step past a pixel step does not make another version.

**Augment** (``--augment``; empty means no augmentation). Each train image gets ``outputs``
augmented copies; every op listed is applied to every copy, in the order below (whatever the
order written), with its parameter drawn uniformly in its range for each copy (flips excepted).
A single number ``X`` means ``-X:X`` for the symmetric ops and ``0:X`` for the one-sided ones
(crop, blur, noise); ``a:b`` gives the range itself.

==================  ==========================================================  ==============
op                  effect                                                      allowed
==================  ==========================================================  ==============
``outputs=N``       copies per train image (default 3)                          1 .. 50
``mosaic=P``        with probability ``P``: a 2x2 mosaic of this image and 3    0 < P <= 1
                    other train images, the size of this image
``flip=h|v|hv``     each named axis flipped with probability 0.5                h, v, hv
``crop=F``          random crop keeping ``1-u`` of each side (aspect kept),     0 .. 0.9
                    resized back to the image size
``rotate=DEG``      rotation by ``u`` degrees about the centre                  -180 .. 180
``scale=F``         zoom by ``1+u`` about the centre                            -0.9 .. 1
``shear=DEG``       shear by ``u`` degrees along x and another along y          -45 .. 45
``brightness=F``    add ``u * 255``                                             -1 .. 1
``contrast=F``      multiply by ``1+u``                                         -1 .. 1
``hue=DEG``         rotate the hue by ``u`` degrees                             -180 .. 180
``blur=SIGMA``      gaussian blur of sigma ``u`` px (kernel ``2*int(3.5u)+1``)  0 .. 25
``noise=F``         gaussian noise of std ``u * 255``, the same on the three    0 .. 0.5
                    channels (luminance noise)
``cutout=N``        ``N`` holes (``a:b``: a number drawn) of 10% of each side,  1 .. 20
                    filled gray 114; the boxes under them are kept
==================  ==========================================================  ==============

Rotate, scale and shear are one affine warp (borders filled gray 114). A single value must be
positive; a range that is all zero (``rotate=0:0``) has no effect and is refused.

Canonical form: ``parse_preprocess`` gives a list of ``{"op": name, ...}`` dicts and
``parse_augment`` ``{"outputs": N, "ops": [...]}``, every parameter explicit (``resize`` has its
``mode``; ranged ops a ``"range": [lo, hi]``), integers as ``int`` and the rest as ``float``, so
``rotate=15``, ``rotate=15.0`` and ``rotate=-15:15`` give equal dicts. Unknown ops, bad or
out-of-range values and duplicate steps raise :class:`~winnow.errors.InvalidInputError` naming
the step.
"""

from __future__ import annotations

import re
from typing import Any

from winnow.errors import InvalidInputError

#: Side of a cutout hole, as a fraction of the image side.
CUTOUT_SIZE = 0.1

DEFAULT_OUTPUTS = 3
MAX_OUTPUTS = 50
MAX_SIZE = 16384  # resize, pixels a side
MAX_TILES = 32  # tile, rows or columns
MAX_HOLES = 20

LABEL_OPS = frozenset({"remap", "drop", "filter-null"})
_FLAGS = ("auto-orient", "grayscale", "filter-null")
_RESIZE_MODES = ("stretch", "fit", "fill")

#: Augment ops in the order they are applied (and listed in the canonical form).
_AUG_ORDER = (
    "mosaic",
    "flip",
    "crop",
    "rotate",
    "scale",
    "shear",
    "brightness",
    "contrast",
    "hue",
    "blur",
    "noise",
    "cutout",
)
#: Ranged augment ops: (symmetric, lowest, highest).
_AUG_RANGES: dict[str, tuple[bool, float, float]] = {
    "crop": (False, 0.0, 0.9),
    "rotate": (True, -180.0, 180.0),
    "scale": (True, -0.9, 1.0),
    "shear": (True, -45.0, 45.0),
    "brightness": (True, -1.0, 1.0),
    "contrast": (True, -1.0, 1.0),
    "hue": (True, -180.0, 180.0),
    "blur": (False, 0.0, 25.0),
    "noise": (False, 0.0, 0.5),
}
_FLIPS = {"h": (True, False), "v": (False, True), "hv": (True, True), "vh": (True, True)}

_NUMBER_RE = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_INT_RE = re.compile(r"\d+")
_PAIR_RE = re.compile(r"(\d+)[xX](\d+)")


def parse_preprocess(spec: str | None) -> list[dict[str, Any]]:
    """The canonical preprocessing steps of ``spec`` (``None``: the default, ``auto-orient``)."""
    if spec is None:
        return [{"op": "auto-orient"}]
    if not isinstance(spec, str):
        raise InvalidInputError(f"preprocess spec must be a string, got {spec!r}")
    if not spec.strip():
        return []
    orient: list[dict[str, Any]] = []
    labels: list[dict[str, Any]] = []
    null: list[dict[str, Any]] = []
    pixels: list[dict[str, Any]] = []
    seen: set[str] = set()
    for name, value, text in _steps(spec, "preprocess"):
        if name in seen:
            raise InvalidInputError(f"preprocess step {text!r}: {name!r} is given twice")
        seen.add(name)
        if name in _FLAGS:
            if value is not None:
                raise InvalidInputError(f"preprocess step {text!r}: {name!r} takes no value")
            {"auto-orient": orient, "filter-null": null, "grayscale": pixels}[name].append({"op": name})
        elif name == "resize":
            pixels.append(_parse_resize(text, _required(text, value)))
        elif name == "tile":
            rows, cols = _pair(text, _required(text, value), 1, MAX_TILES)
            if rows * cols == 1:
                raise InvalidInputError(f"preprocess step {text!r}: a 1x1 tiling has no effect")
            pixels.append({"op": "tile", "rows": rows, "cols": cols})
        elif name == "remap":
            labels.append({"op": "remap", "map": _parse_map(text, _required(text, value))})
        elif name == "drop":
            classes = sorted({_class_name(text, c) for c in _required(text, value).split("+")})
            labels.append({"op": "drop", "classes": classes})
        else:
            known = ", ".join(("auto-orient", "resize", "grayscale", "tile", "remap", "drop", "filter-null"))
            raise InvalidInputError(f"preprocess step {text!r}: unknown step {name!r} (known: {known})")
    return orient + labels + null + pixels


def parse_augment(spec: str | None) -> dict[str, Any]:
    """The canonical augmentation of ``spec``: ``{"outputs": N, "ops": [...]}``.

    ``None`` or an empty spec is no augmentation, ``{"outputs": 0, "ops": []}``.
    """
    if spec is None:
        return {"outputs": 0, "ops": []}
    if not isinstance(spec, str):
        raise InvalidInputError(f"augment spec must be a string, got {spec!r}")
    if not spec.strip():
        return {"outputs": 0, "ops": []}
    outputs: int | None = None
    ops: dict[str, dict[str, Any]] = {}
    seen: set[str] = set()
    for name, value, text in _steps(spec, "augment"):
        if name in seen:
            raise InvalidInputError(f"augment step {text!r}: {name!r} is given twice")
        seen.add(name)
        if name != "outputs" and name not in _AUG_ORDER:
            known = ", ".join(("outputs", *_AUG_ORDER))
            raise InvalidInputError(f"augment step {text!r}: unknown op {name!r} (known: {known})")
        value = _required(text, value)
        if name == "outputs":
            outputs = _integer(text, value, 1, MAX_OUTPUTS)
        elif name == "flip":
            axes = _FLIPS.get(value.lower())
            if axes is None:
                raise InvalidInputError(f"augment step {text!r}: expected h, v or hv, got {value!r}")
            ops[name] = {"op": "flip", "horizontal": axes[0], "vertical": axes[1]}
        elif name == "mosaic":
            p = _number(text, value)
            if not 0 < p <= 1:
                raise InvalidInputError(f"augment step {text!r}: the probability must be in (0, 1], got {value}")
            ops[name] = {"op": "mosaic", "p": p}
        elif name == "cutout":
            if ":" in value:
                lo_text, _, hi_text = value.partition(":")
                lo, hi = _integer(text, lo_text, 1, MAX_HOLES), _integer(text, hi_text, 1, MAX_HOLES)
                if lo > hi:
                    raise InvalidInputError(f"augment step {text!r}: range {value!r} must be low:high")
            else:
                lo = hi = _integer(text, value, 1, MAX_HOLES)
            ops[name] = {"op": "cutout", "holes": [lo, hi], "size": CUTOUT_SIZE}
        else:
            symmetric, low, high = _AUG_RANGES[name]
            ops[name] = {"op": name, "range": _range(text, value, symmetric, low, high)}
    if not ops:
        raise InvalidInputError(f"augment spec {spec!r}: no augmentation op (outputs alone would only copy images)")
    return {"outputs": DEFAULT_OUTPUTS if outputs is None else outputs, "ops": [ops[n] for n in _AUG_ORDER if n in ops]}


def _steps(spec: str, what: str) -> list[tuple[str, str | None, str]]:
    """``(name, value or None, step text)`` for each comma-separated step of ``spec``."""
    out = []
    for raw in spec.split(","):
        text = raw.strip()
        if not text:
            raise InvalidInputError(f"{what} spec {spec!r}: empty step (two commas in a row or a trailing comma)")
        name, sep, value = text.partition("=")
        out.append((name.strip().lower(), value.strip() if sep else None, text))
    return out


def _required(text: str, value: str | None) -> str:
    if not value:
        raise InvalidInputError(f"step {text!r}: needs a value (name=value)")
    return value


def _number(text: str, value: str) -> float:
    value = value.strip()
    if not _NUMBER_RE.fullmatch(value):
        raise InvalidInputError(f"step {text!r}: expected a number, got {value!r}")
    return float(value) + 0.0  # + 0.0 turns -0.0 into 0.0: equal specs, equal JSON


def _integer(text: str, value: str, low: int, high: int) -> int:
    value = value.strip()
    if not _INT_RE.fullmatch(value):
        raise InvalidInputError(f"step {text!r}: expected a whole number, got {value!r}")
    n = int(value)
    if not low <= n <= high:
        raise InvalidInputError(f"step {text!r}: {n} is out of range ({low} .. {high})")
    return n


def _pair(text: str, value: str, low: int, high: int) -> tuple[int, int]:
    m = _PAIR_RE.fullmatch(value.strip())
    if m is None:
        raise InvalidInputError(f"step {text!r}: expected AxB with whole numbers, got {value!r}")
    a, b = int(m.group(1)), int(m.group(2))
    if not (low <= a <= high and low <= b <= high):
        raise InvalidInputError(f"step {text!r}: {a}x{b} is out of range ({low} .. {high} each)")
    return a, b


def _range(text: str, value: str, symmetric: bool, low: float, high: float) -> list[float]:
    if ":" in value:
        lo_text, _, hi_text = value.partition(":")
        lo, hi = _number(text, lo_text), _number(text, hi_text)
        if lo > hi:
            raise InvalidInputError(f"step {text!r}: range {value!r} must be low:high")
    else:
        x = _number(text, value)
        if x <= 0:
            raise InvalidInputError(f"step {text!r}: must be greater than 0, got {value}")
        lo, hi = (-x + 0.0, x) if symmetric else (0.0, x)
    if lo < low or hi > high:
        raise InvalidInputError(f"step {text!r}: out of range, the values must lie in {low:g} .. {high:g}")
    if lo == hi == 0:
        raise InvalidInputError(f"step {text!r}: the range 0:0 has no effect")
    return [lo, hi]


def _parse_resize(text: str, value: str) -> dict[str, Any]:
    size, sep, mode = value.partition(":")
    mode = mode.strip().lower() if sep else "stretch"
    if mode not in _RESIZE_MODES:
        raise InvalidInputError(f"step {text!r}: resize mode must be stretch, fit or fill, got {mode!r}")
    width, height = _pair(text, size, 1, MAX_SIZE)
    return {"op": "resize", "width": width, "height": height, "mode": mode}


def _class_name(text: str, name: str) -> str:
    name = name.strip()
    if not name or ">" in name:
        raise InvalidInputError(f"step {text!r}: expected class names joined with '+', got {name!r}")
    return name


def _parse_map(text: str, value: str) -> dict[str, str]:
    mapping: dict[str, str] = {}
    for item in value.split("+"):
        old, sep, new = item.partition(">")
        if not sep:
            raise InvalidInputError(f"step {text!r}: expected old>new, got {item.strip()!r}")
        old, new = _class_name(text, old), _class_name(text, new)
        if mapping.get(old, new) != new:
            raise InvalidInputError(f"step {text!r}: {old!r} is mapped to both {mapping[old]!r} and {new!r}")
        mapping[old] = new
    return dict(sorted(mapping.items()))


# ----------------------------------------------------------------------------------------------
# Label and pixel steps

def label_steps(steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The steps that act on labels only (remap, drop, filter-null), in order."""
    return [s for s in steps if s["op"] in LABEL_OPS]


def pixel_steps(steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The other steps (auto-orient, resize, grayscale, tile), in order."""
    return [s for s in steps if s["op"] not in LABEL_OPS]
