"""``spigot compile``: compile every tree kernel ahead of time.

numba compiles the kernels on their first call and caches them on disk (beside the package, or
in ``NUMBA_CACHE_DIR``): about a minute on a fresh install, otherwise paid inside a user's
first training step. This runs each kernel once on a tiny batch, through the public API, so
that an install (a cluster image, a shared environment) can pay it up front.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

__all__ = ["compile_kernels", "warmup_steps"]


def warmup_steps() -> Iterator[tuple[str, Callable[[], object]]]:
    """``(description, call)`` for every compiled code path: argmax, marginals, the marginals'
    backward, log-partition and sampling of the four kinds of trees."""
    import torch

    from spigot import DependencyTree, structured_argmax

    g = torch.Generator().manual_seed(0)
    s = torch.randn(2, 5, 5, generator=g, dtype=torch.float64)
    lengths = torch.tensor([4, 3])
    for projective in (False, True):
        for single_root in (True, False):
            tree = DependencyTree(projective=projective, single_root=single_root)
            kind = f"{'projective' if projective else 'non-projective'}, " + (
                "single root" if single_root else "multi root"
            )

            def backward(tree: DependencyTree = tree) -> None:
                x = s.clone().requires_grad_()
                structured_argmax(x, tree, estimator="marginals", lengths=lengths).sum().backward()

            yield f"{kind}: argmax", lambda tree=tree: tree.argmax(s, lengths)
            yield (
                f"{kind}: marginals and log-partition",
                lambda tree=tree: (
                    tree.marginals(s, lengths),
                    tree.log_partition(s, lengths),
                ),
            )
            yield f"{kind}: the marginals' backward", backward
            yield f"{kind}: sampling", lambda tree=tree: tree.sample(s, lengths, k=2, generator=g)


def compile_kernels(report: Callable[[str], None] | None = None) -> list[tuple[str, float]]:
    """Run every :func:`warmup_steps` call once; ``report`` gets one line per step. Returns
    ``(description, seconds)`` per step (the first calls compile or load the cache)."""
    out = []
    for name, call in warmup_steps():
        start = time.perf_counter()
        call()
        sec = time.perf_counter() - start
        out.append((name, sec))
        if report is not None:
            report(f"{sec:8.2f} s  {name}")
    return out
