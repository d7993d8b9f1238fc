"""Matrix-tree log-partition and marginals in batched torch linear algebra: the device path.

CUDA scores are served here, on their device, instead of being copied to the compiled CPU
kernel (:mod:`spigot._kernels_mtt`). Plain torch ops, so the same code runs (and is tested) on
CPU tensors. For one sentence of ``n`` words, with ``s[h, m]`` the score of ``h -> m``:

    c_m     = max_{h != m} s[h, m]                              (column shift, eq. D1)
    w[h, m] = exp(s[h, m] - c_m) <= 1,   r_m = w[0, m]            (root weights)
    G       = diag(r + sum_h w[h, :]) - w[1:, 1:]               (Laplacian, many roots, eq. D2)
            = diag(sum_h w[h, :]) - w[1:, 1:], last row := r     (single root: Koo et al.
                                                                   2007's root-row trick)
    log Z   = log det G + sum_m c_m                             (LU: torch.linalg.lu_factor_ex)
    X       = G^{-1}                                            (torch.linalg.lu_solve)
    mu[0, m]  = r_m X[m, m]        (single root: r_m X[m, n-1])               (eq. D3)
    mu[h, m]  = w[h, m] (X[m, m] - X[m, h])   (single root: X[m, m] only if m < n-1,
                                               X[m, h] only if h < n-1)        (eq. D4)

``d log det G / d G = G^{-T}`` gives eqs. D3-D4; the column shift scales column ``m`` of ``G`` by
``exp(-c_m)``, which leaves every marginal unchanged and keeps every weight in ``[0, 1]``.

LU with partial pivoting subtracts, so unlike the compiled elimination it can lose digits
(large score spreads, tiny root weights). Every sentence is therefore checked: ``det G > 0``,
marginals finite and within ``[-MTT_MU_TOL, 1 + MTT_MU_TOL]``, every column of ``mu`` summing
to 1 within ``MTT_MU_TOL`` (that sum is ``(X G)[m, m]``, a residual of the inverse: if the LU is
exact for ``G + E``, the sums are ``1 - ((G + E)^{-1} E)[m, m]`` and their total deficit is the
first-order error of ``log det``, so the check vouches for ``log Z`` too). A sentence that fails
is redone by the caller on the exact compiled kernel
(:func:`spigot.structures.tree._matrix_tree_compiled`).

Sentences are grouped by length and each group runs on its exact ``n x n`` matrices, so the
padding never enters a factorisation. On CUDA, bitwise equality of a padded batch with
one-by-one calls then rests on the batched solvers treating every matrix of a batch alike,
which this module cannot check without a GPU; the CPU path (the compiled kernel) guarantees it.
"""

from __future__ import annotations

import torch
from torch import Tensor

#: tolerance of the checks (the compiled kernel's ``MTT_MU_TOL``)
MU_TOL = 1e-12


def _group(s: Tensor, single_root: bool, want_mu: bool) -> tuple[Tensor, Tensor | None, Tensor]:
    """One length group. ``s [k, n+1, n+1]`` float64 (no padding) ->
    ``(log Z [k], mu [k, n+1, n+1] or None, ok [k])``."""
    k, n1, _ = s.shape
    n = n1 - 1
    dev = s.device
    eye = torch.eye(n, dtype=torch.bool, device=dev)
    self_arc = torch.cat([torch.zeros(1, n, dtype=torch.bool, device=dev), eye], 0)
    x = s[:, :, 1:].masked_fill(self_arc, float("-inf"))  # [k, n+1, n]: heads x words
    c = x.amax(dim=1)  # eq. D1
    w = torch.exp(x - c.unsqueeze(1))
    r, W = w[:, 0, :], w[:, 1:, :]
    into = W.sum(1)
    if single_root:
        G = torch.diag_embed(into) - W
        G[:, n - 1, :] = r
    else:
        G = torch.diag_embed(into + r) - W  # eq. D2
    LU, piv, info = torch.linalg.lu_factor_ex(G)
    d = LU.diagonal(dim1=-2, dim2=-1)
    swaps = (piv != torch.arange(1, n + 1, dtype=piv.dtype, device=dev)).sum(-1)
    positive = (swaps + (d < 0).sum(-1)) % 2 == 0  # sign of det G
    logz = d.abs().log().sum(-1) + c.sum(-1)
    ok = (info == 0) & positive & torch.isfinite(logz)
    eye_f = torch.eye(n, dtype=s.dtype, device=dev).expand(k, n, n)
    X = torch.linalg.lu_solve(LU, piv, eye_f)
    Xd = X.diagonal(dim1=-2, dim2=-1)  # X[m, m]
    XT = X.transpose(-1, -2)  # XT[h, m] = X[m, h]
    if single_root:
        last = torch.arange(n, device=dev) == n - 1
        root = r * X[:, :, n - 1]
        words = W * (Xd.masked_fill(last, 0.0).unsqueeze(1) - XT.masked_fill(last.view(n, 1), 0.0))
    else:
        root = r * Xd  # eq. D3
        words = W * (Xd.unsqueeze(1) - XT)  # eq. D4
    words = words.masked_fill(eye, 0.0)
    mu = torch.cat([root.unsqueeze(1), words], 1)  # [k, n+1, n]
    ok &= torch.isfinite(mu).all(-1).all(-1)
    ok &= ((mu >= -MU_TOL) & (mu <= 1 + MU_TOL)).all(-1).all(-1)
    ok &= ((mu.sum(1) - 1).abs() <= MU_TOL).all(-1)
    if not want_mu:
        return logz, None, ok
    mu = torch.nn.functional.pad(mu.clamp(0, 1), (1, 0))  # column 0: nothing enters the root
    return logz, mu, ok


def matrix_tree_torch(
    scores: Tensor, lengths: Tensor, single_root: bool, want_mu: bool
) -> tuple[Tensor, Tensor | None, Tensor]:
    """Matrix-tree ``log Z [B]``, marginals ``[B, N, N]`` (if ``want_mu``) and ``ok [B]``, all on
    the scores' device, computed in float64.

    ``scores [B, N, N]`` (any float dtype; sentence ``b`` reads only
    ``scores[b, :lengths[b]+1, :lengths[b]+1]``), ``lengths [B]``. Where ``ok[b]`` is false the
    sentence failed its checks (see the module docstring) and its outputs are meaningless.
    """
    s = scores.detach().to(torch.float64)
    B, N = s.shape[0], s.shape[-1]
    dev = s.device
    lens = lengths.to(dev)
    logz = torch.zeros(B, dtype=torch.float64, device=dev)
    ok = torch.ones(B, dtype=torch.bool, device=dev)
    mu = torch.zeros(B, N, N, dtype=torch.float64, device=dev) if want_mu else None
    for n in sorted(set(lens.tolist()) - {0}):
        idx = (lens == n).nonzero().flatten()
        lz, m, good = _group(s[idx, : n + 1, : n + 1], single_root, want_mu)
        logz[idx] = lz
        ok[idx] = good
        if mu is not None and m is not None:
            mu[idx, : n + 1, : n + 1] = m
    return logz, mu, ok
