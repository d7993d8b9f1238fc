"""The README's stability and determinism promises for trees, swept over scales and lengths.

* exact: marginals, the gradient of ``log Z``, the ``marginals`` estimator's backward and the
  Hessian-vector product of ``log Z`` equal brute-force enumeration (n <= 5) for score scales
  1 to 1e4, in float32 and float64, both root modes, projective or not;
* stable: for n up to 300 every output is finite, marginals lie in [0, 1] and sum to 1 per
  word, and derivatives keep their exact invariants;
* deterministic: padded batches give bitwise what one-by-one calls give, with 1 or 2 threads.

Tolerances are "to the precision of the dtype": a score ``s`` is only known to ``eps |s|``,
so results are compared to ``C eps max(1, |s|)``.
"""

from __future__ import annotations

import itertools

import pytest
import torch

import spigot
from brute import tree_moments

CONFIGS = list(itertools.product((False, True), (True, False)))  # (projective, single_root)
IDS = [f"{'proj' if p else 'nonproj'}-{'single' if r else 'multi'}" for p, r in CONFIGS]
SCALES = (1.0, 10.0, 100.0, 150.0, 200.0, 400.0, 1e3, 1e4)
EPS64 = torch.finfo(torch.float64).eps


def _batch(seed: int, scale: float, dtype: torch.dtype, n: int = 5, batch: int = 16):
    """Sentences of 2..n words padded to n, N(0, scale^2) scores; in every other sentence a
    few arcs get -400, as a user masking arcs with a large negative score would."""
    g = torch.Generator().manual_seed(seed)
    s = scale * torch.randn(batch, n + 1, n + 1, generator=g, dtype=torch.float64)
    drop = torch.rand(batch, n + 1, n + 1, generator=g) < 0.3
    drop[::2] = False
    s = torch.where(drop, torch.full_like(s, -400.0), s)
    lengths = torch.arange(batch) % (n - 1) + 2
    return s.to(dtype), lengths


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize(("projective", "single_root"), CONFIGS, ids=IDS)
def test_marginals_and_their_derivatives_match_enumeration_at_every_scale(
    projective, single_root, dtype
):
    tree = spigot.DependencyTree(projective=projective, single_root=single_root)
    out_eps = torch.finfo(dtype).eps
    for k, scale in enumerate(SCALES):
        s, lengths = _batch(k, scale, dtype)
        B, N = s.shape[0], s.shape[-1]
        u = torch.randn(B, N, N, generator=torch.Generator().manual_seed(k), dtype=dtype)
        mu = tree.marginals(s, lengths)
        x = s.clone().requires_grad_(True)
        (dlogz,) = torch.autograd.grad(tree.log_partition(x, lengths).sum(), x, create_graph=True)
        (hvp,) = torch.autograd.grad((dlogz * u).sum(), x)
        y = s.clone().requires_grad_(True)
        z = spigot.structured_argmax(y, tree, estimator="marginals", lengths=lengths)
        (vjp,) = torch.autograd.grad((z * u).sum(), y)
        for out in (mu, dlogz, hvp, vjp):
            assert torch.isfinite(out).all(), f"non-finite output at scale {scale}"
        for b in range(B):
            L = int(lengths[b]) + 1
            sb = s[b, :L, :L].double()
            mu_ref, cov = tree_moments(sb, projective, single_root)
            hv_ref = (cov @ u[b, :L, :L].double().reshape(-1)).view(L, L)
            tol = 64 * EPS64 * max(1.0, float(sb.abs().max())) + 4 * out_eps
            what = f"scale {scale}, sentence {b}"
            torch.testing.assert_close(mu[b, :L, :L].double(), mu_ref, atol=tol, rtol=0, msg=what)
            torch.testing.assert_close(dlogz[b, :L, :L].double(), mu_ref, atol=tol, rtol=0)
            hv_tol = tol * float(u[b].abs().sum())
            torch.testing.assert_close(vjp[b, :L, :L].double(), hv_ref, atol=hv_tol, rtol=0)
            torch.testing.assert_close(hvp[b, :L, :L].double(), hv_ref, atol=hv_tol, rtol=0)


def test_issue_example_tiny_marginal_is_finite_and_exact():
    s = torch.tensor([[[0.0, 160.0, 45.0], [0.0, 0.0, 216.0], [0.0, -290.0, 0.0]]]).double()
    mu = spigot.DependencyTree().marginals(s)
    # two trees: {0->1, 1->2} (score 376) and {0->2, 2->1} (score -245): p = exp(-621)
    assert float(mu[0, 2, 1]) == pytest.approx(float(torch.tensor(-621.0).double().exp()))
    assert float(mu[0, 0, 1]) == 1.0


@pytest.mark.parametrize(("projective", "single_root"), CONFIGS, ids=IDS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
def test_long_sentences_stay_finite_normalised_and_exact(projective, single_root, dtype):
    from spigot.structures._logspace import tree_log_partition

    tree = spigot.DependencyTree(projective=projective, single_root=single_root)
    sizes = (20, 80, 300) if not projective else (20, 80, 120)
    for n, scale in itertools.product(sizes, (1.0, 100.0, 1e4)):
        if n >= 120 and (scale == 100.0 or (projective and scale == 1.0)):
            continue  # keep the sweep's cost down at the longest n (the extremes bracket it)
        g = torch.Generator().manual_seed(n)
        lengths = torch.tensor([n, max(2, n // 3)])
        s = (scale * torch.randn(2, n + 1, n + 1, generator=g, dtype=torch.float64)).to(dtype)
        mask = tree.mask(s, lengths)
        mu = tree.marginals(s, lengths)
        assert torch.isfinite(mu).all() and float(mu.min()) >= 0 and float(mu.max()) <= 1
        words = (torch.arange(n + 1) >= 1) & (torch.arange(n + 1) <= lengths.view(-1, 1))
        tol = 64 * EPS64 * max(1.0, scale * 6) * n + 4 * torch.finfo(dtype).eps
        torch.testing.assert_close(mu.sum(1).double(), words.double(), atol=tol, rtol=0)
        # the compiled forward against the log-space recurrences' gradient (float64)
        x = s.double().requires_grad_(True)
        lz = tree_log_partition(x, lengths, mask, projective, single_root)
        (ref,) = torch.autograd.grad(lz.sum(), x)
        torch.testing.assert_close(mu.double(), ref, atol=tol, rtol=0)
        torch.testing.assert_close(tree.log_partition(s, lengths).double(), lz.detach())
        # the marginals estimator's backward: finite, zero for a gradient constant down each
        # column (every word has exactly one head, so such a loss is constant)
        y = s.clone().requires_grad_(True)
        z = spigot.structured_argmax(y, tree, estimator="marginals", lengths=lengths)
        col = torch.randn(2, 1, n + 1, generator=g, dtype=dtype).expand_as(z)
        (v,) = torch.autograd.grad((z * col).sum(), y)
        assert torch.isfinite(v).all()
        assert float(v.abs().max()) <= 1e3 * tol * float(col.abs().max())


STRUCTURES = [
    spigot.Categorical(),
    spigot.DependencyGraph(),
    *[spigot.DependencyTree(projective=p, single_root=r) for p, r in CONFIGS],
]


@pytest.mark.parametrize("structure", STRUCTURES, ids=repr)
def test_second_order_derivatives_of_marginals_are_exact(structure):
    g = torch.Generator().manual_seed(3)
    if isinstance(structure, spigot.Categorical):
        s, lengths = torch.randn(3, 4, generator=g, dtype=torch.float64), None
    else:
        s = torch.randn(3, 4, 4, generator=g, dtype=torch.float64)
        lengths = torch.tensor([3, 1, 2])
    s.requires_grad_(True)
    torch.autograd.gradgradcheck(lambda x: structure.marginals(x, lengths), (s,))
    est = lambda x: spigot.structured_argmax(x, structure, estimator="marginals", lengths=lengths)  # noqa: E731
    torch.autograd.gradgradcheck(est, (s,))
    # a loss linear in the marginals has a nonzero Hessian (it used to be silently 0)
    u = torch.randn(s.shape, generator=g, dtype=torch.float64)
    H = torch.autograd.functional.hessian(lambda x: (structure.marginals(x, lengths) * u).sum(), s)
    assert float(H.abs().max()) > 1e-3


def test_categorical_hessian_matches_closed_form():
    s = torch.tensor([0.3, -1.0, 2.0], dtype=torch.float64)
    u = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    H = torch.autograd.functional.hessian(
        lambda x: (spigot.Categorical().marginals(x) * u).sum(), s
    )
    # f(s) = u . softmax(s): d2f/ds_i ds_j = p_i (d_ij - p_j)(u_i - ubar) - p_i p_j (u_j - ubar)
    p = torch.softmax(s, 0)
    ubar = (p * u).sum()
    a = p * (u - ubar)
    ref = torch.diag(a) - torch.outer(a, p) - torch.outer(p, a)
    torch.testing.assert_close(H, ref)


def _mixed_batch(seed: int, batch: int = 200, n: int = 30):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, n + 1, (batch,), generator=g)
    scale = torch.tensor([1.0, 10.0, 100.0, 400.0, 1e4])[torch.arange(batch) % 5]
    s = scale.view(-1, 1, 1) * torch.randn(batch, n + 1, n + 1, generator=g, dtype=torch.float64)
    return s, lengths


@pytest.mark.parametrize(("projective", "single_root"), CONFIGS, ids=IDS)
def test_padded_batches_equal_one_by_one_bitwise(projective, single_root):
    tree = spigot.DependencyTree(projective=projective, single_root=single_root)
    s, lengths = _mixed_batch(11)
    z, mu, lz = tree.argmax(s, lengths), tree.marginals(s, lengths), tree.log_partition(s, lengths)
    for b in range(s.shape[0]):
        L = int(lengths[b]) + 1
        one = s[b : b + 1, :L, :L]
        assert torch.equal(z[b, :L, :L], tree.argmax(one)[0]), b
        assert torch.equal(mu[b, :L, :L], tree.marginals(one)[0]), b
        assert torch.equal(lz[b], tree.log_partition(one)[0]), b


@pytest.mark.parametrize(("projective", "single_root"), CONFIGS, ids=IDS)
def test_results_do_not_depend_on_the_number_of_threads(projective, single_root):
    numba = pytest.importorskip("numba")
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("numba has a single thread on this machine")
    tree = spigot.DependencyTree(projective=projective, single_root=single_root)
    s, lengths = _mixed_batch(12, batch=64)
    before = numba.get_num_threads()
    out = {}
    try:
        for threads in (1, 2):
            numba.set_num_threads(threads)
            out[threads] = (tree.marginals(s, lengths), tree.log_partition(s, lengths))
    finally:
        numba.set_num_threads(before)
    assert torch.equal(out[1][0], out[2][0]) and torch.equal(out[1][1], out[2][1])


@pytest.mark.parametrize(("projective", "single_root"), CONFIGS, ids=IDS)
def test_marginals_gradient_padded_matches_one_by_one_to_rounding(projective, single_root):
    # the exact VJP runs batched torch reductions, whose summation order follows the padded
    # width: equal to one-by-one up to rounding (the README says so), not bitwise
    tree = spigot.DependencyTree(projective=projective, single_root=single_root)
    s, lengths = _mixed_batch(13, batch=10, n=8)
    u = torch.randn(s.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    x = s.clone().requires_grad_(True)
    z = spigot.structured_argmax(x, tree, estimator="marginals", lengths=lengths)
    (v,) = torch.autograd.grad((z * u).sum(), x)
    for b in range(s.shape[0]):
        L = int(lengths[b]) + 1
        xb = s[b : b + 1, :L, :L].clone().requires_grad_(True)
        zb = spigot.structured_argmax(xb, tree, estimator="marginals")
        (vb,) = torch.autograd.grad((zb * u[b : b + 1, :L, :L]).sum(), xb)
        tol = 64 * EPS64 * max(1.0, float(s[b].abs().max())) * float(u[b].abs().sum())
        torch.testing.assert_close(v[b, :L, :L], vb[0], atol=tol, rtol=0)


@pytest.mark.parametrize(("projective", "single_root"), CONFIGS, ids=IDS)
def test_compiled_marginals_vjp_equals_autograd_through_the_log_space_recurrences(
    projective, single_root
):
    # the estimator's backward runs compiled forward-mode kernels (the Hessian is symmetric,
    # so the VJP is a JVP); the reference is float64 double backward through _logspace
    from spigot.structures._logspace import tree_log_partition

    tree = spigot.DependencyTree(projective=projective, single_root=single_root)
    for n, scale in itertools.product((7, 30, 60), (0.1, 1.0, 30.0, 1e3)):
        g = torch.Generator().manual_seed(n)
        lengths = torch.tensor([n, 1, max(2, n // 2), n])
        s = scale * torch.randn(4, n + 1, n + 1, generator=g, dtype=torch.float64)
        u = torch.randn(s.shape, generator=g, dtype=torch.float64)
        x = s.clone().requires_grad_(True)
        z = spigot.structured_argmax(x, tree, estimator="marginals", lengths=lengths)
        (v,) = torch.autograd.grad((z * u).sum(), x)
        y = s.clone().requires_grad_(True)
        lz = tree_log_partition(y, lengths, tree.mask(s, lengths), projective, single_root)
        (mu,) = torch.autograd.grad(lz.sum(), y, create_graph=True)
        (ref,) = torch.autograd.grad(mu, y, grad_outputs=u)
        ref = torch.where(tree.mask(s, lengths), ref, 0)
        tol = 256 * EPS64 * max(1.0, 6 * scale) * n * float(u.abs().max())
        torch.testing.assert_close(v, ref, atol=tol, rtol=0, msg=f"n={n} scale={scale}")
