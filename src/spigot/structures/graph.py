"""Arc-factored semantic dependency graphs: any set of arcs between distinct nodes."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from spigot.projections import project_unit_cube
from spigot.structures._arcs import ArcFactored
from spigot.structures._sampling import sample_bernoulli


class DependencyGraph(ArcFactored):
    """Semantic dependency graphs: every arc ``h -> m`` (``h != m``, ``m >= 1``) independently.

    Same layout as :class:`~spigot.DependencyTree`: ``scores[b, h, m]`` of shape
    ``[B, n+1, n+1]``, ``lengths[b]`` words; arcs out of node 0 mark top nodes. Since arcs are
    independent, ``Z`` is the unit cube's vertices:

    * ``argmax``: the arcs with positive score (ties at 0 excluded);
    * ``marginals``: ``sigmoid(scores)``; ``log_partition``: ``sum softplus(scores)``;
    * ``project``: clip to ``[0, 1]``, exact because the polytope is the unit cube;
    * ``sample``: one ``Bernoulli(sigmoid(score))`` per valid arc.
    """

    relaxed_is_marginal = True  # the unit cube is conv(Z)

    def __repr__(self) -> str:
        return "DependencyGraph()"

    def _argmax(self, scores: Tensor, lengths: Any) -> Tensor:
        _, mask = lengths
        return ((scores > 0) & mask).to(scores.dtype)

    def _marginals(self, scores: Tensor, lengths: Any) -> Tensor:
        _, mask = lengths
        return torch.where(mask, torch.sigmoid(scores), 0)

    def _marginals_vjp(self, scores: Tensor, lengths: Any, grad: Tensor) -> Tensor:
        _, mask = lengths
        p = torch.sigmoid(scores)
        return torch.where(mask, grad * p * (1 - p), 0)

    def _log_partition(self, scores: Tensor, lengths: Any) -> Tensor:
        _, mask = lengths
        return torch.where(mask, F.softplus(scores), 0).sum(dim=(-2, -1))

    def _project(self, x: Tensor, lengths: Any) -> Tensor:
        _, mask = lengths
        return project_unit_cube(x, mask)

    def _sample(self, scores: Tensor, lengths: Any, k: int, generator: Any) -> Tensor:
        """``[k, B, n+1, n+1]``: every valid arc independently, present with ``sigmoid(s)``."""
        _, mask = lengths
        return sample_bernoulli(scores, mask, k, generator)
