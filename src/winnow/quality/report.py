"""The self-contained HTML health report: summary, plots and every finding with thumbnails.

One file, no external resources: plots are PNGs and thumbnails JPEGs inlined as ``data:`` URIs,
and a strict Content-Security-Policy forbids scripts. Every string from the dataset (names,
labels, messages) is HTML-escaped, so a label called ``<script>`` is shown, never run.
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from winnow import media
from winnow.core.types import ImageRecord
from winnow.quality.engine import CheckReport
from winnow.quality.view import ProjectView

MAX_FINDINGS = 300
THUMBS_PER_FINDING = 4
THUMB_SIDE = 180
_PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]

_CSS = """
body{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:1200px}
h1{margin-bottom:0} .sub{color:#666;margin-top:4px}
.cards{display:flex;gap:12px;flex-wrap:wrap;margin:16px 0}
.card{border:1px solid #ddd;border-radius:8px;padding:10px 14px;min-width:110px}
.card b{display:block;font-size:22px}
.plots{display:grid;grid-template-columns:repeat(auto-fill,minmax(360px,1fr));gap:12px}
.plots img{width:100%;border:1px solid #eee}
table{border-collapse:collapse} td,th{padding:4px 8px;border-bottom:1px solid #eee;text-align:left}
.finding{border:1px solid #ddd;border-left:6px solid #999;border-radius:6px;padding:10px;margin:10px 0}
.finding.error{border-left-color:#d62728}.finding.warning{border-left-color:#ff9f1a}.finding.info{border-left-color:#1f77b4}
.finding .meta{color:#666;font-size:13px} .thumbs{display:flex;gap:8px;flex-wrap:wrap;margin-top:8px}
.thumbs figure{margin:0;font-size:11px;color:#555;max-width:180px;word-break:break-all}
code{background:#f5f5f5;padding:1px 4px;border-radius:3px}
"""


def _data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _figure_png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return _data_uri(buf.getvalue(), "image/png")


def _plots(view: ProjectView) -> list[tuple[str, str]]:
    """``[(title, data URI)]`` for the dataset plots."""
    os.environ.setdefault("MPLBACKEND", "Agg")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out: list[tuple[str, str]] = []
    records = view.records
    classes = view.classes
    splits = sorted({r.split or "unassigned" for r in records})

    # class balance per split
    counts = {s: Counter() for s in splits}
    for r in records:
        for a in r.annotations:
            counts[r.split or "unassigned"][a.label] += 1
    if classes:
        fig, ax = plt.subplots(figsize=(6, 3.2))
        x = np.arange(len(classes))
        width = 0.8 / max(len(splits), 1)
        for i, s in enumerate(splits):
            ax.bar(x + i * width, [counts[s][c] for c in classes], width, label=s, color=_PALETTE[i % len(_PALETTE)])
        ax.set_xticks(x + width * (len(splits) - 1) / 2, [c[:18] for c in classes], rotation=30, ha="right")
        ax.set_ylabel("annotations")
        ax.legend(fontsize=8)
        ax.set_title("Class balance by split")
        out.append(("Class balance by split", _figure_png(fig)))

    boxes = [(a.bbox, r.width, r.height) for r in records for a in r.annotations if a.bbox is not None]
    if boxes:
        b = np.array([bb for bb, _, _ in boxes], dtype=np.float64)
        wh = np.array([(w, h) for _, w, h in boxes], dtype=np.float64)
        bw, bh = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
        rel = np.sqrt(np.clip(bw * bh, 0, None) / (wh[:, 0] * wh[:, 1]))
        fig, axes = plt.subplots(1, 2, figsize=(7, 3))
        axes[0].hist(rel, bins=30, color=_PALETTE[0])
        axes[0].set_xlabel("sqrt(box area / image area)")
        axes[0].set_title("Box sizes")
        with np.errstate(divide="ignore", invalid="ignore"):
            aspect = np.log2(np.where(bh > 0, bw / bh, np.nan))
        axes[1].hist(aspect[np.isfinite(aspect)], bins=30, color=_PALETTE[1])
        axes[1].set_xlabel("log2(width / height)")
        axes[1].set_title("Box aspect ratios")
        out.append(("Box sizes and aspect ratios", _figure_png(fig)))

    if records:
        fig, ax = plt.subplots(figsize=(4.5, 3.2))
        ax.scatter([r.width for r in records], [r.height for r in records], s=8, alpha=0.5, color=_PALETTE[2])
        ax.set_xlabel("width (px)")
        ax.set_ylabel("height (px)")
        ax.set_title("Image sizes")
        out.append(("Image sizes", _figure_png(fig)))

    emb = view.embeddings
    if len(emb) >= 3:
        centred = emb - emb.mean(axis=0)
        _, _, vt = np.linalg.svd(centred, full_matrices=False)
        xy = centred @ vt[:2].T
        fig, ax = plt.subplots(figsize=(4.5, 3.6))
        key = [
            (r.annotations[0].label if r.annotations else "(none)") if view.task.value == "classify" else (r.split or "unassigned")
            for r in records
        ]
        for i, k in enumerate(sorted(set(key))):
            sel = np.array([kk == k for kk in key])
            ax.scatter(xy[sel, 0], xy[sel, 1], s=8, alpha=0.6, label=k[:18], color=_PALETTE[i % len(_PALETTE)])
        ax.legend(fontsize=7, markerscale=2)
        ax.set_title("Embedding map (PCA)")
        ax.set_xticks([])
        ax.set_yticks([])
        out.append(("Embedding map", _figure_png(fig)))
    return out


def thumbnail(view: ProjectView, record: ImageRecord, highlight: set[int] | None = None, side: int = THUMB_SIDE) -> str | None:
    """A JPEG data URI of ``record`` with its boxes drawn (``highlight`` ids in red, thicker)."""
    highlight = highlight or set()
    try:
        im = media.decode(view.store.blobs.read(record.sha256), record.name)
    except (OSError, media.InvalidImageError):
        return None
    scale = side / max(im.size)
    if scale < 1:
        im = im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))), Image.Resampling.BILINEAR)
    else:
        scale = 1.0
    draw = ImageDraw.Draw(im)
    for ann in record.annotations:
        if ann.bbox is None or not all(np.isfinite(ann.bbox)):
            continue
        hot = ann.id in highlight
        box = [v * scale for v in ann.bbox]
        draw.rectangle(box, outline=(230, 30, 30) if hot else (40, 220, 90), width=3 if hot else 1)
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=80)
    return _data_uri(buf.getvalue(), "image/jpeg")


def render(report: CheckReport, view: ProjectView) -> str:
    """The report as an HTML string."""
    e = html.escape
    s = report.summary
    by_name = {r.name: r for r in view.records}
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        "<meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; img-src data:; style-src 'unsafe-inline'\">",
        f"<title>winnow health report: {e(s['project'])}</title><style>{_CSS}</style></head><body>",
        f"<h1>Health report: {e(s['project'])}</h1>",
        f"<p class='sub'>{s['images']} images, {s['annotations']} annotations, {len(s['checks_run'])} checks, {s['seconds']:.1f} s</p>",
        "<div class='cards'>",
        f"<div class='card'><b>{s['findings']}</b>findings</div>",
        f"<div class='card'><b>{s['by_severity']['error']}</b>errors</div>",
        f"<div class='card'><b>{s['by_severity']['warning']}</b>warnings</div>",
        f"<div class='card'><b>{s['by_severity']['info']}</b>info</div>",
        f"<div class='card'><b>{s['images_with_findings']}</b>images with findings</div>",
        "</div>",
        "<h2>Findings by check</h2><table><tr><th>check</th><th>findings</th><th>seconds</th></tr>",
    ]
    for cid in s["checks_run"]:
        parts.append(f"<tr><td><code>{e(cid)}</code></td><td>{s['by_check'].get(cid, 0)}</td><td>{s['timings'].get(cid, 0):.3f}</td></tr>")
    parts.append("</table>")
    if s["notes"]:
        parts.append("<ul>" + "".join(f"<li><code>{e(n['check'])}</code>: {e(n['message'])}</li>" for n in s["notes"]) + "</ul>")
    parts.append("<h2>Dataset</h2><div class='plots'>")
    for title, uri in _plots(view):
        parts.append(f"<figure><img alt='{e(title)}' src='{uri}'></figure>")
    parts.append("</div>")
    parts.append(f"<h2>Findings, worst first</h2><p class='sub'>showing {min(len(report.findings), MAX_FINDINGS)} of {len(report.findings)}</p>")
    for i, f in enumerate(report.findings[:MAX_FINDINGS], 1):
        parts.append(f"<div class='finding {e(f.severity)}'>")
        parts.append(f"<div><b>{i}. {e(f.message)}</b></div>")
        parts.append(
            f"<div class='meta'><code>{e(f.check)}</code> · {e(f.severity)} · score {f.score:.2f} · impact {f.impact:.2f}"
            f" · {len(f.images)} image(s)</div>"
        )
        if f.suggestion is not None:
            parts.append(f"<div>Suggestion: <b>{e(f.suggestion.action)}</b> — {e(f.suggestion.text)}</div>")
        if f.evidence:
            parts.append(f"<div class='meta'>evidence: <code>{e(json.dumps(f.evidence, default=str)[:600])}</code></div>")
        parts.append("<div class='thumbs'>")
        for name in f.images[:THUMBS_PER_FINDING]:
            rec = by_name.get(name)
            uri = thumbnail(view, rec, set(f.annotations)) if rec is not None else None
            img = f"<img alt='{e(name)}' src='{uri}'>" if uri else "<i>(no preview)</i>"
            parts.append(f"<figure>{img}<figcaption>{e(name)}</figcaption></figure>")
        if len(f.images) > THUMBS_PER_FINDING:
            parts.append(f"<span class='meta'>+{len(f.images) - THUMBS_PER_FINDING} more</span>")
        parts.append("</div></div>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_html(report: CheckReport, view: ProjectView, path: Path) -> Path:
    """Write the report atomically to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(render(report, view), encoding="utf-8")
    os.replace(tmp, path)
    return path


def findings_by_image(report: CheckReport) -> dict[str, list[str]]:
    """``{image name: [check ids]}`` - for filters in the UI."""
    out: dict[str, list[str]] = defaultdict(list)
    for f in report.findings:
        for name in f.images:
            out[name].append(f.check)
    return dict(out)
