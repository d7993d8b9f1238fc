"""Where the data is: the data directory, and config paths resolved inside it.

* :func:`find_data_dir` (and :func:`locate_data_dir`, which also says which rule chose it):
  ``--dir``, else ``$SPIGOT_DATA`` (:data:`ENV_VAR`), else ``../shared/data`` relative to the
  current directory (:data:`DEFAULT_DATA_DIR`), else :class:`DataDirError`;
* :func:`resolve_data_path`: a path written in a config (``${data}/...`` or
  ``../shared/data/...``) mapped into that directory;
* :data:`DOWNLOAD_CACHE`, the sub-directory that holds archives while they are used.
"""

from __future__ import annotations

import os
from pathlib import Path

PathLike = str | os.PathLike

ENV_VAR = "SPIGOT_DATA"
"""Environment variable naming the data directory (after ``--dir``, before ``../shared/data``)."""

DEFAULT_DATA_DIR = "../shared/data"
"""Last place looked at, relative to the current directory (the project's development layout)."""

DATA_PLACEHOLDER = "${data}"
"""Config paths starting with ``${data}/`` are resolved inside the data directory."""

DOWNLOAD_CACHE = ".download"
"""Sub-directory of the data directory that holds archives and partial downloads of them."""


class DataDirError(FileNotFoundError):
    """No data directory could be found; the message lists the places tried."""


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
      ``--dir`` and ``$SPIGOT_DATA`` apply to existing configs too; when ``$SPIGOT_DATA`` names
      a missing directory this raises :class:`DataDirError`; when it is not set and
      ``../shared/data`` does not exist the path is returned unchanged (the reader then reports
      the missing file);
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
        if os.environ.get(ENV_VAR):  # asked for: a missing directory is an error
            return find_data_dir(None) / norm[len(prefix) :]
        try:
            return find_data_dir(None) / norm[len(prefix) :]
        except DataDirError:
            return Path(text)
    return Path(text)
