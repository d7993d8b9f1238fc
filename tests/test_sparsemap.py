"""The sparsemap estimator: forward = the generic QP over the enumerated trees, backward = the
exact active-set Jacobian (gradcheck, symmetric projection), zero gradient off the mask."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import spigot
from test_marginal_polytope import CONFIGS, IDS, qp_hull, tree_matrix


@pytest.mark.parametrize(("projective", "single_root"), CONFIGS, ids=IDS)
def test_forward_is_the_projection_of_the_scores(projective, single_root):
    tree = spigot.DependencyTree(projective, single_root)
    g = torch.Generator().manual_seed(21)
    lengths = torch.tensor([4, 3, 2])
    s = 1.5 * torch.randn(3, 5, 5, dtype=torch.float64, generator=g)
    mu = spigot.structured_argmax(s, tree, estimator="sparsemap", lengths=lengths)
    for b, L in enumerate(lengths.tolist()):
        V = tree_matrix(L, projective, single_root)
        ref, w = qp_hull(V, s[b, : L + 1, : L + 1].numpy().reshape(-1))
        np.testing.assert_allclose(
            mu[b, : L + 1, : L + 1].detach().numpy().reshape(-1), ref, atol=1e-6, rtol=0
        )
    # sparse: a mixture of few trees, far fewer than the enumeration holds
    _, info = tree.project(s, lengths, polytope="marginal", return_info=True)
    assert int((info.weights[0] > 0).sum()) < len(tree_matrix(4, projective, single_root))


def _stable_scores(tree, n: int, seed: int) -> torch.Tensor:
    """Scores whose active set is stable under gradcheck's perturbations (weights and the
    margin of the best inactive tree away from 0)."""
    g = torch.Generator().manual_seed(seed)
    for _ in range(50):
        s = 1.5 * torch.randn(2, n + 1, n + 1, dtype=torch.float64, generator=g)
        _, info = tree.project(s, polytope="marginal", return_info=True)
        w = info.weights[info.weights > 0]
        if float(w.min()) > 1e-3:
            return s
    raise AssertionError("no stable point found")


@pytest.mark.parametrize(("projective", "single_root"), CONFIGS, ids=IDS)
def test_gradcheck(projective, single_root):
    tree = spigot.DependencyTree(projective, single_root)
    s = _stable_scores(tree, 3, seed=1)[:1].requires_grad_(True)

    def f(t):
        return spigot.structured_argmax(t, tree, estimator="sparsemap")

    assert torch.autograd.gradcheck(f, (s,), eps=1e-6, atol=1e-7)
    # also through structure.project(polytope="marginal")
    g = lambda t: tree.project(t, polytope="marginal")  # noqa: E731
    assert torch.autograd.gradcheck(g, (s,), fast_mode=True)


def test_jacobian_is_an_orthogonal_projection_onto_the_active_face():
    tree = spigot.DependencyTree(single_root=False)
    s = _stable_scores(tree, 3, seed=4)[:1]
    mask = tree.mask(s).flatten()
    J = torch.autograd.functional.jacobian(
        lambda t: spigot.structured_argmax(t, tree, estimator="sparsemap").flatten(), s
    ).reshape(16, 16)
    torch.testing.assert_close(J, J.T, atol=1e-12, rtol=0)
    torch.testing.assert_close(J @ J, J, atol=1e-12, rtol=0)
    assert bool((J[~mask] == 0).all()) and bool((J[:, ~mask] == 0).all())
    # its range: the directions z_i - z_j of the active trees
    _, info = tree.project(s, polytope="marginal", return_info=True)
    Z = info.structures[0][info.weights[0] > 0].flatten(1).double()
    D = (Z[1:] - Z[:1]).T
    torch.testing.assert_close(J @ D, D, atol=1e-12, rtol=0)
    assert int(torch.linalg.matrix_rank(J)) == Z.shape[0] - 1


@pytest.mark.parametrize(("projective", "single_root"), CONFIGS, ids=IDS)
def test_gradient_is_zero_off_the_mask(projective, single_root):
    tree = spigot.DependencyTree(projective, single_root)
    g = torch.Generator().manual_seed(8)
    lengths = torch.tensor([4, 2])
    s = torch.randn(2, 5, 5, generator=g)
    mask = tree.mask(s, lengths)
    s = torch.where(mask, s, torch.nan).requires_grad_(True)  # never read
    mu = spigot.structured_argmax(s, tree, estimator="sparsemap", lengths=lengths)
    assert mu.dtype == torch.float32 and bool((mu[~mask] == 0).all())
    (mu * torch.randn(2, 5, 5, generator=g)).sum().backward()
    assert bool(torch.isfinite(s.grad).all())
    assert bool((s.grad[~mask] == 0).all())
    assert bool((s.grad[mask] != 0).any())


def test_graph_and_categorical_use_the_closed_forms():
    g = torch.Generator().manual_seed(6)
    s = (2 * torch.randn(2, 4, 4, dtype=torch.float64, generator=g)).requires_grad_(True)
    graph = spigot.DependencyGraph()
    mu = spigot.structured_argmax(s, graph, estimator="sparsemap")
    torch.testing.assert_close(mu, graph.project(s.detach()))
    v = torch.randn(2, 4, 4, dtype=torch.float64, generator=g)
    (gs,) = torch.autograd.grad((mu * v).sum(), s)
    inside = graph.mask(s) & (s > 0) & (s < 1)
    torch.testing.assert_close(gs, torch.where(inside, v, 0))
    y = torch.randn(3, 6, dtype=torch.float64, generator=g, requires_grad=True)
    p = spigot.structured_argmax(y, spigot.Categorical(), estimator="sparsemap")
    torch.testing.assert_close(p, spigot.project_simplex(y.detach()))
    torch.autograd.gradcheck(
        lambda t: spigot.structured_argmax(t, spigot.Categorical(), estimator="sparsemap"), (y,)
    )


def test_registered_with_options_and_module_form():
    assert "sparsemap" in spigot.ESTIMATORS
    assert set(spigot.ESTIMATORS["sparsemap"].options) == {"max_iter", "tol"}
    tree = spigot.DependencyTree()
    s = torch.randn(2, 5, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="max_iter"):
        spigot.structured_argmax(s, tree, estimator="sparsemap", max_iter=0)
    with pytest.raises(ValueError, match="eta"):
        spigot.structured_argmax(s, tree, estimator="sparsemap", eta=1.0)
    layer = spigot.StructuredArgmax(tree, estimator="sparsemap", max_iter=50, tol=1e-10)
    torch.testing.assert_close(layer(s), tree.project(s, polytope="marginal"))
    with pytest.warns(RuntimeWarning, match="max_iter=2"):
        spigot.structured_argmax(3 * s, tree, estimator="sparsemap", max_iter=2)
