"""Downloading data sets: :func:`download`, :func:`dataset_status` and :class:`FileResult`.

:func:`download` makes the files of one entry of :data:`DATASETS` in order, after the data sets it
requires. A file already present with a good checksum is skipped without any request; any other
is written into ``FILE.part``, which replaces ``FILE`` only once it verifies. The ``.part`` is
downloaded (:func:`.fetch._fetch`), extracted from an archive cached in ``DIR/.download/``,
derived (SST-2, GloVe subset), or, for PropBank, packed from files fetched one by one
(:data:`PARALLEL` at a time). Archives and fetched files are deleted once the files taken from
them verify, unless ``keep_archives``.
"""

from __future__ import annotations

import gzip
import os
import shutil
import sys
import tarfile
import threading
import zipfile
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from .datasets import (
    DATASETS,
    PROPBANK_COMMIT,
    Archive,
    Dataset,
    FileSpec,
    Source,
    _derive_glove_subset,
    _lookup,
    _pack_tgz,
    derive_sst2,
)
from .fetch import (
    CHUNK,
    ChecksumError,
    DownloadError,
    _fetch,
    _part,
    _say,
    check_file,
    sha256_file,
)
from .paths import DOWNLOAD_CACHE, PathLike

PARALLEL = 8  # concurrent requests for the many small propbank files


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
