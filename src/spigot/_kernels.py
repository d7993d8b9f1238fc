"""Compiled CPU kernels for the tree algorithms (numba, compiled on first use, cached on disk).

Every kernel takes a batch of score matrices ``s[b, h, m]`` (float64, C-contiguous, node 0 is the
root) and the number of words ``lengths[b]``; sentence ``b`` only ever reads
``s[b, :lengths[b]+1, :lengths[b]+1]``, so padding can hold anything and a padded batch gives
exactly what one-by-one calls give. Sentences run in parallel over the batch (``prange``).

This module imports numba; it is imported lazily by :mod:`spigot.structures.tree` the first
time a tree algorithm runs on the CPU path, so ``import spigot`` stays light.

Chart notation (Eisner 1996; McDonald et al. 2005), for ``0 <= i <= j <= n``:

* ``Cr[i, j]``: complete span headed by ``i``, covering ``i..j`` (``i``'s right dependents done);
* ``Cl[i, j]``: complete span headed by ``j``, covering ``i..j``;
* ``Ir[i, j]``: incomplete span with the arc ``i -> j``;
* ``Il[i, j]``: incomplete span with the arc ``j -> i``.

Transposed copies (``CrT[j, i] = Cr[i, j]`` etc.) keep every inner loop over the split point
``k`` contiguous in memory, so the max/log-sum-exp reductions vectorise.

Single root ("exactly one arc leaves node 0") is the same chart with ``Cr[0, j] = -inf`` for
``0 < j < n``: the root's right span can only be closed at the end of the sentence, so
``Ir[0, j] = Cr[0, 0] + Cl[1, j] + s[0, j]`` admits one root child and
``Cr[0, n] = max_k Ir[0, k] + Cr[k, n]`` picks it.
"""

from __future__ import annotations

import warnings

import numpy as np
from numba import njit, prange


def _probe() -> int:  # pragma: no cover - compiled lazily, never called
    return 0


def _cache_available() -> bool:
    """Whether numba can cache this module's kernels on disk (else: compile in memory).

    Numba caches next to the package or in a user-wide directory; with neither writable
    (read-only install and HOME, or an unusable ``NUMBA_CACHE_DIR``) ``cache=True`` raises at
    decoration. Then the kernels compile in memory, once per process, with one warning.
    """
    try:
        njit(cache=True)(_probe)
    except (RuntimeError, OSError) as err:
        warnings.warn(
            f"spigot: numba cannot cache the tree kernels on disk ({err}); they are compiled "
            "in memory, once per process (about 40 s). Set NUMBA_CACHE_DIR to a writable "
            "directory to keep them.",
            RuntimeWarning,
            stacklevel=3,
        )
        return False
    return True


CACHE = _cache_available()

NEG_INF = -np.inf
# Reassociation-free fast-math: lets LLVM vectorise max/sum reductions, keeps inf semantics.
_FM = {"nnan", "nsz", "arcp", "contract", "afn", "reassoc"}

# exp() without a libm call, so that LLVM vectorises it (4 doubles per instruction on AVX2)
_INV_LN2 = 1.4426950408889634
_LN2_HI = 0.6931471803691238  # ln 2 = _LN2_HI + _LN2_LO, k * _LN2_HI exact for |k| < 2^11
_LN2_LO = 1.9082149292705877e-10
_SHIFTER = 6755399441055744.0  # 1.5 * 2^52: x + _SHIFTER holds round(x) in its low bits
_SHIFT_BITS = 0x4338000000000000  # the bit pattern of _SHIFTER
_EXP_FLOOR = -700.0  # exp(x) < 1e-304 below: returned as 0


@njit(cache=CACHE, fastmath={"contract", "nsz"})  # no reassoc: see the docstring
def _exp_nonpos(x, out, n, ibuf):
    """``out[:n] = exp(x[:n])`` for ``x <= 0`` (0 below -700), relative error < 1e-15.

    Cody-Waite reduction ``x = k ln 2 + r`` with ``|r| <= ln 2 / 2``, Horner's rule on the
    degree-13 Taylor polynomial of ``exp(r)``, and ``2^k`` built from its IEEE bits in the int64
    scratch ``ibuf`` (length >= n). Three simple loops, each vectorised; compiled without
    ``reassoc``, which would fold ``(x + _SHIFTER) - _SHIFTER`` back into ``x``.
    """
    t = ibuf.view(np.float64)
    for i in range(n):
        xi = max(x[i], _EXP_FLOOR)
        ti = xi * _INV_LN2 + _SHIFTER
        t[i] = ti
        k = ti - _SHIFTER
        r = xi - k * _LN2_HI - k * _LN2_LO
        p = 1.0 / 6227020800.0
        p = p * r + 1.0 / 479001600.0
        p = p * r + 1.0 / 39916800.0
        p = p * r + 1.0 / 3628800.0
        p = p * r + 1.0 / 362880.0
        p = p * r + 1.0 / 40320.0
        p = p * r + 1.0 / 5040.0
        p = p * r + 1.0 / 720.0
        p = p * r + 1.0 / 120.0
        p = p * r + 1.0 / 24.0
        p = p * r + 1.0 / 6.0
        p = p * r + 0.5
        p = p * r + 1.0
        p = p * r + 1.0
        out[i] = p
    for i in range(n):
        ibuf[i] = (ibuf[i] - _SHIFT_BITS + 1023) << 52
    for i in range(n):
        out[i] = out[i] * t[i] if x[i] > _EXP_FLOOR else 0.0


# --------------------------------------------------------------------------------------------
# Eisner: projective argmax
# --------------------------------------------------------------------------------------------
@njit(cache=CACHE)
def _init_charts(n, Cr, Cl, Ir, Il):
    """Every span -inf but the empty complete spans ``Cr[0, i] = Cl[0, i] = 0``."""
    Cr[: n + 1, : n + 1] = NEG_INF
    Cl[: n + 1, : n + 1] = NEG_INF
    Ir[: n + 1, : n + 1] = NEG_INF
    Il[: n + 1, : n + 1] = NEG_INF
    Cr[0, : n + 1] = 0.0
    Cl[0, : n + 1] = 0.0


# The argmax charts are stored width-major, X[w, i] = the span (i, i + w), so that for a fixed
# width and split offset t the update runs elementwise over the span starts i on contiguous
# rows: ``best[i] = max(best[i], Cr[t, i] + Cl[w-1-t, i+t+1])``, which LLVM vectorises.
@njit(cache=CACHE, fastmath=_FM)
def _eisner_charts(s, n, single_root, Cr, Cl, Ir, Il, acc):
    """Fill the max-plus Eisner charts of one sentence (width-major, see above)."""
    _init_charts(n, Cr, Cl, Ir, Il)
    for w in range(1, n + 1):
        m = n + 1 - w  # spans (i, i + w), i = 0 .. m - 1
        # Ir[i, i+w] = s[i, i+w] + max_{0 <= t < w} Cr[i, i+t] + Cl[i+t+1, i+w]; Il with s[i+w, i]
        for i in range(m):
            acc[i] = NEG_INF
        for t in range(w):
            a = Cr[t]
            b = Cl[w - 1 - t]
            for i in range(m):
                acc[i] = max(acc[i], a[i] + b[i + t + 1])
        for i in range(m):
            Ir[w, i] = acc[i] + s[i, i + w]
        for i in range(1, m):  # no arc enters the root
            Il[w, i] = acc[i] + s[i + w, i]
        # Cr[i, i+w] = max_{1 <= t <= w} Ir[i, i+t] + Cr[i+t, i+w]
        for i in range(m):
            acc[i] = NEG_INF
        for t in range(1, w + 1):
            a = Ir[t]
            b = Cr[w - t]
            for i in range(m):
                acc[i] = max(acc[i], a[i] + b[i + t])
        for i in range(m):
            Cr[w, i] = acc[i]
        if single_root and w < n:  # the root's span closes only at the end
            Cr[w, 0] = NEG_INF
        # Cl[i, i+w] = max_{0 <= t < w} Cl[i, i+t] + Il[i+t, i+w]   (Cl[0, w] = -inf: no head)
        for i in range(m):
            acc[i] = NEG_INF
        for t in range(w):
            a = Cl[t]
            b = Il[w - t]
            for i in range(m):
                acc[i] = max(acc[i], a[i] + b[i + t])
        for i in range(1, m):
            Cl[w, i] = acc[i]


@njit(cache=CACHE)
def _eisner_backtrack(n, Cr, Cl, Ir, Il, heads):
    """Recover the argmax tree; every split is the first maximiser (deterministic ties)."""
    # stack of (kind, i, j): 0 = Cr, 1 = Cl, 2 = Ir, 3 = Il
    stack = np.empty((4 * (n + 1) + 4, 3), dtype=np.int64)
    stack[0, 0] = 0
    stack[0, 1] = 0
    stack[0, 2] = n
    top = 1
    while top > 0:
        top -= 1
        kind = stack[top, 0]
        i = stack[top, 1]
        j = stack[top, 2]
        w = j - i
        if w == 0:
            continue
        if kind == 0:  # Cr(i, j) = Ir(i, i+t) + Cr(i+t, j), t = 1..w
            tb = 1
            best = Ir[1, i] + Cr[w - 1, i + 1]
            for t in range(2, w + 1):
                v = Ir[t, i] + Cr[w - t, i + t]
                if v > best:
                    best = v
                    tb = t
            k = i + tb
            stack[top, 0], stack[top, 1], stack[top, 2] = 2, i, k
            stack[top + 1, 0], stack[top + 1, 1], stack[top + 1, 2] = 0, k, j
            top += 2
        elif kind == 1:  # Cl(i, j) = Cl(i, i+t) + Il(i+t, j), t = 0..w-1
            tb = 0
            best = Cl[0, i] + Il[w, i]
            for t in range(1, w):
                v = Cl[t, i] + Il[w - t, i + t]
                if v > best:
                    best = v
                    tb = t
            k = i + tb
            stack[top, 0], stack[top, 1], stack[top, 2] = 1, i, k
            stack[top + 1, 0], stack[top + 1, 1], stack[top + 1, 2] = 3, k, j
            top += 2
        else:  # Ir / Il(i, j) = Cr(i, i+t) + Cl(i+t+1, j), t = 0..w-1
            if kind == 2:
                heads[j] = i
            else:
                heads[i] = j
            tb = 0
            best = Cr[0, i] + Cl[w - 1, i + 1]
            for t in range(1, w):
                v = Cr[t, i] + Cl[w - 1 - t, i + t + 1]
                if v > best:
                    best = v
                    tb = t
            k = i + tb
            stack[top, 0], stack[top, 1], stack[top, 2] = 0, i, k
            stack[top + 1, 0], stack[top + 1, 1], stack[top + 1, 2] = 1, k + 1, j
            top += 2


@njit(cache=CACHE, parallel=True)
def eisner(scores, lengths, single_root):
    """Projective argmax. ``scores [B, N, N]`` float64, ``lengths [B]`` int64 -> heads ``[B, N]``.

    ``heads[b, m]`` is the head of word ``m`` (``1 <= m <= lengths[b]``); position 0 and
    padding are 0.
    """
    B, N = scores.shape[0], scores.shape[1]
    heads = np.zeros((B, N), dtype=np.int64)
    for b in prange(B):
        n = lengths[b]
        if n == 0:
            continue
        Cr = np.empty((n + 1, n + 1))
        Cl = np.empty((n + 1, n + 1))
        Ir = np.empty((n + 1, n + 1))
        Il = np.empty((n + 1, n + 1))
        acc = np.empty(n + 1)
        _eisner_charts(scores[b], n, single_root, Cr, Cl, Ir, Il, acc)
        _eisner_backtrack(n, Cr, Cl, Ir, Il, heads[b])
    return heads


# --------------------------------------------------------------------------------------------
# Inside-outside: projective log-partition and marginals
# --------------------------------------------------------------------------------------------
# Same width-major layout as the argmax (X[w, i] = span (i, i + w)); log-sum-exp over the split
# offsets t runs elementwise over i: a max pass, then x = value - max, exp(x) by the vectorised
# _exp_nonpos, and a running sum. A cell whose every term is -inf stays -inf: its "max" is
# replaced by +inf so that value - max = -inf and exp() gives 0 (never inf - inf).
@njit(cache=CACHE, fastmath=_FM)
def _lse_terms(A, B, off, w0, w1, wsum, m, mx, acc, x, e, ibuf):
    """``acc[i] = log sum_{t=w0}^{w1-1} exp(A[t, i] + B[wsum - t, i + t + off])`` for i < m."""
    for i in range(m):
        mx[i] = NEG_INF
    for t in range(w0, w1):
        a = A[t]
        b = B[wsum - t]
        for i in range(m):
            mx[i] = max(mx[i], a[i] + b[i + t + off])
    for i in range(m):
        acc[i] = 0.0
        if mx[i] == NEG_INF:
            mx[i] = np.inf
    for t in range(w0, w1):
        a = A[t]
        b = B[wsum - t]
        for i in range(m):
            x[i] = a[i] + b[i + t + off] - mx[i]
        _exp_nonpos(x, e, m, ibuf)
        for i in range(m):
            acc[i] += e[i]
    for i in range(m):
        acc[i] = NEG_INF if mx[i] == np.inf else mx[i] + np.log(acc[i])


@njit(cache=CACHE, fastmath=_FM)
def _inside_charts(s, n, single_root, Cr, Cl, Ir, Il, Sp, mx, acc, x, e, ibuf):
    """Log-sum-exp version of :func:`_eisner_charts`; ``Sp[w, i]`` keeps the split sums.

    ``Sp[w, i] = log sum_t exp(Cr[t, i] + Cl[w-1-t, i+t+1])``, shared by ``Ir`` and ``Il``.
    """
    _init_charts(n, Cr, Cl, Ir, Il)
    Sp[: n + 1, : n + 1] = NEG_INF
    for w in range(1, n + 1):
        m = n + 1 - w
        _lse_terms(Cr, Cl, 1, 0, w, w - 1, m, mx, acc, x, e, ibuf)
        for i in range(m):
            Sp[w, i] = acc[i]
            Ir[w, i] = acc[i] + s[i, i + w]
        for i in range(1, m):
            Il[w, i] = acc[i] + s[i + w, i]
        _lse_terms(Ir, Cr, 0, 1, w + 1, w, m, mx, acc, x, e, ibuf)
        for i in range(m):
            Cr[w, i] = acc[i]
        if single_root and w < n:
            Cr[w, 0] = NEG_INF
        _lse_terms(Cl, Il, 0, 0, w, w, m, mx, acc, x, e, ibuf)
        for i in range(1, m):
            Cl[w, i] = acc[i]


@njit(cache=CACHE, fastmath=_FM)
def _push_adjoint(A, B, gA, gB, off, w0, w1, wsum, m, g, c, x, e, ibuf):
    """Reverse of one log-sum-exp: ``gA[t, i], gB[wsum-t, i+t+off] += g[i] exp(term - c[i])``."""
    for t in range(w0, w1):
        a = A[t]
        b = B[wsum - t]
        for i in range(m):
            x[i] = a[i] + b[i + t + off] - c[i]
        _exp_nonpos(x, e, m, ibuf)
        ga = gA[t]
        gb = gB[wsum - t]
        for i in range(m):
            p = g[i] * e[i]
            ga[i] += p
            gb[i + t + off] += p


@njit(cache=CACHE, fastmath=_FM)
def _outside(n, Cr, Cl, Ir, Il, Sp, mu, g, c, x, e, ibuf):
    """Reverse-mode pass over :func:`_inside_charts`: ``mu[h, m] = d log Z / d s[h, m]``.

    Adjoints of the chart cells flow from ``Cr[n, 0]`` (adjoint 1) down the widths; a cell
    ``c = log sum_t exp(a_t + b_t)`` sends ``g_c exp(a_t + b_t - c)`` to ``a_t`` and ``b_t``.
    Arc marginals are the adjoints of the incomplete spans. Cells that are -inf get
    ``c = +inf`` (no contribution).
    """
    N1 = n + 1
    gCr = np.zeros((N1, N1))
    gCl = np.zeros((N1, N1))
    gIr = np.zeros((N1, N1))
    gIl = np.zeros((N1, N1))
    gCr[n, 0] = 1.0
    for w in range(n, 0, -1):
        m = n + 1 - w
        # Cl[w, i] = lse_t Cl[t, i] + Il[w-t, i+t]   (i >= 1)
        for i in range(m):
            g[i] = gCl[w, i] if i > 0 else 0.0
            c[i] = Cl[w, i] if (i > 0 and Cl[w, i] > NEG_INF) else np.inf
        _push_adjoint(Cl, Il, gCl, gIl, 0, 0, w, w, m, g, c, x, e, ibuf)
        # Cr[w, i] = lse_{t >= 1} Ir[t, i] + Cr[w-t, i+t]
        for i in range(m):
            g[i] = gCr[w, i]
            c[i] = Cr[w, i] if Cr[w, i] > NEG_INF else np.inf
        _push_adjoint(Ir, Cr, gIr, gCr, 0, 1, w + 1, w, m, g, c, x, e, ibuf)
        # Ir[w, i] = s[i, i+w] + Sp[w, i];  Il[w, i] = s[i+w, i] + Sp[w, i]
        for i in range(m):
            gi = gIr[w, i]
            gl = gIl[w, i] if i > 0 else 0.0
            mu[i, i + w] = gi
            if i > 0:
                mu[i + w, i] = gl
            g[i] = gi + gl
            c[i] = Sp[w, i] if Sp[w, i] > NEG_INF else np.inf
        _push_adjoint(Cr, Cl, gCr, gCl, 1, 0, w, w - 1, m, g, c, x, e, ibuf)


@njit(cache=CACHE, parallel=True)
def inside(scores, lengths, single_root):
    """Projective log-partition ``[B]`` and charts ``[B, 5, N, N]`` kept for :func:`outside`."""
    B, N = scores.shape[0], scores.shape[1]
    logz = np.zeros(B)
    charts = np.empty((B, 5, N, N))
    for b in prange(B):
        n = lengths[b]
        if n == 0:
            continue
        c = charts[b]
        k = n + 1
        Cr = np.empty((k, k))
        Cl = np.empty((k, k))
        Ir = np.empty((k, k))
        Il = np.empty((k, k))
        Sp = np.empty((k, k))
        mx = np.empty(k)
        acc = np.empty(k)
        x = np.empty(k)
        e = np.empty(k)
        ibuf = np.empty(k, dtype=np.int64)
        _inside_charts(scores[b], n, single_root, Cr, Cl, Ir, Il, Sp, mx, acc, x, e, ibuf)
        c[0, :k, :k] = Cr
        c[1, :k, :k] = Cl
        c[2, :k, :k] = Ir
        c[3, :k, :k] = Il
        c[4, :k, :k] = Sp
        logz[b] = Cr[n, 0]
    return logz, charts


@njit(cache=CACHE, parallel=True)
def outside(charts, lengths):
    """Arc marginals ``[B, N, N]`` from the charts of :func:`inside`."""
    B, N = charts.shape[0], charts.shape[2]
    mu = np.zeros((B, N, N))
    for b in prange(B):
        n = lengths[b]
        if n == 0:
            continue
        c = charts[b]
        k = n + 1
        g = np.empty(k)
        cc = np.empty(k)
        x = np.empty(k)
        e = np.empty(k)
        ibuf = np.empty(k, dtype=np.int64)
        _outside(
            n,
            np.ascontiguousarray(c[0, :k, :k]),
            np.ascontiguousarray(c[1, :k, :k]),
            np.ascontiguousarray(c[2, :k, :k]),
            np.ascontiguousarray(c[3, :k, :k]),
            np.ascontiguousarray(c[4, :k, :k]),
            mu[b],
            g,
            cc,
            x,
            e,
            ibuf,
        )
    return mu


# --------------------------------------------------------------------------------------------
# Matrix-tree theorem: constants and the dot product shared by spigot._kernels_mtt (log-partition
# and marginals) and spigot._kernels_jvp (their derivative)
# --------------------------------------------------------------------------------------------
# Pivots below this (with every column scaled to max 1) could have lost mass to float64
# underflow of weights exp(s - max) < 1e-308; such sentences are redone in log space.
MTT_TINY = 1e-250
MTT_HUGE = 1e250
# No nnan/ninf here: the range checks must see NaN and inf. No reassoc either: with it LLVM
# splits the sums into vector lanes whose grouping depends on the arrays' alignment, so the last
# bits of a result could change with padding, batch mates or the number of threads.
_FM_SAFE = {"nsz", "contract"}
# Marginals the linear-scale kernel returns are checked: within [-MTT_MU_TOL, 1 + MTT_MU_TOL]
# and every column summing to 1 within MTT_MU_TOL, or the sentence is redone in log space.
MTT_MU_TOL = 1e-12


@njit(cache=CACHE, fastmath=_FM_SAFE)
def _dot(a, b, lo, hi):
    """``sum_{lo <= j < hi} a[j] b[j]`` in four fixed lanes (``j - lo`` mod 4), then added up.

    The grouping depends on the indices only, never on memory alignment, so the result is the
    same bits for a sentence wherever it sits; the four independent chains still vectorise.
    """
    s0 = s1 = s2 = s3 = 0.0
    j = lo
    while j + 4 <= hi:
        s0 += a[j] * b[j]
        s1 += a[j + 1] * b[j + 1]
        s2 += a[j + 2] * b[j + 2]
        s3 += a[j + 3] * b[j + 3]
        j += 4
    while j < hi:
        s0 += a[j] * b[j]
        j += 1
    return (s0 + s1) + (s2 + s3)


# Chu-Liu-Edmonds lives in its own module; imported last (it reads CACHE and NEG_INF above)
from spigot._kernels_cle import chu_liu_edmonds  # noqa: E402, F401
