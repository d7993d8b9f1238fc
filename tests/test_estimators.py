"""Estimators: the SPIGOT identities, straight-through, pipeline, structured attention."""

from __future__ import annotations

import pytest
import torch

import spigot
from spigot.projections import project_simplex

STRUCTS = {
    "tree": spigot.DependencyTree(),
    "proj-tree": spigot.DependencyTree(projective=True, single_root=False),
    "graph": spigot.DependencyGraph(),
    "categorical": spigot.Categorical(),
}


def inputs(kind: str, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    if kind == "categorical":
        return torch.randn(3, 4, 6, dtype=torch.float64, generator=g), None
    return torch.randn(3, 6, 6, dtype=torch.float64, generator=g), torch.tensor([5, 2, 4])


def grad_of(kind, estimator, g, eta=None, seed=0):
    s, lengths = inputs(kind, seed)
    s.requires_grad_(True)
    opts = {} if eta is None else {"eta": eta}
    z = spigot.structured_argmax(s, STRUCTS[kind], estimator=estimator, lengths=lengths, **opts)
    (z * g).sum().backward()
    return s.grad, z.detach(), s.detach(), lengths


@pytest.mark.parametrize("kind", list(STRUCTS))
def test_zero_incoming_gradient_gives_zero(kind):
    s, _ = inputs(kind)
    grad, *_ = grad_of(kind, "spigot", torch.zeros_like(s))
    assert torch.equal(grad, torch.zeros_like(s))


@pytest.mark.parametrize("kind", list(STRUCTS))
def test_step_inside_polytope_gives_eta_g(kind):
    s, lengths = inputs(kind)
    structure = STRUCTS[kind]
    z = structure.argmax(s, lengths)
    mask = structure.mask(s, lengths)
    # g = c (z - u): z - eta g = (1 - eta c) z + eta c u stays in the polytope for eta c <= 1,
    # u = uniform over each modifier's valid heads (trees), 1/2 (graph), uniform (categorical)
    if kind == "graph":
        u = torch.where(mask, 0.5, 0.0).double()
    else:
        dim = -1 if kind == "categorical" else -2
        u = mask.double() / mask.double().sum(dim, keepdim=True).clamp(min=1)
    g = 0.3 * (z - u) * mask
    for eta in (None, 0.5, 2.0):
        grad, *_ = grad_of(kind, "spigot", g, eta=eta)
        torch.testing.assert_close(grad, (1.0 if eta is None else eta) * g)


@pytest.mark.parametrize("kind", list(STRUCTS))
@pytest.mark.parametrize("eta", [None, 1.0, 0.1])
def test_spigot_gradient_is_z_minus_projection(kind, eta):
    s, lengths = inputs(kind, seed=3)
    g = 3 * torch.randn_like(s)
    grad, z, s, lengths = grad_of(kind, "spigot", g, eta=eta, seed=3)
    structure = STRUCTS[kind]
    mask = structure.mask(s, lengths)
    if eta is None:  # per-structure norm over valid parts
        dims = (-1,) if kind == "categorical" else (-2, -1)
        norm = (g * mask).pow(2).sum(dims, keepdim=True).sqrt()
        eta_t = torch.clamp(1 / norm, max=1.0)
    else:
        eta_t = eta
    p = z - eta_t * g
    if kind == "graph":
        proj = torch.where(mask, p.clamp(0, 1), 0)
    elif kind == "categorical":
        proj = project_simplex(p, None, dim=-1)
    else:
        proj = project_simplex(p, mask, dim=-2)
    torch.testing.assert_close(grad, z - proj)


def toward_the_centre(lengths_of_g: list[float]) -> torch.Tensor:
    """``g [3, 6, 6]`` along ``z - u`` (the argmax tree minus the uniform point of each word's
    simplex) with per-sentence norms ``lengths_of_g``: steps ``-eta g`` of length up to
    ``||z - u||`` stay inside the polytope, where SPIGOT's gradient is ``eta g`` itself."""
    tree = spigot.DependencyTree()
    s, lengths = inputs("tree")
    z = tree.argmax(s, lengths)
    mask = tree.mask(s, lengths)
    u = mask.double() / mask.double().sum(-2, keepdim=True).clamp(min=1)
    direction = (z - u) * mask
    norms = direction.pow(2).sum((-2, -1)).sqrt()
    target = torch.tensor(lengths_of_g, dtype=torch.float64)
    return direction * (target / norms).view(3, 1, 1)


def test_default_eta_is_per_sentence_not_per_batch_or_row():
    # sentence 0: ||g|| = 0.5 (eta = 1); sentence 1: ||g|| = 10 (eta = 0.1); sentence 2: 4 (0.25)
    g = toward_the_centre([0.5, 10.0, 4.0])
    grad, *_ = grad_of("tree", "spigot", g)
    expected_eta = torch.tensor([1.0, 0.1, 0.25], dtype=torch.float64)
    # inside the polytope for these steps: grad = eta_b * g_b
    torch.testing.assert_close(grad, expected_eta.view(3, 1, 1) * g)
    # a per-batch norm (||g|| over everything) would give one eta for all three sentences
    batch_eta = 1 / float(g.pow(2).sum().sqrt())
    assert not torch.allclose(grad, batch_eta * g)


@pytest.mark.parametrize("max_step", [5 / 32, 0.3, 1.0])
def test_max_step_shortens_the_step_to_that_length(max_step):
    """eta = min(1, max_step / ||g||) per sentence: inside the polytope the gradient is g
    shortened to length max_step (sentences whose g is shorter keep it whole)."""
    target = torch.tensor([0.1, 0.6, 20.0], dtype=torch.float64)  # short, middling, long
    g = toward_the_centre(target.tolist())
    s, lengths = inputs("tree")
    s.requires_grad_(True)
    zz = spigot.structured_argmax(s, STRUCTS["tree"], lengths=lengths, max_step=max_step)
    (zz * g).sum().backward()
    length = s.grad.pow(2).sum((-2, -1)).sqrt()
    torch.testing.assert_close(length, torch.clamp(target, max=max_step))
    torch.testing.assert_close(s.grad, g * (length / target).view(3, 1, 1))
    if max_step == 1.0:  # the default is the rule without the option
        default, *_ = grad_of("tree", "spigot", g)
        torch.testing.assert_close(default, s.grad)


def test_max_step_errors():
    s, lengths = inputs("tree")
    for bad in (0.0, -1.0, float("nan"), "1"):
        with pytest.raises(ValueError, match="max_step"):
            spigot.structured_argmax(s, STRUCTS["tree"], lengths=lengths, max_step=bad)
    with pytest.raises(ValueError, match="max_step. bounds the step of the rule eta=None"):
        spigot.structured_argmax(s, STRUCTS["tree"], lengths=lengths, eta=0.5, max_step=0.2)


@pytest.mark.parametrize("kind", list(STRUCTS))
@pytest.mark.parametrize("eta", [None, 0.1])
def test_loss_scale_applies_spigot_to_the_summed_loss(kind, eta):
    # a loss divided by c sends g / c; with loss_scale = c the result is SPIGOT(g) / c
    s, lengths = inputs(kind, seed=4)
    g = 3 * torch.randn_like(s)
    c = 37.0
    full, *_ = grad_of(kind, "spigot", g, eta=eta, seed=4)
    s.requires_grad_(True)
    z = spigot.structured_argmax(
        s, STRUCTS[kind], estimator="spigot", lengths=lengths, eta=eta, loss_scale=c
    )
    (z * g / c).sum().backward()
    torch.testing.assert_close(s.grad, full / c)
    # without loss_scale the same g / c is a much smaller step: eta = 1 everywhere and the
    # result differs (the rule is not scale invariant)
    plain, *_ = grad_of(kind, "spigot", g / c, eta=eta, seed=4)
    if eta is None:
        assert not torch.allclose(plain, full / c)


def test_loss_scale_errors():
    s, lengths = inputs("tree")
    for bad in (0.0, -1.0, float("inf"), "3", True):
        with pytest.raises(ValueError, match="loss_scale"):
            spigot.structured_argmax(s, STRUCTS["tree"], lengths=lengths, loss_scale=bad)
    with pytest.raises(
        ValueError, match="'ste' has no option 'loss_scale' \\(its options: gamma\\)"
    ):
        spigot.structured_argmax(s, STRUCTS["tree"], estimator="ste", loss_scale=2.0)


def test_straight_through_and_pipeline():
    s, lengths = inputs("tree")
    g = torch.randn_like(s)
    grad, *_ = grad_of("tree", "ste", g)
    # g itself on the arcs a tree may have, exactly 0 on the diagonal, column 0 and padding
    mask = STRUCTS["tree"].mask(s, lengths)
    torch.testing.assert_close(grad, torch.where(mask, g, 0))
    # a pipeline's z is a plain tensor: no grad_fn, so no hook ever sees a None gradient
    z = spigot.structured_argmax(s.requires_grad_(True), STRUCTS["tree"], estimator="pipeline")
    assert not z.requires_grad and z.grad_fn is None


@pytest.mark.parametrize("kind", list(STRUCTS))
def test_marginals_estimator_forward_and_gradcheck(kind):
    s, lengths = inputs(kind)
    structure = STRUCTS[kind]
    mu = spigot.structured_argmax(s, structure, estimator="marginals", lengths=lengths)
    torch.testing.assert_close(mu, structure.marginals(s, lengths))
    x = s.clone().requires_grad_(True)
    torch.autograd.gradcheck(
        lambda t: spigot.structured_argmax(t, structure, estimator="marginals", lengths=lengths),
        (x,),
    )


@pytest.mark.parametrize("kind", list(STRUCTS))
def test_hard_estimators_return_the_argmax(kind):
    s, lengths = inputs(kind)
    structure = STRUCTS[kind]
    for est in ("pipeline", "ste", "spigot"):
        z = spigot.structured_argmax(s, structure, estimator=est, lengths=lengths)
        assert torch.equal(z, structure.argmax(s, lengths))


def test_module_matches_function_and_repr():
    tree = spigot.DependencyTree()
    layer = spigot.StructuredArgmax(tree, estimator="spigot", eta=0.5)
    s, lengths = inputs("tree")
    assert torch.equal(layer(s, lengths), tree.argmax(s, lengths))
    assert "spigot" in repr(layer) and "DependencyTree" in repr(layer)


def test_graph_and_categorical_against_enumeration():
    from brute import graph_oracle

    graph = spigot.DependencyGraph()
    s = torch.randn(1, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(7))
    best, logz, mu = graph_oracle(s[0])
    z = graph.argmax(s)
    assert float(graph.score(s, z)) == pytest.approx(float(best))
    torch.testing.assert_close(graph.log_partition(s)[0], logz)
    torch.testing.assert_close(graph.marginals(s)[0], mu)
    cat = spigot.Categorical()
    x = torch.randn(5, dtype=torch.float64)
    onehots = [torch.eye(5, dtype=torch.float64)[i] for i in range(5)]
    assert torch.equal(cat.argmax(x), max(onehots, key=lambda o: float(x @ o)))
    torch.testing.assert_close(cat.log_partition(x), torch.logsumexp(x, 0))
    torch.testing.assert_close(cat.marginals(x), torch.softmax(x, 0))


class _HalfStraightThrough(torch.autograd.Function):
    """A user's estimator: argmax forward, ``factor * g`` backward."""

    @staticmethod
    def forward(scores, structure, prepared, factor):
        return structure._argmax(scores.detach(), prepared)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.factor = inputs[3]

    @staticmethod
    def backward(ctx, g):
        return ctx.factor * g, None, None, None


def test_users_can_register_their_own_estimator():
    from spigot.estimators import _REGISTRY

    def apply(s, structure, prepared, *, factor):
        return _HalfStraightThrough.apply(s, structure, prepared, factor)

    spigot.register_estimator("half-ste", apply, options={"factor": (0.5, spigot.check_positive)})
    try:
        assert "half-ste" in spigot.ESTIMATORS
        s, lengths = inputs("tree")
        tree = STRUCTS["tree"]
        for kwargs, factor in (({}, 0.5), ({"factor": 0.25}, 0.25)):
            x = s.clone().requires_grad_(True)
            z = spigot.structured_argmax(x, tree, estimator="half-ste", lengths=lengths, **kwargs)
            assert torch.equal(z, tree.argmax(s, lengths))
            g = torch.randn_like(s)
            (z * g).sum().backward()
            torch.testing.assert_close(x.grad, factor * torch.where(tree.mask(s, lengths), g, 0))
        layer = spigot.StructuredArgmax(tree, estimator="half-ste", factor=2.0)
        assert "factor=2.0" in repr(layer)
        with pytest.raises(ValueError, match="has no option 'eta' \\(its options: factor\\)"):
            spigot.structured_argmax(s, tree, estimator="half-ste", eta=1.0)
        with pytest.raises(ValueError, match="`factor` must be a positive"):
            spigot.structured_argmax(s, tree, estimator="half-ste", factor=-1)
        with pytest.raises(ValueError, match="already registered"):
            spigot.register_estimator("half-ste", apply)
        spigot.register_estimator("half-ste", apply, overwrite=True)
    finally:
        _REGISTRY.pop("half-ste", None)
    assert "half-ste" not in spigot.ESTIMATORS


@pytest.mark.parametrize("kind", list(STRUCTS))
def test_normalize_keeps_the_argmax_and_makes_the_gradient_scale_free(kind):
    s, lengths = inputs(kind)
    structure = STRUCTS[kind]
    dims = tuple(range(-structure.event_dim, 0))
    for est in ("spigot", "ste", "marginals"):
        grads = []
        for c in (1.0, 1e3):  # the same scores, a thousand times larger
            x = (c * s).requires_grad_(True)
            z = spigot.structured_argmax(
                x, structure, estimator=est, lengths=lengths, normalize="rms"
            )
            if est != "marginals":
                assert torch.equal(z, structure.argmax(s, lengths))
            (z * torch.linspace(-1, 1, z.numel()).view_as(z).to(z.dtype)).sum().backward()
            # scale-free: no gradient along the scores themselves, and 1/c times smaller
            radial = (x.grad * x.detach()).sum(dims)
            assert float(radial.abs().max()) <= 1e-9 * float(x.detach().abs().max())
            grads.append(x.grad * c)
        torch.testing.assert_close(grads[0], grads[1])
    # a temperature divides the scores
    mu = spigot.structured_argmax(
        s, structure, estimator="marginals", lengths=lengths, normalize=4.0
    )
    torch.testing.assert_close(mu, structure.marginals(s / 4.0, lengths))
    for bad in ("l2", 0.0, -1.0, float("nan"), True):
        with pytest.raises(ValueError, match="`normalize`"):
            spigot.structured_argmax(s, structure, lengths=lengths, normalize=bad)


def test_module_eval_estimator_and_options():
    s, lengths = inputs("tree")
    tree = STRUCTS["tree"]
    layer = spigot.StructuredArgmax(tree, "marginals", eval_estimator="pipeline")
    mu = layer(s, lengths)
    assert not torch.equal(mu, mu.round())  # soft while training
    layer.eval()
    z = layer(s, lengths)
    assert torch.equal(z, tree.argmax(s, lengths)) and not z.requires_grad
    layer.train()
    assert torch.equal(layer(s, lengths), mu)
    # every functional option is available on the module, loss_scale included
    x = s.clone().requires_grad_(True)
    g = torch.randn_like(s)
    mod = spigot.StructuredArgmax(tree, eta=0.5, loss_scale=10.0, normalize="rms")
    (mod(x, lengths) * g).sum().backward()
    y = s.clone().requires_grad_(True)
    z = spigot.structured_argmax(
        y, tree, lengths=lengths, eta=0.5, loss_scale=10.0, normalize="rms"
    )
    (z * g).sum().backward()
    torch.testing.assert_close(x.grad, y.grad)
    with pytest.raises(ValueError, match="`estimator` must be one of"):
        spigot.StructuredArgmax(tree, eval_estimator="hard")


@pytest.mark.parametrize("kind", ["tree", "proj-tree"])
@pytest.mark.parametrize("seed", range(5))
def test_tree_spigot_moves_a_word_only_toward_heads_with_smaller_gradient(kind, seed):
    """The facts docs/results.md uses to explain SPIGOT on trees (fixed eta): a word's column of
    dL/ds is 0 when its head has the smallest dL/dz among its candidate heads, else nonzero
    only on its head and on heads with a smaller dL/dz; a constant added to a column of dL/dz
    changes nothing (the simplex projection ignores it)."""
    s, lengths = inputs(kind, seed)
    structure = STRUCTS[kind]
    mask = structure.mask(s, lengths)
    gen = torch.Generator().manual_seed(100 + seed)
    g = torch.where(mask, torch.randn(s.shape, dtype=s.dtype, generator=gen), 0)
    grad, z, _, _ = grad_of(kind, "spigot", g, eta=0.5, seed=seed)
    shifted = g + torch.where(mask, torch.randn(3, 1, 6, dtype=s.dtype, generator=gen), 0)
    grad_shifted, *_ = grad_of(kind, "spigot", shifted, eta=0.5, seed=seed)
    torch.testing.assert_close(grad_shifted, grad)
    moved = kept = 0
    for b in range(3):
        for i in range(1, int(lengths[b]) + 1):
            heads = mask[b, :, i]
            h = int(z[b, :, i].argmax())
            col = grad[b, :, i]
            smaller = heads & (g[b, :, i] < g[b, h, i])
            if not smaller.any():
                kept += 1
                assert torch.equal(col, torch.zeros_like(col))
            else:
                moved += 1
                assert col[h] > 0 and torch.all(col[~smaller & (torch.arange(6) != h)] == 0)
    assert moved > 0 and kept > 0  # both cases occur


@pytest.mark.parametrize("kind", ["tree", "proj-tree"])
def test_tree_marginals_gradient_has_no_per_word_constant(kind):
    """Tree marginals ignore a constant added to a word's head scores, so the ``marginals``
    estimator's dL/ds sums to 0 over each word's candidate heads (docs/results.md)."""
    s, lengths = inputs(kind, seed=7)
    g = torch.randn(s.shape, dtype=s.dtype, generator=torch.Generator().manual_seed(8))
    grad, *_ = grad_of(kind, "marginals", g, seed=7)
    sums = grad.sum(dim=-2)
    torch.testing.assert_close(sums, torch.zeros_like(sums), atol=1e-12, rtol=0)
    assert grad.abs().max() > 1e-3
