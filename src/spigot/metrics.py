"""Evaluation metrics for syntactic trees and semantic dependency graphs.

Pure Python / numpy; torch tensors are accepted by the ``update_batch``
methods (converted with ``numpy.asarray`` after ``.cpu()``), but torch is
never imported.

Syntax: UAS / LAS over words, punctuation *included* by default (pass
``exclude_pos={"PUNCT"}`` or PTB punctuation tags to exclude by gold POS), plus
unlabeled / labeled exact match per sentence.

Semantics: the SemEval 2015 SDP scorer (Oepen et al. 2015, Kuhlmann's
``score.py`` / ``sdp.tools.Scorer``):

* each sentence contributes the *set* of its arcs ``(head, modifier, label)``;
  labeled precision = common / predicted, recall = common / gold, summed over
  sentences (micro average), F1 the harmonic mean;
* unlabeled scores compare the sets of ``(head, modifier)`` pairs;
* top nodes are arcs from the root (head 0).  As in the official scorer
  ("scores including virtual dependencies to top nodes"), a top arc is one
  virtual arc whose label is *not* compared (``labeled_tops=False``; set it to
  True to compare top labels too); ``include_tops=False`` gives the scorer's
  "excluding virtual dependencies" variant;
* LM / UM: fraction of sentences whose labeled / unlabeled arc set equals the
  gold set exactly.

Zero division: the official scorers return NaN for 0/0 (``score.py`` guards
with ``float('NaN')``; the Java scorer divides doubles, also NaN).  Here the
default is ``zero_division=0.0``: precision is 0 when nothing is predicted,
recall is 0 when the gold has no arcs, and F1 is 0 when P + R = 0, which keeps
training logs and averages finite.  Pass ``zero_division=float("nan")`` to
reproduce the official behaviour.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

__all__ = [
    "AttachmentScorer",
    "SemanticScorer",
    "attachment_scores",
    "prf",
    "sdp_scores",
]

_VIRTUAL = "-VIRTUAL-"


def prf(
    n_correct: int, n_pred: int, n_gold: int, zero_division: float = 0.0
) -> tuple[float, float, float]:
    """Precision, recall and F1 from counts (see the module docstring for 0/0)."""
    p = n_correct / n_pred if n_pred else zero_division
    r = n_correct / n_gold if n_gold else zero_division
    if np.isnan(p) or np.isnan(r):
        f = float("nan")
    elif p + r > 0:
        f = 2 * p * r / (p + r)
    else:
        f = 0.0
    return float(p), float(r), float(f)


def _as_list(x: Any) -> list:
    if hasattr(x, "detach"):  # torch tensor
        x = x.detach().cpu().numpy()
    if isinstance(x, np.ndarray):
        return x.tolist()
    return list(x)


# ---------------------------------------------------------------------------
# syntax
# ---------------------------------------------------------------------------


class AttachmentScorer:
    """Accumulates UAS / LAS (and exact match) over sentences.

    Args:
        exclude_pos: gold POS tags whose words are not scored (e.g.
            ``{"PUNCT"}``); default: score every word.

    ``compute()`` returns ``{"uas", "las", "uem", "lem", "n_tokens",
    "n_sentences"}``; UAS/LAS are fractions in [0, 1] (0.0 when no token was
    scored), ``las`` is ``nan`` if no labels were ever given.
    """

    def __init__(self, exclude_pos: Iterable[str] | None = None) -> None:
        self.exclude_pos = frozenset(exclude_pos or ())
        self.reset()

    def reset(self) -> None:
        self.n_tokens = 0
        self.n_head = 0
        self.n_label = 0
        self.n_sentences = 0
        self.n_uem = 0
        self.n_lem = 0
        self.labeled = False

    def update(
        self,
        gold: Any,
        pred: Any,
        gold_labels: Sequence[Any] | None = None,
        pred_labels: Sequence[Any] | None = None,
        pos: Sequence[str] | None = None,
    ) -> None:
        """Add one sentence.

        Args:
            gold, pred: either objects with ``heads`` (and ``deprels``, and for
                ``gold`` ``pos``) attributes, e.g. :class:`spigot.data.Sentence`,
                or sequences of heads (length n, 0 = root, 1-based).
            gold_labels, pred_labels: relation labels (length n) when passing
                plain head sequences; any hashable values (strings or ids).
            pos: gold POS tags (length n), used with ``exclude_pos``.
        """
        if hasattr(gold, "heads"):
            if gold_labels is None:
                gold_labels = gold.deprels
            if pos is None:
                pos = gold.pos
            gold = gold.heads
        if hasattr(pred, "heads"):
            if pred_labels is None:
                pred_labels = pred.deprels
            pred = pred.heads
        g, p = _as_list(gold), _as_list(pred)
        if len(g) != len(p):
            raise ValueError(f"gold has {len(g)} heads but prediction has {len(p)}")
        labeled = gold_labels is not None and pred_labels is not None
        if labeled:
            gl, pl = _as_list(gold_labels), _as_list(pred_labels)
            if not (len(gl) == len(pl) == len(g)):
                raise ValueError("label sequences must have the same length as the heads")
            self.labeled = True
        uem = lem = True
        for i in range(len(g)):
            if pos is not None and self.exclude_pos and pos[i] in self.exclude_pos:
                continue
            self.n_tokens += 1
            if g[i] == p[i]:
                self.n_head += 1
                if labeled and gl[i] == pl[i]:
                    self.n_label += 1
                else:
                    lem = False
            else:
                uem = lem = False
        self.n_sentences += 1
        self.n_uem += uem
        self.n_lem += lem and labeled

    def update_batch(
        self,
        gold_heads: Any,
        pred_heads: Any,
        lengths: Any,
        gold_labels: Any | None = None,
        pred_labels: Any | None = None,
    ) -> None:
        """Add a padded batch: heads ``[B, n+1]`` (position 0 = root, ignored),
        ``lengths [B]``, optional label ids ``[B, n+1]`` (numpy or torch)."""
        gh, ph, lens = _as_list(gold_heads), _as_list(pred_heads), _as_list(lengths)
        gl = _as_list(gold_labels) if gold_labels is not None else None
        pl = _as_list(pred_labels) if pred_labels is not None else None
        for b, k in enumerate(lens):
            k = int(k)
            self.update(
                gh[b][1 : k + 1],
                ph[b][1 : k + 1],
                gl[b][1 : k + 1] if gl is not None else None,
                pl[b][1 : k + 1] if pl is not None else None,
            )

    def compute(self) -> dict[str, float]:
        n = self.n_tokens
        return {
            "uas": self.n_head / n if n else 0.0,
            "las": (self.n_label / n if n else 0.0) if self.labeled else float("nan"),
            "uem": self.n_uem / self.n_sentences if self.n_sentences else 0.0,
            "lem": (self.n_lem / self.n_sentences if self.n_sentences else 0.0)
            if self.labeled
            else float("nan"),
            "n_tokens": n,
            "n_sentences": self.n_sentences,
        }


def attachment_scores(
    gold: Iterable[Any],
    pred: Iterable[Any],
    exclude_pos: Iterable[str] | None = None,
) -> dict[str, float]:
    """UAS/LAS over paired sentences (objects with ``heads``/``deprels``/``pos``
    or plain head sequences); see :class:`AttachmentScorer`."""
    scorer = AttachmentScorer(exclude_pos)
    for g, p in zip(gold, pred, strict=True):
        scorer.update(g, p)
    return scorer.compute()


# ---------------------------------------------------------------------------
# semantics
# ---------------------------------------------------------------------------


class SemanticScorer:
    """SemEval 2015 SDP scores, accumulated over sentences.

    Args:
        include_tops: count arcs with head 0 (top nodes) as arcs (default True,
            the official "including virtual dependencies" numbers).
        labeled_tops: compare the labels of top arcs (default False, as the
            official scorer, which gives every top arc the same virtual label).
        zero_division: value of P or R when its denominator is 0 (default 0.0;
            the official scorer gives NaN).

    ``compute()`` returns ``{"lp", "lr", "lf", "up", "ur", "uf", "lm", "um",
    "n_gold", "n_pred", "n_correct", "n_gold_unlabeled", "n_pred_unlabeled",
    "n_correct_unlabeled", "n_sentences"}``, scores as fractions in [0, 1].
    """

    def __init__(
        self,
        include_tops: bool = True,
        labeled_tops: bool = False,
        zero_division: float = 0.0,
    ) -> None:
        self.include_tops = include_tops
        self.labeled_tops = labeled_tops
        self.zero_division = zero_division
        self.reset()

    def reset(self) -> None:
        self.g = self.p = self.c = 0
        self.gu = self.pu = self.cu = 0
        self.n_sentences = self.lm = self.um = 0

    def _items(self, arcs: Any) -> set[tuple[int, int, Any]]:
        if hasattr(arcs, "arcs"):
            arcs = arcs.arcs or ()
        out: set[tuple[int, int, Any]] = set()
        for arc in arcs:
            h, m = int(arc[0]), int(arc[1])
            lab = arc[2] if len(arc) > 2 else None
            if h == 0:
                if not self.include_tops:
                    continue
                if not self.labeled_tops:
                    lab = _VIRTUAL
            out.add((h, m, lab))
        return out

    def update(self, gold: Any, pred: Any) -> None:
        """Add one sentence.

        Args:
            gold, pred: objects with an ``arcs`` attribute (e.g.
                :class:`spigot.data.Sentence`) or iterables of
                ``(head, modifier, label)`` triples (or ``(head, modifier)``
                pairs for unlabeled graphs).
        """
        gl, pl = self._items(gold), self._items(pred)
        gu = {(h, m) for h, m, _ in gl}
        pu = {(h, m) for h, m, _ in pl}
        self.g += len(gl)
        self.p += len(pl)
        self.c += len(gl & pl)
        self.gu += len(gu)
        self.pu += len(pu)
        self.cu += len(gu & pu)
        self.n_sentences += 1
        self.lm += gl == pl
        self.um += gu == pu

    def update_batch(
        self,
        gold_arcs: Any,
        pred_arcs: Any,
        lengths: Any,
        gold_labels: Any | None = None,
        pred_labels: Any | None = None,
    ) -> None:
        """Add a padded batch of adjacency matrices.

        Args:
            gold_arcs, pred_arcs: ``[B, n+1, n+1]``, nonzero (or > 0.5) where
                arc ``h -> m`` exists (``[b, h, m]``; row 0 = tops).
            lengths: ``[B]`` words per sentence (root excluded).
            gold_labels, pred_labels: optional label ids ``[B, n+1, n+1]``.
        """
        ga = _to_np(gold_arcs) > 0.5
        pa = _to_np(pred_arcs) > 0.5
        glab = _to_np(gold_labels) if gold_labels is not None else None
        plab = _to_np(pred_labels) if pred_labels is not None else None
        for b, k in enumerate(_as_list(lengths)):
            k = int(k)
            self.update(
                _matrix_arcs(ga[b], glab[b] if glab is not None else None, k),
                _matrix_arcs(pa[b], plab[b] if plab is not None else None, k),
            )

    def compute(self) -> dict[str, float]:
        z = self.zero_division
        lp, lr, lf = prf(self.c, self.p, self.g, z)
        up, ur, uf = prf(self.cu, self.pu, self.gu, z)
        n = self.n_sentences
        return {
            "lp": lp,
            "lr": lr,
            "lf": lf,
            "up": up,
            "ur": ur,
            "uf": uf,
            "lm": self.lm / n if n else z,
            "um": self.um / n if n else z,
            "n_gold": self.g,
            "n_pred": self.p,
            "n_correct": self.c,
            "n_gold_unlabeled": self.gu,
            "n_pred_unlabeled": self.pu,
            "n_correct_unlabeled": self.cu,
            "n_sentences": n,
        }


def _to_np(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _matrix_arcs(adj: np.ndarray, labels: np.ndarray | None, k: int) -> list[tuple[int, int, Any]]:
    sub = adj[: k + 1, 1 : k + 1]
    hs, ms = np.nonzero(sub)
    ms = ms + 1
    if labels is None:
        return [(int(h), int(m), None) for h, m in zip(hs, ms, strict=True)]
    return [(int(h), int(m), int(labels[h, m])) for h, m in zip(hs, ms, strict=True)]


def sdp_scores(
    gold: Iterable[Any],
    pred: Iterable[Any],
    *,
    include_tops: bool = True,
    labeled_tops: bool = False,
    zero_division: float = 0.0,
) -> dict[str, float]:
    """SDP 2015 scores over paired sentences/arc lists; see :class:`SemanticScorer`."""
    scorer = SemanticScorer(include_tops, labeled_tops, zero_division)
    for g, p in zip(gold, pred, strict=True):
        scorer.update(g, p)
    return scorer.compute()
