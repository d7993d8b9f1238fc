"""Layers that produce the scores a structure needs (torch only; ``import spigot.nn``).

:class:`BiaffineArcScorer` turns contextual states of ``root + n`` words into arc scores
``[B, n+1, n+1]`` for :class:`~spigot.DependencyTree` or :class:`~spigot.DependencyGraph`, on a
scale that does not drift (see ``docs/latent_trees.md`` for why hard estimators need that).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from spigot.structures._arcs import lengths_mask

__all__ = ["BiaffineArcScorer"]


class BiaffineArcScorer(nn.Module):
    """Biaffine arc scores (Dozat & Manning, 2017) from the states of the root and the words.

    ``head = MLP_h(x)``, ``dep = MLP_d(x)`` (one linear layer and a LeakyReLU each), then
    ``scores[b, h, m] = scale * (head[b, h]^T U dep[b, m] + head[b, h]^T u)``: the bilinear term
    plus a prior of ``h`` being a head. ``U`` starts Xavier-uniform (not at zero as in Dozat &
    Manning: a latent tree needs distinct scores, and hence non-degenerate trees, from the first
    step), ``u`` at zero.

    Args:
        in_dim: ``d``, the size of each state.
        hidden: the size of the head and dependent projections.
        scale: constant factor on the scores; ``None`` (default) = ``1/sqrt(hidden)``, so that
            the scale of the bilinear form at initialisation does not grow with ``hidden``
            (as in scaled dot-product attention). It does not stop the scores from drifting
            during training; ``normalize`` does.
        normalize: ``None`` (default), or ``"rms"``: divide each sentence's scores by their
            root-mean-square over its valid arcs (the mask of :func:`spigot.lengths_mask`), so
            they stay at unit scale throughout training whatever the weights do. The argmax of
            every sentence is unchanged; gradients flow through the division, like a layer norm.
        dropout: dropout on the projections.

    Shapes:
        ``forward(states [B, n+1, d], lengths [B] or None) -> scores [B, n+1, n+1]``, with
        ``states[:, 0]`` the root's state and ``lengths[b]`` in ``1..n`` the number of words
        (``None``: all ``n``). Entries off the valid arcs (diagonal, column 0, padding) are
        finite and never read by a structure.

    Example::

        scorer = BiaffineArcScorer(200, 128, normalize="rms")
        z = spigot.structured_argmax(scorer(states, lengths), spigot.DependencyTree(),
                                     lengths=lengths)
    """

    def __init__(
        self,
        in_dim: int,
        hidden: int,
        *,
        scale: float | None = None,
        normalize: str | None = None,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if in_dim < 1 or hidden < 1:
            raise ValueError(f"`in_dim` and `hidden` must be >= 1, got {in_dim}, {hidden}")
        if normalize not in (None, "rms"):
            raise ValueError(f"`normalize` must be None or 'rms', got {normalize!r}")
        if scale is not None and not (math.isfinite(scale) and scale > 0):
            raise ValueError(f"`scale` must be None or a positive finite float, got {scale!r}")
        self.in_dim, self.hidden, self.normalize = in_dim, hidden, normalize
        self.scale = 1.0 / math.sqrt(hidden) if scale is None else float(scale)
        self.head_mlp = nn.Sequential(nn.Linear(in_dim, hidden), nn.LeakyReLU(0.1))
        self.dep_mlp = nn.Sequential(nn.Linear(in_dim, hidden), nn.LeakyReLU(0.1))
        self.dropout = nn.Dropout(dropout)
        self.weight = nn.Parameter(nn.init.xavier_uniform_(torch.empty(hidden, hidden)))
        self.head_bias = nn.Parameter(torch.zeros(hidden))

    def forward(self, states: Tensor, lengths: Tensor | None = None) -> Tensor:
        """Arc scores ``[B, n+1, n+1]`` (``scores[b, h, m]``: arc ``h -> m``) of ``states``."""
        if states.dim() != 3 or states.shape[-1] != self.in_dim or states.shape[1] < 2:
            raise ValueError(
                f"`states` must be [batch, n+1 >= 2, {self.in_dim}], got {tuple(states.shape)}"
            )
        head = self.dropout(self.head_mlp(states))  # [B, n+1, k]
        dep = self.dropout(self.dep_mlp(states))  # [B, n+1, k]
        scores = head @ self.weight @ dep.mT + (head @ self.head_bias).unsqueeze(-1)
        scores = self.scale * scores
        if self.normalize == "rms":
            B, n1 = states.shape[:2]
            if lengths is None:
                lengths = torch.full((B,), n1 - 1, dtype=torch.long, device=states.device)
            mask = lengths_mask(lengths.to(states.device), n1 - 1)
            ms = torch.where(mask, scores.pow(2), 0).sum((-2, -1), keepdim=True)
            ms = ms / mask.sum((-2, -1), keepdim=True).clamp(min=1)
            scores = scores / torch.where(ms > 0, ms, torch.ones_like(ms)).sqrt()
        return scores

    def extra_repr(self) -> str:
        norm = f", normalize={self.normalize!r}" if self.normalize else ""
        return f"in_dim={self.in_dim}, hidden={self.hidden}, scale={self.scale:.4g}{norm}"
