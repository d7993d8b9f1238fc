"""Download the open data sets from their official sources, checked against recorded SHA-256 sums.

::

    spigot data download ewt|sst|glove|propbank|all [...] [--dir DIR] [--base-url URL]
                         [--keep-archives] [--no-progress]
    spigot data where [NAME ...] [--dir DIR]

Every file that the command writes has a SHA-256 sum recorded in ``checksums.json`` (beside this
module), computed on the reference copies. A file is only ever replaced by a new copy that verifies:

* a file that is already present with a good checksum is skipped, without any request;
* a download goes to ``FILE.part``; an interrupted one is resumed with an HTTP ``Range`` request
  (a server that answers ``206`` continues it, one that answers ``200`` restarts it);
* the ``.part`` is renamed over ``FILE`` (atomically) only once its checksum is good. A download
  whose checksum fails is deleted with an error naming both sums, and nothing is replaced;
* archives (``.zip``, ``.tgz``) are cached in ``DIR/.download/`` and deleted once the files taken
  from them verify (``keep_archives=True`` keeps them). No checksum of an upstream archive is
  recorded (they could not be downloaded when the table was written): the files extracted or
  derived from them are the ones checked.

Where each data set comes from (details and the checksum table: ``docs/data_download.md``):

========  =====================================================================================
ewt       UD English EWT v2.16: the three ``.conllu`` files, README.md, LICENSE.txt and
          stats.xml, straight from ``UniversalDependencies/UD_English-EWT`` on GitHub at commit
          ``15d613d8``.
sst       ``trees/{train,dev,test}.txt`` of Stanford's ``trainDevTestTrees_PTB.zip`` (checked
          member by member); ``sst2_{train,dev,test}.tsv`` are *derived* from them here by the
          documented rule of :func:`derive_sst2` and checked against the recorded sums.
glove     Stanford's ``glove.6B.zip`` (822 MB; Stanford NLP's Hugging Face copy first, then
          nlp.stanford.edu). Its member ``glove.6B.50d.txt`` is filtered, while streaming, to the
          words of EWT and SST (:func:`glove_vocabulary`; EWT and SST are downloaded first when
          absent) and written as ``glove-6b-50d-subset/glove.6B.50d.sst_ewt.txt.gz``, the file the
          configs read; its *decompressed content* is checked.
propbank  The 1,150 ``.gold_skel`` and documentation files of ``propbank/propbank-release`` at
          commit ``4abade0b``, one by one from GitHub (each checked), packed into
          ``propbank-ewt/propbank-ewt-gold_skel.tgz``; the archive is checked member by member.
========  =====================================================================================

Data directory: :func:`find_data_dir` looks at ``--dir``, then ``$SPIGOT_DATA``, then
``../shared/data`` (relative to the current directory). :func:`resolve_data_path` maps a path
written in a config (``${data}/...`` or ``../shared/data/...``) into that directory.

This module uses the standard library only (it never imports torch or numpy itself), so it can
also be run as a script: ``python src/spigot/data/download.py download ewt --dir DATA``.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import http.client
import io
import json
import os
import re
import shutil
import struct
import sys
import tarfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import IO, Any

__all__ = [
    "DATASETS",
    "ENV_VAR",
    "DEFAULT_DATA_DIR",
    "Archive",
    "ChecksumError",
    "DataDirError",
    "Dataset",
    "DownloadError",
    "FileResult",
    "FileSpec",
    "Source",
    "add_subparser",
    "check_file",
    "dataset_status",
    "derive_sst2",
    "download",
    "find_data_dir",
    "glove_vocabulary",
    "locate_data_dir",
    "main",
    "resolve_data_path",
    "sha256_file",
]

PathLike = str | os.PathLike

ENV_VAR = "SPIGOT_DATA"
"""Environment variable naming the data directory (after ``--dir``, before ``../shared/data``)."""

DEFAULT_DATA_DIR = "../shared/data"
"""Last place looked at, relative to the current directory (the project's development layout)."""

DATA_PLACEHOLDER = "${data}"
"""Config paths starting with ``${data}/`` are resolved inside the data directory."""

DOWNLOAD_CACHE = ".download"
"""Sub-directory of the data directory that holds archives and partial downloads of them."""

USER_AGENT = "spigot-data-download/1 (Python urllib)"
CHUNK = 1 << 20
TIMEOUT = 60.0
ATTEMPTS = 3  # per URL, for transient errors (connection reset, timeout, HTTP 5xx/429)
RETRY_DELAYS = (2.0, 5.0)  # seconds before the 2nd and 3rd attempt
PARALLEL = 8  # concurrent requests for the many small propbank files

CHECKSUMS_PATH = Path(__file__).with_name("checksums.json")

EWT_COMMIT = "15d613d8447b3478787d4c278730a1e48a945efb"  # UD English EWT v2.16 (2025-05-10)
PROPBANK_COMMIT = "4abade0b53ce4a181e1d98b3518101c1a44d395a"  # propbank/propbank-release
EWT_BASE = f"https://raw.githubusercontent.com/UniversalDependencies/UD_English-EWT/{EWT_COMMIT}/"
PROPBANK_BASE = f"https://raw.githubusercontent.com/propbank/propbank-release/{PROPBANK_COMMIT}/"
SST_BASE = "https://nlp.stanford.edu/sentiment/"
GLOVE_BASE = "https://huggingface.co/stanfordnlp/glove/resolve/main/"  # Stanford NLP's own HF org
GLOVE_MIRRORS = ("https://nlp.stanford.edu/data/", "https://downloads.cs.stanford.edu/nlp/data/")


# --- errors --------------------------------------------------------------------------------------


class DownloadError(OSError):
    """A file could not be downloaded (network, HTTP or archive error)."""


class ChecksumError(DownloadError):
    """A downloaded, extracted or derived file does not match its recorded checksum."""


class DataDirError(FileNotFoundError):
    """No data directory could be found; the message lists the places tried."""


# --- the table -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """Where a remote file lives: ``base + path``, or ``mirror + path`` for each mirror.

    With ``base_url_override`` (``--base-url``) the file is fetched from ``override/path`` only,
    so a local mirror only needs to serve the same relative paths.
    """

    base: str
    path: str
    mirrors: tuple[str, ...] = ()

    def urls(self, override: str | None = None) -> list[str]:
        """The URLs to try, in order."""
        quoted = urllib.parse.quote(self.path)
        if override is not None:
            return [override.rstrip("/") + "/" + quoted]
        return [b + quoted for b in (self.base, *self.mirrors)]


@dataclass(frozen=True)
class Archive:
    """An upstream archive that is downloaded only to take files out of it.

    Attributes:
        filename: its name in ``DIR/.download/``.
        source: where to get it.
        sha256: its checksum, or ``None`` when it is not known (then only the files taken out of
            it are checked, after extraction).
        size: its size in bytes if known (progress display only).
    """

    filename: str
    source: Source
    sha256: str | None = None
    size: int | None = None


@dataclass(frozen=True)
class FileSpec:
    """One file that :func:`download` writes, and how it is obtained.

    Exactly one of ``source`` (downloaded as is), ``archive`` + ``member`` (extracted) or
    ``derive`` (built by a function of this module, from ``inputs`` and, if given, the archive
    member) says how the file is made.

    Attributes:
        dest: path relative to the data directory.
        sha256: checksum of the file as written (what ``sha256sum`` prints).
        size: its size in bytes, if known.
        source: remote file downloaded as is.
        archive: archive the file (or the input of ``derive``) is taken from.
        member: name of the member inside ``archive``.
        derive: name of the builder: ``"sst2"``, ``"glove_subset"`` or ``"propbank_tgz"``.
        inputs: files of the data directory that ``derive`` reads (they are verified first).
        gunzip_sha256: for ``.gz`` files, checksum of the decompressed content; a file whose
            content matches is accepted even if its compressed bytes differ.
        members: for tar archives, ``{member: sha256}`` of every regular file; an archive with
            exactly these members is accepted even if its own bytes differ.
        parts: for ``propbank_tgz``, where each member is downloaded from (``Source.path`` is the
            member name).
    """

    dest: str
    sha256: str
    size: int | None = None
    source: Source | None = None
    archive: Archive | None = None
    member: str | None = None
    derive: str | None = None
    inputs: tuple[str, ...] = ()
    gunzip_sha256: str | None = None
    gunzip_size: int | None = None
    members: Mapping[str, str] | None = field(default=None, hash=False, compare=False)
    parts: Source | None = None


@dataclass(frozen=True)
class Dataset:
    """A named data set: its files in the order they are made, and what it needs first."""

    name: str
    title: str
    license: str
    origin: str
    files: tuple[FileSpec, ...]
    requires: tuple[str, ...] = ()


def _load_checksums(path: Path = CHECKSUMS_PATH) -> dict[str, dict[str, dict[str, Any]]]:
    with open(path, encoding="utf-8") as f:
        table = json.load(f)
    return {k: v for k, v in table.items() if not k.startswith("_")}


def _spec(sums: Mapping[str, Mapping[str, Any]], dest: str, **kw: Any) -> FileSpec:
    rec = sums[dest]
    return FileSpec(
        dest=dest,
        sha256=rec["sha256"],
        size=rec.get("size"),
        gunzip_sha256=rec.get("gunzip_sha256"),
        gunzip_size=rec.get("gunzip_size"),
        members=rec.get("members"),
        **kw,
    )


def _build_table() -> dict[str, Dataset]:
    ck = _load_checksums()
    ewt = "ud-english-ewt/"
    ewt_files = tuple(
        _spec(ck["ewt"], ewt + f, source=Source(EWT_BASE, f))
        for f in (
            "en_ewt-ud-train.conllu",
            "en_ewt-ud-dev.conllu",
            "en_ewt-ud-test.conllu",
            "README.md",
            "LICENSE.txt",
            "stats.xml",
        )
    )
    sst_zip = Archive("trainDevTestTrees_PTB.zip", Source(SST_BASE, "trainDevTestTrees_PTB.zip"))
    splits = ("train", "dev", "test")
    sst_files = tuple(
        _spec(ck["sst"], f"sst/{s}.txt", archive=sst_zip, member=f"trees/{s}.txt") for s in splits
    ) + tuple(
        _spec(ck["sst"], f"sst/sst2_{s}.tsv", derive="sst2", inputs=(f"sst/{s}.txt",))
        for s in splits
    )
    glove_zip = Archive(
        "glove.6B.zip", Source(GLOVE_BASE, "glove.6B.zip", GLOVE_MIRRORS), size=862_182_613
    )
    glove_inputs = tuple(f"{ewt}en_ewt-ud-{s}.conllu" for s in splits) + tuple(
        f"sst/{s}.txt" for s in splits
    )
    glove_files = (
        _spec(
            ck["glove"],
            "glove-6b-50d-subset/glove.6B.50d.sst_ewt.txt.gz",
            archive=glove_zip,
            member="glove.6B.50d.txt",
            derive="glove_subset",
            inputs=glove_inputs,
        ),
    )
    propbank_files = (
        _spec(
            ck["propbank"],
            "propbank-ewt/propbank-ewt-gold_skel.tgz",
            derive="propbank_tgz",
            parts=Source(PROPBANK_BASE, ""),
        ),
        _spec(ck["propbank"], "propbank-ewt/LICENSE", source=Source(PROPBANK_BASE, "LICENSE")),
    )
    return {
        "ewt": Dataset(
            "ewt",
            "UD English EWT v2.16",
            "CC BY-SA 4.0",
            f"github.com/UniversalDependencies/UD_English-EWT @ {EWT_COMMIT[:8]}",
            ewt_files,
        ),
        "sst": Dataset(
            "sst",
            "Stanford Sentiment Treebank (PTB trees) + derived SST-2",
            "none stated (research use)",
            "nlp.stanford.edu/sentiment/trainDevTestTrees_PTB.zip",
            sst_files,
        ),
        "glove": Dataset(
            "glove",
            "GloVe 6B 50d, restricted to the words of EWT and SST",
            "PDDL 1.0",
            "glove.6B.zip (Stanford NLP)",
            glove_files,
            requires=("ewt", "sst"),
        ),
        "propbank": Dataset(
            "propbank",
            "PropBank (unified) annotations of EWT, .gold_skel",
            "CC BY-SA 4.0",
            f"github.com/propbank/propbank-release @ {PROPBANK_COMMIT[:8]}",
            propbank_files,
        ),
    }


DATASETS: dict[str, Dataset] = _build_table()
"""name -> :class:`Dataset`, in download order."""


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


# --- derived files -------------------------------------------------------------------------------

_SST_LEAF = re.compile(r"\(\d ([^() ]+)\)")


def derive_sst2(trees: PathLike, out: PathLike) -> int:
    """Write the sentence-level binary SST-2 split of a file of SST trees; return its size.

    The documented rule (``docs/data.md``), which reproduces the reference ``sst2_*.tsv`` byte for
    byte: a header ``label<TAB>sentence``; for each tree, root label 0-1 -> ``0``, 3-4 -> ``1``,
    2 (neutral) dropped; the sentence is the leaves (split on ASCII spaces only) joined by single
    spaces, PTB escapes kept.
    """
    n = 0
    with (
        open(trees, encoding="utf-8") as f,
        open(out, "w", encoding="utf-8", newline="\n") as o,
    ):
        o.write("label\tsentence\n")
        for tree in f:
            if not tree.strip():
                continue
            root = int(tree[1])
            if root != 2:
                o.write(f"{int(root > 2)}\t{' '.join(_SST_LEAF.findall(tree))}\n")
                n += 1
    return n


def glove_vocabulary(conllu_files: Iterable[PathLike], sst_files: Iterable[PathLike]) -> set[str]:
    """The words kept in the GloVe subset: lowercased EWT forms and lemmas, and SST leaves.

    The rule that reproduces ``glove.6B.50d.sst_ewt.txt.gz`` (27,930 words) from the full
    ``glove.6B.50d.txt``: FORM and LEMMA of every word line of the CoNLL-U files (integer ids:
    multiword-token lines ``3-4`` and empty nodes ``8.1`` are skipped) and every SST leaf with
    ``\\/`` -> ``/``, all lowercased with :meth:`str.lower`.
    """
    words: set[str] = set()
    for path in conllu_files:
        with open(path, encoding="utf-8") as f:
            for line in f:
                cols = line.rstrip("\n").split("\t")
                if len(cols) >= 3 and cols[0].isdigit():
                    words.add(cols[1].lower())
                    words.add(cols[2].lower())
    for path in sst_files:
        with open(path, encoding="utf-8") as f:
            for tree in f:
                words.update(w.replace("\\/", "/").lower() for w in _SST_LEAF.findall(tree))
    return words


_F32 = struct.Struct("<f")
_SHORT_DECIMAL = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]*[1-9])?")


def _f32(x: float) -> float:
    return _F32.unpack(_F32.pack(x))[0]


def _float32_text(token: str) -> str:
    """The shortest positional decimal that reads back as the same float32 as ``token``.

    This is how the reference subset writes its numbers (``0.418``, ``-0.000063681``, ``-1``).
    The official GloVe text already uses that form (at most 6 significant digits, positional,
    no trailing zeros), which is returned unchanged without any arithmetic.
    """
    if _SHORT_DECIMAL.fullmatch(token):
        if len(token.replace("-", "").replace(".", "").lstrip("0")) <= 6:
            return token  # <= 6 significant digits round-trip through float32 uniquely
    v = _f32(float(token))
    for digits in range(9):
        s = f"{v:.{digits}e}"
        if _f32(float(s)) == v:
            return format(Decimal(s), "f")
    raise ValueError(f"cannot format {token!r} as a float32")  # pragma: no cover


def _derive_glove_subset(member: IO[bytes], inputs: Sequence[Path], out: Path) -> int:
    """Filter a GloVe text stream to :func:`glove_vocabulary` and gzip it into ``out``."""
    vocab = glove_vocabulary(inputs[:3], inputs[3:])
    n = 0
    inner = out.name.removesuffix(".part").removesuffix(".gz")
    with open(out, "wb") as raw, gzip.GzipFile(inner, "wb", 6, raw, mtime=0) as gz:
        for line in io.TextIOWrapper(
            member, encoding="utf-8", errors="surrogateescape", newline="\n"
        ):
            word, _, rest = line.rstrip("\r\n").partition(" ")
            if word not in vocab:
                continue
            values = [_float32_text(t) for t in rest.split(" ")]
            gz.write(f"{word} {' '.join(values)}\n".encode())
            n += 1
    return n


def _pack_tgz(root: Path, names: Iterable[str], out: Path) -> None:
    """A reproducible ``.tgz`` of ``root/name`` for each name (sorted, no timestamps or owners)."""
    with (
        open(out, "wb") as raw,
        gzip.GzipFile("", "wb", 6, raw, mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        for name in sorted(names):
            path = root / name
            info = tarfile.TarInfo(name)
            info.size = path.stat().st_size
            info.mode = 0o644
            info.mtime = 0
            with open(path, "rb") as f:
                tar.addfile(info, f)


# --- download ------------------------------------------------------------------------------------


@dataclass
class FileResult:
    """What :func:`download` did with one file."""

    dataset: str
    path: Path
    status: str  # "present", "downloaded", "replaced", "extracted", "derived"
    detail: str = ""

    @property
    def message(self) -> str:
        """One line for the summary."""
        verb = {
            "present": "already present, checksum ok",
            "downloaded": "downloaded, checksum ok",
            "replaced": "replaced a copy with a bad checksum, checksum ok",
            "extracted": "extracted, checksum ok",
            "derived": "derived, checksum ok",
        }[self.status]
        return f"{verb}: {self.path}" + (f" ({self.detail})" if self.detail else "")


def _part(path: Path) -> Path:
    return path.with_name(path.name + ".part")


class _Run:
    """State of one :func:`download` call for one dataset."""

    def __init__(
        self,
        dataset: Dataset,
        root: Path,
        override: str | None,
        progress: bool,
        keep_archives: bool,
    ) -> None:
        self.ds = dataset
        self.root = root
        self.override = override
        self.progress = progress
        self.keep = keep_archives
        self.cache = root / DOWNLOAD_CACHE
        self.archives: dict[str, tuple[Path, bool]] = {}  # filename -> (path, fetched fresh)
        self.stages: list[Path] = []  # directories of fetched parts, removed on success

    # archives ---------------------------------------------------------------------------------

    def archive(self, arc: Archive, *, fresh: bool = False) -> tuple[Path, bool]:
        """The local copy of ``arc`` (downloaded if needed) and whether it is new in this run."""
        if not fresh and arc.filename in self.archives:
            return self.archives[arc.filename]
        path = self.cache / arc.filename
        part = _part(path)
        if fresh:
            path.unlink(missing_ok=True)
            part.unlink(missing_ok=True)
        if path.is_file() and (arc.sha256 is None or sha256_file(path) == arc.sha256):
            _say(self.progress, f"{self.ds.name}: using the cached {path}")
            self.archives[arc.filename] = (path, False)
            return path, False
        path.unlink(missing_ok=True)
        got = _fetch(
            arc.source.urls(self.override),
            part,
            label=arc.filename,
            progress=self.progress,
            size=arc.size,
        )
        if arc.sha256 is not None:
            actual = sha256_file(part)
            if actual != arc.sha256 and got.resumed:
                part.unlink()
                got = _fetch(
                    arc.source.urls(self.override),
                    part,
                    label=arc.filename,
                    progress=self.progress,
                    size=arc.size,
                )
                actual = sha256_file(part)
            if actual != arc.sha256:
                part.unlink()
                raise ChecksumError(
                    f"{arc.filename}: sha256 {actual}, expected {arc.sha256}; the download was "
                    "deleted and nothing was replaced"
                )
        os.replace(part, path)
        self.archives[arc.filename] = (path, not got.resumed)
        return path, not got.resumed

    def drop_archives(self) -> None:
        """Delete the archives and fetched parts used by this run (unless ``keep_archives``)."""
        if self.keep:
            return
        for path, _ in self.archives.values():
            path.unlink(missing_ok=True)
        self.archives.clear()
        for stage in self.stages:
            shutil.rmtree(stage, ignore_errors=True)
        self.stages.clear()
        _remove_empty(self.cache)

    @staticmethod
    def open_member(path: Path, member: str) -> tuple[IO[bytes], Callable[[], None]]:
        """Open ``member`` of a zip or tar archive; also return how to close the archive."""
        if path.name.endswith(".zip"):
            zf = zipfile.ZipFile(path)
            try:
                return zf.open(member), zf.close
            except KeyError:
                zf.close()
                raise
        tf = tarfile.open(path, "r:*")
        try:
            f = tf.extractfile(member)
            if f is None:
                raise KeyError(f"{member} is not a regular file")
        except BaseException:
            tf.close()
            raise
        return f, tf.close

    # files --------------------------------------------------------------------------------------

    def make(self, spec: FileSpec, part: Path) -> tuple[str, tuple[bool, str] | None]:
        """Write ``spec`` into ``part``.

        Returns:
            The status word for the summary, and the result of :func:`check_file` on ``part``
            if it was already computed (``None``: not checked yet).
        """
        if spec.derive == "sst2":
            derive_sst2(self.root / spec.inputs[0], part)
            return "derived", None
        if spec.derive == "propbank_tgz":
            self.propbank(spec, part)
            return "derived", None
        if spec.archive is not None:
            return self.from_archive(spec, part)
        assert spec.source is not None, spec
        got = _fetch(
            spec.source.urls(self.override),
            part,
            label=spec.dest,
            progress=self.progress,
            size=spec.size,
        )
        checked = check_file(part, spec)
        if not checked[0] and got.resumed:
            _say(self.progress, f"{spec.dest}: bad checksum after resuming; downloading again")
            part.unlink()
            _fetch(
                spec.source.urls(self.override),
                part,
                label=spec.dest,
                progress=self.progress,
                size=spec.size,
            )
            checked = check_file(part, spec)
        return "downloaded", checked

    def from_archive(self, spec: FileSpec, part: Path) -> tuple[str, tuple[bool, str]]:
        assert spec.archive is not None and spec.member is not None
        fresh = False
        while True:
            path, fresh = self.archive(spec.archive, fresh=fresh)
            try:
                stream, close = self.open_member(path, spec.member)
                try:
                    if spec.derive == "glove_subset":
                        _say(self.progress, f"{spec.dest}: filtering {spec.member}")
                        inputs = [self.root / i for i in spec.inputs]
                        _derive_glove_subset(stream, inputs, part)
                        status = "derived"
                    else:
                        with open(part, "wb") as out:
                            shutil.copyfileobj(stream, out, CHUNK)
                        status = "extracted"
                finally:
                    stream.close()
                    close()
                ok, why = check_file(part, spec)
                if ok:
                    return status, (ok, why)
                problem = f"{spec.member} does not match the recorded checksum ({why})"
            except KeyError:
                problem = f"{spec.member} is not in the archive"
            except (
                zipfile.BadZipFile,
                tarfile.TarError,
                gzip.BadGzipFile,
                EOFError,
                zlib.error,
                ValueError,  # undecodable or unparsable text in the member
            ) as exc:
                problem = f"unreadable archive or member ({exc})"
            part.unlink(missing_ok=True)
            if not fresh:
                _say(self.progress, f"{spec.archive.filename}: {problem}; downloading it again")
                fresh = True
                continue
            path.unlink(missing_ok=True)
            self.archives.pop(spec.archive.filename, None)
            raise ChecksumError(
                f"{spec.dest}: from {spec.archive.filename}: {problem}. The archive was deleted "
                "and nothing was replaced. The upstream file is not the version these checksums "
                "were recorded from (see docs/data_download.md)."
            )

    def propbank(self, spec: FileSpec, part: Path) -> None:
        """Fetch every member of ``spec.members`` from ``spec.parts`` and pack them."""
        assert spec.members is not None and spec.parts is not None
        stage = self.cache / f"propbank-release-{PROPBANK_COMMIT[:12]}"
        todo = []
        for name, sha in spec.members.items():
            f = stage / name
            if not (f.is_file() and sha256_file(f) == sha):
                todo.append(name)
        total = len(spec.members)
        _say(
            self.progress,
            f"{spec.dest}: fetching {len(todo)} of {total} files "
            f"({total - len(todo)} already in {stage})",
        )
        lock = threading.Lock()
        done = [0]
        failures: list[str] = []

        def one(name: str) -> None:
            dest = stage / name
            p = _part(dest)
            urls = Source(spec.parts.base, spec.parts.path + name, spec.parts.mirrors).urls(
                self.override
            )
            try:
                _fetch(urls, p, label=name, progress=False)
                actual = sha256_file(p)
                if actual != spec.members[name]:
                    p.unlink()
                    _fetch(urls, p, label=name, progress=False)
                    actual = sha256_file(p)
                if actual != spec.members[name]:
                    p.unlink()
                    raise ChecksumError(f"{name}: sha256 {actual}, expected {spec.members[name]}")
                os.replace(p, dest)
            except DownloadError as exc:
                with lock:
                    failures.append(str(exc))
            with lock:
                done[0] += 1
                if self.progress and (done[0] % 100 == 0 or done[0] == len(todo)):
                    _say(True, f"{spec.dest}: {done[0]} of {len(todo)} files")

        if todo:
            with ThreadPoolExecutor(PARALLEL) as pool:
                list(pool.map(one, todo))
        if failures:
            raise DownloadError(
                f"{spec.dest}: {len(failures)} of {len(todo)} files failed (the others are kept in "
                f"{stage}; run the command again to fetch the rest):\n  "
                + "\n  ".join(failures[:5])
            )
        _say(self.progress, f"{spec.dest}: packing {total} files")
        _pack_tgz(stage, spec.members, part)
        self.stages.append(stage)

    def run(self) -> list[FileResult]:
        results = []
        for spec in self.ds.files:
            dest = self.root / spec.dest
            had = dest.is_file()
            if had:
                ok, why = check_file(dest, spec)
                if ok:
                    results.append(FileResult(self.ds.name, dest, "present"))
                    continue
                _say(
                    self.progress,
                    f"{spec.dest}: present but bad ({why}); fetching a new copy, which replaces "
                    "it only if it verifies",
                )
            for inp in spec.inputs:
                ok, why = check_file(self.root / inp, _lookup(inp))
                if not ok:
                    raise DownloadError(f"{spec.dest} is built from {inp}, which is bad: {why}")
            dest.parent.mkdir(parents=True, exist_ok=True)
            part = _part(dest)
            status, checked = self.make(spec, part)
            ok, why = checked or check_file(part, spec)
            if not ok:
                part.unlink(missing_ok=True)
                kept = f"; the existing {dest} was left as it was" if had else ""
                raise ChecksumError(
                    f"{spec.dest}: the new copy does not match the recorded checksum ({why}); "
                    f"it was deleted and nothing was replaced{kept}"
                )
            os.replace(part, dest)
            results.append(FileResult(self.ds.name, dest, "replaced" if had else status))
        self.drop_archives()
        return results


def _remove_empty(directory: Path) -> None:
    try:
        directory.rmdir()
    except OSError:
        pass


def _lookup(dest: str) -> FileSpec:
    for ds in DATASETS.values():
        for spec in ds.files:
            if spec.dest == dest:
                return spec
    raise KeyError(f"no dataset writes {dest}")


def _expand(names: Iterable[str]) -> list[str]:
    out: list[str] = []
    for name in names:
        for n in DATASETS if name == "all" else [name]:
            if n not in DATASETS:
                known = ", ".join(DATASETS)
                raise ValueError(f"unknown dataset {n!r}: choose among {known} or all")
            if n not in out:
                out.append(n)
    return out


def _with_requirements(names: Iterable[str]) -> list[str]:
    """``names`` with each dataset's requirements before it, each once."""
    out: list[str] = []

    def visit(n: str) -> None:
        for r in DATASETS[n].requires:
            visit(r)
        if n not in out:
            out.append(n)

    for n in names:
        visit(n)
    return out


def download(
    name: str,
    dir: PathLike,
    *,
    base_url_override: str | None = None,
    progress: bool = True,
    keep_archives: bool = False,
    summary: bool = True,
    requirements: bool = True,
) -> list[FileResult]:
    """Download (or check) every file of dataset ``name`` into ``dir``.

    Args:
        name: a key of :data:`DATASETS` (``ewt``, ``sst``, ``glove``, ``propbank``).
            The datasets it ``requires`` are made first (glove needs ewt and sst).
        dir: the data directory; created if needed.
        base_url_override: fetch every remote file from ``OVERRIDE/<relative path>`` instead of
            its official URL and mirrors (tests, local mirrors).
        progress: print progress to stderr.
        keep_archives: keep the downloaded archives (and the propbank files) in
            ``dir/.download`` instead of deleting them once their files verify.
        summary: print to stdout where each file went.
        requirements: make the required datasets first (they are checked anyway before a file
            is built from them).

    Returns:
        One :class:`FileResult` per file, the required datasets' first.

    Raises:
        ChecksumError: a new copy did not verify; it was deleted and nothing was replaced.
        DownloadError: a file could not be fetched (a ``.part`` is kept to resume).
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}: choose among {', '.join(DATASETS)}")
    root = Path(os.path.abspath(Path(dir).expanduser()))
    results: list[FileResult] = []
    ds = DATASETS[name]
    for req in ds.requires if requirements else ():
        results += download(
            req,
            root,
            base_url_override=base_url_override,
            progress=progress,
            keep_archives=keep_archives,
            summary=summary,
        )
    if progress:
        _say(True, f"{name}: {ds.title} ({ds.license}) from {ds.origin}")
    mine = _Run(ds, root, base_url_override, progress, keep_archives).run()
    if summary:
        print(f"{name}: {ds.title} ({ds.license})")
        for r in mine:
            print(f"  {r.message}")
        sys.stdout.flush()
    return results + mine


def dataset_status(name: str, dir: PathLike) -> list[tuple[str, bool, str]]:
    """``(relative path, ok, reason)`` for each file of dataset ``name`` in ``dir``."""
    root = Path(dir)
    return [(s.dest, *check_file(root / s.dest, s)) for s in DATASETS[name].files]


# --- where the data is ---------------------------------------------------------------------------


def locate_data_dir(
    explicit: PathLike | None = None, *, must_exist: bool = True
) -> tuple[Path, str]:
    """Like :func:`find_data_dir`, also returning which rule chose the directory."""
    tried = []
    if explicit:
        p = Path(explicit).expanduser()
        if must_exist and not p.is_dir():
            raise DataDirError(f"--dir {explicit}: no such directory")
        return Path(os.path.abspath(p)), "--dir"
    tried.append("--dir: not given")
    env = os.environ.get(ENV_VAR)
    if env:
        p = Path(env).expanduser()
        if must_exist and not p.is_dir():
            raise DataDirError(f"${ENV_VAR}={env}: no such directory")
        return Path(os.path.abspath(p)), f"${ENV_VAR}"
    tried.append(f"${ENV_VAR}: not set")
    p = Path(os.path.normpath(Path.cwd() / DEFAULT_DATA_DIR))
    if p.is_dir():
        return p, DEFAULT_DATA_DIR
    tried.append(f"{DEFAULT_DATA_DIR} (relative to the current directory): {p} does not exist")
    raise DataDirError(
        "no data directory found; tried, in order:\n  "
        + "\n  ".join(tried)
        + f"\nPass --dir DIR or set {ENV_VAR}=DIR (and run 'spigot data download NAME --dir DIR' "
        "to fetch the data)."
    )


def find_data_dir(explicit: PathLike | None = None, *, must_exist: bool = True) -> Path:
    """The data directory: ``explicit`` (``--dir``), else ``$SPIGOT_DATA``, else ``../shared/data``.

    A directory given by ``explicit`` or ``$SPIGOT_DATA`` is used as given: it is an error if it
    does not exist when ``must_exist`` (reading), and is created by :func:`download` otherwise.
    ``../shared/data`` (relative to the current directory) is used only if it exists. The
    result is absolute.

    Raises:
        DataDirError: nothing found; the message lists what was tried.
    """
    return locate_data_dir(explicit, must_exist=must_exist)[0]


def resolve_data_path(path: PathLike, data_dir: PathLike | None = None) -> Path:
    """Map a data path written in a config to a file in the data directory.

    * ``${data}/REST`` -> ``DATA_DIR/REST``;
    * ``../shared/data/REST`` (how the configs were written so far) -> ``DATA_DIR/REST``, so that
      ``--dir`` and ``$SPIGOT_DATA`` apply to existing configs too; when no data directory is
      found it is returned unchanged (the reader then reports the missing file);
    * any other path (absolute, or relative to the current directory) is returned unchanged.

    ``DATA_DIR`` is ``data_dir`` if given, else :func:`find_data_dir` ``(None)``.

    Raises:
        DataDirError: ``${data}`` is used but no data directory is found.
    """
    text = os.fspath(path)
    norm = text.replace("\\", "/")
    if norm == DATA_PLACEHOLDER or norm.startswith(DATA_PLACEHOLDER + "/"):
        rest = norm[len(DATA_PLACEHOLDER) :].lstrip("/")
        base = Path(data_dir) if data_dir is not None else find_data_dir(None)
        return base / rest if rest else base
    prefix = DEFAULT_DATA_DIR + "/"
    if norm.startswith(prefix):
        if data_dir is not None:
            return Path(data_dir) / norm[len(prefix) :]
        try:
            return find_data_dir(None) / norm[len(prefix) :]
        except DataDirError:
            return Path(text)
    return Path(text)


# --- command line --------------------------------------------------------------------------------


def add_subparser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``data`` (with ``download`` and ``where``) to an ``add_subparsers()`` object."""
    names = ", ".join(DATASETS)
    p = subparsers.add_parser(
        "data",
        help="download the open data sets (checksum-verified); show where they are",
        description="Download the open data sets from their official sources, verified against "
        "the SHA-256 sums recorded in spigot, or show which are present. The data directory is "
        f"--dir, else ${ENV_VAR}, else {DEFAULT_DATA_DIR}. See docs/data_download.md.",
    )
    sub = p.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    d = sub.add_parser(
        "download",
        help="fetch data sets (resumable; never replaces a good file)",
        description="Fetch data sets, resume partial downloads, check the SHA-256 sums, and "
        "print where the files went. Files already present with a good checksum are skipped.",
    )
    d.add_argument("names", nargs="+", metavar="NAME", help=f"{names}, or all")
    d.add_argument("--dir", help=f"data directory (default: ${ENV_VAR}, else {DEFAULT_DATA_DIR})")
    d.add_argument(
        "--base-url",
        metavar="URL",
        help="fetch every file from URL/<relative path> instead of the official sources "
        "(a local mirror)",
    )
    d.add_argument(
        "--keep-archives",
        action="store_true",
        help=f"keep the downloaded archives in DIR/{DOWNLOAD_CACHE} (e.g. the full glove.6B.zip)",
    )
    d.add_argument("--no-progress", action="store_true", help="no progress lines on stderr")
    w = sub.add_parser(
        "where",
        help="print the data directory and which data sets are present and verified",
    )
    w.add_argument("names", nargs="*", metavar="NAME", help=f"{names} (default: all)")
    w.add_argument("--dir", help=f"data directory (default: ${ENV_VAR}, else {DEFAULT_DATA_DIR})")
    p.set_defaults(_data_parser=p)
    return p


def _standalone_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="spigot")
    add_subparser(parser.add_subparsers(dest="command"))
    return parser


def _cmd_download(args: argparse.Namespace) -> int:
    names = _with_requirements(_expand(args.names))
    root = find_data_dir(args.dir, must_exist=False)
    for name in names:
        download(
            name,
            root,
            base_url_override=args.base_url,
            progress=not args.no_progress,
            keep_archives=args.keep_archives,
            requirements=False,
        )
    print(f"data directory: {root}")
    return 0


def _cmd_where(args: argparse.Namespace) -> int:
    names = _expand(args.names or ["all"])
    root, how = locate_data_dir(args.dir)
    print(f"data directory: {root} (from {how})")
    for name in names:
        rows = dataset_status(name, root)
        n_ok = sum(ok for _, ok, _ in rows)
        state = "complete" if n_ok == len(rows) else f"{n_ok} of {len(rows)} files ok"
        print(f"{name}: {state} - {DATASETS[name].title}")
        for dest, ok, why in rows:
            mark = "ok" if ok else ("missing" if why == "missing" else "BAD")
            extra = "" if ok or why == "missing" else f" ({why})"
            print(f"  {mark:7} {root / dest}{extra}")
    return 0


def main(args: argparse.Namespace | Sequence[str] | None = None) -> int:
    """Run ``spigot data ...``: ``args`` parsed by a parser that has :func:`add_subparser`, or
    the arguments after ``spigot`` (``["data", "download", "ewt"]``, or without ``"data"``).
    """
    if args is None or not isinstance(args, argparse.Namespace):
        argv = list(sys.argv[1:] if args is None else args)
        if not argv or argv[0] != "data":
            argv.insert(0, "data")
        args = _standalone_parser().parse_args(argv)
    command = getattr(args, "data_command", None)
    if command is None:
        parser = getattr(args, "_data_parser", None)
        if parser is not None:
            parser.print_help()
        return 2
    try:
        return {"download": _cmd_download, "where": _cmd_where}[command](args)
    except KeyboardInterrupt:
        print("spigot data: interrupted; run the command again to resume", file=sys.stderr)
        return 130
    except (DownloadError, DataDirError, ValueError) as exc:
        print(f"spigot data {command}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
