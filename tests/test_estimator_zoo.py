"""Every surrogate-gradient estimator equals its definition, computed by brute force.

Small cases: trees of n <= 4 words in all four configurations, arc-factored graphs of n = 2,
categoricals of K = 5. The reference argmaxes and marginals come from enumerating every
structure (tests/brute.py); randomness is replayed from the same seeded generator.
"""

from __future__ import annotations

import itertools

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import spigot
from brute import graph_oracle, tree_moments, tree_scores, trees
from spigot.estimators.perturbation import _noise

TREES = [
    spigot.DependencyTree(projective=p, single_root=r)
    for p, r in itertools.product((False, True), (True, False))
]
STRUCTURES = [spigot.Categorical(), spigot.DependencyGraph(), *TREES]


def brute_argmax(structure, s):
    """The highest-scoring structure of one instance, by enumeration."""
    if isinstance(structure, spigot.Categorical):
        return torch.nn.functional.one_hot(s.argmax(-1), s.shape[-1]).to(s.dtype)
    n = s.shape[-1] - 1
    if isinstance(structure, spigot.DependencyGraph):
        mask = structure.mask(s.unsqueeze(0))[0]
        return ((s > 0) & mask).to(s.dtype)
    ts = trees(n, structure.projective, structure.single_root)
    best = ts[int(tree_scores(s, ts).argmax())]
    z = torch.zeros_like(s)
    z[list(best[1:]), list(range(1, n + 1))] = 1.0
    return z


def brute_marginals(structure, s):
    if isinstance(structure, spigot.Categorical):
        return torch.softmax(s, -1)
    if isinstance(structure, spigot.DependencyGraph):
        return graph_oracle(s)[2]
    return tree_moments(s, structure.projective, structure.single_root)[0]


def brute_vjp(structure, s, g):
    if isinstance(structure, spigot.Categorical):
        p = torch.softmax(s, -1)
        return p * (g - (p * g).sum(-1, keepdim=True))
    if isinstance(structure, spigot.DependencyGraph):
        p = torch.sigmoid(s)
        return torch.where(structure.mask(s.unsqueeze(0))[0], g * p * (1 - p), 0)
    _, cov = tree_moments(s, structure.projective, structure.single_root)
    return (cov @ g.reshape(-1)).view_as(s)


def instance(structure, seed):
    g = torch.Generator().manual_seed(seed)
    if isinstance(structure, spigot.Categorical):
        shape = (1, 5)
    elif isinstance(structure, spigot.DependencyGraph):
        shape = (1, 3, 3)
    else:
        shape = (1, 5, 5)
    s = torch.randn(shape, generator=g, dtype=torch.float64)
    up = torch.randn(shape, generator=g, dtype=torch.float64)
    mask = structure.mask(s)
    return s, torch.where(mask, up, 0), mask


def run(structure, estimator, s, up, **options):
    x = s.clone().requires_grad_(True)
    z = spigot.structured_argmax(x, structure, estimator=estimator, **options)
    (grad,) = torch.autograd.grad(z, x, grad_outputs=up)
    return z.detach(), grad


@pytest.mark.parametrize("structure", STRUCTURES, ids=repr)
@given(seed=st.integers(0, 2**31 - 1))
def test_smoothed_estimators_equal_their_definitions(structure, seed):
    s, up, mask = instance(structure, seed)
    z_ref = brute_argmax(structure, s[0])
    mu = brute_marginals(structure, s[0])
    z, grad = run(structure, "ste-marginals", s, up)
    assert torch.equal(z[0], z_ref)
    torch.testing.assert_close(grad[0], brute_vjp(structure, s[0], up[0]))
    for gamma in (0.3, 2.0):
        _, grad = run(structure, "spigot-ce", s, up, gamma=gamma)
        ref = mu - structure.project((mu - gamma * up[0]).unsqueeze(0))[0]
        torch.testing.assert_close(grad[0], torch.where(mask[0], ref, 0))
        _, grad = run(structure, "spigot-eg", s, up, gamma=gamma)
        ref = mu - brute_marginals(structure, s[0] - gamma * up[0])
        torch.testing.assert_close(grad[0], torch.where(mask[0], ref, 0))


@pytest.mark.parametrize("structure", STRUCTURES, ids=repr)
@given(seed=st.integers(0, 2**31 - 1))
def test_blackbox_equals_its_definition(structure, seed):
    s, up, mask = instance(structure, seed)
    for lam in (0.5, 5.0):
        z, grad = run(structure, "blackbox", s, up, lam=lam)
        ref = (brute_argmax(structure, s[0]) - brute_argmax(structure, s[0] - lam * up[0])) / lam
        torch.testing.assert_close(grad[0], torch.where(mask[0], ref, 0))


@pytest.mark.parametrize("structure", STRUCTURES, ids=repr)
@pytest.mark.parametrize("noise", ["gumbel", "normal"])
def test_perturbed_equals_its_definition_with_replayed_noise(structure, noise):
    s, up, mask = instance(structure, 7)
    K, sigma = 6, 0.7
    gen = torch.Generator().manual_seed(3)
    z, grad = run(structure, "perturbed", s, up, samples=K, sigma=sigma, noise=noise, generator=gen)
    eps = _noise(noise, (K, *s.shape), s, torch.Generator().manual_seed(3), 1.0)
    eps = torch.where(mask, eps, 0)
    zs = torch.stack([brute_argmax(structure, (s + sigma * e)[0]) for e in eps])
    torch.testing.assert_close(z[0], zs.mean(0))
    grad_nu = eps[:, 0] if noise == "normal" else 1 - torch.exp(-eps[:, 0])
    dims = tuple(range(1, zs.dim()))
    dot = (zs * up[0]).sum(dims).view(-1, *([1] * (zs.dim() - 1)))
    ref = (dot * grad_nu).mean(0) / sigma
    torch.testing.assert_close(grad[0], torch.where(mask[0], ref, 0))


@pytest.mark.parametrize("structure", STRUCTURES, ids=repr)
def test_imle_equals_its_definition_with_replayed_noise(structure):
    s, up, mask = instance(structure, 11)
    K, lam, tau, k = 4, 2.0, 0.5, 2.0
    gen = torch.Generator().manual_seed(5)
    z, grad = run(structure, "imle", s, up, samples=K, lam=lam, tau=tau, k=k, generator=gen)
    eps = tau * _noise("sog", (K, *s.shape), s, torch.Generator().manual_seed(5), k)
    eps = torch.where(mask, eps, 0)[:, 0]
    zs = torch.stack([brute_argmax(structure, s[0] + e) for e in eps])
    zt = torch.stack([brute_argmax(structure, s[0] - lam * up[0] + e) for e in eps])
    torch.testing.assert_close(z[0], zs.mean(0))
    torch.testing.assert_close(grad[0], torch.where(mask[0], (zs - zt).mean(0), 0))


def test_signs_descend_the_loss_on_a_categorical():
    # L(z) = c . z: the true gradient of E[L(z(s + Gumbel))] = c . softmax(s) is J c; the
    # estimators must point the same way (I-MLE with small lam approaches lam J c; blackbox and
    # perturbed too), so that a step against them lowers the expected loss
    s = torch.tensor([[0.5, -0.2, 0.1, 1.0, -1.0]], dtype=torch.float64)
    c = torch.tensor([[0.3, -1.0, 0.8, 1.5, 0.0]], dtype=torch.float64)
    p = torch.softmax(s, -1)
    true = p * (c - (p * c).sum())
    gen = torch.Generator().manual_seed(0)
    cat = spigot.Categorical()
    _, g_imle = run(cat, "imle", s, c, samples=20000, lam=0.3, generator=gen)
    _, g_pert = run(cat, "perturbed", s, c, samples=20000, generator=gen)
    for est in (g_imle, g_pert):
        cos = float((est * true).sum() / (est.norm() * true.norm()))
        assert cos > 0.95, cos
    # blackbox: the argmax (category 3) is the costliest; its gradient pushes its score down
    _, g_bb = run(cat, "blackbox", s, c, lam=2.0)
    assert float(g_bb[0, 3]) > 0 and float(g_bb.sum()) == 0.0


def test_randomness_is_reproducible_and_options_are_validated():
    s, up, _ = instance(TREES[0], 1)
    for est in ("perturbed", "imle"):
        a = run(TREES[0], est, s, up, generator=torch.Generator().manual_seed(9))
        b = run(TREES[0], est, s, up, generator=torch.Generator().manual_seed(9))
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
        torch.manual_seed(4)
        c = run(TREES[0], est, s, up)
        torch.manual_seed(4)
        d = run(TREES[0], est, s, up)
        assert torch.equal(c[1], d[1])
    bad = [
        ("perturbed", {"noise": "uniform"}, "`noise` must be one of gumbel, normal"),
        ("perturbed", {"samples": 0}, "`samples` must be a positive integer"),
        ("imle", {"generator": 3}, "`generator` must be None or a torch.Generator"),
        ("blackbox", {"lam": -1.0}, "`lam` must be a positive"),
        ("spigot-eg", {"eta": 1.0}, "has no option 'eta' \\(its options: gamma\\)"),
    ]
    for est, opts, msg in bad:
        with pytest.raises(ValueError, match=msg):
            spigot.structured_argmax(s, TREES[0], estimator=est, **opts)


@pytest.mark.parametrize("estimator", ["perturbed", "imle"])
def test_padded_batches_of_random_estimators_are_valid_mixtures(estimator):
    tree = spigot.DependencyTree()
    s = torch.randn(3, 6, 6, dtype=torch.float64)
    lengths = torch.tensor([5, 2, 3])
    z = spigot.structured_argmax(s, tree, estimator=estimator, lengths=lengths, samples=5)
    mask = tree.mask(s, lengths)
    assert torch.all(z[~mask] == 0)
    cols = z.sum(1)  # every word's heads form a distribution: a mean of trees
    for b, L in enumerate(lengths.tolist()):
        torch.testing.assert_close(cols[b, 1 : L + 1], torch.ones(L, dtype=z.dtype))


@pytest.mark.parametrize("structure", STRUCTURES, ids=repr)
def test_perturbed_fenchel_young_loss_equals_its_definition(structure):
    s, _, mask = instance(structure, 13)
    target = brute_argmax(structure, torch.randn(s.shape, dtype=s.dtype)[0]).unsqueeze(0)
    K, sigma = 5, 0.5
    x = s.clone().requires_grad_(True)
    loss = spigot.perturbed_fenchel_young_loss(
        x, target, structure, samples=K, sigma=sigma, generator=torch.Generator().manual_seed(2)
    )
    assert loss.shape == (1,)
    loss.sum().backward()
    eps = _noise("gumbel", (K, *s.shape), s, torch.Generator().manual_seed(2), 1.0)
    eps = torch.where(mask, eps, 0)[:, 0]
    ps = s[0] + sigma * eps
    zs = torch.stack([brute_argmax(structure, p) for p in ps])
    value = (ps * zs).flatten(1).sum(1).mean() - (s[0] * target[0]).sum()
    torch.testing.assert_close(loss[0], value)
    torch.testing.assert_close(x.grad[0], torch.where(mask[0], zs.mean(0) - target[0], 0))
    with pytest.raises(ValueError, match="`target` must be a tensor"):
        spigot.perturbed_fenchel_young_loss(s, target[..., :1], structure)


@pytest.mark.parametrize("alpha", [0.5, 1.0, 2.5, 3.0])
def test_gamma_sampler_has_the_gamma_moments(alpha):
    from spigot.estimators.perturbation import _gamma

    x = _gamma(
        alpha, (100_000,), torch.Generator().manual_seed(0), torch.empty((), dtype=torch.float64)
    )
    # Gamma(alpha, 1): mean = variance = alpha (5 standard errors)
    assert abs(float(x.mean()) - alpha) < 5 * (alpha / 1e5) ** 0.5
    assert abs(float(x.var()) - alpha) < 5 * (6 * alpha**2 / 1e5) ** 0.5 + 0.02 * alpha


@pytest.mark.parametrize("structure", TREES, ids=repr)
def test_spigot_on_the_marginal_polytope_projects_onto_the_convex_hull(structure):
    import numpy as np

    from test_marginal_polytope import qp_hull, tree_matrix

    s, up, mask = instance(structure, 17)
    for eta in (0.5, 3.0):
        z, grad = run(structure, "spigot", s, up, eta=eta, polytope="marginal")
        V = tree_matrix(4, structure.projective, structure.single_root)
        mu, _ = qp_hull(V, (z[0] - eta * up[0]).reshape(-1).numpy())
        ref = z[0] - torch.from_numpy(np.asarray(mu)).view_as(z[0])
        torch.testing.assert_close(grad[0], torch.where(mask[0], ref, 0), atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="`polytope` must be one of relaxed, marginal"):
        spigot.structured_argmax(s, structure, polytope="exact")
