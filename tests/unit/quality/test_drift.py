"""``production_drift`` on synthetic projects in a real store: captured images from the training
generator (nothing to report), darker, on another background, one camera shifted, and a model
whose predictions on captured images have another class mix; plus the statistics on their own."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from tests.quality_helpers import Item, build_view
from winnow.core.types import CAPTURED_TAG, UNLABELED_TAG, Annotation, Source
from winnow.quality.base import all_checks, get_check
from winnow.quality.drift import class_mix_test, mmd_test
from winnow.quality.engine import run_checks

CLASSES = ("circle", "square", "triangle")
_COLOURS = {"circle": (220, 60, 60), "square": (60, 160, 220), "triangle": (240, 200, 40)}


def frame(rng: np.random.Generator, *, gain: float = 1.0, stripes: bool = False) -> tuple[Image.Image, list[tuple[str, tuple]]]:
    """One scene of the 'factory': a plain noisy background and 1-3 coloured shapes.
    ``gain`` scales the pixels (a darker camera), ``stripes`` paints another background."""
    w, h = 96, 72
    pixels = rng.integers(30, 120, size=3)[None, None, :] + rng.integers(0, 40, size=(h, w, 1))
    if stripes:
        pixels = pixels + ((np.arange(w)[None, :, None] // 6) % 2) * 90
    im = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(im)
    objects = []
    for _ in range(int(rng.integers(1, 4))):
        label = CLASSES[int(rng.integers(0, 3))]
        r = float(rng.uniform(6, 16))
        cx, cy = float(rng.uniform(r + 1, w - r - 1)), float(rng.uniform(r + 1, h - r - 1))
        box = (cx - r, cy - r, cx + r, cy + r)
        (draw.ellipse if label == "circle" else draw.rectangle)(box, fill=_COLOURS[label])
        objects.append((label, box))
    if gain != 1.0:
        im = Image.fromarray(np.clip(np.asarray(im, dtype=np.float64) * gain, 0, 255).astype(np.uint8), "RGB")
    return im, objects


def training(rng, n: int = 60, cameras: tuple[str, ...] = ()) -> list[Item]:
    items = []
    for i in range(n):
        im, objects = frame(rng)
        meta = {"camera": cameras[i % len(cameras)]} if cameras else {}
        items.append(Item(f"train/{i:03d}.png", im, [Annotation(c, bbox=b) for c, b in objects], split="train", metadata=meta))
    return items


def captured(rng, n: int, prefix: str = "cap", *, camera: str | None = None, predict=None, **look) -> list[Item]:
    """Captured images with the model's predictions on them (``source=model``); ``predict`` maps
    the true label to the predicted one (a model gone wrong), default the truth."""
    items = []
    for i in range(n):
        im, objects = frame(rng, **look)
        anns = [Annotation(predict(c, rng) if predict else c, bbox=b, score=0.9, source=Source.MODEL) for c, b in objects]
        items.append(
            Item(f"{prefix}/{i:03d}.png", im, anns, tags=[CAPTURED_TAG, UNLABELED_TAG], metadata={"camera": camera} if camera else {})
        )
    return items


def run(view, **params):
    check = get_check("production_drift")
    return list(check.run(view, **(dict(check.params) | params)))


def by_test(findings, test):
    return [f for f in findings if f.evidence["test"] == test]


@pytest.fixture(scope="module")
def same(tmp_path_factory):
    rng = np.random.default_rng(0)
    return build_view(tmp_path_factory.mktemp("drift_same"), training(rng) + captured(rng, 40))


@pytest.fixture(scope="module")
def darker(tmp_path_factory):
    rng = np.random.default_rng(1)
    return build_view(tmp_path_factory.mktemp("drift_dark"), training(rng) + captured(rng, 40, gain=0.6))


@pytest.fixture(scope="module")
def background(tmp_path_factory):
    rng = np.random.default_rng(2)
    return build_view(tmp_path_factory.mktemp("drift_bg"), training(rng) + captured(rng, 40, stripes=True))


@pytest.fixture(scope="module")
def cameras(tmp_path_factory):
    """Training from both cameras; in production north got darker, south did not."""
    rng = np.random.default_rng(3)
    items = training(rng, 60, cameras=("north", "south"))
    items += captured(rng, 30, "north", camera="north", gain=0.5) + captured(rng, 30, "south", camera="south")
    return build_view(tmp_path_factory.mktemp("drift_cam"), items)


@pytest.fixture(scope="module")
def class_shift(tmp_path_factory):
    """The same pictures, but the model calls most objects circles."""
    rng = np.random.default_rng(4)
    items = training(rng) + captured(rng, 40, predict=lambda c, r: "circle" if r.random() < 0.8 else c)
    return build_view(tmp_path_factory.mktemp("drift_mix"), items)


# ----------------------------------------------------------------------------- statistics


def test_mmd_matches_the_direct_unbiased_formula_and_is_seeded():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(25, 5)), rng.normal(0.3, 1.0, size=(30, 5))
    result = mmd_test(x, y, permutations=200, seed=7)
    z = np.concatenate([x, y])
    d2 = ((z[:, None, :] - z[None, :, :]) ** 2).sum(-1)
    sigma2 = np.median(d2[np.triu_indices(len(z), 1)])
    k = np.exp(-d2 / (2 * sigma2))
    kxx, kyy, kxy = k[:25, :25], k[25:, 25:], k[:25, 25:]
    direct = (kxx.sum() - 25) / (25 * 24) + (kyy.sum() - 30) / (30 * 29) - 2 * kxy.mean()
    assert result.mmd2 == pytest.approx(direct, rel=1e-9)
    assert result.bandwidth == pytest.approx(np.sqrt(sigma2))
    assert 1 / 201 <= result.p_value <= 1.0 and result.permutations == 200
    assert mmd_test(x, y, permutations=200, seed=7).p_value == result.p_value


def test_mmd_separates_shifted_samples_and_not_identical_distributions():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(60, 8)), rng.normal(size=(60, 8))
    assert mmd_test(a, b, permutations=300).p_value > 0.05
    shifted = mmd_test(a, rng.normal(1.0, 1.0, size=(60, 8)), permutations=300)
    assert shifted.p_value < 0.01 and shifted.mmd > 0.3


def test_class_mix_total_variation_and_chi_square():
    from collections import Counter

    same = class_mix_test(Counter(a=50, b=50), Counter(a=25, b=25))
    assert same.tvd == 0.0 and same.p_value == pytest.approx(1.0)
    shifted = class_mix_test(Counter(a=50, b=50), Counter(a=90, b=10))
    assert shifted.tvd == pytest.approx(0.4) and shifted.p_value < 1e-6 and shifted.most_changed == "a"
    assert shifted.shares(shifted.captured) == {"a": 0.9, "b": 0.1}


# ----------------------------------------------------------------------------- the check


def test_the_check_is_registered_with_documented_params():
    check = all_checks()["production_drift"]
    assert check.family == "drift"
    assert {"min_captured", "alpha", "min_mmd", "min_tvd", "by", "seed"} <= set(check.params)


def test_captured_images_like_the_training_set_give_nothing(same):
    assert run(same) == []
    report = run_checks(same.store, same.project, only=["production_drift"], view=same)
    assert report.checks == ["production_drift"] and report.findings == [] and report.notes == []


def test_darker_captured_images_are_drift(darker):
    findings = run(darker)
    emb = by_test(findings, "mmd")
    assert len(emb) == 1, [f.message for f in findings]
    f = emb[0]
    assert f.message.startswith("captured images differ from the training set: MMD ")
    assert f.evidence["p_value"] <= 0.001 and f.evidence["mmd"] >= 0.1 and "group" not in f.evidence
    assert f.evidence["captured_images"] == 40 and f.evidence["training_images"] == 60
    assert sorted(f.images) == sorted(r.name for r in darker.records if CAPTURED_TAG in r.tags)
    assert f.suggestion.action == "collect_more" and 0 < f.score <= 1
    assert by_test(findings, "class_mix") == [], "the model's class mix did not change"


def test_a_different_background_is_drift(background):
    emb = by_test(run(background), "mmd")
    assert len(emb) == 1 and emb[0].evidence["p_value"] <= 0.001


def test_thresholds_are_params(darker):
    assert run(darker, min_mmd=5.0) == []
    assert run(darker, alpha=0.0) == []


def test_the_camera_that_drifted_is_named(cameras):
    findings = by_test(run(cameras), "mmd")
    groups = [f.evidence.get("group") for f in findings]
    assert {"camera": "north"} in groups and {"camera": "south"} not in groups, [f.message for f in findings]
    north = next(f for f in findings if f.evidence.get("group") == {"camera": "north"})
    assert "captured images from camera north differ from the training images from camera north" in north.message
    assert north.evidence["reference"] == "same_group" and north.evidence["training_images"] == 30
    assert all(name.startswith("north/") for name in north.images) and len(north.images) == 30
    overall = [f for f in findings if "group" not in f.evidence]
    for f in overall:  # when the mix of both cameras differs too, it says where from
        assert f.evidence["drifted_groups"] == ["camera=north"] and "camera north" in f.message


def test_a_shift_in_the_predicted_class_mix_is_found(class_shift):
    findings = run(class_shift)
    mix = by_test(findings, "class_mix")
    assert len(mix) == 1, [f.message for f in findings]
    f = mix[0]
    assert f.evidence["most_changed_class"] == "circle" and f.evidence["tvd"] >= 0.15 and f.evidence["p_value"] < 0.001
    assert f.evidence["captured_share"]["circle"] > 0.6 > 0.45 > f.evidence["training_share"]["circle"]
    assert "circle" in f.message and "total variation" in f.message and f.suggestion.action == "review"
    assert by_test(findings, "mmd") == [], "the pictures themselves did not change"


def test_too_few_captured_images_is_a_note_not_a_finding(tmp_path):
    rng = np.random.default_rng(5)
    view = build_view(tmp_path, training(rng, 25) + captured(rng, 8, gain=0.4))
    report = run_checks(view.store, view.project, only=["production_drift"], view=view)
    assert report.findings == []
    assert [n["check"] for n in report.notes] == ["production_drift"] and "only 8 captured" in report.notes[0]["message"]
