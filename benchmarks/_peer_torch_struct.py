"""torch-struct 0.5 (``torch_struct``) on spigot's score convention (stated in ``peers.py``, which
builds the benchmark's operations from this module); the peer's own convention:

``log_potentials[b, h, m]`` over the *words only* (``[B, n, n]``, 0-based word
indices), head first, with the root arc ``root -> m`` stored on the diagonal
``[b, m, m]``; ``lengths`` = number of words.  ``DependencyCRF(..., multiroot=...)``:
projective (Eisner) argmax / marginals / partition.  ``NonProjectiveDependencyCRF``:
matrix-tree marginals (closed form through a matrix inverse, float32, adds eps=1e-5 to
every exponentiated potential); it has no argmax (Chu-Liu-Edmonds is "not implemented").
``DependencyCRF`` stores ``multiroot`` as a *class* attribute of ``DepTree``, so the
wrappers compute right after constructing it.
Fails on current torch (torch-struct issue #104): ``DepTree._check_potentials`` fills a
view of a leaf tensor that requires grad in place.  :func:`patch_torch_struct` replaces
that method at run time (the installed files are not touched) with one that does the
same fills under ``torch.no_grad()`` when, and only when, the tensor is such a leaf.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch

_ts: Any = None


def patch_torch_struct() -> None:
    """Work around torch-struct issue #104 on torch >= 1.x (at run time, in this process).

    ``DepTree._check_potentials`` marks the converted potentials as requiring grad
    (``_get_dimension`` calls ``requires_grad_(True)``) and then writes the semiring zero
    into the padding rows/columns of a view of that tensor.  When that tensor is a leaf
    (i.e. the caller's scores did not require grad), current torch refuses the in-place fill.
    The replacement below is the same code; only the fills are run under ``torch.no_grad()``
    in that leaf case, so the values are identical.  (In the non-leaf case the fills stay
    recorded by autograd as before.)  The gradient of the padding entries is
    exp(-1e5 - ...) == 0 either way.
    """
    import torch_struct.deptree as deptree

    if getattr(deptree.DepTree._check_potentials, "_spigot_patched", False):
        return

    def _check_potentials(self, arc_scores, lengths=None):
        semiring = self.semiring
        batch, N, N2, *_ = self._get_dimension(arc_scores)
        assert N == N2, "Non-square potentials"
        if lengths is None:
            lengths = torch.LongTensor([N - 1] * batch).to(arc_scores.device)
        assert max(lengths) <= N, "Length longer than N"
        leaf = arc_scores.is_leaf and arc_scores.requires_grad
        arc_scores = semiring.convert(arc_scores)
        ctx = torch.no_grad() if leaf else contextlib.nullcontext()
        with ctx:
            for b in range(batch):
                semiring.zero_(arc_scores[:, b, lengths[b] + 1 :, :])
                semiring.zero_(arc_scores[:, b, :, lengths[b] + 1 :])
        return arc_scores, batch, N, lengths

    _check_potentials._spigot_patched = True  # type: ignore[attr-defined]
    deptree.DepTree._check_potentials = _check_potentials


def _load_torch_struct() -> str:
    global _ts
    import torch_struct

    _ts = torch_struct
    patch_torch_struct()
    return "DepTree._check_potentials patched at run time (issue #104)"


def to_torch_struct(scores: torch.Tensor) -> torch.Tensor:
    """spigot [B, n+1, n+1] (h, m) -> torch-struct [B, n, n] (h, m), root arcs on diagonal."""
    pot = scores[:, 1:, 1:].clone()
    pot.diagonal(dim1=1, dim2=2).copy_(scores[:, 0, 1:])
    return pot


def from_torch_struct(parts: torch.Tensor) -> torch.Tensor:
    """torch-struct [B, n, n] (root on the diagonal) -> spigot [B, n+1, n+1]."""
    B, n, _ = parts.shape
    out = parts.new_zeros(B, n + 1, n + 1)
    out[:, 1:, 1:] = parts
    out[:, 1:, 1:].diagonal(dim1=1, dim2=2).zero_()
    out[:, 0, 1:] = parts.diagonal(dim1=1, dim2=2)
    return out


def ts_projective_argmax(pot: torch.Tensor, lengths: torch.Tensor, single_root: bool):
    dist = _ts.DependencyCRF(pot, lengths=lengths, multiroot=not single_root)
    return dist.argmax.detach()


def ts_projective_marginals(pot: torch.Tensor, lengths: torch.Tensor, single_root: bool):
    dist = _ts.DependencyCRF(pot, lengths=lengths, multiroot=not single_root)
    return dist.marginals.detach()


def ts_projective_log_partition(pot: torch.Tensor, lengths: torch.Tensor, single_root: bool):
    dist = _ts.DependencyCRF(pot, lengths=lengths, multiroot=not single_root)
    return dist.partition


def ts_mtt_marginals(pot: torch.Tensor, lengths: torch.Tensor, single_root: bool):
    dist = _ts.NonProjectiveDependencyCRF(pot, lengths=lengths, multiroot=not single_root)
    return dist.marginals


def ts_mtt_log_partition(pot: torch.Tensor, lengths: torch.Tensor, single_root: bool):
    dist = _ts.NonProjectiveDependencyCRF(pot, lengths=lengths, multiroot=not single_root)
    return dist.partition
