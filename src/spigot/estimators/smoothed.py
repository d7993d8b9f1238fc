"""Estimators whose backward goes through the marginals ``mu(s)`` (Mihaylova et al. 2020).

Forward of each: the argmax ``z``. Given ``g = dL/dz``, ``gamma`` a step:

* ``ste-marginals`` (STE-S): ``(d mu / d s)^T g``, the marginals' exact Jacobian (as if the
  forward had returned the marginals, "straight-through structured attention");
* ``spigot-ce``: ``mu(s) - proj_P(mu(s) - gamma g)``, SPIGOT's step taken from the marginals
  instead of the argmax (its fixed point is a cross-entropy-like loss);
* ``spigot-eg``: ``mu(s) - mu(s - gamma g)``, the exponentiated-gradient step: the marginals at
  scores shifted against the gradient.

Mihaylova, Niculae & Martins (2020), *Understanding the Mechanics of SPIGOT: Surrogate
Gradients for Latent Structure Learning*, EMNLP.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from spigot.structures.base import Structure


class _STEMarginals(torch.autograd.Function):
    """Forward ``z = argmax s · z``; backward ``(d mu / d s)^T g`` (STE-S)."""

    @staticmethod
    def forward(scores: Tensor, structure: Structure, prepared: Any) -> Tensor:  # type: ignore[override]
        return structure._argmax(scores.detach(), prepared)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
        ctx.save_for_backward(inputs[0])
        ctx.structure, ctx.prepared = inputs[1], inputs[2]

    @staticmethod
    def backward(ctx: Any, g: Tensor) -> tuple[Tensor, None, None]:
        (scores,) = ctx.saved_tensors
        with torch.no_grad():
            return ctx.structure._marginals_vjp(scores.detach(), ctx.prepared, g), None, None


class _SpigotMarginals(torch.autograd.Function):
    """Forward ``z = argmax s · z``; backward ``mu(s) - proj_P(mu(s) - gamma g)`` (``"ce"``) or
    ``mu(s) - mu(s - gamma g)`` (``"eg"``)."""

    @staticmethod
    def forward(  # type: ignore[override]
        scores: Tensor, structure: Structure, prepared: Any, gamma: float, kind: str
    ) -> Tensor:
        return structure._argmax(scores.detach(), prepared)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
        ctx.save_for_backward(inputs[0])
        ctx.structure, ctx.prepared, ctx.gamma, ctx.kind = inputs[1:]

    @staticmethod
    def backward(ctx: Any, g: Tensor) -> tuple[Tensor, None, None, None, None]:
        (scores,) = ctx.saved_tensors
        st: Structure = ctx.structure
        with torch.no_grad():
            s = scores.detach()
            mu = st._marginals(s, ctx.prepared)
            if ctx.kind == "ce":
                work = torch.promote_types(g.dtype, torch.float32)
                step = mu.to(work) - ctx.gamma * g.to(work)
                grad = (mu.to(work) - st._project(step, ctx.prepared)).to(s.dtype)
            else:
                mask = st._part_mask(ctx.prepared)
                shifted = (
                    s - ctx.gamma * g if mask is None else torch.where(mask, s - ctx.gamma * g, 0)
                )
                grad = mu - st._marginals(shifted, ctx.prepared)
        return grad, None, None, None, None


def ste_marginals(s: Tensor, structure: Structure, prepared: Any) -> Tensor:
    """Registered as ``"ste-marginals"``."""
    return _STEMarginals.apply(s, structure, prepared)


def spigot_ce(s: Tensor, structure: Structure, prepared: Any, *, gamma: float) -> Tensor:
    """Registered as ``"spigot-ce"``."""
    return _SpigotMarginals.apply(s, structure, prepared, gamma, "ce")


def spigot_eg(s: Tensor, structure: Structure, prepared: Any, *, gamma: float) -> Tensor:
    """Registered as ``"spigot-eg"``."""
    return _SpigotMarginals.apply(s, structure, prepared, gamma, "eg")
