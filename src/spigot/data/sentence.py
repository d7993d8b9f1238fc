"""The common sentence record of the corpus readers, and dependency-tree checks.

:class:`Sentence` (with its :data:`Arc` triples) is what every reader of
:mod:`spigot.data` yields (CoNLL-U, SDP, PropBank, synthetic treebank);
:func:`check_tree` and :func:`is_projective` check its basic tree.  All names
are also importable from :mod:`spigot.data.conllu` and :mod:`spigot.data`.

This module does not import torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Arc", "Sentence", "check_tree", "is_projective"]

# ---------------------------------------------------------------------------
# types
# ---------------------------------------------------------------------------

Arc = tuple[int, int, str]
"""A semantic arc ``(head, modifier, label)``; 1-based word ids, head 0 = top."""


@dataclass
class Sentence:
    """One sentence with an optional syntactic tree and semantic graph.

    All per-word lists have length ``n = len(words)``; word ids are 1-based.

    Attributes:
        words: word forms, length n.
        lemmas: lemmas, length n, or ``None`` if the format has none.
        pos: part-of-speech tags (UPOS for CoNLL-U, PTB tags for SDP), length n.
            ``None`` at construction is replaced by ``["_"] * n``.
        heads: syntactic head of each word (0 = root, else 1..n), length n, or
            ``None`` (e.g. SDP files have no syntax tree).
        deprels: syntactic relation of each word to its head, length n, or ``None``.
        arcs: semantic graph as ``(head, modifier, label)`` triples with
            ``0 <= head <= n`` and ``1 <= modifier <= n``; head 0 marks the
            modifier as a top node.  ``None`` if the format has no graph.
        sent_id: sentence identifier (``# sent_id`` in CoNLL-U, ``#2xxxxxxx`` in
            SDP, without the ``#``), or ``None``.
        extra: format-specific columns kept for faithful writing, each a list of
            length n: ``"xpos"``, ``"feats"``, ``"misc"`` (CoNLL-U) and
            ``"frame"``, ``"pred"`` (SDP; pred is ``"+"``/``"-"``).
        comments: comment lines (without the leading ``#``) other than the
            sentence id, in file order, or ``None``.
    """

    words: list[str]
    lemmas: list[str] | None = None
    pos: list[str] | None = None
    heads: list[int] | None = None
    deprels: list[str] | None = None
    arcs: list[Arc] | None = None
    sent_id: str | None = None
    extra: dict[str, list[str]] = field(default_factory=dict)
    comments: list[str] | None = None

    def __post_init__(self) -> None:
        n = len(self.words)
        if self.pos is None:
            self.pos = ["_"] * n
        for name in ("lemmas", "pos", "heads", "deprels"):
            value = getattr(self, name)
            if value is not None and len(value) != n:
                raise ValueError(
                    f"sentence {self.sent_id!r}: {name} has length {len(value)}, "
                    f"expected {n} (number of words)"
                )
        for key, value in self.extra.items():
            if len(value) != n:
                raise ValueError(
                    f"sentence {self.sent_id!r}: extra[{key!r}] has length {len(value)}, "
                    f"expected {n}"
                )

    def __len__(self) -> int:
        return len(self.words)

    @property
    def tops(self) -> list[int]:
        """Top nodes: modifiers of arcs with head 0 (empty if no graph)."""
        return sorted({m for h, m, _ in self.arcs or () if h == 0})


# ---------------------------------------------------------------------------
# tree checks
# ---------------------------------------------------------------------------


def check_tree(heads: list[int]) -> str | None:
    """Check that ``heads`` encodes a dependency tree with exactly one root.

    Args:
        heads: ``heads[i]`` is the head (0 = root, else 1..n) of word ``i + 1``.

    Returns:
        ``None`` if valid, else a short description of the problem
        ("no root", "multiple roots (words 2, 5)", "cycle through words 3, 4",
        "head out of range ...").
    """
    n = len(heads)
    for i, h in enumerate(heads, start=1):
        if not 0 <= h <= n:
            return f"head {h} of word {i} out of range 0..{n}"
    roots = [i for i, h in enumerate(heads, start=1) if h == 0]
    if not roots:
        return "no root (no word has head 0)"
    if len(roots) > 1:
        return "multiple roots (words " + ", ".join(map(str, roots)) + ")"
    # every word must reach the root; colour: 0 unseen, 1 on stack, 2 done
    state = [0] * (n + 1)
    state[0] = 2
    for start in range(1, n + 1):
        path = []
        v = start
        while state[v] == 0:
            state[v] = 1
            path.append(v)
            v = heads[v - 1]
        if state[v] == 1:  # found a cycle containing v
            cyc = [v]
            u = heads[v - 1]
            while u != v:
                cyc.append(u)
                u = heads[u - 1]
            return "cycle through words " + ", ".join(map(str, sorted(cyc)))
        for u in path:
            state[u] = 2
    return None


def is_projective(heads: list[int]) -> bool:
    """Whether the tree ``heads`` (0 = root, 1-based) has no crossing arcs.

    The artificial root sits at position 0, so an arc ``0 -> r`` crosses every
    arc that spans ``r`` from outside.
    """
    spans = [(min(h, m), max(h, m)) for m, h in enumerate(heads, start=1)]
    for a, (l1, r1) in enumerate(spans):
        for l2, r2 in spans[a + 1 :]:
            if l1 < l2 < r1 < r2 or l2 < l1 < r2 < r1:
                return False
    return True
