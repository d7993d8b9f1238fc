"""The projection onto the marginal polytope conv(Z) of trees: argmax calls and time.

``mu = argmin_{mu in conv(Z)} ||mu - x||^2`` by the batched active-set solver
(``tree.project(x, lengths, polytope="marginal")``), on three kinds of input per sentence:

* ``spigot``: ``x = z - eta g``, ``z`` the argmax of N(0, 1) scores, ``g ~ N(0, 1)`` on the valid
  arcs and SPIGOT's step ``eta = min(1, 1/||g||)`` (what the ``spigot`` estimator projects);
* ``step1``: the same with ``eta = 1`` (a step of norm ~n);
* ``gauss``: ``x ~ N(0, 1)`` on the valid arcs (far from the polytope: large active sets).

Table 1 reports, per tree kind, ``n`` and input, the argmax (oracle) calls per sentence until
the tolerance (mean, median, 90th percentile, max; the first call included), the final active
set's size, the wall time per batch (median of repeats after one warm-up run: on a VM that
hands memory back to its host, a process's first run can be several times slower) and the
share of it spent in the compiled argmax. Table 2 compares the solver with a
generic dense QP over the enumerated trees (Wolfe's method on the explicit vertex list in NumPy,
``tests/test_marginal_polytope.py``) on small ``n``: largest difference and time.
(lp-sparsemap 1.0, the reference implementation, ships only an sdist that does not build with
current setuptools, nor with setuptools < 70 and Cython < 3: its ``.pyx`` sources are missing
and it needs Eigen; so no comparison with it here.)

    python benchmarks/bench_marginal_polytope.py [--batch 32] [--sizes 10 20 40] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

import spigot

sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))

KINDS = {"non-projective": False, "projective": True}


def inputs(tree: spigot.DependencyTree, kind: str, B: int, n: int, g: torch.Generator):
    """``[B, n+1, n+1]`` float64 points of one kind (valid arcs only; all sentences n words)."""
    shape = (B, n + 1, n + 1)
    mask = tree.mask(torch.zeros(shape, dtype=torch.float64))
    noise = torch.where(mask, torch.randn(shape, dtype=torch.float64, generator=g), 0)
    if kind == "gauss":
        return noise
    z = tree.argmax(torch.randn(shape, dtype=torch.float64, generator=g))
    if kind == "step1":
        return z - noise
    eta = spigot.spigot_step_size(noise, 2, mask)
    return z - eta * noise


class OracleClock:
    """Wraps ``tree._argmax`` (the solver's oracle) to add up the time spent in it."""

    def __init__(self, tree: spigot.DependencyTree) -> None:
        self.seconds, self._argmax = 0.0, tree._argmax
        tree._argmax = self  # type: ignore[method-assign]

    def __call__(self, scores: torch.Tensor, prepared: object) -> torch.Tensor:
        t0 = time.perf_counter()
        try:
            return self._argmax(scores, prepared)
        finally:
            self.seconds += time.perf_counter() - t0


def run(tree: spigot.DependencyTree, x: torch.Tensor, repeats: int):
    """(info, median seconds, median share of the argmax) of projecting the batch ``x``,
    after one untimed warm-up run."""
    clock = tree._argmax if isinstance(tree._argmax, OracleClock) else OracleClock(tree)
    tree.project(x, polytope="marginal")
    times, shares = [], []
    for _ in range(repeats):
        clock.seconds = 0.0
        t0 = time.perf_counter()
        _, info = tree.project(x, polytope="marginal", return_info=True)
        times.append(time.perf_counter() - t0)
        shares.append(clock.seconds / times[-1])
    return info, statistics.median(times), statistics.median(shares)


def table_iterations(sizes: list[int], B: int, repeats: int, single_root: bool) -> None:
    print(
        "| tree | n | input | argmax calls: mean | median | p90 | max | active set (mean) "
        "| converged | time / batch (s) | in argmax |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name, projective in KINDS.items():
        tree = spigot.DependencyTree(projective=projective, single_root=single_root)
        for n in sizes:
            for kind in ("spigot", "step1", "gauss"):
                g = torch.Generator().manual_seed(n)
                x = inputs(tree, kind, B, n, g)
                info, sec, share = run(tree, x, repeats)
                it = info.iterations.double()
                k = (info.weights > 0).sum(-1).double()
                print(
                    f"| {name} | {n} | {kind} | {it.mean():.1f} | {it.median():.0f} "
                    f"| {it.quantile(0.9):.0f} | {int(it.max())} | {k.mean():.1f} "
                    f"| {int(info.converged.sum())}/{B} | {sec:.3f} | {100 * share:.0f}% |",
                    flush=True,
                )


def table_generic(B: int, single_root: bool) -> None:
    from test_marginal_polytope import qp_hull, tree_matrix

    print("\n| tree | n | trees | max abs diff | ours (s / batch) | generic QP (s / batch) |")
    print("|---|---|---|---|---|---|")
    for name, projective in KINDS.items():
        tree = spigot.DependencyTree(projective=projective, single_root=single_root)
        for n in (3, 4, 5):
            x = inputs(tree, "step1", B, n, torch.Generator().manual_seed(100 + n))
            _, ours, _ = run(tree, x, 3)
            mu = tree.project(x, polytope="marginal")
            V = tree_matrix(n, projective, single_root)
            t0 = time.perf_counter()
            ref = np.stack([qp_hull(V, xb.reshape(-1))[0] for xb in x.numpy()])
            generic = time.perf_counter() - t0
            diff = float(np.abs(ref - mu.numpy().reshape(B, -1)).max())
            print(f"| {name} | {n} | {len(V)} | {diff:.1e} | {ours:.4f} | {generic:.4f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--sizes", type=int, nargs="+", default=[10, 20, 40])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--multi-root", action="store_true", help="any number of root children")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    single = not args.multi_root
    print(
        f"B = {args.batch}, single_root = {single}, torch threads = {torch.get_num_threads()}, "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores\n"
    )
    table_iterations(args.sizes, args.batch, args.repeats, single)
    table_generic(args.batch, single)


if __name__ == "__main__":
    main()
