"""``winnow eval``: the --json contract, the table, and errors without tracebacks."""

from __future__ import annotations

import json

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from tests.unit.evaluate.cocogen import pycocotools_stats, random_case
from winnow.cli.evaluate import eval_cmd

app = typer.Typer()
app.command("eval")(eval_cmd)
runner = CliRunner()

NAMED = ("map", "map50", "map75", "map_small", "map_medium", "map_large", "mar_1", "mar_10", "mar_100", "mar_small", "mar_medium", "mar_large")


@pytest.fixture
def files(tmp_path):
    gt, preds = random_case(21, n_images=15)
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "pred.json").write_text(json.dumps(preds))
    return tmp_path / "gt.json", tmp_path / "pred.json", gt, preds


def test_json_output_is_the_contract(files):
    gt_path, pred_path, gt, preds = files
    result = runner.invoke(app, ["--gt", str(gt_path), "--predictions", str(pred_path), "--json"])
    assert result.exit_code == 0, result.output
    d = json.loads(result.stdout)
    np.testing.assert_allclose(d["stats"], pycocotools_stats(gt, preds), atol=1e-4)
    assert [d[k] for k in NAMED] == d["stats"]
    assert set(d["per_class"]) == {c["name"] for c in gt["categories"]}
    assert all(set(v) == {"ap", "ap50", "precision", "recall", "gt", "predictions"} for v in d["per_class"].values())
    assert all(len(c["recall"]) == len(c["precision"]) == 101 for c in d["pr_curves"].values())
    assert d["confusion_matrix"]["classes"][-1] == "background"
    assert len(d["confusion_matrix"]["matrix"]) == len(gt["categories"]) + 1
    assert d["score_threshold"] == 0.25 and d["slices"] is None
    assert {"false_positives", "false_negatives", "confusions", "low_iou"} <= set(d["errors"])


def test_table_output_and_slices(files):
    gt_path, pred_path, *_ = files
    result = runner.invoke(app, ["--gt", str(gt_path), "--predictions", str(pred_path), "--slices", "--score-threshold", "0.5"])
    assert result.exit_code == 0, result.output
    assert "map50" in result.stdout and "per class" in result.stdout and "class_1" in result.stdout
    assert "score >= 0.5" in result.stdout
    d = json.loads(runner.invoke(app, ["--gt", str(gt_path), "--predictions", str(pred_path), "--slices", "--json"]).stdout)
    assert d["slices"]["metric"] == "map50" and any(s["name"] == "size:small" for s in d["slices"]["slices"])


def test_segm_flag(tmp_path):
    gt, preds = random_case(5, iou_type="segm", n_images=5)
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "pred.json").write_text(json.dumps(preds))
    result = runner.invoke(app, ["--gt", str(tmp_path / "gt.json"), "--predictions", str(tmp_path / "pred.json"), "--iou-type", "segm", "--json"])
    assert result.exit_code == 0, result.output
    d = json.loads(result.stdout)
    assert d["iou_type"] == "segm"
    np.testing.assert_allclose(d["stats"], pycocotools_stats(gt, preds, "segm"), atol=1e-4)


@pytest.mark.parametrize(
    "case, message",
    [
        ("malformed", "not valid JSON"),
        ("unknown_image", "image_id that is not one of"),
        ("nan_box", "finite numbers"),
        ("missing", "no such file"),
        ("bad_iou", "iou_type must be one of"),
    ],
)
def test_errors_are_one_line_without_traceback(files, tmp_path, case, message):
    gt_path, pred_path, _, preds = files
    args = ["--gt", str(gt_path), "--predictions", str(pred_path)]
    if case == "malformed":
        pred_path.write_text(json.dumps(preds)[:-10])
    elif case == "unknown_image":
        pred_path.write_text(json.dumps(preds + [dict(preds[0], image_id=12345)]))
    elif case == "nan_box":
        pred_path.write_text(json.dumps([dict(preds[0], bbox=[float("nan"), 0, 1, 1])]))
    elif case == "missing":
        args = ["--gt", str(tmp_path / "nope.json"), "--predictions", str(pred_path)]
    elif case == "bad_iou":
        args += ["--iou-type", "keypoints"]
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 1
    assert result.exception is None or isinstance(result.exception, SystemExit)
    d = json.loads(result.stdout)
    assert message in d["error"] and "Traceback" not in result.output
    assert "error:" in result.stderr


def test_empty_predictions_give_zeros(files):
    gt_path, pred_path, *_ = files
    pred_path.write_text("[]")
    result = runner.invoke(app, ["--gt", str(gt_path), "--predictions", str(pred_path), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["map"] == 0.0


def test_an_unknown_model_or_a_missing_target_is_a_clear_error(files, tmp_path):
    result = runner.invoke(app, ["yolo-v1", "shop@v2", "--json"], env={"WINNOW_HOME": str(tmp_path / "home")})
    assert result.exit_code == 1 and "project 'shop' does not exist" in json.loads(result.stdout)["error"]
    result = runner.invoke(app, ["yolo-v1", "--json"])
    assert result.exit_code == 1 and "PROJECT@VERSION" in json.loads(result.stdout)["error"]
    result = runner.invoke(app, ["--json"])
    assert result.exit_code == 1 and "--gt" in json.loads(result.stdout)["error"]


def test_html_report_previews_the_errors_on_images_beside_the_ground_truth(tmp_path):
    from PIL import Image

    gt = {
        "images": [
            {"id": 1, "file_name": "a.jpg", "width": 100, "height": 80},
            {"id": 2, "file_name": "../outside.jpg", "width": 100, "height": 80},
        ],
        "categories": [{"id": 1, "name": "cat"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 30, 30], "area": 900, "iscrowd": 0},
            {"id": 2, "image_id": 2, "category_id": 1, "bbox": [10, 10, 30, 30], "area": 900, "iscrowd": 0},
        ],
    }
    Image.new("RGB", (100, 80), (90, 90, 90)).save(tmp_path / "a.jpg")
    Image.new("RGB", (100, 80), (90, 90, 90)).save(tmp_path.parent / "outside.jpg")  # must not be read
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "pred.json").write_text(json.dumps([{"image_id": 1, "category_id": 1, "bbox": [60, 40, 20, 20], "score": 0.9}]))
    page = tmp_path / "report.html"
    result = runner.invoke(app, ["--gt", str(tmp_path / "gt.json"), "--predictions", str(tmp_path / "pred.json"), "--html", str(page)])
    assert result.exit_code == 0, result.output
    text = page.read_text()
    assert "<script" not in text
    # a.jpg: one missed object and one false positive, both previewed; ../outside.jpg: its miss has no preview
    assert text.count("data:image/jpeg") == 2 and text.count("(no preview)") == 1
