"""Cost of every registered estimator: one forward + backward through a tree, relative to STE.

``z = structured_argmax(x, tree, estimator=NAME); (z * g).sum().backward()`` on B = 32
sentences of n = 40 words, N(0, 1) float32 scores, single root, one thread, each estimator
with its default options; median of repeats; projective and non-projective trees. Prints a
Markdown table with what each estimator's backward needs beyond the forward argmax.

    python benchmarks/bench_estimators.py [--batch 32] [--n 40] [--repeats 9]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import spigot

#: what each built-in estimator computes beyond the forward argmax
NEEDS = {
    "pipeline": "nothing",
    "ste": "nothing",
    "spigot": "one projection onto the relaxed polytope",
    "marginals": "marginals (forward) and their exact VJP (backward)",
    "ste-marginals": "the marginals' exact VJP",
    "spigot-ce": "marginals and one projection",
    "spigot-eg": "marginals twice",
    "perturbed": "K - 1 more argmaxes (forward; K = 10)",
    "imle": "one more argmax per sample (backward; 1 sample)",
    "blackbox": "one more argmax (backward)",
    "sparsemap": "an active-set solve (forward: several argmaxes and small QPs)",
}


def step_time(tree: spigot.DependencyTree, name: str, s: torch.Tensor, g: torch.Tensor, reps: int):
    def step() -> None:
        x = s.clone().requires_grad_(True)
        z = spigot.structured_argmax(x, tree, estimator=name)
        if z.requires_grad:
            (z * g).sum().backward()

    step()  # compiles on first use
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--n", type=int, default=40)
    ap.add_argument("--repeats", type=int, default=9)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    try:
        import numba

        numba.set_num_threads(1)
    except ImportError:  # pragma: no cover
        pass
    gen = torch.Generator().manual_seed(0)
    s = torch.randn(args.batch, args.n + 1, args.n + 1, generator=gen)
    g = torch.randn(args.batch, args.n + 1, args.n + 1, generator=gen)
    trees = {
        "non-projective": spigot.DependencyTree(),
        "projective": spigot.DependencyTree(projective=True),
    }
    times = {
        k: {e: step_time(t, e, s, g, args.repeats) for e in spigot.ESTIMATORS}
        for k, t in trees.items()
    }
    print(
        f"B = {args.batch}, n = {args.n}, single root, 1 thread; forward + backward, median of "
        f"{args.repeats}; ratio to STE"
    )
    print()
    print("| estimator | non-projective | ratio | projective | ratio | needs beyond the argmax |")
    print("|---|---|---|---|---|---|")
    for e in spigot.ESTIMATORS:
        cells = []
        for k in trees:
            t, ref = times[k][e], times[k]["ste"]
            cells += [f"{t * 1e3:.1f} ms", f"{t / ref:.2f}"]
        print(f"| {e} | {' | '.join(cells)} | {NEEDS.get(e, '')} |")


if __name__ == "__main__":
    main()
