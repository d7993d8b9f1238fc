#!/usr/bin/env python
"""Matrix-tree marginals against torch-struct 0.5, by sentence length, batch size and threads.

``DependencyTree(single_root=...).marginals`` against
``torch_struct.NonProjectiveDependencyCRF(..., multiroot=...).marginals`` on float32 N(0, 1)
scores ``[B, n+1, n+1]`` (every sentence of length n, fixed seed), on the CPU. For each thread
count, both libraries get it: ``torch.set_num_threads`` and ``numba.set_num_threads``. Each
cell alternates the two libraries call by call (so that a load change hits both alike) and
reports the medians and ``torch-struct / ours`` (> 1: ours is faster). Before timing a cell the
two results are compared (max abs difference of the marginals <= 1e-4; torch-struct adds 1e-5
to every weight) and the run aborts on a disagreement.

torch-struct 0.5 hangs (never returns) at n >= 160 when torch has 2 threads on the development
machine, so those cells are skipped with a note (``--ts-2-threads-max-n``).

    pip install -e ".[bench]"        # torch-struct 0.5 (see benchmarks/README.md)
    python benchmarks/bench_mtt_scaling.py                        # the full table
    python benchmarks/bench_mtt_scaling.py --quick                # a fast look (noisy)
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import warnings
from collections.abc import Callable

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import peers  # noqa: E402

warnings.filterwarnings("ignore", category=UserWarning)
ATOL = 1e-4


def set_threads(k: int) -> None:
    """``k`` threads for torch (intra-op, hence MKL) and for numba (spigot's kernels)."""
    import numba

    torch.set_num_threads(k)
    numba.set_num_threads(k)


def functions(
    batch: int, n: int, single_root: bool, seed: int
) -> tuple[Callable[[], torch.Tensor], Callable[[], torch.Tensor] | None]:
    """(ours, torch-struct or None if not installed) as zero-argument calls; the peer's input
    conversion happens here, outside the timed call."""
    import spigot

    g = torch.Generator().manual_seed(seed)
    scores = torch.randn(batch, n + 1, n + 1, generator=g, dtype=torch.float32)
    lengths = torch.full((batch,), n, dtype=torch.long)
    tree = spigot.DependencyTree(single_root=single_root)

    def ours() -> torch.Tensor:
        return tree.marginals(scores, lengths)

    if not peers.peer_status("torch-struct").available:
        return ours, None
    pot = peers.to_torch_struct(scores)

    def theirs() -> torch.Tensor:
        return peers.ts_mtt_marginals(pot, lengths, single_root)

    return ours, theirs


def check(ours: torch.Tensor, theirs_native: torch.Tensor, where: str) -> None:
    theirs = peers.from_torch_struct(theirs_native.detach()).to(torch.float64)
    diff = float((ours.to(torch.float64) - theirs).abs().max())
    if not diff <= ATOL:
        raise SystemExit(f"disagreement at {where}: max |ours - torch-struct| = {diff:.3g}")


def time_pair(
    f: Callable[[], object], g: Callable[[], object] | None, repeats: int, budget: float
) -> tuple[float, float | None, int]:
    """Medians (ms) of ``f`` and ``g`` called alternately (order swapped every round)."""
    t0 = time.perf_counter()
    f()
    if g is not None:
        g()
    per_round = time.perf_counter() - t0
    reps = max(1, min(repeats, int(budget / max(per_round, 1e-9))))
    tf: list[float] = []
    tg: list[float] = []
    for i in range(reps):
        order = ((f, tf), (g, tg)) if i % 2 == 0 else ((g, tg), (f, tf))
        for fn, out in order:
            if fn is None:
                continue
            t = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t)
    med_g = statistics.median(tg) * 1e3 if tg else None
    return statistics.median(tf) * 1e3, med_g, reps


def fmt(ms: float | None) -> str:
    if ms is None:
        return "–"
    return f"{ms:.3f}" if ms < 1 else f"{ms:.2f}" if ms < 100 else f"{ms:.0f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[10, 20, 40, 80, 160, 320])
    ap.add_argument("--batches", type=int, nargs="+", default=[8, 32])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeats", type=int, default=31, help="max rounds per cell (median)")
    ap.add_argument("--budget", type=float, default=6.0, help="max seconds of rounds per cell")
    ap.add_argument("--multi-root", action="store_true", help="many root children (default one)")
    ap.add_argument("--ts-2-threads-max-n", type=int, default=80, help="see the docstring")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="--repeats 5 --budget 1")
    args = ap.parse_args(argv)
    if args.quick:
        args.repeats, args.budget = 5, 1.0
    import numba

    import spigot  # noqa: F401  (fails early if not installed)

    status = peers.peer_status("torch-struct")
    single_root = not args.multi_root
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"torch {torch.__version__}, numba {numba.__version__}, torch-struct: "
        f"{status.version if status.available else status.note}"
    )
    print(
        f"{'single' if single_root else 'multi'} root, float32 N(0, 1) scores, seed "
        f"{args.seed}; load average at start {load:.2f}"
        + (" (WARNING: the machine is not idle; timings are noisy)" if load > 0.5 else "")
    )
    print()
    print("| threads | B | n | ours (ms) | torch-struct (ms) | torch-struct / ours | rounds |")
    print("|---|---|---|---|---|---|---|")
    notes: set[str] = set()
    worst: float | None = None
    for k in args.threads:
        set_threads(k)
        for batch in args.batches:
            for n in args.sizes:
                ours, theirs = functions(batch, n, single_root, args.seed)
                if theirs is not None and k >= 2 and n > args.ts_2_threads_max_n:
                    theirs = None
                    notes.add(
                        f"torch-struct not run with {k} threads at n > {args.ts_2_threads_max_n}"
                        " (it hangs there on the development machine; see the docstring)"
                    )
                if theirs is not None:
                    check(ours(), theirs(), f"threads={k} B={batch} n={n}")
                t_ours, t_ts, reps = time_pair(ours, theirs, args.repeats, args.budget)
                ratio = f"{t_ts / t_ours:.2f}x" if t_ts is not None else "–"
                if t_ts is not None:
                    worst = t_ts / t_ours if worst is None else min(worst, t_ts / t_ours)
                print(
                    f"| {k} | {batch} | {n} | {fmt(t_ours)} | {fmt(t_ts)} | {ratio} | {reps} |",
                    flush=True,
                )
    print()
    for note in sorted(notes):
        print(f"Note: {note}.")
    if worst is not None:
        print(f"Lowest torch-struct / ours: {worst:.2f}x")
    end = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"load average at the end {end:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
