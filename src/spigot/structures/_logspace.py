"""Log-partition functions of trees in pure torch, differentiable to any order.

These are the reference recurrences behind every derivative of tree marginals (the
``"marginals"`` estimator's backward, Hessian-vector products, double backward of
``log_partition``) and the fallback of the compiled matrix-tree kernel. They run on the scores'
device, in float64, and keep every intermediate value finite: each step is a log-sum-exp of
finite numbers, whose derivatives of every order are products of softmax weights
``exp(x - max) <= 1``. So no derivative overflows, underflows to NaN, or cancels
catastrophically, for any scores the validation accepts (``|s| <= MAX_ABS_SCORE``).

* :func:`matrix_tree_log_partition`: non-projective trees (matrix-tree theorem, eliminated in
  log space);
* :func:`projective_log_partition`: projective trees (the inside algorithm);
* :func:`tree_log_partition`: either, by flag.
"""

from __future__ import annotations

import torch
from torch import Tensor

# The log of a weight that is exactly 0: exp(_ZERO_W - x) == 0 for every value x a real entry can
# take (|x| <= 2 n MAX_ABS_SCORE << 1e307), yet a sum of three of them is still finite, so that
# no inf (and no inf - inf = NaN in a derivative) ever appears. Masked entries are reset to it
# after every elimination step, so it never compounds.
_ZERO_W = torch.finfo(torch.float64).min / 8


def _logaddexp(a: Tensor, b: Tensor) -> Tensor:
    """``log(exp(a) + exp(b))`` whose derivatives of every order stay finite.

    ``torch.logaddexp`` differentiates to ``1 / (1 + exp(b - a))``, whose second derivative is
    ``inf / inf`` when ``b - a`` is huge; shifting by the (constant) maximum keeps every
    exponent <= 0.
    """
    m = torch.maximum(a, b).detach()
    return m + torch.log(torch.exp(a - m) + torch.exp(b - m))


def matrix_tree_log_partition(
    scores: Tensor, lengths: Tensor, mask: Tensor, single_root: bool
) -> Tensor:
    """``log Z`` of non-projective trees: the matrix-tree theorem, eliminated in log space.

    ``Z = det L`` for the Laplacian over words, ``L[m, m] = r_m + sum_{h != m} w[h, m]``,
    ``L[h, m] = -w[h, m]`` with ``w = exp(s[1:, 1:])`` and root weights ``r = exp(s[0, 1:])``
    (Tutte 1984; Koo et al. 2007). ``slogdet(exp(s))`` loses every digit once scores spread over
    ~100 (its pivots cancel), so words are eliminated one at a time in the
    Grassmann-Taksar-Heyman way: the Schur complement of a Laplacian is again a Laplacian,

        d_k      = r_k + sum_{i > k} w[i, k]                   (pivot: a sum of positive terms)
        w'[i, j] = w[i, j] + w[i, k] w[k, j] / d_k             (paths i -> k -> j)
        r'[j]    = r[j] + r[k] w[k, j] / d_k                   (paths root -> k -> j)

    and ``log Z = sum_k log d_k``. Nothing is ever subtracted but ``log d_k``, and all of it runs
    as log-sum-exp in float64.

    Single root (exactly one root arc): give the root weights a factor ``t`` and keep the term
    linear in ``t``. The pivots are those of ``t = 0`` (no root), the root weights propagate
    linearly, and the last pivot is ``t * r'_n``, so ``Z = (prod_{k<n} d_k) * r'_n``.

    Args:
        scores: ``[B, n+1, n+1]`` (any floating dtype; computed in float64).
        lengths: ``[B]`` words per sentence; mask: ``[B, n+1, n+1]`` valid arcs.

    Returns:
        ``[B]`` float64, differentiable by autograd to any order.
    """
    s = scores.to(torch.float64)
    zero_w = torch.full((), _ZERO_W, dtype=torch.float64, device=s.device)
    s = torch.where(mask, s, zero_w)
    B, N, _ = s.shape
    n = N - 1
    W = s[:, 1:, 1:]  # W[b, i, j] = log w[i, j] over the words not yet eliminated
    r = s[:, 0, 1:]  # log root weights
    W_ok = mask[:, 1:, 1:]
    r_ok = mask[:, 0, 1:]
    zero = torch.zeros((), dtype=torch.float64, device=s.device)
    logz = torch.zeros(B, dtype=torch.float64, device=s.device)
    for k in range(n):
        col = W[:, 1:, 0]  # log w[i, k], i > k
        row = W[:, 0, 1:]  # log w[k, j], j > k
        if single_root:
            inner = lengths > k + 1  # eliminated with pivot d_k (no root weight)
            ld = torch.logsumexp(col, dim=1) if col.shape[1] > 0 else zero.expand(B)
            ld = torch.where(inner, ld, zero)
            logz = logz + ld + torch.where(lengths == k + 1, r[:, 0], zero)  # last: r'_n
        else:
            inner = lengths > k
            ld = torch.where(inner, torch.logsumexp(torch.cat([r[:, :1], col], 1), 1), zero)
            logz = logz + ld
        if k == n - 1:
            break
        via = row - ld.unsqueeze(1)  # log (w[k, j] / d_k)
        W_ok, r_ok = W_ok[:, 1:, 1:], r_ok[:, 1:]
        W = torch.where(W_ok, _logaddexp(W[:, 1:, 1:], col.unsqueeze(2) + via.unsqueeze(1)), zero_w)
        r = torch.where(r_ok, _logaddexp(r[:, 1:], r[:, :1] + via), zero_w)
    return logz


def projective_log_partition(
    scores: Tensor, lengths: Tensor, mask: Tensor, single_root: bool
) -> Tensor:
    """``log Z`` of projective trees by the inside algorithm, differentiable by autograd.

    The recurrences of the compiled kernel (see :mod:`spigot._kernels`), vectorised over the
    batch and over span starts, one width at a time; chart ``X_w[b, i]`` holds the span
    ``(i, i + w)``. Spans that cannot exist hold ``_ZERO_W`` rather than ``-inf``, so that
    every derivative stays finite. Autograd keeps O(B n^3) memory: this path serves derivatives
    of the marginals; :class:`~spigot.structures.tree._ProjectiveLogZ` is the fast forward.

    Returns ``[B]`` float64.
    """
    s = scores.to(torch.float64)
    s = torch.where(mask, s, torch.zeros((), dtype=s.dtype, device=s.device))
    B, N, _ = s.shape
    neg = torch.full((B, 1), _ZERO_W, dtype=s.dtype, device=s.device)
    zeros = torch.zeros(B, N, dtype=s.dtype, device=s.device)
    Cr: list[Tensor] = [zeros]
    Cl: list[Tensor] = [zeros]
    Ir: list[Tensor] = [zeros]  # width 0 is never read
    Il: list[Tensor] = [zeros]
    for w in range(1, N):
        m = N - w  # number of spans of width w
        # Ir[i, i+w] = s[i, i+w] + lse_t Cr[i, i+t] + Cl[i+t+1, i+w]      (t = 0..w-1)
        sp = torch.logsumexp(
            torch.stack([Cr[t][:, :m] + Cl[w - 1 - t][:, t + 1 : t + 1 + m] for t in range(w)]),
            dim=0,
        )
        Ir.append(sp + torch.diagonal(s, offset=w, dim1=1, dim2=2))
        # Il[i, i+w] = s[i+w, i] + same split sum; no arc enters the root (i = 0)
        Il.append(torch.cat([neg, (sp + torch.diagonal(s, offset=-w, dim1=1, dim2=2))[:, 1:]], 1))
        # Cr[i, i+w] = lse_t Ir[i, i+t] + Cr[i+t, i+w]                    (t = 1..w)
        cr = torch.logsumexp(
            torch.stack([Ir[t][:, :m] + Cr[w - t][:, t : t + m] for t in range(1, w + 1)]), dim=0
        )
        if single_root:  # the root's right span closes only at the end of the sentence
            closed = (w >= lengths).view(B, 1)
            cr = torch.cat([torch.where(closed, cr[:, :1], neg), cr[:, 1:]], 1)
        Cr.append(cr)
        # Cl[i, i+w] = lse_t Cl[i, i+t] + Il[i+t, i+w]                    (t = 0..w-1, i >= 1)
        cl = torch.logsumexp(
            torch.stack([Cl[t][:, 1:m] + Il[w - t][:, t + 1 : t + m] for t in range(w)]), dim=0
        )
        Cl.append(torch.cat([neg, cl], 1))
        # sums of several _ZERO_W must not overflow: clamp every span back to >= _ZERO_W
        Ir[w], Il[w] = Ir[w].clamp(min=_ZERO_W), Il[w].clamp(min=_ZERO_W)
        Cr[w], Cl[w] = Cr[w].clamp(min=_ZERO_W), Cl[w].clamp(min=_ZERO_W)
    top = torch.stack([c[:, 0] for c in Cr], 1)  # [B, N]: Cr[0, w]
    return top.gather(1, lengths.view(B, 1)).squeeze(1)


def tree_log_partition(
    scores: Tensor, lengths: Tensor, mask: Tensor, projective: bool, single_root: bool
) -> Tensor:
    """``log Z [B]`` (float64) of projective or non-projective trees, differentiable to any
    order."""
    if projective:
        return projective_log_partition(scores, lengths, mask, single_root)
    return matrix_tree_log_partition(scores, lengths, mask, single_root)
