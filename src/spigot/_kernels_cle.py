"""Compiled Chu-Liu-Edmonds (non-projective argmax), with an exact single-root variant.

Same conventions as :mod:`spigot._kernels` (float64 scores ``s[b, h, m]``, node 0 the root,
``lengths[b]`` words, padding never read, sentences in parallel over the batch); it is
re-exported there as ``spigot._kernels.chu_liu_edmonds``.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from spigot._kernels import CACHE, NEG_INF

__all__ = ["chu_liu_edmonds"]


# --------------------------------------------------------------------------------------------
# Chu-Liu-Edmonds: non-projective argmax
# --------------------------------------------------------------------------------------------
@njit(cache=CACHE)
def _gt(p1, s1, p2, s2):
    """Lexicographic ``(p1, s1) > (p2, s2)``."""
    return p1 > p2 or (p1 == p2 and s1 > s2)


@njit(cache=CACHE)
def _cle_one(s, n, single_root, heads):
    """Edmonds' algorithm on one sentence, arc weights in the ordered group ``(Z x R, lex)``.

    Arc ``h -> m`` weighs ``(p, s[h, m])`` with ``p = -1`` for root arcs when ``single_root``
    (else 0): every arborescence has at least one root arc, so the lexicographic maximum has
    exactly one and, among those, the highest score. Edmonds' algorithm is correct over any
    totally ordered abelian group, so this is exact (no big-M penalty, no loss of precision).

    Contracted cycles become new nodes ``n+1, n+2, ...``; ``OS/OD`` map every arc of a
    contracted graph to the original arc it stands for.
    """
    N1 = n + 1
    M = 2 * N1
    P = np.full((M, M), NEG_INF)
    S = np.full((M, M), NEG_INF)
    OS = np.zeros((M, M), dtype=np.int64)
    OD = np.zeros((M, M), dtype=np.int64)
    for h in range(N1):
        for m in range(1, N1):
            if h != m:
                P[h, m] = -1.0 if (single_root and h == 0) else 0.0
                S[h, m] = s[h, m]
                OS[h, m] = h
                OD[h, m] = m
    active = np.zeros(M, dtype=np.bool_)
    active[:N1] = True
    parent = np.full(M, -1, dtype=np.int64)  # contraction tree
    best_in = np.full(M, -1, dtype=np.int64)
    # saved per contraction: the new node and its members (a member's best_in is frozen)
    members = np.full((M, N1), -1, dtype=np.int64)
    n_members = np.zeros(M, dtype=np.int64)
    for v in range(1, N1):
        bu = 0
        for u in range(1, N1):
            if _gt(P[u, v], S[u, v], P[bu, v], S[bu, v]):
                bu = u
        best_in[v] = bu
    n_nodes = N1
    color = np.zeros(M, dtype=np.int64)
    while True:
        # find a cycle among the best incoming arcs (walk from each node, colour by start)
        for v in range(n_nodes):
            color[v] = -1
        cyc = -1
        for start in range(1, n_nodes):
            if not active[start] or color[start] != -1:
                continue
            v = start
            while v != 0 and color[v] == -1:
                color[v] = start
                v = best_in[v]
            if v != 0 and color[v] == start:
                cyc = v
                break
        if cyc == -1:
            break
        c = n_nodes
        n_nodes += 1
        k = 0
        v = cyc
        while True:
            members[c, k] = v
            k += 1
            active[v] = False
            parent[v] = c
            v = best_in[v]
            if v == cyc:
                break
        n_members[c] = k
        active[c] = True
        # arcs into and out of the new node
        for u in range(n_nodes - 1):
            if not active[u]:
                continue
            bp, bs, bv = NEG_INF, NEG_INF, -1
            op, osc, ov = NEG_INF, NEG_INF, -1
            for t in range(k):
                x = members[c, t]
                # into c: W[u, x] - W[best_in[x], x]
                if P[u, x] > NEG_INF:
                    rp = P[u, x] - P[best_in[x], x]
                    rs = S[u, x] - S[best_in[x], x]
                    if bv == -1 or _gt(rp, rs, bp, bs):
                        bp, bs, bv = rp, rs, x
                # out of c: W[x, u]
                if u != 0 and P[x, u] > NEG_INF:
                    if ov == -1 or _gt(P[x, u], S[x, u], op, osc):
                        op, osc, ov = P[x, u], S[x, u], x
            if bv != -1:
                P[u, c] = bp
                S[u, c] = bs
                OS[u, c] = OS[u, bv]
                OD[u, c] = OD[u, bv]
            if ov != -1:
                P[c, u] = op
                S[c, u] = osc
                OS[c, u] = OS[ov, u]
                OD[c, u] = OD[ov, u]
                # u's best incoming arc came from the cycle: the merged arc is at least as good
                if parent[best_in[u]] == c:
                    best_in[u] = c
        bu = -1
        for u in range(n_nodes - 1):
            if active[u] and P[u, c] > NEG_INF:
                if bu == -1 or _gt(P[u, c], S[u, c], P[bu, c], S[bu, c]):
                    bu = u
        best_in[c] = bu
    # expansion: the arc entering each node, as an original modifier
    enter = np.full(M, -1, dtype=np.int64)
    for v in range(1, n_nodes):
        if active[v]:
            u = best_in[v]
            heads[OD[u, v]] = OS[u, v]
            enter[v] = OD[u, v]
    for c in range(n_nodes - 1, N1 - 1, -1):
        b = enter[c]
        # the member of c that contains original node b
        v = b
        while parent[v] != c:
            v = parent[v]
        for t in range(n_members[c]):
            x = members[c, t]
            if x == v:
                enter[x] = b
            else:
                u = best_in[x]
                heads[OD[u, x]] = OS[u, x]
                enter[x] = OD[u, x]


@njit(cache=CACHE, parallel=True)
def chu_liu_edmonds(scores, lengths, single_root):
    """Non-projective argmax. ``scores [B, N, N]`` float64, ``lengths [B]`` -> heads ``[B, N]``."""
    B, N = scores.shape[0], scores.shape[1]
    heads = np.zeros((B, N), dtype=np.int64)
    for b in prange(B):
        n = lengths[b]
        if n == 0:
            continue
        _cle_one(scores[b], n, single_root, heads[b])
    return heads
