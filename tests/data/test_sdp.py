"""Tests for the SemEval 2015 SDP reader and writer."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from spigot.data import (
    CorpusFormatError,
    ReadStats,
    Sentence,
    format_sdp,
    parse_sdp,
    read_sdp,
    write_sdp,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
SDP_DIR = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "sdp-samples"


def test_reads_fixture():
    s1, s2 = read_sdp(FIXTURES / "tiny.sdp")
    assert s1.sent_id == "20000001"
    assert s1.words == ["Cats", "chase", "big", "mice", "."]
    assert s1.lemmas == ["cat", "chase", "big", "mouse", "_"]
    assert s1.pos == ["NNS", "VBP", "JJ", "NNS", "."]
    assert s1.heads is None and s1.deprels is None
    # predicates in order: 2 (chase), 3 (big); arc (p, m, label) = p heads m
    assert s1.arcs == [(2, 1, "ARG1"), (0, 2, "TOP"), (2, 4, "ARG2"), (3, 4, "ARG1")]
    assert s1.tops == [2]
    assert s1.extra["frame"][1] == "v:e-i-p"
    assert s1.extra["pred"] == ["-", "+", "+", "-", "-"]
    # a sentence without predicates has only 7 columns
    assert s2.arcs == [(0, 1, "TOP")]


def test_fixture_round_trip_is_identical():
    text = (FIXTURES / "tiny.sdp").read_text(encoding="utf-8")
    assert format_sdp(parse_sdp(text)) == text


@pytest.mark.parametrize("name", ["dm.wsj.sdp", "psd.wsj.sdp"])
def test_sample_round_trip(tmp_path, name):
    path = SDP_DIR / name
    if not path.exists():
        pytest.skip(f"SDP samples not found at {path} (shared data directory absent)")
    stats = ReadStats()
    sents = read_sdp(path, stats=stats)
    assert len(sents) == 89 and stats.n_tokens == 1968  # SOURCE.md: 89 sentences, 1968 tokens
    out = tmp_path / name
    write_sdp(sents, out)
    original = [line.rstrip() for line in path.read_text(encoding="utf-8").rstrip().split("\n")]
    written = [line.rstrip() for line in out.read_text(encoding="utf-8").rstrip().split("\n")]
    assert written == original
    assert read_sdp(out) == sents


def test_dm_sample_first_sentence():
    path = SDP_DIR / "dm.wsj.sdp"
    if not path.exists():
        pytest.skip(f"SDP samples not found at {path} (shared data directory absent)")
    first = read_sdp(path)[0]
    # "Pierre Vinken , 61 years old , will join the board ..." top is "join" (9)
    assert first.tops == [9]
    assert (1, 2, "compound") in first.arcs  # first predicate (Pierre) -> Vinken
    assert (9, 2, "ARG1") in first.arcs


def test_writer_derives_predicates_from_arcs():
    s = Sentence(
        words=["a", "b", "c"],
        pos=["DT", "NN", "VB"],
        arcs=[(0, 3, "TOP"), (3, 2, "ARG1"), (2, 1, "BV")],
    )
    text = format_sdp([s])
    assert text == (
        "#SDP 2015\n#1\n"
        "1\ta\t_\tDT\t-\t-\t_\tBV\t_\n"
        "2\tb\t_\tNN\t-\t+\t_\t_\tARG1\n"
        "3\tc\t_\tVB\t+\t+\t_\t_\t_\n\n"
    )
    (back,) = parse_sdp(text)
    assert back.arcs == sorted(s.arcs, key=lambda a: (a[1], a[0]))


def test_writer_rejects_two_labels_on_one_pair():
    s = Sentence(words=["a", "b"], arcs=[(1, 2, "X"), (1, 2, "Y")])
    with pytest.raises(ValueError, match="two labels on arc 1->2"):
        format_sdp([s])


HEADER = "#SDP 2015\n#20000001\n"


@pytest.mark.parametrize(
    "body, line, message",
    [
        ("1\ta\ta\tNN\t-\t-\n", 3, "at least 7 tab-separated columns, found 6"),
        ("x\ta\ta\tNN\t-\t-\t_\n", 3, "token id 'x' is not an integer"),
        ("1\ta\ta\tNN\t?\t-\t_\n", 3, "TOP column must be + or -"),
        ("1\ta\ta\tNN\t-\tyes\t_\n", 3, "PRED column must be + or -"),
        (
            "1\ta\ta\tNN\t-\t+\t_\t_\n2\tb\tb\tNN\t-\t-\t_\n",
            4,
            "expected 8 columns (7 + 1 predicates)",
        ),
        ("2\ta\ta\tNN\t-\t-\t_\n", 3, "out of sequence"),
    ],
)
def test_malformed_lines(tmp_path, body, line, message):
    p = tmp_path / "bad.sdp"
    p.write_text(HEADER + body + "\n", encoding="utf-8")
    with pytest.raises(CorpusFormatError) as err:
        read_sdp(p)
    assert err.value.line == line
    assert str(err.value).startswith(f"{p}:{line}: ")
    assert message in str(err.value)


def test_missing_header_and_empty_file(tmp_path):
    p = tmp_path / "nohdr.sdp"
    p.write_text("#20000001\n1\ta\ta\tNN\t-\t-\t_\n\n", encoding="utf-8")
    with pytest.raises(CorpusFormatError, match=r"nohdr\.sdp:1: expected the '#SDP 2015' header"):
        read_sdp(p)
    e = tmp_path / "empty.sdp"
    e.write_text("", encoding="utf-8")
    with pytest.raises(CorpusFormatError, match="empty"):
        read_sdp(e)
    h = tmp_path / "onlyheader.sdp"
    h.write_text("#SDP 2015\n", encoding="utf-8")
    with pytest.raises(CorpusFormatError, match="no sentences"):
        read_sdp(h)


# --------------------------------------------------------------- whitespace, labels, self-loops

# token 2 is the only predicate; arcs 2 -> 1 (ARG1) and 2 -> 3 (ARG2); token 2 is the top
_CLEAN = [
    ["1", "a", "a", "NN", "-", "-", "_", "ARG1"],
    ["2", "b", "b", "VB", "+", "+", "_", "_"],
    ["3", "c", "c", "NN", "-", "-", "_", "ARG2"],
]
_CLEAN_ARCS = [(2, 1, "ARG1"), (0, 2, "TOP"), (2, 3, "ARG2")]


def _sdp(rows: list[list[str]], eol: str = "\n") -> str:
    lines = ["#SDP 2015", "#20000001"] + ["\t".join(r) for r in rows] + [""]
    return eol.join(lines) + eol


@pytest.mark.parametrize("pad", [" ", "  ", " \r", "\r", "\r\r", "\x0b", "\x0c", " \x0c"])
def test_whitespace_around_cells_never_makes_labels(tmp_path, pad):
    rows = [[c + pad for c in r] for r in _CLEAN]  # every cell, the last one included
    rows[1][0] = pad + rows[1][0]
    for eol in ("\n", "\r\n"):
        text = _sdp(rows, eol)
        (s,) = parse_sdp(text)
        assert s.arcs == _CLEAN_ARCS  # no 'ARG1 ' label, no self-loop from token 2's '_ '
        assert s.words == ["a", "b", "c"]
        p = tmp_path / "ws.sdp"
        p.write_text(text, encoding="utf-8", newline="")
        assert read_sdp(p) == [s]


def test_whitespace_only_line_separates_sentences():
    text = _sdp(_CLEAN).replace("\n\n", "\n \t\r\n#20000002\n" + "\t".join(_CLEAN[0][:7]) + "\n\n")
    s1, s2 = parse_sdp(text)
    assert s1.arcs == _CLEAN_ARCS and s2.words == ["a"]


@pytest.mark.parametrize("cell", ["", " ", "\r", " \r "])
def test_empty_label_cell_is_an_error(tmp_path, cell):
    rows = [list(r) for r in _CLEAN]
    rows[2][7] = cell
    p = tmp_path / "empty.sdp"
    p.write_text(_sdp(rows), encoding="utf-8", newline="")
    with pytest.raises(CorpusFormatError) as err:
        read_sdp(p)
    assert err.value.line == 5
    assert str(err.value).startswith(f"{p}:5: ")
    assert "empty" in err.value.problem


@pytest.mark.parametrize("col", [1, 2, 3, 6])
def test_empty_cell_in_other_columns_is_an_error(col):
    rows = [list(r) for r in _CLEAN]
    rows[0][col] = " "
    with pytest.raises(CorpusFormatError, match=r"<string>:3: .*empty"):
        parse_sdp(_sdp(rows))


def test_self_loop_is_an_error(tmp_path):
    rows = [list(r) for r in _CLEAN]
    rows[1][7] = "ARG1"  # predicate 2 as its own argument
    p = tmp_path / "loop.sdp"
    p.write_text(_sdp(rows), encoding="utf-8")
    with pytest.raises(CorpusFormatError) as err:
        read_sdp(p)
    assert err.value.line == 4
    assert str(err.value).startswith(f"{p}:4: ")
    assert "own argument" in err.value.problem


def test_writer_rejects_what_the_reader_would_reject():
    for arcs in ([(1, 1, "X")], [(2, 1, "X ")], [(2, 1, " X")], [(2, 1, "a\nb")], [(2, 1, "a\rb")]):
        with pytest.raises(ValueError, match="self-loop|invalid label"):
            format_sdp([Sentence(words=["a", "b"], arcs=arcs)])


# ------------------------------------------------------------------ line splitting, encodings

LINE_BREAKERS = ["\u2028", "\u2029", "\x85", "\x0c", "\x0b", "\x1c", "\x1d", "\x1e", "\r"]


def _read_bytes(tmp_path: Path, name: str, data: bytes) -> list[Sentence]:
    p = tmp_path / name
    p.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    return read_sdp(p)


@pytest.mark.parametrize("char", LINE_BREAKERS)
def test_strings_and_files_split_lines_only_at_newline(tmp_path, char):
    rows = [list(r) for r in _CLEAN]
    rows[0][1] = "x" + char + "y"
    text = _sdp(rows).replace("#20000001", "#2000" + char + "0001")
    (s,) = parse_sdp(text)
    assert s.words == ["x" + char + "y", "b", "c"]
    assert s.sent_id == "2000" + char + "0001"
    assert s.arcs == _CLEAN_ARCS
    assert _read_bytes(tmp_path, "t.sdp", text.encode()) == [s]
    assert _read_bytes(tmp_path, "t.sdp.gz", text.encode()) == [s]


def test_crlf_and_bom_read_like_plain_text(tmp_path):
    plain = (FIXTURES / "tiny.sdp").read_text(encoding="utf-8")
    expected = parse_sdp(plain)
    for text in (
        plain.replace("\n", "\r\n"),
        "\ufeff" + plain,
        "\ufeff" + plain.replace("\n", "\r\n"),
    ):
        assert parse_sdp(text) == expected
        assert _read_bytes(tmp_path, "t.sdp", text.encode()) == expected
        assert _read_bytes(tmp_path, "t.sdp.gz", text.encode()) == expected


@pytest.mark.parametrize("name", ["bad.sdp", "bad.sdp.gz"])
def test_non_utf8_input_names_file_line_and_byte(tmp_path, name):
    head = b"#SDP 2015\n#20000001\n"
    data = head + b"1\tna\xefve\tx\tNN\t-\t-\t_\n\n"
    with pytest.raises(CorpusFormatError) as err:
        _read_bytes(tmp_path, name, data)
    assert err.value.line == 3
    assert str(err.value).startswith(f"{tmp_path / name}:3: ")
    assert "not valid UTF-8" in err.value.problem
    assert f"byte offset {len(head) + 4}" in err.value.problem


def test_bom_header_and_corrupt_gzip(tmp_path):
    text = (FIXTURES / "tiny.sdp").read_bytes()
    assert _read_bytes(tmp_path, "b.sdp", b"\xef\xbb\xbf" + text) == read_sdp(FIXTURES / "tiny.sdp")
    p = tmp_path / "c.sdp.gz"
    p.write_bytes(b"\x1f\x8b garbage")
    with pytest.raises(CorpusFormatError, match="gzip"):
        read_sdp(p)
