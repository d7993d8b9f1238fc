"""Line splitting and UTF-8 decoding shared by the corpus readers.

The string parsers (``parse_conllu``, ``parse_sdp``) and the file readers
(``read_*``/``iter_*``, plain or ``.gz``) cut their input into lines here, in
the same way, so that a text gives the same sentences (and the same error
line numbers) whichever way it is read:

* a line ends at ``"\\n"`` only.  ``"\\r"`` characters just before the end of
  a line are dropped (so ``"\\r\\n"`` files read like ``"\\n"`` files), but
  neither a lone ``"\\r"`` nor any of the other characters that
  :meth:`str.splitlines` breaks at (U+2028, U+2029, U+0085, form feed,
  vertical tab, U+001C..U+001E) ends a line: they stay inside the field or
  comment that holds them;
* a byte order mark (U+FEFF) at the start of the first line is dropped;
* files are decoded as strict UTF-8, line by line; undecodable bytes raise a
  :class:`CorpusFormatError` naming the file, the line and the byte offset.

This module does not import torch.
"""

from __future__ import annotations

import gzip
import os
import re
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path

__all__ = [
    "WHITESPACE",
    "CorpusFormatError",
    "DataError",
    "is_blank",
    "iter_binary_lines",
    "iter_file_lines",
    "iter_text_lines",
    "parse_int",
]

PathLike = str | os.PathLike

WHITESPACE = " \t\r\f\v"
"""ASCII whitespace (without ``"\\n"``): what the readers strip or treat as blank."""

_BOM = "\ufeff"


class DataError(ValueError):
    """The data cannot be used as asked: a malformed file, an empty split, missing trees or
    graphs, ... Every error of spigot's data layer is one (:class:`CorpusFormatError` too)."""


class CorpusFormatError(DataError):
    """A corpus file is malformed.

    The message names the file and (when known) the 1-based line number.

    Attributes:
        source: file name (or ``"<string>"``).
        line: 1-based line number of the offending line, or ``None``.
        problem: description of the problem, without location.
    """

    def __init__(self, source: str, line: int | None, problem: str) -> None:
        self.source = source
        self.line = line
        self.problem = problem
        where = f"{source}:{line}" if line is not None else source
        super().__init__(f"{where}: {problem}")


def is_blank(line: str) -> bool:
    """Whether ``line`` holds only ASCII whitespace (a sentence separator).

    Other Unicode whitespace (U+2028, U+00A0, ...) is content, not a blank.
    """
    return not line.strip(WHITESPACE)


_INT = re.compile(r"-?[0-9]+")


def parse_int(value: str, what: str, source: str, lineno: int) -> int:
    """``int(value)`` for ASCII digits with an optional ``-``, else a :class:`CorpusFormatError`.

    Stricter than :func:`int`, which also takes surrounding spaces, ``_``, ``+``
    and non-ASCII digits such as U+0661; ``what`` names the field in the message.
    """
    if _INT.fullmatch(value):
        try:
            return int(value)
        except ValueError:  # more digits than int() converts
            pass
    raise CorpusFormatError(source, lineno, f"{what} {value!r} is not an integer")


def _clean(line: str, first: bool) -> str:
    """Drop the end-of-line ``"\\r"`` characters, and the BOM of the first line."""
    line = line.rstrip("\r")
    if first and line.startswith(_BOM):
        line = line[1:]
    return line


def iter_text_lines(text: str) -> Iterator[str]:
    """Lines of ``text`` without their terminators, cut at ``"\\n"`` only.

    A final ``"\\n"`` does not start an extra empty line, as when reading a file.
    """
    start = 0
    end = len(text)
    first = True
    while start < end:
        stop = text.find("\n", start)
        if stop < 0:
            stop = end
        yield _clean(text[start:stop], first)
        first = False
        start = stop + 1


def iter_binary_lines(stream: Iterable[bytes], source: str) -> Iterator[str]:
    """Decode the lines of a binary stream (an open file, a tar member, ...) as UTF-8.

    Lines are cut as :func:`iter_text_lines` cuts a string (at ``"\\n"`` only, end-of-line
    ``"\\r"`` and the first line's BOM dropped).

    Args:
        stream: yields the raw lines, each ending with ``b"\\n"`` except maybe the last
            (iterating a binary file does this).
        source: name used in error messages.

    Raises:
        CorpusFormatError: a line is not valid UTF-8 (the message gives the line, the
            offending byte and its offset in the stream).
    """
    offset = 0  # byte offset of the current line in the stream
    for lineno, raw in enumerate(stream, start=1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as err:
            raise CorpusFormatError(
                source,
                lineno,
                f"not valid UTF-8: byte 0x{raw[err.start]:02x} at byte offset "
                f"{offset + err.start} ({err.reason}); re-encode the file as UTF-8",
            ) from None
        yield _clean(line.removesuffix("\n"), lineno == 1)
        offset += len(raw)


def iter_file_lines(path: PathLike, source: str | None = None) -> Iterator[str]:
    """Lines of a UTF-8 file (``.gz`` is decompressed), as :func:`iter_text_lines` cuts them.

    Args:
        path: the file.
        source: name used in error messages (default ``str(path)``).

    Yields:
        Decoded lines without their terminators.

    Raises:
        CorpusFormatError: a line is not valid UTF-8 (the message gives the
            line, the offending byte and its offset in the decompressed file),
            or a ``.gz`` file is not valid gzip data (bad header, corrupt or
            truncated stream, wrong checksum: the message names the file and
            says after which line).
        OSError: the file cannot be opened or read.
    """
    src = str(path) if source is None else source
    p = Path(path)
    lineno = 0
    try:
        with gzip.open(p, "rb") if p.suffix == ".gz" else open(p, "rb") as f:
            for line in iter_binary_lines(f, src):
                lineno += 1
                yield line
    except (gzip.BadGzipFile, EOFError, zlib.error) as err:
        raise CorpusFormatError(
            src, None, f"not a valid gzip file (after line {lineno}): {err}"
        ) from None
