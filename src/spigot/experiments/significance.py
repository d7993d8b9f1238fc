"""Paired significance tests of two systems over the same sentences, and over seeds.

The unit is the sentence. Each system's output on each sentence is given as counts, so that
the score of any multiset of sentences is the score of the summed counts, as the corpus-level
metrics compute it (:mod:`spigot.metrics`, :mod:`spigot.pipelines.syn2sem.outputs`):

* ``[..., 3]`` counts ``(correct, predicted, gold)`` give an F1 (LF, UF): ``2c / (p + g)``,
  0 when ``p + g = 0``;
* ``[..., 2]`` counts ``(correct, total)`` give an accuracy (UAS): ``c / t``, 0 when ``t = 0``.

Counts have the shape ``[N, k]`` (one run: ``N`` sentences) or ``[S, N, k]`` (``S`` runs, e.g.
seeds, over the same ``N`` sentences in the same order). The statistic is the mean over the
``S`` runs of the corpus-level score, and the tests compare ``A`` and ``B`` paired by run (seed)
and by sentence; sentences are resampled or swapped jointly across runs, so a sentence that is
hard for every seed counts once, not ``S`` times.

* :func:`paired_bootstrap`: the difference ``delta = score(A) - score(B)``, its 95% percentile
  interval from resampling sentences with replacement, and the two-sided p-value of the shift
  method (Berg-Kirkpatrick, Burkett & Klein 2012, made two-sided): the share of resamples with
  ``|delta* - delta| >= |delta|``.
* :func:`paired_permutation`: approximate randomisation (Noreen 1989; Riezler & Maxwell 2005):
  each sentence's outputs of ``A`` and ``B`` are swapped with probability 1/2; the p-value is the
  share of swaps with ``|delta*| >= |delta|``.
* :func:`seed_differences`: per-seed differences ``d_s``: their mean, standard deviation, 95%
  t-interval and the exact two-sided sign-flip test over seeds (with ``n`` seeds, the smallest
  possible p-value is ``2 / 2^n``: 0.0625 for 5 seeds).

:func:`holm` adjusts the p-values of several comparisons for multiplicity (Holm 1979), and
:func:`verdict` applies the decision rule of the experiments' protocols to one comparison,
:func:`decide` to a family of them.

p-values count the observed statistic as one of the resamples, ``(1 + hits) / (1 + R)``, so they
are never 0. Everything is seeded and deterministic. Only numpy is needed.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "PairedTest",
    "SeedSummary",
    "decide",
    "holm",
    "mean_sd",
    "paired_bootstrap",
    "paired_permutation",
    "score",
    "seed_differences",
    "t_quantile",
    "verdict",
]

_T975 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip
"""The 0.975 quantile of Student's t with 1..30 degrees of freedom."""


@dataclass(frozen=True)
class PairedTest:
    """A paired test of ``A`` against ``B``.

    Attributes:
        delta: the observed ``score(A) - score(B)`` (a fraction; x100 for points).
        ci_low, ci_high: its 95% bootstrap interval (``nan`` for a permutation test).
        p_value: two-sided.
        n_items: sentences.
        n_runs: runs (seeds) averaged.
        n_resamples: bootstrap resamples or random swaps.
    """

    delta: float
    ci_low: float
    ci_high: float
    p_value: float
    n_items: int
    n_runs: int
    n_resamples: int


@dataclass(frozen=True)
class SeedSummary:
    """Per-seed paired differences ``d_s = score(A, s) - score(B, s)``.

    Attributes:
        deltas: the differences, in seed order.
        mean, sd: their mean and standard deviation (``sd = 0`` for one seed).
        ci_low, ci_high: the 95% t-interval of the mean (``nan`` for one seed).
        p_sign_flip: the exact two-sided sign-flip p-value over seeds.
    """

    deltas: tuple[float, ...]
    mean: float
    sd: float
    ci_low: float
    ci_high: float
    p_sign_flip: float


def t_quantile(df: int) -> float:
    """The 0.975 quantile of Student's t with ``df >= 1`` degrees of freedom (a table up to
    30, then the Cornish-Fisher expansion, within 1e-3)."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {df}")
    if df <= len(_T975):
        return _T975[df - 1]
    z = 1.959964
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


def mean_sd(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one value; ``nan`` for none); NaNs skipped."""
    vals = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    if not vals:
        return float("nan"), float("nan")
    m = sum(vals) / len(vals)
    if len(vals) < 2:
        return m, 0.0
    return m, math.sqrt(sum((v - m) ** 2 for v in vals) / (len(vals) - 1))


def score(sums: np.ndarray) -> np.ndarray:
    """F1 of ``[..., 3]`` sums ``(correct, pred, gold)`` or accuracy of ``[..., 2]`` sums
    ``(correct, total)``, over the last axis; 0 where the denominator is 0."""
    sums = np.asarray(sums, dtype=np.float64)
    if sums.shape[-1] == 3:
        num, den = 2 * sums[..., 0], sums[..., 1] + sums[..., 2]
    elif sums.shape[-1] == 2:
        num, den = sums[..., 0], sums[..., 1]
    else:
        raise ValueError(f"counts must end with 2 or 3 values, got shape {sums.shape}")
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)


def _runs(counts: np.ndarray | Sequence) -> np.ndarray:
    arr = np.asarray(counts, dtype=np.float64)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or arr.shape[-1] not in (2, 3) or arr.shape[1] == 0:
        raise ValueError(f"counts must be [N, k] or [S, N, k] with k in (2, 3), got {arr.shape}")
    return arr


def _pair(a: np.ndarray | Sequence, b: np.ndarray | Sequence) -> tuple[np.ndarray, np.ndarray]:
    a, b = _runs(a), _runs(b)
    if a.shape != b.shape:
        raise ValueError(f"paired counts must have the same shape, got {a.shape} and {b.shape}")
    return a, b


def _statistic(a: np.ndarray, b: np.ndarray) -> float:
    """Mean over runs of score(A) - score(B), on all sentences."""
    return float(np.mean(score(a.sum(axis=1)) - score(b.sum(axis=1))))


def paired_bootstrap(
    a: np.ndarray | Sequence,
    b: np.ndarray | Sequence,
    *,
    n_resamples: int = 10_000,
    seed: int = 0,
    chunk: int = 500,
) -> PairedTest:
    """Paired bootstrap over sentences (see the module docstring).

    Args:
        a, b: counts ``[N, k]`` or ``[S, N, k]`` of the two systems, paired by index.
        n_resamples: resamples of the ``N`` sentences (with replacement).
        seed: seed of the resampling.
        chunk: resamples drawn at once (memory: ``chunk x N`` weights).
    """
    a, b = _pair(a, b)
    n = a.shape[1]
    delta = _statistic(a, b)
    rng = np.random.default_rng(seed)
    deltas = np.empty(n_resamples)
    for lo in range(0, n_resamples, chunk):
        r = min(chunk, n_resamples - lo)
        w = rng.multinomial(n, np.full(n, 1.0 / n), size=r).astype(np.float64)  # [r, N]
        sa, sb = np.einsum("rn,snk->rsk", w, a), np.einsum("rn,snk->rsk", w, b)
        deltas[lo : lo + r] = (score(sa) - score(sb)).mean(axis=1)
    hits = int(np.sum(np.abs(deltas - delta) >= abs(delta) - 1e-12))
    low, high = np.percentile(deltas, [2.5, 97.5])
    return PairedTest(
        delta,
        float(low),
        float(high),
        (1 + hits) / (1 + n_resamples),
        n,
        a.shape[0],
        n_resamples,
    )


def paired_permutation(
    a: np.ndarray | Sequence,
    b: np.ndarray | Sequence,
    *,
    n_permutations: int = 10_000,
    seed: int = 0,
    chunk: int = 500,
) -> PairedTest:
    """Paired approximate randomisation over sentences (see the module docstring); the same
    sentence is swapped in every run."""
    a, b = _pair(a, b)
    n = a.shape[1]
    delta = _statistic(a, b)
    rng = np.random.default_rng(seed)
    total_a, total_b = a.sum(axis=1), b.sum(axis=1)  # [S, k]
    diff = b - a
    deltas = np.empty(n_permutations)
    for lo in range(0, n_permutations, chunk):
        r = min(chunk, n_permutations - lo)
        swap = rng.integers(0, 2, size=(r, n)).astype(np.float64)  # 1: exchange A and B
        moved = np.einsum("rn,snk->rsk", swap, diff)
        deltas[lo : lo + r] = (score(total_a + moved) - score(total_b - moved)).mean(axis=1)
    hits = int(np.sum(np.abs(deltas) >= abs(delta) - 1e-12))
    nan = float("nan")
    return PairedTest(
        delta, nan, nan, (1 + hits) / (1 + n_permutations), n, a.shape[0], n_permutations
    )


def seed_differences(deltas: Sequence[float]) -> SeedSummary:
    """Mean, sd, 95% t-interval and exact sign-flip p-value of per-seed differences."""
    d = [float(x) for x in deltas]
    if not d:
        raise ValueError("no seed differences")
    mean, sd = mean_sd(d)
    n = len(d)
    if n > 1:
        half = t_quantile(n - 1) * sd / math.sqrt(n)
        low, high = mean - half, mean + half
    else:
        low = high = float("nan")
    observed = abs(mean)
    flips = np.array(list(itertools.product((1.0, -1.0), repeat=n)))  # [2^n, n]
    hits = int(np.sum(np.abs(flips @ np.array(d) / n) >= observed - 1e-12))
    return SeedSummary(tuple(d), mean, sd, low, high, hits / len(flips))


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the input order: reject the hypotheses whose
    adjusted p-value is below ``alpha`` to keep the family-wise error rate at ``alpha``."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    out = [0.0] * len(p_values)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[i]))
        out[i] = running
    return out


def verdict(adjusted_p: float, seeds: SeedSummary, alpha: float = 0.05) -> str:
    """The protocols' decision rule for one comparison of ``A`` against ``B``.

    ``A`` is ``"better"`` (``"worse"``) when the multiplicity-adjusted p-value of the pooled
    test is below ``alpha`` *and* the 95% t-interval of the seed-level differences lies
    entirely above (below) 0; otherwise the difference is ``"not established"``, whatever its
    sign. With one seed the t-interval is undefined (``nan``) and nothing is established.
    """
    if not adjusted_p < alpha:
        return "not established"
    if seeds.ci_low > 0:
        return "better"
    if seeds.ci_high < 0:
        return "worse"
    return "not established"


def decide(
    p_values: Sequence[float],
    seeds: Sequence[SeedSummary],
    primary: Sequence[bool],
    alpha: float = 0.05,
) -> list[tuple[float, str] | None]:
    """The protocols' decisions for several comparisons, in the input order.

    The p-values of the ``primary`` comparisons (the question's family) are Holm-adjusted
    together, and each primary comparison gets ``(adjusted p, verdict(adjusted p, seeds))``;
    the others get ``None`` (reported without adjustment, as secondary results).
    """
    if not len(p_values) == len(seeds) == len(primary):
        raise ValueError("p_values, seeds and primary must have the same length")
    family = [k for k, is_primary in enumerate(primary) if is_primary]
    adjusted = dict(zip(family, holm([p_values[k] for k in family]), strict=True))
    return [
        (adjusted[k], verdict(adjusted[k], seeds[k], alpha)) if k in adjusted else None
        for k in range(len(p_values))
    ]
