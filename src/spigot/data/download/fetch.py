"""Fetching one file: checksums, resumable HTTP downloads into ``FILE.part``, progress lines.

* the errors :class:`DownloadError` and its subclass :class:`ChecksumError`;
* :func:`sha256_file` and :func:`check_file` (a file's own sum, else the decompressed content of a
  ``.gz`` file, else the members of a tar archive);
* :func:`_fetch`: GET into ``FILE.part`` (:func:`_part`) from the first URL that works, resuming
  an existing ``.part`` with a ``Range`` request, retrying transient errors (:data:`ATTEMPTS`,
  :data:`RETRY_DELAYS`) and keeping the ``.part`` for the next run when everything fails. The
  caller checks the ``.part`` and renames it over ``FILE`` (:func:`os.replace`, atomic) only once
  it verifies.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import re
import sys
import tarfile
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from .datasets import FileSpec
from .paths import PathLike

USER_AGENT = "spigot-data-download/1 (Python urllib)"
CHUNK = 1 << 20
TIMEOUT = 60.0
ATTEMPTS = 3  # per URL, for transient errors (connection reset, timeout, HTTP 5xx/429)
RETRY_DELAYS = (2.0, 5.0)  # seconds before the 2nd and 3rd attempt


# --- errors --------------------------------------------------------------------------------------


class DownloadError(OSError):
    """A file could not be downloaded (network, HTTP or archive error)."""


class ChecksumError(DownloadError):
    """A downloaded, extracted or derived file does not match its recorded checksum."""


# --- checksums -----------------------------------------------------------------------------------


def sha256_file(path: PathLike) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            h.update(block)
    return h.hexdigest()


def _sha256_stream(stream: IO[bytes]) -> str:
    h = hashlib.sha256()
    while block := stream.read(CHUNK):
        h.update(block)
    return h.hexdigest()


def _tar_members(path: Path) -> dict[str, str]:
    out = {}
    with tarfile.open(path, "r:*") as tar:
        for m in tar:
            if m.isfile():
                f = tar.extractfile(m)
                assert f is not None
                out[m.name] = _sha256_stream(f)
    return out


def check_file(path: PathLike, spec: FileSpec) -> tuple[bool, str]:
    """Whether ``path`` is a good copy of ``spec``, and why (for messages).

    The file's own SHA-256 is compared first; failing that, a ``.gz`` file is accepted if its
    decompressed content matches ``gunzip_sha256``, and a tar archive if its members match
    ``members`` exactly.
    """
    p = Path(path)
    if not p.is_file():
        return False, "missing"
    actual = sha256_file(p)
    if actual == spec.sha256:
        return True, "sha256 ok"
    why = f"sha256 {actual}, expected {spec.sha256}"
    if spec.gunzip_sha256:
        try:
            with gzip.open(p, "rb") as g:
                content = _sha256_stream(g)
        except (OSError, EOFError, zlib.error) as exc:
            return False, f"{why}; not a readable gzip file ({exc})"
        if content == spec.gunzip_sha256:
            return True, "decompressed content sha256 ok"
        return False, f"decompressed content sha256 {content}, expected {spec.gunzip_sha256}"
    if spec.members is not None:
        try:
            found = _tar_members(p)
        except (OSError, EOFError, tarfile.TarError, zlib.error) as exc:
            return False, f"{why}; not a readable tar archive ({exc})"
        missing = sorted(set(spec.members) - set(found))
        extra = sorted(set(found) - set(spec.members))
        bad = sorted(n for n in spec.members if n in found and found[n] != spec.members[n])
        if not (missing or extra or bad):
            return True, f"all {len(found)} members' sha256 ok"
        parts = []
        for label, names in (("missing", missing), ("unexpected", extra), ("bad sha256", bad)):
            if names:
                parts.append(f"{len(names)} {label} member(s), e.g. {names[0]}")
        return False, "; ".join(parts)
    return False, why


# --- progress ------------------------------------------------------------------------------------


def _mb(n: float) -> str:
    return f"{n / 1e6:.1f} MB"


class _Progress:
    """Progress on stderr: an updated line on a terminal, a plain line every 10% otherwise."""

    def __init__(self, label: str, total: int | None, enabled: bool, start: int = 0) -> None:
        self.label = label
        self.total = total
        self.enabled = enabled
        self.done = start
        self.start = start
        self.t0 = time.monotonic()
        self.last = 0.0
        self.next_pct = 10
        self.tty = enabled and hasattr(sys.stderr, "isatty") and sys.stderr.isatty()

    def _line(self) -> str:
        rate = (self.done - self.start) / max(time.monotonic() - self.t0, 1e-6)
        if self.total:
            pct = 100 * self.done / self.total
            return (
                f"{self.label}: {_mb(self.done)} of {_mb(self.total)} ({pct:.0f}%), {_mb(rate)}/s"
            )
        return f"{self.label}: {_mb(self.done)}, {_mb(rate)}/s"

    def update(self, done: int) -> None:
        self.done = done
        if not self.enabled:
            return
        now = time.monotonic()
        if self.tty:
            if now - self.last >= 0.2:
                self.last = now
                print("\r" + self._line(), end="", file=sys.stderr, flush=True)
        elif self.total and self.total >= 20_000_000:
            if 100 * done / self.total >= self.next_pct:
                print(self._line(), file=sys.stderr, flush=True)
                while self.next_pct <= 100 * done / self.total:
                    self.next_pct += 10
        elif not self.total and now - self.last >= 10:
            self.last = now
            print(self._line(), file=sys.stderr, flush=True)

    def close(self) -> None:
        if not self.enabled:
            return
        secs = time.monotonic() - self.t0
        got = f"{self.label}: {_mb(self.done - self.start)} in {secs:.1f} s"
        print(("\r" if self.tty else "") + got + " " * 20, file=sys.stderr, flush=True)


def _say(enabled: bool, msg: str) -> None:
    if enabled:
        print(msg, file=sys.stderr, flush=True)


# --- HTTP ----------------------------------------------------------------------------------------


@dataclass
class _Fetched:
    resumed: bool  # the result continues bytes that were on disk before this call
    received: int  # bytes received in this call


class _ShortRead(DownloadError):
    pass


_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")


def _fetch_url(url: str, part: Path, *, label: str, progress: bool, size: int | None) -> _Fetched:
    """GET ``url`` into ``part``, continuing an existing ``part`` with a Range request."""
    start = part.stat().st_size if part.is_file() else 0
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if start:
        headers["Range"] = f"bytes={start}-"
    req = urllib.request.Request(url, headers=headers)
    try:
        resp = urllib.request.urlopen(req, timeout=TIMEOUT)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and start:
            # nothing left to send: the .part is complete (or longer than the file); the
            # checksum decides, and a bad one makes the caller start again from zero
            exc.close()
            return _Fetched(resumed=True, received=0)
        raise
    with resp:
        length = resp.headers.get("Content-Length")
        expected = int(length) if length and length.isdigit() else None
        total = size
        if start and resp.status == 206:
            m = _CONTENT_RANGE.match(resp.headers.get("Content-Range", ""))
            if m is None or int(m.group(1)) != start:
                resp.close()
                part.unlink()
                _say(progress, f"{label}: unusable partial response; starting again")
                return _fetch_url(url, part, label=label, progress=progress, size=size)
            if m.group(3) != "*":
                total = int(m.group(3))
            mode = "ab"
            _say(progress, f"{label}: resuming at {_mb(start)}")
        else:
            if (resp.status or 200) != 200:  # file:// URLs have no status
                raise DownloadError(f"{url}: unexpected HTTP status {resp.status}")
            if start:
                _say(progress, f"{label}: the server ignored the Range request; starting again")
            start = 0
            mode = "wb"
            if expected is not None:
                total = expected
        bar = _Progress(label, total, progress, start)
        received = 0
        with open(part, mode) as f:
            while chunk := resp.read(CHUNK):
                f.write(chunk)
                received += len(chunk)
                bar.update(start + received)
        bar.close()
        if expected is not None and received < expected:
            raise _ShortRead(f"{url}: connection closed after {received} of {expected} bytes")
    return _Fetched(resumed=start > 0, received=received)


_TRANSIENT_HTTP = {408, 425, 429, 500, 502, 503, 504}


def _fetch(
    urls: Sequence[str], part: Path, *, label: str, progress: bool, size: int | None = None
) -> _Fetched:
    """Fetch into ``part`` from the first URL that works, retrying transient errors.

    The ``.part`` is kept between attempts (and when everything fails), so the next attempt,
    or the next run, resumes it.
    """
    errors: list[str] = []
    part.parent.mkdir(parents=True, exist_ok=True)
    for url in urls:
        for attempt in range(ATTEMPTS):
            if attempt:
                time.sleep(RETRY_DELAYS[min(attempt - 1, len(RETRY_DELAYS) - 1)])
            try:
                return _fetch_url(url, part, label=label, progress=progress, size=size)
            except urllib.error.HTTPError as exc:
                errors.append(f"{url}: HTTP {exc.code} {exc.reason}")
                exc.close()
                if exc.code not in _TRANSIENT_HTTP:
                    break  # 404, 403, ...: try the next mirror
            except (
                urllib.error.URLError,
                http.client.HTTPException,
                ConnectionError,
                TimeoutError,
                _ShortRead,
            ) as exc:
                reason = getattr(exc, "reason", exc)
                errors.append(f"{url}: {reason}")
    kept = (
        f"\nthe partial download {part} is kept: run the command again to resume"
        if part.is_file() and part.stat().st_size
        else ""
    )
    raise DownloadError(f"could not download {label}:\n  " + "\n  ".join(errors) + kept)


def _part(path: Path) -> Path:
    return path.with_name(path.name + ".part")
