"""Fuzzing of the CoNLL-U and SDP 2015 parsers against their file readers (the contract for
every reader is in tests/test_reader_fuzz.py): any text or bytes either parse or raise
:class:`~spigot.data.CorpusFormatError` (any other exception fails), and reading a file (plain
or gzip) gives exactly what parsing its text gives."""

from __future__ import annotations

import gzip
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spigot.data import CorpusFormatError, parse_conllu, parse_sdp, read_conllu, read_sdp

# damaged cells: bad ids and heads, odd whitespace, a number too long for int()
_CONLLU_CELLS = "1 2 0 _ x 1-2 2.1 0:root 1:obj|2:nsubj 1.1:x -1 1_0 é : | 1: #".split()
_CONLLU_CELLS += ["", " ", "a b", "\u0661", "\u2028", "\r", "9" * 5000]


@st.composite
def _conllu_like(draw: st.DrawFn) -> str:
    """Mostly well-formed CoNLL-U, with random damage to some lines."""
    cell = st.sampled_from(_CONLLU_CELLS)
    damaged = st.integers(0, 4).map(lambda x: x == 0)  # about one line in five
    lines: list[str] = []
    for _ in range(draw(st.integers(0, 3))):
        if draw(st.booleans()):
            lines.append(draw(st.sampled_from(["# sent_id = s", "#", "# a\u2028b", "# x = y"])))
        n = draw(st.integers(1, 4))
        for i in range(1, n + 1):
            # a tree (word 1 under the root, every other word under an earlier one) unless damaged
            head = draw(st.integers(0, n)) if draw(damaged) else draw(st.integers(1, max(i - 1, 1)))
            head = 0 if i == 1 else head
            deps = draw(st.sampled_from(["_", f"{head}:dep", "0:root|1:x", "1.1:x", "1:a:b"]))
            cols = [str(i), "w", "w", "X", "_", "_", str(head), "dep", deps, "_"]
            if draw(damaged):
                cols[draw(st.integers(0, 9))] = draw(cell)
            if draw(damaged):
                cols = cols[: draw(st.integers(1, 10))] + draw(st.lists(cell, max_size=2))
            if draw(damaged):
                lines.append(draw(st.sampled_from([f"{i}-{i + 1}", f"{i}.1"])) + "\t_" * 9)
            lines.append("\t".join(cols))
        lines.append(draw(st.sampled_from([" ", "\r", "\t", "\x0c"])) if draw(damaged) else "")
    text = draw(st.sampled_from(["\n", "\r\n"])).join(lines)
    return draw(st.sampled_from(["", "\ufeff"])) + text + draw(st.sampled_from(["", "\n", "\n\n"]))


# damaged cells: bad ids, odd whitespace, a number too long for int()
_SDP_CELLS = "1 2 0 _ + - ARG1 1_0 é #".split()
_SDP_CELLS += ["", " ", "_ ", "ARG1 ", "\r", "\u2028", "x\u2028y", "\u0661", "9" * 5000]


@st.composite
def _sdp_like(draw: st.DrawFn) -> str:
    """Mostly well-formed SDP 2015 text, with random damage to some lines."""
    cell = st.sampled_from(_SDP_CELLS)
    damaged = st.integers(0, 4).map(lambda x: x == 0)  # about one line in five
    header = "#SDP 2015"
    if draw(damaged):
        header = draw(st.sampled_from(["#20000001", "", "1\ta", "#SDP 2015 \x0c"]))
    lines = [header]
    for k in range(draw(st.integers(0, 3))):
        sid = f"#2000000{k}"
        lines.append(
            draw(st.sampled_from(["#", "# x\u2028y", "#SDP 2015"])) if draw(damaged) else sid
        )
        n = draw(st.integers(1, 4))
        preds = [i for i in range(1, n + 1) if draw(st.booleans())]
        for i in range(1, n + 1):
            top = draw(st.sampled_from("+-"))
            cols = [str(i), "w", "w", "X", top, "+" if i in preds else "-", "_"]
            cols += ["_" if p == i else draw(st.sampled_from(["_", "ARG1"])) for p in preds]
            if draw(damaged):
                cols[draw(st.integers(0, len(cols) - 1))] = draw(cell)
            if draw(damaged):
                cols = cols[: draw(st.integers(1, len(cols)))] + draw(st.lists(cell, max_size=2))
            pad = draw(st.sampled_from([" ", "\t", "\r", "\x0c"])) if draw(damaged) else ""
            lines.append("\t".join(cols) + pad)
        lines.append(draw(st.sampled_from(["", " ", "\r", "\t", "\x0c"])) if draw(damaged) else "")
    text = draw(st.sampled_from(["\n", "\r\n"])).join(lines)
    return draw(st.sampled_from(["", "\ufeff"])) + text + draw(st.sampled_from(["", "\n", "\n\n"]))


@dataclass(frozen=True)
class Reader:
    name: str
    parse: Callable[[str], Any]
    read: Callable[[Any], Any]
    like: Callable[[], st.SearchStrategy[str]]
    suffix: str
    check: Callable[[list[Any]], None] = lambda sentences: None


def _sdp_arcs_are_clean(sentences: list[Any]) -> None:
    for sent in sentences:
        assert all(h != m and lab == lab.strip(" \t\r\f\v") != "" for h, m, lab in sent.arcs)


READERS = [
    Reader("conllu", parse_conllu, read_conllu, _conllu_like, ".conllu"),
    Reader("sdp", parse_sdp, read_sdp, _sdp_like, ".sdp", _sdp_arcs_are_clean),
]


def _outcome(parse, *args):
    try:
        return parse(*args)
    except CorpusFormatError as err:  # any other exception fails the test
        return ("error", err.line, err.problem)


_FUZZ = settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
_readers = pytest.mark.parametrize("reader", READERS, ids=lambda r: r.name)


@_readers
@_FUZZ
@given(data=st.data())
def test_fuzz_parse_text_and_file_agree(tmp_path_factory, reader, data):
    text = data.draw(st.one_of(st.text(st.characters(codec="utf-8")), reader.like()))
    from_string = _outcome(reader.parse, text)
    if isinstance(from_string, list):
        reader.check(from_string)
    d = tmp_path_factory.getbasetemp()
    for name in ("fuzz" + reader.suffix, "fuzz" + reader.suffix + ".gz"):
        p = d / name
        raw = text.encode("utf-8")
        p.write_bytes(gzip.compress(raw) if name.endswith(".gz") else raw)
        assert _outcome(reader.read, p) == from_string


@_readers
@_FUZZ
@given(data=st.data(), gz=st.booleans())
def test_fuzz_read_bytes(tmp_path_factory, reader, data, gz):
    raw = data.draw(
        st.one_of(
            st.binary(),
            st.builds(
                lambda t, i, b: t.encode()[:i] + b + t.encode()[i:],
                reader.like(),
                st.integers(0, 200),
                st.binary(min_size=1, max_size=3),
            ),
        )
    )
    p = tmp_path_factory.getbasetemp() / ("fuzzb" + reader.suffix + (".gz" if gz else ""))
    p.write_bytes(gzip.compress(raw) if gz else raw)
    got = _outcome(reader.read, p)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return
    assert got == _outcome(reader.parse, text)


@_readers
@_FUZZ
@given(raw=st.binary())
def test_fuzz_read_bytes_as_gzip(tmp_path_factory, reader, raw):
    p = tmp_path_factory.getbasetemp() / ("raw" + reader.suffix + ".gz")
    p.write_bytes(raw)
    _outcome(reader.read, p)
