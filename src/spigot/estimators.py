"""What the backward pass of a hard structured decision returns.

Forward of every hard estimator: ``z = argmax_{z in Z} scores · z``. Given ``g = dL/dz``:

============  =====================================  ==============================================
estimator     forward returns                        backward returns ``dL/dscores``
============  =====================================  ==============================================
pipeline      ``z`` (argmax)                         nothing (no gradient reaches the scores)
ste           ``z`` (argmax)                         ``g`` unchanged (straight-through)*
spigot        ``z`` (argmax)                         ``z - proj_P(z - eta * g)``
marginals     ``mu`` (marginals)                     ``(d mu / d scores)^T g`` (exact)
============  =====================================  ==============================================

(*) Every estimator's gradient is exactly 0 on the parts no structure can contain (for trees and
graphs: the diagonal, column 0 and padding), because the structures hand the estimators
``where(mask, scores, 0)``.

``P`` is the structure's polytope (its :meth:`~spigot.structures.Structure.project`); ``eta``
is a float, or ``None`` for the rule of the original code, ``eta = min(1, 1 / ||g||_2)`` with
the norm taken per structure (per sentence), over the parts a structure may contain.

The rule is not invariant to the scale of the loss. The original code trained on each
sentence's summed loss; a loss averaged over the words of a batch gives a gradient ``c`` times
smaller (``c`` = words in the batch), for which ``eta`` is almost always 1: the rule never
shortens the step. ``loss_scale = c`` applies SPIGOT to the gradient of the summed loss and
scales the result back: ``dL/ds := (z - proj_P(z - eta * c g)) / c`` with
``eta = min(1, 1 / ||c g||)``.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import torch
from torch import Tensor, nn

from spigot.structures.base import Structure

ESTIMATORS = ("pipeline", "ste", "spigot", "marginals")


def spigot_step_size(g: Tensor, event_dim: int, mask: Tensor | None = None) -> Tensor:
    """``eta = min(1, 1 / ||g||_2)`` per structure (over the last ``event_dim`` dimensions).

    A structure with ``g = 0`` gets ``eta = 1`` (its update is zero anyway). Entries outside
    ``mask`` do not count. Returns a tensor broadcastable to ``g``.
    """
    if mask is not None:
        g = torch.where(mask, g, 0)
    dims = tuple(range(-event_dim, 0))
    one = torch.ones((), dtype=g.dtype, device=g.device)
    # ||g|| = a ||g / a|| with a = max |g|: no overflow of the squares in any dtype
    a = g.abs().amax(dim=dims, keepdim=True)
    a = torch.where(a > 0, a, one)
    norm = a * (g / a).pow(2).sum(dim=dims, keepdim=True).sqrt()
    return torch.where(norm > 1, 1 / torch.where(norm > 1, norm, one), one)


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


class _STEArgmax(_HardArgmax):
    """Forward: ``z = argmax_{z in Z} s · z``. Backward: ``dL/ds := dL/dz`` (straight-through)."""

    @staticmethod
    def backward(ctx: Any, g: Tensor) -> tuple[Tensor, None, None]:
        return g, None, None


class _SpigotArgmax(torch.autograd.Function):
    """SPIGOT (Peng, Thomson & Smith 2018).

    Forward: ``z = argmax_{z in Z} s · z``. Backward, given ``g = dL/dz``: take the step
    ``p = z - eta * g`` and project it onto the polytope ``P``,
    ``proj_P(p) = argmin_{q in P} ||q - p||^2``; return ``dL/ds := z - proj_P(p)``.
    With a step that stays inside ``P`` this is ``eta * g``; ``g = 0`` gives 0.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        scores: Tensor, structure: Structure, prepared: Any, eta: float | None, scale: float
    ) -> Tensor:
        return structure._argmax(scores.detach(), prepared)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
        _, structure, prepared, eta, scale = inputs
        ctx.save_for_backward(output)
        ctx.structure = structure
        ctx.prepared = prepared
        ctx.eta = eta
        ctx.scale = scale

    @staticmethod
    def backward(ctx: Any, g: Tensor) -> tuple[Tensor, None, None, None, None]:
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
            eta: Tensor | float = spigot_step_size(g, structure.event_dim, mask)
        else:
            eta = ctx.eta
        with torch.no_grad():
            zw = z.to(work)
            p = zw - eta * g
            grad = zw - structure._project(p, ctx.prepared)
            if ctx.scale != 1.0:
                grad = grad / ctx.scale
        return grad.to(z.dtype), None, None, None, None


class _Marginals(torch.autograd.Function):
    """Structured attention: ``mu = E_{p(z) ∝ exp(s · z)}[z] = d log Z / d s``.

    Backward: the exact vector-Jacobian product ``(d mu / d s)^T g`` (the Hessian of ``log Z``
    times ``g``), from each structure's ``_marginals_vjp``.
    """

    @staticmethod
    def forward(scores: Tensor, structure: Structure, prepared: Any) -> Tensor:  # type: ignore[override]
        return structure._marginals(scores.detach(), prepared)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
        scores, structure, prepared = inputs
        ctx.save_for_backward(scores)
        ctx.structure = structure
        ctx.prepared = prepared

    @staticmethod
    def backward(ctx: Any, g: Tensor) -> tuple[Tensor, None, None]:
        # differentiable itself: under create_graph every structure's VJP records its graph
        (scores,) = ctx.saved_tensors
        return ctx.structure._marginals_vjp(scores, ctx.prepared, g), None, None


def _real(x: object) -> float | None:
    """``x`` as a float if it is a real number (Python, NumPy or a one-element tensor)."""
    if isinstance(x, Tensor) and x.numel() == 1 and not x.dtype.is_complex:
        x = x.item()
    if isinstance(x, bool) or not isinstance(x, numbers.Real):
        return None
    return float(x)


def _check_eta(eta: object) -> float | None:
    if eta is None:
        return None
    value = _real(eta)
    if value is None:
        raise ValueError(f"`eta` must be None or a positive float, got {eta!r}")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"`eta` must be None or a positive finite float, got {eta!r}")
    return value


def _check_loss_scale(scale: object) -> float:
    value = _real(scale)
    if value is None:
        raise ValueError(f"`loss_scale` must be a positive float, got {scale!r}")
    scale = value
    if not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"`loss_scale` must be a positive finite float, got {scale!r}")
    return float(scale)


def _check_estimator(estimator: object) -> str:
    if estimator not in ESTIMATORS:
        raise ValueError(f"`estimator` must be one of {', '.join(ESTIMATORS)}; got {estimator!r}")
    return str(estimator)


def structured_argmax(
    scores: Tensor,
    structure: Structure,
    *,
    estimator: str = "spigot",
    lengths: Tensor | None = None,
    eta: float | None = None,
    loss_scale: float = 1.0,
) -> Tensor:
    """A hard structured decision that gradients can pass through.

    Args:
        scores: part scores; ``[B, n+1, n+1]`` for trees and graphs (``scores[b, h, m]`` is the
            arc ``h -> m``, node 0 the root), ``[..., K]`` for :class:`~spigot.Categorical`.
        structure: a :class:`~spigot.structures.Structure`, e.g. ``DependencyTree()``.
        estimator: ``"spigot"`` (default), ``"ste"``, ``"pipeline"`` or ``"marginals"``; see the
            table in :mod:`spigot.estimators`.
        lengths: ``[B]`` number of words per sentence (trees and graphs); ``None`` = all ``n``.
        eta: SPIGOT step size; ``None`` uses ``min(1, 1/||dL/dz||)`` per structure.
        loss_scale: SPIGOT only: ``c`` when the loss is a sum divided by ``c`` (e.g. a mean
            over the ``c`` words of a batch). The step and its size are computed for ``c g``,
            the gradient of the summed loss as in the original code, and the result is
            divided by ``c`` (see the module doc). ``1`` = the gradient as it arrives.

    Returns:
        ``z`` with the scores' shape, dtype and device: the argmax (0/1) for the hard
        estimators, the marginals for ``"marginals"``.
    """
    estimator = _check_estimator(estimator)
    eta = _check_eta(eta)
    if not isinstance(structure, Structure):
        raise ValueError(
            f"`structure` must be a spigot Structure (e.g. spigot.DependencyTree()), "
            f"got {type(structure).__name__}"
        )
    if eta is not None and estimator != "spigot":
        raise ValueError(f"`eta` only applies to estimator='spigot', not {estimator!r}")
    scale = _check_loss_scale(loss_scale)
    if scale != 1.0 and estimator != "spigot":
        raise ValueError(f"`loss_scale` only applies to estimator='spigot', not {estimator!r}")
    s, prepared = structure._prepare(scores, lengths)
    if estimator == "pipeline":
        return _PipelineArgmax.apply(s, structure, prepared)
    if estimator == "ste":
        return _STEArgmax.apply(s, structure, prepared)
    if estimator == "spigot":
        return _SpigotArgmax.apply(s, structure, prepared, eta, scale)
    return _Marginals.apply(s, structure, prepared)


class StructuredArgmax(nn.Module):
    """Module form of :func:`structured_argmax`: ``z = layer(scores, lengths)``.

    Example::

        layer = spigot.StructuredArgmax(spigot.DependencyTree(), estimator="spigot")
        z = layer(scores, lengths)   # [B, n+1, n+1] 0/1 tree; backward by SPIGOT
    """

    def __init__(
        self, structure: Structure, estimator: str = "spigot", eta: float | None = None
    ) -> None:
        super().__init__()
        if not isinstance(structure, Structure):
            raise ValueError(
                f"`structure` must be a spigot Structure, got {type(structure).__name__}"
            )
        self.structure = structure
        self.estimator = _check_estimator(estimator)
        self.eta = _check_eta(eta)
        if self.eta is not None and self.estimator != "spigot":
            raise ValueError(f"`eta` only applies to estimator='spigot', not {estimator!r}")

    def forward(self, scores: Tensor, lengths: Tensor | None = None) -> Tensor:
        return structured_argmax(
            scores, self.structure, estimator=self.estimator, lengths=lengths, eta=self.eta
        )

    def extra_repr(self) -> str:
        return f"structure={self.structure!r}, estimator={self.estimator!r}, eta={self.eta}"
