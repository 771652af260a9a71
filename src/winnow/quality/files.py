"""File checks: images that cannot be read, or whose file says something surprising.

Everything here reads the records (displayed size, declared size), the blob headers
(:attr:`~winnow.quality.view.ProjectView.blobs`: channels, mode, EXIF orientation, stored size)
and a few cached pixel facts (``decode_error``, ``colour_spread``); no check decodes an image.

Thresholds on size and shape are absolute, but a property shared by most of a dataset is not a
defect of each image: MNIST digits are all 28 px, OCR text lines are all elongated. When more
than ``max_share`` of the images cross an absolute threshold, :func:`prevalence_split` keeps
per-image findings for those that are also extreme *relative to the dataset* and folds the rest
into one ``info`` finding about the dataset.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from winnow.quality.base import Check, Finding, Suggestion, register
from winnow.quality.view import ProjectView

#: Pillow modes that hold one grey channel (with or without alpha).
GREY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})

#: What each EXIF orientation does to the stored pixels to display them.
ORIENTATIONS = {
    1: "shown as stored",
    2: "mirrored left-right to display",
    3: "turned 180° to display",
    4: "mirrored top-bottom to display",
    5: "mirrored along the main diagonal to display",
    6: "turned 90° clockwise to display",
    7: "mirrored along the anti-diagonal to display",
    8: "turned 90° counter-clockwise to display",
}
_SWAPS_AXES = frozenset({5, 6, 7, 8})

#: How many image names a dataset-level summary finding lists.
SUMMARY_EXAMPLES = 10


# ---------------------------------------------------------------------------------- helpers


def prevalence_split(
    flagged: np.ndarray, considered: np.ndarray, relative: np.ndarray, max_share: float
) -> tuple[np.ndarray, np.ndarray, float]:
    """Decide which flagged images are defects and which show a property of the whole dataset.

    Args:
        flagged: ``(N,)`` bool, images over the absolute threshold.
        considered: ``(N,)`` bool, images the share is computed over (e.g. decodable ones).
        relative: ``(N,)`` bool, images extreme relative to the dataset (e.g. far below its median).
        max_share: largest share of ``considered`` images that may be flagged one by one.

    Returns:
        ``(per_image, summarised, share)``: when at most ``max_share`` of the considered images
        are flagged, every flagged image is reported on its own and nothing is summarised;
        otherwise only those also ``relative`` are, and the others are summarised.
    """
    flagged = flagged & considered
    total = int(considered.sum())
    share = float(flagged.sum()) / total if total else 0.0
    if share <= max_share:
        return flagged, np.zeros_like(flagged), share
    return flagged & relative, flagged & ~relative, share


def summary_finding(
    check: Check,
    view: ProjectView,
    summarised: np.ndarray,
    scores: np.ndarray,
    *,
    share: float,
    what: str,
    reference: str,
    evidence: dict[str, Any],
    advice: str,
) -> Finding:
    """One ``info`` finding for images folded by :func:`prevalence_split`.

    ``what`` completes "N of M images ..."; ``reference`` names what the per-image findings are
    then relative to. ``images`` lists the worst :data:`SUMMARY_EXAMPLES`; ``evidence["count"]``
    says how many there are.
    """
    idx = np.flatnonzero(summarised)
    order = idx[np.argsort(-scores[idx], kind="stable")]
    total = len(view)
    count = len(idx)
    return check.finding(
        f"{count} of {total} images {what}, so this looks like a property of the dataset rather than "
        f"a defect of each image; only images extreme relative to {reference} are reported one by one",
        severity="info",
        images=[view.records[i].name for i in order[:SUMMARY_EXAMPLES]],
        evidence={"count": count, "share": round(share, 4), **evidence},
        suggestion=Suggestion("review", advice),
        score=float(np.clip(share, 0.0, 1.0)),
    )


def _sizes(view: ProjectView) -> tuple[np.ndarray, np.ndarray]:
    """Displayed width and height of each record as float arrays (NaN where unknown)."""
    w = np.array([np.nan if r.width is None else r.width for r in view.records], dtype=np.float64)
    h = np.array([np.nan if r.height is None else r.height for r in view.records], dtype=np.float64)
    return w, h


# ---------------------------------------------------------------------------------- checks


@register
class CorruptImage(Check):
    id = "corrupt_image"
    family = "files"
    description = "Images whose bytes do not decode (truncated or corrupt files)."
    severity = "error"

    def run(self, view: ProjectView, **params: Any) -> Iterable[Finding]:
        if not len(view):
            return
        errors = view.facts["decode_error"]
        bad = ~view.decodable
        blobs = view.blobs
        for i in np.flatnonzero(bad):
            rec = view.records[i]
            error = str(errors[i]) or "undecodable"
            blob = blobs.get(rec.sha256, {})
            truncated = "truncat" in error.lower()
            reason = error
            if reason.startswith("cannot decode image (") and reason.endswith(")"):
                reason = reason[len("cannot decode image (") : -1]
            kind = "is truncated and cannot be decoded" if truncated else "cannot be decoded"
            yield self.finding(
                f"{rec.name} {kind} ({reason}), so nothing can be learned from it",
                images=[rec.name],
                evidence={
                    "error": error,
                    "truncated": truncated,
                    "format": blob.get("format"),
                    "bytes": blob.get("size"),
                },
                suggestion=Suggestion("delete_image", "delete the image, or re-export it from its source"),
                score=1.0,
            )


@register
class Grayscale(Check):
    id = "grayscale"
    family = "files"
    description = (
        "Grey images in a dataset that is mostly in colour (single-channel files, or RGB files whose "
        "channels are equal)."
    )
    severity = "warning"
    params = {"max_colour_spread": 3.0, "max_colour_pixels": 0.002, "min_colour_share": 0.8}

    def run(
        self, view: ProjectView, *, max_colour_spread: float = 3.0, max_colour_pixels: float = 0.002,
        min_colour_share: float = 0.8, **_: Any
    ) -> Iterable[Finding]:
        if not len(view):
            return
        blobs = view.blobs
        modes = [blobs.get(sha, {}).get("mode") or "" for sha in view.shas]
        channels = np.array([blobs.get(sha, {}).get("channels") or 0 for sha in view.shas], dtype=np.int64)
        single = (channels == 1) | np.array([m in GREY_MODES for m in modes], dtype=bool)
        spread = view.facts["colour_spread"]
        decodable = view.decodable
        coloured = view.facts["colour_pixels"]
        # a low mean spread alone is not grey: a colour drawing on a wide grey background has one too
        rgb_grey = (
            decodable & ~single
            & (np.nan_to_num(spread, nan=np.inf) <= max_colour_spread)
            & (np.nan_to_num(coloured, nan=np.inf) <= max_colour_pixels)
        )
        grey = single | rgb_grey
        known = decodable | single
        n_known = int(known.sum())
        if not n_known:
            return
        colour_share = float((known & ~grey).sum()) / n_known
        if colour_share <= min_colour_share:
            return  # a grey (or mixed) dataset: being grey is normal here
        for i in np.flatnonzero(grey):
            rec = view.records[i]
            mode = modes[i]
            evidence = {
                "mode": mode,
                "channels": int(channels[i]),
                "colour_spread": None if np.isnan(spread[i]) else round(float(spread[i]), 3),
                "colour_pixels": None if np.isnan(coloured[i]) else round(float(coloured[i]), 5),
                "dataset_colour_share": round(colour_share, 4),
            }
            if single[i]:
                yield self.finding(
                    f"{rec.name} is a single-channel grey image ({mode or 'grey'}) in a dataset where "
                    f"{colour_share:.0%} of the images are in colour",
                    images=[rec.name],
                    evidence=dict(evidence, encoding="single_channel"),
                    suggestion=Suggestion(
                        "review",
                        "check that it belongs here and that your loader converts it to 3 channels",
                    ),
                    score=1.0,
                )
            else:
                yield self.finding(
                    f"{rec.name} is stored in colour but its channels are equal (colour spread "
                    f"{spread[i]:.1f}), a grey picture among {colour_share:.0%} colour images",
                    severity="info",
                    images=[rec.name],
                    evidence=dict(evidence, encoding="rgb_grey"),
                    suggestion=Suggestion("review", "check that a grey picture belongs in this dataset"),
                    score=float(np.clip(1.0 - spread[i] / max(max_colour_spread, 1e-9), 0.0, 1.0)),
                )


@register
class ExifRotation(Check):
    id = "exif_rotation"
    family = "files"
    description = (
        "Images with an EXIF orientation tag: they display rotated or mirrored from the stored pixels, "
        "and their labels must be in the displayed frame."
    )
    severity = "info"

    def run(self, view: ProjectView, **params: Any) -> Iterable[Finding]:
        if not len(view):
            return
        blobs = view.blobs
        orientation = np.array([int(blobs.get(sha, {}).get("orientation") or 1) for sha in view.shas], dtype=np.int64)
        for i in np.flatnonzero(orientation != 1):
            rec = view.records[i]
            blob = blobs.get(rec.sha256, {})
            o = int(orientation[i])
            swaps = o in _SWAPS_AXES
            stored = [blob.get("raw_width"), blob.get("raw_height")]
            displayed = [rec.width, rec.height]
            how = ORIENTATIONS.get(o, "transformed")
            size_note = (
                f"; it is stored {stored[0]}x{stored[1]} but displayed {displayed[0]}x{displayed[1]}"
                if swaps
                else ""
            )
            yield self.finding(
                f"{rec.name} has EXIF orientation {o} ({how}){size_note}, and tools that ignore EXIF "
                f"will show it differently from its labels, which are in the displayed frame",
                images=[rec.name],
                evidence={
                    "orientation": o,
                    "transform": how,
                    "swaps_axes": swaps,
                    "stored_size": stored,
                    "displayed_size": displayed,
                },
                suggestion=Suggestion(
                    "review",
                    "check that the labels line up with the displayed image; re-save it with the "
                    "rotation applied if another tool ignores EXIF",
                    {"orientation": o},
                ),
                score=1.0 if swaps else 0.5,
            )


@register
class TinyImage(Check):
    id = "tiny_image"
    family = "files"
    description = "Images whose shorter side is below min_side pixels (thumbnails, icons, crops saved by mistake)."
    severity = "warning"
    params = {"min_side": 32, "max_share": 0.5, "relative": 0.5}

    def run(
        self, view: ProjectView, *, min_side: float = 32, max_share: float = 0.5, relative: float = 0.5, **_: Any
    ) -> Iterable[Finding]:
        if not len(view):
            return
        w, h = _sizes(view)
        short = np.fmin(w, h)
        known = np.isfinite(short)
        flagged = known & (short < min_side)
        median = float(np.median(short[known])) if known.any() else float("nan")
        rel = known & (short < relative * median)
        per_image, summarised, share = prevalence_split(flagged, known, rel, max_share)
        # how far below the bar that flagged it: min_side, or relative x median when most are tiny
        bar = relative * median if share > max_share else float(min_side)
        scores = np.nan_to_num(np.clip(1.0 - short / max(bar, 1e-9), 0.0, 1.0))
        summary_scores = np.nan_to_num(np.clip(1.0 - short / max(float(min_side), 1e-9), 0.0, 1.0))
        for i in np.flatnonzero(per_image):
            rec = view.records[i]
            yield self.finding(
                f"{rec.name} is only {rec.width}x{rec.height} px (shorter side under {min_side:g} px), "
                f"too small to show much detail",
                images=[rec.name],
                evidence={
                    "width": rec.width,
                    "height": rec.height,
                    "short_side": int(short[i]),
                    "min_side": min_side,
                    "dataset_median_short_side": median,
                },
                suggestion=Suggestion("review", "replace it with the full-resolution original, or delete it"),
                score=float(scores[i]),
            )
        if summarised.any():
            yield summary_finding(
                self, view, summarised, summary_scores, share=share,
                what=f"have a shorter side under {min_side:g} px",
                reference=f"its median shorter side ({median:g} px)",
                evidence={"min_side": min_side, "dataset_median_short_side": median},
                advice="nothing to do if the images are small by design; lower tiny_image.min_side to silence it",
            )


@register
class ExtremeAspect(Check):
    id = "extreme_aspect"
    family = "files"
    description = "Images much longer than wide or the reverse (longer side over max_ratio times the shorter)."
    severity = "warning"
    params = {"max_ratio": 4.0, "max_share": 0.5, "relative": 2.0}

    def run(
        self, view: ProjectView, *, max_ratio: float = 4.0, max_share: float = 0.5, relative: float = 2.0, **_: Any
    ) -> Iterable[Finding]:
        if not len(view):
            return
        w, h = _sizes(view)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.fmax(w, h) / np.fmin(w, h)
        known = np.isfinite(ratio)
        flagged = known & (ratio > max_ratio)
        median = float(np.median(ratio[known])) if known.any() else float("nan")
        rel = known & (ratio > relative * median)
        per_image, summarised, share = prevalence_split(flagged, known, rel, max_share)
        bar = relative * median if share > max_share else float(max_ratio)
        with np.errstate(divide="ignore", invalid="ignore"):
            scores = np.nan_to_num(np.clip(1.0 - bar / ratio, 0.0, 1.0))
            summary_scores = np.nan_to_num(np.clip(1.0 - max_ratio / ratio, 0.0, 1.0))
        for i in np.flatnonzero(per_image):
            rec = view.records[i]
            r = float(ratio[i])
            orient = "wide" if (w[i] >= h[i]) else "tall"
            yield self.finding(
                f"{rec.name} is {rec.width}x{rec.height} px, {r:.1f} times as {orient} as it is "
                f"{'high' if orient == 'wide' else 'wide'} (more than {max_ratio:g}), so resizing it to a "
                f"square input squashes it",
                images=[rec.name],
                evidence={
                    "width": rec.width,
                    "height": rec.height,
                    "aspect_ratio": round(r, 4),
                    "max_ratio": max_ratio,
                    "dataset_median_ratio": round(median, 4),
                },
                suggestion=Suggestion(
                    "review",
                    "check that it is not a strip, a panorama or a bad crop; tile or letterbox it when training",
                ),
                score=float(scores[i]),
            )
        if summarised.any():
            yield summary_finding(
                self, view, summarised, summary_scores, share=share,
                what=f"have an aspect ratio over {max_ratio:g}",
                reference=f"its median aspect ratio ({median:.2f})",
                evidence={"max_ratio": max_ratio, "dataset_median_ratio": round(median, 4)},
                advice=(
                    "nothing to do if elongated images are the norm (text lines, panoramas); "
                    "raise extreme_aspect.max_ratio to silence it"
                ),
            )


@register
class SizeMismatch(Check):
    id = "size_mismatch"
    family = "files"
    description = "Images whose size declared in the annotation file differs from the size of the image file."
    severity = "warning"
    params = {"tolerance": 0}

    def run(self, view: ProjectView, *, tolerance: float = 0, **_: Any) -> Iterable[Finding]:
        if not len(view):
            return
        recs = view.records
        dw = np.array([np.nan if r.declared_width is None else r.declared_width for r in recs], dtype=np.float64)
        dh = np.array([np.nan if r.declared_height is None else r.declared_height for r in recs], dtype=np.float64)
        w, h = _sizes(view)
        off_w = np.isfinite(dw) & np.isfinite(w) & (np.abs(dw - w) > tolerance)
        off_h = np.isfinite(dh) & np.isfinite(h) & (np.abs(dh - h) > tolerance)
        mismatched = off_w | off_h
        if not mismatched.any():
            return
        blobs = view.blobs
        for i in np.flatnonzero(mismatched):
            rec = recs[i]
            blob = blobs.get(rec.sha256, {})
            orientation = int(blob.get("orientation") or 1)
            stored = (blob.get("raw_width"), blob.get("raw_height"))
            declared = (None if np.isnan(dw[i]) else int(dw[i]), None if np.isnan(dh[i]) else int(dh[i]))
            exif_swap = orientation in _SWAPS_AXES and declared == stored
            with np.errstate(divide="ignore", invalid="ignore"):
                sx = float(w[i] / dw[i]) if np.isfinite(dw[i]) and dw[i] else None
                sy = float(h[i] / dh[i]) if np.isfinite(dh[i]) and dh[i] else None
            pairs = ((dw[i], w[i]), (dh[i], h[i]))
            diffs = [abs(a - b) / max(a, b) for a, b in pairs if np.isfinite(a) and max(a, b) > 0]
            score = float(np.clip(max(diffs) if diffs else 1.0, 0.0, 1.0))
            shown = "x".join("?" if v is None else str(v) for v in declared)
            if exif_swap:
                why = (
                    f"; its EXIF orientation {orientation} swaps the axes, so the labels were likely drawn "
                    f"on the stored, un-rotated image"
                )
                advice = "check whether the labels are in the stored frame and rotate them to the displayed one"
                score = max(score, 0.5)
            elif sx is not None and sy is not None and abs(sx - sy) <= 0.01 * max(sx, sy):
                why = f"; the two differ by one scale ({sx:.3g}x), so the image was likely resized after labelling"
                advice = f"check the labels line up; if they were drawn at the declared size, scale them by {sx:.4g}"
            else:
                why = ""
                advice = "check that the labels line up with the image and fix the annotation file's size"
            yield self.finding(
                f"The annotation file declares {rec.name} as {shown} px but the image is "
                f"{rec.width}x{rec.height} px{why}",
                images=[rec.name],
                evidence={
                    "declared_size": list(declared),
                    "image_size": [rec.width, rec.height],
                    "stored_size": list(stored),
                    "orientation": orientation,
                    "exif_swap": exif_swap,
                    "scale_x": None if sx is None else round(sx, 6),
                    "scale_y": None if sy is None else round(sy, 6),
                },
                suggestion=Suggestion(
                    "review",
                    advice,
                    {"scale": [sx, sy]} if not exif_swap and sx is not None and sy is not None else {},
                ),
                score=score,
            )
