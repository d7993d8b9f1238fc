"""What the backward pass of a structured decision returns: one registry of estimators.

Forward of every hard estimator: ``z = argmax_{z in Z} scores · z``. Given ``g = dL/dz``:

============  =====================================  ==============================================
estimator     forward returns                        backward returns ``dL/dscores``
============  =====================================  ==============================================
pipeline      ``z`` (argmax, no grad_fn)             nothing (no gradient reaches the scores)
ste           ``z`` (argmax)                         ``gamma * g`` (straight-through)*
spigot        ``z`` (argmax)                         ``z - proj_P(z - eta * g)``
marginals     ``mu`` (marginals)                     ``(d mu / d scores)^T g`` (exact)
============  =====================================  ==============================================

(*) Every estimator's gradient is exactly 0 on the parts no structure can contain (for trees and
graphs: the diagonal, column 0 and padding), because the structures hand the estimators
``where(mask, scores, 0)``.

``P`` is the structure's polytope (its :meth:`~spigot.structures.Structure.project`); ``eta``
is a float, or ``None`` for the rule of the original code, ``eta = min(1, max_step / ||g||_2)``
with the norm taken per structure (per sentence), over the parts a structure may contain: the
step is ``g``, shortened to length ``max_step`` (default 1, as in the original's
syntactic-then-semantic pipeline; its semantic-then-sentiment pipeline used 5/32).

The rule is not invariant to the scale of the loss. The original code trained on each
sentence's summed loss; a loss averaged over the words of a batch gives a gradient ``c`` times
smaller (``c`` = words in the batch), for which ``eta`` is almost always 1: the rule never
shortens the step. ``loss_scale = c`` applies SPIGOT to the gradient of the summed loss and
scales the result back: ``dL/ds := (z - proj_P(z - eta * c g)) / c`` with
``eta = min(1, 1 / ||c g||)``.

Registering your own estimator::

    def apply(scores, structure, prepared, *, tau):
        ...  # scores are validated; structure._argmax(scores, prepared) etc. are available
    spigot.register_estimator("mine", apply, options={"tau": (1.0, spigot.check_positive)})
    z = spigot.structured_argmax(scores, tree, estimator="mine", tau=0.5)
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import torch
from torch import Tensor, nn

from spigot.estimators import perturbation, smoothed
from spigot.estimators.hard import (
    _PipelineArgmax,
    _SpigotArgmax,
    _STEArgmax,
    spigot_step_size,
)
from spigot.structures.base import Structure, _Marginals

#: ``check(name, value) -> value`` validates (and normalises) one option or raises ValueError.
OptionCheck = Callable[[str, Any], Any]


@dataclass(frozen=True)
class Estimator:
    """A registered estimator: ``apply(scores, structure, prepared, **options) -> z``.

    ``scores`` and ``prepared`` come from ``structure._prepare`` (validated; invalid parts 0);
    ``options`` maps each option's name to ``(default, check)``.
    """

    name: str
    apply: Callable[..., Tensor]
    options: Mapping[str, tuple[Any, OptionCheck]] = field(default_factory=dict)
    summary: str = ""


_REGISTRY: dict[str, Estimator] = {}
#: Read-only view of the registry: ``name -> Estimator`` (iterating gives the names).
ESTIMATORS: Mapping[str, Estimator] = MappingProxyType(_REGISTRY)


def register_estimator(
    name: str,
    apply: Callable[..., Tensor],
    *,
    options: Mapping[str, tuple[Any, OptionCheck]] | None = None,
    summary: str = "",
    overwrite: bool = False,
) -> Estimator:
    """Register ``apply`` under ``name`` for :func:`structured_argmax` and friends.

    Args:
        name: the estimator's name (a non-empty string).
        apply: ``apply(scores, structure, prepared, **options) -> z``, usually a
            ``torch.autograd.Function``'s ``apply`` wrapped to pass the options.
        options: ``{option: (default, check)}``; ``check(option, value)`` returns the value
            to use or raises ``ValueError`` (see :func:`check_positive`).
        summary: one line for error messages and docs.
        overwrite: allow replacing an existing estimator of that name.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"an estimator's name must be a non-empty string, got {name!r}")
    if name in _REGISTRY and not overwrite:
        raise ValueError(f"estimator {name!r} is already registered (pass overwrite=True)")
    if not callable(apply):
        raise ValueError(f"`apply` must be callable, got {type(apply).__name__}")
    est = Estimator(name, apply, dict(options or {}), summary)
    _REGISTRY[name] = est
    return est


# -- option checks ----------------------------------------------------------------------------
def _real(x: object) -> float | None:
    """``x`` as a float if it is a real number (Python, NumPy or a one-element tensor)."""
    if isinstance(x, Tensor) and x.numel() == 1 and not x.dtype.is_complex:
        x = x.item()
    if isinstance(x, bool) or not isinstance(x, numbers.Real):
        return None
    return float(x)


def check_positive(name: str, value: object) -> float:
    """A positive finite real number (Python, NumPy or one-element tensor) -> float."""
    v = _real(value)
    if v is None or not (math.isfinite(v) and v > 0):
        raise ValueError(f"`{name}` must be a positive finite float, got {value!r}")
    return v


def check_positive_or_none(name: str, value: object) -> float | None:
    """``None``, or a positive finite real number."""
    if value is None:
        return None
    v = _real(value)
    if v is None or not (math.isfinite(v) and v > 0):
        raise ValueError(f"`{name}` must be None or a positive finite float, got {value!r}")
    return v


# -- the built-in estimators ------------------------------------------------------------------
def _pipeline(s: Tensor, structure: Structure, prepared: Any) -> Tensor:
    with torch.no_grad():
        return _PipelineArgmax.apply(s.detach(), structure, prepared)


def _ste(s: Tensor, structure: Structure, prepared: Any, *, gamma: float) -> Tensor:
    return _STEArgmax.apply(s, structure, prepared, gamma)


def _spigot(
    s: Tensor,
    structure: Structure,
    prepared: Any,
    *,
    eta: float | None,
    loss_scale: float,
    polytope: str,
    max_step: float,
) -> Tensor:
    if eta is not None and max_step != 1.0:
        raise ValueError(
            "`max_step` bounds the step of the rule eta=None (eta = min(1, max_step/||g||)); "
            f"with a fixed eta={eta} it would do nothing"
        )
    return _SpigotArgmax.apply(s, structure, prepared, eta, loss_scale, polytope, max_step)


def _marginals(s: Tensor, structure: Structure, prepared: Any) -> Tensor:
    return _Marginals.apply(s, structure, prepared)


register_estimator("pipeline", _pipeline, summary="argmax; no gradient (the result has no grad_fn)")
register_estimator(
    "ste",
    _ste,
    options={"gamma": (1.0, check_positive)},
    summary="argmax; backward gamma * dL/dz (straight-through)",
)
register_estimator(
    "spigot",
    _spigot,
    options={
        "eta": (None, check_positive_or_none),
        "loss_scale": (1.0, check_positive),
        "polytope": ("relaxed", lambda k, v: _choice("relaxed", "marginal")(k, v)),
        "max_step": (1.0, check_positive),
    },
    summary="argmax; backward z - proj(z - eta * dL/dz) (Peng et al. 2018)",
)
register_estimator(
    "marginals", _marginals, summary="marginals (structured attention); exact backward"
)


def check_generator(name: str, value: object) -> torch.Generator | None:
    """``None`` or a ``torch.Generator``."""
    if value is not None and not isinstance(value, torch.Generator):
        raise ValueError(f"`{name}` must be None or a torch.Generator, got {type(value).__name__}")
    return value


def check_count(name: str, value: object) -> int:
    """A positive integer."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or int(value) < 1:
        raise ValueError(f"`{name}` must be a positive integer, got {value!r}")
    return int(value)


def _choice(*allowed: str) -> OptionCheck:
    def check(name: str, value: object) -> str:
        if value not in allowed:
            raise ValueError(f"`{name}` must be one of {', '.join(allowed)}; got {value!r}")
        return str(value)

    return check


register_estimator(
    "ste-marginals",
    smoothed.ste_marginals,
    summary="argmax; backward (d mu / d s)^T dL/dz (STE-S, Mihaylova et al. 2020)",
)
register_estimator(
    "spigot-ce",
    smoothed.spigot_ce,
    options={"gamma": (1.0, check_positive)},
    summary="argmax; backward mu - proj(mu - gamma dL/dz) (Mihaylova et al. 2020)",
)
register_estimator(
    "spigot-eg",
    smoothed.spigot_eg,
    options={"gamma": (1.0, check_positive)},
    summary="argmax; backward mu(s) - mu(s - gamma dL/dz) (Mihaylova et al. 2020)",
)
register_estimator(
    "perturbed",
    perturbation.perturbed,
    options={
        "samples": (10, check_count),
        "sigma": (1.0, check_positive),
        "noise": ("gumbel", _choice("gumbel", "normal")),
        "generator": (None, check_generator),
    },
    summary="mean of perturbed argmaxes; perturbation Jacobian (Berthet et al. 2020)",
)
register_estimator(
    "imle",
    perturbation.imle,
    options={
        "samples": (1, check_count),
        "lam": (1.0, check_positive),
        "tau": (1.0, check_positive),
        "k": (1.0, check_positive),
        "generator": (None, check_generator),
    },
    summary="perturb-and-MAP; backward z(s+eps) - z(s - lam dL/dz + eps) (Niepert et al. 2021)",
)
register_estimator(
    "blackbox",
    perturbation.blackbox,
    options={"lam": (1.0, check_positive)},
    summary="argmax; backward (z(s) - z(s - lam dL/dz)) / lam (Vlastelica et al. 2020)",
)


# -- normalisation ------------------------------------------------------------------------------
def _check_normalize(normalize: object) -> str | float | None:
    if normalize is None or normalize == "rms":
        return normalize  # type: ignore[return-value]
    v = _real(normalize)
    if v is None or not (math.isfinite(v) and v > 0):
        raise ValueError(
            f"`normalize` must be None, 'rms' or a positive temperature, got {normalize!r}"
        )
    return v


def normalize_scores(
    s: Tensor, structure: Structure, prepared: Any, normalize: str | float | None
) -> Tensor:
    """Divide each structure's scores by their RMS over its valid parts, or by a temperature.

    The argmax is invariant to a positive scale, so nothing holds the scores' scale under the
    hard estimators: it can drift until gradients explode. ``"rms"`` makes the result
    scale-free (``s / sqrt(mean_valid s^2)``, differentiated through, like a layer norm); an
    all-zero structure is left as it is.
    """
    if normalize is None:
        return s
    if normalize != "rms":
        return s / normalize
    mask = structure._part_mask(prepared)
    dims = tuple(range(-structure.event_dim, 0))
    sq = s.pow(2) if mask is None else torch.where(mask, s.pow(2), 0)
    count = (
        torch.full_like(s, 1.0).sum(dims, keepdim=True)
        if mask is None
        else mask.to(s.dtype).sum(dims, keepdim=True).clamp(min=1)
    )
    ms = sq.sum(dims, keepdim=True) / count
    one = torch.ones((), dtype=s.dtype, device=s.device)
    return s / torch.where(ms > 0, ms, one).sqrt()


# -- the public entry points ------------------------------------------------------------------
def _resolve(estimator: object, options: Mapping[str, Any]) -> tuple[Estimator, dict[str, Any]]:
    """The registered estimator and its full, validated options."""
    if not isinstance(estimator, str) or estimator not in _REGISTRY:
        raise ValueError(
            f"`estimator` must be one of {', '.join(sorted(_REGISTRY))}; got {estimator!r}"
        )
    est = _REGISTRY[estimator]
    unknown = sorted(set(options) - set(est.options))
    if unknown:
        valid = ", ".join(sorted(est.options)) or "none"
        raise ValueError(
            f"estimator {estimator!r} has no option {', '.join(map(repr, unknown))} "
            f"(its options: {valid})"
        )
    full = {}
    for key, (default, check) in est.options.items():
        full[key] = check(key, options[key]) if key in options else default
    return est, full


def structured_argmax(
    scores: Tensor,
    structure: Structure,
    *,
    estimator: str = "spigot",
    lengths: Tensor | None = None,
    normalize: str | float | None = None,
    **options: Any,
) -> Tensor:
    """A hard structured decision that gradients can pass through.

    Args:
        scores: part scores; ``[B, n+1, n+1]`` for trees and graphs (``scores[b, h, m]`` is the
            arc ``h -> m``, node 0 the root), ``[..., K]`` for :class:`~spigot.Categorical`.
        structure: a :class:`~spigot.structures.Structure`, e.g. ``DependencyTree()``.
        estimator: a registered name (:data:`ESTIMATORS`): ``"spigot"`` (default), ``"ste"``,
            ``"pipeline"``, ``"marginals"``, or your own (:func:`register_estimator`).
        lengths: ``[B]`` number of words per sentence (trees and graphs); ``None`` = all ``n``.
        normalize: ``None``; ``"rms"`` divides each structure's scores by their RMS over its
            valid parts (recommended with the hard estimators: see :func:`normalize_scores`);
            a float divides them by that temperature.
        **options: the estimator's options, e.g. ``eta`` and ``loss_scale`` for ``"spigot"``
            (``eta``: step size, ``None`` = ``min(1, max_step/||dL/dz||)`` per structure;
            ``loss_scale``: ``c`` when the loss is a sum divided by ``c``, see the module doc),
            ``gamma`` for ``"ste"``. Unknown options raise ``ValueError`` listing the valid ones.

    Returns:
        ``z`` with the scores' shape, dtype and device: the argmax (0/1) for the hard
        estimators, the marginals for ``"marginals"``.
    """
    if not isinstance(structure, Structure):
        raise ValueError(
            f"`structure` must be a spigot Structure (e.g. spigot.DependencyTree()), "
            f"got {type(structure).__name__}"
        )
    est, opts = _resolve(estimator, options)
    normalize = _check_normalize(normalize)
    s, prepared = structure._prepare(scores, lengths)
    s = normalize_scores(s, structure, prepared, normalize)
    return est.apply(s, structure, prepared, **opts)


class StructuredArgmax(nn.Module):
    """Module form of :func:`structured_argmax`: ``z = layer(scores, lengths)``.

    Args:
        structure: a :class:`~spigot.structures.Structure`.
        estimator: the estimator while training (any registered name).
        normalize: as in :func:`structured_argmax`.
        eval_estimator: the estimator in ``eval()`` mode; ``None`` = the same one. E.g.
            ``estimator="marginals", eval_estimator="pipeline"`` trains with structured
            attention and decodes hard structures at evaluation.
        **options: the training estimator's options (``eta``, ``loss_scale``, ``gamma``, ...).

    Example::

        layer = spigot.StructuredArgmax(spigot.DependencyTree(), estimator="spigot")
        z = layer(scores, lengths)   # [B, n+1, n+1] 0/1 tree; backward by SPIGOT
    """

    def __init__(
        self,
        structure: Structure,
        estimator: str = "spigot",
        *,
        normalize: str | float | None = None,
        eval_estimator: str | None = None,
        **options: Any,
    ) -> None:
        super().__init__()
        if not isinstance(structure, Structure):
            raise ValueError(
                f"`structure` must be a spigot Structure, got {type(structure).__name__}"
            )
        self.structure = structure
        _, self.options = _resolve(estimator, options)
        self.estimator = estimator
        if eval_estimator is not None:
            _resolve(eval_estimator, {})
        self.eval_estimator = eval_estimator
        self.normalize = _check_normalize(normalize)

    def forward(self, scores: Tensor, lengths: Tensor | None = None) -> Tensor:
        """``z`` for ``scores`` (``[B, n+1, n+1]`` or ``[..., K]``) and ``lengths [B]``."""
        if not self.training and self.eval_estimator is not None:
            name, opts = self.eval_estimator, {}
        else:
            name, opts = self.estimator, self.options
        return structured_argmax(
            scores,
            self.structure,
            estimator=name,
            lengths=lengths,
            normalize=self.normalize,
            **opts,
        )

    def extra_repr(self) -> str:
        opts = "".join(f", {k}={v!r}" for k, v in self.options.items())
        extra = f", eval_estimator={self.eval_estimator!r}" if self.eval_estimator else ""
        norm = f", normalize={self.normalize!r}" if self.normalize is not None else ""
        return f"structure={self.structure!r}, estimator={self.estimator!r}{opts}{norm}{extra}"


__all__ = [
    "ESTIMATORS",
    "Estimator",
    "StructuredArgmax",
    "check_positive",
    "check_positive_or_none",
    "normalize_scores",
    "register_estimator",
    "spigot_step_size",
    "structured_argmax",
]

# estimators in their own modules register themselves on import (after the registry exists)
from spigot.estimators import sparsemap as _sparsemap  # noqa: E402, F401
