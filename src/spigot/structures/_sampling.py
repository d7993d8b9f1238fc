"""Exact samplers from ``p(z) ∝ exp(scores · z)``: categoricals, graphs and trees.

Every sampler takes its randomness as uniforms drawn from one optional ``torch.Generator``
(:func:`uniforms`), so that samples are a deterministic function of the scores and the
generator's state:

* :func:`sample_categorical`: inverse CDF of the softmax (float64);
* :func:`sample_bernoulli`: one ``Bernoulli(sigmoid(s))`` per valid arc (float64);
* :func:`sample_projective`: forward filtering (the compiled inside charts) backward sampling
  (:mod:`spigot._kernels_sampling`);
* :func:`sample_nonprojective`: the matrix-tree sequential sampler, every head drawn from its
  exact conditional marginal given the heads drawn before it.

Tree samplers run on the CPU, like the other tree algorithms, and return head indices.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

#: The score of an arc removed by conditioning: ``exp(_REMOVED - x) == 0`` for every score ``x``
#: the validation accepts (``|x| <= 1e100``), so the arc weighs exactly 0 in linear and in log
#: space, while sums of a few of them stay finite (no ``inf - inf`` in the log-space elimination).
_REMOVED = -1e300


def check_sample_args(k: object, generator: object) -> int:
    """``k`` must be a positive integer and ``generator`` a ``torch.Generator`` or ``None``."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or int(k) < 1:
        raise ValueError(f"`k` (the number of samples) must be a positive integer, got {k!r}")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise ValueError(
            f"`generator` must be a torch.Generator or None, got {type(generator).__name__}"
        )
    return int(k)


def uniforms(shape: tuple[int, ...], generator: torch.Generator | None, device: Any) -> Tensor:
    """float64 uniforms in ``[0, 1)`` of ``shape``, moved to ``device``.

    Drawn on the generator's device (the default generator of ``device`` when ``generator`` is
    ``None``), so a seeded generator gives the same numbers wherever the scores live.
    """
    where = generator.device if generator is not None else torch.device(device)
    u = torch.rand(shape, generator=generator, dtype=torch.float64, device=where)
    return u.to(device)


def inverse_cdf(p: Tensor, u: Tensor) -> Tensor:
    """Indices drawn from the rows of ``p [..., K]`` (non-negative, any positive total).

    ``u [...]`` are uniforms in ``[0, 1)``; returns ``[...]`` long: the first index whose
    cumulative weight exceeds ``u * total``. An index of weight 0 is never returned (rounding
    at the top end falls back on the last index of positive weight).
    """
    cdf = p.cumsum(-1)
    target = u * cdf[..., -1]
    idx = (cdf <= target.unsqueeze(-1)).sum(-1)
    K = p.shape[-1]
    pos = torch.arange(K, device=p.device).expand_as(p)
    last = torch.where(p > 0, pos, 0).amax(-1)
    return torch.minimum(idx, last)


def sample_categorical(scores: Tensor, k: int, generator: torch.Generator | None) -> Tensor:
    """``[k, ..., K]`` one-hot samples from ``softmax(scores)``."""
    p = torch.softmax(scores.to(torch.float64), dim=-1)
    u = uniforms((k, *scores.shape[:-1]), generator, scores.device)
    idx = inverse_cdf(p.expand(k, *p.shape), u)
    z = torch.zeros((k, *scores.shape), dtype=scores.dtype, device=scores.device)
    return z.scatter_(-1, idx.unsqueeze(-1), 1.0)


def sample_bernoulli(
    scores: Tensor, mask: Tensor, k: int, generator: torch.Generator | None
) -> Tensor:
    """``[k, *scores.shape]``: each part where ``mask`` is true is 1 with ``sigmoid(score)``."""
    u = uniforms((k, *scores.shape), generator, scores.device)
    return ((u < torch.sigmoid(scores.to(torch.float64))) & mask).to(scores.dtype)


def sample_projective(
    scores: Tensor, lengths: Tensor, single_root: bool, k: int, generator: torch.Generator | None
) -> Tensor:
    """``[k, B, n+1]`` heads of projective trees, exact (forward filtering backward sampling).

    One compiled inside pass per sentence (O(n^3)), then O(n^2) per sample. See
    :mod:`spigot._kernels_sampling`.
    """
    from spigot._kernels_sampling import sample_projective as kernel
    from spigot.structures.tree import _call, _to_numpy

    B, N = scores.shape[0], scores.shape[-1]
    u = uniforms((k, B, 2 * (N - 1)), generator, "cpu")
    s, ln = _to_numpy(scores, lengths)
    _, charts = _call("inside", s, ln, single_root)
    heads = kernel(charts, ln, u.transpose(0, 1).contiguous().numpy())  # [B, k, N]
    return torch.from_numpy(heads).transpose(0, 1)


def sample_nonprojective(
    scores: Tensor,
    lengths: Tensor,
    mask: Tensor,
    single_root: bool,
    k: int,
    generator: torch.Generator | None,
) -> Tensor:
    """``[k, B, n+1]`` heads of non-projective trees, exact: the sequential matrix-tree sampler.

    By the chain rule, ``p(z) = prod_m p(head(m) | head(1), ..., head(m-1))``, and each
    conditional is a column of the marginals of the trees that contain the arcs drawn so far:
    the matrix-tree marginals with every other head of the words already drawn removed. A
    removed arc gets the score ``_REMOVED``: its weight is exactly 0 both in the compiled kernel
    and in its log-space fallback (which must keep the arc in its mask: elimination fills in
    paths through removed arcs, which a mask would reset). So the sample is exact, whatever the
    scores' scale: unlike Wilson's random walk, whose running time grows like ``exp`` of the
    spread of the scores, this one costs n marginal computations, O(n^4) per sample.

    Single root: the root child ``r`` is drawn first from its exact marginal under the
    single-root distribution; the trees with the root child ``r`` are then exactly the
    multi-root trees whose only allowed root arc is ``0 -> r``, which the words' heads are drawn
    from as above.
    """
    from spigot.structures.tree import _matrix_tree_compiled

    B, N = scores.shape[0], scores.shape[-1]
    u = uniforms((N, k, B), generator, "cpu").reshape(N, k * B)
    s = scores.detach().to(device="cpu", dtype=torch.float64)
    lens = lengths.cpu()
    M = mask.cpu().repeat(k, 1, 1)  # [k * B, N, N], row j * B + b: sample j of sentence b
    allowed = M.clone()  # the arcs not removed by the heads drawn so far
    L = lens.repeat(k)
    S = s.repeat(k, 1, 1)
    heads = torch.zeros(k * B, N, dtype=torch.long)
    pos = torch.arange(N)
    root_child = torch.zeros(k * B, dtype=torch.long)
    if single_root:
        _, mu = _matrix_tree_compiled(s, lens, mask.cpu(), True, want_mu=True)
        r = inverse_cdf(mu[:, 0, :].repeat(k, 1), u[0])
        allowed[:, 0, :] &= pos.view(1, N) == r.view(-1, 1)
        root_child = r  # its head stays 0
    for m in range(1, N):
        rows = torch.nonzero((L >= m) & (root_child != m)).flatten()
        if rows.numel() == 0:
            continue
        sub = torch.where(allowed[rows], S[rows], _REMOVED)
        _, mu = _matrix_tree_compiled(sub, L[rows], M[rows], False, want_mu=True)
        h = inverse_cdf(mu[:, :, m], u[m, rows])
        heads[rows, m] = h
        allowed[rows, :, m] = pos.view(1, N) == h.view(-1, 1)
    return heads.view(k, B, N)
