"""The paired tests of spigot.experiments.significance on small hand-made inputs (no data)."""

from __future__ import annotations

import numpy as np
import pytest

from spigot.experiments.significance import (
    decide,
    holm,
    mean_sd,
    paired_bootstrap,
    paired_permutation,
    score,
    seed_differences,
    t_quantile,
    verdict,
)


def system(n: int = 200, seed: int = 0) -> np.ndarray:
    """Per-sentence ``(correct, pred, gold)`` counts of a made-up system on ``n`` sentences."""
    rng = np.random.default_rng(seed)
    gold = rng.integers(0, 8, n)
    pred = rng.integers(0, 8, n)
    correct = np.minimum(gold, pred) // 2
    return np.stack([correct, pred, gold], axis=-1)


def test_score_is_the_corpus_f1_or_accuracy():
    assert score(np.array([3, 4, 6])) == pytest.approx(2 * 3 / 10)  # P 3/4, R 3/6
    assert score(np.array([0, 0, 0])) == 0.0  # nothing predicted, nothing to find
    assert score(np.array([[9, 10], [0, 0]])).tolist() == [0.9, 0.0]
    with pytest.raises(ValueError, match="2 or 3"):
        score(np.ones(4))


def test_identical_systems_give_a_zero_difference_and_p_one():
    a = system()
    boot = paired_bootstrap(a, a.copy(), n_resamples=2000)
    assert boot.delta == 0 and boot.ci_low == boot.ci_high == 0
    assert boot.p_value == 1.0
    perm = paired_permutation(a, a.copy(), n_permutations=2000)
    assert perm.delta == 0 and perm.p_value == 1.0
    assert (boot.n_items, boot.n_runs, boot.n_resamples) == (200, 1, 2000)


def test_a_system_better_on_every_sentence_is_significant():
    b = system()
    a = b.copy()
    a[:, 0] = np.minimum(a[:, 0] + 1, np.minimum(a[:, 1], a[:, 2]))  # one more correct arc
    better = (a[:, 0] > b[:, 0]).sum()
    assert better > 100 and (a[:, 0] >= b[:, 0]).all()
    boot = paired_bootstrap(a, b, n_resamples=2000, seed=1)
    assert boot.delta == pytest.approx(score(a.sum(0)) - score(b.sum(0)))
    assert boot.delta > 0 and 0 < boot.ci_low < boot.delta < boot.ci_high
    assert boot.p_value < 0.01 and boot.p_value == pytest.approx(1 / 2001)
    perm = paired_permutation(a, b, n_permutations=2000, seed=1)
    assert perm.p_value < 0.01
    # swapping the roles flips the sign and keeps the p-value
    rev = paired_bootstrap(b, a, n_resamples=2000, seed=1)
    assert rev.delta == pytest.approx(-boot.delta) and rev.p_value == boot.p_value
    assert (rev.ci_low, rev.ci_high) == pytest.approx((-boot.ci_high, -boot.ci_low))


def test_same_corpus_score_gives_p_one():
    # a system paired with a sentence-wise shuffle of itself: other sentences, same totals
    a = system(seed=1)
    b = a[np.random.default_rng(3).permutation(len(a))]
    assert paired_bootstrap(a, b, n_resamples=2000).p_value == 1.0
    assert paired_permutation(a, b, n_permutations=2000).p_value == 1.0


def test_noise_alone_is_rejected_at_about_the_nominal_rate():
    """Under the null (the two systems' outputs exchangeable per sentence) p < 0.05 about 5% of
    the time: 40 simulated pairs, loose bounds."""
    rng = np.random.default_rng(0)
    rejected = {"bootstrap": 0, "permutation": 0}
    for k in range(40):
        base = system(n=150, seed=100 + k)
        swap = rng.integers(0, 2, len(base)).astype(bool)
        other = system(n=150, seed=1000 + k)
        other[:, 2] = base[:, 2]  # same gold, outputs from the same distribution
        a, b = np.where(swap[:, None], other, base), np.where(swap[:, None], base, other)
        rejected["bootstrap"] += paired_bootstrap(a, b, n_resamples=500, seed=k).p_value < 0.05
        rejected["permutation"] += (
            paired_permutation(a, b, n_permutations=500, seed=k).p_value < 0.05
        )
    assert rejected["bootstrap"] <= 8 and rejected["permutation"] <= 8


def test_pooled_over_seeds_and_accuracy_counts():
    b = system()
    a = b.copy()
    a[:, 0] = np.minimum(a[:, 0] + 1, np.minimum(a[:, 1], a[:, 2]))
    runs_a, runs_b = np.stack([a, a, b]), np.stack([b, b, b])  # better in 2 of 3 seeds
    pooled = paired_bootstrap(runs_a, runs_b, n_resamples=1000)
    assert pooled.n_runs == 3
    assert pooled.delta == pytest.approx(2 / 3 * (score(a.sum(0)) - score(b.sum(0))))
    assert pooled.p_value < 0.01
    heads = np.array([[5, 10], [3, 3], [0, 4]])
    worse = np.array([[4, 10], [3, 3], [0, 4]])
    res = paired_bootstrap(heads, worse, n_resamples=500)
    assert res.delta == pytest.approx(8 / 17 - 7 / 17)
    with pytest.raises(ValueError, match="same shape"):
        paired_bootstrap(a, a[:-1])
    with pytest.raises(ValueError, match=r"\[N, k\]"):
        paired_permutation(np.ones(3), np.ones(3))


def test_results_are_seeded():
    a, b = system(seed=5), system(seed=6)
    assert paired_bootstrap(a, b, seed=3, n_resamples=800) == paired_bootstrap(
        a, b, seed=3, n_resamples=800
    )
    one = paired_permutation(a, b, seed=3, n_permutations=800)
    assert one.p_value == paired_permutation(a, b, seed=3, n_permutations=800).p_value
    other = paired_permutation(a, b, seed=4, n_permutations=800)
    assert other.delta == one.delta and other.p_value != one.p_value


def test_seed_differences():
    sd = seed_differences([0.01, 0.02, 0.015, 0.005, 0.012])
    assert sd.mean == pytest.approx(0.0124)
    assert sd.sd == pytest.approx(np.std([0.01, 0.02, 0.015, 0.005, 0.012], ddof=1))
    half = 2.776 * sd.sd / np.sqrt(5)
    assert (sd.ci_low, sd.ci_high) == pytest.approx((0.0124 - half, 0.0124 + half))
    assert sd.p_sign_flip == pytest.approx(2 / 32)  # all positive: the two extreme flips
    mixed = seed_differences([0.01, -0.01, 0.002])
    assert mixed.p_sign_flip == 1.0  # every flip gives |mean| >= 0.002 / 3
    zero = seed_differences([0.0, 0.0, 0.0])
    assert zero.mean == 0 and zero.p_sign_flip == 1.0
    one = seed_differences([0.3])
    assert one.sd == 0 and np.isnan(one.ci_low) and one.p_sign_flip == 1.0
    with pytest.raises(ValueError):
        seed_differences([])


def test_t_quantile_and_mean_sd():
    assert t_quantile(1) == 12.706 and t_quantile(4) == 2.776
    assert t_quantile(60) == pytest.approx(2.000, abs=1e-3)
    assert t_quantile(1000) == pytest.approx(1.962, abs=1e-3)
    with pytest.raises(ValueError):
        t_quantile(0)
    assert mean_sd([1.0, 3.0]) == pytest.approx((2.0, np.sqrt(2)))
    assert mean_sd([2.0, float("nan")]) == (2.0, 0.0)
    assert all(np.isnan(mean_sd([])))


def test_holm():
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5, 0.001]) == pytest.approx([0.5, 0.002])
    assert holm([0.6, 0.6, 0.9]) == pytest.approx([1.0, 1.0, 1.0])
    assert holm([]) == []


@pytest.mark.parametrize(
    "p, deltas, expected",
    [
        (0.01, [1.0, 2.0, 1.5], "better"),  # t-interval above 0
        (0.01, [-1.0, -2.0, -1.5], "worse"),  # below 0
        (0.01, [-1.0, 2.0, 1.5], "not established"),  # the interval straddles 0
        (0.05, [1.0, 2.0, 1.5], "not established"),  # p must be below alpha, not equal
        (0.2, [-1.0, -2.0, -1.5], "not established"),
        (0.001, [1.0], "not established"),  # one seed: no t-interval
        (float("nan"), [1.0, 2.0, 1.5], "not established"),
    ],
)
def test_verdict_needs_both_the_test_and_the_seeds(p, deltas, expected):
    assert verdict(p, seed_differences(deltas)) == expected


def test_decide_adjusts_the_primary_family_only():
    up, mixed = seed_differences([1.0, 2.0, 1.5]), seed_differences([-1.0, 2.0, 1.5])
    got = decide([0.01, 0.02, 0.001], [up, up, mixed], [True, True, False])
    assert got[0] == (pytest.approx(0.02), "better")  # Holm over two: 2 x 0.01
    assert got[1] == (pytest.approx(0.02), "better")  # max(2 x 0.01, 1 x 0.02)
    assert got[2] is None  # secondary: no adjustment, no verdict
    assert decide([0.03, 0.04], [up, up], [True, True]) == [(0.06, "not established")] * 2
    with pytest.raises(ValueError, match="same length"):
        decide([0.01], [up, up], [True])
