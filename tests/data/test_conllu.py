"""Tests for the CoNLL-U reader / writer and tree checks."""

from __future__ import annotations

import dataclasses
import gzip
from pathlib import Path

import pytest

from spigot.data import (
    CorpusFormatError,
    ReadStats,
    Sentence,
    check_tree,
    format_conllu,
    is_projective,
    iter_conllu,
    parse_conllu,
    read_conllu,
    write_conllu,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
TINY = FIXTURES / "tiny.conllu"
# tests/data/test_conllu.py -> parents[2] is the project root; data sits beside it
EWT = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "ud-english-ewt"


def _row(i, form, head, rel, deps="_", upos="NOUN"):
    return f"{i}\t{form}\t{form}\t{upos}\t_\t_\t{head}\t{rel}\t{deps}\t_"


def _write(tmp_path: Path, name: str, lines: list[str]) -> Path:
    p = tmp_path / name
    p.write_text("\n".join(lines) + "\n\n", encoding="utf-8")
    return p


# --------------------------------------------------------------------------- fixture file


def test_reads_fixture_basic_tree_and_metadata():
    sents = read_conllu(TINY)
    assert [s.sent_id for s in sents] == ["s1", "s2", "s3"]
    s1, s2, s3 = sents
    assert s1.words == ["She", "wants", "to", "leave", "."]
    assert s1.lemmas == ["she", "want", "to", "leave", "."]
    assert s1.pos == ["PRON", "VERB", "PART", "VERB", "PUNCT"]
    assert s1.heads == [2, 0, 4, 2, 2]
    assert s1.deprels == ["nsubj", "root", "mark", "xcomp", "punct"]
    # the multiword token line 2-3 is skipped, its words are kept
    assert s3.words == ["We", "ca", "n't", "stop", "."]
    assert s3.heads == [4, 4, 4, 0, 4]
    # the empty node 5.1 is not a word
    assert s2.words == ["Sue", "likes", "coffee", "and", "Bill", "tea", "."]
    assert s2.heads == [2, 0, 2, 5, 3, 5, 2]
    assert s1.extra["xpos"][1] == "VBZ"
    assert s1.extra["misc"][3] == "SpaceAfter=No"
    assert " newdoc id = fixture-doc" in s1.comments


def test_enhanced_graph_keeps_full_labels_and_drops_empty_node_edges():
    stats = ReadStats()
    s1, s2, s3 = read_conllu(TINY, stats=stats)
    assert s1.arcs == [
        (2, 1, "nsubj"),
        (4, 1, "nsubj:xsubj"),  # label split on the FIRST colon only
        (0, 2, "root"),
        (4, 3, "mark"),
        (2, 4, "xcomp"),
        (2, 5, "punct"),
    ]
    assert s1.tops == [2]
    # words 4, 5, 6 of s2 only have edges from the empty node 5.1
    assert s2.arcs == [(2, 1, "nsubj"), (0, 2, "root"), (2, 3, "obj"), (2, 7, "punct")]
    assert stats.n_multiword_tokens == 1
    assert stats.n_empty_nodes == 1
    # 3 edges with head 5.1 + the empty node's own edge 2:conj:and
    assert stats.n_empty_node_arcs == 4
    assert stats.n_sentences == 3
    assert stats.n_tokens == 5 + 7 + 5
    assert s3.arcs is not None and len(s3.arcs) == 5


def test_drop_function_labels():
    stats = ReadStats()
    s1, s2, s3 = read_conllu(TINY, drop_function_labels=True, stats=stats)
    assert s1.arcs == [(2, 1, "nsubj"), (4, 1, "nsubj:xsubj"), (0, 2, "root"), (2, 4, "xcomp")]
    assert s2.arcs == [(2, 1, "nsubj"), (0, 2, "root"), (2, 3, "obj")]
    assert s3.arcs == [(4, 1, "nsubj"), (4, 3, "advmod"), (0, 4, "root")]
    assert stats.n_function_arcs == 5  # mark, punct | punct | aux, punct


def test_subtyped_function_label_is_dropped_by_base(tmp_path):
    p = _write(
        tmp_path,
        "sub.conllu",
        [
            _row(1, "a", 2, "det", "2:det:predet"),
            _row(2, "b", 0, "root", "0:root"),
            _row(3, "c", 2, "nmod", "2:nmod:poss"),
        ],
    )
    (s,) = read_conllu(p, drop_function_labels=True)
    assert s.arcs == [(0, 2, "root"), (2, 3, "nmod:poss")]


def test_streaming_is_lazy_generator():
    it = iter_conllu(TINY)
    first = next(it)
    assert first.sent_id == "s1"
    assert [s.sent_id for s in it] == ["s2", "s3"]


def test_parse_from_string_and_no_deps_means_no_graph():
    text = "\n".join([_row(1, "x", 0, "root"), _row(2, "y", 1, "obj")]) + "\n"
    (s,) = parse_conllu(text)
    assert s.arcs is None
    assert s.heads == [0, 1]
    assert s.sent_id is None


def test_unparsed_input_has_no_tree():
    text = "\n".join([_row(1, "x", "_", "_"), _row(2, "y", "_", "_")]) + "\n"
    (s,) = parse_conllu(text)
    assert s.heads is None and s.deprels is None


# --------------------------------------------------------------------------- malformed input


@pytest.mark.parametrize(
    "bad_line, message",
    [
        ("2\ty\ty\tNOUN\t_\t_\t1\tobj\t_", "expected 10 tab-separated columns, found 9"),
        ("two\ty\ty\tNOUN\t_\t_\t1\tobj\t_\t_", "word id 'two' is not an integer"),
        ("2\ty\ty\tNOUN\t_\t_\tone\tobj\t_\t_", "HEAD 'one' is not an integer"),
        ("2\ty\ty\tNOUN\t_\t_\t7\tobj\t_\t_", "HEAD 7 out of range 0..3"),
        ("2\ty\ty\tNOUN\t_\t_\t1\tobj\t9:obj\t_", "DEPS head 9 out of range"),
        ("2\ty\ty\tNOUN\t_\t_\t1\tobj\tobj\t_", "not of the form head:label"),
        ("4\ty\ty\tNOUN\t_\t_\t1\tobj\t_\t_", "out of sequence"),
    ],
)
def test_malformed_line_names_file_and_line(tmp_path, bad_line, message):
    lines = ["# sent_id = ok", _row(1, "x", 0, "root"), bad_line, _row(3, "z", 1, "obj")]
    p = _write(tmp_path, "bad.conllu", lines)
    with pytest.raises(CorpusFormatError) as err:
        read_conllu(p)
    assert err.value.line == 3
    assert str(err.value).startswith(f"{p}:3: ")
    assert message in str(err.value)
    assert isinstance(err.value, ValueError)


def test_error_line_number_counts_earlier_sentences(tmp_path):
    lines = [
        _row(1, "x", 0, "root"),
        "",
        "# sent_id = second",
        _row(1, "x", 0, "root"),
        _row(2, "y", 1, "obj", upos="NOUN") + "\textra",
    ]
    p = _write(tmp_path, "bad2.conllu", lines)
    with pytest.raises(CorpusFormatError, match=r"bad2\.conllu:5: expected 10"):
        read_conllu(p)


def test_empty_file_is_a_clear_error(tmp_path):
    p = tmp_path / "empty.conllu"
    p.write_text("", encoding="utf-8")
    with pytest.raises(CorpusFormatError, match="empty"):
        read_conllu(p)
    q = tmp_path / "blank.conllu"
    q.write_text("\n\n", encoding="utf-8")
    with pytest.raises(CorpusFormatError, match="no sentences"):
        read_conllu(q)


# --------------------------------------------------------------------------- tree validation


@pytest.mark.parametrize(
    "heads, problem",
    [
        ([2, 0, 2], None),
        ([2, 3, 1], "no root"),
        ([0, 0, 2], "multiple roots (words 1, 2)"),
        ([0, 3, 2], "cycle through words 2, 3"),
        ([0, 2], "cycle through words 2"),  # self loop
        ([0, 5], "out of range"),
    ],
)
def test_check_tree(heads, problem):
    got = check_tree(heads)
    if problem is None:
        assert got is None
    else:
        assert got is not None and problem in got


def _invalid_tree_file(tmp_path: Path) -> Path:
    return _write(
        tmp_path,
        "trees.conllu",
        [
            "# sent_id = good1",
            _row(1, "a", 0, "root"),
            _row(2, "b", 1, "obj"),
            "",
            "# sent_id = cyclic",
            _row(1, "a", 0, "root"),
            _row(2, "b", 3, "obj"),
            _row(3, "c", 2, "obj"),
            "",
            "# sent_id = tworoots",
            _row(1, "a", 0, "root"),
            _row(2, "b", 0, "root"),
            "",
            "# sent_id = noroot",
            _row(1, "a", 2, "x"),
            _row(2, "b", 1, "x"),
            "",
            "# sent_id = good2",
            _row(1, "a", 2, "nsubj"),
            _row(2, "b", 0, "root"),
        ],
    )


def test_invalid_tree_raises_by_default(tmp_path):
    p = _invalid_tree_file(tmp_path)
    with pytest.raises(
        CorpusFormatError, match=r"trees\.conllu:5: invalid tree in sentence 'cyclic'"
    ):
        read_conllu(p)


def test_invalid_tree_skip_counts(tmp_path, caplog):
    p = _invalid_tree_file(tmp_path)
    stats = ReadStats()
    sents = read_conllu(p, on_invalid_tree="skip", stats=stats)
    assert [s.sent_id for s in sents] == ["good1", "good2"]
    assert stats.n_skipped_invalid == 3
    assert [sid for sid, _ in stats.skipped] == ["cyclic", "tworoots", "noroot"]
    assert "cycle" in stats.skipped[0][1]
    assert "multiple roots" in stats.skipped[1][1]
    assert "no root" in stats.skipped[2][1]
    assert "skipping sentence 'cyclic'" in caplog.text


def test_invalid_option_value():
    with pytest.raises(ValueError, match="on_invalid_tree"):
        read_conllu(TINY, on_invalid_tree="ignore")  # type: ignore[arg-type]


def test_is_projective():
    assert is_projective([2, 0, 2])
    # 1 <- 3 crosses 2 <- 4 : arcs (1,3) and (2,4)
    assert not is_projective([3, 4, 0, 3])
    # root arc 0 -> 2 is crossed by 1 -> 3
    assert not is_projective([3, 0, 2])


# --------------------------------------------------------------------------- writing


def test_round_trip_fixture(tmp_path):
    sents = read_conllu(TINY)
    out = tmp_path / "out.conllu"
    write_conllu(sents, out)
    again = read_conllu(out)
    assert again == sents


def test_writer_writes_predictions_and_deps(tmp_path):
    gold = read_conllu(TINY, drop_function_labels=True)[0]
    pred = dataclasses.replace(
        gold, heads=[2, 0, 2, 2, 4], deprels=["nsubj", "root", "obj", "xcomp", "punct"]
    )
    text = format_conllu([pred])
    rows = [line.split("\t") for line in text.splitlines() if line and not line.startswith("#")]
    assert [r[6] for r in rows] == ["2", "0", "2", "2", "4"]
    assert [r[7] for r in rows] == ["nsubj", "root", "obj", "xcomp", "punct"]
    assert [r[8] for r in rows] == ["2:nsubj|4:nsubj:xsubj", "0:root", "_", "2:xcomp", "_"]
    (back,) = parse_conllu(text)
    assert back.heads == pred.heads and back.arcs == gold.arcs


def test_writer_without_optional_fields():
    s = Sentence(words=["a", "b"], heads=[0, 1], deprels=["root", "obj"])
    text = format_conllu([s])
    assert text == "1\ta\t_\t_\t_\t_\t0\troot\t_\t_\n2\tb\t_\t_\t_\t_\t1\tobj\t_\t_\n\n"


def test_sentence_length_mismatch_is_rejected():
    with pytest.raises(ValueError, match="heads has length 1, expected 2"):
        Sentence(words=["a", "b"], heads=[0])


# --------------------------------------------------------------------------- real data


def test_ewt_dev_statistics_and_round_trip(tmp_path):
    path = EWT / "en_ewt-ud-dev.conllu"
    if not path.exists():
        pytest.skip(f"UD EWT not found at {path} (shared data directory absent)")
    stats = ReadStats()
    sents = read_conllu(path, stats=stats)
    assert len(sents) == 2001  # README: 2,001 dev sentences
    assert stats.n_tokens == 25147
    assert stats.n_skipped_invalid == 0
    assert all(check_tree(s.heads) is None for s in sents)
    heads_per_token = sum(len(s.arcs) for s in sents) / stats.n_tokens
    assert 1.0 < heads_per_token < 1.1
    dm_like = read_conllu(path, drop_function_labels=True)
    dm_rate = sum(len(s.arcs) for s in dm_like) / stats.n_tokens
    assert 0.6 < dm_rate < 0.7  # data README: 0.64 heads per token on train
    out = tmp_path / "dev.conllu"
    write_conllu(sents, out)
    assert read_conllu(out) == sents


# ------------------------------------------------------------------ line splitting, encodings

# every character str.splitlines() breaks at, besides "\n" and "\r\n"
LINE_BREAKERS = ["\u2028", "\u2029", "\x85", "\x0c", "\x0b", "\x1c", "\x1d", "\x1e", "\r"]


def _read_bytes(tmp_path: Path, name: str, data: bytes) -> list[Sentence]:
    p = tmp_path / name
    p.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    return read_conllu(p)


@pytest.mark.parametrize("char", LINE_BREAKERS)
def test_strings_and_files_split_lines_only_at_newline(tmp_path, char):
    text = (
        "\n".join(
            [
                "# sent_id = a" + char + "b",
                f"# note {char} inside a comment",
                _row(1, "x" + char + "y", 0, "root"),
                _row(2, "z", 1, "obj"),
            ]
        )
        + "\n"
    )
    from_string = parse_conllu(text)
    (s,) = from_string
    assert s.words == ["x" + char + "y", "z"]
    assert s.sent_id == "a" + char + "b"
    assert s.comments == [f" note {char} inside a comment"]
    assert _read_bytes(tmp_path, "t.conllu", text.encode()) == from_string
    assert _read_bytes(tmp_path, "t.conllu.gz", text.encode()) == from_string


def test_crlf_and_bom_read_like_plain_text(tmp_path):
    plain = TINY.read_text(encoding="utf-8")
    expected = parse_conllu(plain)
    for text in (
        plain.replace("\n", "\r\n"),
        "\ufeff" + plain,
        "\ufeff" + plain.replace("\n", "\r\n"),
    ):
        assert parse_conllu(text) == expected
        assert _read_bytes(tmp_path, "t.conllu", text.encode()) == expected
        assert _read_bytes(tmp_path, "t.conllu.gz", text.encode()) == expected


def test_line_numbers_agree_between_string_and_file(tmp_path):
    text = "\r\n".join([_row(1, "a\u2028b", 0, "root"), "", _row(1, "c", 0, "root"), "2\tbad"])
    with pytest.raises(CorpusFormatError) as from_string:
        parse_conllu(text)
    with pytest.raises(CorpusFormatError) as from_file:
        _read_bytes(tmp_path, "t.conllu", text.encode())
    assert from_string.value.line == from_file.value.line == 4
    assert from_string.value.problem == from_file.value.problem


@pytest.mark.parametrize("name", ["bad.conllu", "bad.conllu.gz"])
def test_non_utf8_input_names_file_line_and_byte(tmp_path, name):
    head = ("# sent_id = s\n" + _row(1, "x", 0, "root") + "\n").encode()
    data = head + b"2\tcaf\xe9\ty\tNOUN\t_\t_\t1\tobj\t_\t_\n\n"  # Latin-1 e-acute on line 3
    with pytest.raises(CorpusFormatError) as err:
        _read_bytes(tmp_path, name, data)
    p = tmp_path / name
    assert err.value.line == 3
    assert str(err.value).startswith(f"{p}:3: ")
    assert "not valid UTF-8" in err.value.problem
    assert f"byte offset {len(head) + 5}" in err.value.problem
    assert isinstance(err.value, ValueError)


def test_latin1_file_is_rejected_but_bom_is_fine(tmp_path):
    text = "# sent_id = é\n" + _row(1, "café", 0, "root") + "\n\n"
    with pytest.raises(CorpusFormatError, match=r"t\.conllu:1: .*not valid UTF-8"):
        _read_bytes(tmp_path, "t.conllu", text.encode("latin-1"))
    (s,) = _read_bytes(tmp_path, "t.conllu", b"\xef\xbb\xbf" + text.encode())
    assert s.sent_id == "é" and s.words == ["café"]


def test_corrupt_gzip_is_a_format_error(tmp_path):
    p = tmp_path / "t.conllu.gz"
    p.write_bytes(b"not gzip at all\n")
    with pytest.raises(CorpusFormatError, match="gzip"):
        read_conllu(p)
    data = gzip.compress(TINY.read_bytes())
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorpusFormatError, match="gzip"):
        read_conllu(p)


def test_ids_and_heads_must_be_ascii_digits():
    for bad in ("\u0661", "1_0", " 1", "+1"):
        text = _row(1, "x", 0, "root") + "\n" + _row(2, "y", bad, "obj") + "\n"
        with pytest.raises(CorpusFormatError, match="is not an integer"):
            parse_conllu(text)
