"""First-order arc-factored parsers: arc/label scorers, a syntactic tree parser and a semantic
graph parser.

Layout everywhere: ``scores[b, h, m]`` of shape ``[B, n+1, n+1]`` is the arc ``h -> m`` with
node 0 the root, as in :class:`spigot.DependencyTree` and :class:`spigot.DependencyGraph`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from spigot.structures import DependencyGraph, DependencyTree
from spigot.structures._arcs import arc_mask, heads_to_arcs

__all__ = [
    "BiaffineArcScorer",
    "MLPArcScorer",
    "SemanticParser",
    "SyntacticParser",
    "make_scorer",
    "tree_arcs",
]


def tree_arcs(heads: Tensor, lengths: Tensor, like: Tensor) -> Tensor:
    """Head indices ``[B, n+1]`` -> the 0/1 tree ``[B, n+1, n+1]`` (dtype/device of ``like``)."""
    return heads_to_arcs(heads, lengths, like)


class MLPArcScorer(nn.Module):
    """``s[h, m] = v^T tanh(U x_h + V x_m + b)`` (Kiperwasser & Goldberg 2016; NeurboParser).

    ``n_out = 1`` gives ``[B, n+1, n+1]`` arc scores, ``n_out = L`` label scores ``[..., L]``.
    """

    def __init__(self, in_dim: int, hidden: int, n_out: int = 1) -> None:
        super().__init__()
        self.head = nn.Linear(in_dim, hidden)
        self.mod = nn.Linear(in_dim, hidden, bias=False)
        self.out = nn.Linear(hidden, n_out)
        self.n_out = n_out

    def forward(self, x: Tensor) -> Tensor:
        """All pairs: ``x [B, N, D]`` -> ``[B, N, N]`` (``n_out = 1``) or ``[B, N, N, n_out]``."""
        h = self.head(x).unsqueeze(2)
        m = self.mod(x).unsqueeze(1)
        s = self.out(torch.tanh(h + m))
        return s.squeeze(-1) if self.n_out == 1 else s

    def pairs(self, x: Tensor, b: Tensor, h: Tensor, m: Tensor) -> Tensor:
        """Scores of the listed pairs ``(b, h, m)`` only: ``[K, n_out]``."""
        return self.out(torch.tanh(self.head(x[b, h]) + self.mod(x[b, m])))


class BiaffineArcScorer(nn.Module):
    """``s[h, m] = [a_h; 1]^T W [d_m; 1]`` over ReLU-MLP projections (Dozat & Manning 2017)."""

    def __init__(self, in_dim: int, hidden: int, n_out: int = 1) -> None:
        super().__init__()
        self.head = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU())
        self.mod = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU())
        self.weight = nn.Parameter(torch.zeros(n_out, hidden + 1, hidden + 1))
        self.n_out = n_out

    @staticmethod
    def _aug(x: Tensor) -> Tensor:
        return torch.cat([x, torch.ones_like(x[..., :1])], dim=-1)

    def forward(self, x: Tensor) -> Tensor:
        a, d = self._aug(self.head(x)), self._aug(self.mod(x))
        s = torch.einsum("bhi,oij,bmj->bhmo", a, self.weight, d)
        return s.squeeze(-1) if self.n_out == 1 else s

    def pairs(self, x: Tensor, b: Tensor, h: Tensor, m: Tensor) -> Tensor:
        a, d = self._aug(self.head(x[b, h])), self._aug(self.mod(x[b, m]))
        return torch.einsum("ki,oij,kj->ko", a, self.weight, d)


def make_scorer(kind: str, in_dim: int, hidden: int, n_out: int = 1) -> nn.Module:
    """``"mlp"`` -> :class:`MLPArcScorer`, ``"biaffine"`` -> :class:`BiaffineArcScorer`."""
    if kind == "mlp":
        return MLPArcScorer(in_dim, hidden, n_out)
    if kind == "biaffine":
        return BiaffineArcScorer(in_dim, hidden, n_out)
    raise ValueError(f"unknown scorer {kind!r}; use 'mlp' or 'biaffine'")


class SyntacticParser(nn.Module):
    """Graph-based first-order dependency parser (unlabeled; relation labels optional).

    Args:
        encoder: a :class:`~spigot.models.encoder.BiLSTMEncoder`.
        scorer: ``"mlp"`` or ``"biaffine"``.
        mlp_dim: scorer hidden size.
        tree: the :class:`~spigot.DependencyTree` to decode with.
        n_labels: number of relation labels *including* id 0 (``<none>``); 0 = unlabeled.
        label_mlp_dim: label scorer hidden size.
    """

    def __init__(
        self,
        encoder: nn.Module,
        *,
        scorer: str = "mlp",
        mlp_dim: int = 100,
        tree: DependencyTree | None = None,
        n_labels: int = 0,
        label_mlp_dim: int = 100,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.arc_scorer = make_scorer(scorer, encoder.output_dim, mlp_dim)
        self.tree = tree if tree is not None else DependencyTree()
        self.label_scorer = (
            make_scorer(scorer, encoder.output_dim, label_mlp_dim, n_labels - 1)
            if n_labels > 1
            else None
        )

    def forward(self, words: Tensor, pos: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """Returns ``(h, scores)``: encoder states ``[B, n+1, D]`` and arc scores."""
        h = self.encoder(words, pos, lengths)
        return h, self.arc_scorer(h)

    def loss(self, scores: Tensor, gold: Tensor, lengths: Tensor, kind: str = "hinge") -> Tensor:
        """Per-sentence structured loss ``[B]`` against the gold tree ``gold`` (0/1 arcs).

        * ``"hinge"``: cost-augmented decoding with Hamming cost 1 on every non-gold arc,
          ``max_z (s + cost) · z - s · gold`` (>= 0);
        * ``"crf"``: ``log Z(s) - s · gold`` (the tree CRF negative log-likelihood).
        """
        gold_score = (scores * gold).sum(dim=(1, 2))
        if kind == "hinge":
            mask = self.tree.mask(scores, lengths)
            cost = torch.where(mask, 1.0 - gold, 0.0)
            aug = scores + cost
            z_hat = self.tree.argmax(aug, lengths)
            return (aug * z_hat).sum(dim=(1, 2)) - gold_score
        if kind == "crf":
            return self.tree.log_partition(scores, lengths) - gold_score
        raise ValueError(f"unknown syntactic loss {kind!r}; use 'hinge' or 'crf'")

    def label_loss(self, h: Tensor, heads: Tensor, deprels: Tensor, mask: Tensor) -> Tensor:
        """Summed cross-entropy of the relation labels of the words in ``mask`` (gold heads)."""
        if self.label_scorer is None:
            return h.new_zeros(())
        b, m = mask.nonzero(as_tuple=True)
        logits = self.label_scorer.pairs(h, b, heads[b, m], m)
        return F.cross_entropy(logits, deprels[b, m] - 1, reduction="sum")

    def predict_labels(self, h: Tensor, heads: Tensor, mask: Tensor) -> Tensor | None:
        """Relation label ids ``[B, n+1]`` (0 off ``mask``) for the given heads, or ``None``."""
        if self.label_scorer is None:
            return None
        out = torch.zeros_like(heads)
        b, m = mask.nonzero(as_tuple=True)
        if len(b):
            out[b, m] = self.label_scorer.pairs(h, b, heads[b, m], m).argmax(-1) + 1
        return out


class SemanticParser(nn.Module):
    """First-order arc-factored semantic dependency parser (NeurboParser's basic model).

    Unlabeled arc scores ``s[h, m]`` decide the arcs (positive score, as
    :class:`spigot.DependencyGraph` decodes); labeled scores pick a label for each predicted
    arc. Loss: logistic loss on every candidate arc plus cross-entropy on the labels of gold
    arcs.

    The scorers read ``x = [r; features]``: the encoder states ``r [B, n+1, D]`` and, when
    ``feature_dim > 0``, per-word features ``[B, n+1, feature_dim]`` computed from ``r`` by the
    caller (pipeline 1: the syntactic head's state, :mod:`spigot.models.coupling`). Hence the
    two steps :meth:`encode` and :meth:`score`; :meth:`forward` chains them.

    Args:
        encoder: its own :class:`~spigot.models.encoder.BiLSTMEncoder`.
        n_labels: number of semantic labels including id 0 (``<none>``).
        scorer, mlp_dim, label_mlp_dim: scorer type and sizes.
        feature_dim: size of the features appended to the encoder states before the scorers
            (0 = none).
    """

    def __init__(
        self,
        encoder: nn.Module,
        n_labels: int,
        *,
        scorer: str = "mlp",
        mlp_dim: int = 100,
        label_mlp_dim: int = 100,
        feature_dim: int = 0,
    ) -> None:
        super().__init__()
        if n_labels < 2:
            raise ValueError("the semantic parser needs at least one label (n_labels >= 2)")
        self.encoder = encoder
        self.feature_dim = feature_dim
        in_dim = encoder.output_dim + feature_dim
        self.arc_scorer = make_scorer(scorer, in_dim, mlp_dim)
        self.label_scorer = make_scorer(scorer, in_dim, label_mlp_dim, n_labels - 1)
        self.graph = DependencyGraph()

    def encode(
        self, words: Tensor, pos: Tensor, lengths: Tensor, extra: Tensor | None = None
    ) -> Tensor:
        """Encoder states ``r [B, n+1, D]`` (``extra``: the encoder's extra input, if any)."""
        return self.encoder(words, pos, lengths, extra)

    def score(self, r: Tensor, features: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``(x, arc_scores)``: the scorers' input ``x = [r; features]``
        ``[B, n+1, D + feature_dim]`` (what :meth:`loss` and :meth:`decode` take) and the arc
        scores ``[B, n+1, n+1]``."""
        if (features is None) != (self.feature_dim == 0):
            raise ValueError(
                f"this semantic parser expects {self.feature_dim} scorer features per word, "
                f"got {'none' if features is None else features.shape[-1]}"
            )
        x = r if features is None else torch.cat([r, features], dim=-1)
        return x, self.arc_scorer(x)

    def forward(
        self,
        words: Tensor,
        pos: Tensor,
        lengths: Tensor,
        extra: Tensor | None = None,
        features: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """:meth:`encode` then :meth:`score`: ``(x, arc_scores)``."""
        return self.score(self.encode(words, pos, lengths, extra), features)

    def loss(
        self, r: Tensor, scores: Tensor, arcs: Tensor, labels: Tensor, lengths: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Summed ``(arc logistic loss, label cross-entropy)`` over the batch.

        ``r`` is the scorers' input ``[B, n+1, D + feature_dim]`` from :meth:`score`."""
        mask = arc_mask(lengths, scores.shape[-1], scores.device)
        arc_loss = F.binary_cross_entropy_with_logits(scores[mask], arcs[mask], reduction="sum")
        b, h, m = (arcs > 0).nonzero(as_tuple=True)
        if len(b) == 0:
            return arc_loss, scores.new_zeros(())
        logits = self.label_scorer.pairs(r, b, h, m)
        label_loss = F.cross_entropy(logits, labels[b, h, m] - 1, reduction="sum")
        return arc_loss, label_loss

    def decode(self, r: Tensor, scores: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """``(arcs 0/1 [B, n+1, n+1], label ids [B, n+1, n+1])``; labels 0 where no arc.

        ``r`` is the scorers' input from :meth:`score`."""
        arcs = self.graph.argmax(scores, lengths)
        labels = torch.zeros(arcs.shape, dtype=torch.long, device=arcs.device)
        b, h, m = (arcs > 0).nonzero(as_tuple=True)
        if len(b):
            labels[b, h, m] = self.label_scorer.pairs(r, b, h, m).argmax(-1) + 1
        return arcs, labels
