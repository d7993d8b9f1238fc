"""networkx 3.x on spigot's score convention (stated in ``peers.py``, which
builds the benchmark's operations from this module); the peer's own convention:

``maximum_spanning_arborescence`` on a ``DiGraph`` with an edge ``h -> m`` of weight
``scores[b, h, m]`` (no edge into the root, so node 0 must be the root).  Single root is
obtained with the root-penalty trick: every root arc is lowered by a constant larger than
the spread of any two trees' scores, so the best arborescence has exactly one root arc and
is, among those, the best one; the penalty is added back when scoring.  One sentence at
a time, Python floats (float64).
"""

from __future__ import annotations

from typing import Any

import torch

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
