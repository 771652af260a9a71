"""Image-quality checks: pictures too blurry, dark, bright or empty to learn from, and outliers.

Every check is numpy over the cached pixel facts of :class:`~winnow.quality.view.ProjectView`
(luminance ``mean``/``std``, ``dark_fraction``, ``bright_fraction``, ``blur`` = variance of the
Laplacian at <= 256 px, ``entropy``) or over its shared k-nearest-neighbour graph; no check
decodes an image. Undecodable images (``corrupt_image``) are left out of every statistic.

Thresholds are absolute *and* dataset-relative. An image is reported on its own when it crosses
the absolute threshold and at most ``max_share`` (default half) of the dataset does; when most
of the dataset crosses it (night-time footage is dark, document scans are bright), the property
belongs to the dataset: only images that are also extreme relative to the dataset's median are
reported one by one, and the rest are folded into a single ``info`` finding
(:func:`~winnow.quality.files.prevalence_split`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from winnow.quality.base import Check, Finding, Suggestion, register
from winnow.quality.files import prevalence_split, summary_finding
from winnow.quality.view import ProjectView


def _median(values: np.ndarray, mask: np.ndarray) -> float:
    picked = values[mask & np.isfinite(values)]
    return float(np.median(picked)) if picked.size else float("nan")


def _sig(value: float) -> float:
    """``value`` to 6 significant digits (sharpness spans decades, so rounding to places would not do)."""
    return float(f"{float(value):.6g}")


def _part(excess: np.ndarray, span: float) -> np.ndarray:
    """``excess / span`` clipped to ``[0, 1]`` (0 where not beyond, NaN-safe)."""
    return np.nan_to_num(np.clip(excess / max(span, 1e-9), 0.0, 1.0))


def sharpness(blur: np.ndarray, std: np.ndarray) -> np.ndarray:
    """Variance of the Laplacian over the variance of the luminance: contrast-normalised sharpness.

    The raw Laplacian variance scales with the square of the contrast, so a sharp night shot or
    a washed-out image scores like a blurred one; dividing by the luminance variance removes any
    exposure change ``a * value + b`` and keeps what blur does. Sharp photos measure about
    0.02-0.4 (fine textures more), a Gaussian blur of 2 px at 256 px brings them to 0.001-0.007.
    """
    return blur / np.maximum(std, 1.0) ** 2


class _Exposure:
    """Shared logic of ``dark`` and ``overexposed``, the mirror image of each other (a mixin:
    :class:`Check` refuses a subclass without an id)."""

    #: Evidence/field names and words, set by subclasses.
    fraction_key: str
    word: str
    pixel_word: str

    def _luma(self, mean: np.ndarray) -> np.ndarray:
        """Luminance transformed so that 'worse' means 'lower' (dark: as is; bright: 255 - mean)."""
        raise NotImplementedError

    def _run(
        self, view: ProjectView, *, mean_limit: float, max_fraction: float, max_share: float, relative: float,
        advice: str, param_hint: str,
    ) -> Iterable[Finding]:
        if not len(view):
            return
        ok = view.decodable
        facts = view.facts
        mean = facts["mean"]
        fraction = facts[self.fraction_key]
        low = self._luma(mean)  # 0 = the extreme (black for dark, white for overexposed)
        limit = self._luma(np.float64(mean_limit))
        flagged = ok & ((low < limit) | (fraction > max_fraction))
        median_low = _median(low, ok)
        rel = ok & (low < relative * median_low)
        per_image, summarised, share = prevalence_split(flagged, ok, rel, max_share)
        scores = 0.5 * _part(limit - low, limit) + 0.5 * _part(fraction - max_fraction, 1.0 - max_fraction)
        median_mean = _median(mean, ok)
        for i in np.flatnonzero(per_image):
            rec = view.records[i]
            yield self.finding(
                f"{rec.name} is {self.word} (mean luminance {mean[i]:.0f} of 255, "
                f"{fraction[i]:.0%} of its pixels {self.pixel_word}; the dataset's median luminance is "
                f"{median_mean:.0f})",
                images=[rec.name],
                evidence={
                    "mean_luminance": round(float(mean[i]), 3),
                    self.fraction_key: round(float(fraction[i]), 4),
                    "dataset_median_luminance": round(median_mean, 3),
                    "relative_to_dataset": bool(rel[i]),
                },
                suggestion=Suggestion("review", advice),
                score=float(scores[i]),
            )
        if summarised.any():
            yield summary_finding(
                self, view, summarised, scores, share=share,
                what=(
                    f"are {self.word} (mean luminance beyond {mean_limit:g} or over {max_fraction:.0%} of pixels "
                    f"{self.pixel_word})"
                ),
                reference=f"its median luminance ({median_mean:.0f})",
                evidence={"dataset_median_luminance": round(median_mean, 3)},
                advice=f"nothing to do if the dataset is {self.word} by nature; {param_hint}",
            )


@register
class Dark(_Exposure, Check):
    id = "dark"
    family = "image_quality"
    description = "Under-exposed images: mean luminance below max_mean, or most pixels near black."
    severity = "warning"
    params = {"max_mean": 40.0, "max_dark_fraction": 0.8, "max_share": 0.5, "relative": 0.5}
    fraction_key = "dark_fraction"
    word = "dark"
    pixel_word = "near black"

    def _luma(self, mean):
        return mean

    def run(self, view: ProjectView, *, max_mean: float = 40.0, max_dark_fraction: float = 0.8,
            max_share: float = 0.5, relative: float = 0.5, **_: Any) -> Iterable[Finding]:
        return self._run(
            view, mean_limit=max_mean, max_fraction=max_dark_fraction, max_share=max_share, relative=relative,
            advice="check that it shows what it is labelled as; brighten it or delete it if nothing is visible",
            param_hint="lower dark.max_mean to silence it",
        )


@register
class Overexposed(_Exposure, Check):
    id = "overexposed"
    family = "image_quality"
    description = "Over-exposed images: mean luminance above min_mean, or most pixels near white."
    severity = "warning"
    params = {"min_mean": 215.0, "max_bright_fraction": 0.8, "max_share": 0.5, "relative": 0.5}
    fraction_key = "bright_fraction"
    word = "overexposed"
    pixel_word = "near white"

    def _luma(self, mean):
        return 255.0 - mean

    def run(self, view: ProjectView, *, min_mean: float = 215.0, max_bright_fraction: float = 0.8,
            max_share: float = 0.5, relative: float = 0.5, **_: Any) -> Iterable[Finding]:
        return self._run(
            view, mean_limit=min_mean, max_fraction=max_bright_fraction, max_share=max_share, relative=relative,
            advice="check that it shows what it is labelled as; delete it if it is washed out",
            param_hint="raise overexposed.min_mean to silence it",
        )


@register
class Blurry(Check):
    id = "blurry"
    family = "image_quality"
    description = (
        "Blurry images: sharpness (Laplacian variance over luminance variance) far below the dataset's "
        "median, or below an absolute floor."
    )
    severity = "warning"
    params = {"relative": 0.1, "min_sharpness": 0.005, "min_std": 2.0, "max_share": 0.5}

    def run(self, view: ProjectView, *, relative: float = 0.1, min_sharpness: float = 0.005, min_std: float = 2.0,
            max_share: float = 0.5, **_: Any) -> Iterable[Finding]:
        if not len(view):
            return
        facts = view.facts
        # a near-constant image has no edges to be sharp or blurry: that is low_information's
        ok = view.decodable & (np.nan_to_num(facts["std"], nan=0.0) >= min_std)
        sharp = sharpness(facts["blur"], facts["std"])
        median = _median(sharp, ok)
        rel_bar = relative * median
        rel = ok & (sharp < rel_bar)
        absolute = ok & (sharp < min_sharpness)
        # the relative test alone suffices (sharpness depends on content); the absolute floor
        # alone only while it is not the norm of the dataset
        per_abs, summarised, share = prevalence_split(absolute, ok, rel, max_share)
        per_image = rel | per_abs
        bar = np.where(rel, np.maximum(rel_bar, min_sharpness), min_sharpness)
        with np.errstate(divide="ignore", invalid="ignore"):
            # decades below the bar that flagged it; two decades = 1
            scores = np.nan_to_num(np.clip(np.log10(bar / np.maximum(sharp, 1e-12)) / 2.0, 0.0, 1.0))
            abs_scores = np.nan_to_num(np.clip(np.log10(min_sharpness / np.maximum(sharp, 1e-12)) / 2.0, 0.0, 1.0))
        for i in np.flatnonzero(per_image):
            rec = view.records[i]
            times = median / sharp[i] if sharp[i] > 0 else float("inf")
            why = (
                f"{times:.0f} times less sharp than the dataset's median image"
                if rel[i]
                else f"below the absolute floor of {min_sharpness:g}"
            )
            yield self.finding(
                f"{rec.name} looks blurry: its sharpness {sharp[i]:.2g} is {why}",
                images=[rec.name],
                evidence={
                    "sharpness": _sig(sharp[i]),
                    "laplacian_variance": round(float(facts["blur"][i]), 4),
                    "dataset_median_sharpness": _sig(median),
                    "threshold": _sig(bar[i]),
                    "relative_to_dataset": bool(rel[i]),
                },
                suggestion=Suggestion("review", "check that the object is recognisable; delete it if it is unusable"),
                score=float(scores[i]),
            )
        if summarised.any():
            yield summary_finding(
                self, view, summarised, abs_scores, share=share,
                what=f"measure below the absolute sharpness floor of {min_sharpness:g}",
                reference=f"its median sharpness ({median:.2g})",
                evidence={"dataset_median_sharpness": _sig(median), "min_sharpness": min_sharpness},
                advice=(
                    "nothing to do if the images are soft by nature (microscopy, renders); "
                    "lower blurry.min_sharpness to silence it"
                ),
            )


@register
class LowInformation(Check):
    id = "low_information"
    family = "image_quality"
    description = "Near-empty images: almost constant (low luminance spread) or with a very low-entropy histogram."
    severity = "warning"
    params = {"max_std": 4.0, "max_entropy": 2.0, "max_share": 0.5, "relative": 0.5}

    def run(self, view: ProjectView, *, max_std: float = 4.0, max_entropy: float = 2.0, max_share: float = 0.5,
            relative: float = 0.5, **_: Any) -> Iterable[Finding]:
        if not len(view):
            return
        ok = view.decodable
        facts = view.facts
        std, entropy = facts["std"], facts["entropy"]
        flagged = ok & ((std < max_std) | (entropy < max_entropy))
        median_entropy = _median(entropy, ok)
        median_std = _median(std, ok)
        rel = ok & ((entropy < relative * median_entropy) | (std < relative * median_std))
        per_image, summarised, share = prevalence_split(flagged, ok, rel, max_share)
        scores = np.maximum(_part(max_std - std, max_std), _part(max_entropy - entropy, max_entropy))
        for i in np.flatnonzero(per_image):
            rec = view.records[i]
            what = (
                "is nearly constant" if std[i] < max_std else "has almost no tonal variety, like a two-tone picture"
            )
            yield self.finding(
                f"{rec.name} holds little information: it {what} (luminance spread {std[i]:.1f}, "
                f"entropy {entropy[i]:.2f} bits of 8)",
                images=[rec.name],
                evidence={
                    "luminance_std": round(float(std[i]), 4),
                    "entropy": round(float(entropy[i]), 4),
                    "dataset_median_entropy": round(median_entropy, 4),
                    "relative_to_dataset": bool(rel[i]),
                },
                suggestion=Suggestion("delete_image", "delete it unless blank frames are meant to be in the dataset"),
                score=float(scores[i]),
            )
        if summarised.any():
            yield summary_finding(
                self, view, summarised, scores, share=share,
                what=(
                    f"are near-constant or low-entropy (luminance spread under {max_std:g} or entropy under "
                    f"{max_entropy:g} bits)"
                ),
                reference=f"its median entropy ({median_entropy:.2f} bits)",
                evidence={"dataset_median_entropy": round(median_entropy, 4)},
                advice=(
                    "nothing to do if the images are sparse by design (masks, line art); "
                    "lower low_information.max_entropy to silence it"
                ),
            )


@register
class Outlier(Check):
    id = "outlier"
    family = "image_quality"
    description = "Images far from their nearest neighbours in embedding space compared with the rest of the dataset."
    severity = "warning"
    params = {"k": 10, "z_threshold": 4.5, "min_images": 20, "min_log_spread": 0.25, "max_share": 0.02}

    def run(self, view: ProjectView, *, k: int = 10, z_threshold: float = 4.5, min_images: int = 20,
            min_log_spread: float = 0.25, max_share: float = 0.02, **_: Any) -> Iterable[Finding]:
        ok = view.decodable if len(view) else np.zeros(0, dtype=bool)
        n_ok = int(ok.sum())
        if n_ok < max(int(min_images), 3):
            return
        idx, dist = view.neighbours(int(k))
        if idx.shape[1] == 0:
            return
        # leave undecodable images (zero embeddings) out as neighbours and as candidates
        d = np.where(ok[idx], np.clip(dist.astype(np.float64), 0.0, None), np.nan)
        counts = np.isfinite(d).sum(axis=1)
        knn = np.full(len(d), np.nan)
        has = counts > 0
        knn[has] = np.nansum(d[has], axis=1) / counts[has]
        valid = ok & np.isfinite(knn)
        if int(valid.sum()) < max(int(min_images), 3):
            return
        # kNN distances are right-skewed: a robust z-score on their logarithm
        logd = np.log(knn + 1e-4)
        centre = float(np.median(logd[valid]))
        mad = float(np.median(np.abs(logd[valid] - centre))) * 1.4826
        spread = max(mad, float(min_log_spread))
        z = (logd - centre) / spread
        flagged = valid & (z > z_threshold)
        if not flagged.any():
            return
        cap = max(1, int(float(max_share) * int(valid.sum())))
        if int(flagged.sum()) > cap:
            # an outlier is rare by definition: in a set of tight clusters (copies, an icon theme)
            # most images pass the z-score; keep the farthest `max_share` of them
            z_flagged = np.where(flagged, z, -np.inf)
            keep = np.argsort(-z_flagged, kind="stable")[:cap]
            view.note(
                self.id,
                f"{int(flagged.sum())} images passed the outlier z-score ({z_threshold}); "
                f"only the {cap} farthest ({float(max_share):.0%}, max_share) are reported: most images here "
                "sit in tight clusters of near-identical pictures",
            )
            flagged = np.zeros_like(flagged)
            flagged[keep] = True
        values = knn[valid]
        median = float(np.median(values))
        for i in np.flatnonzero(flagged):
            rec = view.records[i]
            percentile = float((values < knn[i]).sum()) / max(len(values) - 1, 1)
            near = [view.records[j].name for j, good in zip(idx[i], ok[idx[i]]) if good][:3]
            if median > 0:
                how = f"{knn[i] / median:.1f} times farther than usual"
            else:
                how = "far apart while most images have near-identical neighbours"
            yield self.finding(
                f"{rec.name} is unlike the rest of the dataset: its {idx.shape[1]} nearest images are "
                f"{how} (robust z-score {z[i]:.1f})",
                images=[rec.name],
                evidence={
                    "knn_distance": round(float(knn[i]), 6),
                    "dataset_median_knn_distance": round(median, 6),
                    "z_score": round(float(z[i]), 3),
                    "percentile": round(percentile, 4),
                    "k": int(idx.shape[1]),
                    "nearest": near,
                },
                suggestion=Suggestion(
                    "review", "check that it belongs in this dataset; if it is a rare, real case, collect more like it"
                ),
                score=float(np.clip(percentile, 0.0, 1.0)),
            )
