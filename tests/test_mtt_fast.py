"""The fast matrix-tree paths: the blocked compiled kernel (CPU) and the batched-LU device path.

* the compiled kernel (:mod:`spigot._kernels_mtt`) against enumeration, against autograd
  through the log-space recurrences, its short-sentence path against its blocked one, and the
  blocked passes against their unblocked form (``panel = 1``);
* determinism: padded batches bitwise equal to one-by-one calls across both paths, float32 and
  float64, both root modes, 1 or 2 threads; scratch memory never read before written;
* the fallback: sentences the kernel cannot vouch for are flagged and redone exactly;
* the device path (:mod:`spigot._mtt_fast`, used for CUDA tensors) run on CPU tensors through
  the same dispatch: against enumeration and the compiled kernel, its check rejecting
  adversarial sentences, which the compiled kernel then serves.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import spigot
import spigot.structures.tree as tree_module
from brute import tree_oracle
from spigot import _kernels_mtt as K
from spigot._mtt_fast import matrix_tree_torch
from spigot.structures._logspace import matrix_tree_log_partition

ROOTS = [True, False]
ROOT_IDS = ["single", "multi"]
EPS64 = torch.finfo(torch.float64).eps


def _scores(seed: int, n: int, batch: int = 1, scale: float = 1.0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return (scale * torch.randn(batch, n + 1, n + 1, generator=g, dtype=torch.float64)).to(dtype)


def _kernel(s: np.ndarray, lengths: np.ndarray, single_root: bool, panel: int = K.PANEL):
    """The raw kernel on float64/float32 arrays, scratch full of NaN (it must never be read)."""
    ws = np.full((2, K.workspace_size(s.shape[-1] - 1, panel)), np.nan)
    mu = np.full(s.shape, np.nan, dtype=s.dtype)
    logz, mu, ok = K.matrix_tree(s, lengths, single_root, True, mu, panel, ws)
    return logz, mu, ok


def _reference(s: torch.Tensor, lengths: torch.Tensor, single_root: bool):
    """``(log Z, marginals)`` by autograd through the log-space recurrences (float64)."""
    tree = spigot.DependencyTree(single_root=single_root)
    mask = tree.mask(s, lengths)
    x = s.double().clone().requires_grad_(True)
    lz = matrix_tree_log_partition(x, lengths, mask, single_root)
    (mu,) = torch.autograd.grad(lz.sum(), x)
    return lz.detach(), torch.where(mask, mu, 0)


@pytest.fixture
def device_path(monkeypatch):
    """Route CPU tensors through the device path, exactly as CUDA tensors are."""
    monkeypatch.setattr(tree_module, "_use_device_path", lambda scores: True)


# --------------------------------------------------------------------------------------------
# the compiled kernel
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("single_root", ROOTS, ids=ROOT_IDS)
@given(n=st.integers(1, 5), seed=st.integers(0, 2**31 - 1), scale=st.sampled_from([1.0, 5.0, 30.0]))
def test_kernel_matches_enumeration(single_root, n, seed, scale):
    tree = spigot.DependencyTree(single_root=single_root)
    s = _scores(seed, n, scale=scale)
    _, logz, mu = tree_oracle(s[0], False, single_root)
    torch.testing.assert_close(tree.log_partition(s)[0], logz, atol=1e-9, rtol=1e-9)
    tol = 64 * EPS64 * max(1.0, float(s.abs().max()))
    torch.testing.assert_close(tree.marginals(s)[0], mu, atol=tol, rtol=0)


@pytest.mark.parametrize("single_root", ROOTS, ids=ROOT_IDS)
def test_blocked_kernel_matches_the_log_space_reference(single_root):
    # n >= K.SHORT takes the blocked passes; n < K.SHORT the unblocked ones
    tree = spigot.DependencyTree(single_root=single_root)
    for n, scale in itertools.product((K.SHORT - 1, K.SHORT, 37, 90), (0.3, 1.0, 10.0)):
        lengths = torch.tensor([n, n - 3, max(1, n // 2)])
        s = _scores(n, n, batch=3, scale=scale)
        ref_lz, ref_mu = _reference(s, lengths, single_root)
        tol = 64 * EPS64 * max(1.0, 6 * scale) * n
        torch.testing.assert_close(tree.marginals(s, lengths), ref_mu, atol=tol, rtol=0)
        torch.testing.assert_close(tree.log_partition(s, lengths), ref_lz, atol=tol, rtol=1e-13)


@pytest.mark.parametrize("single_root", ROOTS, ids=ROOT_IDS)
def test_blocking_changes_nothing_but_rounding(single_root):
    # panel = 1 is the plain unblocked elimination; log Z takes its terms in the same order
    # whatever the panel (bitwise), the marginals' reductions are grouped differently
    rng = np.random.default_rng(0)
    for n in (K.SHORT, 41, 70):
        s = rng.standard_normal((3, n + 1, n + 1)) * np.array([1.0, 10.0, 0.2]).reshape(3, 1, 1)
        lengths = np.array([n, n - 1, n - 5])
        lz1, mu1, ok1 = _kernel(s, lengths, single_root, panel=1)
        for panel in (2, 3, 4, 7, 64):
            lz, mu, ok = _kernel(s, lengths, single_root, panel=panel)
            assert np.array_equal(ok, ok1) and ok.all()
            assert np.array_equal(lz, lz1), panel
            assert np.abs(mu - mu1).max() < 1e-13, panel


@pytest.mark.parametrize("single_root", ROOTS, ids=ROOT_IDS)
def test_short_path_agrees_with_the_blocked_passes(single_root):
    rng = np.random.default_rng(1)
    for n in (1, 2, 5, 13, K.SHORT - 1):
        N1 = n + 1
        s = rng.standard_normal((N1, N1)) * 3.0
        T, T0, A = (np.empty((n, N1)) for _ in range(3))
        c, invd = np.empty(n), np.empty(n)
        mu_s = np.zeros((N1, N1))
        args = (np.empty(n * N1), np.empty(n * N1, dtype=np.int64))
        lz_s, ok_s = K._mtt_short(s, n, single_root, True, mu_s, T, T0, A, c, invd, *args)
        # the blocked passes, called directly (matrix_tree sends n < SHORT to _mtt_short)
        T, buf = np.empty((n, N1)), np.empty((N1, n))
        K._weights(s, n, T, c, buf, np.empty(n), np.empty(n, dtype=np.int64))
        T0 = T.copy()
        lz_b, ok_b = K._eliminate(T, c, n, single_root, 4, invd, np.empty((4, n)), np.empty(n))
        A = np.empty((n, N1))
        scratch = (np.empty((N1, n)), np.empty((4, n)), np.empty((4, n)), np.empty(4))
        K._adjoint(T, n, single_root, 4, invd, A, *scratch)
        mu_b = np.zeros((N1, N1))
        assert ok_s and ok_b and K._marginals(T0, A, n, mu_b)
        assert abs(lz_s - lz_b) <= 1e-13 * max(1.0, abs(lz_b))
        assert np.abs(mu_s - mu_b).max() <= 1e-14


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("single_root", ROOTS, ids=ROOT_IDS)
def test_padded_batches_equal_one_by_one_bitwise_across_both_paths(single_root, dtype):
    numba = pytest.importorskip("numba")
    tree = spigot.DependencyTree(single_root=single_root)
    g = torch.Generator().manual_seed(5)
    B, n = 24, 60
    lengths = torch.randint(1, n + 1, (B,), generator=g)
    lengths[:4] = torch.tensor([n, K.SHORT, K.SHORT - 1, 1])
    scale = torch.tensor([1.0, 10.0, 100.0, 0.1])[torch.arange(B) % 4].view(-1, 1, 1)
    s = (scale * torch.randn(B, n + 1, n + 1, generator=g, dtype=torch.float64)).to(dtype)
    before = numba.get_num_threads()
    out = {}
    try:
        for threads in (1, 2) if numba.config.NUMBA_NUM_THREADS >= 2 else (1,):
            numba.set_num_threads(threads)
            out[threads] = (tree.marginals(s, lengths), tree.log_partition(s, lengths))
    finally:
        numba.set_num_threads(before)
    mu, lz = out[1]
    for threads in out:
        assert torch.equal(out[threads][0], mu) and torch.equal(out[threads][1], lz)
    for b in range(B):
        L = int(lengths[b]) + 1
        one = s[b : b + 1, :L, :L]
        assert torch.equal(mu[b, :L, :L], tree.marginals(one)[0]), b
        assert torch.equal(lz[b], tree.log_partition(one)[0]), b
        assert not mu[b, L:].any() and not mu[b, :, L:].any()  # padding stays 0


def test_scratch_is_reused_and_never_read_before_written():
    rng = np.random.default_rng(2)
    s = rng.standard_normal((3, 51, 51))
    lengths = np.array([50, 30, 7])
    ws = K.workspace(50)
    assert K.workspace(40) is ws  # kept between calls (no fresh pages)
    mu = np.empty(s.shape)
    lz, mu, ok = K.matrix_tree(s, lengths, True, True, mu, K.PANEL, ws)
    lz_nan, mu_nan, ok_nan = _kernel(s, lengths, True)  # scratch full of NaN
    assert ok.all() and np.array_equal(ok, ok_nan)
    assert np.array_equal(lz, lz_nan) and np.array_equal(mu, mu_nan)


# --------------------------------------------------------------------------------------------
# the fallback
# --------------------------------------------------------------------------------------------
def _adversarial(seed: int, n: int = 6, batch: int = 12):
    """Scores the linear-scale elimination cannot vouch for: spreads of 1e3-1e4, arcs masked
    at -400, root arcs far below every word arc (tiny root weights)."""
    g = torch.Generator().manual_seed(seed)
    scale = torch.tensor([1e3, 1e4, 300.0])[torch.arange(batch) % 3].view(-1, 1, 1)
    s = scale * torch.randn(batch, n + 1, n + 1, generator=g, dtype=torch.float64)
    drop = torch.rand(batch, n + 1, n + 1, generator=g) < 0.3
    s = torch.where(drop, torch.full_like(s, -400.0), s)
    s[::4, 0, :] -= 2e3
    return s, torch.arange(batch) % (n - 1) + 2


@pytest.mark.parametrize("single_root", ROOTS, ids=ROOT_IDS)
def test_fallback_is_triggered_and_exact(single_root, monkeypatch):
    s, lengths = _adversarial(7)
    _, _, ok = _kernel(s.numpy(), lengths.numpy(), single_root)
    assert not ok.all(), "the adversarial batch should trip the kernel's checks"
    redone = []
    real = tree_module.matrix_tree_log_partition

    def spy(*args):
        redone.append(1)
        return real(*args)

    monkeypatch.setattr(tree_module, "matrix_tree_log_partition", spy)
    tree = spigot.DependencyTree(single_root=single_root)
    mu = tree.marginals(s, lengths)
    assert len(redone) == int((~ok).sum())
    assert torch.isfinite(mu).all() and float(mu.min()) >= 0 and float(mu.max()) <= 1
    for b in range(s.shape[0]):
        L = int(lengths[b]) + 1
        _, logz, ref = tree_oracle(s[b, :L, :L], False, single_root)
        tol = 64 * EPS64 * float(s[b, :L, :L].abs().max())
        torch.testing.assert_close(mu[b, :L, :L], ref, atol=tol, rtol=0)
        torch.testing.assert_close(tree.log_partition(s[b : b + 1, :L, :L])[0], logz)


# --------------------------------------------------------------------------------------------
# the device path, on CPU tensors
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("single_root", ROOTS, ids=ROOT_IDS)
@given(n=st.integers(1, 5), seed=st.integers(0, 2**31 - 1), scale=st.sampled_from([1.0, 4.0, 20.0]))
def test_device_path_matches_enumeration(single_root, dtype, n, seed, scale):
    s = _scores(seed, n, scale=scale, dtype=dtype)
    lz, mu, ok = matrix_tree_torch(s, torch.tensor([n]), single_root, True)
    _, logz, ref = tree_oracle(s[0].double(), False, single_root)
    if bool(ok[0]):  # what it accepts is exact; what it rejects the compiled kernel redoes
        tol = 64 * EPS64 * max(1.0, float(s.abs().max())) * 16
        torch.testing.assert_close(mu[0], ref, atol=tol, rtol=0)
        torch.testing.assert_close(lz[0], logz, atol=1e-9, rtol=1e-9)
    assert mu.dtype == torch.float64 and lz.dtype == torch.float64


@pytest.mark.parametrize("single_root", ROOTS, ids=ROOT_IDS)
def test_device_path_through_the_dispatch_matches_the_kernel(single_root, device_path):
    tree = spigot.DependencyTree(single_root=single_root)
    for n, scale in itertools.product((3, 30, 80), (0.5, 1.0, 3.0)):
        lengths = torch.tensor([n, max(1, n - 7), 1, n])
        s = _scores(n, n, batch=4, scale=scale)
        ref_mu, ref_lz = tree_module._matrix_tree_cpu(
            s, lengths, tree.mask(s, lengths), single_root, True
        )[::-1]
        mu = tree.marginals(s, lengths)
        lz = tree.log_partition(s, lengths)
        tol = 1e3 * EPS64 * max(1.0, 6 * scale) * n
        torch.testing.assert_close(mu, ref_mu, atol=tol, rtol=0)
        torch.testing.assert_close(lz, ref_lz, atol=tol, rtol=1e-12)
        # the gradient of log Z is the marginals, through the same path
        x = s.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(tree.log_partition(x, lengths).sum(), x)
        torch.testing.assert_close(g, mu, atol=tol, rtol=0)


@pytest.mark.parametrize("single_root", ROOTS, ids=ROOT_IDS)
def test_device_path_rejects_what_it_cannot_vouch_for(single_root, device_path):
    s, lengths = _adversarial(11)
    _, _, ok = matrix_tree_torch(s, lengths, single_root, True)
    assert not ok.all(), "LU on these scores should fail its check somewhere"
    tree = spigot.DependencyTree(single_root=single_root)
    mu, lz = tree.marginals(s, lengths), tree.log_partition(s, lengths)
    mask = tree.mask(s, lengths)
    cpu_lz, cpu_mu = tree_module._matrix_tree_cpu(s, lengths, mask, single_root, True)
    bad = ~ok
    # rejected sentences come from the compiled kernel: the same bits as the CPU path
    assert torch.equal(mu[bad], cpu_mu[bad]) and torch.equal(lz[bad], cpu_lz[bad])
    for b in range(s.shape[0]):
        L = int(lengths[b]) + 1
        _, logz, ref = tree_oracle(s[b, :L, :L], False, single_root)
        tol = 64 * EPS64 * float(s[b, :L, :L].abs().max())
        torch.testing.assert_close(mu[b, :L, :L], ref, atol=tol, rtol=0)
        torch.testing.assert_close(lz[b], logz)


def test_device_path_groups_by_length_and_never_reads_padding():
    g = torch.Generator().manual_seed(3)
    B, n = 9, 12
    lengths = torch.tensor([12, 3, 12, 1, 7, 3, 12, 7, 5])
    s = torch.randn(B, n + 1, n + 1, generator=g, dtype=torch.float64)
    for b in range(B):  # NaN everywhere a sentence does not own
        L = int(lengths[b]) + 1
        s[b, L:] = float("nan")
        s[b, :, L:] = float("nan")
    for single_root in ROOTS:
        lz, mu, ok = matrix_tree_torch(s, lengths, single_root, True)
        assert ok.all() and torch.isfinite(mu).all() and torch.isfinite(lz).all()
        for b in range(B):
            L = int(lengths[b]) + 1
            lz1, mu1, _ = matrix_tree_torch(
                s[b : b + 1, :L, :L], lengths[b : b + 1], single_root, True
            )
            torch.testing.assert_close(mu[b, :L, :L], mu1[0], atol=1e-13, rtol=0)
            torch.testing.assert_close(lz[b], lz1[0], atol=1e-12, rtol=1e-14)
            assert not mu[b, L:].any() and not mu[b, :, L:].any()


def test_marginals_skip_autograd_only_when_nothing_is_differentiated():
    tree = spigot.DependencyTree()
    s = _scores(0, 4, batch=2)
    assert tree.marginals(s).grad_fn is None
    x = s.clone().requires_grad_(True)
    mu = tree.marginals(x)
    assert mu.grad_fn is not None
    assert torch.equal(mu.detach(), tree.marginals(s))
    with torch.no_grad():
        assert tree.marginals(x).grad_fn is None


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
def test_results_never_share_the_reused_host_buffers(dtype):
    # float32 scores are copied to float64 and their marginals cast back through memory kept
    # between calls: a result must survive the next call untouched
    tree = spigot.DependencyTree()
    assert 40 * 31 * 31 >= tree_module._REUSE_FROM  # large enough to take the reused memory
    s1, s2 = _scores(1, 30, batch=40, dtype=dtype), _scores(2, 30, batch=40, dtype=dtype)
    mu1, lz1 = tree.marginals(s1), tree.log_partition(s1)
    keep = (mu1.clone(), lz1.clone())
    mu2 = tree.marginals(s2)
    tree.log_partition(s2)
    assert torch.equal(mu1, keep[0]) and torch.equal(lz1, keep[1])
    assert mu1.dtype == dtype and not torch.equal(mu1, mu2)
