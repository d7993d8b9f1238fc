"""PropBank semantic graphs for UD English EWT, read from the unified PropBank ``.gold_skel`` files.

The ``.gold_skel`` files of ``propbank/propbank-release``
(``data/google/ewt/GENRE/00/DOC.xml.gold_skel``) hold one token a line, a blank line between
sentences, and the whitespace-separated columns
``DOC SENT_INDEX TOKEN_INDEX [WORD] XPOS PARSE_BIT PREDICATE_LEMMA ROLESET ARG_1 ... ARG_k``;
column ``8 + j`` brackets the argument spans of the j-th predicate (``(ARG0*``, ``*``, ``*)``,
``(V*)``).  The words themselves are not in the files: they come from UD English EWT, whose
sentence ``sent_id = GENRE-DOC-NNNN`` is PropBank sentence ``NNNN - 1`` of ``DOC`` and whose
syntactic words align one to one with the PropBank tokens.

:func:`read_propbank_ewt` reads a UD EWT CoNLL-U file and replaces each sentence's ``arcs`` (the
enhanced graph) by a bilexical predicate-argument graph: an arc ``(predicate, head word, role)``
for each argument span of each predicate, where

* the *head word* of a span is the span word whose UD basic-tree head lies outside the span; if
  several words qualify, the one nearest the root (smallest depth in the basic tree), and among
  those the one with the smallest index (see :func:`span_head`);
* the *predicate* of column j is the j-th token with a roleset if it lies inside the column's
  ``V`` span, else the first token with a roleset inside that span, else the span's head word;
* the ``V`` span and ``C-V`` spans (the rest of a discontinuous verb) give no arc, nor does an
  argument whose head word is the predicate itself;
* the label is the PropBank role as written in the file (``ARG0``-``ARG5``, ``ARGM-*``, ``R-*``,
  ``C-*``);
* a graph has at most one arc per (predicate, word) pair: when two spans give the same pair (in
  this release, only duplicated predicate columns do), the first in file order (column, then span
  start) wins, and :attr:`PropBankStats.duplicate_arcs` counts the others.

UD sentences that do not align (no document, missing sentence, different token count, no
``sent_id``, no valid basic tree) are skipped, counted by reason and summarised in one warning.

This module does not import torch.
"""

from __future__ import annotations

import dataclasses
import functools
import lzma
import os
import re
import tarfile
import warnings
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ._text import iter_binary_lines, iter_file_lines
from .conllu import Arc, CorpusFormatError, Sentence, check_tree, read_conllu

__all__ = [
    "PropBankIndex",
    "PropBankSentence",
    "PropBankStats",
    "Span",
    "attach_propbank",
    "iter_gold_skel",
    "propbank_arcs",
    "read_propbank",
    "read_propbank_ewt",
    "span_head",
]

PathLike = str | os.PathLike

NO_ARC_LABELS: frozenset[str] = frozenset({"V", "C-V"})
"""Span labels that give no arc: the predicate itself and the rest of a discontinuous verb."""

_CELL = re.compile(r"^(?:\(([^()*\s]+))?\*(\)?)$")


@dataclass(frozen=True)
class Span:
    """A labeled argument span; ``start`` and ``end`` are 0-based token indices, inclusive."""

    label: str
    start: int
    end: int


@dataclass
class PropBankSentence:
    """One ``.gold_skel`` sentence: rolesets and argument columns, no words."""

    doc: str  # UD document id GENRE-DOC, e.g. "answers-20111107193044AAwpqXm_ans"
    index: int  # 0-based sentence index in the document (UD NNNN is index + 1)
    xpos: list[str]  # PTB tag of each token
    rolesets: list[str]  # roleset of each token ("decide.01"), "-" except on predicates
    columns: list[list[Span]]  # for each predicate column, its spans in the order they start
    source: str = "<string>"  # file (or "archive[member]") the sentence comes from
    line: int = 1  # 1-based line number of its first token

    def __len__(self) -> int:
        return len(self.xpos)

    @property
    def sent_id(self) -> str:
        """The UD EWT ``sent_id`` this sentence aligns with."""
        return f"{self.doc}-{self.index + 1:04d}"


PropBankIndex = Mapping[str, Mapping[int, PropBankSentence]]
"""PropBank sentences by UD document id, then by 0-based sentence index."""


@dataclass
class PropBankStats:
    """Counters of :func:`attach_propbank` / :func:`read_propbank_ewt` (cumulative over calls).

    ``skipped`` counts skipped sentences by reason: ``"no document"``, ``"missing sentence"``,
    ``"length mismatch"``, ``"no sent_id"``, ``"no valid basic tree"``.  An arc ``p -> a`` is a
    *basic arc* if the basic-tree head of ``a`` is ``p``, *reversed* if the head of ``p`` is ``a``.
    """

    sentences: int = 0  # UD sentences seen
    aligned: int = 0  # sentences returned with a PropBank graph
    tokens: int = 0  # words in the aligned sentences
    skipped: Counter[str] = field(default_factory=Counter)
    skipped_ids: list[tuple[str | None, str]] = field(default_factory=list)  # (sent_id, reason)
    xpos_differs: int = 0  # aligned sentences whose UD XPOS differ from PropBank's somewhere
    predicates: int = 0  # predicate columns of the aligned sentences
    arcs: int = 0  # arcs kept
    labels: Counter[str] = field(default_factory=Counter)  # arcs kept by label
    basic_arcs: int = 0  # arcs that are basic-tree arcs in the same direction
    reversed_basic_arcs: int = 0  # arcs whose reverse is a basic-tree arc
    multi_head_words: int = 0  # words with two or more incoming arcs
    duplicate_arcs: int = 0  # spans dropped: an earlier span gave the same (predicate, word)
    label_conflicts: int = 0  # those of duplicate_arcs whose label differs from the kept one
    self_arcs: int = 0  # argument spans dropped because their head word is the predicate
    no_arc_spans: int = 0  # V and C-V spans (no arc by definition)

    @property
    def n_skipped(self) -> int:
        """Total number of skipped sentences."""
        return sum(self.skipped.values())

    @property
    def arcs_per_token(self) -> float:
        """Arcs per word of the aligned sentences."""
        return self.arcs / self.tokens if self.tokens else 0.0

    @property
    def basic_share(self) -> float:
        """Share of arcs that are basic-tree arcs in the same direction."""
        return self.basic_arcs / self.arcs if self.arcs else 0.0

    @property
    def reversed_share(self) -> float:
        """Share of arcs that are reversed basic-tree arcs."""
        return self.reversed_basic_arcs / self.arcs if self.arcs else 0.0

    @property
    def multi_head_share(self) -> float:
        """Share of words (of the aligned sentences) with two or more heads."""
        return self.multi_head_words / self.tokens if self.tokens else 0.0


# --- reading .gold_skel ------------------------------------------------------------------------


def _doc_id(value: str, source: str, lineno: int) -> str:
    parts = value.split("/")
    if len(parts) < 3 or not parts[-1]:
        raise CorpusFormatError(
            source, lineno, f"document {value!r} is not of the form .../GENRE/NN/DOC.xml"
        )
    return f"{parts[-3]}-{parts[-1].removesuffix('.xml')}"


def _int(value: str, what: str, source: str, lineno: int) -> int:
    """A non-negative integer of ASCII digits (``str.isdigit`` also takes ``"²"``, ``"\u0661"``)."""
    if value.isascii() and value.isdigit():
        try:
            return int(value)
        except ValueError:  # more digits than int() converts
            pass
    raise CorpusFormatError(source, lineno, f"{what} {value!r} is not a non-negative integer")


def _parse_block(rows: list[tuple[int, list[str]]], source: str) -> PropBankSentence:
    first_line, first = rows[0]
    err = functools.partial(CorpusFormatError, source)
    ncols = len(first)
    doc = _doc_id(first[0], source, first_line)
    index = _int(first[1], "sentence index", source, first_line)
    for expected, (lineno, cols) in enumerate(rows):
        if len(cols) != ncols:
            raise err(lineno, f"{len(cols)} columns, but the sentence's first line has {ncols}")
        if cols[0] != first[0] or _int(cols[1], "sentence index", source, lineno) != index:
            raise err(lineno, "document or sentence index differs within one sentence")
        if _int(cols[2], "token index", source, lineno) != expected:
            raise err(lineno, f"token index {cols[2]} out of sequence (expected {expected})")
    rolesets = [cols[7] for _, cols in rows]
    k = ncols - 8
    n_predicates = sum(r != "-" for r in rolesets)
    if n_predicates != k:
        raise err(first_line, f"{n_predicates} predicates (rolesets) but {k} argument columns")
    columns: list[list[Span]] = []
    for j in range(8, ncols):
        spans: list[Span] = []
        open_spans: list[tuple[str, int, int]] = []  # label, start, line
        for t, (lineno, cols) in enumerate(rows):
            m = _CELL.match(cols[j])
            if m is None:
                raise err(lineno, f"argument cell {cols[j]!r} (column {j + 1}) is malformed")
            if m.group(1):
                open_spans.append((m.group(1), t, lineno))
            if m.group(2):
                if not open_spans:
                    raise err(lineno, f"column {j + 1}: span closed but none is open")
                label, start, _ = open_spans.pop()
                spans.append(Span(label, start, t))
        if open_spans:
            raise err(open_spans[-1][2], f"column {j + 1}: span {open_spans[-1][0]!r} not closed")
        if sum(s.label == "V" for s in spans) != 1:
            raise err(first_line, f"column {j + 1} does not have exactly one (V*) span")
        columns.append(sorted(spans, key=lambda s: (s.start, s.end)))
    xpos = [cols[4] for _, cols in rows]
    return PropBankSentence(doc, index, xpos, rolesets, columns, source, first_line)


def iter_gold_skel(lines: Iterable[str], source: str = "<string>") -> Iterator[PropBankSentence]:
    """Parse ``.gold_skel`` lines (``source`` names the file in errors).

    Raises:
        CorpusFormatError: a line with fewer than 8 columns, a non-integer or out-of-sequence
            index, a ragged sentence, unbalanced brackets, a column without exactly one ``V``
            span, or a number of argument columns different from the number of rolesets.
    """
    rows: list[tuple[int, list[str]]] = []
    for lineno, line in enumerate(lines, start=1):
        cols = line.split()
        if not cols:
            if rows:
                yield _parse_block(rows, source)
            rows = []
            continue
        if len(cols) < 8:
            problem = f"expected at least 8 whitespace-separated columns, found {len(cols)}"
            raise CorpusFormatError(source, lineno, problem)
        rows.append((lineno, cols))
    if rows:
        yield _parse_block(rows, source)


# raised by a damaged archive: tarfile, gzip/zlib, bz2 (an OSError without errno), lzma
_CORRUPT_ARCHIVE = (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError, OSError)


def _iter_tar(path: Path) -> Iterator[tuple[str, list[str]]]:
    """Yield ``(source, lines)`` for every ``.gold_skel`` member of the tar archive ``path``."""
    source = str(path)
    member = None
    try:
        if not tarfile.is_tarfile(path):
            problem = "neither a .gold_skel file nor a readable tar archive (damaged or no archive)"
            raise CorpusFormatError(source, None, problem)
        with tarfile.open(path, "r:*") as tar:
            for member in tar:
                if member.isfile() and member.name.endswith(".gold_skel"):
                    f = tar.extractfile(member)
                    assert f is not None  # a regular file
                    name = f"{path}[{member.name}]"
                    # read the member here, where a damaged archive is caught
                    yield name, list(iter_binary_lines(f, name))
    except _CORRUPT_ARCHIVE as err:
        if isinstance(err, OSError) and err.errno is not None:
            raise  # a real I/O error, not damaged data
        where = f" (in or after member {member.name!r})" if member is not None else ""
        problem = f"not a valid tar archive{where}: {type(err).__name__}: {err}"
        raise CorpusFormatError(source, None, problem) from None


def _iter_files(path: Path) -> Iterator[tuple[str, Iterable[str]]]:
    """Yield ``(source, lines)`` for every ``.gold_skel`` file under ``path``."""
    if path.is_dir():
        for f in sorted(path.rglob("*.gold_skel")):
            yield str(f), iter_file_lines(f)
    elif path.name.endswith(".gold_skel"):
        yield str(path), iter_file_lines(path)
    elif not path.exists():
        raise FileNotFoundError(f"PropBank data not found: {path}")
    else:
        yield from _iter_tar(path)


def read_propbank(path: PathLike) -> dict[str, dict[int, PropBankSentence]]:
    """Read every ``.gold_skel`` file of a tar archive (``.tgz``), a directory or one file.

    Returns:
        PropBank sentences by UD document id (``GENRE-DOC``), then by 0-based sentence index;
        pass it to :func:`read_propbank_ewt` to read several splits with one pass over the data.

    Raises:
        CorpusFormatError: a malformed line or bytes that are not UTF-8 (files are read as
            :mod:`spigot.data._text` says; the message names the file, or ``archive[member]``,
            and the line), a sentence given twice, no ``.gold_skel`` file at all, a damaged
            archive (corrupt or truncated compressed data, bad tar headers), or a file that is
            neither a ``.gold_skel`` file nor a tar archive.
        FileNotFoundError: ``path`` does not exist.
    """
    index: dict[str, dict[int, PropBankSentence]] = {}
    for source, lines in _iter_files(Path(path)):
        # lines are cut at "\n" only, so that line numbers match those of text editors
        for sent in iter_gold_skel(lines, source):
            doc = index.setdefault(sent.doc, {})
            if sent.index in doc:
                other = doc[sent.index].source
                problem = f"sentence {sent.sent_id} given twice (also in {other})"
                raise CorpusFormatError(source, sent.line, problem)
            doc[sent.index] = sent
    if not index:
        raise CorpusFormatError(str(path), None, "no .gold_skel sentences found")
    return index


# --- graphs ------------------------------------------------------------------------------------


def _depths(heads: list[int]) -> list[int]:
    """Depth of each word (index 1..n; root 0 has depth 0) in a valid tree."""
    depth = [-1] * (len(heads) + 1)
    depth[0] = 0
    for w in range(1, len(heads) + 1):
        path = []
        while depth[w] < 0:
            path.append(w)
            w = heads[w - 1]
        for u in reversed(path):
            depth[u] = depth[heads[u - 1]] + 1
    return depth


def span_head(heads: list[int], first: int, last: int, depth: list[int] | None = None) -> int:
    """Head word of the span ``first..last`` (1-based word ids, inclusive) in a basic tree.

    The head word is the span word whose head (``heads[w - 1]``, 0 = root) lies outside the
    span.  If several qualify, the one nearest the root (smallest depth) wins, and among words
    of equal depth the one with the smallest index.

    Args:
        heads: a valid tree (see :func:`~spigot.data.check_tree`).
        depth: precomputed depths (index = word id), to save work over many spans.
    """
    if not 1 <= first <= last <= len(heads):
        raise ValueError(f"span {first}..{last} out of range 1..{len(heads)}")
    d = depth if depth is not None else _depths(heads)
    outside = [w for w in range(first, last + 1) if not first <= heads[w - 1] <= last]
    return min(outside, key=lambda w: (d[w], w))


def _predicate(pb: PropBankSentence, j: int, v: Span, heads: list[int], depth: list[int]) -> int:
    framed = [t for t in range(v.start, v.end + 1) if pb.rolesets[t] != "-"]
    nth = [t for t, r in enumerate(pb.rolesets) if r != "-"][j]
    if nth in framed:
        return nth + 1
    if framed:
        return framed[0] + 1
    return span_head(heads, v.start + 1, v.end + 1, depth)


def propbank_arcs(
    pb: PropBankSentence, heads: list[int], stats: PropBankStats | None = None
) -> list[Arc]:
    """Predicate-argument arcs ``(predicate, head word, role)`` of one aligned sentence.

    See the module docstring for the rules.  ``heads`` is the UD basic tree of the sentence
    (same length as ``pb``).  Arcs are sorted by (modifier, head, label), as CoNLL-U graphs.
    ``stats`` (optional) gets the arc-level counters; the sentence-level ones are left alone.
    """
    if len(heads) != len(pb):
        raise ValueError(f"{pb.sent_id}: tree has {len(heads)} words, PropBank has {len(pb)}")
    st = stats if stats is not None else PropBankStats()
    depth = _depths(heads)
    chosen: dict[tuple[int, int], str] = {}
    for j, spans in enumerate(pb.columns):
        v = next(s for s in spans if s.label == "V")
        p = _predicate(pb, j, v, heads, depth)
        for s in spans:
            if s.label in NO_ARC_LABELS:
                st.no_arc_spans += 1
                continue
            a = span_head(heads, s.start + 1, s.end + 1, depth)
            if a == p:
                st.self_arcs += 1
            elif (p, a) in chosen:
                st.duplicate_arcs += 1
                st.label_conflicts += chosen[p, a] != s.label
            else:
                chosen[p, a] = s.label
    arcs = sorted(((p, a, lab) for (p, a), lab in chosen.items()), key=lambda x: (x[1], x[0], x[2]))
    n_heads = Counter(a for _, a, _ in arcs)
    st.multi_head_words += sum(c >= 2 for c in n_heads.values())
    st.arcs += len(arcs)
    st.labels.update(lab for _, _, lab in arcs)
    st.basic_arcs += sum(heads[a - 1] == p for p, a, _ in arcs)
    st.reversed_basic_arcs += sum(heads[p - 1] == a for p, a, _ in arcs)
    return arcs


# --- alignment with UD EWT ---------------------------------------------------------------------

_SENT_ID = re.compile(r"^(.+)-(\d{4,})$")


def _align(s: Sentence, propbank: PropBankIndex) -> PropBankSentence | str:
    """The PropBank sentence of ``s``, or the reason why there is none."""
    m = _SENT_ID.match(s.sent_id or "")
    if m is None or int(m.group(2)) == 0:
        return "no sent_id"
    doc = propbank.get(m.group(1))
    if doc is None:
        return "no document"
    pb = doc.get(int(m.group(2)) - 1)
    if pb is None:
        return "missing sentence"
    if len(pb) != len(s):
        return "length mismatch"
    if s.heads is None or check_tree(s.heads) is not None:
        return "no valid basic tree"
    return pb


def attach_propbank(
    sentences: Iterable[Sentence],
    propbank: PropBankIndex,
    *,
    stats: PropBankStats | None = None,
    source: str = "<sentences>",
) -> list[Sentence]:
    """Give each aligned UD EWT sentence its PropBank graph as ``arcs`` (see the module doc).

    Each returned sentence is a copy of the input one whose ``arcs`` are replaced by the
    PropBank arcs (an empty list for a sentence without predicates) and whose ``extra`` gets a
    ``"roleset"`` column (``"_"`` except on predicates).  Sentences that do not align are left
    out, counted in ``stats.skipped`` by reason, and summarised in one warning naming ``source``.
    """
    st = stats if stats is not None else PropBankStats()
    out: list[Sentence] = []
    skipped: Counter[str] = Counter()
    n_seen = 0
    for s in sentences:
        n_seen += 1
        pb = _align(s, propbank)
        if isinstance(pb, str):
            skipped[pb] += 1
            st.skipped_ids.append((s.sent_id, pb))
            continue
        assert s.heads is not None  # checked by _align
        arcs = propbank_arcs(pb, s.heads, st)
        st.aligned += 1
        st.tokens += len(s)
        st.predicates += len(pb.columns)
        st.xpos_differs += s.extra.get("xpos", pb.xpos) != pb.xpos
        extra = dict(s.extra)
        extra["roleset"] = [r if r != "-" else "_" for r in pb.rolesets]
        out.append(dataclasses.replace(s, arcs=arcs, extra=extra))
    st.sentences += n_seen
    st.skipped.update(skipped)
    if skipped:
        reasons = ", ".join(f"{c} {r}" for r, c in sorted(skipped.items()))
        warnings.warn(
            f"{source}: skipped {sum(skipped.values())} of {n_seen} sentences without an aligned "
            f"PropBank graph ({reasons}); see PropBankStats.skipped_ids",
            stacklevel=2,
        )
    return out


def read_propbank_ewt(
    conllu_path: PathLike,
    propbank: PathLike | PropBankIndex,
    *,
    on_invalid_tree: Literal["raise", "skip"] = "raise",
    stats: PropBankStats | None = None,
) -> tuple[list[Sentence], PropBankStats]:
    """Read a UD EWT CoNLL-U file with PropBank semantic graphs as ``arcs``.

    Args:
        conllu_path: ``en_ewt-ud-{train,dev,test}.conllu`` (``.gz`` works too).
        propbank: the ``propbank-ewt-gold_skel.tgz`` archive, a directory holding the
            extracted ``.gold_skel`` files, or an index from :func:`read_propbank` (read the
            archive once when you read several splits).
        on_invalid_tree: passed to :func:`~spigot.data.read_conllu`.
        stats: counters to update (a new :class:`PropBankStats` if ``None``).

    Returns:
        The aligned sentences (see :func:`attach_propbank`) and the statistics.

    Raises:
        CorpusFormatError: a malformed CoNLL-U or ``.gold_skel`` line.
    """
    index = propbank if isinstance(propbank, Mapping) else read_propbank(propbank)
    st = stats if stats is not None else PropBankStats()
    sents = read_conllu(conllu_path, on_invalid_tree=on_invalid_tree)
    return attach_propbank(sents, index, stats=st, source=str(conllu_path)), st
