import json
import math

import numpy as np
import pytest

from tests.quality_helpers import Item, build_view, textured
from winnow.core.types import Annotation, Source
from winnow.quality.base import ACTIONS, get_check
from winnow.quality.engine import run_checks
from winnow.quality.geometry import box_table

# textured() images are 96 x 72 px.
W, H = 96, 72


def run(view, check_id, **params):
    check = get_check(check_id)
    findings = list(check.run(view, **(dict(check.params) | params)))
    for f in findings:
        assert f.check == check_id
        assert 0.0 <= f.score <= 1.0
        assert f.suggestion is not None and f.suggestion.action in ACTIONS
        assert f.message and f.images
    return findings


def box(label, *xyxy, **kw):
    return Annotation(label, bbox=tuple(float(v) for v in xyxy), **kw)


@pytest.fixture
def clean(tmp_path):
    items = [
        Item("a.png", textured(1), [box("cat", 10, 10, 40, 40), box("dog", 12, 12, 42, 42), box("cat", 50, 20, 80, 60)]),
        Item("b.png", textured(2), [box("dog", 0, 0, 96, 50), box("cat", 5, 5, 15, 15)]),
        Item("c.png", textured(3), []),
    ]
    return build_view(tmp_path, items)


@pytest.mark.parametrize(
    "check_id", ["degenerate_box", "box_out_of_bounds", "tiny_box", "huge_box", "duplicate_box", "invalid_polygon"]
)
def test_clean_project_is_quiet(clean, check_id):
    assert run(clean, check_id) == []


def test_box_table_gathers_every_box_once(clean):
    t = box_table(clean)
    assert t.xyxy.shape == (5, 4) and list(t.image) == [0, 0, 0, 1, 1]
    assert set(t.width) == {W} and set(t.height) == {H}
    assert list(t.label) == ["cat", "dog", "cat", "dog", "cat"]


def test_box_table_reads_boxes_that_are_not_four_numbers_as_nan(clean):
    for rec in clean.records:
        rec.annotations = []
    clean.records[0].annotations = [box("cat", 1, 2, 3, id=i) for i in range(4)]  # 4 x 3 numbers
    t = box_table(clean)
    assert t.xyxy.shape == (4, 4) and np.isnan(t.xyxy).all()
    assert len(run(clean, "degenerate_box")) == 4


def test_degenerate_boxes_added_after_import_are_flagged(clean):
    rec = clean.records[0]
    rec.annotations += [
        box("cat", 5, 5, 5, 20, id=901),
        box("cat", 30, 5, 20, 20, id=902),
        Annotation("dog", bbox=(math.nan, 1.0, 2.0, 3.0), id=903),
        Annotation("dog", bbox=("left", 1, 2, 3), id=904),  # not numbers at all
        Annotation("dog", bbox=(1.0, 2.0, 3.0), id=905),
    ]
    found = {f.annotations[0]: f for f in run(clean, "degenerate_box")}
    assert set(found) == {901, 902, 903, 904, 905}
    assert found[904].evidence["reason"] == found[905].evidence["reason"] == "not_finite"
    assert found[903].evidence["box"][0] is None and found[903].evidence["width"] is None  # JSON-safe
    assert found[901].evidence["reason"] == "zero" and found[901].evidence["width"] == 0
    assert found[902].evidence["reason"] == "negative"
    assert found[903].evidence["reason"] == "not_finite"
    assert all(f.severity == "error" and f.suggestion.action == "delete_annotation" for f in found.values())
    assert found[901].images == ["a.png"]


def test_box_out_of_bounds_reports_how_much_and_the_clipped_box(tmp_path):
    view = build_view(
        tmp_path,
        [
            Item("a.png", textured(1), [box("cat", 80, 10, 120, 40)]),  # 24 px past the right edge
            Item("b.png", textured(2), [box("cat", -0.3, 0, 96.3, 72)]),  # within the 0.5 px tolerance
            Item("c.png", textured(3), [box("cat", 100, 10, 120, 20)]),  # wholly outside
        ],
    )
    found = {f.images[0]: f for f in run(view, "box_out_of_bounds")}
    assert set(found) == {"a.png", "c.png"}
    a = found["a.png"]
    assert a.severity == "warning" and a.suggestion.action == "clip_box"
    assert a.suggestion.params == {"annotations": a.annotations, "box": [80, 10, 96, 40]}
    assert a.evidence["outside_px"] == {"right": 24.0}
    assert a.evidence["outside_fraction"] == pytest.approx(0.6)
    assert a.score == pytest.approx(0.6)
    assert a.annotations and "right edge" in a.message
    c = found["c.png"]
    assert c.severity == "error" and c.suggestion.action == "delete_annotation" and c.score == 1.0
    # The tolerance is a parameter.
    assert {f.images[0] for f in run(view, "box_out_of_bounds", tolerance_px=0.1)} == {"a.png", "b.png", "c.png"}


def test_tiny_box_by_side_and_by_area(tmp_path):
    anns = [box("cat", 10, 10, 11, 11), box("cat", 30, 30, 35, 35), box("dog", 40, 10, 80, 60)]
    view = build_view(tmp_path, [Item("a.png", textured(1), anns)])
    found = run(view, "tiny_box")
    assert len(found) == 1
    f = found[0]
    assert f.severity == "warning" and f.evidence["width"] == 1 and f.suggestion.action == "review"
    # A 5x5 box is 0.36% of a 96x72 image: tiny only when the area floor is raised.
    found = run(view, "tiny_box", min_area_fraction=0.01)
    assert len(found) == 2
    info = next(f for f in found if f.evidence["width"] == 5)
    assert info.severity == "info" and info.evidence["area_fraction"] == pytest.approx(25 / (W * H))


def test_huge_box_covering_the_whole_image(tmp_path):
    view = build_view(tmp_path, [Item("a.png", textured(1), [box("cat", 0, 0, 96, 72), box("dog", 0, 0, 50, 50)])])
    found = run(view, "huge_box")
    assert len(found) == 1 and found[0].evidence["area_fraction"] == 1.0 and found[0].severity == "info"
    assert found[0].score == 1.0


def test_duplicate_box_same_class_only(tmp_path):
    view = build_view(
        tmp_path,
        [
            # IoU of these two cats: 38*40 / (40*40) = 0.95
            Item("a.png", textured(1), [box("cat", 10, 10, 50, 50), box("cat", 10, 10, 48, 50), box("dog", 10, 10, 50, 50)]),
            # same box, different classes: not a duplicate
            Item("b.png", textured(2), [box("cat", 10, 10, 50, 50), box("dog", 10, 10, 50, 50)]),
            # three copies make one finding
            Item("c.png", textured(3), [box("cat", 5, 5, 30, 30)] * 3 + [box("cat", 60, 5, 90, 30)]),
            # heavy overlap below the threshold (IoU 0.8)
            Item("d.png", textured(4), [box("cat", 10, 10, 50, 50), box("cat", 10, 10, 42, 50)]),
        ],
    )
    found = {f.images[0]: f for f in run(view, "duplicate_box")}
    assert set(found) == {"a.png", "c.png"}
    a = found["a.png"]
    assert a.evidence["max_iou"] == pytest.approx(0.95)
    assert len(a.annotations) == 2 and a.suggestion.action == "delete_annotation"
    assert a.suggestion.params["keep"] == min(a.annotations)
    assert a.suggestion.params["annotations"] == [max(a.annotations)]  # what `winnow fix` deletes
    c = found["c.png"]
    assert len(c.annotations) == 3 and len(c.suggestion.params["annotations"]) == 2
    assert {f.images[0] for f in run(view, "duplicate_box", min_iou=0.75)} == {"a.png", "c.png", "d.png"}


def test_duplicate_box_ignores_crowd_boxes(clean):
    rec = clean.records[0]
    rec.annotations = [box("cat", 10, 10, 40, 40, id=5), box("cat", 10, 10, 40, 40, id=7, iscrowd=True)]
    assert run(clean, "duplicate_box") == []


def test_duplicate_box_keeps_the_human_box_over_a_model_box(clean):
    rec = clean.records[0]
    rec.annotations = [
        box("cat", 10, 10, 40, 40, id=5, source=Source.MODEL),
        box("cat", 10, 10, 40, 40, id=7, source=Source.HUMAN),
    ]
    (f,) = run(clean, "duplicate_box")
    assert f.suggestion.params == {"annotations": [5], "keep": 7}


def test_invalid_polygon(tmp_path):
    square = [[10, 10, 30, 10, 30, 30, 10, 30]]
    bowtie = [[10, 10, 30, 30, 30, 10, 10, 30]]
    outside = [[10, 10, 150, 10, 150, 30, 10, 30]]
    view = build_view(
        tmp_path,
        [
            # the second square is 0.5 px past the edges: within the 1 px tolerance
            Item("ok.png", textured(1), [Annotation("cat", polygon=square), Annotation("cat", polygon=[[0, 0, 96.5, 0, 96.5, 72, 0, 72]])]),
            Item("bow.png", textured(2), [Annotation("cat", polygon=bowtie)]),
            Item("out.png", textured(3), [Annotation("cat", polygon=outside)]),
        ],
        task="segment",
    )
    # Shapes only an edit could store: under 3 points, collinear (no area).
    view.records[0].annotations.append(Annotation("dog", polygon=[[1, 1, 5, 5]], id=801))
    view.records[0].annotations.append(Annotation("dog", polygon=[[1, 1, 5, 5, 9, 9]], id=802))
    view.records[0].annotations.append(Annotation("dog", polygon=[[1, 1, 5, 5], [10, 10, 30, 10, 30, 30]], id=803))
    found = run(view, "invalid_polygon")
    by_problem = {tuple(f.evidence["problems"]): f for f in found}
    assert set(by_problem) == {("self_intersecting",), ("outside_image",), ("too_few_points",), ("zero_area",)}
    bow = by_problem[("self_intersecting",)]
    assert bow.images == ["bow.png"] and bow.severity == "warning" and bow.suggestion.action == "review"
    out = by_problem[("outside_image",)]
    assert out.images == ["out.png"] and out.evidence["bad_parts"][0]["max_outside_px"] == 54
    few = [f for f in found if f.evidence["problems"] == ["too_few_points"]]
    assert {f.annotations[0] for f in few} == {801, 803}
    whole = next(f for f in few if f.annotations == [801])
    part = next(f for f in few if f.annotations == [803])
    assert whole.severity == "error" and whole.suggestion.action == "delete_annotation"
    assert part.suggestion.action == "review"  # one good part remains
    assert by_problem[("zero_area",)].annotations == [802]
    # The polygon's own box is not also reported as out of bounds.
    assert run(view, "box_out_of_bounds") == []


def test_geometry_checks_run_through_the_engine(clean):
    clean.records[1].annotations.append(box("cat", 5, 5, 5, 5, id=999))
    report = run_checks(clean.store, "p", view=clean, only=["degenerate_box", "tiny_box", "huge_box", "duplicate_box"])
    assert [f.check for f in report.findings] == ["degenerate_box"]
    assert report.findings[0].impact > 0
    clean.records[1].annotations.append(Annotation("cat", bbox=(math.inf, 1.0, 2.0, 3.0), id=998))
    report = run_checks(clean.store, "p", view=clean, only=["degenerate_box"])
    json.dumps(report.as_dict(), allow_nan=False)  # the --json document stays valid JSON


def test_geometry_checks_skip_classification(tmp_path):
    view = build_view(tmp_path, [Item("a.png", textured(1), [Annotation("cat")])], task="classify")
    report = run_checks(view.store, "p", view=view, only=["box_out_of_bounds", "invalid_polygon"])
    assert report.checks == [] and report.findings == []


def test_winnow_fix_keeps_one_of_a_duplicate_pair_and_clips_out_of_bounds_boxes(tmp_path):
    from winnow.services.datasets import load_dataset
    from winnow.services.fixes import apply_fixes

    view = build_view(
        tmp_path,
        [
            Item("a.png", textured(1), [box("cat", 10, 10, 50, 50), box("cat", 10, 10, 48, 50)]),
            Item("b.png", textured(2), [box("cat", 80, 10, 120, 40)]),
        ],
    )
    report = apply_fixes(view.store, "p", checks=["duplicate_box", "box_out_of_bounds"])
    assert report.findings_applied == 2
    boxes = {r.name: [a.bbox for a in r.annotations] for r in load_dataset(view.store, "p").images}
    assert boxes == {"a.png": [(10, 10, 50, 50)], "b.png": [(80, 10, 96, 40)]}
