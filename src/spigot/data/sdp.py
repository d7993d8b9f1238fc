"""SemEval 2015 Semantic Dependency Parsing (SDP) format: reader and writer.

File layout::

    #SDP 2015
    #20001001
    1<TAB>Pierre<TAB>Pierre<TAB>NNP<TAB>-<TAB>+<TAB>named:x-c<TAB>_<TAB>...
    ...
    <blank line>

Columns: ``ID FORM LEMMA POS TOP PRED FRAME ARG_1 ... ARG_k`` where ``k`` is the
number of tokens with ``PRED = +``; column ``ARG_j`` of token ``m`` holds the
label of the arc from the ``j``-th predicate (in sentence order) to ``m``, or
``_`` for no arc.

Conventions of this module:

* an arc ``(p, m, label)`` means predicate ``p`` is the head of ``m``;
* a top node ``m`` (``TOP = +``) becomes the arc ``(0, m, TOP_LABEL)`` with
  ``TOP_LABEL = "TOP"``; on writing, any arc with head 0 sets ``TOP = +``
  whatever its label;
* ``FRAME`` and ``PRED`` are kept in ``Sentence.extra["frame"]`` and
  ``Sentence.extra["pred"]`` so that read -> write reproduces the file.  On
  writing, a token is a predicate if ``extra["pred"]`` says ``+`` *or* it has
  an outgoing arc;
* SDP has no syntax tree: ``heads`` and ``deprels`` are ``None``;
  ``sent_id`` is the id line without ``#``.

Reading is strict about what would silently change the graph:

* fields are separated by tabs; ASCII whitespace around a field (spaces,
  ``"\\r"``, form feed, vertical tab) is not part of it, so trailing spaces or
  a ``"\\r\\n"`` line end never turn ``_`` or ``ARG1`` into a label ``"_ "`` or
  ``"ARG1 "``.  A line of ASCII whitespace only separates sentences;
* a field that is empty (after stripping) is an error: SDP writes ``_`` for
  "no value" and for "no arc", so an empty label cell has no meaning;
* a self-loop (a non-``_`` cell in the column of predicate ``p`` on the row
  of token ``p`` itself) is an error.  The SDP graphs relate a predicate to
  *other* tokens: none of the DM and PSD sample files (89 sentences, 1,968
  tokens each) has one, the format gives a loop no meaning, and this
  project's graph structures give the arc from a word to itself no score, so
  it could be neither learned nor predicted.  A file that has one is reported
  with its line instead of the arc being silently kept or dropped;
* ids are ASCII digits; files are UTF-8 (a leading byte order mark is
  allowed) and lines end at ``"\\n"`` only (``"\\r\\n"`` is accepted), the
  same for files and for strings given to :func:`parse_sdp`.

Every such error is a :class:`CorpusFormatError` naming the file and line.

This module does not import torch.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from ._text import (
    WHITESPACE,
    CorpusFormatError,
    is_blank,
    iter_file_lines,
    iter_text_lines,
    parse_int,
)
from .conllu import Arc, ReadStats, Sentence

__all__ = ["TOP_LABEL", "format_sdp", "iter_sdp", "parse_sdp", "read_sdp", "write_sdp"]

TOP_LABEL = "TOP"
"""Label of the arc ``(0, m, TOP_LABEL)`` that encodes a top node ``m``."""

PathLike = str | os.PathLike

_BREAKS = frozenset("\t\n\r")
_COLUMNS = ("ID", "FORM", "LEMMA", "POS", "TOP", "PRED", "FRAME")


def _build(
    sent_id: str,
    id_line: int,
    rows: list[tuple[int, list[str]]],
    source: str,
) -> Sentence:
    if not rows:
        raise CorpusFormatError(source, id_line, f"sentence #{sent_id} has no token lines")
    words, lemmas, pos, frames, preds = [], [], [], [], []
    arcs: list[Arc] = []
    predicates: list[int] = []
    for expected, (lineno, cols) in enumerate(rows, start=1):
        wid = parse_int(cols[0], "token id", source, lineno)
        if wid != expected:
            raise CorpusFormatError(
                source, lineno, f"token id {wid} out of sequence (expected {expected})"
            )
        top, pred = cols[4], cols[5]
        if top not in ("+", "-"):
            raise CorpusFormatError(source, lineno, f"TOP column must be + or -, got {top!r}")
        if pred not in ("+", "-"):
            raise CorpusFormatError(source, lineno, f"PRED column must be + or -, got {pred!r}")
        words.append(cols[1])
        lemmas.append(cols[2])
        pos.append(cols[3])
        frames.append(cols[6])
        preds.append(pred)
        if pred == "+":
            predicates.append(wid)
        if top == "+":
            arcs.append((0, wid, TOP_LABEL))
    k = len(predicates)
    for m, (lineno, cols) in enumerate(rows, start=1):
        args = cols[7:]
        if len(args) != k:
            raise CorpusFormatError(
                source,
                lineno,
                f"expected {7 + k} columns (7 + {k} predicates) in sentence #{sent_id}, "
                f"found {len(cols)}",
            )
        for j, label in enumerate(args):
            if label == "_":
                continue
            if predicates[j] == m:
                raise CorpusFormatError(
                    source,
                    lineno,
                    f"token {m} is its own argument (label {label!r} in the column of "
                    f"predicate {m}); SDP graphs have no self-loops",
                )
            arcs.append((predicates[j], m, label))
    arcs.sort(key=lambda a: (a[1], a[0], a[2]))
    return Sentence(
        words=words,
        lemmas=lemmas,
        pos=pos,
        heads=None,
        deprels=None,
        arcs=arcs,
        sent_id=sent_id,
        extra={"frame": frames, "pred": preds},
    )


def _iter_sdp_lines(
    lines: Iterable[str], source: str, stats: ReadStats | None = None
) -> Iterator[Sentence]:
    """Sentences from ``lines`` as cut by :mod:`spigot.data._text` (no terminators, no BOM)."""
    st = stats if stats is not None else ReadStats()
    sent_id: str | None = None
    id_line = 0
    rows: list[tuple[int, list[str]]] = []
    seen_header = False
    n_yielded = 0

    def finish() -> Sentence:
        assert sent_id is not None
        sent = _build(sent_id, id_line, rows, source)
        st.n_sentences += 1
        st.n_tokens += len(sent.words)
        st.n_arcs += len(sent.arcs or ())
        return sent

    for lineno, line in enumerate(lines, start=1):
        if not seen_header:
            if not line.startswith("#SDP"):
                raise CorpusFormatError(
                    source, lineno, f"expected the '#SDP 2015' header line, found {line[:40]!r}"
                )
            seen_header = True
            continue
        if is_blank(line):
            if sent_id is not None:
                n_yielded += 1
                yield finish()
            sent_id, rows = None, []
            continue
        if line.startswith("#"):
            if sent_id is not None:
                if rows:
                    raise CorpusFormatError(
                        source, lineno, "sentence id line inside a sentence (missing blank line)"
                    )
                raise CorpusFormatError(source, lineno, "two sentence id lines in a row")
            sent_id = line[1:].strip(WHITESPACE)
            id_line = lineno
            continue
        if sent_id is None:
            raise CorpusFormatError(source, lineno, "token line before any '#<id>' line")
        cols = [c.strip(WHITESPACE) for c in line.split("\t")]
        if len(cols) < 7:
            raise CorpusFormatError(
                source, lineno, f"expected at least 7 tab-separated columns, found {len(cols)}"
            )
        for i, c in enumerate(cols):
            if not c:
                name = _COLUMNS[i] if i < 7 else f"ARG_{i - 6} (a label cell; '_' means no arc)"
                raise CorpusFormatError(source, lineno, f"column {i + 1} {name} is empty")
        rows.append((lineno, cols))
    if sent_id is not None:
        n_yielded += 1
        yield finish()
    if not seen_header:
        raise CorpusFormatError(source, None, "file is empty (no '#SDP 2015' header)")
    if n_yielded == 0:
        raise CorpusFormatError(source, None, "file contains no sentences")


def iter_sdp(path: PathLike, *, stats: ReadStats | None = None) -> Iterator[Sentence]:
    """Stream sentences from an SDP 2015 file.

    Args:
        path: ``.sdp`` file (``.gz`` is decompressed).
        stats: optional :class:`ReadStats` updated while reading.

    Yields:
        :class:`Sentence` with ``words``, ``lemmas``, ``pos``, ``arcs`` (tops as
        ``(0, m, "TOP")``), ``sent_id``, ``extra["frame"]``, ``extra["pred"]``;
        ``heads``/``deprels`` are ``None``.

    Raises:
        CorpusFormatError: missing header, wrong column count (fewer than 7, or
            not 7 + number of predicates), empty field, non-integer or
            out-of-sequence id, TOP/PRED not ``+``/``-``, self-loop, empty file,
            bytes that are not UTF-8 (with line and byte offset), or a corrupt
            ``.gz`` file.
    """
    source = str(path)
    yield from _iter_sdp_lines(iter_file_lines(path, source), source, stats)


def read_sdp(path: PathLike, *, stats: ReadStats | None = None) -> list[Sentence]:
    """Read a whole SDP 2015 file; see :func:`iter_sdp`."""
    return list(iter_sdp(path, stats=stats))


def parse_sdp(
    text: str, *, source: str = "<string>", stats: ReadStats | None = None
) -> list[Sentence]:
    """Parse SDP 2015 text given as a string (``source`` names it in errors).

    Lines are cut exactly as :func:`iter_sdp` cuts a file (at ``"\\n"`` only), so
    the result, or the error and its line number, is the same as reading
    ``text`` from a UTF-8 file.
    """
    return list(_iter_sdp_lines(iter_text_lines(text), source, stats))


def format_sdp(sentences: Iterable[Sentence], header: str = "#SDP 2015") -> str:
    """Render sentences in SDP 2015 format (see the module docstring).

    Raises:
        ValueError: an arc is out of range or a self-loop, has an invalid label
            (empty, ``_``, surrounded by whitespace, or holding a tab or line
            break), or two labels share one ``(head, modifier)`` pair: what the
            reader would reject or read back differently.
    """
    out = [header]
    for idx, sent in enumerate(sentences):
        n = len(sent.words)
        name = sent.sent_id if sent.sent_id is not None else f"{idx + 1}"
        out.append(f"#{name}")
        table: dict[tuple[int, int], str] = {}
        tops: set[int] = set()
        for h, m, lab in sent.arcs or ():
            if not (0 <= h <= n and 1 <= m <= n):
                raise ValueError(f"sentence {name!r}: arc {(h, m, lab)} out of range ({n} words)")
            if h == 0:
                tops.add(m)
                continue
            if h == m:
                raise ValueError(f"sentence {name!r}: arc {(h, m, lab)} is a self-loop")
            if lab == "_" or lab != lab.strip(WHITESPACE) or not lab or _BREAKS & set(lab):
                raise ValueError(f"sentence {name!r}: arc {(h, m, lab)} has an invalid label")
            if table.get((h, m), lab) != lab:
                raise ValueError(
                    f"sentence {name!r}: two labels on arc {h}->{m} "
                    f"({table[(h, m)]!r}, {lab!r}) cannot be written in SDP format"
                )
            table[(h, m)] = lab
        has_out = {h for h, _ in table}
        pred_flags = sent.extra.get("pred", ["-"] * n)
        predicates = [i for i in range(1, n + 1) if pred_flags[i - 1] == "+" or i in has_out]
        frames = sent.extra.get("frame", ["_"] * n)
        lemmas = sent.lemmas if sent.lemmas is not None else ["_"] * n
        pos = sent.pos or ["_"] * n
        pset = set(predicates)
        for m in range(1, n + 1):
            cols = [
                str(m),
                sent.words[m - 1],
                lemmas[m - 1],
                pos[m - 1],
                "+" if m in tops else "-",
                "+" if m in pset else "-",
                frames[m - 1],
            ]
            cols.extend(table.get((p, m), "_") for p in predicates)
            out.append("\t".join(cols))
        out.append("")
    return "\n".join(out) + "\n"


def write_sdp(sentences: Iterable[Sentence], path: PathLike, header: str = "#SDP 2015") -> None:
    """Write sentences to ``path`` in SDP 2015 format (see :func:`format_sdp`)."""
    Path(path).write_text(format_sdp(sentences, header), encoding="utf-8")
