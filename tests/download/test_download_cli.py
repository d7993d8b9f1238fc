"""Tests of where ``spigot data`` puts and finds its files, and of its command line: the order in
which the data directory is looked for (``--dir``, ``$SPIGOT_DATA``, ``../shared/data``), how data
paths in configs resolve, what ``spigot data download`` and ``spigot data where`` print, and that
errors exit with status 1.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from _download_fixtures import _Server

from spigot.data import download as dl
from spigot.data.download import DataDirError

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
