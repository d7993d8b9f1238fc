"""Per-sentence scores of a pipeline-1 run, for significance tests and breakdowns.

At the end of training, :func:`spigot.pipelines.syn2sem.fit.fit` scores the dev and test
sentences with the dev-selected model and writes one record per sentence to
``sentences.jsonl.gz`` in the run directory (:data:`SENTENCES_FILE`). A record holds counts,
not scores, so that any subset or resample of sentences gives its exact corpus-level LF, UF and
UAS by summing them (as :class:`spigot.metrics.SemanticScorer` and
:class:`~spigot.metrics.AttachmentScorer` do; the counts come from those scorers, one sentence
at a time):

================  ==============================================================================
key               value
================  ==============================================================================
``split``         ``"dev"`` or ``"test"``
``i``             index of the sentence in its split (as read, after alignment)
``sent_id``       the sentence id (``None`` if it has none)
``genre``         :func:`spigot.pipelines.syn2sem.data.genre` of the id (EWT: ``answers`` ...)
``words``         words of the sentence
``gold``          gold arcs (labeled; SDP 2015 scorer: top arcs count, their labels do not)
``pred``          predicted arcs
``correct``       predicted arcs with the gold head, modifier and label
``gold_u``        the same three, unlabeled (``(head, modifier)`` pairs)
``pred_u``
``correct_u``
``nt_*``          the six counts above restricted to *non-tree* arcs: arcs ``h -> m`` that the
                  gold basic tree does not link in either direction (neither ``head(m) = h`` nor
                  ``head(h) = m``), for gold and predicted arcs alike (``None`` without a gold
                  tree)
``heads``         words whose predicted syntactic head is the gold one (``None`` without a
                  syntactic parser, mode ``none``, or without a gold tree)
``tokens``        words scored for UAS (all of them: punctuation counts)
================  ==============================================================================

Sentences skipped for being longer than ``data.max_length`` are not scored, as in
``Syn2SemTask.evaluate``, and have no record. The file is gzip with
a zero time stamp, so the same scores give the same bytes.
"""

from __future__ import annotations

import gzip
import io
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from spigot.data import Arc, Sentence
from spigot.metrics import AttachmentScorer, SemanticScorer
from spigot.pipelines.base import SENTENCES_FILE
from spigot.pipelines.syn2sem.data import genre
from spigot.training import atomic_write_bytes

__all__ = [
    "COUNT_KEYS",
    "SENTENCES_FILE",
    "non_tree_arcs",
    "read_sentences",
    "sentence_record",
    "write_sentences",
]


COUNT_KEYS = ("gold", "pred", "correct", "gold_u", "pred_u", "correct_u")
"""The semantic counts of a record (``nt_`` + each: the same on non-tree arcs)."""

_SCORER_KEYS = (
    "n_gold",
    "n_pred",
    "n_correct",
    "n_gold_unlabeled",
    "n_pred_unlabeled",
    "n_correct_unlabeled",
)


def non_tree_arcs(arcs: Iterable[Arc], heads: Sequence[int]) -> list[Arc]:
    """The arcs ``(h, m, label)`` that the tree ``heads`` (1-based words, 0 = root) does not
    link in either direction: neither ``heads[m - 1] == h`` nor ``heads[h - 1] == m``."""
    out = []
    for arc in arcs:
        h, m = int(arc[0]), int(arc[1])
        if heads[m - 1] == h or (h > 0 and heads[h - 1] == m):
            continue
        out.append(arc)
    return out


def _counts(gold: Sequence[Arc], pred: Sequence[Arc]) -> list[int]:
    scorer = SemanticScorer()
    scorer.update(gold, pred)
    res = scorer.compute()
    return [int(res[k]) for k in _SCORER_KEYS]


def sentence_record(
    gold: Sentence,
    pred_arcs: Sequence[Arc],
    pred_heads: Sequence[int] | None,
    *,
    split: str,
    index: int,
    exclude_pos: Sequence[str] = (),
) -> dict[str, Any]:
    """The record of one scored sentence (see the module docstring).

    Args:
        gold: the gold sentence (``arcs``, and ``heads`` for the tree counts).
        pred_arcs: the predicted semantic arcs ``(h, m, label)``.
        pred_heads: the predicted syntactic heads (``None``: no syntactic parser).
        split, index: where the sentence comes from.
        exclude_pos: gold POS tags whose words UAS does not score (as in ``evaluate``).
    """
    rec: dict[str, Any] = {
        "split": split,
        "i": index,
        "sent_id": gold.sent_id,
        "genre": genre(gold.sent_id),
        "words": len(gold),
    }
    gold_arcs = list(gold.arcs or ())
    rec.update(zip(COUNT_KEYS, _counts(gold_arcs, pred_arcs), strict=True))
    if gold.heads is not None:
        nt = _counts(non_tree_arcs(gold_arcs, gold.heads), non_tree_arcs(pred_arcs, gold.heads))
    else:
        nt = [None] * len(COUNT_KEYS)
    rec.update(zip((f"nt_{k}" for k in COUNT_KEYS), nt, strict=True))
    rec["heads"] = rec["tokens"] = None
    if gold.heads is not None and pred_heads is not None:
        syn = AttachmentScorer(exclude_pos)
        syn.update(gold.heads, pred_heads, pos=gold.pos)
        rec["heads"], rec["tokens"] = syn.n_head, syn.n_tokens
    return rec


def write_sentences(records: Iterable[dict[str, Any]], path: str | os.PathLike) -> None:
    """Write records as gzipped JSON lines, atomically and reproducibly (time stamp 0)."""
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as f:
        for rec in records:
            f.write((json.dumps(rec, separators=(",", ":")) + "\n").encode("utf-8"))
    atomic_write_bytes(buf.getvalue(), path)


def read_sentences(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The records of a file written by :func:`write_sentences` (or a run directory)."""
    p = Path(path)
    if p.is_dir():
        p = p / SENTENCES_FILE
    with gzip.open(p, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
