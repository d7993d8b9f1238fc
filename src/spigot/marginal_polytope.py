"""Euclidean projection onto the marginal polytope ``conv(Z)``: the SparseMAP active set.

For each structure ``b`` of a batch (a sentence), over the parts a structure may contain::

    mu* = argmin_{mu in conv(Z)} 1/2 ||mu - x||^2
        = M w*,    w* in argmin_{w >= 0, 1^T w = 1} 1/2 ||M w - x||^2

where the columns of ``M`` are the 0/1 structures ``z in Z`` (e.g. every dependency tree of the
sentence). ``mu*`` is unique; for a score vector ``x = s`` it is SparseMAP (Niculae, Martins,
Blondel & Cardie, ICML 2018), a sparse mixture of a few structures.

The solver is their active-set method (Wolfe's 1976 min-norm-point algorithm shifted to ``x``),
with the structure's own argmax as the only access to ``Z``:

1. start from ``A = {argmax_z x·z}``, ``w = [1]``;
2. with ``mu = M_A w`` and the residual ``r = x - mu``, call the oracle ``z = argmax_z r·z``;
   the Frank-Wolfe gap ``gap = r·(z - mu)`` bounds the error: ``f(mu) - f(mu*) <= gap`` and
   ``||mu - mu*|| <= sqrt(2 gap)``. Stop when ``gap <= tol * (1 + ||r||_1)`` (the scale of the
   rounding error of ``gap``), or when ``z`` is already in ``A`` (then ``gap`` is 0 up to
   rounding: ``mu`` is optimal), or after ``max_iter`` oracle calls;
3. add ``z`` to ``A`` and solve the equality-constrained QP on ``A`` (its KKT system
   ``[[0, 1^T], [1, G]] [t; v] = [1; M_A^T x]``, ``G = M_A^T M_A``); while some ``v_i <= 0``,
   step from ``w`` towards ``v`` until a weight reaches 0, drop it, re-solve; go to 2.

Each iteration adds one structure, so the iterations are at least the size of the final active
set: about the dimension of the face of ``conv(Z)`` that holds ``mu*``, plus one.

Every structure of a batch advances together: one oracle call per iteration for the structures
still running (converged ones are frozen); the active sets are stored as part indices and the
inverse KKT matrices are updated in place in O(k^2) per change (:mod:`spigot._active_set`), in
float64. If float64 cannot make progress (the new structure gets no weight), a structure stops
there; it counts as converged when ``gap <= max(tol, 1e-9) * (1 + ||r||_1)``.

Backward (:class:`_ActiveSetJacobian`): on the active set, ``mu(x)`` is the projection onto the
affine hull of ``A``, so ``d mu / d x = M_A S M_A^T`` with
``S = G^-1 - G^-1 1 1^T G^-1 / (1^T G^-1 1)``, the orthogonal projection onto the directions
``z_i - z_j`` of that hull (symmetric, idempotent); ``S a`` is the ``v`` part of the KKT solve
with right-hand side ``[a; 0]``. It is exact wherever the active set is locally constant.
"""

from __future__ import annotations

import math
import numbers
import os
import sys
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor

from spigot._active_set import ActiveSets, bordered

if TYPE_CHECKING:
    from spigot.structures.base import Structure

#: default duality-gap tolerance (relative to ``1 + ||x - mu||_1``)
DEFAULT_TOL = 1e-12
#: default cap on the argmax (oracle) calls per structure
DEFAULT_MAX_ITER = 1000

_F64 = torch.float64


@dataclass(frozen=True)
class ProjectionInfo:
    """What the solver did, per structure; leading dimensions ``[*batch]`` are the batch shape
    of ``x`` (``[B]`` for trees and graphs).

    Attributes:
        iterations: long ``[*batch]``: argmax (oracle) calls, the first one included.
        gap: float64 ``[*batch]``: the Frank-Wolfe duality gap ``max_z (x - mu)·(z - mu)`` at the
            returned ``mu`` (``||mu - mu*|| <= sqrt(2 gap)``).
        converged: bool ``[*batch]``: ``gap <= tol * (1 + ||x - mu||_1)``, or the oracle
            returned a structure of the active set (``mu`` optimal up to rounding), or float64
            could not progress with ``gap <= max(tol, 1e-9) * (1 + ||x - mu||_1)``.
        structures: ``[*batch, k, *event]`` 0/1, the dtype of ``x``: the active set, padded
            with zero structures of weight 0 up to the largest ``k`` of the batch.
        weights: float64 ``[*batch, k]``: positive on the active set, 0 on padding, summing to
            1; ``mu = sum_k weights[..., k, None, ...] * structures[..., k, ...]``.
    """

    iterations: Tensor
    gap: Tensor
    converged: Tensor
    structures: Tensor
    weights: Tensor


def check_max_iter(name: str, value: object) -> int:
    """An integer >= 2 (Python, NumPy or one-element integer tensor) -> int."""
    if isinstance(value, Tensor) and value.numel() == 1 and not value.dtype.is_floating_point:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or int(value) < 2:
        raise ValueError(f"`{name}` must be an integer >= 2 (argmax calls), got {value!r}")
    return int(value)


def check_tol(name: str, value: object) -> float:
    """A finite float >= 0 -> float."""
    if isinstance(value, Tensor) and value.numel() == 1:
        value = value.item()
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if not ok or not (math.isfinite(float(value)) and float(value) >= 0):  # type: ignore[arg-type]
        raise ValueError(f"`{name}` must be a finite float >= 0, got {value!r}")
    return float(value)  # type: ignore[arg-type]


def _rows_prepared(prepared: Any, rows: Tensor, B: int) -> tuple[bool, Any]:
    """``prepared`` restricted to ``rows`` when it is ``None`` or a tuple of ``[B, ...]``
    tensors (every built-in structure); ``(False, None)`` when it cannot be split."""
    if prepared is None:
        return True, None
    if isinstance(prepared, tuple) and all(
        isinstance(p, Tensor) and p.dim() > 0 and p.shape[0] == B for p in prepared
    ):
        return True, tuple(p[rows.to(p.device)] for p in prepared)
    return False, None


@dataclass
class _Result:
    """The solver's output on flattened ``[B, D]`` inputs, active slots first."""

    mu: Tensor  # [B, D] float64
    idx: Tensor  # [B, k, P] part indices (sentinel D)
    G: Tensor  # [B, k, k]
    act: Tensor  # [B, k]
    w: Tensor  # [B, k]
    valid: Tensor  # [B, D]
    iterations: Tensor
    gap: Tensor
    converged: Tensor


#: outer iterations between two refreshes of the KKT inverse
_REFRESH = 16


def _solve(structure: Structure, x: Tensor, prepared: Any, tol: float, max_iter: int) -> _Result:
    """The active-set method of the module doc on prepared ``x``, batched over structures."""
    ev = structure.event_dim
    batch, event = x.shape[: x.dim() - ev], x.shape[x.dim() - ev :]
    B, D = math.prod(batch), math.prod(event)
    dev = x.device
    mask = structure._part_mask(prepared)
    if mask is None:
        valid = torch.ones(B, D, dtype=torch.bool, device=dev)
    else:
        valid = mask.expand(x.shape).reshape(B, D)
    xf = torch.where(valid, x.detach().to(_F64).reshape(B, D), 0)

    def oracle(rows: Tensor, r: Tensor) -> Tensor:
        if rows.numel() == B:
            z = structure._argmax(r.reshape(*batch, *event), prepared)
        else:
            split, sub = _rows_prepared(prepared, rows, B)
            if split:
                z = structure._argmax(r.reshape(-1, *event), sub)
            else:  # call on the whole batch, frozen rows at r = 0
                full = xf.new_zeros(B, D).index_copy(0, rows, r)
                z = structure._argmax(full.reshape(*batch, *event), prepared).reshape(B, D)[rows]
        return torch.where(valid[rows], z.reshape(-1, D).to(_F64), 0)

    S = ActiveSets(F.pad(xf, (0, 1)), max(1, min(max_iter, 16)))
    iters = torch.ones(B, dtype=torch.long, device=dev)
    gap = torch.zeros(B, dtype=_F64, device=dev)
    converged = torch.zeros(B, dtype=torch.bool, device=dev)
    stalled = torch.zeros(B, dtype=torch.bool, device=dev)
    mu = xf.clone()
    if B:
        mu = oracle(torch.arange(B, device=dev), xf)
        S.add(torch.ones(B, dtype=torch.bool, device=dev), mu, xf.new_zeros(B, 1))
        S.w[:, 0] = 1.0
    running = ~converged if B else converged
    step = 0
    while bool(running.any()):
        rows = running.nonzero().squeeze(1)
        r = xf[rows] - mu[rows]
        z = xf.new_zeros(B, D).index_copy_(0, rows, oracle(rows, r))
        iters[rows] += 1
        g = (r * (z[rows] - mu[rows])).sum(1)
        gap[rows] = g
        zz = (z > 0).sum(1, keepdim=True).to(_F64)
        dots = S.dots(F.pad(z, (0, 1)))
        ar = torch.arange(dots.shape[1], device=dev)
        same = (S.act & (dots == zz) & (S.G[:, ar, ar] == zz)).any(1)[rows]
        scale = 1 + r.abs().sum(1)
        ok = (g <= tol * scale) | same
        converged[rows] = ok
        stop = ok | (iters[rows] >= max_iter)
        running[rows[stop]] = False
        if bool(stop.all()):
            break
        step += 1
        if step % _REFRESH == 0:
            S.refresh()
        slot, bad = S.add(running, z, dots)
        S.corral(running & ~bad)
        mu = torch.where(running.unsqueeze(1), S.mu(), mu)
        # no progress in float64: the new structure was dependent, or could not enter; this
        # counts as converged when the gap is within max(tol, 1e-9) of the scale
        stuck = running & (bad | ~S.act.gather(1, slot.unsqueeze(1)).squeeze(1))
        near = torch.zeros_like(stuck)
        near[rows] = g <= max(tol, 1e-9) * scale
        converged |= stuck & near
        stalled |= stuck & ~near
        running &= ~stuck
    _report(~converged & ~stalled, ~converged & stalled, gap, tol, max_iter)
    # active slots first, trimmed to the largest active set
    order = torch.sort((~S.act).to(torch.int8), dim=1, stable=True).indices
    k = max(1, int(S.act.sum(1).max())) if B else 1
    order = order[:, :k]
    P = S.idx.shape[2]
    return _Result(
        mu=mu,
        idx=S.idx.gather(1, order.unsqueeze(2).expand(B, k, P)),
        G=S.G.gather(1, order.unsqueeze(2).expand(B, k, S.G.shape[2])).gather(
            2, order.unsqueeze(1).expand(B, k, k)
        ),
        act=S.act.gather(1, order),
        w=S.w.gather(1, order),
        valid=valid,
        iterations=iters,
        gap=gap,
        converged=converged,
    )


def _report(capped: Tensor, stalled: Tensor, gap: Tensor, tol: float, max_iter: int) -> None:
    """One warning naming the structures that stopped before the tolerance."""
    parts = []
    if bool(capped.any()):
        parts.append(f"{int(capped.sum())} stopped at max_iter={max_iter} argmax calls")
    if bool(stalled.any()):
        parts.append(f"{int(stalled.sum())} stopped making progress (rounding)")
    if parts:
        worst = float(gap[capped | stalled].max())
        warnings.warn(
            f"marginal-polytope projection: of {gap.numel()} structures, {' and '.join(parts)}; "
            f"largest duality gap {worst:.3g} (tol {tol:g}, ||mu - mu*|| <= sqrt(2 gap)). "
            "Raise max_iter, or pass return_info=True for per-structure iterations and gaps.",
            RuntimeWarning,
            stacklevel=_caller_level(),
        )


def _caller_level() -> int:
    """The ``stacklevel`` of the first frame outside spigot, seen from the caller of this."""
    here = os.path.dirname(os.path.abspath(__file__)) + os.sep
    frame, level = sys._getframe(1), 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(here):
        frame, level = frame.f_back, level + 1
    return level


def _dense(res: _Result, like: Tensor) -> Tensor:
    """The active structures as dense 0/1 ``[B, k, D]`` in the dtype of ``like``."""
    B, k, P = res.idx.shape
    D = res.valid.shape[1]
    out = like.new_zeros(B, k, D + 1)
    one = (res.act.unsqueeze(2) & (res.idx < D)).to(like.dtype)
    return out.scatter_(2, res.idx, one)[:, :, :D]


class _ActiveSetJacobian(torch.autograd.Function):
    """Identity on the solved ``mu``; backward ``(d mu / d x)^T g = M_A S M_A^T g`` (module doc).

    The Jacobian is symmetric, so this VJP is also its JVP. It is exactly zero off the valid
    parts: no structure has them.
    """

    @staticmethod
    def forward(x: Tensor, mu: Tensor, res: _Result) -> Tensor:  # type: ignore[override]
        return mu.clone()

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
        x, _, res = inputs
        ctx.res, ctx.shape, ctx.dtype = res, x.shape, x.dtype

    @staticmethod
    def backward(ctx: Any, g: Tensor) -> tuple[Tensor, None, None]:
        res: _Result = ctx.res
        B, k, P = res.idx.shape
        D = res.valid.shape[1]
        gd = torch.nn.functional.pad(torch.where(res.valid, g.reshape(B, D).to(_F64), 0), (0, 1))
        flat = res.idx.reshape(B, -1)
        a = gd.gather(1, flat).reshape(B, k, P).sum(2) * res.act
        rhs = torch.cat([a.new_zeros(B, 1), a], 1)
        y = torch.linalg.solve(bordered(res.G, res.act), rhs)[:, 1:] * res.act
        src = y.unsqueeze(2).expand(B, k, P).reshape(B, -1)
        dx = gd.new_zeros(B, D + 1).scatter_add(1, flat, src)
        return dx[:, :D].reshape(ctx.shape).to(ctx.dtype), None, None


def marginal_projection(
    structure: Structure,
    x: Tensor,
    prepared: Any,
    *,
    tol: float | None = None,
    max_iter: int | None = None,
    return_info: bool = False,
) -> Tensor | tuple[Tensor, ProjectionInfo]:
    """:func:`project_marginal` on inputs already through ``structure._prepare`` (the form
    estimators call). Differentiable in ``x`` (:class:`_ActiveSetJacobian`)."""
    tol = DEFAULT_TOL if tol is None else check_tol("tol", tol)
    max_iter = DEFAULT_MAX_ITER if max_iter is None else check_max_iter("max_iter", max_iter)
    if getattr(structure, "relaxed_is_marginal", False) and not return_info:
        return structure._project(x, prepared)  # closed form: the relaxation is conv(Z)
    with torch.no_grad():
        res = _solve(structure, x, prepared, tol, max_iter)
    out = res.mu.reshape(x.shape).to(x.dtype)
    if x.requires_grad and torch.is_grad_enabled():
        out = _ActiveSetJacobian.apply(x, out, res)
    if not return_info:
        return out
    batch = x.shape[: x.dim() - structure.event_dim]
    event = x.shape[x.dim() - structure.event_dim :]
    k = res.w.shape[1]
    info = ProjectionInfo(
        iterations=res.iterations.reshape(batch),
        gap=res.gap.reshape(batch),
        converged=res.converged.reshape(batch),
        structures=_dense(res, x.detach()).reshape(*batch, k, *event),
        weights=res.w.reshape(*batch, k),
    )
    return out, info


def project_marginal(
    structure: Structure,
    x: Tensor,
    lengths: Tensor | None = None,
    *,
    tol: float | None = None,
    max_iter: int | None = None,
    return_info: bool = False,
) -> Tensor | tuple[Tensor, ProjectionInfo]:
    """``mu = argmin_{mu in conv(Z)} ||mu - x||^2``: the Euclidean projection onto the marginal
    polytope, per structure of the batch (what ``structure.project(x, lengths,
    polytope="marginal")`` returns).

    Args:
        structure: any :class:`~spigot.structures.Structure` whose structures are 0/1; those
            whose relaxed polytope is already ``conv(Z)`` (``relaxed_is_marginal``: graphs,
            labeled graphs, categoricals) use their closed form unless ``return_info`` asks for
            the active set.
        x: the point, shaped like the structure's scores (``[B, n+1, n+1]`` for trees).
        lengths: ``[B]`` words per sentence, as for the scores.
        tol: duality-gap tolerance, relative to ``1 + ||x - mu||_1`` (default 1e-12).
        max_iter: most argmax calls per structure, the first included (default 1000, >= 2).
            Structures that stop there are named in a ``RuntimeWarning``.
        return_info: also return a :class:`ProjectionInfo` (iterations, gaps, the active set).

    Returns:
        ``mu`` with the shape, dtype and device of ``x``, zero off the valid parts;
        differentiable (the exact Jacobian of the active set). With ``return_info``,
        ``(mu, info)``.
    """
    x, prepared = structure._prepare(x, lengths, name="x")
    return marginal_projection(
        structure, x, prepared, tol=tol, max_iter=max_iter, return_info=return_info
    )


__all__ = [
    "DEFAULT_MAX_ITER",
    "DEFAULT_TOL",
    "ProjectionInfo",
    "check_max_iter",
    "check_tol",
    "marginal_projection",
    "project_marginal",
]
