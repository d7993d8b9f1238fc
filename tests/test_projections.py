"""Projections: feasible, optimal (KKT and active-set enumeration), idempotent, differentiable."""

from __future__ import annotations

import itertools

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import spigot
from spigot.projections import project_simplex, project_unit_cube


def qp_simplex_bruteforce(x: torch.Tensor) -> torch.Tensor:
    """argmin_{p in simplex} ||p - x||^2 by enumerating supports (a generic active-set QP solve).

    For a support S the equality-constrained optimum is p_S = x_S - (sum x_S - 1)/|S|; among the
    supports whose solution is feasible (p_S >= 0) keep the closest point.
    """
    k = x.shape[0]
    best, best_d = None, float("inf")
    for size in range(1, k + 1):
        for S in itertools.combinations(range(k), size):
            idx = list(S)
            p = torch.zeros_like(x)
            p[idx] = x[idx] - (x[idx].sum() - 1) / size
            if bool((p >= -1e-12).all()):
                d = float(((p - x) ** 2).sum())
                if d < best_d:
                    best, best_d = p.clamp(min=0), d
    return best


vectors = st.lists(st.floats(-5, 5, allow_nan=False), min_size=1, max_size=7)


@given(vectors)
def test_simplex_projection_is_optimal(xs):
    x = torch.tensor(xs, dtype=torch.float64)
    p = project_simplex(x)
    assert bool((p >= 0).all())
    assert float(p.sum()) == pytest.approx(1.0, abs=1e-12)
    torch.testing.assert_close(p, qp_simplex_bruteforce(x), atol=1e-10, rtol=0)
    # KKT: x - p = tau on the support, x - p <= tau off it
    tau = (x - p)[p > 0]
    assert float(tau.max() - tau.min()) < 1e-10
    assert bool(((x - p)[p == 0] <= tau.max() + 1e-10).all())
    torch.testing.assert_close(project_simplex(p), p, atol=1e-12, rtol=0)  # idempotent


def test_masked_simplex_ignores_invalid_entries_and_empty_slices():
    x = torch.tensor([[3.0, 0.2, 9.0, -1.0], [1.0, 2.0, 3.0, 4.0]], dtype=torch.float64)
    mask = torch.tensor([[True, True, False, True], [False, False, False, False]])
    p = project_simplex(x, mask, dim=-1)
    torch.testing.assert_close(p[0, [0, 1, 3]], qp_simplex_bruteforce(x[0, [0, 1, 3]]))
    assert float(p[0, 2]) == 0.0 and bool((p[1] == 0).all())
    assert torch.isfinite(p).all()


def test_simplex_projection_gradcheck():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 5, dtype=torch.float64, generator=g).requires_grad_(True)
    mask = torch.rand(3, 5, generator=g) > 0.2
    torch.autograd.gradcheck(lambda t: project_simplex(t, mask, dim=-1), (x,))
    torch.autograd.gradcheck(lambda t: project_simplex(t, None, dim=0), (x,))


@given(st.lists(st.floats(-3, 3, allow_nan=False), min_size=1, max_size=8))
def test_unit_cube_projection_is_clipping(xs):
    x = torch.tensor(xs, dtype=torch.float64)
    p = project_unit_cube(x)
    assert bool(((p >= 0) & (p <= 1)).all())
    # optimal coordinate-wise: the closest point of [0, 1] to each x_i
    for xi, pi in zip(x.tolist(), p.tolist(), strict=True):
        assert pi == min(1.0, max(0.0, xi))
    torch.testing.assert_close(project_unit_cube(p), p)


@pytest.mark.parametrize("single_root", [True, False])
def test_tree_projection_matches_bruteforce_per_column(single_root):
    tree = spigot.DependencyTree(single_root=single_root)
    x = 2 * torch.randn(2, 5, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    lengths = torch.tensor([4, 2])
    p = tree.project(x, lengths)
    for b, L in enumerate(lengths.tolist()):
        for m in range(1, L + 1):
            heads = [h for h in range(L + 1) if h != m]
            torch.testing.assert_close(p[b, heads, m], qp_simplex_bruteforce(x[b, heads, m]))
    mask = tree.mask(x, lengths)
    assert bool((p[~mask] == 0).all())


def test_graph_and_categorical_projections():
    x = 3 * torch.randn(2, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    graph = spigot.DependencyGraph()
    p = graph.project(x, torch.tensor([3, 2]))
    mask = graph.mask(x, torch.tensor([3, 2]))
    torch.testing.assert_close(p[mask], x[mask].clamp(0, 1))
    assert bool((p[~mask] == 0).all())
    c = spigot.Categorical().project(x)
    torch.testing.assert_close(c.sum(-1), torch.ones(2, 4, dtype=torch.float64))
    torch.testing.assert_close(c[0, 1], qp_simplex_bruteforce(x[0, 1]))
