"""Tests for the SemEval 2015 SDP reader and writer."""

from __future__ import annotations

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
