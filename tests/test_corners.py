"""Corners: low precision, huge offsets, non-finite input, unusual devices and argument types."""

from __future__ import annotations

import itertools
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

import spigot
from brute import tree_oracle

TREES = [
    spigot.DependencyTree(projective=p, single_root=r) for p, r in itertools.product((0, 1), (1, 0))
]
STRUCTURES = [spigot.Categorical(), spigot.DependencyGraph(), *TREES]


def _scores(structure, seed=0, dtype=torch.float64, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    if isinstance(structure, spigot.Categorical):
        return (scale * torch.randn(4, 6, generator=g, dtype=torch.float64)).to(dtype), None
    s = scale * torch.randn(3, 6, 6, generator=g, dtype=torch.float64)
    return s.to(dtype), torch.tensor([5, 2, 4])


@pytest.mark.parametrize("structure", STRUCTURES, ids=repr)
@pytest.mark.parametrize("loss_scale", [1.0, 1e3])
def test_float16_spigot_backward_equals_float32_for_large_gradients(structure, loss_scale):
    s, lengths = _scores(structure)
    g = torch.Generator().manual_seed(1)
    for norm in (1.0, 300.0, 3e4):  # ||g|| > 256 used to square to inf in float16
        up = torch.randn(s.shape, generator=g, dtype=torch.float64)
        up = up / up.norm() * norm / loss_scale
        grads = {}
        for dt in (torch.float16, torch.float32):
            x = s.to(dt).requires_grad_(True)
            z = spigot.structured_argmax(
                x, structure, estimator="spigot", lengths=lengths, loss_scale=loss_scale
            )
            (gx,) = torch.autograd.grad(z, x, grad_outputs=up.to(dt))
            assert gx.dtype == dt and torch.isfinite(gx).all()
            grads[dt] = gx.double()
        assert float(grads[torch.float32].abs().max()) > 0
        ref = grads[torch.float32]
        torch.testing.assert_close(
            grads[torch.float16], ref, rtol=1e-2, atol=2e-3 * float(ref.abs().max())
        )


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_simplex_projection_is_shift_invariant_for_any_offset(dtype):
    # c + d is exact for these d while the spacing of floats at c, 2^k eps, is <= 1/4
    top = 20 if dtype == torch.float32 else 50
    d = torch.tensor([[0.0, 2.0], [0.0, 0.25], [1.0, 1.0], [0.5, -3.0]], dtype=dtype)
    ref = spigot.project_simplex(d)
    for k in range(0, top + 1, 2):
        c = float(2**k)
        torch.testing.assert_close(spigot.project_simplex(d + c), ref, msg=f"offset 2^{k}")
        torch.testing.assert_close(spigot.project_simplex(d - c), ref, msg=f"offset -2^{k}")
        torch.testing.assert_close(spigot.Categorical().project(d + c), ref)
    wide = torch.tensor([2e7, 2e7 + 2], dtype=dtype)
    torch.testing.assert_close(spigot.project_simplex(wide), torch.tensor([0.0, 1.0], dtype=dtype))
    flat = torch.full((3,), 1e8, dtype=dtype)
    torch.testing.assert_close(spigot.project_simplex(flat), torch.full((3,), 1 / 3, dtype=dtype))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_projections_reject_non_finite_input(bad):
    x = torch.tensor([[0.5, bad, 0.1]])
    with pytest.raises(ValueError, match="finite"):
        spigot.project_simplex(x)
    with pytest.raises(ValueError, match="finite"):
        spigot.project_unit_cube(x)
    with pytest.raises(ValueError, match="finite"):
        spigot.Categorical().project(x)
    t = torch.zeros(1, 3, 3)
    t[0, 0, 1] = bad
    for structure in (spigot.DependencyTree(), spigot.DependencyGraph()):
        with pytest.raises(ValueError, match="finite"):
            structure.project(t)
    # off the valid entries anything goes, and the output is 0 there
    t = torch.zeros(1, 3, 3)
    t[0, 1, 1] = bad
    assert torch.isfinite(spigot.DependencyTree().project(t)).all()


@pytest.mark.parametrize("structure", STRUCTURES[1:], ids=repr)
@pytest.mark.parametrize("estimator", spigot.ESTIMATORS)
def test_invalid_entries_get_exactly_zero_gradient_even_when_nan(structure, estimator):
    s, lengths = _scores(structure)
    s = s.clone()
    s[:, 0, 0] = float("nan")  # the diagonal and column 0 are never valid
    s[:, 3, 0] = float("inf")
    s[1, 4, 5] = float("nan")  # padding of the 2-word sentence
    mask = structure.mask(s, lengths)
    x = s.clone().requires_grad_(True)
    z = spigot.structured_argmax(x, structure, estimator=estimator, lengths=lengths)
    assert torch.isfinite(z).all()
    if estimator == "pipeline":
        assert not z.requires_grad
        return
    z.backward(torch.randn(z.shape, dtype=z.dtype))
    assert torch.equal(x.grad[~mask], torch.zeros_like(x.grad[~mask]))
    assert torch.isfinite(x.grad).all()
    y = s.clone().requires_grad_(True)
    structure.log_partition(y, lengths).sum().backward()
    assert torch.isfinite(y.grad).all() and torch.equal(
        y.grad[~mask], torch.zeros_like(y.grad[~mask])
    )


@pytest.mark.parametrize("structure", STRUCTURES, ids=repr)
def test_meta_tensors_give_a_clear_error(structure):
    s, lengths = _scores(structure)
    meta = torch.empty(s.shape, device="meta")
    for op in ("argmax", "marginals", "log_partition", "project"):
        with pytest.raises(ValueError, match="meta"):
            getattr(structure, op)(meta, lengths)
    with pytest.raises(ValueError, match="meta"):
        spigot.structured_argmax(meta, structure, lengths=lengths)


@pytest.mark.parametrize("tree", TREES, ids=repr)
def test_scores_beyond_the_documented_range_are_rejected_and_the_range_is_exact(tree):
    s, lengths = _scores(tree)
    huge = s.clone()
    huge[0, 1, 2] = 1e300  # finite, but sums of such scores overflow float64
    with pytest.raises(ValueError, match="1e\\+100"):
        tree.argmax(huge, lengths)
    # at the bound itself every operation is still exact
    for seed in range(5):
        big = (_scores(tree, seed)[0][:1, :5, :5] * 1e99).clamp(-1e100, 1e100)
        best, _, mu = tree_oracle(big[0], tree.projective, tree.single_root)
        z = tree.argmax(big)
        assert float(tree.score(big, z)[0]) == pytest.approx(float(best), rel=1e-12)
        assert torch.isfinite(tree.log_partition(big)).all()
        torch.testing.assert_close(tree.marginals(big)[0], mu)


@pytest.mark.parametrize(
    "value", [np.float32(0.5), np.float64(0.5), torch.tensor(0.5), 1, np.int64(2)]
)
def test_eta_and_loss_scale_accept_any_real_scalar(value):
    s, _ = _scores(spigot.Categorical())
    x = s.clone().requires_grad_(True)
    z = spigot.structured_argmax(x, spigot.Categorical(), eta=value, loss_scale=value)
    z.sum().backward()
    spigot.StructuredArgmax(spigot.Categorical(), eta=value)
    for bad in (True, "0.5", torch.tensor([0.5, 1.0]), np.float32("nan"), -1.0, 1 + 2j):
        with pytest.raises(ValueError, match="eta"):
            spigot.structured_argmax(s, spigot.Categorical(), eta=bad)


def test_unwritable_numba_cache_falls_back_to_memory_with_one_warning(tmp_path):
    # numba caches next to the package or in a user-wide directory; with neither writable it
    # has no cache locator. Simulate that by removing every locator before spigot loads.
    code = textwrap.dedent(
        """
        import warnings
        import numba.core.caching as caching
        caching.CacheImpl._locator_classes = []
        import torch, spigot
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            s = torch.tensor([[[0.0, 2.0, 1.0], [0.0, 0.0, 3.0], [0.0, 1.0, 0.0]]])
            z = spigot.DependencyTree().argmax(s)
            spigot.DependencyTree(projective=True).marginals(s)
        msgs = [str(w.message) for w in caught if "numba cannot cache" in str(w.message)]
        assert len(msgs) == 1, msgs
        assert z[0, 0, 1] == 1 and z[0, 1, 2] == 1, z
        print("ok")
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=600, cwd=tmp_path
    )
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]
