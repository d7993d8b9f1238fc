"""Tests for the PropBank (EWT) semantic-graph reader."""

from __future__ import annotations

import io
import re
import tarfile
import warnings
from pathlib import Path

import pytest

from spigot.data import (
    CorpusFormatError,
    PropBankStats,
    attach_propbank,
    parse_conllu,
    read_propbank,
    read_propbank_ewt,
    span_head,
)
from spigot.data.propbank import iter_gold_skel

# tests/data/test_propbank.py -> parents[2] is the project root; the data sits beside it
DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
PROPBANK = DATA / "propbank-ewt" / "propbank-ewt-gold_skel.tgz"
EWT = DATA / "ud-english-ewt"

DOC = "google/ewt/answers/00/doc1.xml"
MEMBER = "data/google/ewt/answers/00/doc1.xml.gold_skel"

# Each sentence: UD rows (word, head, deprel) and PropBank rows (xpos, roleset, *arg cells).
# 1 "John quickly saw the dog that barked in the park ." -- two predicates, a relative clause
S1_UD = [
    ("John", 3, "nsubj"),
    ("quickly", 3, "advmod"),
    ("saw", 0, "root"),
    ("the", 5, "det"),
    ("dog", 3, "obj"),
    ("that", 7, "nsubj"),
    ("barked", 5, "acl:relcl"),
    ("in", 10, "case"),
    ("the", 10, "det"),
    ("park", 7, "obl"),
    (".", 3, "punct"),
]
S1_PB = [
    ("NNP", "-", "(ARG0*", "*"),  # ARG0 "John quickly": both words headed by saw, same depth
    ("RB", "-", "*)", "*"),
    ("VBD", "see.01", "(V*)", "*"),
    ("DT", "-", "(ARG1*", "(ARG0*"),
    ("NN", "-", "*", "*)"),
    ("WDT", "-", "*", "(R-ARG0*)"),
    ("VBD", "bark.01", "*", "(V*)"),
    ("IN", "-", "*", "(ARGM-LOC*"),  # "in the park": UD head of the span is park, not in
    ("DT", "-", "*", "*"),
    ("NN", "-", "*)", "*)"),
    (".", "-", "*", "*"),
]
# 2 "She gave up and left ." -- a discontinuous verb (C-V) and a shared argument
S2_UD = [
    ("She", 2, "nsubj"),
    ("gave", 0, "root"),
    ("up", 2, "compound:prt"),
    ("and", 5, "cc"),
    ("left", 2, "conj"),
    (".", 2, "punct"),
]
S2_PB = [
    ("PRP", "-", "(ARG0*)", "(ARG0*)"),
    ("VBD", "give_up.07", "(V*)", "*"),
    ("RP", "-", "(C-V*)", "*"),
    ("CC", "-", "*", "*"),
    ("VBD", "leave.01", "*", "(V*)"),
    (".", "-", "*", "*"),
]
# 3 "Dogs bark loudly ." -- a span nested around the predicate is headed by it: no arc
S3_UD = [("Dogs", 2, "nsubj"), ("bark", 0, "root"), ("loudly", 2, "advmod"), (".", 2, "punct")]
S3_PB = [("NNS", "-", "(ARGM-ADV*"), ("VBP", "bark.01", "(V*)"), ("RB", "-", "*)"), (".", "-", "*")]
# 4 "Hello !" -- no predicate
S4_UD = [("Hello", 0, "root"), ("!", 1, "punct")]
S4_PB = [("UH", "-"), (".", "-")]
# 5 "I took an x - ray ." -- two identical columns of one predicate (x, its V span) except
# for one label; the second column's roleset token (ray) lies outside its V span
S5_UD = [
    ("I", 2, "nsubj"),
    ("took", 0, "root"),
    ("an", 6, "det"),
    ("x", 6, "compound"),
    ("-", 6, "punct"),
    ("ray", 2, "obj"),
    (".", 2, "punct"),
]
S5_PB = [
    ("PRP", "-", "(ARG0*)", "(ARG0*)", "(ARG1*)"),
    ("VBD", "take.01", "(V*)", "(ARGM-LVB*)", "(ARGM-LVB*)"),
    ("DT", "-", "(ARG1*", "*", "*"),
    ("NN", "xray.01", "*", "(V*)", "(V*)"),
    ("HYPH", "-", "*", "*", "*"),
    ("NN", "xray.01", "*)", "(C-V*)", "(C-V*)"),
    (".", "-", "*", "*", "*"),
]
SENTENCES = [(S1_UD, S1_PB), (S2_UD, S2_PB), (S3_UD, S3_PB), (S4_UD, S4_PB), (S5_UD, S5_PB)]


def skel(sentences: list[list[tuple[str, ...]]], doc: str = DOC) -> str:
    """``.gold_skel`` text for PropBank rows (sentence i of ``doc``)."""
    blocks = []
    for i, rows in enumerate(sentences):
        lines = [
            f"{doc}  {i}  {t}  [WORD]  {xpos}  *  {roleset.split('.')[0]}  {roleset}  "
            + "  ".join(cells)
            for t, (xpos, roleset, *cells) in enumerate(rows)
        ]
        blocks.append("\n".join(lines) + "\n")
    return "\n".join(blocks)


def conllu(sentences: list[tuple[str, list[tuple[str, int, str]]]]) -> str:
    """CoNLL-U text for ``(sent_id, rows)`` pairs."""
    out = []
    for sent_id, rows in sentences:
        out.append(f"# sent_id = {sent_id}")
        for i, (w, h, rel) in enumerate(rows, start=1):
            out.append(f"{i}\t{w}\t{w}\tX\t_\t_\t{h}\t{rel}\t_\t_")
        out.append("")
    return "\n".join(out) + "\n"


def ud_ids(n: int, doc: str = "answers-doc1") -> list[str]:
    return [f"{doc}-{i:04d}" for i in range(1, n + 1)]


def make_tgz(path: Path, members: dict[str, str | bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, text in members.items():
            data = text if isinstance(text, bytes) else text.encode("utf-8")
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture
def fixture_files(tmp_path: Path) -> tuple[Path, Path]:
    tgz = make_tgz(tmp_path / "pb.tgz", {MEMBER: skel([pb for _, pb in SENTENCES]), "LICENSE": ""})
    ud = tmp_path / "ud.conllu"
    rows = [(sent_id, u) for sent_id, (u, _) in zip(ud_ids(5), SENTENCES, strict=True)]
    ud.write_text(conllu(rows), encoding="utf-8")
    return ud, tgz


# --------------------------------------------------------------------------- fixtures


def test_span_head_rule():
    heads = [h for _, h, _ in S1_UD]
    assert span_head(heads, 4, 10) == 5  # "the dog that barked in the park": dog
    assert span_head(heads, 8, 10) == 10  # "in the park": in's head (park) is inside
    assert span_head(heads, 1, 2) == 1  # John, quickly: both depth 1 -> smallest index
    # park (depth 3, head barked) and "." (depth 1, head saw) both leave the span: "." wins
    assert span_head(heads, 10, 11) == 11
    assert span_head(heads, 3, 3) == 3
    with pytest.raises(ValueError, match="out of range"):
        span_head(heads, 0, 2)


def test_graphs_of_fixture(fixture_files):
    ud, tgz = fixture_files
    sents, st = read_propbank_ewt(ud, tgz)
    assert [s.sent_id for s in sents] == ud_ids(5)
    assert sents[0].arcs == [
        (3, 1, "ARG0"),
        (3, 5, "ARG1"),
        (7, 5, "ARG0"),
        (7, 6, "R-ARG0"),
        (7, 10, "ARGM-LOC"),
    ]
    # V and C-V give no arc; She has two heads
    assert sents[1].arcs == [(2, 1, "ARG0"), (5, 1, "ARG0")]
    assert sents[2].arcs == []  # the only argument is headed by the predicate
    assert sents[3].arcs == []  # no predicate
    # predicate "x" (4) for both columns; first column wins the (4, 1) conflict
    assert sents[4].arcs == [(2, 1, "ARG0"), (4, 1, "ARG0"), (4, 2, "ARGM-LVB"), (2, 6, "ARG1")]
    assert sents[1].extra["roleset"] == ["_", "give_up.07", "_", "_", "leave.01", "_"]
    assert sents[0].heads == [h for _, h, _ in S1_UD]  # the basic tree is kept
    assert (st.sentences, st.aligned, st.n_skipped) == (5, 5, 0)
    assert st.tokens == 11 + 6 + 4 + 2 + 7
    assert st.predicates == 2 + 2 + 1 + 0 + 3
    assert st.arcs == 5 + 2 + 0 + 0 + 4
    assert st.labels["ARG0"] == 6 and st.labels["R-ARG0"] == 1
    assert st.basic_arcs == 4 + 1 + 2  # (7, 5) is reversed, (5, 1) (4, 1) (4, 2) neither
    assert st.reversed_basic_arcs == 1
    assert st.multi_head_words == 1 + 1 + 1  # dog; She; I
    assert (st.duplicate_arcs, st.label_conflicts, st.self_arcs) == (2, 1, 1)
    assert st.no_arc_spans == 2 + 3 + 1 + 5
    assert st.xpos_differs == 5  # the UD fixture has no XPOS
    assert st.arcs_per_token == pytest.approx(11 / 30)
    assert st.basic_share == pytest.approx(7 / 11)


def test_directory_and_single_file_read_like_the_archive(fixture_files, tmp_path):
    ud, tgz = fixture_files
    d = tmp_path / "extracted"
    (d / MEMBER).parent.mkdir(parents=True)
    (d / MEMBER).write_text(skel([pb for _, pb in SENTENCES]), encoding="utf-8")
    from_tgz, _ = read_propbank_ewt(ud, tgz)
    assert read_propbank_ewt(ud, d)[0] == from_tgz
    assert read_propbank_ewt(ud, d / MEMBER)[0] == from_tgz
    index = read_propbank(tgz)
    assert list(index) == ["answers-doc1"] and index["answers-doc1"][0].sent_id == ud_ids(1)[0]


def test_unaligned_sentences_are_skipped_with_one_warning(fixture_files):
    _, tgz = fixture_files
    short = S1_UD[:-1]
    rows = [
        ("answers-doc1-0001", short),  # length mismatch
        ("answers-doc1-0002", S2_UD),
        ("answers-doc1-0009", S2_UD),  # missing sentence
        ("answers-doc2-0001", S2_UD),  # no document
        ("answers-doc2-0002", S2_UD),  # no document
        ("notanid", S2_UD),
    ]
    sents = parse_conllu(conllu(rows))
    st = PropBankStats()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = attach_propbank(sents, read_propbank(tgz), stats=st, source="ud.conllu")
    assert [s.sent_id for s in out] == ["answers-doc1-0002"]
    assert len(caught) == 1
    msg = str(caught[0].message)
    assert "ud.conllu: skipped 5 of 6 sentences" in msg
    for part in ("1 length mismatch", "1 missing sentence", "2 no document", "1 no sent_id"):
        assert part in msg
    assert st.skipped == {
        "length mismatch": 1,
        "missing sentence": 1,
        "no document": 2,
        "no sent_id": 1,
    }
    assert st.skipped_ids[0] == ("answers-doc1-0001", "length mismatch")
    assert (st.sentences, st.aligned, st.n_skipped) == (6, 1, 5)


def test_no_warning_when_everything_aligns(fixture_files):
    ud, tgz = fixture_files
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        read_propbank_ewt(ud, tgz)


def test_malformed_line_in_archive_names_member_and_line(tmp_path):
    text = skel([S4_PB, S3_PB])
    lines = text.splitlines()
    lines[4] = " ".join(lines[4].split()[:5])  # line 5: second sentence, first token
    tgz = make_tgz(tmp_path / "bad.tgz", {MEMBER: "\n".join(lines) + "\n"})
    with pytest.raises(CorpusFormatError, match="at least 8 .*columns, found 5") as err:
        read_propbank(tgz)
    assert err.value.source == f"{tgz}[{MEMBER}]"
    assert err.value.line == 5
    assert str(err.value).startswith(f"{tgz}[{MEMBER}]:5: ")


@pytest.mark.parametrize(
    ("rows", "line", "problem"),
    [
        ([("NN", "x.01", "(ARG0*")], 1, "span 'ARG0' not closed"),
        ([("NN", "-", "*)")], 1, "predicates .* but 1 argument columns"),
        ([("NN", "x.01", "(V*)"), ("NN", "-", "*)")], 2, "span closed but none is open"),
        ([("NN", "x.01", "(V*)"), ("NN", "-", "(ARG1)")], 2, "cell '\\(ARG1\\)'.* malformed"),
        ([("NN", "x.01", "(ARG0*)")], 1, "exactly one \\(V\\*\\) span"),
        ([("NN", "x.01", "(V*)"), ("NN", "-")], 2, "8 columns, but the sentence's first line"),
    ],
)
def test_malformed_sentences(rows, line, problem):
    with pytest.raises(CorpusFormatError, match=problem) as err:
        list(iter_gold_skel(skel([rows]).splitlines(), "f.gold_skel"))
    assert err.value.source == "f.gold_skel" and err.value.line == line


def test_bad_indices_and_duplicates(tmp_path):
    text = skel([S4_PB]).replace(f"{DOC}  0  1", f"{DOC}  0  2")
    with pytest.raises(CorpusFormatError, match="token index 2 out of sequence"):
        list(iter_gold_skel(text.splitlines()))
    with pytest.raises(CorpusFormatError, match="not of the form"):
        list(iter_gold_skel(skel([S4_PB], doc="doc1.xml").splitlines()))
    twice = make_tgz(tmp_path / "twice.tgz", {MEMBER: skel([S4_PB]), "b.gold_skel": skel([S4_PB])})
    with pytest.raises(CorpusFormatError, match="answers-doc1-0001 given twice"):
        read_propbank(twice)
    with pytest.raises(CorpusFormatError, match="no .gold_skel sentences"):
        read_propbank(make_tgz(tmp_path / "empty.tgz", {"LICENSE": "x"}))
    latin1 = make_tgz(tmp_path / "latin1.tgz", {MEMBER: skel([S4_PB]).encode() + b"caf\xe9"})
    with pytest.raises(CorpusFormatError, match="not valid UTF-8: byte 0xe9") as err:
        read_propbank(latin1)
    assert err.value.source == f"{latin1}[{MEMBER}]"
    assert err.value.line == len(S4_PB) + 1  # the line after the sentence
    with pytest.raises(FileNotFoundError):
        read_propbank(tmp_path / "missing.tgz")


# --------------------------------------------------------------------------- real data

LABEL = re.compile(r"^(?:[RC]-)?ARG(?:[0-5A](?:-DSP)?|M-[A-Z]+)$")


@pytest.fixture(scope="module")
def propbank_index():
    if not PROPBANK.is_file() or not EWT.is_dir():
        pytest.skip(f"PropBank EWT or UD EWT not found under {DATA} (shared data directory absent)")
    return read_propbank(PROPBANK)


@pytest.mark.parametrize(
    ("split", "n_ud", "n_aligned"),
    [("train", 12544, 12524), ("dev", 2001, 1968), ("test", 2077, 2058)],  # SOURCE.md
)
def test_real_data_alignment_and_graphs(propbank_index, split, n_ud, n_aligned):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sents, st = read_propbank_ewt(EWT / f"en_ewt-ud-{split}.conllu", propbank_index)
    assert len(caught) == 1  # a few sentences never align
    assert st.sentences == n_ud and st.aligned == len(sents) == n_aligned
    assert st.aligned + st.n_skipped == st.sentences
    for s in sents:
        n = len(s)
        for h, m, lab in s.arcs:
            assert 1 <= h <= n and 1 <= m <= n and h != m, (s.sent_id, h, m)
            assert LABEL.match(lab), lab
        assert len({(h, m) for h, m, _ in s.arcs}) == len(s.arcs)
    assert 0.3 < st.arcs_per_token < 0.5  # SOURCE.md: about 0.39
    assert 0.6 < st.basic_share < 0.8  # SOURCE.md: 71%
