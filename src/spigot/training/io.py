"""Files of a training run: atomic writes, the JSON-lines metrics log, checkpoint loading.

Every file a run writes goes through a temporary file next to it and ``os.replace``
(:func:`atomic_torch_save`, :func:`atomic_write_text`, :func:`atomic_write_bytes`), so a
killed process leaves either the old file or the new one, never half of one;
:func:`clean_temp_files` removes the temporary files such a kill left behind.
:func:`load_checkpoint` reads a checkpoint back (``weights_only``) and says clearly what is
wrong with a file that is not one.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import re
import secrets
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "truncate_log",
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_VERSION",
    "JsonlLog",
    "atomic_torch_save",
    "atomic_write_bytes",
    "atomic_write_text",
    "clean_temp_files",
    "load_checkpoint",
]

CHECKPOINT_FORMAT = "spigot-checkpoint"
CHECKPOINT_VERSION = 1


_TEMP = re.compile(r"\..+\.[A-Za-z0-9_]+\.tmp")


def _open_temp(path: Path) -> tuple[int, Path]:
    """A new file next to ``path``, opened like ``open(..., "x")`` (so the umask applies)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:  # pragma: no cover - 32 random bits
            continue
    raise FileExistsError(f"cannot create a temporary file next to {path}")  # pragma: no cover


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. Windows
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - file systems without directory fsync
        pass
    finally:
        os.close(fd)


def _atomic(path: str | os.PathLike, write: Callable[[Any], None], binary: bool) -> None:
    """Write ``path`` through a temporary file in its directory and ``os.replace``.

    The temporary file is created with mode ``0o666`` minus the umask, as ``open()`` would
    (``tempfile.mkstemp`` makes ``0o600`` files), so the result has the user's usual mode.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _open_temp(path)
    try:
        with os.fdopen(fd, "wb") if binary else os.fdopen(fd, "w", encoding="utf-8") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` to a temporary file in the same directory, then ``os.replace``."""
    _atomic(path, lambda f: torch.save(obj, f), binary=True)


def atomic_write_text(text: str, path: str | os.PathLike) -> None:
    """Write a UTF-8 text file atomically (temporary file + ``os.replace``)."""
    _atomic(path, lambda f: f.write(text), binary=False)


def atomic_write_bytes(data: bytes, path: str | os.PathLike) -> None:
    """Write a binary file atomically (temporary file + ``os.replace``)."""
    _atomic(path, lambda f: f.write(data), binary=True)


def clean_temp_files(directory: str | os.PathLike) -> list[Path]:
    """Remove the temporary files that a killed atomic write left in ``directory``
    (``.NAME.XXXX.tmp``); return them."""
    d = Path(directory)
    if not d.is_dir():
        return []
    gone = [p for p in d.iterdir() if p.is_file() and _TEMP.fullmatch(p.name)]
    for p in gone:
        p.unlink(missing_ok=True)
    return gone


def _jsonable(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, Mapping):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.integer, np.floating)):
        return _jsonable(x.item())
    if isinstance(x, Tensor):
        return _jsonable(x.tolist())
    return x


class JsonlLog:
    """Append-only JSON-lines metrics log (one object per line, flushed at once).

    ``path=None`` keeps the records in memory only (:attr:`records`). Non-finite floats are
    written as ``null``. The file is emptied first unless ``append`` (a resumed run keeps
    the records of its earlier epochs).
    """

    def __init__(self, path: str | os.PathLike | None = None, *, append: bool = False) -> None:
        self.path = Path(path) if path is not None else None
        self.records: list[dict[str, Any]] = []
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if not append or not self.path.exists():
                self.path.write_text("", encoding="utf-8")

    def write(self, record: Mapping[str, Any]) -> None:
        rec = {"time": round(time.time(), 3), **_jsonable(dict(record))}
        self.records.append(rec)
        if self.path is not None:
            with self.path.open("a", encoding="utf-8") as f:
                f.write(json.dumps(rec) + "\n")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint written by a spigot trainer (safe ``weights_only`` loading).

    Raises:
        FileNotFoundError: no such file.
        ValueError: a directory, or a file that is not a spigot checkpoint (the message names
            it and says why in one line).
    """
    p = Path(path)
    if p.is_dir():
        raise ValueError(f"{p} is a directory, not a checkpoint file (give e.g. {p / 'best.pt'})")
    if not p.is_file():
        raise FileNotFoundError(f"checkpoint not found: {p}")
    try:
        payload = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        why = (
            "it holds Python objects other than tensors"
            if "weights only" in str(exc).lower()
            else _first_line(exc)
        )
        raise ValueError(f"{p} is not a readable spigot checkpoint ({why})") from None
    except Exception as exc:  # noqa: BLE001 - any unpickling problem means "not a checkpoint"
        raise ValueError(
            f"{p} is not a readable spigot checkpoint (torch.load: {_first_line(exc)})"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{p} is not a spigot checkpoint (no format={CHECKPOINT_FORMAT!r})")
    if payload.get("version", 0) > CHECKPOINT_VERSION:
        raise ValueError(
            f"{p} was written by a newer spigot (checkpoint version {payload['version']})"
        )
    return payload


def truncate_log(path: str | os.PathLike, size: int | None) -> None:
    """Cut the log at ``path`` back to ``size`` bytes (``None``: leave it): on resume, the
    records written after the checkpoint describe work that is redone."""
    p = Path(path)
    if size is not None and p.is_file() and p.stat().st_size > size:
        with p.open("r+b") as f:
            f.truncate(size)
