"""The self-contained HTML evaluation report: headline numbers, per-class AP, PR curves, the
confusion matrix, metrics by slice (with bootstrap intervals) and the errors to look at, with
thumbnails that draw the prediction (red) and the ground truth (green) on the image.

One file, no external resources and no scripts (the same Content-Security-Policy as the health
report); every string from the data is HTML-escaped.
"""

from __future__ import annotations

import base64
import html
import io
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from winnow.evaluate.plots import confusion_matrix_png, pr_curves_png, slices_png

#: Errors shown per list, each with a thumbnail when its image is at hand.
ERRORS_SHOWN = 12
THUMB_SIDE = 200

REPORT_CSS = """
body{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:1200px}
.cards{display:flex;gap:12px;flex-wrap:wrap;margin:16px 0}
.card{border:1px solid #ddd;border-radius:8px;padding:10px 14px;min-width:110px}.card b{display:block;font-size:22px}
.plots{display:grid;grid-template-columns:repeat(auto-fill,minmax(380px,1fr));gap:12px}.plots figure{margin:0}.plots img{width:100%;border:1px solid #eee}
table{border-collapse:collapse}td,th{padding:4px 8px;border-bottom:1px solid #eee;text-align:left}
.thumbs{display:flex;gap:8px;flex-wrap:wrap}.thumbs figure{margin:0;font-size:11px;color:#555;max-width:200px;word-break:break-all}
.sig{color:#d62728;font-weight:bold}
"""


def data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def boxes_thumbnail(
    path: Path, predicted: Sequence[Sequence[float]], truth: Sequence[Sequence[float]], *, side: int = THUMB_SIDE
) -> str | None:
    """A JPEG data URI of the image at ``path``, at most ``side`` pixels, with ``truth`` boxes in
    green and ``predicted`` ones in red (``xyxy`` absolute pixels); ``None`` if unreadable."""
    from PIL import ImageDraw

    from winnow import media

    try:
        im = media.decode(Path(path).read_bytes(), str(path), "RGB")
    except Exception:  # a missing or unreadable image only loses its preview
        return None
    scale = side / max(im.size)
    im = im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))))
    draw = ImageDraw.Draw(im)
    for boxes, colour in ((truth, "#2ca02c"), (predicted, "#d62728")):
        for box in boxes:
            x1, y1, x2, y2 = (float(v) * scale for v in box)
            draw.rectangle([x1, y1, x2, y2], outline=colour, width=2)
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=85)
    return data_uri(buf.getvalue(), "image/jpeg")


def _xyxy(box: Sequence[float] | None) -> list[list[float]]:
    """A COCO ``xywh`` box (or none) as a list of ``xyxy`` boxes."""
    if not box:
        return []
    x, y, w, h = box
    return [[x, y, x + w, y + h]]


def render(doc: Mapping[str, Any], *, title: str = "Evaluation", images: Mapping[str, Path] | None = None) -> str:
    """The detection report ``doc`` (``DetectionReport.as_dict()``) as HTML; ``images`` maps image
    names to files for the error thumbnails."""
    e = html.escape
    images = images or {}
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        "<meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; img-src data:; style-src 'unsafe-inline'\">",
        f"<title>{e(title)}</title><style>{REPORT_CSS}</style></head><body><h1>{e(title)}</h1>",
        "<div class='cards'>",
    ]
    for key in ("map", "map50", "map75", "mar_100"):
        value = doc.get(key)
        parts.append(f"<div class='card'><b>{'-' if value is None else f'{value:.3f}'}</b>{e(key)}</div>")
    counts = doc.get("counts", {})
    parts.append(f"<div class='card'><b>{counts.get('images', 0)}</b>images</div>")
    parts.append(f"<div class='card'><b>{counts.get('predictions', 0)}</b>predictions</div></div>")

    parts.append("<h2>Per class</h2><table><tr><th>class</th><th>AP</th><th>AP50</th><th>precision</th><th>recall</th><th>ground truth</th></tr>")
    for name, c in doc.get("per_class", {}).items():
        cells = [c.get(k) for k in ("ap", "ap50", "precision", "recall")]
        parts.append(
            f"<tr><td>{e(name)}</td>" + "".join(f"<td>{'-' if v is None else f'{v:.3f}'}</td>" for v in cells)
            + f"<td>{c.get('gt', 0)}</td></tr>"
        )
    parts.append("</table><h2>Plots</h2><div class='plots'>")
    plots = [("precision-recall", pr_curves_png(doc["pr_curves"], doc.get("per_class")))] if doc.get("pr_curves") else []
    if doc.get("confusion_matrix"):
        plots.append(("confusion matrix", confusion_matrix_png(doc["confusion_matrix"])))
    slices = doc.get("slices")
    if slices and slices.get("slices"):
        plots.append(("metrics by slice", slices_png(slices)))
    for name, png in plots:
        parts.append(f"<figure><img alt='{e(name)}' src='{data_uri(png, 'image/png')}'></figure>")
    parts.append("</div>")

    if slices and slices.get("worst_slices"):
        parts.append(f"<h2>Worst slices ({e(str(slices.get('metric')))}, overall {slices['overall']:.3f})</h2>")
        parts.append("<table><tr><th>slice</th><th>images</th><th>score</th><th>95% interval</th><th>gap</th></tr>")
        for s in slices["worst_slices"]:
            mark = " class='sig'" if s.get("significant") else ""
            name = str(s["name"])
            label = name if name.startswith(f"{s['kind']}:") else f"{s['kind']}: {name}"
            parts.append(
                f"<tr><td{mark}>{e(label)}</td><td>{s['images']}</td><td>{s['score']:.3f}</td>"
                f"<td>{s['ci_low']:.3f} - {s['ci_high']:.3f}</td><td>{s['gap']:.3f}</td></tr>"
            )
        parts.append("</table>")

    errors = doc.get("errors") or {}
    for key, label in (("false_negatives", "Missed objects"), ("false_positives", "False positives"),
                       ("confusions", "Confusions"), ("low_iou", "Poorly localised")):
        rows = errors.get(key) or []
        if not rows:
            continue
        parts.append(f"<h2>{label} ({errors.get('counts', {}).get(key, len(rows))})</h2><div class='thumbs'>")
        for row in rows[:ERRORS_SHOWN]:
            predicted = None if key == "false_negatives" else row.get("bbox")
            truth = row.get("bbox") if key == "false_negatives" else row.get("gt_bbox")
            path = images.get(row["image"])
            uri = boxes_thumbnail(path, _xyxy(predicted), _xyxy(truth)) if path is not None else None
            what = row.get("class") or f"{row.get('actual')} as {row.get('predicted')}"
            score = f" {row['score']:.2f}" if "score" in row else ""
            img = f"<img alt='{e(row['image'])}' src='{uri}'>" if uri else "<i>(no preview)</i>"
            parts.append(f"<figure>{img}<figcaption>{e(row['image'])}: {e(str(what))}{score}</figcaption></figure>")
        parts.append("</div>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_html(doc: Mapping[str, Any], path: Path, *, title: str = "Evaluation", images: Mapping[str, Path] | None = None) -> Path:
    """Write the report atomically to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(render(doc, title=title, images=images), encoding="utf-8")
    os.replace(tmp, path)
    return path
