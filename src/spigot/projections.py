"""Euclidean projections onto the polytopes that SPIGOT uses in its backward pass.

* :func:`project_simplex`: onto the probability simplex along one dimension, over the entries
  that ``mask`` marks valid (sparsemax, Martins & Astudillo 2016). One simplex per modifier
  column is the paper's relaxation of the tree polytope ("every word has exactly one head").
* :func:`project_unit_cube`: onto ``[0, 1]^d`` (exact for arc-factored graphs).
* :func:`project_subsimplex`: onto ``{y >= 0, sum(y) <= 1}`` along one dimension (exact for
  labeled graphs: an arc's label vector, whose sum is the arc's indicator).

All three are differentiable; the simplex projections have closed-form backwards
(:class:`SimplexProjection`, :class:`SubsimplexProjection`). None modifies its input, except
:func:`project_subsimplex_`, the no-gradient form that SPIGOT's backward uses on a buffer it
owns.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from spigot._masking import zero_outside_
from spigot._validate import check_finite


def _simplex_support(x: Tensor, mask: Tensor, dim: int) -> tuple[Tensor, Tensor]:
    """Threshold ``tau`` and support size of the projection (both keep ``dim`` with size 1).

    Sort the valid entries decreasingly, ``x_(1) >= x_(2) >= ...``; the support is the largest
    ``k`` with ``1 + k x_(k) > sum_{i <= k} x_(i)``, and ``tau = (sum_{i <= k} x_(i) - 1) / k``.
    Invalid entries are sorted last as ``-inf``, which fails the test (``-inf > -inf`` is false),
    so no sentinel constant is needed.
    """
    neg_inf = torch.tensor(float("-inf"), dtype=x.dtype, device=x.device)
    xm = torch.where(mask, x, neg_inf)
    srt = xm.sort(dim=dim, descending=True).values
    # the caller shifted each slice so that its largest valid entry is 0: the cumulative sums
    # below then never add up large equal offsets (1e8 + 1e8 + ... loses the 1 of "sum = 1")
    csum = srt.cumsum(dim)
    shape = [1] * x.dim()
    shape[dim] = x.shape[dim]
    k = torch.arange(1, x.shape[dim] + 1, dtype=x.dtype, device=x.device).view(shape)
    support = (1 + k * srt > csum).sum(dim=dim, keepdim=True)
    safe = support.clamp(min=1)
    tau = (csum.gather(dim, safe - 1) - 1) / safe.to(x.dtype)
    return tau, support


class SimplexProjection(torch.autograd.Function):
    r"""``p = argmin_{p in simplex} ||p - x||^2`` along ``dim`` over the entries where ``mask``.

    Solution: ``p = max(x - tau, 0)`` with the threshold ``tau`` of :func:`_simplex_support`;
    slices with no valid entry give all zeros.

    Backward (closed form): with ``S = {p > 0}``, ``dx = 1_S * (g - mean_S(g))``.
    """

    @staticmethod
    def forward(x: Tensor, mask: Tensor, dim: int) -> Tensor:  # type: ignore[override]
        # the projection is shift-equivariant (tau moves with a common offset), so shift every
        # slice by its largest valid entry and compute in at least float32
        work = torch.promote_types(x.dtype, torch.float32)
        xw = x.to(work)
        top = torch.where(mask, xw, torch.tensor(float("-inf"), dtype=work, device=x.device))
        top = top.amax(dim=dim, keepdim=True)
        xw = xw - torch.where(torch.isfinite(top), top, 0)
        tau, support = _simplex_support(xw, mask, dim)
        keep = mask & (support > 0)
        p = torch.where(keep, (xw - torch.where(support > 0, tau, 0)).clamp(min=0), 0)
        return p.to(x.dtype)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
        _, mask, dim = inputs
        ctx.save_for_backward(output, mask)
        ctx.dim = dim

    @staticmethod
    def backward(ctx: Any, g: Tensor) -> tuple[Tensor | None, None, None]:
        p, mask = ctx.saved_tensors
        s = (p > 0) & mask
        sf = s.to(g.dtype)
        n = sf.sum(ctx.dim, keepdim=True).clamp(min=1)
        mean = (g * sf).sum(ctx.dim, keepdim=True) / n
        return (g - mean) * sf, None, None


def project_simplex(x: Tensor, mask: Tensor | None = None, dim: int = -1) -> Tensor:
    """Project each slice of ``x`` along ``dim`` onto the simplex over its ``mask``-ed entries.

    Args:
        x: any shape, floating point.
        mask: boolean, broadcastable to ``x``; ``None`` means all entries are valid.
        dim: the dimension that sums to one.

    Returns:
        Same shape, dtype and device as ``x``; zero where ``mask`` is false and on slices
        with no valid entry. Differentiable (closed-form backward). Computed in at least
        float32 and after shifting each slice by its maximum, so that a common offset (e.g.
        ``[2e7, 2e7 + 2]``) never changes the result.

    Raises:
        ValueError: NaN or inf on an entry that ``mask`` marks valid.
    """
    if mask is None:
        mask = torch.ones_like(x, dtype=torch.bool)
    else:
        mask = mask.expand_as(x)
    dim = dim % x.dim()
    check_finite(x, mask, "x")
    return SimplexProjection.apply(x, mask, dim)


def project_unit_cube(x: Tensor, mask: Tensor | None = None) -> Tensor:
    """Project onto ``[0, 1]^d`` (clip), zero where ``mask`` is false. Differentiable.

    Raises ``ValueError`` on NaN or inf where ``mask`` is true (all entries when ``None``).
    """
    check_finite(x, mask, "x")
    y = x.clamp(0, 1)
    if mask is not None:
        y = torch.where(mask, y, torch.zeros((), dtype=x.dtype, device=x.device))
    return y


class SubsimplexProjection(torch.autograd.Function):
    r"""``p = argmin_{p >= 0, sum(p) <= 1} ||p - x||^2`` along ``dim``, over the entries where
    ``mask`` (the others are 0).

    KKT: ``p = max(x - lam, 0)`` with ``lam >= 0`` and ``lam (sum(p) - 1) = 0``. Either
    ``lam = 0`` and ``p = max(x, 0)`` (when that sums to at most 1), or ``sum(p) = 1`` and ``p``
    is the simplex projection, whose threshold ``tau`` is then positive. In one line:
    ``p = max(x - max(tau, 0), 0)`` with ``tau`` the simplex threshold of
    :func:`_simplex_support`. Slices with no valid entry give all zeros.

    Outputs ``(p, support, active)``: the last two (``p > 0`` and "the sum constraint is
    active", computed in the working precision, where a tiny positive entry cannot round to 0
    as it may in float16) are not differentiable and only serve the backward.

    Backward (closed form): with ``S = {p > 0}``, ``dx = 1_S * (g - mean_S(g))`` where the sum
    constraint is active (``tau > 0``), ``dx = 1_S * g`` where it is not.
    """

    @staticmethod
    def forward(x: Tensor, mask: Tensor, dim: int) -> tuple[Tensor, Tensor, Tensor]:  # type: ignore[override]
        p, active = _subsimplex(x, mask, dim)
        return p.to(x.dtype), p > 0, active

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: tuple[Tensor, ...]) -> None:
        _, support, active = output
        ctx.mark_non_differentiable(support, active)
        ctx.save_for_backward(support, active)
        ctx.dim = inputs[2]

    @staticmethod
    def backward(ctx: Any, g: Tensor, *_: Any) -> tuple[Tensor | None, None, None]:
        support, active = ctx.saved_tensors
        sf = support.to(g.dtype)
        n = sf.sum(ctx.dim, keepdim=True).clamp(min=1)
        mean = (g * sf).sum(ctx.dim, keepdim=True) / n
        return (g - active.to(g.dtype) * mean) * sf, None, None


def _subsimplex(
    x: Tensor, mask: Tensor, dim: int, *, inplace: bool = False, finite: bool | None = None
) -> tuple[Tensor, Tensor]:
    """The projection onto ``{p >= 0, sum(p) <= 1}`` in at least float32 (0 off ``mask``) and
    whether the sum constraint is active (``[..., 1, ...]`` along ``dim``). ``inplace``: the
    result may be ``x`` itself, overwritten; ``finite``: whether every entry of ``x`` is known
    to be finite (see :func:`~spigot._masking.zero_outside`).

    ``lam = 0`` satisfies the KKT conditions exactly when the positive part ``max(x, 0)`` sums
    to at most 1 (the simplex threshold ``tau`` is positive exactly when it sums to more), so
    only the other slices need a threshold: after a SPIGOT step from a labeled graph they are
    the few arcs that are on, of the ``n^2``. For those, ``tau > 0``: the support is among the
    positive entries and ``max(x - tau, 0) = max(max(x, 0) - tau, 0)``, so the positive part
    is all they need. :func:`_positive_threshold` finds ``tau`` after shifting each slice by its
    largest entry ``top``: a common offset never enters the sums.
    """
    work = torch.promote_types(x.dtype, torch.float32)
    xw = x.to(work)
    pos = xw.clamp_(min=0) if (inplace or xw is not x) else xw.clamp(min=0)
    pos = zero_outside_(pos, mask, finite=finite)  # clamping keeps finite entries finite
    active = pos.sum(dim, keepdim=True) > 1
    rows = active.movedim(dim, -1).squeeze(-1)  # [...] without dim
    if not bool(rows.any()):
        return pos, active
    xr = pos.movedim(dim, -1)[rows]  # [R, L], 0 off the mask
    top = xr.amax(-1, keepdim=True)  # positive: the slice's positive part sums to more than 1
    xs = xr - top
    tau = _positive_threshold(xs, xr > 0)
    pos.movedim(dim, -1)[rows] = (xs - tau).clamp_(min=0)  # ours; 0 off the mask, as x - tau < 0
    return pos, active


def _positive_threshold(xs: Tensor, start: Tensor) -> Tensor:
    """The simplex threshold ``tau`` of each row of ``xs`` ``[R, L]`` (``[R, 1]``), for rows
    whose true threshold is above the value that ``start`` (a superset of the support, e.g. the
    entries above 0 when ``tau > 0``) cuts at.

    Michelot's algorithm (1986): with ``S`` a superset of the support,
    ``tau_S = (sum_S x - 1) / |S|`` is at most the true ``tau``, so ``{x > tau_S}`` still
    holds the support; shrink ``S`` to it until it stops changing, which gives the support and
    ``tau`` exactly, in at most ``|start|`` rounds (a few when the rows are near a vertex, as
    after a SPIGOT step) and without the sort of :func:`_simplex_support`. The largest entry
    never leaves ``S`` (``tau_S <= max - 1/|S|``).
    """
    S = start
    while True:
        sf = S.to(xs.dtype)
        tau = ((xs * sf).sum(-1, keepdim=True) - 1) / sf.sum(-1, keepdim=True)
        shrunk = S & (xs > tau)
        if torch.equal(shrunk, S):
            return tau
        S = shrunk


def project_subsimplex(x: Tensor, mask: Tensor | None = None, dim: int = -1) -> Tensor:
    """Project each slice of ``x`` along ``dim`` onto ``{p >= 0, sum(p) <= 1}`` over its valid
    entries (the simplex with slack, or the convex hull of 0 and the unit vectors).

        p = argmin_{p >= 0, sum(p) <= 1} ||p - x||^2 = max(x - max(tau, 0), 0)

    with ``tau`` the simplex threshold: ``max(x, 0)`` when that sums to at most 1, the simplex
    projection otherwise (see :class:`SubsimplexProjection`). For a labeled graph this is the
    exact projection onto one arc's polytope ``{0 <= z_a <= 1, z_{a,l} >= 0,
    sum_l z_{a,l} = z_a}``.

    Args:
        x: any shape, floating point.
        mask: boolean, broadcastable to ``x``; ``None`` means all entries are valid.
        dim: the dimension that sums to at most one.

    Returns:
        Same shape, dtype and device as ``x``; zero where ``mask`` is false and on slices with
        no valid entry. Differentiable (closed-form backward). Computed in at least float32,
        with the simplex threshold found after shifting each slice by its maximum, so that a
        common offset never enters the cumulative sums (``[2e7, 2e7 + 2]`` gives ``[0, 1]``).

    Raises:
        ValueError: NaN or inf on an entry that ``mask`` marks valid.
    """
    if mask is None:
        mask = torch.ones_like(x, dtype=torch.bool)
    else:
        mask = mask.expand_as(x)
    dim = dim % x.dim()
    finite = check_finite(x, mask, "x")
    if not (x.requires_grad and torch.is_grad_enabled()):  # e.g. in SPIGOT's backward
        return _subsimplex(x, mask, dim, finite=finite)[0].to(x.dtype)
    return SubsimplexProjection.apply(x, mask, dim)[0]


def project_subsimplex_(x: Tensor, mask: Tensor, dim: int = -1) -> Tensor:
    """:func:`project_subsimplex` without a gradient, overwriting ``x`` when it is at least
    float32 (the result is then ``x``): for a caller that owns ``x``, such as SPIGOT's
    backward. Validated alike."""
    mask = mask.expand_as(x)
    finite = check_finite(x, mask, "x")
    return _subsimplex(x, mask, dim % x.dim(), inplace=True, finite=finite)[0].to(x.dtype)
