"""DependencyTree against brute-force enumeration, padding, ties, stability, gradients."""

from __future__ import annotations

import itertools

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import spigot
from brute import heads_of, tree_oracle, tree_scores, trees

CONFIGS = list(itertools.product((False, True), (True, False)))  # (projective, single_root)
IDS = [f"{'proj' if p else 'nonproj'}-{'single' if r else 'multi'}" for p, r in CONFIGS]


def random_scores(seed: int, n: int, batch: int = 1, scale: float = 1.0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return (scale * torch.randn(batch, n + 1, n + 1, generator=g)).to(dtype)


def test_enumeration_counts_match_known_formulas():
    # the oracle itself: (n+1)^(n-1) non-projective multi-root trees (Cayley), n^(n-1) single-root
    for n in range(1, 6):
        assert len(trees(n, False, False)) == (n + 1) ** (n - 1)
        assert len(trees(n, False, True)) == n ** (n - 1)
    # projective multi-root trees over n words: 1, 3, 12, 55, 273 (OEIS A001764(n))
    assert [len(trees(n, True, False)) for n in range(1, 6)] == [1, 3, 12, 55, 273]
    # projective single-root: 1, 2, 7, 30, 143 (OEIS A006013(n-1))
    assert [len(trees(n, True, True)) for n in range(1, 6)] == [1, 2, 7, 30, 143]


@pytest.mark.parametrize(("projective", "single_root"), CONFIGS, ids=IDS)
@given(n=st.integers(1, 5), seed=st.integers(0, 2**31 - 1))
def test_argmax_marginals_logz_match_enumeration(projective, single_root, n, seed):
    tree = spigot.DependencyTree(projective=projective, single_root=single_root)
    s = random_scores(seed, n)
    best, logz, mu = tree_oracle(s[0], projective, single_root)
    z = tree.argmax(s)
    h = heads_of(z[0])
    assert h in trees(n, projective, single_root), "argmax is not a structure of the right kind"
    assert float(tree.score(s, z)[0]) == pytest.approx(float(best), abs=1e-9)
    torch.testing.assert_close(tree.log_partition(s)[0], logz, atol=1e-9, rtol=1e-9)
    torch.testing.assert_close(tree.marginals(s)[0], mu, atol=1e-9, rtol=1e-7)


@pytest.mark.parametrize(("projective", "single_root"), CONFIGS, ids=IDS)
def test_argmax_float32_and_large_n_is_a_valid_tree(projective, single_root):
    tree = spigot.DependencyTree(projective=projective, single_root=single_root)
    s = random_scores(3, 30, batch=4, dtype=torch.float32)
    z = tree.argmax(s)
    assert z.dtype == torch.float32 and z.shape == s.shape
    for b in range(4):
        h = heads_of(z[b])
        roots = sum(1 for m in range(1, 31) if h[m] == 0)
        assert roots >= 1 and (roots == 1 or not single_root)


@pytest.mark.parametrize(("projective", "single_root"), CONFIGS, ids=IDS)
def test_ties_are_broken_deterministically(projective, single_root):
    tree = spigot.DependencyTree(projective=projective, single_root=single_root)
    g = torch.Generator().manual_seed(0)
    s = torch.randint(0, 2, (6, 6, 6), generator=g).double()  # many exact ties
    z1, z2 = tree.argmax(s), tree.argmax(s.clone())
    assert torch.equal(z1, z2)
    for b in range(6):
        best, _, _ = tree_oracle(s[b], projective, single_root)
        assert float(tree.score(s[b : b + 1], z1[b : b + 1])) == float(best)
    # all-equal scores: every tree ties; the winner must not depend on padding or batch mates
    flat = torch.zeros(1, 5, 5, dtype=torch.float64)
    z = tree.argmax(flat)
    assert heads_of(z[0]) in trees(4, projective, single_root)
    padded = torch.zeros(3, 8, 8, dtype=torch.float64)
    padded[1] = 5.0  # a batch mate with other scores
    zp = tree.argmax(padded, torch.tensor([4, 7, 4]))
    assert torch.equal(zp[0, :5, :5], z[0]) and torch.equal(zp[2, :5, :5], z[0])


@pytest.mark.parametrize(("projective", "single_root"), CONFIGS, ids=IDS)
def test_padded_batch_equals_one_by_one(projective, single_root):
    tree = spigot.DependencyTree(projective=projective, single_root=single_root)
    n = 7
    lengths = torch.tensor([1, 7, 3, 1, 5, 7])
    s = random_scores(11, n, batch=len(lengths))
    # garbage on the padding must not matter
    for b, L in enumerate(lengths.tolist()):
        s[b, L + 1 :, :] = 1e3
        s[b, :, L + 1 :] = -1e3
    z = tree.argmax(s, lengths)
    mu = tree.marginals(s, lengths)
    logz = tree.log_partition(s, lengths)
    for b, L in enumerate(lengths.tolist()):
        sb = s[b : b + 1, : L + 1, : L + 1]
        assert torch.equal(z[b, : L + 1, : L + 1], tree.argmax(sb)[0])
        torch.testing.assert_close(mu[b, : L + 1, : L + 1], tree.marginals(sb)[0])
        torch.testing.assert_close(logz[b], tree.log_partition(sb)[0])
        for out in (z, mu):
            assert torch.all(out[b, L + 1 :] == 0) and torch.all(out[b, :, L + 1 :] == 0)
            assert torch.all(out[b, :, 0] == 0) and torch.all(out[b].diagonal() == 0)


def test_n_equals_one():
    for projective, single_root in CONFIGS:
        tree = spigot.DependencyTree(projective=projective, single_root=single_root)
        s = torch.tensor([[[0.0, 2.0], [5.0, 0.0]]])
        assert torch.equal(tree.argmax(s), torch.tensor([[[0.0, 1.0], [0.0, 0.0]]]))
        assert torch.equal(tree.marginals(s), torch.tensor([[[0.0, 1.0], [0.0, 0.0]]]))
        assert float(tree.log_partition(s)) == pytest.approx(2.0)


@given(seed=st.integers(0, 2**31 - 1), n=st.integers(2, 100))
def test_eisner_never_beats_cle_and_ties_when_cle_is_projective(seed, n):
    for single_root in (True, False):
        s = random_scores(seed, n)
        zp = spigot.DependencyTree(projective=True, single_root=single_root).argmax(s)
        zn = spigot.DependencyTree(projective=False, single_root=single_root).argmax(s)
        sp, sn = float((s * zp).sum()), float((s * zn).sum())
        assert sp <= sn + 1e-9
        from brute import _is_projective

        if _is_projective(heads_of(zn[0])):
            assert sp == pytest.approx(sn, abs=1e-9)


@pytest.mark.parametrize("projective", [False, True])
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(2, 6))
def test_single_root_equals_best_over_forced_root_child(projective, seed, n):
    s = random_scores(seed, n)
    multi = trees(n, projective, False)
    sc = tree_scores(s[0], multi)
    # best over the trees enumerated with each root child r forced
    by_child = []
    for r in range(1, n + 1):
        cand = [
            float(sc[i])
            for i, t in enumerate(multi)
            if [m for m in range(1, n + 1) if t[m] == 0] == [r]
        ]
        if cand:
            by_child.append(max(cand))
    best = max(by_child)
    z = spigot.DependencyTree(projective=projective, single_root=True).argmax(s)
    assert float((s * z).sum()) == pytest.approx(best, abs=1e-9)


@pytest.mark.parametrize(("projective", "single_root"), CONFIGS, ids=IDS)
def test_stable_for_huge_scores_float32(projective, single_root):
    tree = spigot.DependencyTree(projective=projective, single_root=single_root)
    n = 300 if not projective else 120
    for scale in (1e4, 1.0):
        s = random_scores(5, n, batch=1, scale=scale, dtype=torch.float32)
        logz = tree.log_partition(s)
        mu = tree.marginals(s)
        assert torch.isfinite(logz).all() and torch.isfinite(mu).all()
        torch.testing.assert_close(mu[0, :, 1:].sum(0), torch.ones(n), atol=1e-3, rtol=0)
        assert float(mu.min()) >= -1e-4 and float(mu.max()) <= 1 + 1e-4
        best = float((s * tree.argmax(s)).sum())
        assert float(logz) >= best - 1e-3 * max(1.0, abs(best))


@pytest.mark.parametrize(("projective", "single_root"), CONFIGS, ids=IDS)
def test_gradients_of_log_partition_and_marginals(projective, single_root):
    tree = spigot.DependencyTree(projective=projective, single_root=single_root)
    lengths = torch.tensor([4, 2, 3])
    s = random_scores(2, 4, batch=3).requires_grad_(True)
    torch.autograd.gradcheck(lambda x: tree.log_partition(x, lengths), (s,))
    torch.autograd.gradcheck(lambda x: tree.marginals(x, lengths), (s,))
    torch.autograd.gradgradcheck(lambda x: tree.log_partition(x, lengths), (s,))
    # d log Z / d s equals the marginals
    (g,) = torch.autograd.grad(tree.log_partition(s, lengths).sum(), s)
    torch.testing.assert_close(g, tree.marginals(s.detach(), lengths))


def test_compiled_inside_matches_torch_reference():
    from spigot.structures._arcs import arc_mask
    from spigot.structures._logspace import projective_log_partition

    lengths = torch.tensor([9, 1, 5, 9])
    s = random_scores(8, 9, batch=4)
    for single_root in (True, False):
        tree = spigot.DependencyTree(projective=True, single_root=single_root)
        ref = projective_log_partition(s, lengths, arc_mask(lengths, 10, s.device), single_root)
        torch.testing.assert_close(tree.log_partition(s, lengths), ref)


def test_projection_is_one_simplex_per_modifier():
    tree = spigot.DependencyTree()
    lengths = torch.tensor([3, 2])
    x = random_scores(4, 3, batch=2, scale=3.0)
    p = tree.project(x, lengths)
    mask = tree.mask(x, lengths)
    assert torch.all(p >= 0) and torch.all(p[~mask] == 0)
    torch.testing.assert_close(p[0, :, 1:].sum(0), torch.ones(3, dtype=p.dtype))
    torch.testing.assert_close(p[1, :, 1:3].sum(0), torch.ones(2, dtype=p.dtype))
    z = tree.argmax(x, lengths)
    torch.testing.assert_close(tree.project(z, lengths), z)  # vertices are fixed points


@pytest.mark.parametrize(("projective", "single_root"), CONFIGS, ids=IDS)
def test_inputs_never_mutated_and_outputs_follow_scores(projective, single_root):
    tree = spigot.DependencyTree(projective=projective, single_root=single_root)
    lengths = torch.tensor([3, 4])
    s = random_scores(1, 4, batch=2, dtype=torch.float32).requires_grad_(True)
    s0, l0 = s.detach().clone(), lengths.clone()
    for est in spigot.ESTIMATORS:
        z = spigot.structured_argmax(s, tree, estimator=est, lengths=lengths)
        assert z.shape == s.shape and z.dtype == s.dtype and z.device == s.device
        if z.requires_grad:  # not for the pipeline
            (z * torch.randn_like(z)).sum().backward()
    tree.log_partition(s, lengths).sum().backward()
    tree.project(s.detach(), lengths)
    assert torch.equal(s.detach(), s0) and torch.equal(lengths, l0)


def test_half_precision_inputs():
    tree = spigot.DependencyTree()
    s = random_scores(0, 5, batch=2, dtype=torch.float32)
    for dt in (torch.float16, torch.bfloat16):
        z = tree.argmax(s.to(dt))
        assert z.dtype == dt
        assert torch.isfinite(tree.marginals(s.to(dt))).all()
