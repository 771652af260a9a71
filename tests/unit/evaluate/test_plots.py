"""Plots are real PNGs of a sensible size, drawn from the JSON form of the reports."""

from __future__ import annotations

import io
import json

from PIL import Image

from tests.unit.evaluate.cocogen import random_case
from winnow.evaluate.plots import confusion_matrix_png, pr_curves_png, slices_png
from winnow.services.evaluation import evaluate_files


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(io.BytesIO(data)) as im:
        return im.size


def test_plots_from_a_report_read_back_from_json(tmp_path):
    gt, preds = random_case(11, n_images=12)
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "p.json").write_text(json.dumps(preds))
    d = json.loads(json.dumps(evaluate_files(tmp_path / "gt.json", tmp_path / "p.json", slices=True).as_dict()))
    w, h = _png_size(pr_curves_png(d["pr_curves"], d["per_class"]))
    assert w > 300 and h > 200
    w, h = _png_size(confusion_matrix_png(d["confusion_matrix"]))
    assert w > 200 and h > 200
    w, h = _png_size(slices_png(d["slices"]))
    assert w > 300 and h > 150


def test_plots_of_empty_inputs_do_not_fail():
    _png_size(pr_curves_png({}))
    _png_size(confusion_matrix_png({"classes": ["background"], "matrix": [[0]]}))
    _png_size(slices_png({"metric": "map50", "overall": None, "slices": []}))
