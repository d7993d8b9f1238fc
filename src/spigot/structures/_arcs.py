"""Layout helpers shared by the arc-factored structures (trees and graphs)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from spigot._validate import check_arc_scores, check_finite, check_lengths
from spigot.structures.base import Structure


def arc_mask(lengths: Tensor, n1: int, device: torch.device) -> Tensor:
    """``mask[b, h, m]``: ``h <= lengths[b]``, ``1 <= m <= lengths[b]``, ``h != m``.

    Shape ``[B, n+1, n+1]``, boolean: the arcs a sentence of ``lengths[b]`` words can have
    (no arc into the root, no self-loop, nothing on padding).
    """
    idx = torch.arange(n1, device=device)
    valid = idx.view(1, n1) <= lengths.view(-1, 1)  # [B, n+1]
    head_ok = valid.unsqueeze(2)
    mod_ok = (valid & (idx > 0)).unsqueeze(1)
    return head_ok & mod_ok & (idx.view(n1, 1) != idx.view(1, n1))


def prepare_arcs(scores: object, lengths: object, name: str) -> tuple[Tensor, Tensor, Tensor]:
    """Validate ``[B, n+1, n+1]`` scores and ``[B]`` lengths; return them with the arc mask.

    The returned scores are ``where(mask, scores, 0)``: whatever the caller left on the
    diagonal, in column 0 or on padding (NaN included) is never read by any algorithm, and
    every gradient to those entries is exactly 0, whatever the estimator.
    """
    s = check_arc_scores(scores, name)
    B, n1 = s.shape[0], s.shape[-1]
    lens = check_lengths(lengths, B, n1 - 1, s.device)
    mask = arc_mask(lens, n1, s.device)
    check_finite(s, mask, name)
    s = torch.where(mask, s, torch.zeros((), dtype=s.dtype, device=s.device))
    return s, lens, mask


def lengths_mask(lengths: Tensor, n: int | None = None) -> Tensor:
    """The public arc mask: ``[B, n+1, n+1]`` boolean, true on the arcs ``h -> m`` a structure
    over ``lengths[b]`` words may use (``h <= lengths[b]``, ``1 <= m <= lengths[b]``, ``h != m``).

    ``n`` defaults to ``max(lengths)``.
    """
    if not isinstance(lengths, Tensor) or lengths.dim() != 1:
        raise ValueError(
            f"`lengths` must be a [batch] tensor, got {getattr(lengths, 'shape', lengths)}"
        )
    if n is None:
        n = int(lengths.max()) if lengths.numel() else 1
    lens = check_lengths(lengths, lengths.shape[0], n, lengths.device)
    return arc_mask(lens, n + 1, lengths.device)


def heads_to_arcs(heads: Tensor, lengths: Tensor, like: Tensor) -> Tensor:
    """``heads [B, n+1]`` (head of each word, position 0 ignored) -> 0/1 arcs like ``like``."""
    B, n1 = heads.shape
    z = torch.zeros(B, n1, n1, dtype=like.dtype, device=like.device)
    z.scatter_(1, heads.to(like.device).unsqueeze(1), 1.0)
    idx = torch.arange(n1, device=like.device)
    col_ok = (idx.view(1, -1) >= 1) & (idx.view(1, -1) <= lengths.view(-1, 1))
    return z * col_ok.unsqueeze(1).to(like.dtype)


class ArcFactored(Structure):
    """Base of the structures over arcs ``scores[b, h, m]`` of shape ``[B, n+1, n+1]``.

    The prepared ``lengths`` handed to the ``_``-methods is the pair ``(lengths [B], mask)``
    with ``mask`` from :func:`arc_mask`.
    """

    event_dim = 2

    def _prepare(self, scores: Any, lengths: Any, name: str = "scores") -> tuple[Tensor, Any]:
        s, lens, mask = prepare_arcs(scores, lengths, name)
        return s, (lens, mask)

    def _part_mask(self, prepared: Any) -> Tensor:
        return prepared[1]

    def mask(self, scores: Tensor, lengths: Tensor | None = None) -> Tensor:
        """``[B, n+1, n+1]`` boolean: the arcs a structure over ``lengths`` words may use."""
        _, (_, mask) = self._prepare(scores, lengths)
        return mask
