"""Tests that replay the real table of ``spigot data download``, with its real checksums and
derivation rules, on files made from the reference copies in ``../shared/data`` served by the local
server: the reference copies match the recorded checksums, and EWT, SST, PropBank (fetched file by
file and packed) and the GloVe subset come out as recorded. They are skipped without the data.
"""

from __future__ import annotations

import gzip
import io
import os
import tarfile
import zipfile
from pathlib import Path

import pytest
from _download_fixtures import _Server, _zip

from spigot.data import download as dl

# --- the real table, replayed on the reference copies -------------------------------------------

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"
needs_shared = pytest.mark.skipif(
    not SHARED.is_dir(), reason=f"open data not found at {SHARED} (see docs/data_download.md)"
)


@needs_shared
def test_reference_copies_match_the_recorded_checksums(
    server: _Server, capsys: pytest.CaptureFixture
) -> None:
    for name in dl.DATASETS:
        res = dl.download(name, SHARED, base_url_override=server.url, progress=False)
        assert {r.status for r in res} == {"present"}, name
    assert server.log == []  # checked locally, nothing requested (and nothing written)


@needs_shared
def test_real_ewt_and_sst(server: _Server, tmp_path: Path) -> None:
    ewt = SHARED / "ud-english-ewt"
    for f in (
        "en_ewt-ud-train.conllu",
        "en_ewt-ud-dev.conllu",
        "en_ewt-ud-test.conllu",
        "README.md",
        "LICENSE.txt",
        "stats.xml",
    ):
        server.files[f] = (ewt / f).read_bytes()
    trees = {
        f"trees/{s}.txt": (SHARED / "sst" / f"{s}.txt").read_bytes()
        for s in ("train", "dev", "test")
    }
    server.files["trainDevTestTrees_PTB.zip"] = _zip(trees)
    res = dl.download("sst", tmp_path, base_url_override=server.url, progress=False)
    assert [r.status for r in res] == ["extracted"] * 3 + ["derived"] * 3  # SST-2 rule reproduces
    res = dl.download("ewt", tmp_path, base_url_override=server.url, progress=False)
    assert [r.status for r in res] == ["downloaded"] * 6


@needs_shared
def test_real_propbank_is_fetched_file_by_file_and_packed(server: _Server, tmp_path: Path) -> None:
    with tarfile.open(SHARED / "propbank-ewt/propbank-ewt-gold_skel.tgz") as tar:
        for m in tar:
            if m.isfile():
                server.files[m.name] = tar.extractfile(m).read()
    server.files["LICENSE"] = (SHARED / "propbank-ewt/LICENSE").read_bytes()
    res = dl.download("propbank", tmp_path, base_url_override=server.url, progress=False)
    assert [r.status for r in res] == ["derived", "downloaded"]
    assert len(server.log) == 1150 + 1
    tgz = tmp_path / "propbank-ewt/propbank-ewt-gold_skel.tgz"
    spec = dl.DATASETS["propbank"].files[0]
    assert dl.check_file(tgz, spec) == (True, "all 1150 members' sha256 ok")
    assert not (tmp_path / dl.DOWNLOAD_CACHE).exists()


@needs_shared
def test_real_glove_subset_from_a_full_style_file(server: _Server, tmp_path: Path) -> None:
    # the data directory already has EWT and SST (linked from the reference copies)
    for rel in ["ud-english-ewt", "sst"]:
        (tmp_path / rel).mkdir()
        for f in (SHARED / rel).iterdir():
            os.symlink(f, tmp_path / rel / f.name)
    # a glove.6B.50d.txt-like file: the subset's rows, decoy words, some numbers re-formatted
    rows = gzip.decompress(
        (SHARED / "glove-6b-50d-subset/glove.6B.50d.sst_ewt.txt.gz").read_bytes()
    ).split(b"\n")[:-1]
    lines = []
    for i, row in enumerate(rows):
        if i < 50:
            word, *vals = row.split(b" ")
            row = b" ".join([word, *(b"%.9e" % float(v) for v in vals)])
        lines.append(row)
        if i % 1000 == 0:
            lines.append(b"zzdecoy%d " % i + b" ".join([b"0.5"] * 50))
    full = b"\n".join(lines) + b"\n"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("glove.6B.50d.txt", full)
    server.files["glove.6B.zip"] = buf.getvalue()
    res = dl.download("glove", tmp_path, base_url_override=server.url, progress=False)
    assert [r.status for r in res][-1] == "derived"
    assert {r.status for r in res[:-1]} == {"present"}
    assert [h.path for h in server.log] == ["glove.6B.zip"]
