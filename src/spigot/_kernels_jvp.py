"""Compiled second-order kernels: the exact gradient of tree marginals (numba, CPU).

The marginals are ``mu = d log Z / d s``, so their Jacobian is the Hessian of ``log Z``, which is
symmetric: the vector-Jacobian product the ``"marginals"`` estimator's backward needs equals the
Jacobian-vector product ``d/de mu(s + e v)`` at ``e = 0``. These kernels compute it in forward
mode: every quantity ``x`` of the marginals kernels of :mod:`spigot._kernels` carries its
tangent ``x'`` (its derivative along ``v``), updated by the product and chain rules next to it.
One pass costs about three times the marginals kernel and no memory beyond O(n^2) per sentence.

Like the marginals, the result is checked (finite; every column of ``mu'`` sums to 0, because
every column of ``mu`` sums to 1 whatever the scores) and a sentence that fails is redone by
the caller in log space.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from spigot._kernels import (
    _FM,
    _FM_SAFE,
    CACHE,
    MTT_HUGE,
    MTT_MU_TOL,
    MTT_TINY,
    NEG_INF,
    _dot,
    _exp_nonpos,
    _inside_charts,
)


@njit(cache=CACHE, fastmath=_FM_SAFE)
def _mtt_jvp_one(s, v, n, single_root, mu, dmu):
    """Matrix-tree marginals ``mu`` and their derivative ``dmu`` along ``v``, one sentence.

    Forward (the matrix-tree kernel of :mod:`spigot._kernels_mtt`), with ``X'`` the tangent
    of ``X``:

        W = exp(s - c)                     W' = W v          (c: column maxima, constants)
        d_k = [R_k] + sum_{i>k} W[i, k]    d_k' = [R_k'] + sum_{i>k} W'[i, k]
        F_j = W[k, j] / d_k                F_j' = (W'[k, j] - F_j d_k') / d_k
        W[i, j] += W[i, k] F_j             W'[i, j] += W'[i, k] F_j + W[i, k] F_j'
        R[j]    += R_k F_j                 R'[j] += R_k' F_j + R_k F_j'

    Reverse (adjoints ``A = d log Z / d X``, and their tangents ``A'``), step ``k`` backwards:

        phi_j = A_R[j] R_k + sum_i A_W[i, j] W[i, k]           (adjoint of F_j)
        A_W[i, k] += sum_j A_W[i, j] F_j;  A_R[k] += sum_j A_R[j] F_j
        A_W[k, j] += phi_j / d_k
        A_d = (1 - sum_j phi_j F_j) / d_k  -> A_W[i, k] (and A_R[k] with many roots)

    and ``mu = W0 A_W``, ``mu' = W0' A_W + W0 A_W' = W0 (v A_W + A_W')``.

    Returns ``ok``: false when a pivot left ``[MTT_TINY, MTT_HUGE]`` or a check failed.
    """
    W = np.empty((n, n))
    Wd = np.empty((n, n))
    R = np.empty(n)
    Rd = np.empty(n)
    for j in range(n):
        m = s[0, j + 1]
        for i in range(n):
            if i != j:
                m = max(m, s[i + 1, j + 1])
        R[j] = np.exp(s[0, j + 1] - m)
        Rd[j] = R[j] * v[0, j + 1]
        for i in range(n):
            if i != j:
                W[i, j] = np.exp(s[i + 1, j + 1] - m)
                Wd[i, j] = W[i, j] * v[i + 1, j + 1]
            else:
                W[i, j] = 0.0
                Wd[i, j] = 0.0
    W0 = W.copy()
    R0 = R.copy()
    D = np.empty(n)
    Dd = np.empty(n)
    F = np.empty(n)
    Fd = np.empty(n)
    for k in range(n):
        last = single_root and k == n - 1
        if last:
            d = R[k]
            dd = Rd[k]
        else:
            d = 0.0 if single_root else R[k]
            dd = 0.0 if single_root else Rd[k]
            for i in range(k + 1, n):
                d += W[i, k]
                dd += Wd[i, k]
        if not (MTT_TINY <= d <= MTT_HUGE):
            return False
        D[k] = d
        Dd[k] = dd
        if last:
            break
        inv = 1.0 / d
        rk = R[k]
        rkd = Rd[k]
        for j in range(k + 1, n):
            F[j] = W[k, j] * inv
            Fd[j] = (Wd[k, j] - F[j] * dd) * inv
            R[j] += rk * F[j]
            Rd[j] += rkd * F[j] + rk * Fd[j]
        for i in range(k + 1, n):
            a = W[i, k]
            ad = Wd[i, k]
            wi = W[i]
            wdi = Wd[i]
            for j in range(k + 1, n):
                wi[j] += a * F[j]
                wdi[j] += ad * F[j] + a * Fd[j]
    # reverse pass with tangents
    A = np.zeros((n, n))
    Ad = np.zeros((n, n))
    AR = np.zeros(n)
    ARd = np.zeros(n)
    phi = np.empty(n)
    phid = np.empty(n)
    for k in range(n - 1, -1, -1):
        last = single_root and k == n - 1
        d = D[k]
        dd = Dd[k]
        inv = 1.0 / d
        if last:
            AR[k] += inv
            ARd[k] -= (dd * inv) * inv
            continue
        rk = R[k]
        rkd = Rd[k]
        wk = W[k]
        wdk = Wd[k]
        for j in range(k + 1, n):
            F[j] = wk[j] * inv
            Fd[j] = (wdk[j] - F[j] * dd) * inv
            phi[j] = AR[j] * rk
            phid[j] = ARd[j] * rk + AR[j] * rkd
        ar = _dot(AR, F, k + 1, n)
        ard = _dot(ARd, F, k + 1, n) + _dot(AR, Fd, k + 1, n)
        for i in range(k + 1, n):
            a = W[i, k]
            ad = Wd[i, k]
            ai = A[i]
            adi = Ad[i]
            for j in range(k + 1, n):
                phi[j] += ai[j] * a
                phid[j] += adi[j] * a + ai[j] * ad
            A[i, k] += _dot(ai, F, k + 1, n)
            Ad[i, k] += _dot(adi, F, k + 1, n) + _dot(ai, Fd, k + 1, n)
        flow = 0.0
        flowd = 0.0
        for j in range(k + 1, n):
            A[k, j] += phi[j] * inv
            Ad[k, j] += (phid[j] - phi[j] * (dd * inv)) * inv
            flow += phi[j] * F[j]
            flowd += phid[j] * F[j] + phi[j] * Fd[j]
        ad_ = (1.0 - flow) * inv
        add_ = (-flowd - (1.0 - flow) * (dd * inv)) * inv
        AR[k] += ar
        ARd[k] += ard
        if not single_root:
            AR[k] += ad_
            ARd[k] += add_
        for i in range(k + 1, n):
            A[i, k] += ad_
            Ad[i, k] += add_
    # mu = W0 A, mu' = W0 (v A + A'); checks as in _mtt_one, plus sum_h mu'[h, m] = 0
    ok = True
    for j in range(n):
        m0 = R0[j] * AR[j]
        md = R0[j] * (v[0, j + 1] * AR[j] + ARd[j]) if R0[j] > 0.0 else 0.0
        col = m0
        cold = md
        scale = abs(md)
        mu[0, j + 1] = m0
        dmu[0, j + 1] = md
        for i in range(n):
            if i != j:
                w = W0[i, j]
                x = w * A[i, j] if w > 0.0 else 0.0
                xd = w * (v[i + 1, j + 1] * A[i, j] + Ad[i, j]) if w > 0.0 else 0.0
                mu[i + 1, j + 1] = x
                dmu[i + 1, j + 1] = xd
                col += x
                cold += xd
                scale += abs(xd)
        if not abs(col - 1.0) <= MTT_MU_TOL:
            ok = False
        if not abs(cold) <= MTT_MU_TOL * (1.0 + scale):
            ok = False
    for i in range(n + 1):
        for j in range(1, n + 1):
            x = mu[i, j]
            if not (-MTT_MU_TOL <= x <= 1.0 + MTT_MU_TOL) or not np.isfinite(dmu[i, j]):
                ok = False
    return ok


@njit(cache=CACHE, parallel=True)
def matrix_tree_jvp(scores, tangents, lengths, single_root):
    """Non-projective marginals ``[B, N, N]``, their derivative along ``tangents`` ``[B, N, N]``
    (equal to the VJP, the Hessian being symmetric) and ``ok [B]``."""
    B, N = scores.shape[0], scores.shape[1]
    mu = np.zeros((B, N, N))
    dmu = np.zeros((B, N, N))
    ok = np.ones(B, dtype=np.bool_)
    for b in prange(B):
        n = lengths[b]
        if n == 0:
            continue
        ok[b] = _mtt_jvp_one(scores[b], tangents[b], n, single_root, mu[b], dmu[b])
    return mu, dmu, ok


# --------------------------------------------------------------------------------------------
# Projective trees: inside-outside in forward mode
# --------------------------------------------------------------------------------------------
# The charts are those of spigot._kernels (width-major, X[w, i] = span (i, i + w)). A log-sum-exp
# cell y = log sum_t exp(a_t + b_t) has tangent y' = sum_t exp(a_t + b_t - y) (a_t' + b_t');
# cells that are -inf keep tangent 0.
@njit(cache=CACHE, fastmath=_FM)
def _lse_tangent(A, B, Ad, Bd, off, w0, w1, wsum, m, y, out, c, x, e, ibuf):
    """``out[i] = sum_t exp(A[t, i] + B[wsum-t, i+t+off] - y[i]) (Ad[t, i] + Bd[...])``."""
    for i in range(m):
        out[i] = 0.0
        c[i] = y[i] if y[i] > NEG_INF else np.inf
    for t in range(w0, w1):
        a = A[t]
        b = B[wsum - t]
        ad = Ad[t]
        bd = Bd[wsum - t]
        for i in range(m):
            x[i] = min(a[i] + b[i + t + off] - c[i], 0.0)
        _exp_nonpos(x, e, m, ibuf)
        for i in range(m):
            out[i] += e[i] * (ad[i] + bd[i + t + off])


@njit(cache=CACHE, fastmath=_FM)
def _inside_tangents(v, n, single_root, Cr, Cl, Ir, Il, Sp, Crd, Cld, Ird, Ild, Spd, buf, ibuf):
    """Tangents of the inside charts along ``v`` (the charts themselves already computed)."""
    Crd[: n + 1, : n + 1] = 0.0
    Cld[: n + 1, : n + 1] = 0.0
    Ird[: n + 1, : n + 1] = 0.0
    Ild[: n + 1, : n + 1] = 0.0
    Spd[: n + 1, : n + 1] = 0.0
    out, c, x, e = buf[0], buf[1], buf[2], buf[3]
    for w in range(1, n + 1):
        m = n + 1 - w
        # Sp[w, i] = lse_t Cr[t, i] + Cl[w-1-t, i+t+1]; Ir = Sp + s[i, i+w]; Il = Sp + s[i+w, i]
        _lse_tangent(Cr, Cl, Crd, Cld, 1, 0, w, w - 1, m, Sp[w], out, c, x, e, ibuf)
        for i in range(m):
            Spd[w, i] = out[i]
            Ird[w, i] = out[i] + v[i, i + w]
        for i in range(1, m):
            Ild[w, i] = out[i] + v[i + w, i]
        # Cr[w, i] = lse_{t >= 1} Ir[t, i] + Cr[w-t, i+t]
        _lse_tangent(Ir, Cr, Ird, Crd, 0, 1, w + 1, w, m, Cr[w], out, c, x, e, ibuf)
        for i in range(m):
            Crd[w, i] = out[i]
        if single_root and w < n:
            Crd[w, 0] = 0.0
        # Cl[w, i] = lse_t Cl[t, i] + Il[w-t, i+t]   (i >= 1)
        _lse_tangent(Cl, Il, Cld, Ild, 0, 0, w, w, m, Cl[w], out, c, x, e, ibuf)
        for i in range(1, m):
            Cld[w, i] = out[i]


@njit(cache=CACHE, fastmath=_FM)
def _push_adjoint_jvp(A, B, Ad, Bd, gA, gB, tA, tB, off, w0, w1, wsum, m, g, gt, c, ct, x, e, ibuf):
    """:func:`spigot._kernels._push_adjoint` with tangents: with ``p = exp(a + b - c)``,
    ``gA, gB += g p`` and ``tA, tB += (g' + g (a' + b' - c')) p``."""
    for t in range(w0, w1):
        a = A[t]
        b = B[wsum - t]
        for i in range(m):
            x[i] = min(a[i] + b[i + t + off] - c[i], 0.0)
        _exp_nonpos(x, e, m, ibuf)
        ad = Ad[t]
        bd = Bd[wsum - t]
        ga = gA[t]
        gb = gB[wsum - t]
        ta = tA[t]
        tb = tB[wsum - t]
        for i in range(m):
            p = e[i]
            val = g[i] * p
            valt = (gt[i] + g[i] * (ad[i] + bd[i + t + off] - ct[i])) * p
            ga[i] += val
            gb[i + t + off] += val
            ta[i] += valt
            tb[i + t + off] += valt


@njit(cache=CACHE, fastmath=_FM)
def _outside_jvp(n, charts, tangents, mu, dmu, buf, ibuf):
    """:func:`spigot._kernels._outside` with tangents: ``mu`` and ``dmu`` of one sentence."""
    Cr, Cl, Ir, Il, Sp = charts[0], charts[1], charts[2], charts[3], charts[4]
    Crd, Cld, Ird, Ild, Spd = tangents[0], tangents[1], tangents[2], tangents[3], tangents[4]
    N1 = n + 1
    adj = np.zeros((8, N1, N1))  # gCr, gCl, gIr, gIl and their tangents
    gCr, gCl, gIr, gIl = adj[0], adj[1], adj[2], adj[3]
    tCr, tCl, tIr, tIl = adj[4], adj[5], adj[6], adj[7]
    g, gt, c, ct, x, e = buf[0], buf[1], buf[2], buf[3], buf[4], buf[5]
    gCr[n, 0] = 1.0
    for w in range(n, 0, -1):
        m = n + 1 - w
        for i in range(m):
            live = i > 0 and Cl[w, i] > NEG_INF
            g[i] = gCl[w, i] if i > 0 else 0.0
            gt[i] = tCl[w, i] if i > 0 else 0.0
            c[i] = Cl[w, i] if live else np.inf
            ct[i] = Cld[w, i] if live else 0.0
        _push_adjoint_jvp(
            Cl, Il, Cld, Ild, gCl, gIl, tCl, tIl, 0, 0, w, w, m, g, gt, c, ct, x, e, ibuf
        )
        for i in range(m):
            live = Cr[w, i] > NEG_INF
            g[i] = gCr[w, i]
            gt[i] = tCr[w, i]
            c[i] = Cr[w, i] if live else np.inf
            ct[i] = Crd[w, i] if live else 0.0
        _push_adjoint_jvp(
            Ir, Cr, Ird, Crd, gIr, gCr, tIr, tCr, 0, 1, w + 1, w, m, g, gt, c, ct, x, e, ibuf
        )
        for i in range(m):
            gi = gIr[w, i]
            gl = gIl[w, i] if i > 0 else 0.0
            mu[i, i + w] = gi
            dmu[i, i + w] = tIr[w, i]
            if i > 0:
                mu[i + w, i] = gl
                dmu[i + w, i] = tIl[w, i]
            live = Sp[w, i] > NEG_INF
            g[i] = gi + gl
            gt[i] = tIr[w, i] + (tIl[w, i] if i > 0 else 0.0)
            c[i] = Sp[w, i] if live else np.inf
            ct[i] = Spd[w, i] if live else 0.0
        _push_adjoint_jvp(
            Cr, Cl, Crd, Cld, gCr, gCl, tCr, tCl, 1, 0, w, w - 1, m, g, gt, c, ct, x, e, ibuf
        )


@njit(cache=CACHE, parallel=True)
def inside_outside_jvp(scores, tangents, lengths, single_root):
    """Projective marginals ``[B, N, N]``, their derivative along ``tangents`` and ``ok [B]``
    (every column of the derivative sums to 0 within ``MTT_MU_TOL``, and all is finite)."""
    B, N = scores.shape[0], scores.shape[1]
    mu = np.zeros((B, N, N))
    dmu = np.zeros((B, N, N))
    ok = np.ones(B, dtype=np.bool_)
    for b in prange(B):
        n = lengths[b]
        if n == 0:
            continue
        k = n + 1
        ch = np.empty((5, k, k))
        tg = np.empty((5, k, k))
        buf = np.empty((6, k))
        ibuf = np.empty(k, dtype=np.int64)
        _inside_charts(
            scores[b],
            n,
            single_root,
            ch[0],
            ch[1],
            ch[2],
            ch[3],
            ch[4],
            buf[0],
            buf[1],
            buf[2],
            buf[3],
            ibuf,
        )
        _inside_tangents(
            tangents[b],
            n,
            single_root,
            ch[0],
            ch[1],
            ch[2],
            ch[3],
            ch[4],
            tg[0],
            tg[1],
            tg[2],
            tg[3],
            tg[4],
            buf,
            ibuf,
        )
        _outside_jvp(n, ch, tg, mu[b], dmu[b], buf, ibuf)
        for j in range(1, k):
            col = 0.0
            scale = 0.0
            for i in range(k):
                col += dmu[b, i, j]
                scale += abs(dmu[b, i, j])
                if not np.isfinite(dmu[b, i, j]):
                    ok[b] = False
            if not abs(col) <= MTT_MU_TOL * (1.0 + scale):
                ok[b] = False
    return mu, dmu, ok
