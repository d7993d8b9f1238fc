"""Fuzzing of the corpus readers (issue 12).

Contract: any byte string given as a CoNLL-U, SDP, PropBank (``.gold_skel`` file or tar
archive of them) or SST (trees or TSV) file gives sentences or a :class:`DataError` whose
message names the file, and the line when the error is about a line -- never another
exception.  Inputs: random bytes, and small valid fixtures damaged by byte flips, deletions,
truncations, duplicated chunks and inserted tabs, newlines, odd digits and non-UTF-8 bytes;
as plain files, gzip files of damaged text, damaged gzip files, damaged tar archives and
valid archives with a damaged member.

The readers' own test files fuzz their parsers further (text and file agree, ...); this file
checks the contract above for all readers with one harness.
"""

from __future__ import annotations

import gzip
import io
import re
import tarfile
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spigot.data import (
    CorpusFormatError,
    DataError,
    read_conllu,
    read_propbank,
    read_sdp,
    read_sst_trees,
    read_sst_tsv,
)

FIXTURES = Path(__file__).resolve().parent / "fixtures"

SST_TREES = (
    "(3 (2 (2 The) (2 film)) (4 (4 (2 is) (4 great)) (2 .)))\n"
    "(1 (2 -LRB-) (1 (1 (1 dull) (2 co-writer\\/director)) (2 -RRB-)))\n"
    "(2 (2 ``) (2 (2 Caf\u00e9) (2 (2 8\u00a01\\/2) (2 ''))))\n"
).encode()
SST_TSV = (
    "label\tsentence\n1\tThe film is great .\n0\t-LRB- dull co-writer\\/director -RRB-\n"
    "2\t`` Caf\u00e9 8\u00a01\\/2 ''\n"
).encode()
_DOC = "google/ewt/answers/00/doc1.xml"
SKEL = (
    f"{_DOC}  0  0  [WORD]  NNS  (TOP(S(NP*)  -     -        (ARG0*)\n"
    f"{_DOC}  0  1  [WORD]  VBP  (VP*)        bark  bark.01  (V*)\n"
    f"{_DOC}  0  2  [WORD]  .    *))          -     -        *\n"
    "\n"
    f"{_DOC}  1  0  [WORD]  UH   (TOP(INTJ*)  -     -\n"
    f"{_DOC}  1  1  [WORD]  .    *))          -     -\n"
).encode()
_MEMBER = "data/google/ewt/answers/00/doc1.xml.gold_skel"


def _tar(members: dict[str, bytes], mode: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


# reader name -> (file suffix, valid fixture, read function)
TEXT_READERS: dict[str, tuple[str, bytes, Callable[[Path], Any]]] = {
    "conllu": (".conllu", (FIXTURES / "tiny.conllu").read_bytes(), read_conllu),
    "sdp": (".sdp", (FIXTURES / "tiny.sdp").read_bytes(), read_sdp),
    "sst-trees": (".txt", SST_TREES, read_sst_trees),
    "sst-trees-binary": (".txt", SST_TREES, partial(read_sst_trees, binary=True)),
    "sst-tsv": (".tsv", SST_TSV, read_sst_tsv),
    "propbank": (".gold_skel", SKEL, read_propbank),
}
GZIP_READERS = [name for name in TEXT_READERS if name != "propbank"]  # .gold_skel is never gzip
ARCHIVES = {".tgz": "w:gz", ".tar": "w", ".tar.bz2": "w:bz2", ".tar.xz": "w:xz"}

# problems that concern the whole file, not one line
_FILE_LEVEL = re.compile(r"empty|no sentences|no trees|no header|gzip|tar archive|no \.gold_skel")

# what damage inserts: separators, line breaks, bytes that are not UTF-8 (or start a
# multi-byte sequence), Unicode digits and spaces, the format's own punctuation, long numbers
_INSERTS = [
    b"\t",
    b"\n",
    b"\r",
    b" ",
    b"\n\n",
    b"\x00",
    b"\xff",
    b"\xc3",
    b"\xe9",
    b"\xef\xbb\xbf",
    b"\xc2\xa0",
    "\u2028".encode(),
    "\u0661".encode(),
    "\u00b2".encode(),
    b"(",
    b")",
    b"*",
    b"#",
    b"_",
    b"-",
    b"|",
    b":",
    b"0",
    b"5",
    b"9" * 5000,
]

_FUZZ = settings(max_examples=40, deadline=None)


@st.composite
def damaged(draw: st.DrawFn, base: bytes) -> bytes:
    """``base`` with one to four random edits."""
    data = bytearray(base)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "insert", "delete", "truncate", "duplicate"]))
        pos = draw(st.integers(0, len(data)))
        if op == "flip" and data:
            data[min(pos, len(data) - 1)] ^= 1 << draw(st.integers(0, 7))
        elif op == "insert":
            data[pos:pos] = draw(st.sampled_from(_INSERTS))
        elif op == "delete":
            del data[pos : pos + draw(st.integers(1, 16))]
        elif op == "truncate":
            del data[pos:]
        elif op == "duplicate":
            data[pos:pos] = data[pos : pos + draw(st.integers(1, 64))]
    return bytes(data)


def _n_lines(data: bytes) -> int:
    return data.count(b"\n") + 1


def check(read: Callable[[Path], Any], path: Path, data: bytes, n_lines: int | None) -> None:
    """Write ``data`` to ``path`` and read it: a result, or a DataError naming the file.

    ``n_lines``: the number of lines of the text (``None`` when unknown): a line number in an
    error must lie in ``1..n_lines``; a plain text file's error without a line must be about
    the whole file.
    """
    path.write_bytes(data)
    try:
        out = read(path)
    except DataError as err:
        message = str(err)
        assert str(path) in message, message
        if isinstance(err, CorpusFormatError):
            if err.line is not None:
                assert f":{err.line}: " in message, message
                assert n_lines is None or 1 <= err.line <= n_lines, (err.line, n_lines, message)
            elif n_lines is not None:
                assert _FILE_LEVEL.search(err.problem), message
    else:
        assert isinstance(out, list | dict)


def _content(index: dict) -> dict:
    """A PropBank index without the sources (file or archive member) of its sentences."""
    return {
        (doc, i): (s.xpos, s.rolesets, s.columns, s.line)
        for doc, sents in index.items()
        for i, s in sents.items()
    }


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def test_fixtures_are_valid(fuzz_dir: Path) -> None:
    """The undamaged fixtures read without error (else the fuzzing would test little)."""
    for name, (suffix, data, read) in TEXT_READERS.items():
        path = fuzz_dir / f"valid-{name}{suffix}"
        path.write_bytes(data)
        assert read(path), name
        gz = fuzz_dir / f"valid-{name}{suffix}.gz"
        gz.write_bytes(gzip.compress(data))
        if name in GZIP_READERS:
            assert read(gz) == read(path), name
    for suffix, mode in ARCHIVES.items():
        path = fuzz_dir / f"valid{suffix}"
        path.write_bytes(_tar({_MEMBER: SKEL}, mode))
        got = read_propbank(path)
        expected = read_propbank(fuzz_dir / "valid-propbank.gold_skel")
        assert _content(got) == _content(expected) != {}


# --------------------------------------------------------------------------- plain text files


@pytest.mark.parametrize("name", list(TEXT_READERS))
@_FUZZ
@given(data=st.binary(max_size=300))
def test_random_bytes(fuzz_dir: Path, name: str, data: bytes) -> None:
    suffix, _, read = TEXT_READERS[name]
    check(read, fuzz_dir / f"random{suffix}", data, _n_lines(data))


@pytest.mark.parametrize("name", list(TEXT_READERS))
@_FUZZ
@given(data=st.data())
def test_damaged_fixture(fuzz_dir: Path, name: str, data: st.DataObject) -> None:
    suffix, base, read = TEXT_READERS[name]
    raw = data.draw(damaged(base))
    check(read, fuzz_dir / f"damaged{suffix}", raw, _n_lines(raw))


# --------------------------------------------------------------------------- gzip files


@pytest.mark.parametrize("name", GZIP_READERS)
@_FUZZ
@given(data=st.data())
def test_gzip_of_damaged_fixture(fuzz_dir: Path, name: str, data: st.DataObject) -> None:
    suffix, base, read = TEXT_READERS[name]
    raw = data.draw(damaged(base))
    check(read, fuzz_dir / f"damaged{suffix}.gz", gzip.compress(raw), _n_lines(raw))


@pytest.mark.parametrize("name", GZIP_READERS)
@_FUZZ
@given(data=st.data())
def test_damaged_gzip(fuzz_dir: Path, name: str, data: st.DataObject) -> None:
    suffix, base, read = TEXT_READERS[name]
    raw = data.draw(st.one_of(st.binary(max_size=300), damaged(gzip.compress(base, mtime=0))))
    check(read, fuzz_dir / f"corrupt{suffix}.gz", raw, None)


def test_truncated_gzip_names_the_file(fuzz_dir: Path) -> None:
    for name in GZIP_READERS:
        suffix, base, read = TEXT_READERS[name]
        data = gzip.compress(base)
        path = fuzz_dir / f"truncated{suffix}.gz"
        path.write_bytes(data[: len(data) - 10])  # cut inside the CRC/size trailer
        with pytest.raises(CorpusFormatError, match="not a valid gzip file") as err:
            read(path)
        assert err.value.source == str(path)


# --------------------------------------------------------------------------- PropBank archives


@pytest.mark.parametrize("suffix", list(ARCHIVES))
@_FUZZ
@given(data=st.data())
def test_damaged_archive(fuzz_dir: Path, suffix: str, data: st.DataObject) -> None:
    archive = _tar({_MEMBER: SKEL}, ARCHIVES[suffix])
    raw = data.draw(st.one_of(st.binary(max_size=300), damaged(archive)))
    check(read_propbank, fuzz_dir / f"corrupt{suffix}", raw, None)


@_FUZZ
@given(data=st.data())
def test_archive_with_damaged_member(fuzz_dir: Path, data: st.DataObject) -> None:
    member = data.draw(st.one_of(st.binary(max_size=300), damaged(SKEL)))
    path = fuzz_dir / "member.tgz"
    check(read_propbank, path, _tar({_MEMBER: member}, "w:gz"), None)
    # the error names the member and, for a line, a line of the member
    try:
        read_propbank(path)
    except CorpusFormatError as err:
        if err.line is not None:
            assert err.source == f"{path}[{_MEMBER}]"
            assert 1 <= err.line <= _n_lines(member)


def test_not_a_tar_archive(fuzz_dir: Path) -> None:
    for suffix in (".tgz", ".tar", ".zip"):
        path = fuzz_dir / f"notatar{suffix}"
        path.write_bytes(b"this is not an archive\n")
        with pytest.raises(CorpusFormatError, match="nor a readable tar archive") as err:
            read_propbank(path)
        assert err.value.source == str(path) and err.value.line is None
