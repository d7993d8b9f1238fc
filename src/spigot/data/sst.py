"""Readers for the Stanford Sentiment Treebank (SST): PTB-style trees and SST-2 TSV files.

Two formats are read (plain or ``.gz``, strict UTF-8, lines cut as in
:mod:`spigot.data._text`):

* **trees** (``train.txt``, ``dev.txt``, ``test.txt`` of the official
  ``trainDevTestTrees_PTB.zip``): one tree per line, ``(label child ...)``
  with leaves ``(label word)`` and a 5-class sentiment label (``0`` very
  negative ... ``4`` very positive) on every node.  Tokens are separated by
  ASCII whitespace only: three SST leaves hold a NO-BREAK SPACE (U+00A0)
  inside the word (``"8\\u00a01\\/2"``), which stays part of the token.
  :func:`read_sst_trees` reads them, with ``binary=True`` as the usual SST-2
  sentence task: sentences whose root is neutral (2) are dropped, 0-1 become
  0 and 3-4 become 1 (6,920 / 872 / 1,821 sentences for train / dev / test).
* **TSV** (e.g. the derived ``sst2_{train,dev,test}.tsv``, or GLUE's SST-2):
  a header line naming a ``label`` and a ``sentence`` column (any order, other
  columns ignored), then one sentence a line, tab-separated, tokens separated
  by ASCII whitespace.  :func:`read_sst_tsv` reads them.

PTB escapes (both readers, ``unescape=True``, see :func:`unescape_ptb`): the
whole tokens ``-LRB-``/``-RRB-``, ``-LSB-``/``-RSB-``, ``-LCB-``/``-RCB-``
become ``(``/``)``, ``[``/``]``, ``{``/``}``, and inside a token ``\\/``
becomes ``/`` and ``\\*`` becomes ``*`` (in the SST files: ``-LRB-``,
``-RRB-``, ``\\/`` and ``\\*`` occur; the square and curly bracket escapes do
not, but are handled).  The quote tokens `````` (open) and ``''`` (close),
and the single quotes ````` and ``'``, are kept as they are: they are
distinct tokens of the treebank (and of GloVe's vocabulary), and mapping both
double quotes to ``"`` would lose the open/close distinction.  With
``unescape=False`` the tokens are the leaves exactly as written.

The derived ``sst2_*.tsv`` files hold the leaves of each tree joined by single
spaces with the escapes kept, so the tokens (and labels) read from a TSV file
equal those of :func:`read_sst_trees` with ``binary=True`` on the matching
tree file, with or without ``unescape``.

Malformed input (unbalanced parentheses, a label other than 0-4, an empty
line between two trees or rows, bytes that are not UTF-8, a corrupt ``.gz``
file, ...) raises :class:`~spigot.data.CorpusFormatError` naming the file and
line (and, for trees, the column).

This module does not import torch.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from ._text import CorpusFormatError, is_blank, iter_file_lines

__all__ = [
    "SSTExample",
    "parse_ptb_tree",
    "read_sst_trees",
    "read_sst_tsv",
    "unescape_ptb",
]

PathLike = str | os.PathLike

Span = tuple[int, int, int]
"""A tree node ``(start, end, label)``: tokens ``start:end`` (end exclusive), 5-class label."""

_PTB_TOKENS = {
    "-LRB-": "(",
    "-RRB-": ")",
    "-LSB-": "[",
    "-RSB-": "]",
    "-LCB-": "{",
    "-RCB-": "}",
}
_LABELS = {"0": 0, "1": 1, "2": 2, "3": 3, "4": 4}
_BINARY = {0: 0, 1: 0, 3: 1, 4: 1}  # 2 (neutral) is dropped
# a parenthesis, or a run of characters that are neither parentheses nor ASCII whitespace
_TOKEN = re.compile(r"[()]|[^() \t\r\f\v]+")
_SEPARATOR = re.compile(r"[ \t\r\f\v]+")


@dataclass
class SSTExample:
    """One SST sentence.

    Attributes:
        tokens: the words (leaves), PTB escapes undone unless read with ``unescape=False``.
        label: the sentence label: the root's 5-class label (0-4) for trees read with
            ``binary=False`` and for :func:`parse_ptb_tree`, 0/1 for trees read with
            ``binary=True``, the ``label`` column for a TSV file.
        root_label: the 5-class label of the tree's root (``None`` for a TSV row).
        spans: every node of the tree as ``(start, end, label)`` (tokens ``start:end``,
            end exclusive, 5-class label, also with ``binary=True``) in pre-order: the root
            ``(0, len(tokens), root_label)`` first, then each subtree left to right; a leaf
            ``i`` is ``(i, i + 1, label)``.  ``None`` for a TSV row.
    """

    tokens: list[str]
    label: int
    root_label: int | None = None
    spans: list[Span] | None = None

    def __len__(self) -> int:
        return len(self.tokens)


def unescape_ptb(token: str) -> str:
    """Undo the PTB escapes of one token (see the module docstring).

    ``-LRB-``/``-RRB-``/``-LSB-``/``-RSB-``/``-LCB-``/``-RCB-`` (whole tokens) become
    brackets; ``\\/`` and ``\\*`` become ``/`` and ``*``; quotes are left alone.
    """
    bracket = _PTB_TOKENS.get(token)
    if bracket is not None:
        return bracket
    if "\\" in token:
        token = token.replace("\\/", "/").replace("\\*", "*")
    return token


def parse_ptb_tree(
    line: str,
    *,
    source: str = "<string>",
    lineno: int | None = None,
    unescape: bool = True,
) -> SSTExample:
    """Parse one SST tree such as ``"(3 (2 It) (4 (4 rocks) (2 .)))"``.

    Every node is ``(label child ...)`` with one or more subtrees, or a leaf
    ``(label word)``; labels are one of ``0``-``4``; tokens are separated by ASCII
    whitespace (any amount).  The parser is iterative, so deep trees are fine.

    Args:
        line: the tree, on one line.
        source: file name for error messages.
        lineno: line number for error messages.
        unescape: undo the PTB escapes of the words (:func:`unescape_ptb`).

    Returns:
        An :class:`SSTExample` whose ``label`` and ``root_label`` are the root's label.

    Raises:
        CorpusFormatError: the line is not exactly one well-formed tree (message gives
            ``source:lineno`` and the 1-based column of the problem).
    """

    def err(col: int | None, problem: str) -> CorpusFormatError:
        where = f"column {col}: " if col is not None else ""
        return CorpusFormatError(source, lineno, where + problem)

    toks = [(m.group(), m.start() + 1) for m in _TOKEN.finditer(line)]
    if not toks:
        raise err(None, "empty line (expected a tree)")
    tokens: list[str] = []
    spans: list[Span] = []
    stack: list[list[int]] = []  # [index in spans, number of children, column] of open nodes
    done = False  # the root has been closed
    i, n = 0, len(toks)
    while i < n:
        tok, col = toks[i]
        if done:
            if tok == ")":
                raise err(col, "unbalanced parentheses: ')' without a matching '('")
            raise err(col, f"text after the end of the tree: {tok[:40]!r}")
        if tok == "(":
            if i + 1 >= n or toks[i + 1][0] in "()":
                raise err(col, "'(' not followed by a label")
            label_tok, label_col = toks[i + 1]
            label = _LABELS.get(label_tok)
            if label is None:
                raise err(label_col, f"label {label_tok[:40]!r} is not one of 0-4")
            start = len(tokens)
            i += 2
            if i < n and toks[i][0] not in "()":  # a leaf (label word)
                word, word_col = toks[i]
                if i + 1 >= n or toks[i + 1][0] != ")":
                    found = repr(toks[i + 1][0][:40]) if i + 1 < n else "the end of the line"
                    problem = f"leaf word {word[:40]!r} must be followed by ')', found {found}"
                    raise err(word_col, problem)
                tokens.append(unescape_ptb(word) if unescape else word)
                spans.append((start, start + 1, label))
                i += 2
                if stack:
                    stack[-1][1] += 1
                else:
                    done = True
            else:  # an internal node: its end is set when it closes
                stack.append([len(spans), 0, col])
                spans.append((start, start, label))
        elif tok == ")":
            if not stack:
                raise err(col, "unbalanced parentheses: ')' without a matching '('")
            index, n_children, _ = stack.pop()
            if n_children == 0:
                raise err(col, "empty node: '(label)' with neither a word nor a subtree")
            start, _, label = spans[index]
            spans[index] = (start, len(tokens), label)
            i += 1
            if stack:
                stack[-1][1] += 1
            else:
                done = True
        elif not stack:
            raise err(col, f"expected '(' (start of a tree), found {tok[:40]!r}")
        else:
            raise err(col, f"word {tok[:40]!r} beside a subtree (a leaf is '(label word)')")
    if stack:
        problem = f"unbalanced parentheses: {len(stack)} '(' not closed (the last one opens here)"
        raise err(stack[-1][2], problem)
    root = spans[0][2]
    return SSTExample(tokens=tokens, label=root, root_label=root, spans=spans)


def _lines(path: PathLike, source: str) -> list[tuple[int, str]]:
    """Non-blank ``(lineno, line)`` of a file; blank lines are only allowed at its end."""
    out: list[tuple[int, str]] = []
    blank: int | None = None
    for lineno, line in enumerate(iter_file_lines(path, source), start=1):
        if is_blank(line):
            if blank is None:
                blank = lineno
            continue
        if blank is not None:
            raise CorpusFormatError(source, blank, "empty line in the middle of the file")
        out.append((lineno, line))
    return out


def read_sst_trees(
    path: PathLike, *, binary: bool = False, unescape: bool = True
) -> list[SSTExample]:
    """Read an SST tree file (``train.txt``, ``dev.txt``, ``test.txt``; ``.gz`` works too).

    Args:
        path: the file, one tree per line (blank lines are allowed only at the end).
        binary: the SST-2 sentence task: drop sentences whose root label is 2 (neutral) and
            set ``label`` to 0 for roots 0-1 and to 1 for roots 3-4.  ``root_label`` and
            ``spans`` keep the 5-class labels.  With ``False`` (default) every sentence is
            kept and ``label`` is the 5-class root label.
        unescape: undo the PTB escapes of the words (:func:`unescape_ptb`).

    Returns:
        One :class:`SSTExample` per (kept) tree, in file order.

    Raises:
        CorpusFormatError: a malformed tree (see :func:`parse_ptb_tree`), an empty line
            followed by more trees, a file without trees, bytes that are not UTF-8, or a
            corrupt ``.gz`` file; the message names the file and line.
    """
    source = str(path)
    out: list[SSTExample] = []
    lines = _lines(path, source)
    if not lines:
        raise CorpusFormatError(source, None, "file contains no trees")
    for lineno, line in lines:
        ex = parse_ptb_tree(line, source=source, lineno=lineno, unescape=unescape)
        if binary:
            assert ex.root_label is not None
            if ex.root_label not in _BINARY:
                continue
            ex.label = _BINARY[ex.root_label]
        out.append(ex)
    return out


def read_sst_tsv(path: PathLike, *, unescape: bool = True) -> list[SSTExample]:
    """Read a sentence-level SST TSV file (``sst2_train.tsv``, GLUE ``SST-2/dev.tsv``, ...).

    The first line is a header naming (at least) a ``label`` and a ``sentence`` column;
    each other line has as many tab-separated fields as the header, an integer label 0-4
    (0/1 for SST-2) and a non-empty sentence, split into tokens at ASCII whitespace.

    Args:
        path: the file (``.gz`` works too); blank lines are allowed only at the end.
        unescape: undo the PTB escapes of the words (:func:`unescape_ptb`).

    Returns:
        One :class:`SSTExample` per row (``root_label`` and ``spans`` are ``None``).

    Raises:
        CorpusFormatError: no header or no ``label``/``sentence`` column, a row with a
            different number of fields, a label that is not one of 0-4, an empty sentence,
            an empty line followed by more rows, no rows, bytes that are not UTF-8, or a
            corrupt ``.gz`` file; the message names the file and line.
    """
    source = str(path)
    lines = _lines(path, source)
    if not lines:
        raise CorpusFormatError(source, None, "file is empty (no header line)")
    header_line, header = lines[0]
    names = [c.strip(" \t\r\f\v") for c in header.split("\t")]
    if "label" not in names or "sentence" not in names:
        raise CorpusFormatError(
            source,
            header_line,
            f"header {header[:80]!r} must name a 'label' and a 'sentence' column (tab-separated)",
        )
    i_label, i_sentence = names.index("label"), names.index("sentence")
    out: list[SSTExample] = []
    for lineno, line in lines[1:]:
        cols = line.split("\t")
        if len(cols) != len(names):
            raise CorpusFormatError(
                source,
                lineno,
                f"expected {len(names)} tab-separated fields (as the header), found {len(cols)}",
            )
        label = _LABELS.get(cols[i_label].strip(" \t\r\f\v"))
        if label is None:
            raise CorpusFormatError(
                source, lineno, f"label {cols[i_label][:40]!r} is not one of 0-4"
            )
        words = [w for w in _SEPARATOR.split(cols[i_sentence]) if w]
        if not words:
            raise CorpusFormatError(source, lineno, "empty sentence")
        tokens = [unescape_ptb(w) for w in words] if unescape else words
        out.append(SSTExample(tokens=tokens, label=label))
    if not out:
        raise CorpusFormatError(source, None, "file has a header but no sentences")
    return out
