"""Evaluation plots as PNG bytes, for the HTML reports (embedded as ``data:`` URIs).

Matplotlib's object API with the Agg canvas (no ``pyplot`` global state, safe in a server thread);
matplotlib is imported on first use. Every function takes the ``as_dict()`` form of a report part,
so a report read back from JSON can be plotted too.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np

_MAX_CURVES = 20
_MAX_BARS = 30


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=90)
    FigureCanvasAgg(fig)
    return fig


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    return buf.getvalue()


def pr_curves_png(pr_curves: dict[str, dict[str, list[float]]], per_class: dict[str, dict[str, Any]] | None = None) -> bytes:
    """Precision-recall curve per class at IoU 0.5 (the ``pr_curves`` of a detection report).

    With ``per_class`` the legend shows each class's AP50 and at most the 20 classes with the most
    ground truth are drawn.
    """
    fig = _figure(6, 4.5)
    ax = fig.add_subplot(1, 1, 1)
    names = list(pr_curves)
    if per_class:
        names.sort(key=lambda n: -per_class.get(n, {}).get("gt", 0))
    for name in names[:_MAX_CURVES]:
        curve = pr_curves[name]
        label = name
        if per_class and name in per_class:
            label = f"{name} (AP50 {per_class[name]['ap50']:.3f})"
        ax.plot(curve["recall"], curve["precision"], label=label, linewidth=1.4)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_title("Precision-recall at IoU 0.5")
    ax.grid(alpha=0.3)
    if names:
        ax.legend(fontsize=7, loc="lower left")
    else:
        ax.text(0.5, 0.5, "no class with ground truth", ha="center", va="center")
    return _png(fig)


def confusion_matrix_png(confusion: dict[str, Any], *, normalize: bool = True) -> bytes:
    """Heat map of a confusion matrix (``{"classes", "matrix"}``; rows true, columns predicted).

    Colours are row-normalised (the share of each true class) when ``normalize``; cells show counts.
    """
    classes = list(confusion["classes"])
    m = np.asarray(confusion["matrix"], dtype=np.float64).reshape(len(classes), len(classes))
    shown = m
    if normalize:
        sums = m.sum(axis=1, keepdims=True)
        shown = np.divide(m, sums, out=np.zeros_like(m), where=sums > 0)
    side = min(14.0, 2.5 + 0.45 * len(classes))
    fig = _figure(side, side * 0.85)
    ax = fig.add_subplot(1, 1, 1)
    image = ax.imshow(shown, cmap="Blues", vmin=0, vmax=shown.max() if shown.size and shown.max() > 0 else 1)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of row" if normalize else "count")
    ax.set_xticks(range(len(classes)))
    ax.set_yticks(range(len(classes)))
    ax.set_xticklabels(classes, rotation=60, ha="right", fontsize=8)
    ax.set_yticklabels(classes, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if len(classes) <= 25:
        threshold = shown.max() / 2 if shown.size else 0
        for i in range(len(classes)):
            for j in range(len(classes)):
                if m[i, j]:
                    ax.text(j, i, str(int(m[i, j])), ha="center", va="center", fontsize=7, color="white" if shown[i, j] > threshold else "black")
    ax.set_title("Confusion matrix")
    return _png(fig)


def slices_png(slices: dict[str, Any], *, ranked_only: bool = True) -> bytes:
    """Bar chart of the metric by slice with the bootstrap interval as error bars, overall as a line.

    ``slices`` is a slice report's ``as_dict()``; the 30 slices with the largest gap are drawn,
    significant ones in red.
    """
    rows = [s for s in slices["slices"] if s["score"] is not None and (s["ranked"] or not ranked_only)]
    rows.sort(key=lambda s: -(s["gap"] or 0))
    rows = rows[:_MAX_BARS]
    fig = _figure(7, max(2.5, 0.3 * len(rows) + 1.2))
    ax = fig.add_subplot(1, 1, 1)
    y = np.arange(len(rows))
    scores = np.array([s["score"] for s in rows], dtype=np.float64)
    lo = np.array([s["ci_low"] if s["ci_low"] is not None else s["score"] for s in rows], dtype=np.float64)
    hi = np.array([s["ci_high"] if s["ci_high"] is not None else s["score"] for s in rows], dtype=np.float64)
    colours = ["#d62728" if s["significant"] else "#1f77b4" for s in rows]
    if rows:
        ax.barh(y, scores, color=colours, alpha=0.8)
        ax.errorbar(scores, y, xerr=[np.clip(scores - lo, 0, None), np.clip(hi - scores, 0, None)], fmt="none", ecolor="black", capsize=3, linewidth=1)
        ax.set_yticks(y)
        ax.set_yticklabels([f"{s['name']} (n={s['images']})" for s in rows], fontsize=8)
        ax.invert_yaxis()
    if slices.get("overall") is not None:
        ax.axvline(slices["overall"], color="black", linestyle="--", linewidth=1, label=f"overall {slices['overall']:.3f}")
        ax.legend(fontsize=8, loc="lower right")
    ax.set_xlim(0, 1.0)
    ax.set_xlabel(f"{slices.get('metric', 'metric')} ({round(100 * slices.get('bootstrap', {}).get('confidence', 0.95))}% bootstrap interval)")
    ax.set_title("Metric by slice (red: significantly below overall)")
    return _png(fig)
