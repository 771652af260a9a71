"""The ``image_quality`` checks on small projects with planted defects, and on clean data."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter

from tests.quality_helpers import Item, build_view, encode, textured
from winnow.quality.base import ACTIONS, all_checks, get_check
from winnow.quality.engine import run_checks
from winnow.quality.image_quality import sharpness

PIXEL_CHECKS = ["blurry", "dark", "overexposed", "low_information"]
QUALITY_CHECKS = PIXEL_CHECKS + ["outlier"]


def run(view, check_id, **params):
    check = get_check(check_id)
    return list(check.run(view, **(dict(check.params) | params)))


def names(findings):
    return {name for f in findings for name in f.images}


def scaled(im: Image.Image, gain: float, offset: float = 0.0) -> Image.Image:
    """``im`` with its pixel values mapped to ``offset + gain * value`` (exposure change)."""
    a = np.asarray(im, dtype=np.float64) * gain + offset
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8), im.mode)


def scene(seed: int) -> Image.Image:
    """One frame of a homogeneous dataset: the same background, one reddish ball somewhere."""
    im = textured(7, shapes=0)
    rng = np.random.default_rng(seed)
    x, y, s = int(rng.integers(0, 70)), int(rng.integers(0, 46)), int(rng.integers(12, 24))
    colour = tuple(int(c) for c in np.array([200, 60, 40]) + rng.integers(-20, 21, 3))
    ImageDraw.Draw(im).ellipse([x, y, x + s, y + s], fill=colour)
    a = np.asarray(im, dtype=np.int16) + rng.integers(-10, 11, (72, 96, 3))
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8), "RGB")


def clean_items(count: int, start: int = 0) -> list[Item]:
    return [Item(f"clean/c{s:02d}.png", textured(s)) for s in range(start, start + count)]


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    jpeg = encode(textured(99), "JPEG")
    items = clean_items(30) + [
        Item("blurred.png", textured(100).filter(ImageFilter.GaussianBlur(4))),
        Item("dark.png", scaled(textured(101), 0.15)),  # a night shot: dark, but sharp and detailed
        Item("bright.png", scaled(textured(102), 0.12, 225)),  # washed out
        Item("blank.png", Image.new("RGB", (96, 72), (128, 128, 128))),
        Item("truncated.jpg", jpeg[: len(jpeg) // 2]),  # corrupt_image's, never an image-quality finding
    ]
    return build_view(tmp_path_factory.mktemp("iq_planted"), items)


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    return build_view(tmp_path_factory.mktemp("iq_clean"), clean_items(30, start=200))


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    items = [Item(f"s{s:02d}.png", scene(s)) for s in range(40)]
    return build_view(tmp_path_factory.mktemp("iq_scenes"), items)


@pytest.fixture(scope="module")
def scenes_with_outlier(tmp_path_factory):
    rng = np.random.default_rng(0)
    items = [Item(f"s{s:02d}.png", scene(s)) for s in range(40)]
    items.append(Item("noise.png", Image.fromarray(rng.integers(0, 256, (72, 96, 3), dtype=np.uint8), "RGB")))
    return build_view(tmp_path_factory.mktemp("iq_outlier"), items)


EXPECTED = {
    "blurry": {"blurred.png"},
    "dark": {"dark.png"},
    "overexposed": {"bright.png"},
    "low_information": {"blank.png"},
}


@pytest.mark.parametrize("check_id", PIXEL_CHECKS)
def test_each_check_finds_exactly_the_planted_images(planted, check_id):
    findings = run(planted, check_id)
    assert names(findings) == EXPECTED[check_id]
    assert [f.severity for f in findings] == ["warning"]


@pytest.mark.parametrize("check_id", PIXEL_CHECKS)
def test_each_check_is_quiet_on_clean_images(clean, check_id):
    assert run(clean, check_id) == []


def test_outlier_finds_the_odd_image_out(scenes_with_outlier):
    findings = run(scenes_with_outlier, "outlier")
    assert names(findings) == {"noise.png"}
    f = findings[0]
    assert f.evidence["percentile"] == 1.0 and f.score == 1.0
    assert f.evidence["z_score"] > 4.5 and f.evidence["k"] == 10
    assert f.evidence["knn_distance"] > 5 * f.evidence["dataset_median_knn_distance"]
    assert len(f.evidence["nearest"]) == 3 and "noise.png" not in f.evidence["nearest"]


def test_outlier_is_quiet_on_a_homogeneous_dataset(scenes):
    assert run(scenes, "outlier") == []


def test_outlier_needs_min_images(scenes_with_outlier):
    assert run(scenes_with_outlier, "outlier", min_images=100) == []
    # a lower threshold flags more, most isolated first by score
    loose = run(scenes_with_outlier, "outlier", z_threshold=1.0, max_share=1.0)
    assert "noise.png" in names(loose) and len(loose) > 1
    assert max(loose, key=lambda f: f.score).images == ["noise.png"]


def test_outlier_reports_at_most_max_share_of_the_images_farthest_first(scenes_with_outlier):
    """Where most images pass the z-score (tight clusters of copies), only the farthest are kept."""
    loose = run(scenes_with_outlier, "outlier", z_threshold=1.0, max_share=1.0)
    n = len(scenes_with_outlier)
    capped = run(scenes_with_outlier, "outlier", z_threshold=1.0, max_share=2.5 / n)
    assert len(loose) > 2 and names(capped) == {"noise.png", max(
        (f for f in loose if f.images != ["noise.png"]), key=lambda f: f.evidence["z_score"]).images[0]}
    assert any(note["check"] == "outlier" and "only the 2 farthest" in note["message"] for note in scenes_with_outlier.notes)


def test_outlier_ignores_undecodable_images(tmp_path):
    jpeg = encode(scene(99), "JPEG")
    items = [Item(f"s{s:02d}.png", scene(s)) for s in range(24)]
    items += [Item(f"bad{s}.jpg", jpeg[: len(jpeg) // 2]) for s in range(2)]
    assert run(build_view(tmp_path, items), "outlier") == []


def test_registered_with_family_and_defaults():
    checks = all_checks()
    for cid in QUALITY_CHECKS:
        assert checks[cid].family == "image_quality"
        assert checks[cid].description.endswith(".")
    assert checks["dark"].params["max_mean"] == 40.0
    assert checks["outlier"].params["k"] == 10


def test_findings_honour_the_json_contract(planted):
    report = run_checks(planted.store, "p", only=QUALITY_CHECKS, view=planted)
    json.dumps(report.as_dict())
    flagged = {f.images[0] for f in report.findings if f.check in PIXEL_CHECKS}
    assert flagged == {"blurred.png", "dark.png", "bright.png", "blank.png"}
    for f in report.findings:
        assert 0.0 <= f.score <= 1.0
        assert f.suggestion is not None and f.suggestion.action in ACTIONS
        assert f.message and "\n" not in f.message


def test_scores_grow_with_the_defect(tmp_path):
    items = clean_items(12) + [
        Item("dim.png", scaled(textured(50), 0.25)),
        Item("black.png", scaled(textured(51), 0.03)),
        Item("soft.png", textured(52).filter(ImageFilter.GaussianBlur(1.5))),
        Item("mush.png", textured(53).filter(ImageFilter.GaussianBlur(6))),
    ]
    view = build_view(tmp_path, items)
    dark = {f.images[0]: f.score for f in run(view, "dark")}
    assert set(dark) == {"dim.png", "black.png"} and dark["black.png"] > dark["dim.png"] > 0
    blurry = {f.images[0]: f for f in run(view, "blurry")}
    assert set(blurry) == {"soft.png", "mush.png"}
    assert blurry["mush.png"].score > blurry["soft.png"].score > 0
    assert blurry["mush.png"].evidence["relative_to_dataset"] is True
    # a stricter relative bar leaves only the worst
    assert names(run(view, "blurry", relative=0.002, min_sharpness=0.0)) == {"mush.png"}


def test_a_night_dataset_is_summarised_not_flagged_image_by_image(tmp_path):
    items = [Item(f"night/n{s:02d}.png", scaled(textured(s), 0.15)) for s in range(20)]
    items.append(Item("night/black.png", scaled(textured(99), 0.02)))  # dark even for the night
    view = build_view(tmp_path, items)
    findings = run(view, "dark")
    warnings = [f for f in findings if f.severity == "warning"]
    infos = [f for f in findings if f.severity == "info"]
    assert [f.images for f in warnings] == [["night/black.png"]]
    assert len(infos) == 1
    assert infos[0].evidence["count"] == 20 and infos[0].evidence["share"] == pytest.approx(21 / 21)
    assert len(infos[0].images) == 10 and "night/black.png" not in infos[0].images
    # exposure is divided out of sharpness: sharp night shots are not blurry
    assert run(view, "blurry") == []
    # and with max_share=1 every dark image is reported on its own
    assert len(run(view, "dark", max_share=1.0)) == 21


def test_a_soft_dataset_is_summarised_for_blur(tmp_path):
    items = [Item(f"soft{s:02d}.png", textured(s).filter(ImageFilter.GaussianBlur(3))) for s in range(12)]
    findings = run(build_view(tmp_path, items), "blurry")
    assert [f.severity for f in findings] == ["info"]
    assert findings[0].evidence["count"] == 12


def test_sharpness_is_exposure_invariant():
    blur = np.array([400.0, 400.0 * 0.25**2, 1.0])
    std = np.array([40.0, 10.0, 40.0])  # the second is the first at a quarter of the contrast
    s = sharpness(blur, std)
    assert s[0] == pytest.approx(s[1]) and s[2] < s[0] / 100


def test_checks_are_quiet_on_an_empty_project(tmp_path):
    view = build_view(tmp_path, [])
    for cid in QUALITY_CHECKS:
        assert run(view, cid) == []
