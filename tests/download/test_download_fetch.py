"""Tests of ``spigot data download`` for plain files: the real table is complete and consistent,
the package needs only the standard library, and files are fetched and verified, resumed with
``Range`` (or restarted when the server ignores it or the resumed file is bad) with the progress on
stderr, skipped without a request when already good, replaced only by a verified download, read
from a ``file://`` mirror, and a file the server does not have is a clear error.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest
from _download_fixtures import ONE, TWO, _get, _Server

from spigot.data import download as dl
from spigot.data.download import ChecksumError, DownloadError

# --- the real table ------------------------------------------------------------------------------


def test_table_is_complete_and_consistent() -> None:
    assert list(dl.DATASETS) == ["ewt", "sst", "glove", "propbank"]
    hexsum = re.compile(r"[0-9a-f]{64}")
    for ds in dl.DATASETS.values():
        assert ds.files
        for spec in ds.files:
            assert hexsum.fullmatch(spec.sha256), spec.dest
            ways = [spec.source is not None, spec.archive is not None or spec.derive is not None]
            assert sum(ways) == 1, spec.dest
            for inp in spec.inputs:
                dl._lookup(inp)  # every input is a file of the table
            sources = [spec.source, spec.archive and spec.archive.source, spec.parts]
            for url in (u for src in sources if src for u in src.urls()):
                assert url.startswith("https://"), url
            if spec.source is not None:  # a mirror only needs the relative path
                assert spec.source.urls("http://m/") == ["http://m/" + spec.source.path]
    glove = dl.DATASETS["glove"].files[0]
    assert glove.dest == "glove-6b-50d-subset/glove.6B.50d.sst_ewt.txt.gz"
    assert glove.gunzip_sha256 and glove.archive and glove.archive.sha256 is None
    tgz = dl.DATASETS["propbank"].files[0]
    assert tgz.members is not None and len(tgz.members) == 1150
    assert all(hexsum.fullmatch(s) for s in tgz.members.values())
    assert dl.DATASETS["glove"].requires == ("ewt", "sst")


def test_package_imports_only_the_standard_library() -> None:
    roots = set()
    for path in sorted(Path(dl.__file__).parent.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                roots |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                roots.add((node.module or "").split(".")[0])
            elif isinstance(node, ast.ImportFrom):  # the package must run on its own
                assert node.level == 1, f"{path.name}: only imports from within the package"
    assert roots - {"__future__"} <= set(sys.stdlib_module_names), roots


# --- plain downloads -----------------------------------------------------------------------------


def test_fresh_download_verifies_and_reports(
    plain: _Server, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    res = _get(plain, tmp_path)
    assert [r.status for r in res] == ["downloaded", "downloaded"]
    assert (tmp_path / "fx/deep/one.bin").read_bytes() == ONE
    assert (tmp_path / "fx/two.txt").read_bytes() == TWO
    assert not list(tmp_path.rglob("*.part"))
    assert [(h.path, h.range, h.status) for h in plain.log] == [
        ("files/one.bin", None, 200),
        ("two.txt", None, 200),
    ]
    out = capsys.readouterr().out
    assert f"downloaded, checksum ok: {tmp_path / 'fx/deep/one.bin'}" in out


def test_resume_requests_only_the_remainder(plain: _Server, tmp_path: Path) -> None:
    part = tmp_path / "fx/deep/one.bin.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(ONE[:70_000])
    _get(plain, tmp_path)
    assert (tmp_path / "fx/deep/one.bin").read_bytes() == ONE
    assert not part.exists()
    hit = plain.log[0]
    assert (hit.path, hit.range, hit.status) == ("files/one.bin", "bytes=70000-", 206)
    assert hit.sent == len(ONE) - 70_000


def test_progress_goes_to_stderr(
    plain: _Server, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    part = tmp_path / "fx/deep/one.bin.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(ONE[:100_000])
    dl.download("fx", tmp_path, base_url_override=plain.url, progress=True)
    out, err = capsys.readouterr()
    assert "fx/deep/one.bin: resuming at 0.1 MB" in err
    assert "fx/deep/one.bin: 0.1 MB in" in err  # the closing line of the transfer
    assert "resuming" not in out and "downloaded, checksum ok" in out


def test_server_ignoring_range_restarts_from_zero(plain: _Server, tmp_path: Path) -> None:
    plain.ignore_range = True
    part = tmp_path / "fx/deep/one.bin.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(b"junk that a restart must not keep" * 100)
    _get(plain, tmp_path)
    assert (tmp_path / "fx/deep/one.bin").read_bytes() == ONE
    hit = plain.log[0]
    assert hit.range is not None and hit.status == 200 and hit.sent == len(ONE)


def test_stale_part_is_dropped_when_the_resumed_file_is_bad(plain: _Server, tmp_path: Path) -> None:
    part = tmp_path / "fx/deep/one.bin.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(b"\0" * 1000)  # not a prefix of the real file
    _get(plain, tmp_path)
    assert (tmp_path / "fx/deep/one.bin").read_bytes() == ONE
    first, second = plain.log[0], plain.log[1]
    assert (first.status, first.sent) == (206, len(ONE) - 1000)
    assert (second.range, second.status, second.sent) == (None, 200, len(ONE))


def test_complete_part_gets_416_and_is_used(plain: _Server, tmp_path: Path) -> None:
    part = tmp_path / "fx/deep/one.bin.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(ONE)
    _get(plain, tmp_path)
    assert (tmp_path / "fx/deep/one.bin").read_bytes() == ONE
    assert (plain.log[0].status, plain.log[0].sent) == (416, 0)


def test_good_files_are_skipped_without_a_request(
    plain: _Server, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    _get(plain, tmp_path)
    plain.log.clear()
    capsys.readouterr()
    res = _get(plain, tmp_path)
    assert [r.status for r in res] == ["present", "present"]
    assert plain.log == []
    out = capsys.readouterr().out
    assert f"already present, checksum ok: {tmp_path / 'fx/two.txt'}" in out


def test_bad_local_file_is_replaced_by_a_good_download(plain: _Server, tmp_path: Path) -> None:
    dest = tmp_path / "fx/two.txt"
    dest.parent.mkdir(parents=True)
    dest.write_bytes(b"damaged")
    res = _get(plain, tmp_path)
    assert [r.status for r in res] == ["downloaded", "replaced"]
    assert dest.read_bytes() == TWO


def test_corrupted_server_file_replaces_nothing(plain: _Server, tmp_path: Path) -> None:
    plain.files["two.txt"] = TWO[:-1] + b"?"
    # nothing local: error, no file, no .part left behind
    with pytest.raises(ChecksumError, match="does not match the recorded checksum"):
        _get(plain, tmp_path)
    assert (tmp_path / "fx/deep/one.bin").read_bytes() == ONE  # the good file before it is kept
    assert not (tmp_path / "fx/two.txt").exists()
    assert not list(tmp_path.rglob("*.part"))
    # a damaged local copy stays as it was
    dest = tmp_path / "fx/two.txt"
    dest.write_bytes(b"old and damaged")
    with pytest.raises(ChecksumError, match="left as it was"):
        _get(plain, tmp_path)
    assert dest.read_bytes() == b"old and damaged"
    assert not list(tmp_path.rglob("*.part"))
    # a good local copy is kept, and the server is not even asked
    dest.write_bytes(TWO)
    plain.log.clear()
    assert [r.status for r in _get(plain, tmp_path)] == ["present", "present"]
    assert dest.read_bytes() == TWO and plain.log == []


def test_file_url_mirror(plain: _Server, tmp_path: Path) -> None:
    mirror = tmp_path / "mirror"
    for rel, data in plain.files.items():
        (mirror / rel).parent.mkdir(parents=True, exist_ok=True)
        (mirror / rel).write_bytes(data)
    part = tmp_path / "d/fx/two.txt.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(b"xx")  # file:// ignores Range: restarted
    res = dl.download("fx", tmp_path / "d", base_url_override=mirror.as_uri(), progress=False)
    assert [r.status for r in res] == ["downloaded", "downloaded"]
    assert (tmp_path / "d/fx/two.txt").read_bytes() == TWO
    assert plain.log == []


def test_unreachable_file_keeps_the_part_and_names_the_error(
    plain: _Server, tmp_path: Path
) -> None:
    del plain.files["two.txt"]
    with pytest.raises(DownloadError, match=r"two\.txt: HTTP 404"):
        _get(plain, tmp_path)
    assert not (tmp_path / "fx/two.txt").exists()
