"""Predictions written into the lines of their CoNLL-U input.

:func:`format_conllu` (the writer of :mod:`spigot.data.conllu`) renders a :class:`Sentence`
as it was read: multiword-token lines (``1-2``) and empty nodes (``8.1``) are gone, and the
``sent_id`` comment comes first. ``spigot predict`` wants its output to be the input with the
predictions in it, so :func:`splice_conllu` goes through the input's lines again and replaces
only the ``HEAD``, ``DEPREL`` and ``DEPS`` columns of the word lines:

* comments, multiword-token lines and the other columns are copied unchanged, in their order;
* the ``DEPS`` of empty-node lines becomes ``_``: the model predicts no arc to or from an
  empty node, and the input's would be gold edges mixed into the predicted graph;
* a sentence without a prediction (the reader skipped it, or it was too long to parse)
  gets ``_`` in the columns it has no prediction for.

Sentences are matched with the input's blocks in order, by their word forms and ``sent_id``,
so a block the reader skipped is recognised. Blocks are separated by exactly one blank line
in the output.

This module does not import torch.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

from ._text import WHITESPACE, is_blank
from .sentence import Sentence

__all__ = ["splice_conllu"]


def _blocks(lines: Iterable[str]) -> Iterator[list[str]]:
    block: list[str] = []
    for line in lines:
        if is_blank(line):
            if block:
                yield block
            block = []
        else:
            block.append(line)
    if block:
        yield block


def _is_word(cols: list[str]) -> bool:
    return len(cols) == 10 and cols[0].isascii() and cols[0].isdigit()


def _deps(incoming: list[tuple[int, str]]) -> str:
    return "|".join(f"{h}:{lab}" for h, lab in sorted(incoming)) if incoming else "_"


def _splice_block(block: list[str], pred: Sentence | None) -> list[str]:
    """``block`` with the predicted columns of ``pred`` (``None``: ``_`` in all three)."""
    n = sum(_is_word(line.split("\t")) for line in block if not line.startswith("#"))
    incoming: list[list[tuple[int, str]]] = [[] for _ in range(n + 1)]
    if pred is not None:
        for h, m, lab in pred.arcs or ():
            incoming[m].append((h, lab))
    out: list[str] = []
    i = 0
    for line in block:
        cols = line.split("\t")
        if line.startswith("#") or len(cols) != 10:
            out.append(line)
            continue
        if "." in cols[0]:  # empty node: no predicted arcs
            cols[8] = "_"
        elif _is_word(cols):
            heads = pred.heads if pred is not None else None
            rels = pred.deprels if pred is not None else None
            cols[6] = str(heads[i]) if heads is not None else "_"
            cols[7] = rels[i] if heads is not None and rels is not None else "_"
            cols[8] = _deps(incoming[i + 1]) if pred is not None and pred.arcs is not None else "_"
            i += 1
        out.append("\t".join(cols))
    return out


def _sent_id(block: list[str]) -> str | None:
    for line in block:
        if line.startswith("#"):
            key, eq, value = line[1:].partition("=")
            if eq and key.strip(WHITESPACE) == "sent_id":
                return value.strip(WHITESPACE)
    return None


def _matches(block: list[str], forms: list[str], pred: Sentence) -> bool:
    if list(pred.words) != forms:
        return False
    return pred.sent_id is None or _sent_id(block) in (None, pred.sent_id)


def _forms(block: list[str]) -> list[str]:
    rows = (line.split("\t") for line in block if not line.startswith("#"))
    return [cols[1] for cols in rows if _is_word(cols)]


def splice_conllu(
    lines: Iterable[str], predicted: Sequence[Sentence], source: str = "<input>"
) -> str:
    """The CoNLL-U text of ``lines`` with the trees and graphs of ``predicted``.

    Args:
        lines: the input's lines without terminators (e.g.
            :func:`spigot.data._text.iter_file_lines`), already read successfully by the
            CoNLL-U reader.
        predicted: one sentence per sentence the reader returned, in order, with the predicted
            ``heads``, ``deprels`` and ``arcs`` (``None`` where nothing was predicted).
        source: the input's name, for the error message.

    Returns:
        The text, ending with a blank line.

    Raises:
        ValueError: ``predicted`` does not match the input's blocks (the message names
            ``source``).
    """
    out: list[str] = []
    k = 0
    for block in _blocks(lines):
        forms = _forms(block)
        pred = predicted[k] if k < len(predicted) else None
        if forms and pred is not None and _matches(block, forms, pred):
            out += _splice_block(block, pred)
            k += 1
        else:  # skipped by the reader (e.g. an invalid tree), or no word lines at all
            out += _splice_block(block, None) if forms else block
        out.append("")
    if k != len(predicted):
        raise ValueError(
            f"{source}: cannot match {len(predicted) - k} of {len(predicted)} predicted "
            "sentences with the sentences of the input (were they read from it?)"
        )
    return "\n".join(out) + ("\n" if out else "")
