"""Labeled semantic dependency graphs: any set of arcs, each with exactly one of ``L`` labels."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from spigot._masking import compact, zero_outside
from spigot._validate import check_finite, check_floating, check_lengths
from spigot.projections import project_simplex, project_subsimplex, project_subsimplex_
from spigot.structures._arcs import arc_mask
from spigot.structures.base import Structure


def check_labeled_scores(scores: object, name: str = "scores") -> Tensor:
    """Labeled arc scores must be ``[B, n+1, n+1, L]`` floating point, ``n >= 1``, ``L >= 1``."""
    if isinstance(scores, Tensor) and scores.dim() != 4:
        raise ValueError(
            f"`{name}` must have shape [batch, n+1, n+1, labels] (4 dimensions), got "
            f"{scores.dim()} dimensions, shape {tuple(scores.shape)}; with separate arc scores "
            "[B, n+1, n+1] and label scores [B, n+1, n+1, L], pass `arc[..., None] + label`"
        )
    s = check_floating(scores, name, 4)
    if s.shape[1] != s.shape[2]:
        raise ValueError(
            f"`{name}` must be square in its middle two dimensions [batch, n+1, n+1, labels], "
            f"got shape {tuple(s.shape)}"
        )
    if s.shape[1] < 2:
        raise ValueError(
            f"`{name}` must have n+1 >= 2 (the root plus at least one word), got shape "
            f"{tuple(s.shape)}"
        )
    if s.shape[3] < 1:
        raise ValueError(f"`{name}` must have at least one label, got shape {tuple(s.shape)}")
    return s


def _with_no_arc(scores: Tensor) -> Tensor:
    """``[..., L] -> [..., 1 + L]``: the score 0 of "no arc" in front of the label scores."""
    return F.pad(scores, (1, 0))


def _label_probabilities(scores: Tensor) -> Tensor:
    """``p_l = exp(s_l) / (1 + sum_k exp(s_k))``: softmax over ``[0, s_1, ..., s_L]`` without
    its first entry (the probability of "no arc")."""
    return torch.softmax(_with_no_arc(scores), dim=-1)[..., 1:]


def _project_labels_heuristic(x: Tensor, mask: Tensor, arc: Tensor | None = None) -> Tensor:
    """The original SPIGOT code's projection for labeled arcs (``ProjectSDP``), for comparison.

    Not the Euclidean projection onto the polytope: it clips the arc's indicator
    ``a = clip(arc, 0, 1)`` and then projects the label vector onto the scaled simplex
    ``{y >= 0, sum_l y_l = a}`` (``y = a * proj_simplex(x / a)``, 0 when ``a = 0``). The
    original kept the arc as its own coordinate; in this layout it is the sum of the labels, the
    default of ``arc``. The result is feasible, so never closer to ``x`` than
    :func:`~spigot.projections.project_subsimplex`; with the default ``arc`` it coincides with
    it when ``sum(x) >= 1``, ``x >= 0`` or ``x <= 0``, and differs otherwise (e.g. ``[0.5,
    -0.7]`` gives 0 instead of ``[0.5, 0]``; ``tests/test_subsimplex.py``).

    Args:
        x: ``[..., L]`` label vectors; mask: boolean, broadcastable to ``x``.
        arc: ``[..., 1]`` arc indicators; ``None`` = ``x.sum(-1, keepdim=True)`` over ``mask``.

    Returns:
        ``[..., L]``, zero where ``mask`` is false.
    """
    mask = mask.expand_as(x)
    xm = torch.where(mask, x, 0)
    a = (xm.sum(-1, keepdim=True) if arc is None else arc).clamp(0, 1)
    on = a > 0
    y = project_simplex(xm / torch.where(on, a, 1), mask, dim=-1)
    return torch.where(on & mask, a * y, 0)


class LabeledDependencyGraph(Structure):
    """Labeled semantic dependency graphs: every arc ``h -> m`` independently absent or present
    with exactly one of ``L`` labels.

    Scores are one tensor ``scores[b, h, m, l]`` of shape ``[B, n+1, n+1, L]``: the score of the
    arc ``h -> m`` carrying label ``l``. With separate arc scores ``[B, n+1, n+1]`` and label
    scores ``[B, n+1, n+1, L]``, pass ``arc[..., None] + label``. The first three dimensions
    follow :class:`~spigot.DependencyGraph` (node 0 is the root, ``lengths[b]`` words, nothing
    on the diagonal, in column 0 or on padding). A structure ``z`` has the scores' shape, 0/1,
    with at most one label per arc; ``z.sum(-1)`` is the unlabeled graph. Arcs are
    independent, so each arc is a choice among "no arc" (score 0) and its ``L`` labels:

    * ``argmax``: the first best label ``l* = argmax_l s_l``; the arc is on, with ``l*``, iff
      ``s_{l*} > 0`` (ties at 0 excluded, as for unlabeled graphs);
    * ``marginals``: softmax over ``[0, s_1, ..., s_L]`` without the first entry;
      ``log_partition``: ``sum_arcs log(1 + sum_l exp(s_l))``;
    * ``project``: per arc the exact projection onto ``{z_a in [0, 1], z_{a,l} >= 0,
      sum_l z_{a,l} = z_a}``, i.e. onto ``{y in R^L : y >= 0, sum_l y_l <= 1}``
      (:func:`~spigot.projections.project_subsimplex`). The original code clipped the arc and
      projected its labels onto the scaled simplex (:func:`_project_labels_heuristic`), which is
      not the projection.
    """

    event_dim = 3
    # each arc's set is conv{0, e_1, ..., e_L}; the graphs' hull is their product
    relaxed_is_marginal = True

    def __repr__(self) -> str:
        return "LabeledDependencyGraph()"

    # -- validation ------------------------------------------------------------------------
    def _prepare(self, scores: Any, lengths: Any, name: str = "scores") -> tuple[Tensor, Any]:
        """Validate ``[B, n+1, n+1, L]`` scores and ``[B]`` lengths; invalid entries become 0.

        Returns ``(scores, (lengths, mask))`` with ``mask [B, n+1, n+1, L]`` (expanded from
        :func:`~spigot.structures._arcs.arc_mask`).
        """
        s = check_labeled_scores(scores, name)
        B, n1 = s.shape[0], s.shape[1]
        lens = check_lengths(lengths, B, n1 - 1, s.device)
        mask = arc_mask(lens, n1, s.device).unsqueeze(-1).expand(s.shape)
        finite = check_finite(s, mask, name)
        return zero_outside(s, mask, finite=finite), (lens, mask)

    def _part_mask(self, prepared: Any) -> Tensor:
        return prepared[1]

    def mask(self, scores: Tensor, lengths: Tensor | None = None) -> Tensor:
        """``[B, n+1, n+1, L]`` boolean: the labeled arcs a graph over ``lengths`` words may use
        (every label of the arcs of :meth:`~spigot.DependencyGraph.mask`)."""
        _, (_, mask) = self._prepare(scores, lengths)
        return mask.contiguous()

    # -- the four operations ---------------------------------------------------------------
    def _argmax(self, scores: Tensor, lengths: Any) -> Tensor:
        _, mask = lengths
        best = scores.argmax(dim=-1, keepdim=True)  # the first maximiser
        on = scores.gather(-1, best) > 0
        z = torch.zeros_like(scores).scatter_(-1, best, 1.0)
        return z * (on & compact(mask)).to(z.dtype)  # z is finite: torch.where(on & mask, z, 0)

    def _marginals(self, scores: Tensor, lengths: Any) -> Tensor:
        _, mask = lengths
        return torch.where(mask, _label_probabilities(scores), 0)

    def _marginals_vjp(self, scores: Tensor, lengths: Any, grad: Tensor) -> Tensor:
        """``(d p / d s)^T g = p * (g - <g, p>)`` per arc (``d p_i / d s_j = p_i (d_ij - p_j)``);
        torch ops of ``scores`` and ``grad``, so differentiable to any order."""
        _, mask = lengths
        p = _label_probabilities(scores)
        g = torch.where(mask, grad, 0)
        return torch.where(mask, p * (g - (g * p).sum(-1, keepdim=True)), 0)

    def _log_partition(self, scores: Tensor, lengths: Any) -> Tensor:
        _, mask = lengths
        per_arc = torch.logsumexp(_with_no_arc(scores), dim=-1)  # log(1 + sum_l exp(s_l))
        return torch.where(mask[..., 0], per_arc, 0).sum(dim=(-2, -1))

    def _project(self, x: Tensor, lengths: Any) -> Tensor:
        _, mask = lengths
        return project_subsimplex(x, mask, dim=-1)

    def _project_(self, x: Tensor, lengths: Any) -> Tensor:
        _, mask = lengths
        return project_subsimplex_(x, mask, dim=-1)
