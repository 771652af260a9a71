"""A pipeline run as one self-contained HTML page (inline CSS, no script, every text escaped)."""

from __future__ import annotations

import json
from html import escape
from typing import Any

_CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:2rem;color:#1d2329;max-width:1100px}
h1{font-size:1.4rem;margin:0 0 .3rem}.muted{color:#67727e}
table{border-collapse:collapse;width:100%;margin:1rem 0}th,td{border-bottom:1px solid #e3e7eb;padding:.35rem .5rem;text-align:left;vertical-align:top}
th{background:#f5f7f9}code{font:12px ui-monospace,monospace}
.ran{color:#1f6feb}.skipped{color:#67727e}.failed,.error{color:#c9241a;font-weight:600}.not_run{color:#9aa4ad}.ok{color:#1a7f37;font-weight:600}
.gate-pass{color:#1a7f37}.gate-fail{color:#c9241a;font-weight:600}
details pre{background:#f5f7f9;padding:.5rem;overflow:auto;max-height:300px;font-size:12px}
"""


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value):
        return value[:12]
    return str(value)


def _headline(step: dict[str, Any]) -> str:
    out = step.get("outputs") or {}
    uses = step.get("uses")
    if uses == "import":
        return f"{out.get('images_added', 0)} images added, {out.get('images', 0)} in the project"
    if uses == "check":
        return f"{out.get('findings', 0)} findings on {out.get('images', 0)} images"
    if uses == "fix":
        return f"{out.get('findings_applied', 0)} fixes applied"
    if uses == "label":
        return f"{out.get('images_relabeled', 0)} images relabelled"
    if uses == "version":
        return f"version {_short(out.get('version', ''))} (v{out.get('number')}), {out.get('images', 0)} images"
    if uses == "train":
        metrics = ", ".join(f"{k} {_short(v)}" for k, v in (out.get("metrics") or {}).items() if k in ("map50", "map", "accuracy"))
        return f"model {out.get('name')} ({_short(out.get('model', ''))})" + (f": {metrics}" if metrics else "")
    if uses == "evaluate":
        metrics = out.get("metrics") or {}
        key = "map50" if "map50" in metrics else "accuracy"
        return f"{key} {_short(metrics.get(key))} on {out.get('images', 0)} {out.get('split')} images"
    if uses == "deploy":
        return f"{out.get('name')} is live" + ("" if out.get("changed") else " (already was)")
    if uses == "select":
        return f"{out.get('picked', 0)} of {out.get('candidates', 0)} candidates picked"
    return ""


def render_html(run: dict[str, Any]) -> str:
    """The HTML page of a run report (``RunReport.as_dict()``)."""
    e = escape
    rows = []
    for s in run.get("steps", []):
        gates = "".join(
            f'<div class="{"gate-pass" if g["passed"] else "gate-fail"}">{"✓" if g["passed"] else "✗"} <code>{e(g["gate"])}</code>'
            f' <span class="muted">({e(g.get("actual", ""))})</span></div>'
            for g in s.get("gates") or []
        )
        detail = e(s["error"]) if s.get("error") else e(_headline(s)) if s.get("outputs") else ""
        outputs = json.dumps(s.get("outputs"), indent=2, default=str)
        inputs = json.dumps(s.get("inputs"), indent=2, default=str)
        rows.append(
            f"<tr><td><b>{e(s['id'])}</b><br><span class=muted>{e(s['uses'])}</span></td>"
            f'<td class="{e(s["status"])}">{e(s["status"])}</td><td>{s.get("seconds") or 0:.2f}s</td>'
            f"<td>{detail}{gates}"
            f"<details><summary class=muted>fingerprint <code>{e(_short(s.get('fingerprint') or '-'))}</code></summary>"
            f"<pre>inputs: {e(inputs)}\n\noutputs: {e(outputs)}</pre></details></td></tr>"
        )
    failed = run.get("failed_gate")
    banner = ""
    if failed:
        banner = (f'<p class="gate-fail">Gate failed at step {e(str(failed["step"]))}: <code>{e(failed["gate"])}</code> '
                  f'({e(failed.get("actual", ""))})</p>')
    elif run.get("error"):
        banner = f'<p class="error">Error: {e(run["error"])}</p>'
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f"<title>winnow run {e(str(run.get('run')))}: {e(run.get('pipeline', ''))}</title><style>{_CSS}</style></head><body>"
        f"<h1>Pipeline {e(run.get('pipeline', ''))} — run {e(str(run.get('run')))} "
        f'<span class="{e(run.get("status", ""))}">{e(run.get("status", ""))}</span></h1>'
        f"<div class=muted>project {e(run.get('project', ''))} · workspace {e(run.get('workspace', ''))} · "
        f"started {e(str(run.get('started_at')))} · {run.get('seconds') or 0:.1f}s · file {e(str(run.get('file')))}</div>"
        f"{banner}<table><thead><tr><th>step</th><th>status</th><th>time</th><th>result</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table></body></html>\n"
    )
