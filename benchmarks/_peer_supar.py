"""SuPar 1.1.4 (``supar.structs``) on spigot's score convention (stated in ``peers.py``, which
builds the benchmark's operations from this module); the peer's own convention:

``s_arc[b, m, h]``: modifier first, head last, ``[B, n+1, n+1]`` with index 0 the root;
``lens`` = number of words (the mask is derived from it, position 0 excluded).
``DependencyCRF(s_arc, lens, multiroot=...)``: projective; argmax via the max-semiring
backward, marginals / log-partition via the inside algorithm and autograd.
``MatrixTree(s_arc, lens, multiroot=...)``: matrix-tree theorem (in float64 internally).
``supar.structs.fn.mst(s_arc, mask, multiroot=False)``: Chu-Liu-Edmonds in Python on
torch tensors, one sentence at a time; for single root it re-runs CLE with each root
child of the unconstrained tree as the only allowed root child.  ``mst`` overwrites
parts of its input, so the wrapper hands it a copy (made in ``prepare``).
``import supar`` needs nltk, dill and tqdm (light, pure Python) at import time.  If that
import fails, :func:`import_supar_structs` loads only ``supar.structs`` by registering
skeleton package modules for ``supar`` and ``supar.utils`` (their ``__path__`` only, in
this process) so that their ``__init__`` files, which pull in the parsers and nltk, are
not executed.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import types
from typing import Any

import torch

_supar_structs: Any = None
_supar_mst: Any = None


def import_supar_structs() -> tuple[Any, Any, str]:
    """Import ``supar.structs`` (and ``supar.structs.fn.mst``).

    Tries the normal ``import supar`` first.  If the package's ``__init__`` cannot be
    imported (it imports every parser and nltk / dill), fall back to skeleton package
    modules for ``supar`` and ``supar.utils`` that only carry ``__path__``, so that
    ``supar.structs``, ``supar.utils.fn`` and ``supar.utils.common`` (which need only torch)
    can be imported from the installed files.  The skeletons live in this process only.
    """
    note = ""
    try:
        importlib.import_module("supar")
    except ImportError as exc:
        spec = importlib.util.find_spec("supar")
        if spec is None or not spec.submodule_search_locations:
            raise
        for mod in [m for m in sys.modules if m == "supar" or m.startswith("supar.")]:
            del sys.modules[mod]
        root = list(spec.submodule_search_locations)[0]
        for name, path in (("supar", root), ("supar.utils", os.path.join(root, "utils"))):
            skeleton = types.ModuleType(name)
            skeleton.__path__ = [path]  # type: ignore[attr-defined]
            skeleton.__package__ = name
            sys.modules[name] = skeleton
        sys.modules["supar"].utils = sys.modules["supar.utils"]  # type: ignore[attr-defined]
        note = f"`import supar` failed ({exc}); loaded supar.structs via skeleton packages"
    structs = importlib.import_module("supar.structs")
    fn = importlib.import_module("supar.structs.fn")
    return structs, fn.mst, note


def _load_supar() -> str:
    global _supar_structs, _supar_mst
    _supar_structs, _supar_mst, note = import_supar_structs()
    return note


def to_supar(scores: torch.Tensor) -> torch.Tensor:
    """spigot [B, n+1, n+1] (h, m) -> SuPar [B, n+1, n+1] (m, h), contiguous copy."""
    return scores.transpose(1, 2).contiguous()


def from_supar(s: torch.Tensor) -> torch.Tensor:
    """SuPar (m, h) matrix -> spigot (h, m)."""
    return s.transpose(1, 2).contiguous()


def heads_to_arcs(heads: torch.Tensor, lengths: torch.Tensor, like: torch.Tensor):
    """heads [B, n+1] (heads[b, m] = head of word m; position 0 unused) -> 0/1 [B, n+1, n+1]."""
    B, N = heads.shape
    out = torch.zeros(B, N, N, dtype=like.dtype, device=like.device)
    m = torch.arange(N, device=heads.device)
    valid = (m[None, :] >= 1) & (m[None, :] <= lengths[:, None])
    b_idx, m_idx = valid.nonzero(as_tuple=True)
    out[b_idx, heads[b_idx, m_idx].long(), m_idx] = 1
    return out


def supar_projective_argmax(s: torch.Tensor, lengths: torch.Tensor, single_root: bool):
    dist = _supar_structs.DependencyCRF(s, lengths, multiroot=not single_root)
    return dist.argmax


def supar_projective_log_partition(s: torch.Tensor, lengths: torch.Tensor, single_root: bool):
    return _supar_structs.DependencyCRF(s, lengths, multiroot=not single_root).log_partition


def supar_projective_marginals(s: torch.Tensor, lengths: torch.Tensor, single_root: bool):
    return _supar_structs.DependencyCRF(s, lengths, multiroot=not single_root).marginals


def supar_mtt_marginals(s: torch.Tensor, lengths: torch.Tensor, single_root: bool):
    return _supar_structs.MatrixTree(s, lengths, multiroot=not single_root).marginals


def supar_mtt_log_partition(s: torch.Tensor, lengths: torch.Tensor, single_root: bool):
    return _supar_structs.MatrixTree(s, lengths, multiroot=not single_root).log_partition


def supar_mask(lengths: torch.Tensor, N: int) -> torch.Tensor:
    """SuPar's word mask [B, N]: True at 1..len (position 0, the root, is False)."""
    pos = torch.arange(N, device=lengths.device)
    return (pos[None, :] >= 1) & (pos[None, :] <= lengths[:, None])


def supar_cle(s: torch.Tensor, mask: torch.Tensor, single_root: bool):
    with torch.no_grad():
        return _supar_mst(s, mask, multiroot=not single_root)
