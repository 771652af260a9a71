"""Version recipes: spec parsing, label steps, preprocessing and augmentation geometry.

The augmentation tests draw a bright shape on a dark textured background and check, over many
seeds, that the output box still sits on the shape's bright pixels and is not much larger.
"""

import hashlib
import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_utils

from winnow.core import geometry
from winnow.core.types import Annotation, Source
from winnow.errors import InvalidInputError
from winnow.versions import spec as S
from winnow.versions import transforms as T

# pycocotools 2.0.x under numpy 2 warns on every decode; not ours to fix here.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

H, W = 160, 200
SEEDS = range(30)

#: A pixel is "bright" (part of a shape) above this gray level. Shapes are 255 and the
#: background at most 40; the worst photometric draw of the specs below (brightness and
#: contrast 0.1 on a 114 border or cutout hole, plus 5 sigma of noise) stays under it, and the
#: shape's darkest draw (255 * 0.9 - 25.5 = 204) stays above it.
BRIGHT = 190
#: Bright pixels must lie inside the box dilated by this many pixels (interpolation, blur).
DILATE = 2
#: A box side may stick out of the bright pixels' extent by at most max(TIGHT_PX, TIGHT_REL * side).
TIGHT_PX = 4.0
TIGHT_REL = 0.06


# ---------------------------------------------------------------------------------------------
# Helpers


def background(h=H, w=W, seed=0):
    return np.random.default_rng(seed).integers(0, 41, (h, w, 3), dtype=np.uint8)


def rle_of(mask):
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": rle["counts"].decode("ascii")}


def decode(rle):
    return mask_utils.decode(rle)


def rectangle_sample():
    img = background()
    img[60:100, 70:130] = 255
    ann = Annotation("rect", bbox=(70.0, 60.0, 130.0, 100.0), source=Source.HUMAN, attributes={"occluded": False}, id=7)
    return T.Sample(img, [ann])


def ellipse_sample():
    img = background(seed=1)
    pts = cv2.ellipse2Poly((100, 80), (36, 20), 30, 0, 360, 6)
    cv2.fillPoly(img, [pts], (255, 255, 255))
    polygon = [(pts.astype(np.float64) + 0.5).ravel().tolist()]  # pixel centres -> corner convention
    ann = Annotation("ellipse", bbox=geometry.polygon_bbox(polygon), polygon=polygon, external_id="e1")
    return T.Sample(img, [ann])


def mask_sample():
    img = background(seed=2)
    mask = np.zeros((H, W), np.uint8)
    mask[55:105, 80:120] = 1
    mask[70:90, 120:135] = 1  # a notch: not a plain rectangle
    img[mask == 1] = 255
    ann = Annotation("blob", bbox=(80.0, 55.0, 135.0, 105.0), rle=rle_of(mask), iscrowd=True, score=0.5)
    return T.Sample(img, [ann])


SHAPES = {"rectangle": rectangle_sample, "ellipse": ellipse_sample, "mask": mask_sample}


def bright_mask(image):
    return image.astype(np.float32).mean(axis=2) >= BRIGHT


def fraction_inside(bright, boxes, dilate=DILATE):
    """Fraction of bright pixels whose centre lies in at least one box dilated by ``dilate``."""
    ys, xs = np.nonzero(bright)
    if len(xs) == 0:
        return 1.0
    cx, cy = xs + 0.5, ys + 0.5
    inside = np.zeros(len(xs), bool)
    for x1, y1, x2, y2 in boxes:
        inside |= (cx >= x1 - dilate) & (cx <= x2 + dilate) & (cy >= y1 - dilate) & (cy <= y2 + dilate)
    return inside.mean()


def extent(bright):
    ys, xs = np.nonzero(bright)
    return (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)


def assert_tight(box, bright):
    ex1, ey1, ex2, ey2 = extent(bright)
    tol_x = max(TIGHT_PX, TIGHT_REL * (ex2 - ex1))
    tol_y = max(TIGHT_PX, TIGHT_REL * (ey2 - ey1))
    x1, y1, x2, y2 = box
    assert x1 >= ex1 - tol_x and x2 <= ex2 + tol_x, (box, (ex1, ey1, ex2, ey2))
    assert y1 >= ey1 - tol_y and y2 <= ey2 + tol_y, (box, (ex1, ey1, ex2, ey2))


def digest(sample):
    anns = [
        [a.label, a.bbox, a.polygon, a.rle, a.iscrowd, a.score, Source(a.source).value, a.attributes, a.external_id, a.id]
        for a in sample.annotations
    ]
    text = json.dumps(anns, sort_keys=True)
    return hashlib.sha256(sample.image.tobytes() + str(sample.image.shape).encode() + text.encode()).hexdigest()


# ---------------------------------------------------------------------------------------------
# Augmented boxes stay on the object

OPS_ALONE = [
    "flip=hv",
    "crop=0.2",
    "rotate=25",
    "scale=0.25",
    "shear=10",
    "brightness=0.1",
    "contrast=0.1",
    "hue=40",
    "blur=1.5",
    "noise=0.03",
    "cutout=4",
]
ALL_OPS = "flip=hv,crop=0.2,rotate=20,scale=0.2,shear=8,brightness=0.1,contrast=0.1,hue=30,blur=1.5,noise=0.03,cutout=3"


@pytest.mark.parametrize("shape", sorted(SHAPES))
@pytest.mark.parametrize("spec", [*OPS_ALONE, ALL_OPS])
def test_augmented_box_stays_on_the_shape(shape, spec):
    sample = SHAPES[shape]()
    before = sample.image.copy()
    original = sample.annotations[0]
    aug = S.parse_augment(spec)
    # Cutout may hide part of the shape: the bright extent then shrinks while the box and the
    # mask rightly do not (the object is occluded, not gone), so tightness and "mask pixels are
    # bright" are only checked without it. Containment always is: holes are gray, never bright.
    check_tight = "cutout" not in spec
    for seed in SEEDS:
        out = T.augment(sample, aug, seed)
        assert out.image.shape == (H, W, 3) and out.image.dtype == np.uint8
        assert len(out.annotations) == 1, (spec, seed)
        ann = out.annotations[0]
        # everything but the geometry is kept
        for name in ("label", "iscrowd", "score", "source", "attributes", "external_id", "id"):
            assert getattr(ann, name) == getattr(original, name)
        x1, y1, x2, y2 = ann.bbox
        assert 0 <= x1 < x2 <= W and 0 <= y1 < y2 <= H
        bright = bright_mask(out.image)
        assert bright.sum() > 300, (spec, seed)  # the shape is still there
        assert fraction_inside(bright, [ann.bbox]) >= 0.95, (spec, seed, ann.bbox)
        if check_tight:
            assert_tight(ann.bbox, bright)
        if ann.polygon is not None:
            assert ann.bbox == pytest.approx(geometry.polygon_bbox(ann.polygon), abs=1e-9)
        if ann.rle is not None:
            m = decode(ann.rle)
            assert m.shape == (H, W)
            ys, xs = np.nonzero(m)
            assert ann.bbox == (xs.min(), ys.min(), xs.max() + 1.0, ys.max() + 1.0)
            if check_tight:
                # the mask's pixels are on the shape (allowing a pixel of interpolation at the rim)
                near = cv2.dilate(bright.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
                assert near[m == 1].mean() >= 0.95
    assert np.array_equal(sample.image, before), "augment must not write into its input"


def test_polygon_box_is_tighter_than_a_rotated_box():
    """A rotated ellipse's box comes from its polygon, not from rotating its old box."""
    sample = ellipse_sample()
    aug = S.parse_augment("rotate=40:40")
    out = T.augment(sample, aug, 0)
    box = out.annotations[0].bbox
    # The old box rotated by 40 degrees about the image centre, for comparison.
    x1, y1, x2, y2 = sample.annotations[0].bbox
    corners = np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2]]) - [W / 2, H / 2]
    t = np.deg2rad(40)
    rot = corners @ np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    loose = (rot[:, 0].max() - rot[:, 0].min()) * (rot[:, 1].max() - rot[:, 1].min())
    assert (box[2] - box[0]) * (box[3] - box[1]) < 0.8 * loose
    assert_tight(box, bright_mask(out.image))


@pytest.mark.parametrize("kind", ["box", "polygon"])
def test_what_the_crop_cuts_away_stays_out_of_the_box_when_the_warp_zooms_out(kind):
    # The crop keeps half of each side, so it always cuts this large rectangle; the zoom-out then
    # brings gray border into view where the cut-away part was. The box must follow the crop.
    img = background()
    img[16:144, 20:180] = 255
    geometry_kw = {"bbox": (20.0, 16.0, 180.0, 144.0)}
    if kind == "polygon":
        geometry_kw["polygon"] = [[20.0, 16.0, 180.0, 16.0, 180.0, 144.0, 20.0, 144.0]]
    sample = T.Sample(img, [Annotation("big", **geometry_kw)])
    aug = S.parse_augment("crop=0.5:0.5,scale=-0.5:-0.5,rotate=0:10")
    for seed in range(10):
        out = T.augment(sample, aug, seed)
        bright = bright_mask(out.image)
        (ann,) = out.annotations
        assert fraction_inside(bright, [ann.bbox]) >= 0.95
        assert_tight(ann.bbox, bright)


def test_what_keeps_under_a_quarter_of_its_area_in_the_image_is_dropped():
    # zoom x1.25 about the centre (100, 80): x -> 100 + 1.25 (x - 100), y -> 80 + 1.25 (y - 80)
    def rect(x1, y1, x2, y2):
        return [[x1, y1, x2, y1, x2, y2, x1, y2]]

    anns = [
        # -> (162.5, -20, 225, 30): 37.5 x 30 of 62.5 x 50 visible, 36%: kept, clipped
        Annotation("box36", bbox=(150.0, 0.0, 200.0, 40.0)),
        # -> (187.5, -20, 225, 30): 12.5 x 30 of 37.5 x 50 visible, 20%: dropped
        Annotation("box20", bbox=(170.0, 0.0, 200.0, 40.0)),
        Annotation("poly36", polygon=rect(150.0, 0.0, 200.0, 40.0)),
        Annotation("poly20", polygon=rect(170.0, 0.0, 200.0, 40.0)),
        Annotation("whole-image-label"),
    ]
    out = T.augment(T.Sample(background(), anns), S.parse_augment("scale=0.25:0.25"), 0)
    by = {a.label: a for a in out.annotations}
    assert sorted(by) == ["box36", "poly36", "whole-image-label"]
    assert by["box36"].bbox == pytest.approx((162.5, 0, 200, 30), abs=1e-3)
    assert by["poly36"].bbox == pytest.approx((162.5, 0, 200, 30), abs=1e-3)
    assert geometry.polygon_area(by["poly36"].polygon[0]) == pytest.approx(37.5 * 30, abs=0.1)
    # zoom x0.5: the same boxes come fully inside, scaled about the centre
    out = T.augment(T.Sample(background(), anns), S.parse_augment("scale=-0.5:-0.5"), 0)
    assert {a.label: a.bbox for a in out.annotations}["box20"] == pytest.approx((135, 40, 150, 60), abs=1e-3)


# ---------------------------------------------------------------------------------------------
# Flips: exact coordinates for boxes, polygons and masks


def flip_sample():
    img = background(100, 200)
    mask = np.zeros((100, 200), np.uint8)
    mask[20:60, 10:50] = 1
    mask[20, 60] = 1  # an odd pixel out
    anns = [
        Annotation("box", bbox=(10.0, 20.0, 50.0, 60.0)),
        Annotation("poly", bbox=(10.0, 20.0, 50.0, 60.0), polygon=[[10.0, 20.0, 50.0, 20.0, 30.0, 60.0]]),
        Annotation("mask", bbox=(10.0, 20.0, 61.0, 60.0), rle=rle_of(mask)),
    ]
    return T.Sample(img, anns), mask


@pytest.mark.parametrize(
    ("spec", "axes"),
    [("flip=h", (False, True)), ("flip=v", (True, False)), ("flip=hv", (True, True))],
)
def test_flips_are_exact(spec, axes):
    sample, mask = flip_sample()
    h, w = 100, 200
    seen = set()
    for seed in range(16):
        out = T.augment(sample, S.parse_augment(spec), seed)
        # which flips happened, read off the pixels
        candidates = {
            (fv, fh): sample.image[:: -1 if fv else 1, :: -1 if fh else 1] for fv in (False, True) for fh in (False, True)
        }
        ((fv, fh),) = [k for k, v in candidates.items() if np.array_equal(out.image, v)]
        assert (not fv or axes[0]) and (not fh or axes[1])
        seen.add((fv, fh))

        def fx(x, fh=fh):
            return w - x if fh else x

        def fy(y, fv=fv):
            return h - y if fv else y

        box, poly, msk = out.annotations
        assert box.bbox == (min(fx(10), fx(50)), min(fy(20), fy(60)), max(fx(10), fx(50)), max(fy(20), fy(60)))
        assert poly.polygon == [[fx(10.0), fy(20.0), fx(50.0), fy(20.0), fx(30.0), fy(60.0)]]
        assert poly.bbox == box.bbox
        expected = mask[:: -1 if fv else 1, :: -1 if fh else 1]
        assert np.array_equal(decode(msk.rle), expected)
        ys, xs = np.nonzero(expected)
        assert msk.bbox == (xs.min(), ys.min(), xs.max() + 1.0, ys.max() + 1.0)
    possible = {(fv, fh) for fv in (False, axes[0]) for fh in (False, axes[1])}
    assert seen == possible  # each axis flips about half the time, independently


# ---------------------------------------------------------------------------------------------
# Mosaic


def corner_sample(label, seed):
    """Four 24x20 squares near the corners: each lies in 0.1..0.22 or 0.78..0.9 of the sides, so
    a mosaic cell (which shows 0.3..0.7 of a side, from the corner next to the mosaic centre)
    shows each square whole or not at all."""
    img = background(seed=seed)
    anns = []
    for x1 in (20, 156):
        for y1 in (16, 124):
            img[y1 : y1 + 20, x1 : x1 + 24] = 255
            box = (float(x1), float(y1), x1 + 24.0, y1 + 20.0)
            if (x1, y1) == (20, 16):  # one as a mask
                mask = np.zeros((H, W), np.uint8)
                mask[y1 : y1 + 20, x1 : x1 + 24] = 1
                anns.append(Annotation(label, bbox=box, rle=rle_of(mask)))
            elif (x1, y1) == (156, 124):  # one as a polygon
                anns.append(Annotation(label, bbox=box, polygon=[[x1, y1, x1 + 24.0, y1, x1 + 24.0, y1 + 20.0, x1, y1 + 20.0]]))
            else:
                anns.append(Annotation(label, bbox=box))
    return T.Sample(img, anns)


def check_geometry_agrees(ann):
    if ann.polygon is not None:
        assert ann.bbox == pytest.approx(geometry.polygon_bbox(ann.polygon), abs=1e-9)
    if ann.rle is not None:
        ys, xs = np.nonzero(decode(ann.rle))
        assert ann.bbox == (xs.min(), ys.min(), xs.max() + 1.0, ys.max() + 1.0)


class Partners:
    def __init__(self):
        self.calls = []

    def __call__(self, n):
        self.calls.append(n)
        return [corner_sample(f"partner{k}", 10 + k) for k in range(n)]


@pytest.mark.parametrize("spec", ["mosaic=1", "mosaic=1,flip=hv,brightness=0.1,contrast=0.1,hue=30,blur=1.5,noise=0.03"])
def test_mosaic_keeps_every_image_and_its_boxes_on_their_shapes(spec):
    sample = corner_sample("main", 0)
    aug = S.parse_augment(spec)
    kinds = set()
    for seed in range(20):
        partners = Partners()
        out = T.augment(sample, aug, seed, partners)
        assert partners.calls == [3]
        assert out.image.shape == sample.image.shape
        labels = {a.label for a in out.annotations}
        assert labels == {"main", "partner0", "partner1", "partner2"}, (seed, labels)
        bright = bright_mask(out.image)
        boxes = [a.bbox for a in out.annotations]
        assert fraction_inside(bright, boxes) >= 0.95
        kinds.update((a.rle is not None, a.polygon is not None) for a in out.annotations)
        for ann in out.annotations:
            x1, y1, x2, y2 = ann.bbox
            assert (x2 - x1, y2 - y1) == pytest.approx((24, 20), abs=1e-6)  # whole squares, unscaled
            core = bright[int(y1) + 3 : int(y2) - 3, int(x1) + 3 : int(x2) - 3]  # blur softens the rim
            assert core.mean() >= 0.95  # the box is on its square
            check_geometry_agrees(ann)
            if ann.rle is not None:
                assert decode(ann.rle)[int(y1) : int(y2), int(x1) : int(x2)].all()
            if ann.polygon is not None:
                assert geometry.polygon_area(ann.polygon[0]) == pytest.approx(480)
    assert kinds == {(False, False), (True, False), (False, True)}  # boxes, masks and polygons all came through


def test_mosaic_with_every_other_op_keeps_boxes_on_shapes():
    # cutout left out: it may hide part of a square, which the tightness check would misread
    aug = S.parse_augment("mosaic=1," + ALL_OPS.replace(",cutout=3", ""))
    sample = corner_sample("main", 0)
    for seed in SEEDS:
        out = T.augment(sample, aug, seed, Partners())
        assert out.image.shape == sample.image.shape and out.annotations
        bright = bright_mask(out.image)
        assert fraction_inside(bright, [a.bbox for a in out.annotations]) >= 0.95, seed
        for ann in out.annotations:
            x1, y1, x2, y2 = ann.bbox
            near = np.zeros_like(bright)
            top, left = max(0, int(y1) - DILATE), max(0, int(x1) - DILATE)
            near[top : int(np.ceil(y2)) + DILATE, left : int(np.ceil(x2)) + DILATE] = True
            assert (bright & near).sum() > 50, (seed, ann.bbox)  # on a square...
            # ...and not much larger than it. A plain box of a rotated square that the image border
            # cuts is the clipped box of the whole square, wider than the visible part: that is
            # all a box can say, so only masks, polygons and boxes off the border are held to it.
            on_border = x1 <= 0 or y1 <= 0 or x2 >= W or y2 >= H
            if ann.polygon is not None or ann.rle is not None or not on_border:
                assert_tight(ann.bbox, bright & near)
            check_geometry_agrees(ann)


def test_partners_are_loaded_only_when_the_draw_makes_a_mosaic():
    sample = corner_sample("main", 0)
    aug = S.parse_augment("mosaic=0.5,flip=h")
    called = 0
    for seed in range(40):
        partners = Partners()
        out = T.augment(sample, aug, seed, partners)
        labels = {a.label for a in out.annotations}
        if partners.calls:
            called += 1
            assert partners.calls == [3]
            assert labels >= {"partner0", "partner1", "partner2"}
        else:
            assert labels == {"main"} and len(out.annotations) == 4
        again = Partners()
        T.augment(sample, aug, seed, again)
        assert again.calls == partners.calls  # the decision is part of the seeded draw
    assert 8 <= called <= 32


def test_mosaic_without_partners_repeats_the_image():
    sample = corner_sample("main", 0)
    out = T.augment(sample, S.parse_augment("mosaic=1"), 3, None)
    assert out.image.shape == sample.image.shape
    assert {a.label for a in out.annotations} == {"main"} and len(out.annotations) >= 4


# ---------------------------------------------------------------------------------------------
# Determinism

ALL_WITH_MOSAIC = "mosaic=1," + ALL_OPS


def _determinism_digests():
    aug = S.parse_augment(ALL_WITH_MOSAIC)
    out = []
    for seed in (0, 1, 2**62 + 12345):
        for make in (rectangle_sample, ellipse_sample, mask_sample):
            out.append(digest(T.augment(make(), aug, seed, Partners())))
    return out


def test_same_seed_same_output_different_seed_different_output():
    sample = mask_sample()
    aug = S.parse_augment(ALL_WITH_MOSAIC)
    a = T.augment(sample, aug, 5, Partners())
    b = T.augment(sample, aug, 5, Partners())
    assert np.array_equal(a.image, b.image)
    assert [x.bbox for x in a.annotations] == [x.bbox for x in b.annotations]
    assert digest(a) == digest(b)
    c = T.augment(sample, aug, 6, Partners())
    assert not np.array_equal(a.image, c.image)
    assert len({digest(T.augment(sample, aug, s, Partners())) for s in range(8)}) == 8


def test_same_seed_same_output_in_another_process():
    here = _determinism_digests()
    code = (
        f"import json, sys; sys.path.insert(0, {os.path.dirname(__file__)!r});"
        "import test_transforms as t; print(json.dumps(t._determinism_digests()))"
    )
    env = dict(os.environ, PYTHONHASHSEED="12345")
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120, check=True)
    assert json.loads(run.stdout.strip().splitlines()[-1]) == here


# ---------------------------------------------------------------------------------------------
# Preprocessing: resize, grayscale, tile


def resize_sample():
    img = background(100, 200)
    anns = [
        Annotation("a", bbox=(20.0, 10.0, 60.0, 50.0)),
        Annotation("edge", bbox=(0.0, 0.0, 30.0, 30.0)),
        Annotation("p", polygon=[[100.0, 20.0, 180.0, 20.0, 180.0, 80.0, 100.0, 80.0]]),
    ]
    return T.Sample(img, anns)


def test_resize_stretch():
    (out,) = T.preprocess(resize_sample(), S.parse_preprocess("resize=100x100"))
    assert out.image.shape == (100, 100, 3)
    a, edge, p = out.annotations
    assert a.bbox == pytest.approx((10, 10, 30, 50), abs=1e-3)
    assert edge.bbox == pytest.approx((0, 0, 15, 30), abs=1e-3)
    assert p.polygon == [pytest.approx([50, 20, 90, 20, 90, 80, 50, 80], abs=1e-3)]
    assert p.bbox == pytest.approx((50, 20, 90, 80), abs=1e-3)


def test_resize_fit_letterboxes_in_gray():
    # 200x100 into 100x100: scale 0.5, 25 px of gray above and below
    (out,) = T.preprocess(resize_sample(), S.parse_preprocess("resize=100x100:fit"))
    assert out.image.shape == (100, 100, 3)
    assert (out.image[:25] == 114).all() and (out.image[75:] == 114).all()
    assert not (out.image[25:75] == 114).all()
    a, edge, p = out.annotations
    assert a.bbox == pytest.approx((10, 30, 30, 50), abs=1e-3)
    assert edge.bbox == pytest.approx((0, 25, 15, 40), abs=1e-3)
    assert p.bbox == pytest.approx((50, 35, 90, 65), abs=1e-3)


def test_resize_fill_crops_the_centre():
    # 200x100 into 50x50: scale 0.5 to 100x50, then x 25..75 kept
    (out,) = T.preprocess(resize_sample(), S.parse_preprocess("resize=50x50:fill"))
    assert out.image.shape == (50, 50, 3)
    labels = [a.label for a in out.annotations]
    assert labels == ["a", "p"]  # "edge" is cut away
    a, p = out.annotations
    assert a.bbox == pytest.approx((0, 5, 5, 25), abs=1e-3)  # (10,5,30,25) - 25, 25% visible
    assert p.bbox == pytest.approx((25, 10, 50, 40), abs=1e-3)  # (50,10,90,40) - 25, clipped


def test_grayscale_has_three_equal_channels():
    img = np.zeros((10, 20, 3), np.uint8)
    img[:, :10] = (255, 0, 0)
    img[:, 10:] = (0, 255, 0)
    sample = T.Sample(img, [Annotation("a", bbox=(1.0, 1.0, 5.0, 5.0))])
    (out,) = T.preprocess(sample, S.parse_preprocess("grayscale"))
    assert out.image.shape == (10, 20, 3)
    assert (out.image[..., 0] == out.image[..., 1]).all() and (out.image[..., 1] == out.image[..., 2]).all()
    assert abs(int(out.image[0, 0, 0]) - 76) <= 1 and abs(int(out.image[0, 15, 0]) - 150) <= 1  # luminance
    assert out.annotations[0].bbox == (1.0, 1.0, 5.0, 5.0)


def test_tile_cuts_a_box_crossing_the_centre_into_four_exact_pieces():
    img = background(200, 200)
    mask = np.zeros((200, 200), np.uint8)
    mask[90:130, 95:105] = 1
    anns = [
        Annotation("cross", bbox=(20.0, 30.0, 170.0, 180.0), id=3),
        Annotation("mostly-top-left", bbox=(10.0, 10.0, 95.0, 105.0)),
        Annotation("tri", polygon=[[60.0, 60.0, 140.0, 60.0, 140.0, 140.0]]),
        Annotation("m", bbox=(95.0, 90.0, 105.0, 130.0), rle=rle_of(mask)),
        Annotation("image-label"),
    ]
    tiles = T.preprocess(T.Sample(img, anns, "_x"), S.parse_preprocess("tile=2x2"))
    assert [t.suffix for t in tiles] == ["_x_tile0x0", "_x_tile0x1", "_x_tile1x0", "_x_tile1x1"]
    assert all(t.image.shape == (100, 100, 3) for t in tiles)
    assert np.array_equal(tiles[1].image, img[0:100, 100:200])
    by = [{a.label: a for a in t.annotations} for t in tiles]
    # "cross": each piece is under 25% of the box but at least 25% of the tile: kept everywhere
    assert [b["cross"].bbox for b in by] == [(20, 30, 100, 100), (0, 30, 70, 100), (20, 0, 100, 80), (0, 0, 70, 80)]
    assert all(b["cross"].id == 3 for b in by)
    # "mostly-top-left": 85x5 px below the cut (5% of it, 4% of the tile) -> only in tile 0x0
    assert by[0]["mostly-top-left"].bbox == (10, 10, 95, 100)
    assert all("mostly-top-left" not in b for b in by[1:])
    # triangle (60,60)-(140,60)-(140,140), area 3200: 0x0 holds a 40x40 triangle (800, 25%),
    # 0x1 a 40x40 square (1600), 1x1 a 40x40 triangle (800); 1x0 nothing
    assert by[0]["tri"].bbox == (60, 60, 100, 100)
    assert geometry.polygon_area(by[0]["tri"].polygon[0]) == pytest.approx(800)
    assert by[1]["tri"].bbox == (0, 60, 40, 100)
    assert geometry.polygon_area(by[1]["tri"].polygon[0]) == pytest.approx(1600)
    assert "tri" not in by[2]
    assert by[3]["tri"].bbox == (0, 0, 40, 40)
    assert geometry.polygon_area(by[3]["tri"].polygon[0]) == pytest.approx(800)
    # mask: 10x40 px (400) split 5/5 left-right and 10/30 at the cut: the 5x10 pieces above it
    # are 12.5% of the mask and 0.5% of the tile (dropped), the 5x30 ones below 37.5% (kept)
    assert "m" not in by[0] and "m" not in by[1]
    assert np.array_equal(decode(by[2]["m"].rle), mask[100:200, 0:100])
    assert by[2]["m"].bbox == (95, 0, 100, 30)
    assert by[3]["m"].bbox == (0, 0, 5, 30)
    # image-level labels go with every tile
    assert all("image-label" in b for b in by)


def test_tile_keeps_the_pieces_of_an_object_larger_than_a_tile():
    img = background(90, 90)
    tiles = T.preprocess(T.Sample(img, [Annotation("big", bbox=(0.0, 0.0, 90.0, 90.0))]), S.parse_preprocess("tile=3x3"))
    assert len(tiles) == 9
    assert all([a.bbox for a in t.annotations] == [(0, 0, 30, 30)] for t in tiles)


def test_preprocess_steps_run_in_order():
    img = background(200, 200)
    sample = T.Sample(img, [Annotation("a", bbox=(20.0, 20.0, 60.0, 60.0))])
    tiles = T.preprocess(sample, S.parse_preprocess("auto-orient,resize=100x100,tile=2x2,grayscale"))
    assert len(tiles) == 4 and tiles[0].image.shape == (50, 50, 3)
    assert tiles[0].annotations[0].bbox == pytest.approx((10, 10, 30, 30), abs=1e-3)
    assert (tiles[0].image[..., 0] == tiles[0].image[..., 2]).all()
    (plain,) = T.preprocess(sample, S.parse_preprocess("auto-orient"))
    assert plain.image is img and plain.annotations == sample.annotations and plain.suffix == ""


# ---------------------------------------------------------------------------------------------
# Label steps


def test_remap_merge_drop_and_filter_null():
    anns = [Annotation("kitten", bbox=(0, 0, 1, 1)), Annotation("cat"), Annotation("dog"), Annotation("car")]
    steps = S.label_steps(S.parse_preprocess("remap=kitten>cat+puppy>dog,drop=car,resize=10x10,filter-null"))
    assert [s["op"] for s in steps] == ["remap", "drop", "filter-null"]
    out = T.apply_label_steps(anns, steps)
    assert [a.label for a in out] == ["cat", "cat", "dog"]
    assert out[0].bbox == (0, 0, 1, 1)
    assert anns[0].label == "kitten"  # inputs untouched
    assert T.apply_label_steps([Annotation("car")], steps) is None
    assert T.apply_label_steps([], steps) is None
    no_filter = S.label_steps(S.parse_preprocess("drop=car"))
    assert T.apply_label_steps([Annotation("car")], no_filter) == []
    swap = S.label_steps(S.parse_preprocess("remap=a>b+b>a"))
    assert [a.label for a in T.apply_label_steps([Annotation("a"), Annotation("b")], swap)] == ["b", "a"]


def test_classes_after_keeps_order_and_merges():
    steps = S.label_steps(S.parse_preprocess("remap=kitten>cat+lion>cat+truck>vehicle,drop=bird"))
    assert T.classes_after(["dog", "kitten", "bird", "cat", "truck", "lion"], steps) == ["dog", "cat", "vehicle"]
    assert T.classes_after(["a", "b"], []) == ["a", "b"]


def test_pixel_and_label_steps_split_the_recipe():
    steps = S.parse_preprocess("resize=64x64,drop=x,grayscale,filter-null")
    assert [s["op"] for s in S.pixel_steps(steps)] == ["resize", "grayscale"]
    assert [s["op"] for s in S.label_steps(steps)] == ["drop", "filter-null"]


# ---------------------------------------------------------------------------------------------
# Parsing


def test_parse_defaults_and_canonical_form():
    assert S.parse_preprocess(None) == [{"op": "auto-orient"}]
    assert S.parse_preprocess("") == []
    assert S.parse_augment(None) == {"outputs": 0, "ops": []}
    assert S.parse_augment("  ") == {"outputs": 0, "ops": []}
    assert S.parse_augment("rotate=15") == S.parse_augment("rotate=15.0") == S.parse_augment("rotate=-15:15")
    assert S.parse_augment("rotate=15") == {"outputs": 3, "ops": [{"op": "rotate", "range": [-15.0, 15.0]}]}
    assert S.parse_augment("flip=h,blur=2,outputs=5") == S.parse_augment("outputs=5, BLUR=2.0 ,flip=h")
    assert S.parse_augment("noise=0.05,cutout=2,mosaic=0.5,crop=0.1") == {
        "outputs": 3,
        "ops": [
            {"op": "mosaic", "p": 0.5},
            {"op": "crop", "range": [0.0, 0.1]},
            {"op": "noise", "range": [0.0, 0.05]},
            {"op": "cutout", "holes": [2, 2], "size": 0.1},
        ],
    }
    assert S.parse_augment("scale=-0.0:0.2")["ops"][0]["range"] == [0.0, 0.2]
    assert json.dumps(S.parse_augment("scale=-0:0.2")) == json.dumps(S.parse_augment("scale=0:0.2"))
    assert S.parse_preprocess("resize=640x480") == [{"op": "resize", "width": 640, "height": 480, "mode": "stretch"}]
    assert S.parse_preprocess("resize=64x48,auto-orient") == S.parse_preprocess("auto-orient,resize=64x48")
    assert S.parse_preprocess("drop=b+a,remap=y>x+w>x") == [
        {"op": "drop", "classes": ["a", "b"]},
        {"op": "remap", "map": {"w": "x", "y": "x"}},
    ]
    rotate = S.parse_augment("rotate=15")["ops"][0]["range"]
    assert all(type(v) is float for v in rotate)
    assert type(S.parse_augment("outputs=4,flip=v")["outputs"]) is int


@pytest.mark.parametrize(
    ("kind", "spec", "step"),
    [
        ("augment", "rotate=15,wobble=3", "wobble=3"),
        ("augment", "rotate=abc", "rotate=abc"),
        ("augment", "rotate=nan", "rotate=nan"),
        ("augment", "rotate=1_0", "rotate=1_0"),
        ("augment", "rotate=200", "rotate=200"),
        ("augment", "rotate=-5", "rotate=-5"),
        ("augment", "rotate=0:0", "rotate=0:0"),
        ("augment", "rotate=10:5", "rotate=10:5"),
        ("augment", "rotate=10,rotate=10", "rotate=10"),
        ("augment", "outputs=0,flip=h", "outputs=0"),
        ("augment", "outputs=51,flip=h", "outputs=51"),
        ("augment", "outputs=2.5,flip=h", "outputs=2.5"),
        ("augment", "flip=x", "flip=x"),
        ("augment", "flip", "flip"),
        ("augment", "crop=0.95", "crop=0.95"),
        ("augment", "mosaic=1.5", "mosaic=1.5"),
        ("augment", "cutout=0", "cutout=0"),
        ("augment", "rotate=5,,flip=h", ",,"),
        ("preprocess", "resize=640", "resize=640"),
        ("preprocess", "resize=640x480:squash", "resize=640x480:squash"),
        ("preprocess", "resize=0x480", "resize=0x480"),
        ("preprocess", "tile=1x1", "tile=1x1"),
        ("preprocess", "grayscale=yes", "grayscale=yes"),
        ("preprocess", "grayscale,grayscale", "grayscale"),
        ("preprocess", "remap=a", "remap=a"),
        ("preprocess", "remap=a>b+a>c", "remap=a>b+a>c"),
        ("preprocess", "sharpen", "sharpen"),
    ],
)
def test_parse_errors_name_the_step(kind, spec, step):
    parse = S.parse_augment if kind == "augment" else S.parse_preprocess
    with pytest.raises(InvalidInputError) as err:
        parse(spec)
    assert step in str(err.value)


def test_outputs_alone_is_refused():
    with pytest.raises(InvalidInputError, match="no augmentation op"):
        S.parse_augment("outputs=3")


def test_bad_inputs_are_refused():
    sample = rectangle_sample()
    with pytest.raises(InvalidInputError):
        T.augment(sample, S.parse_augment("flip=h"), -1)
    with pytest.raises(InvalidInputError):
        T.augment(T.Sample(sample.image[..., 0], []), S.parse_augment("flip=h"), 0)
    bad = T.Sample(sample.image, [Annotation("m", rle=rle_of(np.ones((5, 5), np.uint8)))])
    with pytest.raises(InvalidInputError, match="mask size"):
        T.augment(bad, S.parse_augment("flip=h"), 0)
