"""Dependency trees: arborescences rooted at node 0, projective or not, one root child or many."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from spigot.projections import project_simplex
from spigot.structures._arcs import heads_to_arcs, prepare_arcs
from spigot.structures.base import Structure


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
def matrix_tree_log_partition(
    scores: Tensor, lengths: Tensor, mask: Tensor, single_root: bool
) -> Tensor:
    """``log Z`` of non-projective trees by the matrix-tree theorem, in float64.

    With ``A[h, m] = exp(s[h, m] - c_m)`` (``c_m`` = the column maximum: each word has exactly
    one head, so the shift multiplies every tree by the same ``exp(-sum_m c_m)``), the Laplacian
    over words is ``L[m, m] = sum_h A[h, m]``, ``L[h, m] = -A[h, m]`` (``h, m >= 1``), and
    ``Z = det L * exp(sum_m c_m)`` (Tutte 1984; Koo et al. 2007). Multi-root: the diagonal
    includes the root arcs. Single root (Koo et al. 2007, sec. 3.3): the diagonal excludes them
    and the first row of ``L`` is replaced by the root scores ``A[0, 1:]``.
    Padding words get an identity block (determinant unchanged).

    Args:
        scores: ``[B, n+1, n+1]``, any floating dtype (computed in float64).
        lengths: ``[B]``. mask: ``[B, n+1, n+1]`` from :func:`arc_mask`.

    Returns:
        ``[B]`` float64, differentiable (twice) with respect to ``scores``.
    """
    s = scores.to(torch.float64)
    neg_inf = torch.tensor(float("-inf"), dtype=torch.float64, device=s.device)
    s = torch.where(mask, s, neg_inf)
    c = s.detach().amax(dim=1, keepdim=True)  # [B, 1, n+1]
    c = torch.where(torch.isfinite(c), c, torch.zeros_like(c))
    A = torch.exp(s - c)
    Aw = A[:, 1:, 1:]
    root = A[:, 0, 1:]
    n = Aw.shape[-1]
    pad = torch.arange(n, device=s.device).view(1, n) >= lengths.view(-1, 1)
    diag = Aw.sum(1) + pad.to(torch.float64)
    if not single_root:
        diag = diag + root
    L = torch.diag_embed(diag) - Aw
    if single_root:
        L = torch.cat([root.unsqueeze(1), L[:, 1:]], dim=1)
    _, logabsdet = torch.linalg.slogdet(L)
    return logabsdet + c.squeeze(1)[:, 1:].sum(-1)


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
        ctx.single_root = single_root
        ctx.tree = tree

    @staticmethod
    def backward(ctx: Any, g: Tensor, _g_charts: Any) -> tuple[Tensor | None, None, None, None, None]:
        scores, lengths, mask, charts = ctx.saved_tensors
        if torch.is_grad_enabled():  # double backward requested: differentiable marginals
            from spigot.estimators import _Marginals

            mu = _Marginals.apply(scores, ctx.tree, (lengths, mask))
        else:
            lens = lengths.detach().cpu().numpy().astype(np.int64)
            mu_np = _kernels().outside(charts.numpy(), lens, ctx.single_root)
            mu = torch.from_numpy(mu_np).to(device=scores.device, dtype=scores.dtype)
        return g.view(-1, 1, 1) * mu, None, None, None, None


class DependencyTree(Structure):
    """Dependency trees over ``n`` words plus the root (node 0).

    Scores are ``scores[b, h, m]``, shape ``[B, n+1, n+1]``: the score of the arc from head ``h``
    to modifier ``m``; ``lengths[b]`` words are real, the rest is padding. A tree is a 0/1 tensor
    of the same shape with exactly one head per word, no cycle, and zeros on the diagonal, in
    column 0 and on padding.

    Args:
        projective: restrict to projective trees (Eisner; inside-outside) instead of all
            arborescences (Chu-Liu-Edmonds; matrix-tree theorem).
        single_root: exactly one arc leaves the root (exact, for every algorithm).

    The argmax and the projective algorithms run compiled on the CPU (numba, parallel over the
    batch): scores are copied to the host once, results copied back to their device. The
    non-projective marginals are pure torch and stay on the scores' device.
    """

    event_dim = 2

    def __init__(self, projective: bool = False, single_root: bool = True) -> None:
        self.projective = bool(projective)
        self.single_root = bool(single_root)

    def __repr__(self) -> str:
        return f"DependencyTree(projective={self.projective}, single_root={self.single_root})"

    def _prepare(self, scores: Any, lengths: Any, name: str = "scores") -> tuple[Tensor, Any]:
        s, lens, mask = prepare_arcs(scores, lengths, name)
        return s, (lens, mask)

    def mask(self, scores: Tensor, lengths: Tensor | None = None) -> Tensor:
        """``[B, n+1, n+1]`` boolean: the arcs that a tree over ``lengths`` words may use."""
        _, (_, mask) = self._prepare(scores, lengths)
        return mask

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
        return matrix_tree_log_partition(scores, lens, mask, self.single_root)

    def _marginals(self, scores: Tensor, lengths: Any) -> Tensor:
        lens, mask = lengths
        if self.projective:
            s, ln = _to_numpy(scores, lens)
            K = _kernels()
            _, charts = K.inside(s, ln, self.single_root)
            mu = torch.from_numpy(K.outside(charts, ln, self.single_root))
            return mu.to(device=scores.device, dtype=scores.dtype)
        with torch.enable_grad():
            s = scores.detach().to(torch.float64).requires_grad_(True)
            logz = matrix_tree_log_partition(s, lens, mask, self.single_root)
            (mu,) = torch.autograd.grad(logz.sum(), s)
        return torch.where(mask, mu, 0).to(scores.dtype)

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
        return matrix_tree_log_partition(scores, lens, mask, self.single_root).to(scores.dtype)

    def _project(self, x: Tensor, lengths: Any) -> Tensor:
        """One simplex per modifier column over its valid heads (the paper's relaxation)."""
        _, mask = lengths
        return project_simplex(x, mask, dim=-2)
