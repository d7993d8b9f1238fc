"""One choice among ``K`` along the last dimension."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from spigot._validate import check_finite, check_floating
from spigot.projections import project_simplex
from spigot.structures._sampling import sample_categorical
from spigot.structures.base import Structure


class Categorical(Structure):
    """One-hot vectors along the last dimension of ``scores [..., K]``.

    * ``argmax``: one-hot of the first maximiser; ``marginals``: softmax;
      ``log_partition``: logsumexp; ``project``: onto the simplex (sparsemax);
      ``sample``: inverse CDF of the softmax (float64).

    ``lengths`` is not used (every one of the ``K`` choices is valid) and must be ``None``.
    """

    event_dim = 1
    relaxed_is_marginal = True  # the simplex is conv(Z)

    def __repr__(self) -> str:
        return "Categorical()"

    def _prepare(self, scores: Any, lengths: Any, name: str = "scores") -> tuple[Tensor, Any]:
        s = check_floating(scores, name, 1)
        if lengths is not None:
            raise ValueError("`lengths` must be None for Categorical (all K choices are valid)")
        if s.shape[-1] < 1:
            raise ValueError(f"`{name}` must have at least one choice, got shape {tuple(s.shape)}")
        check_finite(s, None, name)
        return s, None

    def mask(self, scores: Tensor, lengths: Tensor | None = None) -> Tensor:
        """All true: every choice is valid."""
        s, _ = self._prepare(scores, lengths)
        return torch.ones_like(s, dtype=torch.bool)

    def _argmax(self, scores: Tensor, lengths: Any) -> Tensor:
        idx = scores.argmax(dim=-1, keepdim=True)
        return torch.zeros_like(scores).scatter_(-1, idx, 1.0)

    def _marginals(self, scores: Tensor, lengths: Any) -> Tensor:
        return torch.softmax(scores, dim=-1)

    def _marginals_vjp(self, scores: Tensor, lengths: Any, grad: Tensor) -> Tensor:
        p = torch.softmax(scores, dim=-1)
        return p * (grad - (grad * p).sum(-1, keepdim=True))

    def _log_partition(self, scores: Tensor, lengths: Any) -> Tensor:
        return torch.logsumexp(scores, dim=-1)

    def _project(self, x: Tensor, lengths: Any) -> Tensor:
        return project_simplex(x, None, dim=-1)

    def _sample(self, scores: Tensor, lengths: Any, k: int, generator: Any) -> Tensor:
        """``[k, ..., K]`` one-hot draws from ``softmax(scores)``."""
        return sample_categorical(scores, k, generator)
