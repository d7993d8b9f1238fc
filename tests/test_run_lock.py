"""One process per run directory: a run being trained is locked, and an experiment's workers
end with the experiment (an orphan worker once trained into a run beside a restarted
experiment, both writing the same files)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from spigot.cli import main
from spigot.pipelines.run import LOCK_FILE, RunDirectoryBusy, check_not_busy
from test_training_cli import TINY

pytest.importorskip("fcntl", reason="run directories are locked with POSIX flock only")

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def config(tmp_path) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text('task = "syn2sem"\nmode = "spigot"\n\n[data]\nsource = "synthetic"\n')
    return path


def _hold_lock(run: Path) -> subprocess.Popen:
    """Another process holding ``run``'s lock, as a training process does."""
    code = textwrap.dedent(
        f"""
        import fcntl, os, sys, time
        h = open({str(run / LOCK_FILE)!r}, "a+")
        fcntl.flock(h.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        h.seek(0); h.truncate(); h.write(str(os.getpid())); h.flush()
        print("locked", flush=True)
        time.sleep(120)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
    return proc


def _last_error(capsys) -> str:
    return capsys.readouterr().err.strip().splitlines()[-1]


def test_a_locked_run_directory_is_refused(config, tmp_path, capsys):
    run = tmp_path / "run"
    args = ["train", str(config), "--set", *TINY, "--out", str(run), "--no-progress"]
    assert main(args) == 0
    capsys.readouterr()
    assert not (run / LOCK_FILE).exists()  # the finished run released it
    check_not_busy(run)
    files = {p.name: p.stat().st_mtime_ns for p in run.iterdir() if p.name != LOCK_FILE}
    holder = _hold_lock(run)
    try:
        with pytest.raises(RunDirectoryBusy, match=f"process {holder.pid} is training"):
            check_not_busy(run)
        # --overwrite would delete the files the other process is writing: refused
        assert main([*args, "--set", "seed=1", "--overwrite"]) == 1
        assert f"process {holder.pid} is training into it" in _last_error(capsys)
        now = {p.name: p.stat().st_mtime_ns for p in run.iterdir() if p.name != LOCK_FILE}
        assert now == files
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()
    # the holder is gone: the directory is free again
    assert main([*args, "--overwrite"]) == 0


def test_a_fresh_run_into_a_locked_directory_writes_nothing(config, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    holder = _hold_lock(run)
    try:
        assert main(["train", str(config), "--set", *TINY, "--out", str(run)]) == 1
        assert "is in use" in _last_error(capsys)
        assert sorted(p.name for p in run.iterdir()) == [LOCK_FILE]
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()


def _state(pid: int) -> str:
    """``/proc`` state letter of ``pid`` ("Z" zombie, "" gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return ""


def _orphan_after_parent_dies(watch: bool) -> tuple[int, bool]:
    """Start a process pool (spigot's, or a plain one) busy with a long job, SIGKILL the
    process that owns it, and report whether the worker ended within 15 s."""
    pool = (
        "from spigot.experiments.runner import _pool\npool = _pool('local', 1, {})"
        if watch
        else "import multiprocessing as mp\nfrom concurrent.futures import ProcessPoolExecutor\n"
        "pool = ProcessPoolExecutor(1, mp_context=mp.get_context('spawn'))"
    )
    code = f"{pool}\nimport os, time\nprint(pool.submit(os.getpid).result(), flush=True)\n"
    code += "pool.submit(time.sleep, 120)\ntime.sleep(120)\n"
    parent = subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,  # the killed pool's resource tracker complains of leaks
        text=True,
        cwd=ROOT,
    )
    assert parent.stdout is not None
    worker = int(parent.stdout.readline())
    time.sleep(0.5)  # the worker is in time.sleep(120)
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    parent.stdout.close()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and _state(worker) not in ("", "Z"):
        time.sleep(0.1)
    ended = _state(worker) in ("", "Z")
    if not ended:
        os.kill(worker, signal.SIGKILL)
    return worker, ended


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_experiment_workers_end_with_the_experiment():
    # the control: a plain pool's worker outlives its parent (the orphan of the bug)
    assert not _orphan_after_parent_dies(watch=False)[1]
    # the experiment runner's pool: its worker ends once the parent is gone
    assert _orphan_after_parent_dies(watch=True)[1]
