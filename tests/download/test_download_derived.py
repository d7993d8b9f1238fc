"""Tests of ``spigot data download`` for files that are not downloaded as they are: members of
zip and tgz archives (extracted and checked, a bad member or a stale cached archive replaces
nothing, a missing member is a clear error), and derived files, whose rules are tested on tiny
inputs (the SST-2 rule, the float32 text of GloVe numbers, the GloVe vocabulary, and a GloVe
subset derived from an archive and checked by its decompressed content).
"""

from __future__ import annotations

import gzip
import io
import tarfile
from pathlib import Path

import pytest
from _download_fixtures import _blob, _get, _register, _Server, _sha, _zip

from spigot.data import download as dl
from spigot.data.download import Archive, ChecksumError, FileSpec, Source

# --- archives ------------------------------------------------------------------------------------

A_TXT = b"alpha\n" * 500
B_TXT = _blob(50_000, 2)
C_TXT = b"gamma\n" * 300


def _tgz(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.fixture
def archived(monkeypatch: pytest.MonkeyPatch, server: _Server) -> _Server:
    """Dataset ``ax``: two members of a zip and one of a tgz (no archive checksums known)."""
    server.files = {
        "pack/bundle.zip": _zip({"trees/a.txt": A_TXT, "trees/b.bin": B_TXT, "other": b"x"}),
        "bundle.tgz": _tgz({"inner/c.txt": C_TXT}),
    }
    z = Archive("bundle.zip", Source("https://example.invalid/", "pack/bundle.zip"))
    t = Archive("bundle.tgz", Source("https://example.invalid/", "bundle.tgz"))
    _register(
        monkeypatch,
        "ax",
        (
            FileSpec("ax/a.txt", _sha(A_TXT), archive=z, member="trees/a.txt"),
            FileSpec("ax/b.bin", _sha(B_TXT), archive=z, member="trees/b.bin"),
            FileSpec("ax/c.txt", _sha(C_TXT), archive=t, member="inner/c.txt"),
        ),
    )
    return server


def test_archive_members_are_extracted_and_checked(archived: _Server, tmp_path: Path) -> None:
    res = _get(archived, tmp_path, "ax")
    assert [r.status for r in res] == ["extracted"] * 3
    assert (tmp_path / "ax/a.txt").read_bytes() == A_TXT
    assert (tmp_path / "ax/b.bin").read_bytes() == B_TXT
    assert (tmp_path / "ax/c.txt").read_bytes() == C_TXT
    assert [h.path for h in archived.log] == ["pack/bundle.zip", "bundle.tgz"]  # each once
    assert not (tmp_path / dl.DOWNLOAD_CACHE).exists()  # archives dropped once verified
    # keep_archives keeps them
    other = tmp_path / "kept"
    _get(archived, other, "ax", keep_archives=True)
    cache = other / dl.DOWNLOAD_CACHE
    assert sorted(p.name for p in cache.iterdir()) == ["bundle.tgz", "bundle.zip"]


def test_archive_with_a_bad_member_replaces_nothing(archived: _Server, tmp_path: Path) -> None:
    archived.files["bundle.tgz"] = _tgz({"inner/c.txt": C_TXT + b"tampered"})
    dest = tmp_path / "ax/c.txt"
    dest.parent.mkdir(parents=True)
    dest.write_bytes(b"old")
    with pytest.raises(ChecksumError, match=r"inner/c\.txt does not match"):
        _get(archived, tmp_path, "ax")
    assert dest.read_bytes() == b"old"
    assert not (tmp_path / dl.DOWNLOAD_CACHE / "bundle.tgz").exists()  # bad archive deleted
    assert not list(tmp_path.rglob("*.part"))


def test_cached_bad_archive_is_fetched_again(archived: _Server, tmp_path: Path) -> None:
    cache = tmp_path / dl.DOWNLOAD_CACHE
    cache.mkdir()
    (cache / "bundle.zip").write_bytes(_zip({"trees/a.txt": b"stale", "trees/b.bin": b""}))
    (cache / "bundle.tgz").write_bytes(archived.files["bundle.tgz"])
    res = _get(archived, tmp_path, "ax")
    assert [r.status for r in res] == ["extracted"] * 3
    assert (tmp_path / "ax/a.txt").read_bytes() == A_TXT
    assert [h.path for h in archived.log] == ["pack/bundle.zip"]  # the good cached tgz was reused


def test_missing_member_is_a_clear_error(archived: _Server, tmp_path: Path) -> None:
    archived.files["pack/bundle.zip"] = _zip({"trees/a.txt": A_TXT})
    with pytest.raises(ChecksumError, match=r"trees/b\.bin is not in the archive"):
        _get(archived, tmp_path, "ax")
    assert (tmp_path / "ax/a.txt").read_bytes() == A_TXT


# --- derived files (rules tested on tiny inputs) -------------------------------------------------

TREES = (
    "(3 (2 It) (4 (2 's) (3 (3 lovely) (2 \\/))))\n"
    "(2 (2 Neutral) (2 .))\n"
    "(1 (1 Bad) (2 -LRB-film-RRB-))\n"
)


def test_sst2_rule(tmp_path: Path) -> None:
    trees, out = tmp_path / "t.txt", tmp_path / "o.tsv"
    trees.write_text(TREES, encoding="utf-8")
    assert dl.derive_sst2(trees, out) == 2
    assert out.read_bytes() == b"label\tsentence\n1\tIt 's lovely \\/\n0\tBad -LRB-film-RRB-\n"


@pytest.mark.parametrize(
    ("token", "text"),
    [
        ("0.418", "0.418"),
        ("-0.00066023", "-0.00066023"),
        ("-1", "-1"),
        ("0.41800", "0.418"),
        ("-1.0", "-1"),
        ("5.27e-05", "0.0000527"),
        ("4.180000e-01", "0.418"),
        ("1.23456789", "1.2345679"),
        ("0", "0"),
    ],
)
def test_float32_text(token: str, text: str) -> None:
    assert dl._float32_text(token) == text


CONLLU = (
    "# sent_id = x-1\n"
    "1-2\tDon't\t_\t_\t_\t_\t_\t_\t_\t_\n"
    "1\tDo\tdo\tAUX\t_\t_\t3\taux\t_\t_\n"
    "2\tn't\tnot\tPART\t_\t_\t3\tadvmod\t_\t_\n"
    "3\tGo\tgo\tVERB\t_\t_\t0\troot\t_\t_\n"
    "3.1\tghost\tghost\t_\t_\t_\t_\t_\t_\t_\n"
    "\n"
)


def test_glove_vocabulary_rule(tmp_path: Path) -> None:
    c, t = tmp_path / "a.conllu", tmp_path / "t.txt"
    c.write_text(CONLLU, encoding="utf-8")
    t.write_text(TREES, encoding="utf-8")
    vocab = dl.glove_vocabulary([c], [t])
    assert {"do", "n't", "not", "go", "it", "'s", "lovely", "/", "-lrb-film-rrb-"} <= vocab
    assert "don't" not in vocab and "ghost" not in vocab and "\\/" not in vocab


def test_glove_subset_is_derived_and_its_content_checked(
    monkeypatch: pytest.MonkeyPatch, server: _Server, tmp_path: Path
) -> None:
    words = ["the", "go", "zebra", "do", "lovely", "/", "n't"]
    rows = {w: [f"{(i * 7 + j) / 1000 - 0.05:.5g}" for j in range(3)] for i, w in enumerate(words)}
    full = "".join(f"{w} {' '.join(v)}\n" for w, v in rows.items())
    full = full.replace("lovely 0.023", "lovely 2.300000e-02")  # a non-canonical number
    kept = [w for w in words if w not in ("the", "zebra")]
    expected = "".join(f"{w} {' '.join(rows[w])}\n" for w in kept).encode()
    inputs = []
    files = {}
    for i in range(3):
        files[f"c{i}.conllu"] = CONLLU.encode() if i == 0 else b""
        files[f"t{i}.txt"] = TREES.encode() if i == 0 else b""
    base = "https://example.invalid/"
    for name, data in files.items():
        inputs.append(FileSpec(f"in/{name}", _sha(data), source=Source(base, name)))
    server.files = dict(files)
    server.files["vectors.zip"] = _zip(
        {"glove.6B.50d.txt": full.encode(), "glove.6B.100d.txt": b""}
    )
    _register(monkeypatch, "inputs", tuple(inputs))
    names = [f"in/c{i}.conllu" for i in range(3)] + [f"in/t{i}.txt" for i in range(3)]
    _register(
        monkeypatch,
        "vec",
        (
            FileSpec(
                "vec/subset.txt.gz",
                "0" * 64,  # the gzip bytes are not pinned: the content is
                gunzip_sha256=_sha(expected),
                archive=Archive("vectors.zip", Source(base, "vectors.zip")),
                member="glove.6B.50d.txt",
                derive="glove_subset",
                inputs=tuple(names),
            ),
        ),
        requires=("inputs",),
    )
    res = _get(server, tmp_path, "vec")
    assert [r.status for r in res][-1] == "derived"
    out = tmp_path / "vec/subset.txt.gz"
    assert gzip.decompress(out.read_bytes()) == expected
    assert dl.check_file(out, dl.DATASETS["vec"].files[0]) == (
        True,
        "decompressed content sha256 ok",
    )
