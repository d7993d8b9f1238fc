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

Peers
-----
One module beside this file wraps each peer and describes its convention:
``_peer_torch_struct.py`` (torch-struct 0.5), ``_peer_supar.py`` (SuPar 1.1.4) and
``_peer_networkx.py`` (networkx 3.x).  This module tells which peers are installed
(``peer_status``), builds each operation's ``Impl`` from them (``peer_impl``, ``spigot_impl``)
and holds the checks of tree outputs shared by the benchmark and the tests; the peers'
functions can be reached from here too (``peers.to_torch_struct``, ...).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

# The peer modules live beside this file, which the tests load by its path.
_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

# The names imported ``as`` themselves are not used here: they keep every wrapper reachable as
# ``peers.<name>``.
from _peer_networkx import _load_networkx, nx_cle, nx_heads_to_arcs, nx_prepare  # noqa: E402
from _peer_supar import (  # noqa: E402
    _load_supar,
    from_supar,
    heads_to_arcs,
    supar_cle,
    supar_mask,
    supar_mtt_marginals,
    supar_projective_argmax,
    supar_projective_log_partition,
    to_supar,
)
from _peer_supar import import_supar_structs as import_supar_structs  # noqa: E402
from _peer_supar import supar_mtt_log_partition as supar_mtt_log_partition  # noqa: E402
from _peer_supar import supar_projective_marginals as supar_projective_marginals  # noqa: E402
from _peer_torch_struct import (  # noqa: E402
    _load_torch_struct,
    from_torch_struct,
    to_torch_struct,
    ts_mtt_marginals,
    ts_projective_argmax,
    ts_projective_log_partition,
)
from _peer_torch_struct import patch_torch_struct as patch_torch_struct  # noqa: E402
from _peer_torch_struct import ts_mtt_log_partition as ts_mtt_log_partition  # noqa: E402
from _peer_torch_struct import ts_projective_marginals as ts_projective_marginals  # noqa: E402

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
