"""The results table and score plot of a pipeline experiment, from one list of columns.

Each pipeline's ``experiment`` module declares its :class:`Column` list once; the per-mode
summary (mean and sd over seeds), the Markdown table and the bar plot of the scores are all
derived from it here.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from spigot.experiments.runner import cell, mean_sd

__all__ = [
    "RUN_ARTIFACTS",
    "Column",
    "collect_artifacts",
    "format_table",
    "get_number",
    "plot_scores",
    "summarize",
]

RUN_ARTIFACTS = ("config.toml", "metrics.jsonl", "results.json", "sentences.jsonl.gz")
"""The small files of a run that a results page commits (no weights): enough to recompute
every score, curve and paired test."""

logger = logging.getLogger("spigot")


@dataclass(frozen=True)
class Column:
    """One column of a results table.

    Attributes:
        key: the row field prefix (``<key>_mean``, ``<key>_sd``).
        title: the column heading.
        extract: a run's ``results.json`` dict -> the value (``nan`` when it has none).
        scale: the summary multiplies mean and sd by it (100 for a fraction shown in %).
        digits: decimals in the table.
    """

    key: str
    title: str
    extract: Callable[[dict[str, Any]], float]
    scale: float = 100.0
    digits: int = 1


def collect_artifacts(
    src: str | os.PathLike, dst: str | os.PathLike, names: Sequence[str] = RUN_ARTIFACTS
) -> int:
    """Copy ``names`` of every finished run (a directory with ``results.json``) under ``src``
    to the same place under ``dst``; return how many runs."""
    import shutil
    from pathlib import Path

    src, dst = Path(src), Path(dst)
    n = 0
    for res in sorted(src.rglob("results.json")):
        out = dst / res.parent.relative_to(src)
        out.mkdir(parents=True, exist_ok=True)
        for name in names:
            if (res.parent / name).is_file():
                shutil.copy2(res.parent / name, out / name)
        n += 1
    return n


def get_number(results: dict[str, Any], key: str) -> float:
    """``results[key]`` as a float, NaN when the run has no such key (older runs) or 0 (a
    quantity the run did not measure)."""
    v = results.get(key)
    return float("nan") if not v else float(v)


def summarize(
    results: dict[str, list[dict[str, Any]]], columns: Sequence[Column]
) -> list[dict[str, Any]]:
    """One row per label (a mode, or a mode's grid variant): ``mode``, ``n_seeds``, and
    ``<key>_mean`` / ``<key>_sd`` over its runs for every column (scaled)."""
    rows = []
    for label, runs in results.items():
        row: dict[str, Any] = {"mode": label, "n_seeds": len(runs)}
        for c in columns:
            m, sd = mean_sd([c.extract(r) for r in runs])
            row[f"{c.key}_mean"], row[f"{c.key}_sd"] = m * c.scale, sd * c.scale
        rows.append(row)
    return rows


def format_table(rows: Sequence[dict[str, Any]], columns: Sequence[Column]) -> str:
    """The Markdown table of :func:`summarize`'s rows: mean ± sd over seeds per column."""
    head = ["mode", "seeds"] + [c.title for c in columns]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["mode"], str(r["n_seeds"])]
        cells += [cell(r[f"{c.key}_mean"], r[f"{c.key}_sd"], c.digits) for c in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_scores(
    rows: Sequence[dict[str, Any]],
    columns: Sequence[Column],
    path: str | os.PathLike,
    *,
    title: str = "",
    reference: dict[str, str] | None = None,
) -> bool:
    """Bar plot of ``columns`` (e.g. dev and test score) per row, mean ± sd over seeds.

    ``reference`` maps a row's mode to a line label (e.g. ``{"none": "floor"}``): that row's
    first column is also drawn as a horizontal dashed line. Returns False (and logs why) if
    matplotlib is not installed.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        logger.warning("matplotlib is not installed: no score plot")
        return False
    n, k = len(rows), len(columns)
    width = 0.8 / max(k, 1)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.65 * n + 2), 4))
    for j, c in enumerate(columns):
        xs = [i + (j - (k - 1) / 2) * width for i in range(n)]
        means = [r[f"{c.key}_mean"] for r in rows]
        sds = [0.0 if math.isnan(r[f"{c.key}_sd"]) else r[f"{c.key}_sd"] for r in rows]
        ax.bar(xs, means, width, yerr=sds, capsize=2, label=c.title)
    for r in rows:
        label = (reference or {}).get(r["mode"])
        value = r[f"{columns[0].key}_mean"] if columns else float("nan")
        if label and not math.isnan(value):
            ax.axhline(value, linestyle="--", linewidth=1, color="grey")
            ax.annotate(label, (n - 0.5, value), fontsize=8, va="bottom", ha="right")
    finite = [
        r[f"{c.key}_mean"] for r in rows for c in columns if not math.isnan(r[f"{c.key}_mean"])
    ]
    if finite:
        low, high = min(finite), max(finite)
        pad = max(2.0, 0.1 * (high - low))
        ax.set_ylim(max(0.0, low - 3 * pad), high + pad)
    ax.set_xticks(range(n))
    ax.set_xticklabels([r["mode"] for r in rows], rotation=40, ha="right")
    ax.set_ylabel("% (mean ± sd over seeds)")
    if title:
        ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True
