"""SparseMAP (Niculae, Martins, Blondel & Cardie, ICML 2018) as an estimator.

Forward: the Euclidean projection of the scores onto the marginal polytope,

    mu = argmin_{mu in conv(Z)} ||mu - s||^2,

a sparse mixture ``mu = sum_{z in A} w_z z`` of a few structures (not a hard structure: like
``"marginals"``, the result is fractional where the scores are ambiguous). Backward: the exact
Jacobian of that projection from its active set ``A`` (``M`` the matrix of its structures,
``G = M^T M``)::

    d mu / d s = M S M^T,    S = G^-1 - G^-1 1 1^T G^-1 / (1^T G^-1 1)

the orthogonal projection onto the directions of the affine hull of ``A`` (symmetric and
idempotent), so ``dL/ds = M S M^T dL/dmu``: exact wherever the active set is locally constant
(almost everywhere), and exactly 0 on the parts no structure can contain.

Trees run the batched active-set solver of :mod:`spigot.marginal_polytope` (one argmax call per
iteration for the whole batch); graphs and categoricals, whose relaxed polytopes are already
``conv(Z)``, use the closed forms (clipping, sparsemax) with their closed-form backward.

Options: ``max_iter`` (most argmax calls per structure, default 1000; a ``RuntimeWarning`` names
the structures that stop there) and ``tol`` (duality-gap tolerance relative to
``1 + ||s - mu||_1``, default 1e-12).
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from spigot.estimators import register_estimator
from spigot.marginal_polytope import DEFAULT_MAX_ITER, DEFAULT_TOL, check_max_iter, check_tol
from spigot.structures.base import Structure


def sparsemap(
    s: Tensor, structure: Structure, prepared: Any, *, max_iter: int, tol: float
) -> Tensor:
    """``argmin_{mu in conv(Z)} ||mu - s||^2`` on prepared scores; backward the active set's
    exact Jacobian ``M S M^T`` (module doc)."""
    return structure._project_marginal(s, prepared, tol=tol, max_iter=max_iter)


register_estimator(
    "sparsemap",
    sparsemap,
    options={"max_iter": (DEFAULT_MAX_ITER, check_max_iter), "tol": (DEFAULT_TOL, check_tol)},
    summary="projection of the scores onto conv(Z) (sparse mixture); exact active-set backward",
)
