"""Compiled matrix-tree kernel: log-partition and marginals of non-projective trees (numba, CPU).

Notation, for one sentence of ``n`` words (node 0 is the root, word ``j`` is node ``j + 1``):
column scaling ``c_j = max_h s[h, j+1]`` over the heads ``h != j+1`` and weights
``T[j, h] = exp(s[h, j+1] - c_j) <= 1`` (``T [n, n+1]`` row-major: row ``j`` holds the weights
of the arcs *into* word ``j``, the root's first; the diagonal ``T[j, j+1]`` is 0). ``log Z`` is
``log det`` of the Laplacian of ``T`` plus ``sum_j c_j`` (Tutte 1984; Koo et al. 2007).

Forward: Grassmann-Taksar-Heyman elimination, i.e. LU of the Laplacian without pivoting whose
pivots are column sums (the Schur complement of a Laplacian is a Laplacian), so that nothing is
subtracted. Step ``k`` (``H_k = {0} u [k+2, n]``, the heads still in play):

    d_k   = [T[k, 0]] + sum_{h >= k+2} T[k, h]        (F1; the root weight only with many root
                                                        children, and at the last step)
    F_kj  = T[j, k+1] / d_k           (j > k)          (F2; stored in T[j, k+1])
    T[j, h] += F_kj T[k, h]           (j > k, h in H_k) (F3: paths h -> k -> j)
    log Z = sum_k log d_k + c_k                         (F4)

Single root (exactly one root child): the root weights are kept out of the pivots and
propagate linearly (a factor ``t`` on them, keeping the term linear in ``t``); the last pivot is
the root column ``T[n-1, 0]``. This is Koo et al.'s root-row trick in elimination form.

Reverse (marginals ``mu[h, j+1] = T0[j, h] A[j, h]`` with ``A = d log Z / d T0``, eq. M), step
``k`` from the last, as in the previous scalar kernel:

    phi_j  = sum_{h in H_k} A[j, h] T[k, h]      (j > k; the adjoint of F_kj)       (R1)
    A[k, h] += sum_{j > k} F_kj A[j, h]          (h in H_k)                         (R2)
    A[j, k+1] = phi_j / d_k                      (j > k)                            (R3)
    A[k, h] += (1 - sum_{j > k} phi_j F_kj) / d_k   (h in H_k; h = 0 only where d_k has it) (R4)

R4's difference can cancel, so every sentence is checked as before: pivots within
``[MTT_TINY, MTT_HUGE]``, marginals finite, within ``[-MTT_MU_TOL, 1 + MTT_MU_TOL]``, each
column summing to 1 within ``MTT_MU_TOL``; a sentence that fails is redone in log space by the
caller (:func:`spigot.structures.tree._matrix_tree_compiled`).

Both passes are blocked by panels of :data:`PANEL` steps: the bulk of the work (the terms from
rows and columns after the panel) is a row-blocked product (:func:`_update_rows`, level with
MKL's dgemm on one core), the rest runs step by step on transposed copies of the panel, so
that every inner loop is a vectorised multiply-add along a contiguous row. Inner loops run
over slices: numba then knows the indices are nonnegative and drops its negative-index
wraparound, which otherwise blocks vectorisation. Sentences below :data:`SHORT` words take
plain unblocked loops instead (:func:`_mtt_short`), where blocking costs more than it saves.

Determinism: every sum has a grouping fixed by the indices alone (one term at a time in index
order, or the fixed lanes of :func:`_sum` and :func:`_dotv`), never by memory
alignment, and a sentence runs on one thread; so its result is the same bits whatever the
padding, the batch mates or the number of threads (``tests/test_mtt_fast.py``). The forward
pass adds the terms of every entry in the order of ``k``, so ``log Z`` does not even depend on
the panel width.

Cost: ``n^3 / 3`` multiply-adds forward, ``2 n^3 / 3`` more for the marginals (as LAPACK's
getrf + getri), ``O(n^2)`` memory per sentence; sentences run in parallel (``prange``).
"""

from __future__ import annotations

import threading

import numba
import numpy as np
from numba import njit, prange

from spigot._kernels import _FM_SAFE, CACHE, MTT_HUGE, MTT_MU_TOL, MTT_TINY, _exp_nonpos
from spigot._kernels_blocks import _axpy, _dotv, _sum, _update_rows

#: steps per panel of the blocked elimination and of its reverse pass (log Z does not depend
#: on it; the marginals' rounding does, so it is a constant)
PANEL = 4


@njit(cache=CACHE, fastmath=_FM_SAFE)
def _column_max(s, n, c):
    """``c[m] = max_h s[h, m+1]`` over the heads ``h != m+1`` (row by row: contiguous in s)."""
    for m in range(n):
        c[m] = s[0, m + 1]
    for h in range(1, n + 1):
        for m in range(n):
            if h != m + 1:
                c[m] = max(c[m], s[h, m + 1])


@njit(cache=CACHE, fastmath=_FM_SAFE)
def _weights(s, n, T, c, buf, x, ibuf):
    """Column maxima ``c [n]`` and weights ``T [n, n+1]`` (see the module docstring) from the
    scores ``s [>= n+1, >= n+1]``; ``buf [n+1, n]``, ``x [n]``, ``ibuf [n]`` are scratch."""
    N1 = n + 1
    _column_max(s, n, c)
    for h in range(N1):  # row by row (contiguous in s), then transposed by strips of 16
        for m in range(n):
            x[m] = s[h, m + 1] - c[m]
        if h > 0:
            x[h - 1] = -np.inf
        _exp_nonpos(x, buf[h], n, ibuf)
    for h0 in range(0, N1, 16):
        h1 = min(h0 + 16, N1)
        for j in range(n):
            for h in range(h0, h1):
                T[j, h] = buf[h, j]


@njit(cache=CACHE, fastmath=_FM_SAFE)
def _eliminate(T, c, n, single_root, panel, invd, PT, RT):
    """Blocked forward elimination (F1-F4) in place on ``T``; ``invd[k] = 1 / d_k``.

    Panel ``[k0, k1)``: its rows are eliminated step by step over full rows; the later rows
    then take the panel's steps on the root and panel columns (a triangular solve, which also
    yields ``F_kj``, run along ``j`` on a transposed copy) and on the columns after the panel
    in one row-blocked product. Every entry gets its terms in the order of ``k``.
    ``PT [>= min(panel, n), n]`` and ``RT [n]`` are scratch. Returns ``(log Z, ok)``; ``ok``
    is false when a pivot left ``[MTT_TINY, MTT_HUGE]``.
    """
    N1 = n + 1
    logz = 0.0
    for k0 in range(0, n, panel):
        k1 = min(k0 + panel, n)
        for k in range(k0, k1):
            row = T[k]
            d = _sum(row, k + 2, N1)  # F1 (the last step has no word left: d = root weight)
            if not single_root or k == n - 1:
                d += row[0]
            if not (MTT_TINY <= d <= MTT_HUGE):  # also catches inf and NaN
                return logz, False
            logz += np.log(d) + c[k]  # F4
            inv = 1.0 / d
            invd[k] = inv
            for j in range(k + 1, k1):  # F2-F3 on the panel's own rows
                rj = T[j]
                f = rj[k + 1] * inv
                rj[k + 1] = f
                rj[0] += f * row[0]
                _axpy(rj, f, row, k + 2, N1)
        if k1 == n:
            break
        # later rows: the panel's steps on the root and panel columns, on a transposed copy
        # (PT[k - k0, j] = T[j, k+1], RT[j] = T[j, 0]) so that they run along j
        for j in range(k1, n):
            rj = T[j]
            RT[j] = rj[0]
            for k in range(k0, k1):
                PT[k - k0, j] = rj[k + 1]
        for k in range(k0, k1):
            fk = PT[k - k0]
            f = fk[k1:n]
            inv = invd[k]
            for t in range(n - k1):
                f[t] *= inv  # F_kj
            row = T[k]
            _axpy(RT, row[0], fk, k1, n)
            for h in range(k + 2, k1 + 1):
                _axpy(PT[h - 1 - k0], row[h], fk, k1, n)
        for j in range(k1, n):
            rj = T[j]
            rj[0] = RT[j]
            for k in range(k0, k1):
                rj[k + 1] = PT[k - k0, j]
        # ... and on the columns after the panel: T[j, h] += sum_k F_kj T[k, h], k ascending
        _update_rows(T, k1, n, T, 0, 1, T, k0, k1, 1, k1 + 1, N1)
    return logz, True


@njit(cache=CACHE, fastmath=_FM_SAFE)
def _adjoint(T, n, single_root, panel, invd, A, AT, FP, PHI, vp):
    """Reverse pass (R1-R4) of :func:`_eliminate`: ``A[j, h] = d log Z / d T0[j, h]``, ``[n, n+1]``.

    ``AT = A^T`` is kept alongside (R3 writes a column of ``A``, a row of ``AT``; a finished row
    of ``A`` is copied into a column of ``AT``), so that every sum below runs along a
    contiguous row. Panels ``[k0, k1)`` from the last; ``T_ = [k1, n)`` are the later rows and
    the "far" columns ``{0} u [k1+1, n]`` are final before the panel. Two row-blocked
    products take the far terms: ``PHI[k, j] = sum_far T[k, h] AT[h, j]`` (R1, ``j in T_``) and
    ``A[k, far] += sum_{j in T_} F_kj A[j, far]`` (R2). The panel's steps add the rest.
    Scratch: ``AT [n+1, n]``; ``FP``, ``PHI [>= nb, n]`` (``FP[k - k0, j] = F_kj`` and
    ``PHI[k - k0, j] = phi_j`` of step ``k``, on the later rows); ``vp [>= nb]`` (``phi_j`` of
    the current step on the panel's rows), ``nb = min(panel, n)``.
    """
    N1 = n + 1
    nb = min(panel, n)
    A[:, :] = 0.0
    AT[:, :] = 0.0
    k1 = n
    while k1 > 0:
        k0 = max(0, k1 - nb)
        w = k1 - k0
        if k1 < n:
            for j in range(k1, n):
                tj = T[j]
                for k in range(k0, k1):
                    FP[k - k0, j] = tj[k + 1]
            PHI[:w, k1:n] = 0.0
            _update_rows(PHI, 0, w, T, k0, 0, AT, 0, 1, 1, k1, n)  # R1, h = 0
            _update_rows(PHI, 0, w, T, k0, 0, AT, n, k1, -1, k1, n)  # R1, h = n .. k1+1
            _update_rows(A, k0, k1, FP, -k0, 0, A, n - 1, k1 - 1, -1, 0, 1)  # R2, h = 0
            _update_rows(A, k0, k1, FP, -k0, 0, A, n - 1, k1 - 1, -1, k1 + 1, N1)
        for k in range(k1 - 1, k0 - 1, -1):
            tk = T[k]
            ak = A[k]
            inv = invd[k]
            ph = PHI[k - k0]
            fp = FP[k - k0]
            # R1 on the later rows: the panel columns h = k1 .. k+2
            for h in range(k1, k + 1, -1):
                _axpy(ph, tk[h], AT[h], k1, n)
            # R1 on the panel's rows j = k+1 .. k1-1
            nv = k1 - k - 1
            for t in range(nv):
                aj = A[k + 1 + t]
                vp[t] = aj[0] * tk[0] + _dotv(aj, tk, k + 2, N1)
            # R2 on the panel columns from the later rows
            for h in range(k + 2, k1 + 1):
                ak[h] += _dotv(fp, AT[h], k1, n)
            # R2 on every column of H_k from the panel's rows, j descending
            for j in range(k1 - 1, k, -1):
                f = T[j, k + 1]
                aj = A[j]
                ak[0] += f * aj[0]
                _axpy(ak, f, aj, k + 2, N1)
            # R4's flow
            flow = _dotv(ph, fp, k1, n)
            for t in range(nv):
                flow += vp[t] * T[k + 1 + t, k + 1]
            # R3 (each A[j, k+1] is written by this step only), into A and AT
            at = AT[k + 1]
            for j in range(k1, n):
                x = ph[j] * inv
                at[j] = x
                A[j, k + 1] = x
            for t in range(nv):
                x = vp[t] * inv
                at[k + 1 + t] = x
                A[k + 1 + t, k + 1] = x
            # R4: the pivot's adjoint, (1 - flow) / d_k so that no 1 / d^2 overflows
            ad = (1.0 - flow) * inv
            if not single_root or k == n - 1:
                ak[0] += ad
            ar = ak[k + 2 : N1]
            for t in range(N1 - k - 2):
                ar[t] += ad
            # row k is final on H_k
            AT[0, k] = ak[0]
            for h in range(k + 2, N1):
                AT[h, k] = ak[h]
        k1 = k0


@njit(cache=CACHE, fastmath=_FM_SAFE)
def _marginals(T0, A, n, mu):
    """``mu[h, j+1] = T0[j, h] A[j, h]`` (eq. M) into ``mu[:n+1, :n+1]``,
    checked: every entry within ``[-MTT_MU_TOL, 1 + MTT_MU_TOL]``, every column summing to 1
    within ``MTT_MU_TOL``; clamped to ``[0, 1]``. Returns ``ok``."""
    N1 = n + 1
    val = np.empty(N1)
    ok = True
    lo = -MTT_MU_TOL
    hi = 1.0 + MTT_MU_TOL
    for j in range(n):
        t0 = T0[j]
        aj = A[j]
        for h in range(N1):
            # a weight that underflowed to 0 has marginal 0 (never 0 * inf)
            val[h] = t0[h] * aj[h] if t0[h] > 0.0 else 0.0
        val[j + 1] = 0.0
        if not abs(_sum(val, 0, N1) - 1.0) <= MTT_MU_TOL:  # also catches NaN
            ok = False
        for h in range(N1):
            v = val[h]
            if not (lo <= v <= hi):
                ok = False
            mu[h, j + 1] = min(max(v, 0.0), 1.0)
    return ok


#: sentences shorter than this take :func:`_mtt_short`
SHORT = 24


@njit(cache=CACHE, fastmath=_FM_SAFE)
def _mtt_short(s, n, single_root, want_mu, mu, T, T0, A, c, invd, x, ibuf):
    """:func:`_mtt_one` below :data:`SHORT` words: F1-F4, R1-R4 and M unblocked, in plain
    loops over whole rows (the blocked passes' bookkeeping costs more than it saves on short
    rows). ``x``, ``ibuf`` (int64): scratch of ``n (n+1)`` entries."""
    N1 = n + 1
    _column_max(s, n, c)
    for j in range(n):  # T = exp(s^T - c), one vectorised exp over the whole matrix
        for h in range(N1):
            x[j * N1 + h] = s[h, j + 1] - c[j]
        x[j * N1 + j + 1] = -np.inf
    _exp_nonpos(x, T.reshape(n * N1), n * N1, ibuf)
    if want_mu:
        T0[:, :] = T
    logz = 0.0
    for k in range(n):  # F1-F4
        row = T[k]
        d = _sum(row, k + 2, N1)
        if not single_root or k == n - 1:
            d += row[0]
        if not (MTT_TINY <= d <= MTT_HUGE):
            return logz, False
        logz += np.log(d) + c[k]
        inv = 1.0 / d
        invd[k] = inv
        m = N1 - k - 2
        rk = row[k + 2 : N1]
        for j in range(k + 1, n):
            rj = T[j]
            f = rj[k + 1] * inv
            rj[k + 1] = f
            rj[0] += f * row[0]
            dj = rj[k + 2 : N1]  # slices taken here, not in a callee: cheaper on short rows
            for h in range(m):
                dj[h] += f * rk[h]
    if not want_mu:
        return logz, True
    A[:, :] = 0.0
    for k in range(n - 1, -1, -1):  # R1-R4, j descending
        row = T[k]
        ak = A[k]
        inv = invd[k]
        flow = 0.0
        m = N1 - k - 2
        rk = row[k + 2 : N1]
        dk = ak[k + 2 : N1]
        for j in range(n - 1, k, -1):
            aj = A[j]
            sj = aj[k + 2 : N1]
            s0 = s1 = s2 = s3 = 0.0  # the lanes of _dotv(aj, row, k + 2, N1)
            h = 0
            while h + 4 <= m:
                s0 += sj[h] * rk[h]
                s1 += sj[h + 1] * rk[h + 1]
                s2 += sj[h + 2] * rk[h + 2]
                s3 += sj[h + 3] * rk[h + 3]
                h += 4
            while h < m:
                s0 += sj[h] * rk[h]
                h += 1
            phi = aj[0] * row[0] + ((s0 + s1) + (s2 + s3))
            f = T[j, k + 1]
            flow += phi * f
            A[j, k + 1] = phi * inv
            ak[0] += f * aj[0]
            for h in range(m):
                dk[h] += f * sj[h]
        ad = (1.0 - flow) * inv
        if not single_root or k == n - 1:
            ak[0] += ad
        for h in range(m):
            dk[h] += ad
    return logz, _marginals(T0, A, n, mu)


def workspace_size(n: int, panel: int) -> int:
    """float64 entries of scratch :func:`matrix_tree` needs per thread for ``n`` words."""
    nb = min(panel, n)
    return 4 * n * (n + 1) + 2 * nb * n + 5 * n + nb


_WS = threading.local()
#: largest scratch (bytes, all threads) kept between calls; a larger one is allocated per call
WS_KEEP_BYTES = 1 << 26


def workspace(n_max: int) -> np.ndarray:
    """Scratch for :func:`matrix_tree` on sentences of up to ``n_max`` words with the current
    number of numba threads: ``[threads, workspace_size(n_max, PANEL)]`` float64.

    Kept per Python thread and reused while large enough (up to :data:`WS_KEEP_BYTES`): large
    fresh allocations are returned to the system when freed, and touching them again costs a
    page fault per 4 KiB (about a fifth of the kernel's time at n = 320).
    """
    threads = numba.get_num_threads()
    size = workspace_size(max(n_max, 1), PANEL)
    ws = getattr(_WS, "buf", None)
    if ws is not None and ws.shape[0] >= threads and ws.shape[1] >= size:
        return ws
    ws = np.empty((threads, size))
    if ws.nbytes <= WS_KEEP_BYTES:
        _WS.buf = ws
    return ws


def host_buffer(name: str, shape: tuple[int, ...]) -> np.ndarray:
    """A float64 array of ``shape`` for intermediate host copies (the float64 scores, the
    float64 marginals before their cast), kept per Python thread and name like
    :func:`workspace`. Its content is garbage; it must not escape to the caller."""
    size = int(np.prod(shape))
    bufs = getattr(_WS, "host", None)
    if bufs is None:
        bufs = _WS.host = {}
    buf = bufs.get(name)
    if buf is None or buf.shape[0] < size:
        buf = np.empty(max(size, 1))
        if buf.nbytes <= WS_KEEP_BYTES:
            bufs[name] = buf
    return buf[:size].reshape(shape)


@njit(cache=CACHE, fastmath=_FM_SAFE)
def _mtt_one(s, n, single_root, want_mu, mu, panel, ws):
    """Matrix-tree ``(log Z, ok)`` of one sentence ``s [>= n+1, >= n+1]``; marginals into
    ``mu[:n+1, 1:n+1]`` when ``want_mu`` (0 on the diagonal). ``ws``: float64 scratch of
    :func:`workspace_size` entries (every entry is written before it is read)."""
    N1 = n + 1
    nb = min(panel, n)
    sq = n * N1
    T = ws[:sq].reshape(n, N1)
    T0 = ws[sq : 2 * sq].reshape(n, N1)
    A = ws[2 * sq : 3 * sq].reshape(n, N1)  # scratch of _weights first, adjoints later
    AT = ws[3 * sq : 4 * sq].reshape(N1, n)
    o = 4 * sq
    FP = ws[o : o + nb * n].reshape(nb, n)
    PHI = ws[o + nb * n : o + 2 * nb * n].reshape(nb, n)
    o += 2 * nb * n
    c = ws[o : o + n]
    invd = ws[o + n : o + 2 * n]
    RT = ws[o + 2 * n : o + 3 * n]
    x = ws[o + 3 * n : o + 4 * n]
    ibuf = ws[o + 4 * n : o + 5 * n].view(np.int64)
    vp = ws[o + 5 * n : o + 5 * n + nb]
    if n < SHORT:  # AT and A are free there: scratch for the exponent and its bits
        xs = AT.reshape(N1 * n)
        ib = A.reshape(N1 * n).view(np.int64)
        return _mtt_short(s, n, single_root, want_mu, mu, T, T0, A, c, invd, xs, ib)
    _weights(s, n, T, c, A.reshape(N1, n), x, ibuf)
    if want_mu:
        T0[:, :] = T
    logz, ok = _eliminate(T, c, n, single_root, panel, invd, FP, RT)
    if not ok or not want_mu:
        return logz, ok
    _adjoint(T, n, single_root, panel, invd, A, AT, FP, PHI, vp)
    return logz, _marginals(T0, A, n, mu)


@njit(cache=CACHE, fastmath=_FM_SAFE)
def _sentence(scores, lengths, single_root, want_mu, mu, panel, ws, b, logz, ok):
    """Sentence ``b`` of :func:`matrix_tree` (``ws``: this thread's scratch)."""
    n = lengths[b]
    N = scores.shape[1]
    mb = mu[b] if want_mu else mu[0]
    if want_mu:
        for i in range(N):
            lo = 0 if (i > n or n == 0) else n + 1
            mb[i, lo:] = 0.0
            if i <= n:
                mb[i, 0] = 0.0
    if n > 0:
        logz[b], ok[b] = _mtt_one(scores[b], n, single_root, want_mu, mb, panel, ws)


@njit(cache=CACHE, parallel=True)
def _matrix_tree(scores, lengths, single_root, want_mu, mu, panel, ws):
    """:func:`matrix_tree`, the sentences spread over numba's threads."""
    B = scores.shape[0]
    logz = np.zeros(B)
    ok = np.ones(B, dtype=np.bool_)
    for b in prange(B):
        w = ws[numba.get_thread_id()]
        _sentence(scores, lengths, single_root, want_mu, mu, panel, w, b, logz, ok)
    return logz, mu, ok


#: below this much work (sum of n^3 over the batch) the sentences run on the calling thread:
#: a parallel region costs more to start and join than it saves (and a busy machine can stall
#: it for a whole time slice)
SERIAL_WORK = 30_000


def matrix_tree(
    scores: np.ndarray,
    lengths: np.ndarray,
    single_root: bool,
    want_mu: bool,
    mu: np.ndarray,
    panel: int,
    ws: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Non-projective ``(log Z [B], mu, ok [B])``; marginals into ``mu [B, N, N]``.

    ``scores [B, N, N]`` float64, C-contiguous; sentence ``b`` reads only
    ``scores[b, :lengths[b]+1, :lengths[b]+1]`` (``lengths [B]`` int64). ``mu`` (float64) is
    written entirely when ``want_mu`` (0 off the valid arcs) and untouched otherwise (then any
    ``[>= 1, >= 1, >= 1]`` array). ``ok[b]`` false: sentence ``b`` failed its checks (see the
    module docstring) and must be redone. ``panel``: steps per panel (:data:`PANEL`).
    ``ws [>= numba.get_num_threads(), >= workspace_size(max(lengths), panel)]`` float64:
    scratch, one row per thread (see :func:`workspace`). Sentences run in parallel over
    numba's threads unless the batch is small (:data:`SERIAL_WORK`: then on the calling thread,
    by a thread-local ``numba.set_num_threads(1)``); a sentence's result is the same either way.
    """
    threads = numba.get_num_threads()
    if threads == 1 or int((lengths.astype(np.int64) ** 3).sum()) >= SERIAL_WORK:
        return _matrix_tree(scores, lengths, single_root, want_mu, mu, panel, ws)
    numba.set_num_threads(1)
    try:
        return _matrix_tree(scores, lengths, single_root, want_mu, mu, panel, ws)
    finally:
        numba.set_num_threads(threads)
