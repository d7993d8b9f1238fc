"""Compiled sampler of projective trees: backward sampling through the inside charts (numba).

Forward filtering backward sampling: :func:`spigot._kernels.inside` fills the log-sum-exp
charts (width-major, ``X[w, i]`` is the span ``(i, i + w)``; see :mod:`spigot._kernels`), and
each sample walks them top-down from the whole sentence ``Cr(0, n)``. A span is split at ``t``
with probability ``exp(term_t) / sum_t' exp(term_t')``, over exactly the terms of its inside
recurrence, so the tree comes out with probability ``exp(s . z) / Z``:

* ``Cr(i, j) = lse_{t = 1..w} Ir(i, i+t) + Cr(i+t, j)``;
* ``Cl(i, j) = lse_{t = 0..w-1} Cl(i, i+t) + Il(i+t, j)``;
* ``Ir(i, j)``, ``Il(i, j)``: the arc ``i -> j`` (``j -> i``), then
  ``lse_{t = 0..w-1} Cr(i, i+t) + Cl(i+t+1, j)``.

The single-root rule lives in the charts (``Cr(0, j) = -inf`` for ``j < n``), so those splits
get probability 0 and every sample has exactly one root child, as the inside pass counts.

A sample takes exactly ``2 n`` decisions (one per arc, one per non-empty complete span, which
pairs with the arc it ends on), each consuming one uniform of ``u``: the randomness comes from
the caller (a seeded ``torch.Generator``), so a sample is a deterministic function of ``u``.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from spigot._kernels import CACHE, NEG_INF


@njit(cache=CACHE)
def _pick(terms, lo, hi, u):
    """Index ``t`` in ``lo..hi-1`` drawn with probability ``exp(terms[t]) / sum exp(terms)``.

    Inverse CDF of the weights ``exp(terms[t] - max)``: the first ``t`` whose cumulative weight
    exceeds ``u * total``; a zero weight is never picked (rounding falls back on the last
    positive one).
    """
    mx = NEG_INF
    for t in range(lo, hi):
        mx = max(mx, terms[t])
    total = 0.0
    last = lo
    for t in range(lo, hi):
        e = np.exp(terms[t] - mx)
        terms[t] = e
        total += e
        if e > 0.0:
            last = t
    target = u * total
    acc = 0.0
    for t in range(lo, hi):
        acc += terms[t]
        if acc > target and terms[t] > 0.0:
            return t
    return last


@njit(cache=CACHE)
def _sample_one(Cr, Cl, Ir, Il, n, u, heads, stack, terms):
    """One projective tree from the charts of one sentence into ``heads`` (uses ``u[:2n]``)."""
    # stack of (kind, i, j): 0 = Cr, 1 = Cl, 2 = Ir, 3 = Il
    stack[0, 0] = 0
    stack[0, 1] = 0
    stack[0, 2] = n
    top = 1
    k = 0
    while top > 0:
        top -= 1
        kind = stack[top, 0]
        i = stack[top, 1]
        j = stack[top, 2]
        w = j - i
        if w == 0:
            continue
        if kind == 0:  # Cr(i, j) = Ir(i, i+t) + Cr(i+t, j), t = 1..w
            for t in range(1, w + 1):
                terms[t] = Ir[t, i] + Cr[w - t, i + t]
            t = _pick(terms, 1, w + 1, u[k])
            m = i + t
            stack[top, 0], stack[top, 1], stack[top, 2] = 2, i, m
            stack[top + 1, 0], stack[top + 1, 1], stack[top + 1, 2] = 0, m, j
        elif kind == 1:  # Cl(i, j) = Cl(i, i+t) + Il(i+t, j), t = 0..w-1
            for t in range(w):
                terms[t] = Cl[t, i] + Il[w - t, i + t]
            t = _pick(terms, 0, w, u[k])
            m = i + t
            stack[top, 0], stack[top, 1], stack[top, 2] = 1, i, m
            stack[top + 1, 0], stack[top + 1, 1], stack[top + 1, 2] = 3, m, j
        else:  # Ir / Il(i, j): the arc, then Cr(i, i+t) + Cl(i+t+1, j), t = 0..w-1
            if kind == 2:
                heads[j] = i
            else:
                heads[i] = j
            for t in range(w):
                terms[t] = Cr[t, i] + Cl[w - 1 - t, i + t + 1]
            t = _pick(terms, 0, w, u[k])
            m = i + t
            stack[top, 0], stack[top, 1], stack[top, 2] = 0, i, m
            stack[top + 1, 0], stack[top + 1, 1], stack[top + 1, 2] = 1, m + 1, j
        top += 2
        k += 1


@njit(cache=CACHE, parallel=True)
def sample_projective(charts, lengths, u):
    """Projective trees from the charts of :func:`spigot._kernels.inside`.

    Args:
        charts: ``[B, 5, N, N]`` float64 (``Cr, Cl, Ir, Il, Sp``, width-major).
        lengths: ``[B]`` int64 words per sentence.
        u: ``[B, K, 2 (N - 1)]`` float64 uniforms in ``[0, 1)``, ``K`` samples per sentence.

    Returns:
        heads ``[B, K, N]`` int64: ``heads[b, k, m]`` is the head of word ``m`` in sample ``k``;
        position 0 and padding are 0.
    """
    B, K, N = u.shape[0], u.shape[1], charts.shape[2]
    heads = np.zeros((B, K, N), dtype=np.int64)
    for idx in prange(B * K):
        b = idx // K
        r = idx - b * K
        n = lengths[b]
        if n == 0:
            continue
        c = charts[b]
        stack = np.empty((4 * (n + 1) + 4, 3), dtype=np.int64)
        terms = np.empty(n + 1)
        _sample_one(c[0], c[1], c[2], c[3], n, u[b, r], heads[b, r], stack, terms)
    return heads
