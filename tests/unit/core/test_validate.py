import math

from winnow.core.types import Annotation, ImageRecord
from winnow.core.validate import validate_image


def _rec(*anns):
    return ImageRecord(name="a.png", annotations=list(anns))


def test_valid_boxes_are_kept_unchanged():
    v = validate_image(_rec(Annotation("cat", bbox=(1, 2, 30, 40))), 100, 50)
    assert [a.bbox for a in v.kept] == [(1.0, 2.0, 30.0, 40.0)]
    assert not v.rejected and not v.warnings


def test_nan_inf_null_and_empty_boxes_are_rejected_with_reasons():
    v = validate_image(
        _rec(
            Annotation("a", bbox=(math.nan, 0, 1, 1), external_id=7),
            Annotation("b", bbox=(0, 0, math.inf, 1)),
            Annotation("c", bbox=(None, 0, 1, 1)),
            Annotation("d", bbox=(5, 5, 5, 9)),
            Annotation("e", bbox=(5, 5, 2, 9)),
            Annotation("f", bbox=(0, 0, 1)),
            Annotation("ok", bbox=(0, 0, 1, 1)),
        ),
        10,
        10,
    )
    assert [a.label for a in v.kept] == ["ok"]
    assert [i for i, _ in v.rejected] == [0, 1, 2, 3, 4, 5]
    assert "id 7" in v.rejected[0][1]


def test_out_of_bounds_flagged_by_default_and_clipped_on_request():
    ann = Annotation("a", bbox=(-5, 2, 12, 8))
    v = validate_image(_rec(ann), 10, 10)
    assert v.kept[0].bbox == (-5, 2, 12, 8) and len(v.warnings) == 1
    v = validate_image(_rec(Annotation("a", bbox=(-5, 2, 12, 8)), Annotation("b", bbox=(20, 20, 30, 30))), 10, 10, clip=True)
    assert [a.bbox for a in v.kept] == [(0, 2, 10, 8)]
    assert v.clipped == 1 and "wholly outside" in v.rejected[0][1]


def test_polygons_need_three_points_and_get_a_box():
    v = validate_image(
        _rec(
            Annotation("a", polygon=[[0, 0, 5, 0]]),
            Annotation("b", polygon=[[0, 0, 5, 0, 5]]),
            Annotation("c", polygon=[[0, 0, 4, 4, 4, 0, 0, 4]]),
            Annotation("d", polygon=[[1, 1, 5, 1, 5, 6]]),
        ),
        10,
        10,
    )
    assert [a.label for a in v.kept] == ["c", "d"]
    assert v.kept[1].bbox == (1, 1, 5, 6)
    assert "crosses itself" in v.warnings[0][1]


def test_rle_size_must_match_image():
    good = {"size": [10, 20], "counts": "abc"}
    bad = {"size": [20, 10], "counts": "abc"}
    v = validate_image(_rec(Annotation("a", rle=good, bbox=(0, 0, 1, 1)), Annotation("b", rle=bad, bbox=(0, 0, 1, 1))), 20, 10)
    assert [a.label for a in v.kept] == ["a"]
    assert "differs from the image size" in v.rejected[0][1]


def test_labels_must_be_present_and_bounded():
    v = validate_image(_rec(Annotation(""), Annotation("x" * 501), Annotation("<script>alert(1)</script>")), 10, 10)
    assert [a.label for a in v.kept] == ["<script>alert(1)</script>"]  # kept verbatim, escaped at display
    assert len(v.rejected) == 2


def test_bad_scores_dropped_with_warning():
    v = validate_image(_rec(Annotation("a", bbox=(0, 0, 1, 1), score=1.5)), 10, 10)
    assert v.kept[0].score is None and "score" in v.warnings[0][1]


def test_already_valid_agrees_with_validate_image():
    from winnow.core.validate import already_valid

    recs = [
        _rec(Annotation("cat", bbox=(1.0, 2.0, 30.0, 40.0))),  # plain and inside
        _rec(Annotation("cat", bbox=(1.0, 2.0, 300.0, 40.0))),  # outside: needs a warning
        _rec(Annotation("cat", bbox=(1, 2, 30, 40))),  # ints: not plain, validate_image decides
        _rec(Annotation(" ", bbox=(1.0, 2.0, 30.0, 40.0))),  # blank label
        _rec(Annotation("cat", bbox=(1.0, 2.0, 30.0, 40.0), score=0.5)),
        _rec(),
    ]
    flags = already_valid(recs, [(100, 50)] * len(recs))
    assert flags == [True, False, False, False, False, True]
    for rec, flag in zip(recs, flags, strict=True):
        if flag:
            v = validate_image(rec, 100, 50)
            assert not v.rejected and not v.warnings and len(v.kept) == len(rec.annotations)
