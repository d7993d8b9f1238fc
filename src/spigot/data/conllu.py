"""CoNLL-U reading and writing.

The common :class:`Sentence` record, :data:`Arc`, :func:`check_tree` and
:func:`is_projective` are defined in :mod:`spigot.data.sentence` and
re-exported here.

The reader is a small dependency-free parser for the `CoNLL-U format
<https://universaldependencies.org/format.html>`_ (10 tab-separated columns
``ID FORM LEMMA UPOS XPOS FEATS HEAD DEPREL DEPS MISC``).  It yields one
:class:`Sentence` per block with

* the *basic* tree from ``HEAD``/``DEPREL`` (``heads[i]`` is the 1-based head
  of word ``i + 1``, 0 = root),
* the *enhanced* graph from ``DEPS`` as semantic arcs ``(head, modifier,
  label)``; an arc with head 0 marks the modifier as a *top* node.

Multiword-token lines (``3-4``) and empty nodes (``8.1``) are skipped, and so
are enhanced edges that touch an empty node.  Optionally, enhanced edges whose
label is a function relation (``punct``, ``case``, ``det``, ...) are dropped,
which makes the graph look like a DM/PSD semantic dependency graph.

Files must be UTF-8 (a leading byte order mark is allowed); lines end at
``"\\n"`` only (``"\\r\\n"`` is accepted), identically for files and for
strings given to :func:`parse_conllu` (see :mod:`spigot.data._text`).  A
line of ASCII whitespace only separates sentences; ids and heads are ASCII
digits.

This module does not import torch.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ._text import (
    WHITESPACE,
    CorpusFormatError,
    is_blank,
    iter_file_lines,
    iter_text_lines,
    parse_int,
)
from .sentence import Arc, Sentence, check_tree, is_projective

logger = logging.getLogger(__name__)

PathLike = str | os.PathLike

__all__ = [
    "Arc",
    "CorpusFormatError",
    "FUNCTION_LABELS",
    "ReadStats",
    "Sentence",
    "check_tree",
    "format_conllu",
    "is_projective",
    "iter_conllu",
    "parse_conllu",
    "read_conllu",
    "write_conllu",
]


@dataclass
class ReadStats:
    """Counters filled in by the readers (pass an instance as ``stats=``).

    Attributes:
        n_sentences: sentences yielded.
        n_tokens: words in the yielded sentences.
        n_skipped_invalid: sentences skipped because their tree was invalid
            (``on_invalid_tree="skip"``).
        skipped: ``(sent_id, problem)`` for every skipped sentence.
        n_multiword_tokens: multiword-token lines (``3-4``) skipped.
        n_empty_nodes: empty-node lines (``8.1``) skipped.
        n_empty_node_arcs: enhanced edges dropped because they touch an empty node.
        n_function_arcs: enhanced edges dropped by ``drop_function_labels``.
        n_arcs: semantic arcs kept.
    """

    n_sentences: int = 0
    n_tokens: int = 0
    n_skipped_invalid: int = 0
    skipped: list[tuple[str | None, str]] = field(default_factory=list)
    n_multiword_tokens: int = 0
    n_empty_nodes: int = 0
    n_empty_node_arcs: int = 0
    n_function_arcs: int = 0
    n_arcs: int = 0


FUNCTION_LABELS: frozenset[str] = frozenset(
    {
        "punct",
        "case",
        "det",
        "aux",
        "cop",
        "mark",
        "cc",
        "ref",
        "dep",
        "discourse",
        "reparandum",
        "goeswith",
    }
)
"""Base labels (before the first ``:``) dropped by ``drop_function_labels=True``."""


# ---------------------------------------------------------------------------
# reading
# ---------------------------------------------------------------------------


def _build_sentence(
    rows: list[tuple[int, list[str]]],
    comments: list[tuple[int, str]],
    source: str,
    *,
    drop_function_labels: bool,
    stats: ReadStats,
) -> Sentence:
    """Turn the token rows of one block into a Sentence (format checks included)."""
    n = len(rows)
    words, lemmas, upos, xpos, feats, misc = [], [], [], [], [], []
    heads: list[int] = []
    deprels: list[str] = []
    head_fields: list[tuple[int, str]] = []
    arcs: list[Arc] = []
    has_deps = False
    for expected, (lineno, cols) in enumerate(rows, start=1):
        wid = parse_int(cols[0], "word id", source, lineno)
        if wid != expected:
            raise CorpusFormatError(
                source, lineno, f"word id {wid} out of sequence (expected {expected})"
            )
        words.append(cols[1])
        lemmas.append(cols[2])
        upos.append(cols[3])
        xpos.append(cols[4])
        feats.append(cols[5])
        misc.append(cols[9])
        head_fields.append((lineno, cols[6]))
        deprels.append(cols[7])
        deps = cols[8]
        if deps != "_":
            has_deps = True
            for item in deps.split("|"):
                head_str, sep, label = item.partition(":")
                if not sep or not label:
                    raise CorpusFormatError(
                        source, lineno, f"DEPS item {item!r} is not of the form head:label"
                    )
                if "." in head_str:  # empty node as head
                    parse_int(head_str.split(".", 1)[0], "DEPS head", source, lineno)
                    stats.n_empty_node_arcs += 1
                    continue
                h = parse_int(head_str, "DEPS head", source, lineno)
                if not 0 <= h <= n:
                    raise CorpusFormatError(
                        source, lineno, f"DEPS head {h} out of range 0..{n} in {item!r}"
                    )
                if drop_function_labels and label.split(":", 1)[0] in FUNCTION_LABELS:
                    stats.n_function_arcs += 1
                    continue
                arcs.append((h, expected, label))

    n_missing = sum(1 for _, v in head_fields if v == "_")
    if n_missing == n:  # unparsed input: no tree at all
        tree_heads: list[int] | None = None
        tree_rels: list[str] | None = None
    else:
        for lineno, value in head_fields:
            h = parse_int(value, "HEAD", source, lineno)
            if not 0 <= h <= n:
                raise CorpusFormatError(source, lineno, f"HEAD {h} out of range 0..{n}")
            heads.append(h)
        tree_heads, tree_rels = heads, deprels

    sent_id = None
    other_comments = []
    for _, text in comments:
        body = text[1:].strip(WHITESPACE)
        key, eq, value = body.partition("=")
        if eq and key.strip(WHITESPACE) == "sent_id":
            sent_id = value.strip(WHITESPACE)
        else:
            other_comments.append(text[1:])
    arcs.sort(key=lambda a: (a[1], a[0], a[2]))
    return Sentence(
        words=words,
        lemmas=lemmas,
        pos=upos,
        heads=tree_heads,
        deprels=tree_rels,
        arcs=arcs if has_deps else None,
        sent_id=sent_id,
        extra={"xpos": xpos, "feats": feats, "misc": misc},
        comments=other_comments,
    )


def _iter_conllu_lines(
    lines: Iterable[str],
    source: str,
    *,
    drop_function_labels: bool = False,
    on_invalid_tree: Literal["raise", "skip"] = "raise",
    stats: ReadStats | None = None,
) -> Iterator[Sentence]:
    """Sentences from ``lines`` as cut by :mod:`spigot.data._text` (no terminators, no BOM)."""
    if on_invalid_tree not in ("raise", "skip"):
        raise ValueError(f"on_invalid_tree must be 'raise' or 'skip', got {on_invalid_tree!r}")
    st = stats if stats is not None else ReadStats()
    rows: list[tuple[int, list[str]]] = []
    comments: list[tuple[int, str]] = []
    block_start = 1
    n_yielded = 0
    lineno = 0

    def flush() -> Sentence | None:
        if not rows:
            if comments:
                raise CorpusFormatError(
                    source, block_start, "sentence block has comments but no word lines"
                )
            return None
        sent = _build_sentence(
            rows, comments, source, drop_function_labels=drop_function_labels, stats=st
        )
        if sent.heads is not None:
            problem = check_tree(sent.heads)
            if problem is not None:
                if on_invalid_tree == "raise":
                    raise CorpusFormatError(
                        source,
                        block_start,
                        f"invalid tree in sentence {sent.sent_id!r}: {problem}",
                    )
                st.n_skipped_invalid += 1
                st.skipped.append((sent.sent_id, problem))
                logger.warning(
                    "%s:%d: skipping sentence %r with invalid tree: %s",
                    source,
                    block_start,
                    sent.sent_id,
                    problem,
                )
                return None
        st.n_sentences += 1
        st.n_tokens += len(sent.words)
        st.n_arcs += len(sent.arcs or ())
        return sent

    for lineno, line in enumerate(lines, start=1):
        if is_blank(line):
            sent = flush()
            if sent is not None:
                n_yielded += 1
                yield sent
            rows, comments = [], []
            block_start = lineno + 1
            continue
        if line.startswith("#"):
            if rows:
                raise CorpusFormatError(source, lineno, "comment line inside a sentence")
            comments.append((lineno, line))
            continue
        cols = line.split("\t")
        if len(cols) != 10:
            raise CorpusFormatError(
                source, lineno, f"expected 10 tab-separated columns, found {len(cols)}"
            )
        wid = cols[0]
        if "-" in wid:
            a, _, b = wid.partition("-")
            parse_int(a, "multiword token start", source, lineno)
            parse_int(b, "multiword token end", source, lineno)
            st.n_multiword_tokens += 1
            continue
        if "." in wid:
            a, _, b = wid.partition(".")
            parse_int(a, "empty node id", source, lineno)
            parse_int(b, "empty node id", source, lineno)
            st.n_empty_nodes += 1
            if cols[8] != "_":
                st.n_empty_node_arcs += len(cols[8].split("|"))
            continue
        parse_int(wid, "word id", source, lineno)
        rows.append((lineno, cols))
    sent = flush()
    if sent is not None:
        n_yielded += 1
        yield sent
    if lineno == 0:
        raise CorpusFormatError(source, None, "file is empty (no sentences)")
    if n_yielded == 0 and st.n_skipped_invalid == 0:
        raise CorpusFormatError(source, None, "file contains no sentences")


def iter_conllu(
    path: PathLike,
    *,
    drop_function_labels: bool = False,
    on_invalid_tree: Literal["raise", "skip"] = "raise",
    stats: ReadStats | None = None,
) -> Iterator[Sentence]:
    """Stream sentences from a CoNLL-U file (``.gz`` is decompressed).

    Args:
        path: the ``.conllu`` (or ``.conllu.gz``) file.
        drop_function_labels: drop enhanced edges whose base label (before the
            first ``:``) is in :data:`FUNCTION_LABELS`, giving a DM-like graph.
        on_invalid_tree: ``"raise"`` a :class:`CorpusFormatError` for a basic
            tree with a cycle / no root / several roots, or ``"skip"`` the
            sentence (counted in ``stats.n_skipped_invalid`` and logged).
        stats: optional :class:`ReadStats` updated while reading.

    Yields:
        :class:`Sentence` objects; ``arcs`` is ``None`` when no word of the
        sentence has a ``DEPS`` value, ``heads`` is ``None`` when every ``HEAD``
        is ``_``.

    Raises:
        CorpusFormatError: malformed line (wrong column count, non-integer
            id/head, head out of range, ids out of sequence), invalid tree with
            ``on_invalid_tree="raise"``, an empty file, bytes that are not
            UTF-8 (with line and byte offset), or a corrupt ``.gz`` file.
    """
    source = str(path)
    yield from _iter_conllu_lines(
        iter_file_lines(path, source),
        source,
        drop_function_labels=drop_function_labels,
        on_invalid_tree=on_invalid_tree,
        stats=stats,
    )


def read_conllu(
    path: PathLike,
    *,
    drop_function_labels: bool = False,
    on_invalid_tree: Literal["raise", "skip"] = "raise",
    stats: ReadStats | None = None,
) -> list[Sentence]:
    """Read a whole CoNLL-U file; see :func:`iter_conllu` for the arguments."""
    return list(
        iter_conllu(
            path,
            drop_function_labels=drop_function_labels,
            on_invalid_tree=on_invalid_tree,
            stats=stats,
        )
    )


def parse_conllu(
    text: str,
    *,
    source: str = "<string>",
    drop_function_labels: bool = False,
    on_invalid_tree: Literal["raise", "skip"] = "raise",
    stats: ReadStats | None = None,
) -> list[Sentence]:
    """Parse CoNLL-U text given as a string (``source`` names it in errors).

    Lines are cut exactly as :func:`iter_conllu` cuts a file (at ``"\\n"`` only),
    so the result, or the error and its line number, is the same as reading
    ``text`` from a UTF-8 file.
    """
    return list(
        _iter_conllu_lines(
            iter_text_lines(text),
            source,
            drop_function_labels=drop_function_labels,
            on_invalid_tree=on_invalid_tree,
            stats=stats,
        )
    )


# ---------------------------------------------------------------------------
# writing
# ---------------------------------------------------------------------------


def _format_deps(arcs_of_word: list[tuple[int, str]]) -> str:
    if not arcs_of_word:
        return "_"
    return "|".join(f"{h}:{lab}" for h, lab in sorted(arcs_of_word))


def format_conllu(sentences: Iterable[Sentence]) -> str:
    """Render sentences as CoNLL-U text.

    ``HEAD``/``DEPREL`` come from ``sentence.heads``/``deprels`` (``_`` when
    ``None``), ``DEPS`` from ``sentence.arcs`` (``_`` when ``None`` or when a
    word has no incoming arc; items sorted by head id).  ``XPOS``, ``FEATS``
    and ``MISC`` come from ``sentence.extra`` when present.  Multiword tokens
    and empty nodes are not reproduced.  To write predictions, pass e.g.
    ``dataclasses.replace(gold, heads=pred_heads, deprels=pred_rels)``.
    """
    out: list[str] = []
    for sent in sentences:
        n = len(sent.words)
        if sent.sent_id is not None:
            out.append(f"# sent_id = {sent.sent_id}")
        for c in sent.comments or ():
            out.append("#" + c)
        incoming: list[list[tuple[int, str]]] = [[] for _ in range(n + 1)]
        for h, m, lab in sent.arcs or ():
            if not (0 <= h <= n and 1 <= m <= n):
                raise ValueError(
                    f"sentence {sent.sent_id!r}: arc {(h, m, lab)} out of range for {n} words"
                )
            incoming[m].append((h, lab))
        pos = sent.pos or ["_"] * n
        for i in range(n):
            cols = [
                str(i + 1),
                sent.words[i],
                sent.lemmas[i] if sent.lemmas is not None else "_",
                pos[i],
                sent.extra.get("xpos", ["_"] * n)[i],
                sent.extra.get("feats", ["_"] * n)[i],
                str(sent.heads[i]) if sent.heads is not None else "_",
                sent.deprels[i] if sent.deprels is not None else "_",
                _format_deps(incoming[i + 1]) if sent.arcs is not None else "_",
                sent.extra.get("misc", ["_"] * n)[i],
            ]
            out.append("\t".join(cols))
        out.append("")
    return "\n".join(out) + ("\n" if out else "")


def write_conllu(sentences: Iterable[Sentence], path: PathLike) -> None:
    """Write sentences to ``path`` in CoNLL-U format (see :func:`format_conllu`)."""
    Path(path).write_text(format_conllu(sentences), encoding="utf-8")
