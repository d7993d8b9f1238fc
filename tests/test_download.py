"""Tests for ``spigot data download`` against a local HTTP server on 127.0.0.1.

The server (:class:`_RangeHandler`) serves byte strings from a dict, honours ``Range: bytes=N-``
(``206``, or ``416`` past the end) unless told to ignore it, and logs every request, so the tests
can check what was asked for and how many bytes went over the wire. No test touches any other
host. The tests at the end replay the real table (real checksums, real derivation rules) with
files made from the reference copies in ``../shared/data``; they are skipped without it.
"""

from __future__ import annotations

import ast
import gzip
import hashlib
import io
import os
import random
import re
import sys
import tarfile
import threading
import urllib.parse
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from spigot.data import download as dl
from spigot.data.download import (
    Archive,
    ChecksumError,
    DataDirError,
    Dataset,
    DownloadError,
    FileSpec,
    Source,
)

# --- a tiny HTTP server with Range support -------------------------------------------------------


@dataclass
class Hit:
    path: str
    range: str | None
    status: int
    sent: int  # body bytes sent


class _RangeHandler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:  # noqa: N802 (http.server naming)
        srv = self.server
        path = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path).lstrip("/")
        rng = self.headers.get("Range")
        data = srv.files.get(path)
        if data is None:
            self._reply(404, b"", path, rng)
            return
        start, status = 0, 200
        if rng and not srv.ignore_range:
            m = re.fullmatch(r"bytes=(\d+)-", rng)
            assert m, rng
            start = int(m.group(1))
            if start >= len(data):
                self._reply(416, b"", path, rng, {"Content-Range": f"bytes */{len(data)}"})
                return
            status = 206
        headers = {"Accept-Ranges": "bytes"}
        if status == 206:
            headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        self._reply(status, data[start:], path, rng, headers)

    def _reply(
        self, status: int, body: bytes, path: str, rng: str | None, headers: dict | None = None
    ) -> None:
        with self.server.lock:  # logged before replying: the client sees it once it has the body
            self.server.log.append(Hit(path, rng, status, len(body)))
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # silence the default stderr log
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _RangeHandler)
        self.files: dict[str, bytes] = {}
        self.log: list[Hit] = []
        self.ignore_range = False
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


@pytest.fixture
def server() -> Iterator[_Server]:
    srv = _Server()
    thread = threading.Thread(target=srv.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join(5)


@pytest.fixture(autouse=True)
def _fast_and_local(monkeypatch: pytest.MonkeyPatch) -> None:
    """No retry delays, no proxies, no inherited data directory."""
    monkeypatch.setattr(dl.fetch, "RETRY_DELAYS", (0.0, 0.0))  # read where _fetch uses it
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.delenv(dl.ENV_VAR, raising=False)


# --- fixture datasets ----------------------------------------------------------------------------


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _blob(n: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(n)


ONE = _blob(200_000, 1)
TWO = b"second file\n" * 1000


def _register(
    monkeypatch: pytest.MonkeyPatch,
    name: str,
    files: tuple[FileSpec, ...],
    requires: tuple[str, ...] = (),
) -> None:
    ds = Dataset(name, f"fixture {name}", "none", "here", files, requires)
    monkeypatch.setitem(dl.DATASETS, name, ds)


@pytest.fixture
def plain(monkeypatch: pytest.MonkeyPatch, server: _Server) -> _Server:
    """Dataset ``fx``: two plain files, served at ``files/one.bin`` and ``two.txt``."""
    server.files = {"files/one.bin": ONE, "two.txt": TWO}
    base = "https://example.invalid/"  # never used: every test passes base_url_override
    _register(
        monkeypatch,
        "fx",
        (
            FileSpec("fx/deep/one.bin", _sha(ONE), len(ONE), source=Source(base, "files/one.bin")),
            FileSpec("fx/two.txt", _sha(TWO), len(TWO), source=Source(base, "two.txt")),
        ),
    )
    return server


def _get(server: _Server, root: Path, name: str = "fx", **kw) -> list[dl.FileResult]:
    return dl.download(name, root, base_url_override=server.url, progress=False, **kw)


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


# --- archives ------------------------------------------------------------------------------------

A_TXT = b"alpha\n" * 500
B_TXT = _blob(50_000, 2)
C_TXT = b"gamma\n" * 300


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


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


# --- data directory ------------------------------------------------------------------------------


def test_find_data_dir_order(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    monkeypatch.chdir(project)
    # nothing anywhere: the error lists what was tried
    with pytest.raises(DataDirError) as err:
        dl.find_data_dir(None)
    msg = str(err.value)
    assert "--dir: not given" in msg and f"${dl.ENV_VAR}: not set" in msg
    assert "../shared/data" in msg and str(tmp_path / "shared" / "data") in msg
    # ../shared/data, relative to the current directory
    shared = tmp_path / "shared" / "data"
    shared.mkdir(parents=True)
    assert dl.find_data_dir(None) == shared
    assert dl.locate_data_dir(None)[1] == "../shared/data"
    # $SPIGOT_DATA beats it
    env_dir = tmp_path / "env"
    env_dir.mkdir()
    monkeypatch.setenv(dl.ENV_VAR, str(env_dir))
    assert dl.find_data_dir(None) == env_dir
    # --dir beats both, relative to the current directory
    (project / "mine").mkdir()
    assert dl.find_data_dir("mine") == project / "mine"
    # a given directory that does not exist: an error when reading, fine when downloading
    with pytest.raises(DataDirError, match="--dir nowhere: no such directory"):
        dl.find_data_dir("nowhere")
    assert dl.find_data_dir("nowhere", must_exist=False) == project / "nowhere"
    monkeypatch.setenv(dl.ENV_VAR, str(tmp_path / "gone"))
    with pytest.raises(DataDirError, match=r"\$SPIGOT_DATA=.*gone: no such directory"):
        dl.find_data_dir(None)


def test_resolve_data_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    d = tmp_path / "d"
    assert dl.resolve_data_path("${data}/sst/train.txt", d) == d / "sst/train.txt"
    assert dl.resolve_data_path("../shared/data/sst/train.txt", d) == d / "sst/train.txt"
    assert dl.resolve_data_path("runs/x.conllu", d) == Path("runs/x.conllu")
    assert dl.resolve_data_path("/abs/x.conllu", d) == Path("/abs/x.conllu")
    # without data_dir: found the usual way; the old-style path is left alone if nothing is found
    assert dl.resolve_data_path("../shared/data/a.txt") == Path("../shared/data/a.txt")
    with pytest.raises(DataDirError):
        dl.resolve_data_path("${data}/a.txt")
    d.mkdir()
    monkeypatch.setenv(dl.ENV_VAR, str(d))
    assert dl.resolve_data_path("${data}/a.txt") == d / "a.txt"
    assert dl.resolve_data_path("../shared/data/a.txt") == d / "a.txt"


# --- command line --------------------------------------------------------------------------------


def test_cli_download_prints_where_files_went(
    plain: _Server, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    d = tmp_path / "data"
    argv = ["data", "download", "fx", "--dir", str(d), "--base-url", plain.url, "--no-progress"]
    assert dl.main(argv) == 0
    out = capsys.readouterr().out
    assert f"downloaded, checksum ok: {d / 'fx' / 'deep' / 'one.bin'}" in out
    assert f"data directory: {d}" in out
    # the same through a parser built like spigot.cli's
    import argparse

    parser = argparse.ArgumentParser(prog="spigot")
    dl.add_subparser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["data", "where", "fx", "--dir", str(d)])
    assert args.command == "data"
    assert dl.main(args) == 0
    out = capsys.readouterr().out
    assert f"data directory: {d} (from --dir)" in out
    assert "fx: complete" in out and f"ok      {d / 'fx' / 'two.txt'}" in out


def test_cli_errors_exit_1(
    plain: _Server, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    plain.files["two.txt"] = b"corrupt"
    d = tmp_path / "data"
    assert dl.main(["download", "fx", "--dir", str(d), "--base-url", plain.url]) == 1
    assert "spigot data download: error: fx/two.txt" in capsys.readouterr().err
    assert dl.main(["download", "nope", "--dir", str(d)]) == 1
    assert "unknown dataset 'nope'" in capsys.readouterr().err
    monkeypatch.chdir(tmp_path)
    assert dl.main(["where"]) == 1
    assert "no data directory found" in capsys.readouterr().err
    assert dl.main(["data"]) == 2


# --- the real table, replayed on the reference copies -------------------------------------------

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
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
