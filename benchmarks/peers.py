"""Wrappers that run the peer libraries on spigot's score convention.

Every wrapper takes spigot's convention and returns spigot's convention:

* ``scores``: float tensor ``[B, n+1, n+1]`` with ``scores[b, h, m]`` the score of the arc
  head ``h`` -> modifier ``m``; index 0 is the root, words are 1..n.
* ``lengths``: long tensor ``[B]``, the number of words of each sentence.
* argmax results: 0/1 tensor of the same shape and dtype as ``scores``;
  marginals: float tensor of the same shape (zero outside the sentence).

Each implementation is split into ``prepare`` (convert spigot's input into the peer's
native convention; not timed), ``run`` (the peer call that the benchmark times, taking the
prepared arguments) and ``finish`` (convert the peer's native output back to spigot's
convention; not timed).  ``Impl.__call__`` chains the three.

Peers and their conventions
---------------------------
torch-struct 0.5 (``torch_struct``)
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

SuPar 1.1.4 (``supar.structs``)
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

networkx 3.x
    ``maximum_spanning_arborescence`` on a ``DiGraph`` with an edge ``h -> m`` of weight
    ``scores[b, h, m]`` (no edge into the root, so node 0 must be the root).  Single root is
    obtained with the root-penalty trick: every root arc is lowered by a constant larger than
    the spread of any two trees' scores, so the best arborescence has exactly one root arc and
    is, among those, the best one; the penalty is added back when scoring.  One sentence at
    a time, Python floats (float64).
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import sys
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

# ---------------------------------------------------------------------------------------
# Availability


def _version(dist: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(dist)
    except Exception:
        return None


@dataclass
class PeerStatus:
    name: str
    available: bool
    version: str | None = None
    note: str = ""


_STATUS: dict[str, PeerStatus] = {}


def peer_status(name: str) -> PeerStatus:
    """Import the peer if needed and tell whether it can be used."""
    if name not in _STATUS:
        loader = {
            "torch-struct": _load_torch_struct,
            "supar": _load_supar,
            "networkx": _load_networkx,
        }[name]
        try:
            note = loader() or ""
            _STATUS[name] = PeerStatus(name, True, _version(_DIST[name]), note)
        except ImportError as exc:
            _STATUS[name] = PeerStatus(name, False, None, f"not installed ({exc})")
    return _STATUS[name]


_DIST = {"torch-struct": "torch-struct", "supar": "supar", "networkx": "networkx"}
PEERS = ("torch-struct", "supar", "networkx")

# ---------------------------------------------------------------------------------------
# torch-struct

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


# ---------------------------------------------------------------------------------------
# SuPar

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


# ---------------------------------------------------------------------------------------
# networkx

_nx: Any = None


def _load_networkx() -> str:
    global _nx
    import networkx

    if int(networkx.__version__.split(".")[0]) < 3:
        raise ImportError(f"networkx>=3 needed, found {networkx.__version__}")
    _nx = networkx
    return ""


def nx_prepare(scores: torch.Tensor, lengths: torch.Tensor):
    """One float64 numpy matrix (h, m) per sentence, cut to its length."""
    s = scores.detach().double().cpu().numpy()
    return [s[b, : L + 1, : L + 1] for b, L in enumerate(lengths.tolist())]


def nx_cle(mats, single_root: bool = True) -> list[list[int]]:
    """Chu-Liu-Edmonds with networkx, sentence by sentence; returns head lists (index 0 = -1)."""
    from networkx.algorithms.tree.branchings import maximum_spanning_arborescence

    results = []
    for s in mats:
        N = s.shape[0]
        penalty = 0.0
        if single_root:
            # any two trees differ by at most N * (max - min); one root arc fewer wins.
            penalty = float(N * (s.max() - s.min()) + 1.0)
        g = _nx.DiGraph()
        g.add_nodes_from(range(N))
        rows = s.tolist()
        g.add_weighted_edges_from(
            (h, m, rows[h][m] - (penalty if h == 0 else 0.0))
            for h in range(N)
            for m in range(1, N)
            if h != m
        )
        t = maximum_spanning_arborescence(g, attr="weight")
        heads = [-1] * N
        for h, m in t.edges():
            heads[m] = h
        results.append(heads)
    return results


def nx_heads_to_arcs(heads: list[list[int]], like: torch.Tensor) -> torch.Tensor:
    out = torch.zeros_like(like)
    for b, hs in enumerate(heads):
        for m in range(1, len(hs)):
            out[b, hs[m], m] = 1
    return out


# ---------------------------------------------------------------------------------------
# Implementations per operation


@dataclass
class Impl:
    """One implementation of one operation, in three stages (see module doc)."""

    name: str
    prepare: Callable[[torch.Tensor, torch.Tensor], tuple]
    run: Callable[..., Any]
    finish: Callable[[Any, torch.Tensor, torch.Tensor], torch.Tensor]
    note: str = ""
    extra: dict = field(default_factory=dict)

    def __call__(self, scores: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        args = self.prepare(scores, lengths)
        return self.finish(self.run(*args), scores, lengths)


def _grad_run(log_partition: Callable, single_root: bool):
    """Time log-partition forward + backward; the gradient (= marginals) is the result."""

    def run(x, lengths):
        x.grad = None
        log_partition(x, lengths, single_root).sum().backward()
        return x.grad

    return run


def _leaf(t: torch.Tensor) -> torch.Tensor:
    return t.detach().clone().requires_grad_(True)


# Operation names used by the benchmark.
OPS = ("eisner", "eisner-multi", "cle", "mtt", "inside")
# Which (projective, single_root) each op uses and what it computes.
OP_SPEC = {
    "eisner": dict(projective=True, single_root=True, kind="argmax"),
    "eisner-multi": dict(projective=True, single_root=False, kind="argmax"),
    "cle": dict(projective=False, single_root=True, kind="argmax"),
    "mtt": dict(projective=False, single_root=True, kind="marginals"),
    "inside": dict(projective=True, single_root=True, kind="grad"),
}


def spigot_impl(op: str) -> Impl:
    """spigot's own implementation of ``op`` (raises ImportError/AttributeError if missing)."""
    try:
        import spigot
    except ImportError:
        # Not installed: fall back to the repository's src/ (this file is benchmarks/peers.py).
        src = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")
        if not os.path.isdir(os.path.join(src, "spigot")) or src in sys.path:
            raise
        sys.path.insert(0, src)
        import spigot

    spec = OP_SPEC[op]
    tree = spigot.DependencyTree(projective=spec["projective"], single_root=spec["single_root"])
    same = lambda s, L: (s, L)  # noqa: E731
    done = lambda out, s, L: out.detach()  # noqa: E731
    if spec["kind"] == "argmax":
        return Impl("spigot", same, tree.argmax, done)
    if spec["kind"] == "marginals":
        return Impl("spigot", same, tree.marginals, done)

    def run(x, lengths):
        x.grad = None
        tree.log_partition(x, lengths).sum().backward()
        return x.grad

    return Impl("spigot", lambda s, L: (_leaf(s), L), run, done)


def get_impl(name: str, op: str) -> Impl | None:
    """``spigot`` or a peer's implementation of ``op`` (None: that library has no such op)."""
    if name == "spigot":
        return spigot_impl(op)
    return peer_impl(name, op)


def peer_impl(peer: str, op: str) -> Impl | None:
    """The peer's implementation of ``op``, or None if the peer has none.

    Raises ImportError if the peer is not installed.
    """
    status = peer_status(peer)
    if not status.available:
        raise ImportError(status.note)
    spec = OP_SPEC[op]
    sr = spec["single_root"]
    if peer == "torch-struct":
        prep = lambda s, L: (to_torch_struct(s), L)  # noqa: E731
        back = lambda out, s, L: from_torch_struct(out.detach()).to(s.dtype)  # noqa: E731
        if op in ("eisner", "eisner-multi"):
            return Impl(
                "torch-struct",
                prep,
                lambda p, L: ts_projective_argmax(p, L, sr),
                back,
            )
        if op == "mtt":
            return Impl("torch-struct", prep, lambda p, L: ts_mtt_marginals(p, L, sr), back)
        if op == "inside":
            return Impl(
                "torch-struct",
                lambda s, L: (_leaf(to_torch_struct(s)), L),
                _grad_run(ts_projective_log_partition, sr),
                back,
            )
        return None  # cle: torch-struct has no non-projective argmax
    if peer == "supar":
        prep = lambda s, L: (to_supar(s), L)  # noqa: E731
        back = lambda out, s, L: from_supar(out.detach()).to(s.dtype)  # noqa: E731
        if op in ("eisner", "eisner-multi"):
            return Impl(
                "supar",
                prep,
                lambda p, L: supar_projective_argmax(p, L, sr),
                lambda out, s, L: heads_to_arcs(out, L, s),
            )
        if op == "cle":
            return Impl(
                "supar",
                lambda s, L: (to_supar(s), supar_mask(L, s.shape[1])),
                lambda p, mask: supar_cle(p, mask, sr),
                lambda out, s, L: heads_to_arcs(out, L, s),
            )
        if op == "mtt":
            return Impl("supar", prep, lambda p, L: supar_mtt_marginals(p, L, sr), back)
        if op == "inside":
            return Impl(
                "supar",
                lambda s, L: (_leaf(to_supar(s)), L),
                _grad_run(supar_projective_log_partition, sr),
                back,
            )
        return None
    if peer == "networkx":
        if op == "cle":
            return Impl(
                "networkx",
                lambda s, L: (nx_prepare(s, L),),
                lambda mats: nx_cle(mats, sr),
                lambda out, s, L: nx_heads_to_arcs(out, s),
            )
        return None
    raise ValueError(peer)


# ---------------------------------------------------------------------------------------
# Checks shared by the benchmark and the tests


def tree_score(z: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    """Sum of the scores of the chosen arcs, per sentence, in float64."""
    return (z.double() * scores.double()).sum((1, 2))


def heads_of(z: torch.Tensor, length: int) -> list[int] | None:
    """Head list (index 0 = -1) of one 0/1 arc matrix, or None if a word lacks one head."""
    zz = z[: length + 1, : length + 1]
    if z.sum() != zz.sum():
        return None  # arcs outside the sentence
    col = zz.sum(0)
    if col[0] != 0 or not bool((col[1:] == 1).all()):
        return None
    heads = [-1] + [int(zz[:, m].nonzero()[0, 0]) for m in range(1, length + 1)]
    return heads


def is_tree(heads: list[int], projective: bool = False, single_root: bool = False) -> bool:
    """Whether a head list (index 0 = root, heads[0] ignored) is a tree rooted at 0."""
    n = len(heads) - 1
    for m in range(1, n + 1):
        seen, h = set(), m
        while h != 0:
            if h in seen or h < 0 or h > n:
                return False
            seen.add(h)
            h = heads[h]
    if single_root and sum(1 for m in range(1, n + 1) if heads[m] == 0) != 1:
        return False
    if projective:
        arcs = [(min(heads[m], m), max(heads[m], m)) for m in range(1, n + 1)]
        for a, b in arcs:
            for c, d in arcs:
                if a < c < b < d:
                    return False
    return True


def check_trees(z, lengths, projective: bool, single_root: bool) -> list[int]:
    """Indices of the sentences whose 0/1 output is not a valid tree of the requested kind."""
    bad = []
    for b, L in enumerate(lengths.tolist()):
        heads = heads_of(z[b], L)
        if heads is None or not is_tree(heads, projective, single_root):
            bad.append(b)
    return bad
