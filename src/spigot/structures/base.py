"""The interface every structure implements: what the argmax ranges over."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import torch
from torch import Tensor


class _Marginals(torch.autograd.Function):
    """Structured attention: ``mu = E_{p(z) ∝ exp(s · z)}[z] = d log Z / d s``.

    Backward: the exact vector-Jacobian product ``(d mu / d s)^T g`` (the Hessian of ``log Z``
    times ``g``), from each structure's ``_marginals_vjp``; itself differentiable, so
    derivatives of every order are exact. The ``"marginals"`` estimator and
    :meth:`Structure.marginals` both apply it.
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


class Structure(ABC):
    """A set ``Z`` of 0/1 structures, with the operations SPIGOT and its peers need.

    Subclasses implement the ``_``-prefixed methods on validated inputs; the public methods
    validate, never modify the caller's tensors, and return tensors with the scores' shape,
    dtype and device.
    """

    #: number of trailing dimensions that make up one structure (2 for trees/graphs, 1 for
    #: categorical); the SPIGOT step size rule takes ``||dL/dz||`` over these dimensions.
    event_dim: int = 1

    # -- validation ------------------------------------------------------------------------
    @abstractmethod
    def _prepare(self, scores: Any, lengths: Any, name: str = "scores") -> tuple[Tensor, Any]:
        """Validate ``scores`` and ``lengths``; return ``(scores, lengths)`` normalised."""

    def _part_mask(self, prepared: Any) -> Tensor | None:
        """The boolean mask of valid parts inside prepared ``lengths`` (``None``: all valid)."""
        return None

    @abstractmethod
    def mask(self, scores: Tensor, lengths: Tensor | None = None) -> Tensor:
        """Boolean tensor, ``True`` on the parts a structure may contain."""

    # -- the four operations ---------------------------------------------------------------
    @abstractmethod
    def _argmax(self, scores: Tensor, lengths: Any) -> Tensor: ...

    @abstractmethod
    def _marginals(self, scores: Tensor, lengths: Any) -> Tensor: ...

    @abstractmethod
    def _marginals_vjp(self, scores: Tensor, lengths: Any, grad: Tensor) -> Tensor:
        """``(d marginals / d scores)^T grad``: the exact gradient of the marginals."""

    @abstractmethod
    def _log_partition(self, scores: Tensor, lengths: Any) -> Tensor: ...

    @abstractmethod
    def _project(self, x: Tensor, lengths: Any) -> Tensor: ...

    def argmax(self, scores: Tensor, lengths: Tensor | None = None) -> Tensor:
        """The highest-scoring structure as a 0/1 tensor shaped like ``scores`` (no gradient)."""
        s, lengths = self._prepare(scores, lengths)
        with torch.no_grad():
            return self._argmax(s.detach(), lengths)

    def marginals(self, scores: Tensor, lengths: Tensor | None = None) -> Tensor:
        """Part marginals under ``p(z) ∝ exp(scores · z)``; differentiable (exact gradient)."""
        s, lengths = self._prepare(scores, lengths)
        return _Marginals.apply(s, self, lengths)

    def log_partition(self, scores: Tensor, lengths: Tensor | None = None) -> Tensor:
        """``log sum_{z in Z} exp(scores · z)``, one value per structure; differentiable."""
        s, lengths = self._prepare(scores, lengths)
        return self._log_partition(s, lengths)

    def project(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        """Euclidean projection of ``x`` onto the structure's (relaxed) polytope."""
        x, lengths = self._prepare(x, lengths, name="x")
        return self._project(x, lengths)

    def score(self, scores: Tensor, z: Tensor) -> Tensor:
        """``scores · z`` per structure (sum over the last :attr:`event_dim` dimensions)."""
        dims = tuple(range(-self.event_dim, 0))
        return (scores * z).sum(dim=dims)
