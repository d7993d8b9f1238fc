"""Fixtures for the tests of ``spigot data download`` against a local HTTP server on 127.0.0.1.

The server (:class:`_RangeHandler`) serves byte strings from a dict, honours ``Range: bytes=N-``
(``206``, or ``416`` past the end) unless told to ignore it, and logs every request, so the tests
can check what was asked for and how many bytes went over the wire. No test touches any other
host. The tests in ``test_download_real.py`` replay the real table (real checksums, real derivation
rules) with files made from the reference copies in ``../shared/data``; they are skipped without it.

The server and the plain helpers the test modules import live in ``_download_fixtures.py``; this
folder is put on ``sys.path`` for it, as ``tests/conftest.py`` does for ``tests/``.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from _download_fixtures import ONE, TWO, _register, _Server, _sha  # noqa: E402

from spigot.data import download as dl  # noqa: E402
from spigot.data.download import FileSpec, Source  # noqa: E402

# --- the server and the environment --------------------------------------------------------------


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
