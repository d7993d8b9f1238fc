"""How the semantic parser of pipeline 1 reads the syntactic tree, and how much gradient the
tree passes back.

* :class:`HeadFeatures`: ``sum_j z[j, i] W x_j`` for every word ``i``, the representation of
  its syntactic head under the (hard or relaxed) tree ``z``. With ``model.coupling =
  "semantic"`` (the default, as in the original SPIGOT code) ``x`` is the semantic parser's own
  encoder states and the result joins ``x_i`` at the input of its arc and label scorers, so
  the semantic loss reaches the syntactic parser only through ``z``. With ``"syntactic"`` ``x``
  is the syntactic encoder's states and the result joins the semantic encoder's input: the
  semantic loss then also reaches the syntactic encoder through ``W x``, whatever the
  estimator.
* :func:`scale_gradient`: the identity whose backward multiplies the gradient by ``gamma``;
  the step size of the straight-through estimator (``train.eta`` in mode ``ste``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["HeadFeatures", "scale_gradient", "with_loss_scale"]


class HeadFeatures(nn.Linear):
    """``W`` (no bias) and ``feats[b, i] = sum_j z[b, j, i] W x[b, j]``.

    A subclass of :class:`torch.nn.Linear` so that its only parameter stays ``weight``
    (checkpoints name it ``coupling.weight``).

    Args:
        in_dim: size of the states ``x``.
        out_dim: size of ``W x`` (``model.coupling_dim``).
    """

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__(in_dim, out_dim, bias=False)

    def forward(self, x: Tensor, z: Tensor) -> Tensor:  # type: ignore[override]
        """``x [B, n+1, in_dim]``, tree ``z [B, n+1, n+1]`` (``z[b, j, i]``: arc ``j -> i``)
        -> ``[B, n+1, out_dim]``; zero for the root and padding (their columns of ``z`` are
        zero)."""
        return torch.einsum("bjm,bjd->bmd", z, super().forward(x))


class _ScaleGradient(torch.autograd.Function):
    @staticmethod
    def forward(x: Tensor, gamma: float) -> Tensor:  # type: ignore[override]
        return x.clone()

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
        ctx.gamma = inputs[1]

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        return ctx.gamma * grad, None


def scale_gradient(x: Tensor, gamma: float) -> Tensor:
    """``x`` unchanged (bit for bit) in the forward pass; ``gamma * grad`` in the backward.

    Fed to the straight-through estimator (``structured_argmax(scale_gradient(s, gamma),
    estimator="ste")``) it gives ``dL/ds = gamma dL/dz``: the tree is the same, its gradient is
    ``gamma`` times smaller. ``gamma = 1`` returns ``x`` itself.
    """
    if gamma == 1.0:
        return x
    return _ScaleGradient.apply(x, float(gamma))


def with_loss_scale(decide: Callable[[Tensor], Tensor], s: Tensor, scale: float) -> Tensor:
    """``decide(s)`` whose backward sees ``scale * dL/dz`` and returns its result / ``scale``.

    The forward pass is ``decide(s)`` bit for bit. An estimator with a step option (``lam`` of
    ``blackbox`` and ``imle``, ``gamma`` of ``spigot-ce`` and ``spigot-eg``) is not invariant
    to the scale of the loss: given the gradient of a loss averaged over ``c`` words it takes
    a ``c`` times smaller step and may never change the structure. With ``scale = c`` it sees
    the gradient of each sentence's summed loss, as ``spigot``'s ``loss_scale`` does:
    ``dL/ds := B(c g) / c`` for the estimator's backward ``B``. Estimators whose backward is
    linear in ``g`` (``ste``, ``marginals``, ``ste-marginals``, ``perturbed``) are unchanged up
    to rounding.
    """
    if scale == 1.0:
        return decide(s)
    return scale_gradient(decide(scale_gradient(s, 1.0 / scale)), scale)
