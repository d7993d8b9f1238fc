"""sample, entropy and kl of every structure against brute-force enumeration."""

from __future__ import annotations

import itertools

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import spigot
from brute import tree_scores, trees

CONFIGS = list(itertools.product((False, True), (True, False)))  # (projective, single_root)
IDS = [f"{'proj' if p else 'nonproj'}-{'single' if r else 'multi'}" for p, r in CONFIGS]


def random_scores(seed: int, n: int, batch: int = 1, scale: float = 1.0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return (scale * torch.randn(batch, n + 1, n + 1, generator=g)).to(dtype)


def chi2_pvalue(counts: torch.Tensor, probs: torch.Tensor) -> float:
    """Pearson's goodness-of-fit p-value; outcomes expected fewer than 5 times are pooled."""
    counts, probs = counts.double(), probs.double()
    expected = probs * counts.sum()
    small = expected < 5
    obs = torch.cat([counts[~small], counts[small].sum().view(1)])
    exp = torch.cat([expected[~small], expected[small].sum().view(1)])
    obs, exp = obs[exp > 0], exp[exp > 0]
    stat = ((obs - exp) ** 2 / exp).sum()
    df = obs.numel() - 1
    return float(torch.special.gammaincc(torch.tensor(df / 2.0), stat / 2))


def heads_of_samples(z: torch.Tensor) -> torch.Tensor:
    """``[k, n+1]`` heads of 0/1 trees ``[k, n+1, n+1]``, asserting one head per word."""
    assert torch.all(z[:, :, 1:].sum(1) == 1), "every word must have exactly one head"
    assert torch.all(z[:, :, 0] == 0) and torch.all(z.diagonal(dim1=1, dim2=2) == 0)
    return z.argmax(1)


def assert_zero_off_structure(z: torch.Tensor, lengths: list[int]) -> None:
    """``z [k, B, N, N]`` is 0 on padding, in column 0 and on the diagonal."""
    for b, L in enumerate(lengths):
        assert torch.all(z[:, b, L + 1 :] == 0) and torch.all(z[:, b, :, L + 1 :] == 0)
        assert torch.all(z[:, b, :, 0] == 0)
        assert torch.all(z[:, b].diagonal(dim1=1, dim2=2) == 0)


# -- trees ---------------------------------------------------------------------------------
@pytest.mark.parametrize(("projective", "single_root"), CONFIGS, ids=IDS)
def test_tree_samples_follow_the_exact_distribution(projective, single_root):
    # a padded batch of n = 4 and n = 3, garbage on the padding, 20,000 samples each
    tree = spigot.DependencyTree(projective=projective, single_root=single_root)
    lengths = [4, 3]
    s = random_scores(7, 4, batch=2, scale=1.5)
    s[1, 4, :] = 1e3
    s[1, :, 4] = float("nan")
    k = 20_000
    z = tree.sample(s, torch.tensor(lengths), k=k, generator=torch.Generator().manual_seed(0))
    assert z.shape == (k, *s.shape) and z.dtype == s.dtype
    assert torch.all((z == 0) | (z == 1))
    assert_zero_off_structure(z, lengths)
    for b, n in enumerate(lengths):
        ts = trees(n, projective, single_root)
        index = {t: i for i, t in enumerate(ts)}
        heads = heads_of_samples(z[:, b, : n + 1, : n + 1])
        rows, freq = torch.unique(heads, dim=0, return_counts=True)
        counts = torch.zeros(len(ts))
        for h, c in zip(rows.tolist(), freq.tolist(), strict=True):
            assert tuple(h) in index, f"sample {h} is not a tree of the right kind"
            counts[index[tuple(h)]] = c
        probs = torch.softmax(tree_scores(s[b, : n + 1, : n + 1], ts), 0)
        assert chi2_pvalue(counts, probs) > 1e-3


@pytest.mark.parametrize("single_root", [True, False])
def test_nonprojective_sampler_is_exact_through_the_log_space_fallback(single_root, monkeypatch):
    # the compiled matrix-tree kernel hands a sentence it cannot vouch for to the log-space
    # recurrences; conditioning must stay exact there too: fail every sentence on purpose
    import spigot.structures.tree as tree_module

    real = tree_module._call

    def failing(name, *args):
        out = real(name, *args)
        return (*out[:2], out[2] & False) if name == "matrix_tree" else out

    monkeypatch.setattr(tree_module, "_call", failing)
    tree = spigot.DependencyTree(projective=False, single_root=single_root)
    n, k = 3, 600
    s = random_scores(12, n, scale=1.5)
    z = tree.sample(s, k=k, generator=torch.Generator().manual_seed(4))
    ts = trees(n, False, single_root)
    index = {t: i for i, t in enumerate(ts)}
    counts = torch.zeros(len(ts))
    for h in heads_of_samples(z[:, 0]).tolist():
        counts[index[tuple(h)]] += 1
    assert chi2_pvalue(counts, torch.softmax(tree_scores(s[0], ts), 0)) > 1e-3


@pytest.mark.parametrize(("projective", "single_root"), CONFIGS, ids=IDS)
def test_tree_sample_means_match_marginals_beyond_brute_force(projective, single_root):
    tree = spigot.DependencyTree(projective=projective, single_root=single_root)
    lengths = torch.tensor([9, 6])
    s = random_scores(3, 9, batch=2)
    k = 4000
    z = tree.sample(s, lengths, k=k, generator=torch.Generator().manual_seed(1))
    mu = tree.marginals(s, lengths)
    sd = (mu * (1 - mu) / k).sqrt()
    assert torch.all((z.mean(0) - mu).abs() <= 5 * sd + 1e-3)


@pytest.mark.parametrize(("projective", "single_root"), CONFIGS, ids=IDS)
def test_padded_tree_samples_are_valid_and_zero_on_padding(projective, single_root):
    tree = spigot.DependencyTree(projective=projective, single_root=single_root)
    lengths = [12, 5, 1, 9]
    s = random_scores(5, 12, batch=4, dtype=torch.float32)
    for b, L in enumerate(lengths):
        s[b, L + 1 :, :] = 1e3
        s[b, :, L + 1 :] = -1e3
    z = tree.sample(s, torch.tensor(lengths), k=6, generator=torch.Generator().manual_seed(2))
    assert z.shape == (6, 4, 13, 13) and z.dtype == torch.float32
    assert_zero_off_structure(z, lengths)
    for b, L in enumerate(lengths):
        zb = z[:, b, : L + 1, : L + 1].double()
        heads_of_samples(zb)
        roots = zb[:, 0].sum(-1)
        assert torch.all(roots == 1) if single_root else torch.all(roots >= 1)
        # a valid tree of this kind: from_heads raises unless acyclic (and projective if asked)
        tree.from_heads(zb.argmax(1))


@pytest.mark.parametrize(("projective", "single_root"), CONFIGS, ids=IDS)
def test_tree_samples_at_extreme_scales_are_valid_and_peaked(projective, single_root):
    tree = spigot.DependencyTree(projective=projective, single_root=single_root)
    s = random_scores(4, 8, batch=2, scale=1e4)
    z = tree.sample(s, k=8, generator=torch.Generator().manual_seed(3))
    best = tree.argmax(s)
    for b in range(2):
        tree.from_heads(heads_of_samples(z[:, b]))
    assert float((z == best).all(-1).all(-1).double().mean()) >= 0.9


@pytest.mark.parametrize(("projective", "single_root"), CONFIGS, ids=IDS)
@given(n=st.integers(1, 4), seed=st.integers(0, 2**31 - 1))
def test_tree_entropy_and_kl_match_enumeration(projective, single_root, n, seed):
    tree = spigot.DependencyTree(projective=projective, single_root=single_root)
    s = random_scores(seed, n, batch=2, scale=2.0)
    ts = trees(n, projective, single_root)
    logp = torch.log_softmax(tree_scores(s[0], ts), 0)
    logq = torch.log_softmax(tree_scores(s[1], ts), 0)
    h = tree.entropy(s)
    assert float(h[0]) == pytest.approx(float(-(logp.exp() * logp).sum()), abs=1e-6)
    kl = tree.kl(s[:1], s[1:])
    assert float(kl[0]) == pytest.approx(float((logp.exp() * (logp - logq)).sum()), abs=1e-6)
    assert float(tree.kl(s, s).abs().max()) == 0.0


@pytest.mark.parametrize(("projective", "single_root"), CONFIGS, ids=IDS)
def test_tree_entropy_kl_padded_and_differentiable(projective, single_root):
    tree = spigot.DependencyTree(projective=projective, single_root=single_root)
    lengths = torch.tensor([3, 1, 2])
    s = random_scores(6, 3, batch=3)
    q = random_scores(8, 3, batch=3)
    h, kl = tree.entropy(s, lengths), tree.kl(s, q, lengths)
    for b, L in enumerate(lengths.tolist()):
        sb, qb = s[b : b + 1, : L + 1, : L + 1], q[b : b + 1, : L + 1, : L + 1]
        torch.testing.assert_close(h[b], tree.entropy(sb)[0])
        torch.testing.assert_close(kl[b], tree.kl(sb, qb)[0])
    assert float(h[1]) == 0.0 and float(kl[1]) == 0.0  # one word: one tree
    s.requires_grad_(True)
    q.requires_grad_(True)
    torch.autograd.gradcheck(lambda x: tree.entropy(x, lengths), (s,))
    torch.autograd.gradcheck(lambda x, y: tree.kl(x, y, lengths), (s, q))


# -- generators, validation -----------------------------------------------------------------
STRUCTURES = [
    (spigot.DependencyTree(projective=p, single_root=r), (2, 5, 5), torch.tensor([4, 2]))
    for p, r in CONFIGS
] + [
    (spigot.DependencyGraph(), (2, 5, 5), torch.tensor([4, 2])),
    (spigot.Categorical(), (2, 3, 6), None),
]


@pytest.mark.parametrize(("structure", "shape", "lengths"), STRUCTURES, ids=repr)
def test_generator_makes_sampling_reproducible(structure, shape, lengths):
    s = torch.randn(shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    s0 = s.clone()
    a = structure.sample(s, lengths, k=50, generator=torch.Generator().manual_seed(42))
    b = structure.sample(s, lengths, k=50, generator=torch.Generator().manual_seed(42))
    c = structure.sample(s, lengths, k=50, generator=torch.Generator().manual_seed(43))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(s, s0)  # inputs never modified
    g = torch.Generator().manual_seed(7)  # one generator: successive calls differ
    assert not torch.equal(structure.sample(s, lengths, 50, g), structure.sample(s, lengths, 50, g))
    torch.manual_seed(5)  # no generator: torch's default one
    d = structure.sample(s, lengths, k=50)
    torch.manual_seed(5)
    assert torch.equal(d, structure.sample(s, lengths, k=50))
    x = s.clone().requires_grad_(True)
    z = structure.sample(x, lengths, k=2)
    assert z.shape == (2, *shape) and not z.requires_grad and z.dtype == s.dtype


@pytest.mark.parametrize(("structure", "shape", "lengths"), STRUCTURES, ids=repr)
def test_bad_sampling_arguments_raise(structure, shape, lengths):
    s = torch.randn(shape, dtype=torch.float64)
    for k in (0, -1, 1.5, True, "2"):
        with pytest.raises(ValueError, match="`k`"):
            structure.sample(s, lengths, k=k)
    with pytest.raises(ValueError, match="`generator`"):
        structure.sample(s, lengths, generator=0)
    with pytest.raises(ValueError, match="`scores_q`"):
        structure.kl(s, s[:1], lengths)
    bad = s.clone()
    bad[(0,) * (bad.dim() - 1) + (1,)] = float("nan")  # a valid part of every structure
    with pytest.raises(ValueError):
        structure.entropy(bad, lengths)


# -- graphs and categoricals -----------------------------------------------------------------
def graph_sets(n: int) -> tuple[list[tuple[int, int]], torch.Tensor]:
    """Valid arcs of an ``n``-word sentence and every arc set as 0/1 rows ``[2^A, A]``."""
    arcs = [(h, m) for h in range(n + 1) for m in range(1, n + 1) if h != m]
    bits = torch.tensor(list(itertools.product((0.0, 1.0), repeat=len(arcs))), dtype=torch.float64)
    return arcs, bits


def test_graph_samples_follow_the_exact_distribution():
    graph = spigot.DependencyGraph()
    lengths = [2, 1]
    s = random_scores(9, 2, batch=2, scale=1.5)
    s[1, 2, :] = float("nan")  # padding
    k = 20_000
    z = graph.sample(s, torch.tensor(lengths), k=k, generator=torch.Generator().manual_seed(0))
    assert torch.all((z == 0) | (z == 1))
    assert_zero_off_structure(z, lengths)
    for b, n in enumerate(lengths):
        arcs, bits = graph_sets(n)
        h, m = zip(*arcs, strict=True)
        w = s[b][list(h), list(m)]
        probs = torch.softmax(bits @ w, 0)
        code = z[:, b][:, list(h), list(m)].long() * (2 ** torch.arange(len(arcs) - 1, -1, -1))
        counts = torch.bincount(code.sum(-1), minlength=len(bits))
        assert chi2_pvalue(counts, probs) > 1e-3


@given(n=st.integers(1, 2), seed=st.integers(0, 2**31 - 1))
def test_graph_entropy_and_kl_match_enumeration(n, seed):
    graph = spigot.DependencyGraph()
    s = random_scores(seed, n, batch=2, scale=3.0)
    arcs, bits = graph_sets(n)
    h, m = zip(*arcs, strict=True)
    logp = torch.log_softmax(bits @ s[0][list(h), list(m)], 0)
    logq = torch.log_softmax(bits @ s[1][list(h), list(m)], 0)
    ent = graph.entropy(s[:1])
    assert float(ent[0]) == pytest.approx(float(-(logp.exp() * logp).sum()), abs=1e-6)
    kl = graph.kl(s[:1], s[1:])
    assert float(kl[0]) == pytest.approx(float((logp.exp() * (logp - logq)).sum()), abs=1e-6)


def test_categorical_samples_follow_the_exact_distribution():
    cat = spigot.Categorical()
    s = torch.tensor([[0.0, 1.0, -2.0, 0.5, 3.0], [0.0, 0.0, 0.0, 0.0, 0.0]], dtype=torch.float64)
    k = 20_000
    z = cat.sample(s, k=k, generator=torch.Generator().manual_seed(0))
    assert z.shape == (k, 2, 5) and torch.all(z.sum(-1) == 1)
    for b in range(2):
        assert chi2_pvalue(z[:, b].sum(0), torch.softmax(s[b], 0)) > 1e-3
    # a choice of probability 0 (in float64) is never drawn
    z = cat.sample(torch.tensor([0.0, -800.0, 0.0]), k=1000)
    assert float(z[:, 1].sum()) == 0.0


@given(K=st.integers(1, 6), seed=st.integers(0, 2**31 - 1))
def test_categorical_entropy_and_kl_match_torch_distributions(K, seed):
    cat = spigot.Categorical()
    g = torch.Generator().manual_seed(seed)
    s, q = (3 * torch.randn(2, 3, K, generator=g, dtype=torch.float64)).unbind(0)
    p_dist, q_dist = (torch.distributions.Categorical(logits=x) for x in (s, q))
    torch.testing.assert_close(cat.entropy(s), p_dist.entropy(), atol=1e-6, rtol=0)
    kl = torch.distributions.kl_divergence(p_dist, q_dist)
    torch.testing.assert_close(cat.kl(s, q), kl, atol=1e-6, rtol=0)


def test_categorical_entropy_and_kl_are_differentiable():
    cat = spigot.Categorical()
    g = torch.Generator().manual_seed(0)
    s, q = (torch.randn(2, 3, 4, generator=g, dtype=torch.float64) for _ in range(2))
    torch.autograd.gradcheck(cat.entropy, (s.requires_grad_(True),))
    torch.autograd.gradcheck(cat.kl, (s, q.requires_grad_(True)))
