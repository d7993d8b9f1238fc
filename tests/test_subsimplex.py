"""The exact SPIGOT polytope of a labeled arc, ``{y >= 0, sum(y) <= 1}``, and the original
code's heuristic: optimal (a generic active-set QP solve and KKT), idempotent, shift-safe,
differentiable; and where the heuristic is not the projection."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import spigot
from spigot.projections import project_simplex, project_subsimplex
from spigot.structures.labeled_graph import _project_labels_heuristic


def qp_active_set(x: np.ndarray, A: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``argmin_y ||y - x||^2`` s.t. ``A y <= b`` by enumerating active sets: a generic QP solve.

    For each set ``W`` of at most ``d`` constraints held with equality, the KKT system
    ``[[I, A_W^T], [A_W, 0]] [y; lam] = [x; b_W]`` gives the closest point of that face's
    affine hull; the optimum is the closest one that is feasible (the optimum's own active set
    is among the ``W``: here any ``d`` of the constraints are linearly independent).
    """
    d = x.shape[0]
    best, best_d = None, np.inf
    for size in range(d + 1):
        for W in itertools.combinations(range(A.shape[0]), size):
            Aw = A[list(W)]
            K = np.block([[np.eye(d), Aw.T], [Aw, np.zeros((size, size))]])
            sol = np.linalg.solve(K, np.concatenate([x, b[list(W)]]))
            y = sol[:d]
            if (A @ y <= b + 1e-12).all() and ((y - x) ** 2).sum() < best_d:
                best, best_d = y, ((y - x) ** 2).sum()
    return best


def subsimplex_constraints(d: int) -> tuple[np.ndarray, np.ndarray]:
    """``-y_i <= 0`` for each ``i`` and ``sum(y) <= 1``."""
    return np.vstack([-np.eye(d), np.ones((1, d))]), np.concatenate([np.zeros(d), [1.0]])


def qp_subsimplex(x: torch.Tensor) -> torch.Tensor:
    A, b = subsimplex_constraints(x.shape[0])
    return torch.from_numpy(qp_active_set(x.double().numpy(), A, b))


def assert_kkt(x: torch.Tensor, p: torch.Tensor, tol: float = 1e-10) -> None:
    """``p = max(x - lam, 0)``, ``lam >= 0``, ``lam (sum p - 1) = 0``, ``p`` feasible."""
    assert bool((p >= 0).all()) and float(p.sum()) <= 1 + tol
    if float(p.sum()) < 1 - tol:  # lam = 0
        torch.testing.assert_close(p, x.clamp(min=0), atol=tol, rtol=0)
    else:
        lam = (x - p)[p > 0]
        assert float(lam.max() - lam.min()) < tol and float(lam.min()) >= -tol
        assert bool((x[p == 0] <= lam.max() + tol).all())


vectors = st.lists(st.floats(-4, 4, allow_nan=False), min_size=1, max_size=6)


@given(vectors)
def test_subsimplex_projection_is_the_qp_solution(xs):
    x = torch.tensor(xs, dtype=torch.float64)
    p = project_subsimplex(x)
    torch.testing.assert_close(p, qp_subsimplex(x), atol=1e-10, rtol=0)
    assert_kkt(x, p)
    torch.testing.assert_close(project_subsimplex(p), p, atol=1e-12, rtol=0)  # idempotent
    # the two regimes of the closed form
    if float(x.clamp(min=0).sum()) <= 1:
        assert torch.equal(p, x.clamp(min=0))
    else:
        torch.testing.assert_close(p, project_simplex(x), atol=1e-12, rtol=0)


def test_subsimplex_on_random_batches_masks_and_dims():
    g = torch.Generator().manual_seed(0)
    scale = torch.tensor([0.2, 0.5, 1.0, 3.0]).repeat_interleave(50).view(-1, 1).double()
    x = scale * torch.randn(200, 5, dtype=torch.float64, generator=g)
    mask = torch.rand(200, 5, generator=g) > 0.25
    x0 = x.clone()
    p = project_subsimplex(x, mask, dim=-1)
    assert torch.equal(x, x0)  # the caller's tensor is not modified
    active = 0
    for i in range(200):
        idx = mask[i].nonzero().flatten()
        assert bool((p[i, ~mask[i]] == 0).all())
        if len(idx) == 0:
            continue
        torch.testing.assert_close(p[i, idx], qp_subsimplex(x[i, idx]), atol=1e-10, rtol=0)
        assert_kkt(x[i, idx], p[i, idx])
        active += float(p[i].sum()) > 1 - 1e-12
    assert 40 < active < 160  # both regimes are exercised
    # along another dimension, and float32 agrees to its precision
    torch.testing.assert_close(project_subsimplex(x.T, mask.T, dim=0), p.T)
    torch.testing.assert_close(project_subsimplex(x.float(), mask).double(), p, atol=1e-6, rtol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_subsimplex_after_spigot_steps_with_many_labels(dtype):
    """SPIGOT's case: 58 labels, arcs on or off, a short step. The slices whose sum is active
    (the arcs that are on) get the sort-based simplex projection's result, the others
    ``max(x, 0)``; the in-place form gives the same in the caller's buffer."""
    from spigot.projections import project_subsimplex_

    g = torch.Generator().manual_seed(7)
    B, n, L = 4, 9, 58
    best = torch.randint(0, L, (B, n, n, 1), generator=g)
    on = torch.rand(B, n, n, 1, generator=g) < 0.2
    z = torch.zeros(B, n, n, L, dtype=dtype).scatter_(-1, best, 1.0) * on
    mask = (torch.rand(B, n, n, 1, generator=g) < 0.9).expand(B, n, n, L)
    for eta in (1e-4, 1e-2, 0.3, 3.0):
        x = z - eta * torch.randn(B, n, n, L, generator=g, dtype=torch.float64).to(dtype)
        p = project_subsimplex(x, mask)
        pos = torch.where(mask, x.clamp(min=0), 0)
        act = pos.sum(-1, keepdim=True) > 1
        assert 0 < int(act.sum()) < B * n * n  # both kinds of slices
        ref = torch.where(act, project_simplex(x, mask), pos)
        tol = 1e-6 if dtype == torch.float32 else 1e-12
        torch.testing.assert_close(p, ref, atol=tol, rtol=0)
        y = x.clone()
        assert project_subsimplex_(y, mask) is y and torch.equal(y, p)
    half = x.half()
    kept = half.clone()
    out = project_subsimplex_(half, mask)  # below float32: computed in a copy
    assert out.dtype == torch.float16 and torch.equal(half, kept)


def test_points_inside_are_fixed_and_the_corners_are_reached():
    inside = torch.tensor([[0.2, 0.3, 0.1], [0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.5, 0.5, 0.0]])
    assert torch.equal(project_subsimplex(inside), inside)
    x = torch.tensor([[-1.0, -2.0, -0.5], [3.0, 0.0, -1.0], [0.9, 0.9, -5.0], [0.6, -1.0, 0.2]])
    ref = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.5, 0.5, 0.0], [0.6, 0.0, 0.2]])
    torch.testing.assert_close(project_subsimplex(x), ref)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_subsimplex_is_safe_for_any_offset(dtype):
    # not shift-equivariant (the slack is anchored at 0), but with an offset c >= 2 every row
    # below is in the simplex regime, where it is, and with -c it projects to 0
    top = 20 if dtype == torch.float32 else 50
    d = torch.tensor([[0.0, 2.0], [0.0, 0.25], [1.0, 1.0], [0.5, -3.0]], dtype=dtype)
    ref = project_simplex(d)
    for k in range(1, top + 1):
        c = float(2**k)
        torch.testing.assert_close(project_subsimplex(d + c), ref, msg=f"offset 2^{k}")
        if k >= 2:
            assert torch.equal(project_subsimplex(d - c), torch.zeros_like(d))
    wide = torch.tensor([2e7, 2e7 + 2], dtype=dtype)
    torch.testing.assert_close(project_subsimplex(wide), torch.tensor([0.0, 1.0], dtype=dtype))
    flat = torch.full((3,), 1e8, dtype=dtype)
    torch.testing.assert_close(project_subsimplex(flat), torch.full((3,), 1 / 3, dtype=dtype))


def test_subsimplex_low_precision_is_computed_in_float32():
    g = torch.Generator().manual_seed(4)
    x = 2 * torch.randn(64, 4, generator=g)
    for dt in (torch.float16, torch.bfloat16):
        p = project_subsimplex(x.to(dt))
        assert p.dtype == dt
        ref = project_subsimplex(x.to(dt).float()).to(dt)
        assert torch.equal(p, ref)
        y = x.to(dt).requires_grad_(True)
        project_subsimplex(y).sum().backward()
        assert torch.isfinite(y.grad).all()


def test_subsimplex_gradcheck_and_closed_form_backward():
    g = torch.Generator().manual_seed(1)
    scale = torch.tensor([0.3, 3.0]).repeat_interleave(4).view(-1, 1).double()
    x = (scale * torch.randn(8, 5, dtype=torch.float64, generator=g)).requires_grad_(True)
    mask = torch.rand(8, 5, generator=g) > 0.2
    torch.autograd.gradcheck(lambda t: project_subsimplex(t, mask, dim=-1), (x,))
    torch.autograd.gradcheck(lambda t: project_subsimplex(t, None, dim=0), (x,))
    # the Jacobian: identity on the support without the sum constraint, centred with it
    p = project_subsimplex(x.detach(), mask)
    up = torch.randn(x.shape, dtype=torch.float64, generator=g)
    (dx,) = torch.autograd.grad(project_subsimplex(x, mask), x, grad_outputs=up)
    for i in range(8):
        S = p[i] > 0
        want = torch.where(S, up[i], 0)
        if float(p[i].sum()) > 1 - 1e-12:
            want = torch.where(S, up[i] - up[i][S].mean(), 0)
        torch.testing.assert_close(dx[i], want)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_subsimplex_rejects_non_finite_valid_entries(bad):
    x = torch.tensor([[0.5, bad, 0.1]])
    with pytest.raises(ValueError, match="`x` must be finite"):
        project_subsimplex(x)
    p = project_subsimplex(x, torch.tensor([True, False, True]))
    torch.testing.assert_close(p, torch.tensor([[0.5, 0.0, 0.1]]))
    before = x.clone()
    project_subsimplex(x, torch.tensor([True, False, True]))
    assert torch.equal(x.isnan(), before.isnan())


# -- the structure's projection --------------------------------------------------------------
def test_labeled_graph_projection_is_per_arc_and_zero_off_the_arcs():
    graph = spigot.LabeledDependencyGraph()
    x = 2 * torch.randn(2, 4, 4, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    lengths = torch.tensor([3, 2])
    p = graph.project(x, lengths)
    mask = graph.mask(x, lengths)
    assert bool((p[~mask] == 0).all())
    for b, h, m in itertools.product(range(2), range(4), range(4)):
        if bool(mask[b, h, m, 0]):
            torch.testing.assert_close(p[b, h, m], qp_subsimplex(x[b, h, m]), atol=1e-10, rtol=0)


# -- the original code's heuristic -----------------------------------------------------------
def test_heuristic_differs_from_the_exact_projection_where_expected():
    # rows: (x, exact, heuristic) on two labels
    cases = [
        ([0.5, -0.7], [0.5, 0.0], [0.0, 0.0]),  # sum < 0: the heuristic turns the arc off
        ([1.2, -0.3], [1.0, 0.0], [0.9, 0.0]),  # sum(x+) > 1 > sum(x): it shrinks the arc
        ([0.8, -0.5], [0.8, 0.0], [0.3, 0.0]),  # inside after dropping the negative label
        ([2.0, 1.0], [1.0, 0.0], [1.0, 0.0]),  # sum >= 1: both are the simplex projection
        ([0.2, 0.3], [0.2, 0.3], [0.2, 0.3]),  # inside: both keep it
        ([-0.2, -0.3], [0.0, 0.0], [0.0, 0.0]),  # all negative: both give 0
    ]
    for x, exact, heur in cases:
        x = torch.tensor(x, dtype=torch.float64)
        ones = torch.ones_like(x, dtype=torch.bool)
        p, q = project_subsimplex(x), _project_labels_heuristic(x, ones)
        torch.testing.assert_close(p, torch.tensor(exact, dtype=torch.float64))
        torch.testing.assert_close(p, qp_subsimplex(x), atol=1e-12, rtol=0)  # optimal
        torch.testing.assert_close(q, torch.tensor(heur, dtype=torch.float64))
        if exact != heur:  # feasible but farther from x than the optimum
            assert float((q - x).norm()) > float((p - x).norm()) + 1e-3


@given(vectors)
def test_heuristic_is_feasible_never_closer_and_equal_exactly_when_predicted(xs):
    x = torch.tensor(xs, dtype=torch.float64)
    p = project_subsimplex(x)
    q = _project_labels_heuristic(x, torch.ones_like(x, dtype=torch.bool))
    assert bool((q >= 0).all()) and float(q.sum()) <= 1 + 1e-12
    # p is the projection and q is feasible: ||q - x||^2 >= ||p - x||^2 + ||q - p||^2
    dq, dp, dqp = (float((a - b).pow(2).sum()) for a, b in ((q, x), (p, x), (q, p)))
    assert dq >= dp + dqp - 1e-12 * (1 + dq)
    # the arc totals: min(sum(x+), 1) exact, clip(sum(x), 0, 1) heuristic. They are equal iff
    # sum(x) >= 1, x >= 0 or x <= 0, and then so are the projections; otherwise they differ
    exact_total = min(float(x.clamp(min=0).sum()), 1.0)
    heuristic_total = min(max(float(x.sum()), 0.0), 1.0)
    assert float(p.sum()) == pytest.approx(exact_total, abs=1e-12)
    assert float(q.sum()) == pytest.approx(heuristic_total, abs=1e-12)
    if exact_total - heuristic_total <= 1e-10:
        torch.testing.assert_close(q, p, atol=1e-9, rtol=0)
    else:
        assert not (float(x.sum()) >= 1 or bool((x >= 0).all()) or bool((x <= 0).all()))
        assert float((p - q).abs().sum()) > 1e-10


def test_spigot_signal_that_the_heuristic_loses():
    # an arc that is off (z = 0) while the loss wants it on with label 0 and not with label 1:
    # g = [-1, 1], eta = 0.5, so the step is p = z - eta g = [0.5, -0.5]
    graph = spigot.LabeledDependencyGraph()
    s = torch.full((1, 2, 2, 2), -1.0, dtype=torch.float64, requires_grad=True)
    z = spigot.structured_argmax(s, graph, estimator="spigot", eta=0.5)
    g = torch.zeros(1, 2, 2, 2, dtype=torch.float64)
    g[0, 0, 1] = torch.tensor([-1.0, 1.0])
    (z * g).sum().backward()
    # exact: proj(p) = [0.5, 0], so dL/ds = z - proj = [-0.5, 0]: descent raises label 0
    assert s.grad[0, 0, 1].tolist() == [-0.5, 0.0]
    # heuristic: the arc total 0.5 - 0.5 = 0 clips to 0 and the labels to 0: no gradient at all
    p = z.detach() - 0.5 * g
    q = _project_labels_heuristic(p, graph.mask(p))
    assert torch.equal(z.detach() - q, torch.zeros_like(q))


def test_heuristic_with_an_explicit_arc_coordinate():
    # the original kept the arc as its own variable: the labels go onto a * simplex, a clipped
    x = torch.tensor([[0.9, 0.3, -1.0], [0.9, 0.3, -1.0], [0.9, 0.3, -1.0]], dtype=torch.float64)
    arc = torch.tensor([[2.0], [0.4], [-1.0]], dtype=torch.float64)
    q = _project_labels_heuristic(x, torch.ones_like(x, dtype=torch.bool), arc)
    torch.testing.assert_close(q[0], project_simplex(x[0]))
    torch.testing.assert_close(q[1], 0.4 * project_simplex(x[1] / 0.4))
    torch.testing.assert_close(q.sum(-1), torch.tensor([1.0, 0.4, 0.0], dtype=torch.float64))
    assert torch.equal(q[2], torch.zeros(3, dtype=torch.float64))
