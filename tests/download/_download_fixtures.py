"""What the tests of ``spigot data download`` (``tests/download/``) share: a tiny HTTP server
with ``Range`` support (:class:`_Server`), the fixture files ``ONE`` and ``TWO``, and helpers that
register a fixture dataset (:func:`_register`), download it from the server (:func:`_get`) and build
zip archives (:func:`_zip`). The pytest fixtures built on them are in ``conftest.py``.
"""

from __future__ import annotations

import hashlib
import io
import random
import re
import threading
import urllib.parse
import zipfile
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from spigot.data import download as dl
from spigot.data.download import Dataset, FileSpec

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


def _get(server: _Server, root: Path, name: str = "fx", **kw) -> list[dl.FileResult]:
    return dl.download(name, root, base_url_override=server.url, progress=False, **kw)


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()
