"""The scaling runs of ``bench_decoding.py`` (``--scaling``): every operation over a range of
sentence lengths, skipping an implementation once it gets too slow, and their plot."""

from __future__ import annotations

import math

from _report import LABELS
from _timing import Row, bench_size

SCALING_SIZES = (10, 20, 40, 80, 160, 320)
SCALING_PEERS = ("torch-struct", "supar")  # networkx only in the main table


# ---------------------------------------------------------------------------------------
# Scaling


def run_scaling(args, ops) -> list[Row]:
    names = ["spigot"] + [p for p in SCALING_PEERS if p in args.peers]
    rows = []
    for op in ops:
        last: dict[str, tuple[int, float]] = {}  # name -> (n, seconds per call)
        dropped: set[str] = set()
        for n in args.scaling_sizes:
            predicted = {}
            for name in names:
                if name in dropped:
                    predicted[name] = math.inf
                elif name in last:
                    n0, t0 = last[name]
                    predicted[name] = t0 * (n / n0) ** 3
            row = bench_size(
                op,
                args.scaling_batch,
                n,
                names,
                args,
                budget_s=args.budget,
                skip_above_s=args.max_call,
                predicted=predicted,
            )
            for name, c in row.cells.items():
                if c.ms is not None:
                    last[name] = (n, c.ms / 1000)
                elif c.status in ("skipped", "error"):
                    dropped.add(name)
            rows.append(row)
            print(
                f"  scaling {op:12s} n={n:4d}: "
                + ", ".join(f"{LABELS[k]} {c.text()}" for k, c in row.cells.items()),
                flush=True,
            )
    return rows


def plot_scaling(rows: list[Row], path: str, batch: int):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ops = list(dict.fromkeys(r.op for r in rows))
    cols = min(3, len(ops))
    nrows = math.ceil(len(ops) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4.2 * cols, 3.6 * nrows), squeeze=False)
    styles = {
        "spigot": ("C0", "o"),
        "torch-struct": ("C1", "s"),
        "supar": ("C2", "^"),
        "networkx": ("C3", "x"),
    }
    for ax, op in zip(axes.flat, ops, strict=False):
        names = list(dict.fromkeys(k for r in rows if r.op == op for k in r.cells))
        for name in names:
            pts = [
                (r.n, r.cells[name].ms)
                for r in rows
                if r.op == op and name in r.cells and r.cells[name].ms is not None
            ]
            if pts:
                color, marker = styles.get(name, ("k", "."))
                ax.plot(*zip(*pts, strict=True), marker=marker, color=color, label=LABELS[name])
        ax.set_xscale("log", base=2)
        sizes = sorted({r.n for r in rows if r.op == op})
        ax.set_xticks(sizes, [str(v) for v in sizes])
        ax.minorticks_off()
        ax.set_yscale("log")
        ax.set_title(f"{op} (B={batch})")
        ax.set_xlabel("sentence length n")
        ax.set_ylabel("median time per batch (ms)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(ops) :]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
