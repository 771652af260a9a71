"""What the active-learning benchmarks share: labels to a target, the results table, the plot.

Used by ``bench/active_learning.py`` (digits) and ``bench/active_learning_detection.py``
(synthetic detection). ``curves[name]`` is a ``(seeds, rounds)`` array of the test metric after
each round; ``counts`` the labeled images at each round (the same for every strategy);
``needed[name]`` per seed the first count reaching the target, ``None`` when never reached.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np


def labels_needed(counts: Sequence[int], values: Sequence[float], target: float) -> int | None:
    """The first labeled count whose metric reaches ``target``; ``None`` when none does."""
    for n, v in zip(counts, values, strict=True):
        if v >= target:
            return n
    return None


def mean_needed(needed: Sequence[int | None], max_labels: int) -> float:
    """Mean labels to the target over seeds, a seed that never reached it counting ``max_labels``."""
    return float(np.mean([n if n is not None else max_labels for n in needed]))


def area(curve: np.ndarray) -> float:
    """Area under the learning curve, as the metric's mean over the rounds and the seeds."""
    return float(np.asarray(curve, dtype=np.float64).mean())


def results_table(
    strategies: Sequence[str],
    counts: Sequence[int],
    curves: dict[str, np.ndarray],
    needed: dict[str, list[int | None]],
    max_labels: int,
    *,
    marks: Sequence[int],
    metric: str,
    with_area: bool = False,
) -> tuple[str, str, float, float]:
    """The markdown table (a row per strategy: mean labels to the target and the ratio to random,
    optionally the area under the curve and its ratio to random, the metric at ``marks``) and
    ``(table, best, best's mean labels, random's mean labels)``. Best = fewest labels, ties broken
    by the larger area."""
    base = mean_needed(needed["random"], max_labels)
    base_area = area(curves["random"])
    marks = [n for n in marks if n in counts]
    rows = []
    for name in strategies:
        miss = sum(n is None for n in needed[name])
        mean = mean_needed(needed[name], max_labels)
        values = curves[name].mean(axis=0)
        cells = [name, f"{mean:.0f}{' (' + str(miss) + ' seeds not reached)' if miss else ''}", f"{mean / base:.2f}"]
        if with_area:
            cells += [f"{area(curves[name]):.3f}", f"{area(curves[name]) / base_area:.2f}"]
        cells += [f"{values[list(counts).index(n)]:.3f}" for n in marks]
        rows.append("| " + " | ".join(cells) + " |")
    best = min(
        (s for s in strategies if s != "random"),
        key=lambda s: (mean_needed(needed[s], max_labels), -area(curves[s])),
        default="random",
    )
    heads = ["strategy", "labels to reach target (mean)", "vs random"]
    if with_area:
        heads += [f"area under curve (mean {metric})", "vs random"]
    heads += [f"{metric} @ {n}" for n in marks]
    header = "| " + " | ".join(heads) + " |"
    sep = "|" + "---|" * len(heads)
    return "\n".join([header, sep, *rows]), best, mean_needed(needed[best], max_labels), base


def plot(
    curves: dict[str, np.ndarray],
    counts: Sequence[int],
    target: float,
    path: Path,
    *,
    title: str,
    ylabel: str,
    ylim: tuple[float, float] | None = None,
    bands: bool = False,
) -> None:
    """Mean learning curve per strategy (random dashed black), the target as a dotted line;
    ``bands``: shade each curve's min-max over the seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.8), dpi=110)
    for name, values in curves.items():
        x = list(counts[: values.shape[1]])
        line, = ax.plot(x, values.mean(axis=0), label=name, lw=2.2 if name == "random" else 1.4,
                        color="black" if name == "random" else None, ls="--" if name == "random" else "-",
                        marker="o" if len(x) <= 12 else None, ms=3)
        if bands and values.shape[0] > 1:
            ax.fill_between(x, values.min(axis=0), values.max(axis=0), color=line.get_color(), alpha=0.12, lw=0)
    ax.axhline(target, color="grey", lw=0.8, ls=":")
    ax.text(counts[-1], target, f" target {target:.2f}", va="bottom", ha="right", fontsize=8, color="grey")
    ax.set_xlabel("labeled images")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
