"""The ``files`` checks on small projects with planted defects, and on clean data."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from tests.quality_helpers import Item, build_view, encode, textured
from winnow.quality.base import ACTIONS, all_checks, get_check
from winnow.quality.engine import run_checks

FILE_CHECKS = ["corrupt_image", "grayscale", "exif_rotation", "tiny_image", "extreme_aspect", "size_mismatch"]


def run(view, check_id, **params):
    check = get_check(check_id)
    return list(check.run(view, **(dict(check.params) | params)))


def names(findings):
    return {name for f in findings for name in f.images}


def exif_jpeg(im: Image.Image, orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    im.save(buf, "JPEG", exif=exif, quality=95)
    return buf.getvalue()


def clean_items(count: int, start: int = 0) -> list[Item]:
    sizes = [(96, 72), (72, 96), (120, 80), (64, 64)]
    items = []
    for s in range(start, start + count):
        ext = "jpg" if s % 3 == 0 else "png"
        items.append(Item(f"clean/c{s:02d}.{ext}", textured(s, size=sizes[s % len(sizes)])))
    return items


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    jpeg = encode(textured(100), "JPEG", quality=90)
    png = encode(textured(101), "PNG")
    items = clean_items(24) + [
        Item("truncated.jpg", jpeg[: len(jpeg) // 2]),
        Item("truncated.png", png[: len(png) // 2]),
        Item("grey_l.png", textured(102).convert("L")),
        Item("grey_rgb.png", textured(103).convert("L").convert("RGB")),
        Item("rotated.jpg", exif_jpeg(textured(104), 6)),
        Item("tiny.png", textured(105).resize((10, 10))),
        Item("wide.png", textured(106, size=(400, 40))),
        # declared 2x the real size: resized after labelling
        Item("resized.png", textured(107), declared_width=192, declared_height=144),
        # declared = the stored size of an EXIF-rotated image
        Item("swapped.jpg", exif_jpeg(textured(108), 8), declared_width=96, declared_height=72),
        Item("off.png", textured(109), declared_width=100, declared_height=72),
        # declared and right: no finding
        Item("declared_ok.png", textured(110), declared_width=96, declared_height=72),
    ]
    return build_view(tmp_path_factory.mktemp("files_planted"), items)


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    items = clean_items(24, start=200)
    items.append(Item("clean/declared.png", textured(300), declared_width=96, declared_height=72))
    items.append(Item("clean/upright.jpg", exif_jpeg(textured(301), 1)))
    return build_view(tmp_path_factory.mktemp("files_clean"), items)


EXPECTED = {
    "corrupt_image": {"truncated.jpg", "truncated.png"},
    "grayscale": {"grey_l.png", "grey_rgb.png"},
    "exif_rotation": {"rotated.jpg", "swapped.jpg"},
    "tiny_image": {"tiny.png"},
    "extreme_aspect": {"wide.png"},
    "size_mismatch": {"resized.png", "swapped.jpg", "off.png"},
}


@pytest.mark.parametrize("check_id", FILE_CHECKS)
def test_each_check_finds_exactly_the_planted_images(planted, check_id):
    findings = run(planted, check_id)
    assert names(findings) == EXPECTED[check_id]
    assert all(len(f.images) == 1 for f in findings)  # one finding per image


@pytest.mark.parametrize("check_id", FILE_CHECKS)
def test_each_check_is_quiet_on_clean_images(clean, check_id):
    assert run(clean, check_id) == []


def test_registered_with_family_and_defaults():
    checks = all_checks()
    for cid in FILE_CHECKS:
        assert checks[cid].family == "files"
        assert checks[cid].description.endswith(".")
    assert checks["tiny_image"].params["min_side"] == 32
    assert checks["extreme_aspect"].params["max_ratio"] == 4.0


def test_findings_honour_the_json_contract(planted):
    report = run_checks(planted.store, "p", only=FILE_CHECKS, view=planted)
    doc = json.loads(json.dumps(report.as_dict()))  # evidence is plain JSON
    assert doc["summary"]["by_check"] == {cid: len(EXPECTED[cid]) for cid in FILE_CHECKS}
    for f in report.findings:
        assert 0.0 <= f.score <= 1.0
        assert f.suggestion is not None and f.suggestion.action in ACTIONS
        assert f.message and "\n" not in f.message and not f.message.endswith(".")
        assert f.evidence
    # the corrupt images are errors and rank first
    assert {f.images[0] for f in report.findings[:2]} == {"truncated.jpg", "truncated.png"}


def test_corrupt_image_says_truncated_and_suggests_delete(planted):
    by_name = {f.images[0]: f for f in run(planted, "corrupt_image")}
    f = by_name["truncated.jpg"]
    assert f.severity == "error" and f.score == 1.0
    assert f.evidence["truncated"] is True and f.evidence["format"] == "jpeg"
    assert f.suggestion.action == "delete_image"
    assert "truncated" in f.message


def test_grayscale_distinguishes_single_channel_from_rgb_grey(planted):
    by_name = {f.images[0]: f for f in run(planted, "grayscale")}
    assert by_name["grey_l.png"].severity == "warning"
    assert by_name["grey_l.png"].evidence["encoding"] == "single_channel"
    assert by_name["grey_rgb.png"].severity == "info"
    assert by_name["grey_rgb.png"].evidence["encoding"] == "rgb_grey"
    assert by_name["grey_rgb.png"].evidence["colour_spread"] == 0.0


def test_a_small_colour_drawing_on_a_wide_grey_background_is_not_grey(tmp_path):
    """A real scrape's colour icons on transparent (mid-grey) backgrounds: mean spread < 3, yet colour."""
    from PIL import ImageDraw

    def icon(colour):
        im = Image.new("RGB", (48, 48), (128, 128, 128))
        ImageDraw.Draw(im).rectangle((20, 20, 25, 25), fill=colour)  # 36 of 2,304 pixels: 1.6%
        return im

    items = [Item(f"c{s}.png", textured(s + 20)) for s in range(8)]
    items += [Item("icon.png", icon((200, 40, 40))), Item("grey.png", icon((40, 40, 40)))]
    view = build_view(tmp_path, items)
    spread = dict(zip((r.name for r in view.records), view.facts["colour_spread"]))
    assert spread["icon.png"] < 3.0  # the mean alone would call it grey
    found = {f.images[0]: f for f in run(view, "grayscale")}
    assert set(found) == {"grey.png"}
    assert found["grey.png"].evidence["colour_pixels"] == 0.0


def test_grayscale_is_quiet_on_a_grey_dataset(tmp_path):
    items = [Item(f"g{s}.png", textured(s).convert("L")) for s in range(6)]
    items += [Item(f"r{s}.png", textured(s + 10).convert("L").convert("RGB")) for s in range(3)]
    items += [Item(f"c{s}.png", textured(s + 20)) for s in range(3)]  # a few colour ones: 25%
    view = build_view(tmp_path, items)
    assert run(view, "grayscale") == []
    # the colour-share gate is what keeps it quiet: lowered, all nine grey images are flagged
    assert len(run(view, "grayscale", min_colour_share=0.2)) == 9


def test_exif_rotation_reports_stored_and_displayed_size(planted):
    f = {f.images[0]: f for f in run(planted, "exif_rotation")}["rotated.jpg"]
    assert f.severity == "info" and f.suggestion.action == "review"
    assert f.evidence["orientation"] == 6 and f.evidence["swaps_axes"] is True
    assert f.evidence["stored_size"] == [96, 72] and f.evidence["displayed_size"] == [72, 96]


def test_size_mismatch_explains_exif_swap_and_resize(planted):
    by_name = {f.images[0]: f for f in run(planted, "size_mismatch")}
    swapped = by_name["swapped.jpg"]
    assert swapped.evidence["exif_swap"] is True and "EXIF" in swapped.message
    assert swapped.evidence["declared_size"] == [96, 72] and swapped.evidence["image_size"] == [72, 96]
    resized = by_name["resized.png"]
    assert resized.evidence["exif_swap"] is False
    assert resized.evidence["scale_x"] == pytest.approx(0.5) and resized.evidence["scale_y"] == pytest.approx(0.5)
    assert "resized" in resized.message and resized.suggestion.params == {"scale": [0.5, 0.5]}
    off = by_name["off.png"]
    assert "resized" not in off.message and "EXIF" not in off.message
    assert off.score < resized.score  # 4% off in width vs half the size


def test_size_mismatch_tolerance_param(planted):
    assert names(run(planted, "size_mismatch", tolerance=10)) == {"resized.png", "swapped.jpg"}


def test_tiny_and_aspect_scores_grow_with_the_defect(tmp_path):
    view = build_view(
        tmp_path,
        clean_items(8)
        + [Item("t20.png", textured(1).resize((20, 20))), Item("t8.png", textured(2).resize((8, 8)))]
        + [Item("a5.png", textured(3, size=(250, 50))), Item("a10.png", textured(4, size=(500, 50)))],
    )
    tiny = {f.images[0]: f.score for f in run(view, "tiny_image")}
    assert set(tiny) == {"t20.png", "t8.png"} and tiny["t8.png"] > tiny["t20.png"] > 0
    aspect = {f.images[0]: f.score for f in run(view, "extreme_aspect")}
    assert set(aspect) == {"a5.png", "a10.png"} and aspect["a10.png"] > aspect["a5.png"] > 0
    assert names(run(view, "tiny_image", min_side=16)) == {"t8.png"}
    assert run(view, "extreme_aspect", max_ratio=12) == []


def test_small_images_by_design_are_summarised_not_flagged_one_by_one(tmp_path):
    # an MNIST-like dataset: every image is 28 px, one is 6 px
    rng = np.random.default_rng(0)
    items = [Item(f"d{s}.png", Image.fromarray(rng.integers(0, 256, (28, 28), dtype=np.uint8))) for s in range(12)]
    items.append(Item("speck.png", Image.fromarray(rng.integers(0, 256, (6, 6), dtype=np.uint8))))
    findings = run(build_view(tmp_path, items), "tiny_image")
    warnings = [f for f in findings if f.severity == "warning"]
    infos = [f for f in findings if f.severity == "info"]
    assert [f.images for f in warnings] == [["speck.png"]]
    assert len(infos) == 1 and infos[0].evidence["count"] == 12
    assert infos[0].evidence["dataset_median_short_side"] == 28.0


def test_checks_are_quiet_on_an_empty_project(tmp_path):
    view = build_view(tmp_path, [])
    for cid in FILE_CHECKS:
        assert run(view, cid) == []
