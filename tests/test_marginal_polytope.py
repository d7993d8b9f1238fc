"""The exact projection onto the marginal polytope conv(Z): against a generic QP over the
enumerated trees (n <= 4), feasibility, fixed points, idempotence, batching, the cap report."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import spigot
from brute import heads_of, tree_oracle, trees
from spigot.marginal_polytope import ProjectionInfo, project_marginal

CONFIGS = [(p, r) for p in (False, True) for r in (True, False)]
IDS = [f"{'proj' if p else 'nonproj'}-{'single' if r else 'multi'}" for p, r in CONFIGS]


def tree_matrix(n: int, projective: bool, single_root: bool) -> np.ndarray:
    """Every tree over ``n`` words as a row of 0/1 arcs, flattened ``[N, (n+1)^2]``."""
    ts = trees(n, projective, single_root)
    V = np.zeros((len(ts), n + 1, n + 1))
    for k, t in enumerate(ts):
        V[k, list(t[1:]), list(range(1, n + 1))] = 1.0
    return V.reshape(len(ts), -1)


def qp_hull(V: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``argmin_{w in simplex} ||V^T w - x||^2`` over the explicit vertex list ``V [N, D]``.

    A generic dense QP solver, independent of the library: Wolfe's (1976) min-norm-point
    active-set method on the shifted points ``V - x``, searching all ``N`` vertices at every
    step, in float64 NumPy. Returns ``(mu, w [N])``.
    """
    Y = V - x
    S = [int(np.argmin((Y * Y).sum(1)))]
    lam = np.ones(1)
    for _ in range(10 * len(V) + 10):
        p = lam @ Y[S]
        j = int(np.argmin(Y @ p))
        if p @ p - Y[j] @ p <= 1e-15 * max(1.0, float((Y * Y).sum(1).max())) or j in S:
            break
        S, lam = [*S, j], np.append(lam, 0.0)
        while True:
            k = len(S)
            A = np.zeros((k + 1, k + 1))
            A[:k, :k] = Y[S] @ Y[S].T
            A[:k, k] = A[k, :k] = 1.0
            v = np.linalg.solve(A, np.append(np.zeros(k), 1.0))[:k]
            if (v > 1e-15).all():
                lam = v
                break
            neg = v <= 1e-15
            theta = np.min(lam[neg] / (lam[neg] - v[neg]))
            lam = lam + theta * (v - lam)
            keep = lam > 1e-15
            S, lam = [s for s, kp in zip(S, keep, strict=True) if kp], lam[keep] / lam[keep].sum()
    w = np.zeros(len(V))
    w[S] = lam
    return w @ V, w


def certificate(V: np.ndarray, x: np.ndarray, mu: np.ndarray) -> float:
    """``max_z (x - mu)·(z - mu)`` over every vertex: <= 0 iff ``mu`` is the projection
    (given ``mu`` in conv(Z)); ``||mu - mu*|| <= sqrt(2 max(gap, 0))`` in general."""
    r = x - mu
    return float((V @ r).max() - r @ mu)


def check_info(info: ProjectionInfo, mu: torch.Tensor, lengths, projective, single_root):
    """Active-set weights >= 0, sum to 1, reproduce mu; its structures are trees of the kind."""
    w = info.weights
    assert bool((w >= 0).all())
    torch.testing.assert_close(w.sum(-1), torch.ones_like(w.sum(-1)), atol=1e-12, rtol=0)
    recon = (w[..., None, None] * info.structures.double()).sum(1)
    torch.testing.assert_close(recon, mu.double(), atol=1e-12, rtol=0)
    ref = spigot.DependencyTree(projective, single_root)
    for b, L in enumerate(lengths.tolist()):
        for k in torch.nonzero(w[b] > 0).flatten().tolist():
            z = info.structures[b, k, : L + 1, : L + 1]
            heads = torch.tensor([heads_of(z)])
            ref.from_heads(heads)  # raises unless a tree of this kind
            assert float(info.structures[b, k].sum()) == L


@pytest.mark.parametrize(("projective", "single_root"), CONFIGS, ids=IDS)
def test_matches_generic_qp_over_enumerated_trees(projective, single_root):
    tree = spigot.DependencyTree(projective, single_root)
    g = torch.Generator().manual_seed(7)
    lengths = torch.tensor([4, 3, 2, 1, 4, 4])
    x = 2 * torch.randn(6, 5, 5, dtype=torch.float64, generator=g)
    # SPIGOT-like points: a tree minus a Gaussian step
    z = tree.argmax(torch.randn(6, 5, 5, dtype=torch.float64, generator=g), lengths)
    x[4:] = z[4:] - torch.randn(2, 5, 5, dtype=torch.float64, generator=g)
    mu, info = tree.project(x, lengths, polytope="marginal", return_info=True)
    assert bool(info.converged.all())
    check_info(info, mu, lengths, projective, single_root)
    for b, L in enumerate(lengths.tolist()):
        V = tree_matrix(L, projective, single_root)
        xb = x[b, : L + 1, : L + 1].numpy().reshape(-1)
        ref, _ = qp_hull(V, xb)
        got = mu[b, : L + 1, : L + 1].numpy().reshape(-1)
        np.testing.assert_allclose(got, ref, atol=1e-6, rtol=0)
        assert certificate(V, xb, ref) <= 1e-10  # the reference is optimal too
        assert certificate(V, xb, got) <= 1e-10
        assert float(mu[b].abs().sum() - mu[b, : L + 1, : L + 1].abs().sum()) == 0.0


@settings(max_examples=25, deadline=None)
@given(
    st.lists(st.floats(-4, 4, allow_nan=False, width=64), min_size=16, max_size=16),
    st.sampled_from(CONFIGS),
)
def test_random_points_against_the_generic_qp(values, config):
    projective, single_root = config
    tree = spigot.DependencyTree(projective, single_root)
    x = torch.zeros(1, 4, 4, dtype=torch.float64)
    x[0, :, 1:] = torch.tensor(values[:12], dtype=torch.float64).view(4, 3)
    mu = tree.project(x, polytope="marginal")
    V = tree_matrix(3, projective, single_root)
    xv = x[0].numpy().reshape(-1) * (tree.mask(x)[0].numpy().reshape(-1))
    ref, _ = qp_hull(V, xv)
    np.testing.assert_allclose(mu[0].numpy().reshape(-1), ref, atol=1e-6, rtol=0)
    assert certificate(V, xv, mu[0].numpy().reshape(-1)) <= 1e-10


@pytest.mark.parametrize(("projective", "single_root"), CONFIGS, ids=IDS)
def test_points_of_the_polytope_are_fixed_and_projection_is_idempotent(projective, single_root):
    tree = spigot.DependencyTree(projective, single_root)
    g = torch.Generator().manual_seed(3)
    s = torch.randn(3, 5, 5, dtype=torch.float64, generator=g)
    lengths = torch.tensor([4, 3, 4])
    marg = tree.marginals(s, lengths)  # interior points: mixtures of many trees
    torch.testing.assert_close(tree.project(marg, lengths, polytope="marginal"), marg)
    zs = [tree.argmax(torch.randn(3, 5, 5, dtype=torch.float64, generator=g), lengths)]
    zs += [tree.argmax(torch.randn(3, 5, 5, dtype=torch.float64, generator=g), lengths)]
    mix = 0.3 * zs[0] + 0.7 * zs[1]
    torch.testing.assert_close(tree.project(mix, lengths, polytope="marginal"), mix)
    for z in zs:
        assert torch.equal(tree.project(z, lengths, polytope="marginal"), z)
    x = 3 * torch.randn(3, 5, 5, dtype=torch.float64, generator=g)
    mu = tree.project(x, lengths, polytope="marginal")
    torch.testing.assert_close(tree.project(mu, lengths, polytope="marginal"), mu)


@pytest.mark.parametrize(("projective", "single_root"), CONFIGS, ids=IDS)
def test_padded_batch_equals_one_by_one(projective, single_root):
    tree = spigot.DependencyTree(projective, single_root)
    g = torch.Generator().manual_seed(11)
    lengths = torch.tensor([6, 2, 5, 1, 3])
    x = 2 * torch.randn(5, 7, 7, dtype=torch.float64, generator=g)
    mask = tree.mask(x, lengths)
    x_garbage = torch.where(mask, x, torch.nan)  # off the valid arcs nothing is read
    mu, info = tree.project(x_garbage, lengths, polytope="marginal", return_info=True)
    assert bool((mu[~mask] == 0).all())
    for b, L in enumerate(lengths.tolist()):
        one, info1 = tree.project(
            x[b : b + 1, : L + 1, : L + 1], polytope="marginal", return_info=True
        )
        torch.testing.assert_close(mu[b : b + 1, : L + 1, : L + 1], one, atol=1e-12, rtol=0)
        assert int(info.iterations[b]) == int(info1.iterations[0])


def test_iteration_cap_is_reported():
    tree = spigot.DependencyTree()
    x = 2 * torch.randn(4, 6, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    with pytest.warns(RuntimeWarning, match=r"stopped at max_iter=2 argmax calls") as rec:
        mu, info = tree.project(x, polytope="marginal", max_iter=2, return_info=True)
    msg = str(rec[0].message)
    capped = ~info.converged
    assert f"{int(capped.sum())} stopped at max_iter=2" in msg
    assert bool(capped.any()) and bool((info.iterations[capped] == 2).all())
    assert f"{float(info.gap[capped].max()):.3g}" in msg
    assert bool((info.gap[capped] > 0).all())
    # still a point of conv(Z): its weights reproduce it
    recon = (info.weights[..., None, None] * info.structures).sum(1)
    torch.testing.assert_close(recon, mu, atol=1e-12, rtol=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _, info = tree.project(x, polytope="marginal", return_info=True)
    assert bool(info.converged.all()) and int(info.iterations.max()) > 2


def test_solver_function_float32_and_gap_bound():
    tree = spigot.DependencyTree(projective=True)
    g = torch.Generator().manual_seed(2)
    x = torch.randn(3, 5, 5, generator=g)
    mu, info = project_marginal(tree, x, return_info=True)
    assert mu.dtype == torch.float32 and info.structures.dtype == torch.float32
    ref = tree.project(x.double(), polytope="marginal")
    torch.testing.assert_close(mu, ref.float())
    assert bool((info.gap <= 1e-9).all()) and info.iterations.dtype == torch.long


def test_graph_labeled_graph_and_categorical_marginal_is_the_relaxed_projection():
    g = torch.Generator().manual_seed(4)
    x = 2 * torch.randn(2, 4, 4, dtype=torch.float64, generator=g)
    lengths = torch.tensor([3, 2])
    graph = spigot.DependencyGraph()
    relaxed = graph.project(x, lengths)
    assert torch.equal(graph.project(x, lengths, polytope="marginal"), relaxed)
    # the active-set solver on the cube (return_info asks for it) lands on the same point
    mu, info = graph.project(x, lengths, polytope="marginal", return_info=True)
    torch.testing.assert_close(mu, relaxed, atol=1e-10, rtol=0)
    assert bool(info.converged.all())
    cat = spigot.Categorical()
    y = 2 * torch.randn(2, 3, 5, dtype=torch.float64, generator=g)
    assert torch.equal(cat.project(y, polytope="marginal"), cat.project(y))
    mu, info = cat.project(y, polytope="marginal", return_info=True)
    torch.testing.assert_close(mu, cat.project(y), atol=1e-12, rtol=0)
    assert info.weights.shape[:2] == (2, 3) and info.structures.shape[:2] == (2, 3)
    recon = (info.weights.unsqueeze(-1) * info.structures).sum(-2)
    torch.testing.assert_close(recon, mu, atol=1e-12, rtol=0)
    # labeled graphs: a product of per-arc sets conv{0, e_1, ..., e_L}, so the closed form too
    labeled = spigot.LabeledDependencyGraph()
    assert labeled.relaxed_is_marginal
    w = 2 * torch.randn(2, 4, 4, 3, dtype=torch.float64, generator=g)
    relaxed = labeled.project(w, lengths)
    assert torch.equal(labeled.project(w, lengths, polytope="marginal"), relaxed)
    mu, info = labeled.project(w, lengths, polytope="marginal", return_info=True)
    torch.testing.assert_close(mu, relaxed, atol=1e-10, rtol=0)
    assert bool(info.converged.all())


def test_marginal_projection_is_exact_on_one_word_and_empty_batches():
    tree = spigot.DependencyTree()
    x = torch.randn(2, 2, 2, dtype=torch.float64)
    mu = tree.project(x, polytope="marginal")
    assert torch.equal(mu, tree.argmax(x))  # one word: a single tree
    empty = torch.zeros(0, 3, 3)
    assert tree.project(empty, polytope="marginal").shape == (0, 3, 3)


def test_bad_options():
    tree = spigot.DependencyTree()
    x = torch.randn(1, 3, 3)
    with pytest.raises(ValueError, match="polytope"):
        tree.project(x, polytope="exact")
    with pytest.raises(ValueError, match="polytope='marginal'"):
        tree.project(x, tol=1e-3)
    with pytest.raises(ValueError, match="max_iter"):
        tree.project(x, polytope="marginal", max_iter=1)
    with pytest.raises(ValueError, match="tol"):
        tree.project(x, polytope="marginal", tol=-1.0)


def test_oracle_matches_brute_force_best_tree_on_the_residual():
    """The solver's premise: at its answer no tree is better for the residual than mu."""
    tree = spigot.DependencyTree(single_root=False)
    x = 3 * torch.randn(1, 5, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(9))
    mu = tree.project(x, polytope="marginal")
    r = torch.where(tree.mask(x), x - mu, 0)[0]
    best, _, _ = tree_oracle(r, False, False)
    assert float(best) <= float((r * mu[0]).sum()) + 1e-10
