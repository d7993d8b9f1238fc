"""The command line: ``spigot data download NAME ...`` and ``spigot data where [NAME ...]``.

:func:`add_subparser` adds ``data`` (with ``download`` and ``where``) to a parser's subcommands;
:func:`main` runs it, from a parsed namespace or from the arguments, prints where the files went
(``download``) or which files are present and verified (``where``), and turns errors into exit
status 1 (2 without a subcommand, 130 when interrupted).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from .datasets import DATASETS, _expand, _with_requirements
from .fetch import DownloadError
from .paths import (
    DEFAULT_DATA_DIR,
    DOWNLOAD_CACHE,
    ENV_VAR,
    DataDirError,
    find_data_dir,
    locate_data_dir,
)
from .run import dataset_status, download


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
