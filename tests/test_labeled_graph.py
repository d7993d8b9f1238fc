"""Labeled dependency graphs: enumeration, padding, validation and every estimator.

The projection onto one arc's polytope (``project_subsimplex``) and its comparison with the
original code's heuristic are in ``tests/test_subsimplex.py``.
"""

from __future__ import annotations

import itertools
from functools import cache

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import spigot
from spigot.projections import project_subsimplex

GRAPH = spigot.LabeledDependencyGraph()
EPS64 = torch.finfo(torch.float64).eps


@cache
def labeled_graphs(n: int, L: int) -> torch.Tensor:
    """Every labeled graph over ``n`` words and ``L`` labels: ``[count, n+1, n+1, L]`` 0/1.

    Each arc ``h -> m`` (``h != m``, ``m >= 1``) is absent or carries one label: ``(L + 1)^arcs``
    graphs (256 for n = 2, L = 3).
    """
    arcs = [(h, m) for h in range(n + 1) for m in range(1, n + 1) if h != m]
    out = []
    for choice in itertools.product(range(L + 1), repeat=len(arcs)):
        z = torch.zeros(n + 1, n + 1, L, dtype=torch.float64)
        for (h, m), c in zip(arcs, choice, strict=True):
            if c > 0:
                z[h, m, c - 1] = 1.0
        out.append(z)
    return torch.stack(out)


def oracle(s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(best score, log Z, marginals, covariance of the parts) of one sentence by enumeration."""
    n, L = s.shape[0] - 1, s.shape[-1]
    zs = labeled_graphs(n, L)
    sc = (zs * s.double()).sum((1, 2, 3))
    p = torch.softmax(sc, 0)
    zf = zs.view(len(zs), -1)
    mu = p @ zf
    cov = zf.T @ (p.unsqueeze(1) * zf) - torch.outer(mu, mu)
    return sc.max(), torch.logsumexp(sc, 0), mu.view_as(s), cov


def is_labeled_graph(z: torch.Tensor, mask: torch.Tensor) -> bool:
    """0/1, at most one label per arc, nothing off the valid arcs."""
    zero_one = bool(((z == 0) | (z == 1)).all())
    return zero_one and bool((z.sum(-1) <= 1).all()) and bool((z[~mask] == 0).all())


def inputs(seed: int = 0, L: int = 3, dtype: torch.dtype = torch.float64):
    g = torch.Generator().manual_seed(seed)
    s = torch.randn(3, 6, 6, L, dtype=torch.float64, generator=g)
    return s.to(dtype), torch.tensor([5, 2, 4])


# -- brute force ----------------------------------------------------------------------------
@pytest.mark.parametrize(("n", "L"), list(itertools.product((1, 2), (1, 2, 3))))
def test_argmax_log_partition_and_marginals_match_enumeration(n, L):
    for seed in range(4):
        g = torch.Generator().manual_seed(100 * n + 10 * L + seed)
        s = (1 + 2 * seed) * torch.randn(1, n + 1, n + 1, L, dtype=torch.float64, generator=g)
        mask = GRAPH.mask(s)
        s = torch.where(mask, s, 0)
        best, logz, mu, cov = oracle(s[0])
        z = GRAPH.argmax(s)
        assert is_labeled_graph(z, mask)
        assert float(GRAPH.score(s, z)[0]) == pytest.approx(float(best), abs=1e-12)
        torch.testing.assert_close(GRAPH.log_partition(s)[0], logz)
        torch.testing.assert_close(GRAPH.marginals(s)[0], mu)
        # the marginals are the gradient of log Z, and their VJP is the covariance times g
        x = s.clone().requires_grad_(True)
        (dlogz,) = torch.autograd.grad(GRAPH.log_partition(x).sum(), x)
        torch.testing.assert_close(dlogz[0], mu)
        u = torch.randn(s.shape, dtype=torch.float64, generator=g)
        y = s.clone().requires_grad_(True)
        m = spigot.structured_argmax(y, GRAPH, estimator="marginals")
        (vjp,) = torch.autograd.grad((m * u).sum(), y)
        torch.testing.assert_close(vjp[0], (cov @ u[0].reshape(-1)).view_as(u[0]))


scores_2x2 = st.lists(st.floats(-20, 20, allow_nan=False), min_size=18, max_size=18)


@given(scores_2x2)
def test_enumeration_on_arbitrary_scores(values):
    s = torch.tensor(values, dtype=torch.float64).view(1, 3, 3, 2)
    mask = GRAPH.mask(s)
    best, logz, mu, _ = oracle(torch.where(mask, s, 0)[0])
    z = GRAPH.argmax(s)
    assert is_labeled_graph(z, mask)
    assert float(GRAPH.score(s, z)[0]) == pytest.approx(float(best), rel=1e-12, abs=1e-12)
    torch.testing.assert_close(GRAPH.log_partition(s)[0], logz)
    torch.testing.assert_close(GRAPH.marginals(s)[0], mu)


def test_argmax_ties_go_to_the_first_label_and_zero_is_off():
    s = torch.zeros(1, 3, 3, 3, dtype=torch.float64)
    s[0, 0, 1] = torch.tensor([1.0, 2.0, 2.0])  # tie between labels 1 and 2: the first wins
    s[0, 1, 2] = torch.tensor([0.0, -1.0, 0.0])  # best score exactly 0: no arc
    s[0, 2, 1] = torch.tensor([-3.0, 1e-300, -1.0], dtype=torch.float64)  # barely on
    z = GRAPH.argmax(s)
    assert z[0, 0, 1].tolist() == [0.0, 1.0, 0.0]
    assert z[0, 1, 2].tolist() == [0.0, 0.0, 0.0]
    assert z[0, 2, 1].tolist() == [0.0, 1.0, 0.0]
    assert float(z.sum()) == 2.0
    # with one label it is the unlabeled graph
    one = torch.randn(2, 4, 4, 1, dtype=torch.float64)
    lengths = torch.tensor([3, 2])
    plain = spigot.DependencyGraph()
    assert torch.equal(GRAPH.argmax(one, lengths)[..., 0], plain.argmax(one[..., 0], lengths))
    torch.testing.assert_close(
        GRAPH.marginals(one, lengths)[..., 0], plain.marginals(one[..., 0], lengths)
    )
    torch.testing.assert_close(
        GRAPH.log_partition(one, lengths), plain.log_partition(one[..., 0], lengths)
    )


def test_separate_arc_and_label_scores_are_added():
    # the documented recipe: arc score + label score; the arc is on iff arc + best label > 0
    g = torch.Generator().manual_seed(5)
    arc = torch.randn(2, 4, 4, dtype=torch.float64, generator=g)
    label = torch.randn(2, 4, 4, 3, dtype=torch.float64, generator=g)
    z = GRAPH.argmax(arc[..., None] + label)
    best = label.max(-1)
    mask = spigot.DependencyGraph().mask(arc)
    assert torch.equal(z.sum(-1), ((arc + best.values > 0) & mask).double())
    assert torch.equal(z.argmax(-1)[z.sum(-1) > 0], best.indices[z.sum(-1) > 0])


@pytest.mark.parametrize("scale", [1.0, 100.0, 1e4, 1e30])
def test_large_scores_stay_finite_and_exact(scale):
    s, lengths = inputs(seed=2)
    s = scale * s
    mu = GRAPH.marginals(s, lengths)
    lz = GRAPH.log_partition(s, lengths)
    assert torch.isfinite(mu).all() and torch.isfinite(lz).all()
    assert float(mu.min()) >= 0 and float(mu.sum(-1).max()) <= 1 + 4 * EPS64
    ref = torch.logsumexp(torch.nn.functional.pad(s, (1, 0)), -1)
    torch.testing.assert_close(lz, torch.where(GRAPH.mask(s, lengths)[..., 0], ref, 0).sum((1, 2)))
    x = s.clone().requires_grad_(True)
    z = spigot.structured_argmax(x, GRAPH, estimator="marginals", lengths=lengths)
    (v,) = torch.autograd.grad((z * torch.randn_like(z)).sum(), x)
    assert torch.isfinite(v).all()


# -- padding --------------------------------------------------------------------------------
def test_padded_batches_equal_one_by_one():
    g = torch.Generator().manual_seed(11)
    B, n, L = 12, 7, 4
    lengths = torch.randint(1, n + 1, (B,), generator=g)
    s = torch.randn(B, n + 1, n + 1, L, dtype=torch.float64, generator=g)
    s = s * torch.tensor([1.0, 10.0, 1e3])[torch.arange(B) % 3].view(-1, 1, 1, 1).double()
    x = 2 * torch.randn(s.shape, dtype=torch.float64, generator=g)
    up = torch.randn(s.shape, dtype=torch.float64, generator=g)
    z, mu = GRAPH.argmax(s, lengths), GRAPH.marginals(s, lengths)
    lz, proj = GRAPH.log_partition(s, lengths), GRAPH.project(x, lengths)
    grads = {}
    for est in ("spigot", "marginals"):
        y = s.clone().requires_grad_(True)
        out = spigot.structured_argmax(y, GRAPH, estimator=est, lengths=lengths)
        (grads[est],) = torch.autograd.grad(out, y, grad_outputs=up)
    for b in range(B):
        N = int(lengths[b]) + 1
        one = s[b : b + 1, :N, :N]
        assert torch.equal(z[b, :N, :N], GRAPH.argmax(one)[0]), b
        assert torch.equal(mu[b, :N, :N], GRAPH.marginals(one)[0]), b
        assert torch.equal(proj[b, :N, :N], GRAPH.project(x[b : b + 1, :N, :N])[0]), b
        tol = 64 * EPS64 * max(1.0, float(one.abs().max())) * N * N
        torch.testing.assert_close(lz[b], GRAPH.log_partition(one)[0], atol=tol, rtol=0)
        for est, grad in grads.items():
            y = one.clone().requires_grad_(True)
            out = spigot.structured_argmax(y, GRAPH, estimator=est)
            (gb,) = torch.autograd.grad(out, y, grad_outputs=up[b : b + 1, :N, :N])
            torch.testing.assert_close(grad[b, :N, :N], gb[0], msg=f"{est}, sentence {b}")
        assert bool((z[b, N:] == 0).all() and (z[b, :, N:] == 0).all())


# -- validation -----------------------------------------------------------------------------
OPS = ["argmax", "marginals", "log_partition", "project"]


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize(
    ("scores", "lengths", "pattern"),
    [
        (torch.zeros(2, 4, 4), None, r"`(scores|x)`.*4 dimensions.*arc\[\.\.\., None\] \+ label"),
        (torch.zeros(1, 2, 4, 4, 3), None, r"`(scores|x)`.*4 dimensions"),
        (torch.zeros(2, 4, 5, 3), None, r"`(scores|x)`.*square"),
        (torch.zeros(2, 1, 1, 3), None, r"`(scores|x)`.*n\+1 >= 2"),
        (torch.zeros(2, 4, 4, 0), None, r"`(scores|x)`.*at least one label"),
        (torch.zeros(2, 4, 4, 3, dtype=torch.long), None, r"`(scores|x)`.*floating"),
        ([[[[0.0]]]], None, r"`(scores|x)`.*torch.Tensor"),
        (torch.zeros(2, 4, 4, 3), torch.tensor([3, 4]), r"`lengths`.*1\.\.3"),
        (torch.zeros(2, 4, 4, 3), torch.tensor([0, 2]), r"`lengths`.*1\.\.3"),
        (torch.zeros(2, 4, 4, 3), torch.tensor([3]), r"`lengths`.*shape"),
        (torch.zeros(2, 4, 4, 3), torch.tensor([3.0, 3.0]), r"`lengths`.*integer"),
        (torch.zeros(2, 4, 4, 3), [3, 3], r"`lengths`.*torch.Tensor"),
        (torch.empty(2, 4, 4, 3, device="meta"), None, "meta"),
    ],
)
def test_bad_shapes_dtypes_lengths(op, scores, lengths, pattern):
    with pytest.raises(ValueError, match=pattern):
        getattr(GRAPH, op)(scores, lengths)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_values_on_valid_entries_are_rejected_and_allowed_elsewhere(bad):
    s = torch.zeros(2, 4, 4, 3)
    s[1, 0, 2, 1] = bad
    with pytest.raises(ValueError, match=r"`scores` must be finite.*\(1, 0, 2, 1\)"):
        GRAPH.argmax(s)
    with pytest.raises(ValueError, match=r"`x` must be finite"):
        GRAPH.project(s)
    with pytest.raises(ValueError, match="must be finite"):
        spigot.structured_argmax(s, GRAPH)
    # on the diagonal, in column 0 and on padding anything goes, and is never read
    s = torch.randn(2, 4, 4, 3)
    s[:, :, 0] = bad
    s.diagonal(dim1=1, dim2=2).fill_(bad)
    s[1, 3] = bad
    s[1, :, 3] = bad
    before = s.clone()
    for op in OPS:
        out = getattr(GRAPH, op)(s, torch.tensor([3, 2]))
        assert torch.isfinite(out).all()
    torch.testing.assert_close(s, before, rtol=0, atol=0, equal_nan=True)  # never modified


# -- estimators -----------------------------------------------------------------------------
@pytest.mark.parametrize("estimator", spigot.ESTIMATORS)
def test_invalid_entries_get_exactly_zero_gradient_even_when_nan(estimator):
    s, lengths = inputs()
    s[:, 0, 0] = float("nan")
    s[:, 3, 0, 1] = float("inf")
    s[1, 4, 5] = float("nan")  # padding of the 2-word sentence
    mask = GRAPH.mask(s, lengths)
    x = s.clone().requires_grad_(True)
    z = spigot.structured_argmax(x, GRAPH, estimator=estimator, lengths=lengths)
    assert torch.isfinite(z).all()
    if estimator == "pipeline":
        assert not z.requires_grad and z.grad_fn is None
        return
    z.backward(torch.randn(z.shape, dtype=z.dtype))
    assert torch.isfinite(x.grad).all()
    assert torch.equal(x.grad[~mask], torch.zeros_like(x.grad[~mask]))
    y = s.clone().requires_grad_(True)
    GRAPH.log_partition(y, lengths).sum().backward()
    assert torch.isfinite(y.grad).all() and bool((y.grad[~mask] == 0).all())


def test_hard_estimators_return_the_argmax_and_pipeline_has_no_grad_fn():
    s, lengths = inputs()
    for est in ("pipeline", "ste", "spigot"):
        z = spigot.structured_argmax(s, GRAPH, estimator=est, lengths=lengths)
        assert torch.equal(z, GRAPH.argmax(s, lengths))
    z = spigot.structured_argmax(s.requires_grad_(True), GRAPH, estimator="pipeline")
    assert not z.requires_grad and z.grad_fn is None
    x = s.detach().clone().requires_grad_(True)
    g = torch.randn_like(x)
    spigot.structured_argmax(x, GRAPH, estimator="ste", lengths=lengths).backward(g)
    torch.testing.assert_close(x.grad, torch.where(GRAPH.mask(s, lengths), g, 0))


@pytest.mark.parametrize("eta", [None, 1.0, 0.1])
def test_spigot_gradient_is_z_minus_projection(eta):
    s, lengths = inputs(seed=3)
    g = 3 * torch.randn_like(s)
    x = s.clone().requires_grad_(True)
    z = spigot.structured_argmax(x, GRAPH, estimator="spigot", lengths=lengths, eta=eta)
    (z * g).sum().backward()
    mask = GRAPH.mask(s, lengths)
    if eta is None:  # per sentence, over the valid parts
        norm = (g * mask).pow(2).sum((-3, -2, -1), keepdim=True).sqrt()
        eta_t = torch.clamp(1 / norm, max=1.0)
    else:
        eta_t = eta
    proj = project_subsimplex(z.detach() - eta_t * g, mask, dim=-1)
    torch.testing.assert_close(x.grad, z.detach() - proj)
    assert float(x.grad.abs().max()) > 0


def test_spigot_step_inside_the_polytope_gives_eta_g():
    s, lengths = inputs()
    z = GRAPH.argmax(s, lengths)
    mask = GRAPH.mask(s, lengths)
    u = torch.where(mask, 0.5 / s.shape[-1], 0.0).double()  # inside: labels sum to 1/2
    g = 0.3 * (z - u) * mask  # z - eta g = (1 - 0.3 eta) z + 0.3 eta u: inside for eta <= 3
    assert float(g.pow(2).sum((-3, -2, -1)).sqrt().max()) > 1  # the default eta is < 1 here
    for eta in (None, 0.5, 2.0):
        x = s.clone().requires_grad_(True)
        opts = {} if eta is None else {"eta": eta}
        out = spigot.structured_argmax(x, GRAPH, estimator="spigot", lengths=lengths, **opts)
        (out * g).sum().backward()
        norm = g.pow(2).sum((-3, -2, -1), keepdim=True).sqrt()
        step = torch.clamp(1 / norm, max=1.0) if eta is None else eta
        torch.testing.assert_close(x.grad, step * g)


def test_marginals_estimator_gradcheck_gradgradcheck_and_nonzero_hessian():
    g = torch.Generator().manual_seed(3)
    s = torch.randn(3, 4, 4, 2, dtype=torch.float64, generator=g).requires_grad_(True)
    lengths = torch.tensor([3, 1, 2])
    mu = spigot.structured_argmax(s, GRAPH, estimator="marginals", lengths=lengths)
    torch.testing.assert_close(mu, GRAPH.marginals(s, lengths))
    est = lambda x: spigot.structured_argmax(x, GRAPH, estimator="marginals", lengths=lengths)  # noqa: E731
    torch.autograd.gradcheck(est, (s,))
    torch.autograd.gradgradcheck(est, (s,))
    torch.autograd.gradgradcheck(lambda x: GRAPH.marginals(x, lengths), (s,))
    torch.autograd.gradgradcheck(lambda x: GRAPH.log_partition(x, lengths), (s,))
    u = torch.randn(s.shape, generator=g, dtype=torch.float64)
    H = torch.autograd.functional.hessian(lambda x: (GRAPH.marginals(x, lengths) * u).sum(), s)
    assert float(H.abs().max()) > 1e-3


@pytest.mark.parametrize("loss_scale", [1.0, 1e3])
def test_float16_spigot_backward_equals_float32(loss_scale):
    s, lengths = inputs()
    g = torch.Generator().manual_seed(1)
    for norm in (1.0, 300.0, 3e4):  # ||g|| > 256 squares to inf in float16
        up = torch.randn(s.shape, generator=g, dtype=torch.float64)
        up = up / up.norm() * norm / loss_scale
        grads = {}
        for dt in (torch.float16, torch.float32):
            x = s.to(dt).requires_grad_(True)
            z = spigot.structured_argmax(
                x, GRAPH, estimator="spigot", lengths=lengths, loss_scale=loss_scale
            )
            (gx,) = torch.autograd.grad(z, x, grad_outputs=up.to(dt))
            assert gx.dtype == dt and torch.isfinite(gx).all()
            grads[dt] = gx.double()
        ref = grads[torch.float32]
        assert float(ref.abs().max()) > 0
        torch.testing.assert_close(
            grads[torch.float16], ref, rtol=1e-2, atol=2e-3 * float(ref.abs().max())
        )


def test_normalize_module_and_repr():
    s, lengths = inputs()
    for c in (1.0, 1e3):
        z = spigot.structured_argmax(c * s, GRAPH, lengths=lengths, normalize="rms")
        assert torch.equal(z, GRAPH.argmax(s, lengths))
    layer = spigot.StructuredArgmax(GRAPH, "marginals", eval_estimator="pipeline")
    torch.testing.assert_close(layer(s, lengths), GRAPH.marginals(s, lengths))
    layer.eval()
    assert torch.equal(layer(s, lengths), GRAPH.argmax(s, lengths))
    assert "LabeledDependencyGraph()" in repr(layer)
    assert spigot.structures.LabeledDependencyGraph is spigot.LabeledDependencyGraph
    assert GRAPH.mask(s, lengths).shape == s.shape and GRAPH.event_dim == 3
