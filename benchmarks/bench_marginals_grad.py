"""The ``marginals`` estimator as a user calls it: forward, and forward + backward.

``z = structured_argmax(x, tree, estimator="marginals"); (z * g).sum().backward()`` against
torch-struct 0.5's ``marginals`` with autograd through them (its ``DependencyCRF`` for
projective trees, ``NonProjectiveDependencyCRF`` for the matrix-tree theorem), on the same
N(0, 1) scores, one thread each, single root. Before timing, the gradients are compared (in
float64) so that both compute the same thing. Prints a Markdown table; median of repeats.

    pip install -e ".[bench]"          # torch-struct (optional: without it, spigot alone)
    python benchmarks/bench_marginals_grad.py [--batch 32] [--sizes 20 40 60] [--repeats 7]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

import spigot

sys.path.insert(0, str(Path(__file__).parent))
import _peer_torch_struct  # noqa: E402
import peers  # noqa: E402


def timed(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up (compiles on first use)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def spigot_fns(tree: spigot.DependencyTree, s: torch.Tensor, g: torch.Tensor):
    def fwd() -> torch.Tensor:
        return spigot.structured_argmax(s, tree, estimator="marginals")

    def fwd_bwd() -> torch.Tensor:
        x = s.detach().clone().requires_grad_(True)
        z = spigot.structured_argmax(x, tree, estimator="marginals")
        (z * g).sum().backward()
        return x.grad

    return fwd, fwd_bwd


def torch_struct_fns(projective: bool, s: torch.Tensor, g: torch.Tensor):
    marg = peers.ts_projective_marginals if projective else peers.ts_mtt_marginals
    lengths = torch.full((s.shape[0],), s.shape[-1] - 1, dtype=torch.long)
    g_ts = peers.to_torch_struct(g)

    def fwd() -> torch.Tensor:
        with torch.no_grad():
            return marg(peers.to_torch_struct(s), lengths, True)

    def fwd_bwd() -> torch.Tensor:
        x = s.detach().clone().requires_grad_(True)
        pot = peers.to_torch_struct(x)
        if projective:  # the wrapper detaches its result: call the distribution directly
            dist = _peer_torch_struct._ts.DependencyCRF(pot, lengths=lengths, multiroot=False)
            mu = dist.marginals
        else:
            mu = marg(pot, lengths, True)
        (mu * g_ts).sum().backward()
        return x.grad

    return fwd, fwd_bwd


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--sizes", type=int, nargs="+", default=[20, 40, 60])
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    try:
        import numba

        numba.set_num_threads(1)
    except ImportError:  # pragma: no cover
        pass
    have_ts = peers.peer_status("torch-struct").available
    if have_ts:
        peers._load_torch_struct()
    print(f"B = {args.batch}, N(0, 1) scores, single root, 1 thread; median of {args.repeats}")
    print()
    print("| trees | n | spigot fwd | spigot fwd+bwd | bwd/fwd | torch-struct fwd+bwd | speedup |")
    print("|---|---|---|---|---|---|---|")
    for projective in (False, True):
        tree = spigot.DependencyTree(projective=projective, single_root=True)
        for n in args.sizes:
            gen = torch.Generator().manual_seed(n)
            s = torch.randn(args.batch, n + 1, n + 1, generator=gen)
            g = torch.randn(args.batch, n + 1, n + 1, generator=gen)
            fwd, fwd_bwd = spigot_fns(tree, s, g)
            t_f, t_fb = timed(fwd, args.repeats), timed(fwd_bwd, args.repeats)
            peer = speed = "n/a"
            if have_ts:
                # agreement first, in float64 (torch-struct's matrix-tree adds 1e-5 to weights)
                s64, g64 = s.double(), g.double()
                ours = spigot_fns(tree, s64, g64)[1]()
                theirs = torch_struct_fns(projective, s64, g64)[1]()
                mask = tree.mask(s64)
                err = float((torch.where(mask, ours - theirs, 0)).abs().max())
                if err > 1e-3:
                    raise SystemExit(f"gradients disagree with torch-struct by {err:.2e}")
                t_peer = timed(torch_struct_fns(projective, s, g)[1], args.repeats)
                peer, speed = f"{t_peer * 1e3:.1f} ms", f"{t_peer / t_fb:.1f}x"
            kind = "projective" if projective else "non-projective"
            print(
                f"| {kind} | {n} | {t_f * 1e3:.1f} ms | {t_fb * 1e3:.1f} ms | "
                f"{t_fb / t_f:.2f} | {peer} | {speed} |"
            )


if __name__ == "__main__":
    main()
