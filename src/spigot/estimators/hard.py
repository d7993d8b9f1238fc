"""The hard estimators: forward ``z = argmax_{z in Z} s · z``, and what their backward returns.

* ``pipeline``: nothing (no gradient reaches the scores);
* ``ste``: ``g = dL/dz`` itself (straight-through);
* ``spigot``: ``z - proj_P(z - eta * g)`` (Peng, Thomson & Smith 2018).

See :mod:`spigot.estimators` for the table of all estimators and the step-size rule.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from spigot._masking import masked_norm
from spigot.structures.base import Structure


def spigot_step_size(
    g: Tensor, event_dim: int, mask: Tensor | None = None, max_step: float = 1.0
) -> Tensor:
    """``eta = min(1, max_step / ||g||_2)`` per structure (over the last ``event_dim``
    dimensions): the step ``eta g`` is ``g`` itself, shortened to length ``max_step`` when it
    is longer. The original code used ``max_step = 1`` in its syntactic-then-semantic pipeline
    and ``5/32`` in its semantic-then-sentiment one.

    A structure with ``g = 0`` gets ``eta = 1`` (its update is zero anyway). Entries outside
    ``mask`` do not count. Returns a tensor broadcastable to ``g``.
    """
    dims = tuple(range(-event_dim, 0))
    one = torch.ones((), dtype=g.dtype, device=g.device)
    norm = masked_norm(g, mask, dims)
    if not bool(torch.isfinite(norm).all()):
        # the squares overflowed (or g is not finite): ||g|| = a ||g / a|| with a = max |g|
        if mask is not None:
            g = torch.where(mask, g, 0)
        a = g.abs().amax(dim=dims, keepdim=True)
        a = torch.where(a > 0, a, one)
        norm = a * (g / a).pow(2).sum(dim=dims, keepdim=True).sqrt()
    long = norm > max_step
    return torch.where(long, max_step / torch.where(long, norm, one), one)


class _HardArgmax(torch.autograd.Function):
    """Forward of every hard estimator: ``z = argmax_{z in Z} s · z`` (subclasses: backward)."""

    @staticmethod
    def forward(scores: Tensor, structure: Structure, prepared: Any) -> Tensor:  # type: ignore[override]
        return structure._argmax(scores.detach(), prepared)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
        pass


class _PipelineArgmax(_HardArgmax):
    """Forward: ``z = argmax_{z in Z} s · z``. Backward: no gradient to ``s`` (a pipeline)."""

    @staticmethod
    def backward(ctx: Any, g: Tensor) -> tuple[None, None, None]:
        return None, None, None


class _STEArgmax(torch.autograd.Function):
    """Forward: ``z = argmax_{z in Z} s · z``. Backward: ``dL/ds := gamma * dL/dz``.

    Straight-through (Bengio et al. 2013); ``gamma != 1`` is the scaled identity (STE-I).
    """

    @staticmethod
    def forward(  # type: ignore[override]
        scores: Tensor, structure: Structure, prepared: Any, gamma: float
    ) -> Tensor:
        return structure._argmax(scores.detach(), prepared)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
        ctx.gamma = inputs[3]

    @staticmethod
    def backward(ctx: Any, g: Tensor) -> tuple[Tensor, None, None, None]:
        return (g if ctx.gamma == 1.0 else ctx.gamma * g), None, None, None


class _SpigotArgmax(torch.autograd.Function):
    """SPIGOT (Peng, Thomson & Smith 2018).

    Forward: ``z = argmax_{z in Z} s · z``. Backward, given ``g = dL/dz``: take the step
    ``p = z - eta * g`` and project it onto the polytope ``P``,
    ``proj_P(p) = argmin_{q in P} ||q - p||^2``; return ``dL/ds := z - proj_P(p)``.
    With a step that stays inside ``P`` this is ``eta * g``; ``g = 0`` gives 0.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        scores: Tensor,
        structure: Structure,
        prepared: Any,
        eta: float | None,
        scale: float,
        polytope: str = "relaxed",
        max_step: float = 1.0,
    ) -> Tensor:
        return structure._argmax(scores.detach(), prepared)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
        _, structure, prepared, eta, scale, *rest = inputs
        ctx.polytope = rest[0] if rest else "relaxed"
        ctx.max_step = rest[1] if len(rest) > 1 else 1.0
        ctx.save_for_backward(output)
        ctx.structure = structure
        ctx.prepared = prepared
        ctx.eta = eta
        ctx.scale = scale

    @staticmethod
    def backward(ctx: Any, g: Tensor) -> tuple[Tensor | None, ...]:
        (z,) = ctx.saved_tensors
        structure: Structure = ctx.structure
        mask = structure._part_mask(ctx.prepared)
        # the step, its size and the projection in at least float32: in float16 ||g||^2
        # overflows once ||g|| > 256, and a loss scale pushes g further out of range
        work = torch.promote_types(g.dtype, torch.float32)
        g = g.to(work)
        if ctx.scale != 1.0:  # SPIGOT on the gradient of the summed loss (module doc)
            g = g * ctx.scale
        if ctx.eta is None:
            eta: Tensor | float = spigot_step_size(g, structure.event_dim, mask, ctx.max_step)
        else:
            eta = ctx.eta
        with torch.no_grad():
            zw = z.to(work)
            p = torch.mul(g, -eta).add_(zw)  # z - eta g, in one new tensor
            if ctx.polytope == "marginal":  # conv(Z) itself (Mihaylova et al. 2020)
                proj = structure._project_marginal(p, ctx.prepared)
            else:  # the paper's relaxation (p is ours: it may be overwritten)
                proj = structure._project_(p, ctx.prepared)
            grad = proj.neg_().add_(zw) if proj is p else torch.sub(zw, proj)
            if ctx.scale != 1.0:
                grad = grad / ctx.scale
        return grad.to(z.dtype), None, None, None, None, None, None
