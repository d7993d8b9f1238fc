"""spigot: hard structured decisions inside PyTorch models, trained end to end.

Structures (what the argmax ranges over): :class:`DependencyTree`, :class:`DependencyGraph`,
:class:`LabeledDependencyGraph`, :class:`Categorical`. Estimators (what the backward does):
:func:`structured_argmax` and :class:`StructuredArgmax` with ``"spigot"``, ``"ste"``,
``"pipeline"`` or ``"marginals"``.
Projections (the polytopes of SPIGOT): :mod:`spigot.projections`.

``import spigot`` imports torch and numpy only; the compiled tree kernels (numba) load on first
use, the NLP pipeline lives in ``spigot.data``, ``spigot.models`` and friends.
"""

from spigot.batch import TokenBatch, collate_tokens
from spigot.estimators import (
    ESTIMATORS,
    Estimator,
    StructuredArgmax,
    check_positive,
    check_positive_or_none,
    register_estimator,
    spigot_step_size,
    structured_argmax,
)
from spigot.estimators.perturbation import perturbed_fenchel_young_loss
from spigot.projections import project_simplex, project_subsimplex, project_unit_cube
from spigot.structures import (
    Categorical,
    DependencyGraph,
    DependencyTree,
    LabeledDependencyGraph,
    Structure,
)
from spigot.structures._arcs import lengths_mask

__version__ = "0.1.0.dev0"

__all__ = [
    "ESTIMATORS",
    "Estimator",
    "Categorical",
    "DependencyGraph",
    "DependencyTree",
    "LabeledDependencyGraph",
    "Structure",
    "StructuredArgmax",
    "TokenBatch",
    "check_positive",
    "check_positive_or_none",
    "collate_tokens",
    "lengths_mask",
    "perturbed_fenchel_young_loss",
    "project_simplex",
    "project_subsimplex",
    "project_unit_cube",
    "register_estimator",
    "spigot_step_size",
    "structured_argmax",
]
