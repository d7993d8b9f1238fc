"""Estimators built from extra argmax calls at perturbed or shifted scores.

With ``z(s) = argmax_{z in Z} s · z`` and ``g = dL/dz``:

* ``perturbed`` (Berthet et al. 2020, *Learning with Differentiable Perturbed Optimizers*):
  forward ``y = (1/K) sum_k z(s + sigma eps_k)``, a Monte-Carlo estimate of
  ``E[z(s + sigma eps)]``; backward the perturbation estimator of its Jacobian,
  ``(1/(K sigma)) sum_k (z(s + sigma eps_k) · g) grad_nu(eps_k)`` with ``nu = -log density``:
  ``grad_nu(eps) = eps`` for Normal noise, ``1 - exp(-eps)`` for Gumbel noise.
  :func:`perturbed_fenchel_young_loss` is the matching loss against a target structure.
* ``imle`` (Niepert, Minervini & Franceschi 2021, *Implicit MLE*): forward
  ``z(s + eps)`` (averaged over ``K`` samples) with Sum-of-Gamma noise ``eps``; backward
  ``z(s + eps) - z(s - lam g + eps)``, the difference between the model's perturb-and-MAP
  state and that of the target distribution ``s' = s - lam g`` (the paper's Algorithm: not
  divided by ``lam``, so it vanishes as ``lam -> 0``).
* ``blackbox`` (Vlastelica et al. 2020, *Differentiation of Blackbox Combinatorial Solvers*):
  forward ``z(s)``; backward ``(z(s) - z(s - lam g)) / lam``: their ``-(y(w) - y(w + lam
  dL/dy)) / lam`` for a minimiser ``w = -s``, written for our maximisation.

Randomness: every option set takes a ``generator`` (a ``torch.Generator`` on the scores'
device); without one, torch's global generator is used, so ``torch.manual_seed`` reproduces
a run.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from spigot.structures.base import Structure


def _gamma(
    alpha: float, shape: tuple[int, ...], gen: torch.Generator | None, like: Tensor
) -> Tensor:
    """Gamma(``alpha``, rate 1) samples from ``gen``: Marsaglia & Tsang (2000), with the
    ``U^(1/alpha)`` boost for ``alpha < 1`` (torch's own Gamma sampler takes no generator)."""
    dt, dev = like.dtype, like.device
    if float(alpha).is_integer() and alpha <= 8:  # a sum of alpha exponentials: exact and fast
        u = torch.rand((int(alpha), *shape), generator=gen, dtype=dt, device=dev)
        return -torch.log(u.clamp(min=torch.finfo(dt).tiny)).sum(0)
    a = alpha + 1.0 if alpha < 1.0 else alpha
    d = a - 1.0 / 3.0
    c = 1.0 / math.sqrt(9.0 * d)
    out = torch.empty(shape, dtype=dt, device=dev)
    todo = torch.ones(shape, dtype=torch.bool, device=dev)
    while bool(todo.any()):
        x = torch.randn(shape, generator=gen, dtype=dt, device=dev)
        v = (1.0 + c * x) ** 3
        u = torch.rand(shape, generator=gen, dtype=dt, device=dev)
        log_v = torch.log(torch.where(v > 0, v, 1.0))
        ok = (v > 0) & (torch.log(u) < 0.5 * x * x + d - d * v + d * log_v)
        take = todo & ok
        out = torch.where(take, d * v, out)
        todo = todo & ~ok
    if alpha < 1.0:
        u = torch.rand(shape, generator=gen, dtype=dt, device=dev)
        out = out * u ** (1.0 / alpha)
    return out


def _noise(
    kind: str, shape: tuple[int, ...], like: Tensor, generator: torch.Generator | None, k: float
) -> Tensor:
    """``shape`` noise (dtype at least float32, on the scores' device): ``"normal"``,
    ``"gumbel"``, or ``"sog"``, Sum-of-Gamma with 10 terms (Niepert et al. 2021, eq. 13):
    ``(sum_{i=1}^{10} Gamma(1/k, rate i/k) - log 10) / k``."""
    ref = torch.empty((), dtype=torch.promote_types(like.dtype, torch.float32), device=like.device)
    if kind == "normal":
        return torch.randn(shape, generator=generator, dtype=ref.dtype, device=ref.device)
    if kind == "gumbel":
        u = torch.rand(shape, generator=generator, dtype=ref.dtype, device=ref.device)
        tiny = torch.finfo(ref.dtype).tiny
        return -torch.log((-torch.log(u.clamp(min=tiny))).clamp(min=tiny))
    total = sum(_gamma(1.0 / k, shape, generator, ref) * (k / i) for i in range(1, 11))
    return (total - math.log(10.0)) / k


def _argmax_each(structure: Structure, s: Tensor, prepared: Any, eps: Tensor) -> Tensor:
    """``[K, *s.shape]``: the argmax at ``s + eps[k]`` for every ``k``, as one batched call."""
    K = eps.shape[0]
    scores = s.unsqueeze(0) + eps.to(s.dtype)
    if structure.event_dim == 1 and prepared is None:
        return structure._argmax(scores, prepared)
    lens, mask = prepared
    flat = scores.reshape(-1, *scores.shape[2:])
    rep = (lens.repeat(K), mask.repeat(K, *([1] * (mask.dim() - 1))))
    return structure._argmax(flat, rep).view_as(scores)


def _masked(structure: Structure, prepared: Any, x: Tensor) -> Tensor:
    mask = structure._part_mask(prepared)
    return x if mask is None else torch.where(mask, x, 0)


class _Perturbed(torch.autograd.Function):
    """Forward ``mean_k z(s + sigma eps_k)``; backward
    ``mean_k (z_k · g) grad_nu(eps_k) / sigma``."""

    @staticmethod
    def forward(  # type: ignore[override]
        scores: Tensor,
        structure: Structure,
        prepared: Any,
        K: int,
        sigma: float,
        noise: str,
        generator: torch.Generator | None,
    ) -> Any:
        s = scores.detach()
        eps = _masked(structure, prepared, _noise(noise, (K, *s.shape), s, generator, 1.0))
        zs = _argmax_each(structure, s, prepared, sigma * eps)
        return zs.mean(0), zs, eps

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Any) -> None:
        _, zs, eps = output
        ctx.mark_non_differentiable(zs, eps)
        ctx.save_for_backward(zs, eps)
        ctx.structure, ctx.prepared, ctx.sigma, ctx.noise = (
            inputs[1],
            inputs[2],
            inputs[4],
            inputs[5],
        )

    @staticmethod
    def backward(ctx: Any, g: Tensor, _gz: Any, _ge: Any) -> tuple[Any, ...]:
        zs, eps = ctx.saved_tensors
        st: Structure = ctx.structure
        dims = tuple(range(-st.event_dim, 0))
        grad_nu = eps if ctx.noise == "normal" else 1.0 - torch.exp(-eps)
        dot = (zs * g.unsqueeze(0)).sum(dims, keepdim=True).to(eps.dtype)
        grad = (dot * grad_nu).mean(0) / ctx.sigma
        return _masked(st, ctx.prepared, grad).to(g.dtype), None, None, None, None, None, None


class _IMLE(torch.autograd.Function):
    """Forward ``mean_k z(s + eps_k)``; backward ``mean_k z(s + eps_k) - z(s - lam g + eps_k)``."""

    @staticmethod
    def forward(  # type: ignore[override]
        scores: Tensor,
        structure: Structure,
        prepared: Any,
        K: int,
        lam: float,
        tau: float,
        k: float,
        generator: torch.Generator | None,
    ) -> Any:
        s = scores.detach()
        eps = _masked(structure, prepared, tau * _noise("sog", (K, *s.shape), s, generator, k))
        zs = _argmax_each(structure, s, prepared, eps)
        return zs.mean(0), zs, eps

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Any) -> None:
        _, zs, eps = output
        ctx.mark_non_differentiable(zs, eps)
        ctx.save_for_backward(inputs[0], zs, eps)
        ctx.structure, ctx.prepared, ctx.lam = inputs[1], inputs[2], inputs[4]

    @staticmethod
    def backward(ctx: Any, g: Tensor, _gz: Any, _ge: Any) -> tuple[Any, ...]:
        scores, zs, eps = ctx.saved_tensors
        st: Structure = ctx.structure
        with torch.no_grad():
            target = _masked(st, ctx.prepared, scores.detach() - ctx.lam * g)
            zt = _argmax_each(st, target, ctx.prepared, eps)
            grad = (zs - zt).mean(0)
        return grad, None, None, None, None, None, None, None


class _Blackbox(torch.autograd.Function):
    """Forward ``z(s)``; backward ``(z(s) - z(s - lam g)) / lam``."""

    @staticmethod
    def forward(scores: Tensor, structure: Structure, prepared: Any, lam: float) -> Tensor:  # type: ignore[override]
        return structure._argmax(scores.detach(), prepared)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
        ctx.save_for_backward(inputs[0], output)
        ctx.structure, ctx.prepared, ctx.lam = inputs[1], inputs[2], inputs[3]

    @staticmethod
    def backward(ctx: Any, g: Tensor) -> tuple[Tensor, None, None, None]:
        scores, z = ctx.saved_tensors
        st: Structure = ctx.structure
        with torch.no_grad():
            shifted = _masked(st, ctx.prepared, scores.detach() - ctx.lam * g)
            grad = (z - st._argmax(shifted, ctx.prepared)) / ctx.lam
        return grad, None, None, None


def perturbed(
    s: Tensor,
    structure: Structure,
    prepared: Any,
    *,
    samples: int,
    sigma: float,
    noise: str,
    generator: torch.Generator | None,
) -> Tensor:
    """Registered as ``"perturbed"``."""
    return _Perturbed.apply(s, structure, prepared, samples, sigma, noise, generator)[0]


def imle(
    s: Tensor,
    structure: Structure,
    prepared: Any,
    *,
    samples: int,
    lam: float,
    tau: float,
    k: float,
    generator: torch.Generator | None,
) -> Tensor:
    """Registered as ``"imle"``."""
    return _IMLE.apply(s, structure, prepared, samples, lam, tau, k, generator)[0]


def blackbox(s: Tensor, structure: Structure, prepared: Any, *, lam: float) -> Tensor:
    """Registered as ``"blackbox"``."""
    return _Blackbox.apply(s, structure, prepared, lam)


class _PerturbedFY(torch.autograd.Function):
    """Perturbed Fenchel-Young loss: value ``mean_k (s + sigma eps_k) · z_k - s · y``,
    gradient ``mean_k z_k - y`` (Berthet et al. 2020, section 4)."""

    @staticmethod
    def forward(  # type: ignore[override]
        scores: Tensor,
        target: Tensor,
        structure: Structure,
        prepared: Any,
        K: int,
        sigma: float,
        noise: str,
        generator: torch.Generator | None,
    ) -> Any:
        s = scores.detach()
        eps = _masked(structure, prepared, _noise(noise, (K, *s.shape), s, generator, 1.0))
        shift = sigma * eps.to(s.dtype)
        zs = _argmax_each(structure, s, prepared, shift)
        dims = tuple(range(-structure.event_dim, 0))
        value = ((s + shift) * zs).sum(dims).mean(0) - (s * target).sum(dims)
        return value, zs.mean(0) - target

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Any) -> None:
        _, grad = output
        ctx.mark_non_differentiable(grad)
        ctx.save_for_backward(grad)
        ctx.event_dim = inputs[2].event_dim

    @staticmethod
    def backward(ctx: Any, g: Tensor, _gg: Any) -> tuple[Any, ...]:
        (grad,) = ctx.saved_tensors
        g = g.reshape(*g.shape, *([1] * ctx.event_dim))
        return g * grad, None, None, None, None, None, None, None


def perturbed_fenchel_young_loss(
    scores: Tensor,
    target: Tensor,
    structure: Structure,
    lengths: Tensor | None = None,
    *,
    samples: int = 10,
    sigma: float = 1.0,
    noise: str = "gumbel",
    generator: torch.Generator | None = None,
) -> Tensor:
    """The perturbed Fenchel-Young loss of ``scores`` against a target structure ``target``.

    ``L(s; y) = E[max_z (s + sigma eps) · z] - s · y`` (Berthet et al. 2020), estimated with
    ``samples`` perturbations; its gradient is ``E[z(s + sigma eps)] - y``, the perturbed
    argmax's distance to the target: supervised learning of the scores with the same
    perturbations the ``"perturbed"`` estimator uses.

    Args:
        scores: like :func:`spigot.structured_argmax`'s; target: a structure of the same shape.

    Returns:
        One loss per structure (``[B]`` for trees and graphs, ``scores.shape[:-1]`` for
        :class:`~spigot.Categorical`).
    """
    from spigot.estimators import _choice, check_count, check_generator, check_positive

    samples = check_count("samples", samples)
    sigma = check_positive("sigma", sigma)
    noise = _choice("gumbel", "normal")("noise", noise)
    generator = check_generator("generator", generator)
    s, prepared = structure._prepare(scores, lengths)
    if not isinstance(target, Tensor) or target.shape != s.shape:
        raise ValueError(f"`target` must be a tensor of the scores' shape {tuple(s.shape)}")
    y = _masked(structure, prepared, target.detach().to(s.dtype))
    return _PerturbedFY.apply(s, y, structure, prepared, samples, sigma, noise, generator)[0]
