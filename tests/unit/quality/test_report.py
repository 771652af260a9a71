"""The HTML health report: self-contained, escaped, with plots and annotated thumbnails."""

from __future__ import annotations

import re

from tests.quality_helpers import Item, build_view, encode, textured
from winnow.core.types import Annotation
from winnow.quality.engine import run_checks
from winnow.quality.report import render, write_html

EVIL = "<script>alert(1)</script>"


def test_report_escapes_dataset_strings_and_allows_no_scripts(tmp_path):
    same = encode(textured(1))
    items = [
        Item("a.png", same, [Annotation(EVIL, bbox=(2, 2, 30, 30))], split="train"),
        Item("b<img src=x onerror=alert(2)>.png", same, [Annotation(EVIL, bbox=(2, 2, 30, 30))], split="valid"),
        Item("c.png", textured(2), [Annotation("dog", bbox=(60, 40, 200, 70))], split="train"),
    ]
    view = build_view(tmp_path, items)
    report = run_checks(view.store, "p", view=view)
    assert {f.check for f in report.findings} >= {"exact_duplicate", "split_leakage", "box_out_of_bounds"}
    html = render(report, view)
    assert "<script" not in html and "onerror=alert" not in html.replace("onerror=alert(2)&gt;", "")
    assert "&lt;img src=x onerror=alert(2)&gt;" in html
    assert "Content-Security-Policy" in html and "default-src 'none'" in html
    assert not re.search(r"(src|href)=['\"](https?:|//)", html), "no external resources"


def test_report_has_plots_and_a_thumbnail_per_finding_image(tmp_path):
    items = [Item(f"{i}.png", textured(i), [Annotation("cat" if i % 3 else "dog", bbox=(5, 5, 40, 30))], split="train") for i in range(8)]
    items.append(Item("dup.png", encode(textured(0)), [Annotation("dog", bbox=(5, 5, 40, 30))], split="train"))
    view = build_view(tmp_path, items)
    report = run_checks(view.store, "p", view=view)
    path = write_html(report, view, tmp_path / "out" / "report.html")
    html = path.read_text()
    plots = re.findall(r"src='data:image/png;base64,", html)
    thumbs = re.findall(r"src='data:image/jpeg;base64,", html)
    assert len(plots) >= 4  # class balance, box sizes, image sizes, embedding map
    assert len(thumbs) == sum(min(len(f.images), 4) for f in report.findings[:300])
    assert html.count("class='finding ") == len(report.findings)
