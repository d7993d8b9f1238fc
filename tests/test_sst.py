"""Tests for the Stanford Sentiment Treebank readers (spigot.data.sst)."""

from __future__ import annotations

import ast
import gzip
from pathlib import Path

import pytest

import spigot.data
from spigot.data import (
    CorpusFormatError,
    DataError,
    SSTExample,
    parse_ptb_tree,
    read_sst_trees,
    read_sst_tsv,
    unescape_ptb,
)

# one tree per root label 0..4; escapes, quotes and a NO-BREAK SPACE inside a token
TREES = [
    "(0 (1 (2 -LRB-) (0 awful)) (2 -RRB-))",
    "(1 (2 (2 ``) (1 dull)) (2 ''))",
    "(2 (2 It) (2 (2 exists) (2 .)))",
    "(3 (2 (2 co-writer\\/director) (3 good)) (2 \\*\\*))",
    "(4 (2 (2 8\u00a01\\/2) (4 great)) (2 (2 -LSB-) (2 (2 -RSB-) (2 (2 -LCB-) (2 -RCB-)))))",
]
TREES_TEXT = "\n".join(TREES) + "\n"


def _write(path: Path, text: str | bytes) -> Path:
    data = text.encode("utf-8") if isinstance(text, str) else text
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


# --------------------------------------------------------------------------- parse_ptb_tree


def test_parse_tree_tokens_labels_and_spans():
    ex = parse_ptb_tree("(3 (2 It) (4 (4 rocks) (2 .)))")
    assert ex == SSTExample(
        tokens=["It", "rocks", "."],
        label=3,
        root_label=3,
        spans=[(0, 3, 3), (0, 1, 2), (1, 3, 4), (1, 2, 4), (2, 3, 2)],  # pre-order
    )
    assert len(ex) == 3
    # a one-word sentence is a single leaf; whitespace between tokens may vary
    assert parse_ptb_tree("(1 Ugh)").spans == [(0, 1, 1)]
    assert parse_ptb_tree("  ( 3 (2\tIt )(4 rocks) ) \r").tokens == ["It", "rocks"]


def test_escapes():
    assert unescape_ptb("-LRB-") == "("
    assert unescape_ptb("-RRB-") == ")"
    assert [unescape_ptb(t) for t in ("-LSB-", "-RSB-", "-LCB-", "-RCB-")] == list("[]{}")
    assert unescape_ptb("writer\\/director") == "writer/director"
    assert unescape_ptb("\\*\\*\\*") == "***"
    # quotes are distinct tokens and stay as they are; a bracket escape is a whole token
    assert [unescape_ptb(t) for t in ("``", "''", "`", "'")] == ["``", "''", "`", "'"]
    assert unescape_ptb("x-LRB-") == "x-LRB-"
    ex = parse_ptb_tree(TREES[4])
    assert ex.tokens == ["8\u00a01/2", "great", "[", "]", "{", "}"]  # NBSP stays inside
    raw = parse_ptb_tree(TREES[4], unescape=False)
    assert raw.tokens == ["8\u00a01\\/2", "great", "-LSB-", "-RSB-", "-LCB-", "-RCB-"]
    assert raw.spans == ex.spans
    assert parse_ptb_tree(TREES[0]).tokens == ["(", "awful", ")"]
    assert parse_ptb_tree(TREES[1]).tokens == ["``", "dull", "''"]
    assert parse_ptb_tree(TREES[3]).tokens == ["co-writer/director", "good", "**"]


def test_deep_tree_does_not_recurse():
    depth = 5000
    ex = parse_ptb_tree("(2 " * depth + "(2 x)" + ")" * depth)
    assert ex.tokens == ["x"] and len(ex.spans) == depth + 1


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("(2 (2 a) (2 b)", "column 1: unbalanced parentheses: 1 '\\(' not closed"),
        ("(2 (2 a) (2 b)))", "column 16: unbalanced parentheses: '\\)' without"),
        ("(5 (2 a) (2 b))", "column 2: label '5' is not one of 0-4"),
        ("(2 (-1 a) (2 b))", "column 5: label '-1' is not one of 0-4"),
        ("(2 (x a) (2 b))", "column 5: label 'x' is not one of 0-4"),
        ("(22 a)", "column 2: label '22' is not one of 0-4"),
        ("(2 a b)", "column 4: leaf word 'a' must be followed by '\\)', found 'b'"),
        ("(2 a", "column 4: leaf word 'a' must be followed by '\\)', found the end of the line"),
        ("(2 (2 a) b)", "column 10: word 'b' beside a subtree"),
        ("(2)", "column 3: empty node"),
        ("()", "column 1: '\\(' not followed by a label"),
        ("(2 a) (2 b)", "column 7: text after the end of the tree"),
        ("(2 (2 a) (2 (2 b) (2 c)", "column 10: unbalanced parentheses: 2 '\\(' not closed"),
        ("2 a", "column 1: expected '\\(' \\(start of a tree\\), found '2'"),
        ("", "empty line"),
    ],
)
def test_parse_errors(line, problem):
    with pytest.raises(CorpusFormatError, match=f"^f.txt:7: {problem}") as err:
        parse_ptb_tree(line, source="f.txt", lineno=7)
    assert err.value.source == "f.txt" and err.value.line == 7


# --------------------------------------------------------------------------- read_sst_trees


@pytest.mark.parametrize("name", ["trees.txt", "trees.txt.gz"])
def test_read_trees_five_class_and_binary(tmp_path, name):
    path = _write(tmp_path / name, TREES_TEXT)
    five = read_sst_trees(path)
    assert [ex.label for ex in five] == [0, 1, 2, 3, 4]
    assert [ex.root_label for ex in five] == [0, 1, 2, 3, 4]
    assert five == [parse_ptb_tree(t) for t in TREES]
    binary = read_sst_trees(path, binary=True)
    # neutral (2) dropped, 0-1 -> 0, 3-4 -> 1; root_label and spans keep the 5-class labels
    assert [(ex.label, ex.root_label) for ex in binary] == [(0, 0), (0, 1), (1, 3), (1, 4)]
    assert [ex.spans for ex in binary] == [five[i].spans for i in (0, 1, 3, 4)]
    assert binary[3].tokens == ["8\u00a01/2", "great", "[", "]", "{", "}"]
    assert read_sst_trees(path, unescape=False)[3].tokens[0] == "co-writer\\/director"


def test_crlf_bom_and_trailing_blank_lines(tmp_path):
    text = "\ufeff" + "\r\n".join(TREES) + "\r\n\r\n \n"
    assert read_sst_trees(_write(tmp_path / "t.txt", text)) == [parse_ptb_tree(t) for t in TREES]


@pytest.mark.parametrize(
    ("text", "line", "problem"),
    [
        (TREES[0] + "\n(2 (2 a) (2 b)\n", 2, "unbalanced parentheses"),
        (TREES[0] + "\n" + TREES[1] + "\n(2 (7 a) (2 b))\n", 3, "label '7' is not one of 0-4"),
        (TREES[0] + "\n\n" + TREES[1] + "\n", 2, "empty line in the middle of the file"),
        (TREES[0] + "\n  \n\n" + TREES[1] + "\n", 2, "empty line in the middle of the file"),
        (TREES[0] + "\n(2 a) x\n", 2, "text after the end of the tree"),
    ],
)
def test_read_trees_errors_name_file_and_line(tmp_path, text, line, problem):
    path = _write(tmp_path / "bad.txt", text)
    with pytest.raises(CorpusFormatError, match=problem) as err:
        read_sst_trees(path)
    assert err.value.source == str(path) and err.value.line == line
    assert str(err.value).startswith(f"{path}:{line}: ")


@pytest.mark.parametrize("name", ["latin1.txt", "latin1.txt.gz"])
def test_read_trees_not_utf8(tmp_path, name):
    path = _write(tmp_path / name, (TREES[0] + "\n(2 caf\xe9)\n").encode("latin-1"))
    with pytest.raises(CorpusFormatError, match="not valid UTF-8: byte 0xe9") as err:
        read_sst_trees(path)
    assert err.value.source == str(path) and err.value.line == 2


def test_read_trees_empty_and_corrupt_gzip(tmp_path):
    for text in ("", "\n\n"):
        path = _write(tmp_path / "empty.txt", text)
        with pytest.raises(CorpusFormatError, match="no trees") as err:
            read_sst_trees(path)
        assert err.value.source == str(path) and err.value.line is None
    data = gzip.compress(TREES_TEXT.encode())
    path = tmp_path / "cut.txt.gz"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorpusFormatError, match="not a valid gzip file") as err:
        read_sst_trees(path)
    assert err.value.source == str(path)
    # CorpusFormatError is a DataError
    assert isinstance(err.value, DataError)


# --------------------------------------------------------------------------- read_sst_tsv


def _tsv_of(trees: list[str]) -> str:
    """The derived ``sst2_*.tsv`` format: binary label, leaves joined by spaces, escapes kept."""
    rows = ["label\tsentence"]
    for t in trees:
        ex = parse_ptb_tree(t, unescape=False)
        if ex.label != 2:
            rows.append(f"{int(ex.label >= 3)}\t{' '.join(ex.tokens)}")
    return "\n".join(rows) + "\n"


@pytest.mark.parametrize("name", ["sst2.tsv", "sst2.tsv.gz"])
def test_tsv_agrees_with_binary_trees(tmp_path, name):
    tsv = _write(tmp_path / name, _tsv_of(TREES))
    trees = _write(tmp_path / "trees.txt", TREES_TEXT)
    for unescape in (True, False):
        rows = read_sst_tsv(tsv, unescape=unescape)
        binary = read_sst_trees(trees, binary=True, unescape=unescape)
        assert [(r.tokens, r.label) for r in rows] == [(b.tokens, b.label) for b in binary]
        assert all(r.root_label is None and r.spans is None for r in rows)


def test_tsv_columns_by_name_and_blank_lines(tmp_path):
    # GLUE's SST-2 order (sentence first), an extra column, CRLF, trailing blank lines
    text = "sentence\tlabel\tidx\r\nit 's -LRB- fine -RRB- \t1\t0\r\nbad  , bad\t0\t1\r\n\r\n"
    rows = read_sst_tsv(_write(tmp_path / "glue.tsv", text))
    assert rows == [
        SSTExample(tokens=["it", "'s", "(", "fine", ")"], label=1),
        SSTExample(tokens=["bad", ",", "bad"], label=0),
    ]


@pytest.mark.parametrize(
    ("text", "line", "problem"),
    [
        ("label\ttext\n1\ta\n", 1, "must name a 'label' and a 'sentence' column"),
        ("label\tsentence\n1\ta\n0\tb\tc\n", 3, "expected 2 tab-separated fields .*found 3"),
        ("label\tsentence\n1\ta\n5\tb\n", 3, "label '5' is not one of 0-4"),
        ("label\tsentence\n-1\ta\n", 2, "label '-1' is not one of 0-4"),
        ("label\tsentence\n1\t  \n", 2, "empty sentence"),
        ("label\tsentence\n1\ta\n\n0\tb\n", 3, "empty line in the middle of the file"),
    ],
)
def test_tsv_errors_name_file_and_line(tmp_path, text, line, problem):
    path = _write(tmp_path / "bad.tsv", text)
    with pytest.raises(CorpusFormatError, match=problem) as err:
        read_sst_tsv(path)
    assert err.value.source == str(path) and err.value.line == line
    assert str(err.value).startswith(f"{path}:{line}: ")


def test_tsv_file_level_errors(tmp_path):
    for text, problem in [("", "no header"), ("label\tsentence\n", "no sentences")]:
        path = _write(tmp_path / "t.tsv", text)
        with pytest.raises(CorpusFormatError, match=problem) as err:
            read_sst_tsv(path)
        assert err.value.source == str(path) and err.value.line is None
    path = _write(tmp_path / "latin1.tsv", b"label\tsentence\n1\tcaf\xe9\n")
    with pytest.raises(CorpusFormatError, match="not valid UTF-8") as err:
        read_sst_tsv(path)
    assert err.value.line == 2


# --------------------------------------------------------------------------- module


def test_exports_and_no_torch_import():
    for name in ("SSTExample", "parse_ptb_tree", "read_sst_trees", "read_sst_tsv", "unescape_ptb"):
        assert name in spigot.data.__all__ and hasattr(spigot.data, name)
    tree = ast.parse(Path(spigot.data.sst.__file__).read_text(encoding="utf-8"))
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert not any(m.split(".")[0] == "torch" for m in imported), imported


# --------------------------------------------------------------------------- real data

SPLITS = [("train", 8544, 6920), ("dev", 1101, 872), ("test", 2210, 1821)]


@pytest.fixture
def sst_dir(shared_data: Path) -> Path:
    d = shared_data / "sst"
    if not d.is_dir():
        pytest.skip(f"SST data not found at {d} (see docs/data.md to download it)")
    return d


@pytest.mark.parametrize(("split", "n_five", "n_binary"), SPLITS)
def test_real_data_counts_and_tsv_agreement(sst_dir, split, n_five, n_binary):
    five = read_sst_trees(sst_dir / f"{split}.txt")
    assert len(five) == n_five
    assert all(len(ex.spans) == 2 * len(ex) - 1 for ex in five)  # every internal node binary
    binary = read_sst_trees(sst_dir / f"{split}.txt", binary=True)
    assert len(binary) == n_binary
    assert {ex.label for ex in binary} == {0, 1}
    # the derived TSV holds the same sentences and labels, tokenised identically
    tsv = read_sst_tsv(sst_dir / f"sst2_{split}.tsv")
    assert [(r.tokens, r.label) for r in tsv] == [(b.tokens, b.label) for b in binary]
    raw_tsv = read_sst_tsv(sst_dir / f"sst2_{split}.tsv", unescape=False)
    raw = read_sst_trees(sst_dir / f"{split}.txt", binary=True, unescape=False)
    assert [r.tokens for r in raw_tsv] == [b.tokens for b in raw]
    # escapes are undone: no -LRB- / \/ left, and the raw files do hold them
    assert not any("-LRB-" in ex.tokens or "\\/" in " ".join(ex.tokens) for ex in five)
    assert any("-LRB-" in ex.tokens for ex in raw)
