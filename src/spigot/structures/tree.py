"""Dependency trees: arborescences rooted at node 0, projective or not, one root child or many."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from spigot.projections import project_simplex
from spigot.structures._arcs import ArcFactored, heads_to_arcs


def _kernels() -> Any:
    """The compiled CPU kernels (imports numba on first use only)."""
    from spigot import _kernels

    return _kernels


def _to_numpy(scores: Tensor, lengths: Tensor) -> tuple[np.ndarray, np.ndarray]:
    """CPU float64 copies for the compiled kernels (the only host transfer of the tree code)."""
    s = scores.detach().to(device="cpu", dtype=torch.float64).contiguous().numpy()
    return s, lengths.detach().to("cpu").numpy().astype(np.int64)


# ------------------------------------------------------------------------------------------
# Matrix-tree theorem (non-projective), pure torch: runs on the scores' device
# ------------------------------------------------------------------------------------------
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
    """``log Z`` of non-projective trees: the matrix-tree theorem, computed in log space.

    ``Z = det L`` for the Laplacian over words, ``L[m, m] = r_m + sum_{h != m} w[h, m]``,
    ``L[h, m] = -w[h, m]`` with ``w = exp(s[1:, 1:])`` and root weights ``r = exp(s[0, 1:])``
    (Tutte 1984; Koo et al. 2007). A plain ``slogdet`` of ``exp(s)`` loses every digit once
    scores spread over ~100 (the pivots cancel), so we eliminate words one at a time in the
    Grassmann-Taksar-Heyman way: the Schur complement of a Laplacian is again a Laplacian,

        d_k   = r_k + sum_{i > k} w[i, k]                      (pivot: a sum of positive terms)
        w'[i, j] = w[i, j] + w[i, k] w[k, j] / d_k             (paths i -> k -> j)
        r'[j]    = r[j] + r[k] w[k, j] / d_k                   (paths root -> k -> j)

    and ``log Z = sum_k log d_k``. No subtraction ever happens, so every quantity keeps full
    relative precision, and all of it runs as log-sum-exp in float64: no overflow or underflow
    for any finite scores.

    Single root (exactly one root arc): give the root weights a factor ``t`` and keep the term
    linear in ``t``. The pivots are those of ``t = 0`` (no root), the root weights propagate
    linearly, and the last pivot is ``t * r'_n``, so ``Z = (prod_{k<n} d_k) * r'_n``.

    Args:
        scores: ``[B, n+1, n+1]`` (any floating dtype; computed in float64).
        lengths: ``[B]``; mask: ``[B, n+1, n+1]`` valid arcs.

    Returns:
        ``[B]`` float64, differentiable (twice) by autograd; its gradient (the marginals) is
        a chain of positive softmax weights, so it is accurate too.
    """
    s = scores.to(torch.float64)
    # log of a weight that is exactly 0 in every exp() below (|finite scores| << 1e300);
    # finite rather than -inf so that no inf - inf (NaN) appears in the backward pass
    zero_w = torch.finfo(torch.float64).min / 8
    s = torch.where(mask, s, torch.full((), zero_w, dtype=torch.float64, device=s.device))
    B, N, _ = s.shape
    n = N - 1
    W = s[:, 1:, 1:]  # W[b, i, j] = log w[i, j] over the words not yet eliminated
    r = s[:, 0, 1:]  # log root weights
    logz = torch.zeros(B, dtype=torch.float64, device=s.device)
    for k in range(n):
        col = W[:, 1:, 0]  # log w[i, k], i > k
        row = W[:, 0, 1:]  # log w[k, j], j > k
        if single_root:
            if col.shape[1] > 0:
                ld = torch.logsumexp(col, dim=1)
            else:
                ld = torch.zeros(B, dtype=torch.float64, device=s.device)
            last = lengths == k + 1
            inner = lengths > k + 1
            logz = logz + torch.where(inner, ld, 0) + torch.where(last, r[:, 0], 0)
        else:
            ld = torch.logsumexp(torch.cat([r[:, :1], col], dim=1), dim=1)
            logz = logz + torch.where(lengths > k, ld, 0)
        if k == n - 1:
            break
        via = row - ld.unsqueeze(1)  # log (w[k, j] / d_k)
        W = _logaddexp(W[:, 1:, 1:], col.unsqueeze(2) + via.unsqueeze(1))
        r = _logaddexp(r[:, 1:], r[:, :1] + via)
    return logz


def matrix_tree_log_partition_linear(
    scores: Tensor, lengths: Tensor, mask: Tensor, single_root: bool
) -> tuple[Tensor, Tensor]:
    """The elimination of :func:`matrix_tree_log_partition` in linear scale, by autograd.

    Same recurrences on column-scaled weights ``W = exp(s - c)`` (the compiled kernel's
    arithmetic): multiplications and additions only, so it is fast under autograd and twice
    differentiable. Precise while every pivot stays within ``[1e-250, 1e250]``; the second
    output says, per sentence, whether it did (use the log-space version where it did not).

    Returns:
        ``(log Z [B], ok [B] bool)``, float64.
    """
    from spigot._kernels import MTT_HUGE, MTT_TINY  # plain floats; numba is already loaded

    s = scores.to(torch.float64)
    neg_inf = torch.tensor(float("-inf"), dtype=torch.float64, device=s.device)
    s = torch.where(mask, s, neg_inf)
    c = s.detach().amax(dim=1, keepdim=True)
    c = torch.where(torch.isfinite(c), c, torch.zeros_like(c))
    A = torch.exp(s - c)
    W, r = A[:, 1:, 1:], A[:, 0, 1:]
    B, n = W.shape[0], W.shape[-1]
    one = torch.ones((), dtype=torch.float64, device=s.device)
    logz = c.squeeze(1)[:, 1:].sum(-1)
    ok = torch.ones(B, dtype=torch.bool, device=s.device)
    for k in range(n):
        col, row = W[:, 1:, 0], W[:, 0, 1:]
        if single_root:
            pivot = lengths > k + 1  # an inner word: eliminated with pivot D_k
            last = lengths == k + 1  # the last word: its root weight closes the product
            d = torch.where(pivot, col.sum(1), torch.where(last, r[:, 0], one))
            used = pivot | last
        else:
            used = pivot = lengths > k
            d = torch.where(pivot, r[:, 0] + col.sum(1), one)
        dd = d.detach()
        ok = ok & (~used | ((dd >= MTT_TINY) & (dd <= MTT_HUGE)))
        d = torch.where(used & ok, d, one)  # keeps log() and 1/d finite in both passes
        logz = logz + torch.log(d)
        if k == n - 1:
            break
        f = torch.where(pivot.unsqueeze(1), row / d.unsqueeze(1), 0)
        W = W[:, 1:, 1:] + col.unsqueeze(2) * f.unsqueeze(1)
        r = r[:, 1:] + r[:, :1] * f
    return logz, ok


def _matrix_tree_differentiable(
    scores: Tensor, lengths: Tensor, mask: Tensor, single_root: bool
) -> Tensor:
    """Twice-differentiable non-projective ``log Z``: linear scale where precise, else log space."""
    with torch.no_grad():
        _, ok = matrix_tree_log_partition_linear(scores, lengths, mask, single_root)
    if bool(ok.all()):
        return matrix_tree_log_partition_linear(scores, lengths, mask, single_root)[0]
    good, bad = ok.nonzero().squeeze(1), (~ok).nonzero().squeeze(1)
    out = torch.zeros(scores.shape[0], dtype=torch.float64, device=scores.device)
    if good.numel():
        lz, _ = matrix_tree_log_partition_linear(
            scores[good], lengths[good], mask[good], single_root
        )
        out = out.index_put((good,), lz)
    lz = matrix_tree_log_partition(scores[bad], lengths[bad], mask[bad], single_root)
    return out.index_put((bad,), lz)


# ------------------------------------------------------------------------------------------
# Inside algorithm (projective) written in torch: the twice-differentiable reference
# ------------------------------------------------------------------------------------------
def projective_log_partition_torch(
    scores: Tensor, lengths: Tensor, mask: Tensor, single_root: bool
) -> Tensor:
    """``log Z`` of projective trees by the inside algorithm, differentiable by autograd.

    The same recurrences as the compiled kernel (see :mod:`spigot._kernels`), vectorised over
    the batch and over span starts, one width at a time; chart ``X_w[b, i]`` holds the span
    ``(i, i + w)``. Autograd keeps O(B n^3) memory: this path serves second derivatives (the
    exact gradient of the marginals) and cross-checks; :class:`_ProjectiveLogZ` is the fast one.

    Returns ``[B]`` in the dtype of ``scores``.
    """
    s = torch.where(mask, scores, torch.zeros((), dtype=scores.dtype, device=scores.device))
    B, N, _ = s.shape
    neg = torch.full((B, 1), float("-inf"), dtype=s.dtype, device=s.device)
    zeros = torch.zeros(B, N, dtype=s.dtype, device=s.device)
    Cr, Cl, Ir, Il = [zeros], [zeros], [None], [None]
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
    top = torch.stack([c[:, 0] for c in Cr], 1)  # [B, N]: Cr[0, w]
    return top.gather(1, lengths.view(B, 1)).squeeze(1)


class _ProjectiveLogZ(torch.autograd.Function):
    """``log Z`` of projective trees: compiled inside pass forward, outside pass backward.

    Extra memory O(B n^2) (seven charts per sentence), against O(B n^3) for autograd through
    a chart. The backward returns ``grad * marginals``; when a graph of the backward is
    requested (``create_graph=True``) the marginals come from the differentiable path instead.
    Runs on the CPU: inputs are copied to the host as float64, results copied back.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        scores: Tensor, lengths: Tensor, mask: Tensor, single_root: bool, tree: Any
    ) -> Any:
        s, lens = _to_numpy(scores, lengths)
        logz, charts = _kernels().inside(s, lens, single_root)
        return (
            torch.from_numpy(logz).to(device=scores.device, dtype=scores.dtype),
            torch.from_numpy(charts),
        )

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Any) -> None:
        scores, lengths, mask, single_root, tree = inputs
        _, charts = output
        ctx.mark_non_differentiable(charts)
        ctx.save_for_backward(scores, lengths, mask, charts)
        ctx.tree = tree

    @staticmethod
    def backward(
        ctx: Any, g: Tensor, _g_charts: Any
    ) -> tuple[Tensor | None, None, None, None, None]:
        scores, lengths, mask, charts = ctx.saved_tensors
        if torch.is_grad_enabled():  # double backward requested: differentiable marginals
            from spigot.estimators import _Marginals

            mu = _Marginals.apply(scores, ctx.tree, (lengths, mask))
        else:
            lens = lengths.detach().cpu().numpy().astype(np.int64)
            mu_np = _kernels().outside(charts.numpy(), lens)
            mu = torch.from_numpy(mu_np).to(device=scores.device, dtype=scores.dtype)
        return g.view(-1, 1, 1) * mu, None, None, None, None


def _matrix_tree_compiled(
    scores: Tensor, lengths: Tensor, mask: Tensor, single_root: bool, want_mu: bool
) -> tuple[Tensor, Tensor | None]:
    """Compiled matrix-tree ``log Z [B]`` (and marginals), float64 on the scores' device.

    The compiled kernel eliminates in linear scale (fast); a sentence whose pivots leave the
    safe range (|scores| spread over ~600 nats) is redone by the log-space
    :func:`matrix_tree_log_partition`, so every sentence gets full precision.
    """
    s, ln = _to_numpy(scores, lengths)
    logz_np, mu_np, ok_np = _kernels().matrix_tree(s, ln, single_root, want_mu)
    logz = torch.from_numpy(logz_np)
    mu = torch.from_numpy(mu_np) if want_mu else None
    if not ok_np.all():
        bad = torch.from_numpy(~ok_np).nonzero().squeeze(1)
        sb = scores.detach().cpu()[bad].to(torch.float64)
        with torch.enable_grad():
            sb.requires_grad_(want_mu)
            lz = matrix_tree_log_partition(sb, lengths.cpu()[bad], mask.cpu()[bad], single_root)
            if want_mu:
                (g,) = torch.autograd.grad(lz.sum(), sb)
                mu[bad] = g
        logz[bad] = lz.detach()
    dev = scores.device
    return logz.to(dev), (torch.where(mask, mu.to(dev), 0) if mu is not None else None)


class _NonProjectiveLogZ(torch.autograd.Function):
    """``log Z`` of non-projective trees: compiled matrix-tree forward, marginals backward.

    Forward and backward are O(n^3) per sentence with O(n^2) memory; a graph of the backward
    (``create_graph=True``) goes through the differentiable log-space version instead.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        scores: Tensor, lengths: Tensor, mask: Tensor, single_root: bool, tree: Any
    ) -> Tensor:
        logz, _ = _matrix_tree_compiled(scores, lengths, mask, single_root, want_mu=False)
        return logz.to(scores.dtype)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
        scores, lengths, mask, single_root, tree = inputs
        ctx.save_for_backward(scores, lengths, mask)
        ctx.single_root = single_root
        ctx.tree = tree

    @staticmethod
    def backward(ctx: Any, g: Tensor) -> tuple[Tensor | None, None, None, None, None]:
        scores, lengths, mask = ctx.saved_tensors
        if torch.is_grad_enabled():  # double backward requested: differentiable marginals
            from spigot.estimators import _Marginals

            mu = _Marginals.apply(scores, ctx.tree, (lengths, mask))
        else:
            _, mu = _matrix_tree_compiled(scores, lengths, mask, ctx.single_root, want_mu=True)
        return g.view(-1, 1, 1) * mu.to(scores.dtype), None, None, None, None


class DependencyTree(ArcFactored):
    """Dependency trees over ``n`` words plus the root (node 0).

    Scores are ``scores[b, h, m]``, shape ``[B, n+1, n+1]``: the score of the arc from head ``h``
    to modifier ``m``; ``lengths[b]`` words are real, the rest is padding. A tree is a 0/1 tensor
    of the same shape with exactly one head per word, no cycle, and zeros on the diagonal, in
    column 0 and on padding.

    Args:
        projective: restrict to projective trees (Eisner; inside-outside) instead of all
            arborescences (Chu-Liu-Edmonds; matrix-tree theorem).
        single_root: exactly one arc leaves the root (exact, for every algorithm).

    Argmax, marginals and log-partition run compiled on the CPU (numba, parallel over the
    batch): scores are copied to the host once as float64, results copied back to their device.
    The exact gradient of the marginals (the ``"marginals"`` estimator's backward) and double
    backward through ``log_partition`` are pure torch and run on the scores' device.
    """

    def __init__(self, projective: bool = False, single_root: bool = True) -> None:
        self.projective = bool(projective)
        self.single_root = bool(single_root)

    def __repr__(self) -> str:
        return f"DependencyTree(projective={self.projective}, single_root={self.single_root})"

    def _argmax(self, scores: Tensor, lengths: Any) -> Tensor:
        lens, _ = lengths
        s, ln = _to_numpy(scores, lens)
        kernel = _kernels().eisner if self.projective else _kernels().chu_liu_edmonds
        heads = torch.from_numpy(kernel(s, ln, self.single_root))
        return heads_to_arcs(heads, lens, scores)

    def heads(self, scores: Tensor, lengths: Tensor | None = None) -> Tensor:
        """The argmax as head indices ``[B, n+1]`` (long; position 0 and padding are 0)."""
        z = self.argmax(scores, lengths)
        return z.argmax(dim=1)

    def _logz(self, scores: Tensor, lengths: Any) -> Tensor:
        """Differentiable-by-autograd log-partition (float64 for matrix-tree)."""
        lens, mask = lengths
        if self.projective:
            return projective_log_partition_torch(scores, lens, mask, self.single_root)
        return _matrix_tree_differentiable(scores, lens, mask, self.single_root)

    def _marginals(self, scores: Tensor, lengths: Any) -> Tensor:
        lens, mask = lengths
        if self.projective:
            s, ln = _to_numpy(scores, lens)
            K = _kernels()
            _, charts = K.inside(s, ln, self.single_root)
            mu = torch.from_numpy(K.outside(charts, ln))
            return mu.to(device=scores.device, dtype=scores.dtype)
        _, mu = _matrix_tree_compiled(scores, lens, mask, self.single_root, want_mu=True)
        return mu.to(scores.dtype)

    def _marginals_vjp(self, scores: Tensor, lengths: Any, grad: Tensor) -> Tensor:
        _, mask = lengths
        with torch.enable_grad():
            s = scores.detach().to(torch.float64).requires_grad_(True)
            logz = self._logz(s, lengths)
            (mu,) = torch.autograd.grad(logz.sum(), s, create_graph=True)
            (hv,) = torch.autograd.grad(mu, s, grad_outputs=grad.to(torch.float64))
        return torch.where(mask, hv, 0).to(scores.dtype)

    def _log_partition(self, scores: Tensor, lengths: Any) -> Tensor:
        lens, mask = lengths
        if self.projective:
            logz, _ = _ProjectiveLogZ.apply(scores, lens, mask, self.single_root, self)
            return logz
        return _NonProjectiveLogZ.apply(scores, lens, mask, self.single_root, self)

    def _project(self, x: Tensor, lengths: Any) -> Tensor:
        """One simplex per modifier column over its valid heads (the paper's relaxation)."""
        _, mask = lengths
        return project_simplex(x, mask, dim=-2)
