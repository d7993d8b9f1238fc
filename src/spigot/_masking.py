"""Zeroing the entries outside a mask, fast and safe.

``torch.where(mask, x, 0)`` is what the structures mean, but on CPU it costs several times a
multiplication (about 0.8 ms against 0.15 ms for ``[32, 21, 21, 58]`` floats, one thread);
``x * mask`` alone would turn a NaN or an inf outside the mask into NaN, where the structures
promise that such entries are ignored. :func:`zero_outside` multiplies when every entry of
``x`` is finite and falls back to ``torch.where`` otherwise.
"""

from __future__ import annotations

import torch
from torch import Tensor

from spigot._validate import sum_is_finite


def compact(mask: Tensor) -> Tensor:
    """``mask`` without its expanded dimensions (stride 0, size > 1: kept as size 1), which
    broadcasts back to the same values; converting it to a float is then cheap."""
    for d, (size, stride) in enumerate(zip(mask.shape, mask.stride(), strict=True)):
        if stride == 0 and size > 1:
            mask = mask.narrow(d, 0, 1)
    return mask


def zero_outside(x: Tensor, mask: Tensor, *, finite: bool | None = None) -> Tensor:
    """``torch.where(mask, x, 0)`` for floating ``x`` and boolean ``mask`` broadcastable to it
    (a new tensor with the same values, ``-0.0`` aside). ``finite``: whether every entry of
    ``x`` is known to be finite (what :func:`~spigot._validate.check_finite` returned), which
    saves the test; None tests."""
    if sum_is_finite(x) if finite is None else finite:
        return x * compact(mask).to(x.dtype)
    return torch.where(mask, x, torch.zeros((), dtype=x.dtype, device=x.device))


def zero_outside_(x: Tensor, mask: Tensor, *, finite: bool | None = None) -> Tensor:
    """:func:`zero_outside` in place, for a tensor the caller owns; returns ``x``."""
    if sum_is_finite(x) if finite is None else finite:
        return x.mul_(compact(mask).to(x.dtype))
    return x.masked_fill_(~mask.expand_as(x), 0)


def masked_norm(x: Tensor, mask: Tensor | None, dims: tuple[int, ...]) -> Tensor:
    """``||torch.where(mask, x, 0)||_2`` over ``dims`` (kept with size 1), without a copy of
    ``x``: first over the dimensions along which ``mask`` is constant (an expanded mask, such
    as a labeled arc's over its labels), then over the others after masking. Not rescaled:
    it underflows to 0 or overflows to inf where the squares do. Entries outside ``mask``
    never count, NaN or inf included."""
    if mask is None:
        return torch.linalg.vector_norm(x, dim=dims, keepdim=True)
    m = compact(mask)
    m = m.reshape((1,) * (x.dim() - m.dim()) + tuple(m.shape))
    inner = tuple(d % x.dim() for d in dims if m.shape[d] == 1 and x.shape[d] > 1)
    part = torch.linalg.vector_norm(x, dim=inner, keepdim=True) if inner else x
    part = torch.where(m, part, torch.zeros((), dtype=part.dtype, device=part.device))
    return torch.linalg.vector_norm(part, dim=dims, keepdim=True)
