"""Learning-curve plot of ``spigot experiment`` (matplotlib, imported on demand)."""

from __future__ import annotations

import logging
import math
import os
from typing import Any

__all__ = ["plot_curves"]

logger = logging.getLogger("spigot")


def plot_curves(results: dict[str, list[dict[str, Any]]], path: str | os.PathLike) -> bool:
    """Dev labeled F1 and UAS per epoch of the semantic/joint phase (mean over seeds).

    Returns False (and logs why) if matplotlib is not installed.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        logger.warning("matplotlib is not installed: no learning-curve plot")
        return False
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for mode, runs in results.items():
        for ax, key in zip(axes, ("lf", "uas"), strict=True):
            curves = [
                [c.get(key) for c in r["curve"] if c["phase"] in ("joint", "semantics")]
                for r in runs
            ]
            n = min((len(c) for c in curves), default=0)
            if n == 0:
                continue
            ys = []
            for e in range(n):
                vals = [c[e] for c in curves if c[e] is not None]
                ys.append(100 * sum(vals) / len(vals) if vals else float("nan"))
            if all(math.isnan(y) for y in ys):
                continue
            ax.plot(range(1, n + 1), ys, marker="o", label=mode)
    for ax, title in zip(axes, ("dev labeled F1 (semantics)", "dev UAS (syntax)"), strict=True):
        ax.set_xlabel("epoch")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True
