"""The demo's self-contained HTML report: findings, versions, the rounds' metrics by slice, the
before/after plot and table, and a few of the images active learning picked (the model's boxes in
red, the labelers' in green).

One file, no external resources and no scripts (the Content-Security-Policy of the other
reports); every string from the data is HTML-escaped. Plots are PNGs from matplotlib's Agg canvas,
embedded as ``data:`` URIs.
"""

from __future__ import annotations

import html
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from winnow.evaluate.plots import _figure, _png
from winnow.evaluate.report import REPORT_CSS, boxes_thumbnail, data_uri

THUMB_SIDE = 200


def before_after_png(rows: Sequence[Mapping[str, Any]]) -> bytes:
    """Grouped horizontal bars: each row's ``before`` and ``after`` score (``before_after`` rows)."""
    rows = [r for r in rows if r.get("before") is not None and r.get("after") is not None]
    fig = _figure(7, max(2.5, 0.45 * len(rows) + 1.2))
    ax = fig.add_subplot(1, 1, 1)
    y = np.arange(len(rows))
    if rows:
        before = np.array([r["before"] for r in rows], dtype=np.float64)
        after = np.array([r["after"] for r in rows], dtype=np.float64)
        ax.barh(y - 0.2, before, height=0.38, color="#9ecae1", label="round 1")
        ax.barh(y + 0.2, after, height=0.38, color="#2171b5", label="round 2")
        ax.set_yticks(y)
        ax.set_yticklabels([f"{r['slice']} (n={r['images']})" for r in rows], fontsize=8)
        ax.invert_yaxis()
        ax.legend(fontsize=8, loc="center right")
    ax.set_xlim(0, 1.3)  # room on the right for the legend
    ax.set_xticks(np.linspace(0, 1, 6))
    ax.set_xlabel("mAP50 on the fixed test split")
    ax.set_title("Before and after the loop, by slice")
    return _png(fig)


def _num(value: Any, fmt: str = ".3f") -> str:
    return "-" if value is None else format(value, fmt)


def render(doc: Mapping[str, Any], *, thumbnails: Sequence[Mapping[str, Any]] = ()) -> str:
    """The demo summary ``doc`` (what :func:`winnow.services.demo.run_demo` returns) as HTML."""
    e = html.escape
    rounds = doc.get("rounds") or []
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        "<meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; img-src data:; style-src 'unsafe-inline'\">",
        f"<title>winnow demo: {e(str(doc.get('project', {}).get('name', '')))}</title><style>{REPORT_CSS}</style></head><body>",
        "<h1>winnow demo: the data-centric loop</h1><div class='cards'>",
    ]
    for i, r in enumerate(rounds, start=1):
        parts.append(f"<div class='card'><b>{_num(r.get('score'))}</b>round {i} mAP50</div>")
    target = doc.get("target_slice")
    if target:
        parts.append(f"<div class='card'><b>{_num(target.get('before'))} &rarr; {_num(target.get('after'))}</b>"
                     f"{e(str(target.get('name')))}</div>")
    prod = doc.get("production") or {}
    parts.append(f"<div class='card'><b>{prod.get('captured', 0)}</b>images captured</div>")
    parts.append(f"<div class='card'><b>{(doc.get('labeling') or {}).get('reviewed', 0)}</b>labelled and reviewed</div>")
    parts.append(f"<div class='card'><b>{_num(doc.get('seconds'), '.0f')} s</b>wall time</div></div>")

    findings = doc.get("findings") or {}
    parts.append(f"<h2>Findings ({findings.get('total', 0)})</h2><table><tr><th>check</th><th>findings</th></tr>")
    by_check = findings.get("by_check") or {}
    for check, n in sorted(by_check.items(), key=lambda kv: -kv[1]):
        if n:
            parts.append(f"<tr><td>{e(str(check))}</td><td>{int(n)}</td></tr>")
    clean = sorted(c for c, n in by_check.items() if not n)
    if clean:
        parts.append(f"<tr><td colspan='2'>{len(clean)} checks found nothing: {e(', '.join(clean))}</td></tr>")
    parts.append("</table><h3>Worst first</h3><table><tr><th>severity</th><th>check</th><th>message</th></tr>")
    for f in findings.get("top") or []:
        parts.append(f"<tr><td>{e(str(f['severity']))}</td><td>{e(str(f['check']))}</td><td>{e(str(f['message']))}</td></tr>")
    parts.append("</table>")
    planted = findings.get("planted") or {}
    if planted:
        parts.append("<h3>Planted defects</h3><table><tr><th>defect</th><th>images</th></tr>")
        for k, v in planted.items():
            names = v if isinstance(v, list) else [v]
            parts.append(f"<tr><td>{e(str(k))}</td><td>{e(', '.join(map(str, names)))}</td></tr>")
        parts.append("</table>")
    after = findings.get("after_training") or {}
    if after:
        found = ", ".join(f"{k}: {len(v)}" for k, v in (after.get("planted_found") or {}).items())
        parts.append(f"<p>Label checks with {e(str(after.get('model')))} (out of sample): "
                     f"{e(', '.join(f'{k} {v}' for k, v in (after.get('by_check') or {}).items()) or 'none')}; "
                     f"planted label errors found: {e(found or 'none')}.</p>")

    parts.append("<h2>Versions</h2><table><tr><th>version</th><th>name</th><th>train</th><th>valid</th><th>test</th><th>recipe</th></tr>")
    for v in doc.get("versions") or []:
        sp = (v.get("counts") or {}).get("splits") or {}
        recipe = v.get("recipe") or {}
        what = f"split {recipe.get('split')}, seed {recipe.get('seed')}, augment {recipe.get('augment')}"
        parts.append(
            f"<tr><td>{e(str(v.get('ref')))} (v{v.get('number')})</td><td>{e(str(v.get('name')))}</td>"
            + "".join(f"<td>{(sp.get(s) or {}).get('images', 0)}</td>" for s in ("train", "valid", "test"))
            + f"<td>{e(what)}</td></tr>"
        )
    test = doc.get("test_split") or {}
    joined = test.get("joined") or []
    parts.append(f"</table><p>Every round is evaluated on the same {test.get('images', 0)} test images (version 1's test split"
                 + (f"; version 2 also keeps {len(joined)} new near-duplicate image(s) of them in test, out of training" if joined else "")
                 + ").</p>")

    parts.append("<h2>Rounds</h2><table><tr><th>round</th><th>version</th><th>model</th><th>train images</th>"
                 "<th>mAP50</th><th>worst slice</th><th>train s</th></tr>")
    for i, r in enumerate(rounds, start=1):
        w = r.get("worst_slice")
        worst = f"{w['name']} {w['score']:.3f}" if w else "-"
        parts.append(f"<tr><td>{i}</td><td>{e(str(r.get('version')))}</td><td>{e(str(r.get('model')))}</td>"
                     f"<td>{r.get('train_images')}</td><td>{_num(r.get('score'))}</td><td>{e(worst)}</td>"
                     f"<td>{_num(r.get('train_seconds'), '.0f')}</td></tr>")
    parts.append("</table>")

    table = doc.get("before_after") or []
    if table:
        parts.append("<h2>Before / after by slice</h2><div style='max-width:760px'>")
        parts.append(f"<img style='width:100%' alt='before and after by slice' src='{data_uri(before_after_png(table), 'image/png')}'></div>")
        parts.append("<table><tr><th>slice</th><th>n</th><th>before</th><th>after</th><th>change</th></tr>")
        for r in table:
            delta = r.get("delta")
            cls = "" if delta is None or delta >= 0 else " class='sig'"
            parts.append(f"<tr><td>{e(str(r['slice']))}</td><td>{r['images']}</td><td>{_num(r['before'])}</td>"
                         f"<td>{_num(r['after'])}</td><td{cls}>{'-' if delta is None else f'{delta:+.3f}'}</td></tr>")
        parts.append("</table>")

    sel = doc.get("selection") or {}
    parts.append(f"<h2>Selected for labelling ({len(sel.get('picked') or [])}, {e(str(sel.get('strategy')))}, "
                 f"{sel.get('picked_dark', 0)} dark)</h2>")
    if thumbnails:
        parts.append("<p>Red: the deployed model's boxes (the pre-labels); green: the labelers' boxes.</p><div class='thumbs'>")
        for t in thumbnails:
            uri = boxes_thumbnail(Path(t["file"]), t.get("predicted") or [], t.get("truth") or [])
            img = f"<img alt='{e(str(t['image']))}' src='{uri}'>" if uri else "<i>(no preview)</i>"
            parts.append(f"<figure>{img}<figcaption>{e(str(t['image']))}</figcaption></figure>")
        parts.append("</div>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_demo_report(doc: Mapping[str, Any], path: Path, *, thumbnails: Sequence[Mapping[str, Any]] = ()) -> Path:
    """Write the report atomically to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(render(doc, thumbnails=thumbnails), encoding="utf-8")
    os.replace(tmp, path)
    return path
