"""The demo (`make demo`) runs end to end and its health check finds exactly what it planted."""

from winnow.services.demo import run_demo
from winnow.store.db import Store


def test_demo_finds_every_planted_defect_and_fixes_the_safe_ones(tmp_path):
    with Store.open(tmp_path / "home") as store:
        summary = run_demo(store, tmp_path / "out", n_images=60)
    by_check = summary["health"]["by_check"]
    for check in ("exact_duplicate", "near_duplicate", "split_leakage", "dark", "box_out_of_bounds"):
        assert by_check[check] >= 1, check
    assert summary["health"]["findings"] == sum(by_check.values())
    assert summary["roundtrip"]["max_box_error_px"] < 1e-6
    assert summary["fix"]["images_removed"] and len(summary["fix"]["boxes_clipped"]) == 1
    assert (tmp_path / "out" / "health.html").stat().st_size > 10_000
    assert set(summary["exports"]) == {"coco", "createml", "csv", "labelme", "voc", "yolo"}
    version = summary["version"]
    assert version["splitting"]["moved"] == ["images/resized_second.png"], "the planted leak is repaired in the version"
    train = version["counts"]["splits"]["train"]["images"]
    assert version["export"]["splits"]["train"] == 3 * train, "each train image plus 2 augmented copies"
