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
    #: the relaxed polytope of :meth:`project` is already ``conv(Z)`` (``polytope="marginal"``
    #: then returns the same closed form instead of running the active-set solver)
    relaxed_is_marginal: bool = False

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

    def _project_(self, x: Tensor, lengths: Any) -> Tensor:
        """:meth:`_project` for a caller that owns ``x`` and no longer needs it: it may be
        overwritten and returned (saves a tensor of the scores' size; no gradient)."""
        return self._project(x, lengths)

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

    def _project_marginal(self, x: Tensor, prepared: Any, **solver: Any) -> Any:
        """``argmin_{mu in conv(Z)} ||mu - x||^2`` on prepared ``x``: the closed form when
        :attr:`relaxed_is_marginal`, else the active-set solver of :mod:`spigot.marginal_polytope`
        (``solver``: ``tol``, ``max_iter``, ``return_info``). Differentiable."""
        from spigot.marginal_polytope import marginal_projection

        return marginal_projection(self, x, prepared, **solver)

    def project(
        self,
        x: Tensor,
        lengths: Tensor | None = None,
        polytope: str = "relaxed",
        *,
        tol: float | None = None,
        max_iter: int | None = None,
        return_info: bool = False,
    ) -> Any:
        """Euclidean projection of ``x`` onto one of the structure's polytopes.

        ``polytope="relaxed"`` (default): SPIGOT's polytope (e.g. one simplex per word's heads
        for trees). ``"marginal"``: the marginal polytope ``conv(Z)``,
        ``argmin_{mu in conv(Z)} ||mu - x||^2``; the same closed form where the relaxation is
        exact (:attr:`relaxed_is_marginal`), else the active-set solver of
        :func:`spigot.marginal_polytope.project_marginal` with its ``tol`` and ``max_iter``;
        ``return_info=True`` returns ``(mu, ProjectionInfo)`` (iterations, gaps, active set).
        """
        if polytope not in ("relaxed", "marginal"):
            raise ValueError(f"`polytope` must be 'relaxed' or 'marginal', got {polytope!r}")
        x, lengths = self._prepare(x, lengths, name="x")
        if polytope == "marginal":
            return self._project_marginal(
                x, lengths, tol=tol, max_iter=max_iter, return_info=return_info
            )
        if tol is not None or max_iter is not None or return_info:
            raise ValueError("`tol`, `max_iter` and `return_info` need polytope='marginal'")
        return self._project(x, lengths)

    def score(self, scores: Tensor, z: Tensor) -> Tensor:
        """``scores · z`` per structure (sum over the last :attr:`event_dim` dimensions)."""
        dims = tuple(range(-self.event_dim, 0))
        return (scores * z).sum(dim=dims)

    # -- sampling and information ----------------------------------------------------------
    def _sample(self, scores: Tensor, lengths: Any, k: int, generator: Any) -> Tensor:
        """``[k, *scores.shape]`` exact samples (validated inputs, no gradient)."""
        raise NotImplementedError(f"{type(self).__name__} has no sampler")

    def sample(
        self,
        scores: Tensor,
        lengths: Tensor | None = None,
        k: int = 1,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """``k`` exact samples from ``p(z) ∝ exp(scores · z)``, as 0/1 structures.

        Args:
            scores: the structure's scores (``[B, n+1, n+1]`` arcs, ``[..., K]`` categories).
            lengths: ``[B]`` words per sentence (arc-factored structures), or ``None``.
            k: number of independent samples per structure.
            generator: the only source of randomness when given: the same generator state
                gives the same samples (bitwise), on any number of threads. Uniforms are drawn
                on the generator's device; ``None`` uses torch's default generator.

        Returns:
            ``[k, *scores.shape]`` 0/1 with the scores' dtype and device, zero on the parts no
            structure can contain (diagonal, column 0, padding); no gradient.
        """
        from spigot.structures._sampling import check_sample_args

        s, lengths = self._prepare(scores, lengths)
        k = check_sample_args(k, generator)
        with torch.no_grad():
            return self._sample(s.detach(), lengths, k, generator)

    def _entropy(self, scores: Tensor, lengths: Any) -> Tensor:
        """``log Z - s · mu`` in float64, on prepared inputs; differentiable."""
        s = scores.to(torch.float64)
        mu = _Marginals.apply(s, self, lengths)
        return self._log_partition(s, lengths) - self.score(s, mu)

    def entropy(self, scores: Tensor, lengths: Tensor | None = None) -> Tensor:
        """Entropy ``H(p) = log Z - scores · mu`` of ``p(z) ∝ exp(scores · z)``, per structure.

        Exact and differentiable (to any order: it is built from ``log_partition`` and the
        ``marginals``). Computed in float64 and returned in the scores' dtype; parts no
        structure can contain do not count. Its rounding error is about
        ``eps * |log Z|`` (a difference of two numbers of that size), so it can be ``-1e-15``
        where the distribution is (nearly) a point mass.

        Returns:
            ``[B]`` for arc-factored structures (``[...]`` for ``Categorical``).
        """
        s, lengths = self._prepare(scores, lengths)
        return self._entropy(s, lengths).to(s.dtype)

    def kl(self, scores_p: Tensor, scores_q: Tensor, lengths: Tensor | None = None) -> Tensor:
        """``KL(p || q) = (log Z_q - log Z_p) - (scores_q - scores_p) · mu_p``, per structure.

        ``p`` and ``q`` are the distributions ``∝ exp(scores · z)`` of ``scores_p`` and
        ``scores_q`` (same shape, same ``lengths``). Exact and differentiable in both; float64
        inside, returned in ``scores_p``'s dtype; exactly 0 when ``scores_q == scores_p``,
        else rounding error about ``eps * |log Z|``.

        Returns:
            ``[B]`` for arc-factored structures (``[...]`` for ``Categorical``).
        """
        sp, prep = self._prepare(scores_p, lengths, name="scores_p")
        if isinstance(scores_q, Tensor) and scores_q.shape != sp.shape:
            raise ValueError(
                f"`scores_q` must have the shape of `scores_p` {tuple(sp.shape)}, "
                f"got {tuple(scores_q.shape)}"
            )
        sq, _ = self._prepare(scores_q, lengths, name="scores_q")
        p, q = sp.to(torch.float64), sq.to(torch.float64)
        mu_p = _Marginals.apply(p, self, prep)
        logz_p, logz_q = self._log_partition(p, prep), self._log_partition(q, prep)
        return ((logz_q - logz_p) - self.score(q - p, mu_p)).to(sp.dtype)
