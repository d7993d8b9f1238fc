"""No lost work (issue 12): mid-epoch checkpoints survive a SIGKILL, a run directory is never
overwritten by accident, run files get the user's umask, ``predict`` keeps its input and its
lines, and files that are not what a command expects give one-line errors naming them."""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from spigot.cli import main
from spigot.data import generate_treebank
from spigot.data.batching import BucketIterator, shard_indices
from spigot.training import (
    CheckpointEvery,
    Trainer,
    atomic_torch_save,
    atomic_write_bytes,
    atomic_write_text,
    load_checkpoint,
    parse_checkpoint_every,
    set_threads,
)
from test_training_cli import TINY, _same_run

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def config(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cfg") / "tiny.toml"
    path.write_text('task = "syn2sem"\nmode = "spigot"\n\n[data]\nsource = "synthetic"\n')
    return path


def _error(capsys) -> str:
    """The error of the last command: its last line on stderr, and no traceback."""
    err = capsys.readouterr().err
    *before, last = err.splitlines()
    assert ": error: " in last and last.startswith("spigot "), err
    assert not any(": error: " in line or "Traceback" in line for line in before), err
    return last


# ------------------------------------------------------------------------------------------
# the schedule and the batch order
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, CheckpointEvery()),
        ("0", CheckpointEvery()),
        (500, CheckpointEvery(steps=500)),
        ("500", CheckpointEvery(steps=500)),
        ("20 steps", CheckpointEvery(steps=20)),
        ("10min", CheckpointEvery(seconds=600.0)),
        ("90s", CheckpointEvery(seconds=90.0)),
        ("1.5h", CheckpointEvery(seconds=5400.0)),
    ],
)
def test_checkpoint_every_values(value, expected):
    assert parse_checkpoint_every(value) == expected


@pytest.mark.parametrize("value", [-1, "ten", "10 minutes", "5m", True, "1e3"])
def test_checkpoint_every_errors_name_the_key(value):
    with pytest.raises(ValueError, match="train.checkpoint_every"):
        parse_checkpoint_every(value)


def test_checkpoint_every_in_toml_and_overrides(tmp_path):
    from spigot.config import dump_toml, load_config

    for text, expected in (("500", "500"), ('"10min"', "10min")):
        path = tmp_path / "c.toml"
        path.write_text(f'task = "syn2sem"\n\n[train]\ncheckpoint_every = {text}\n')
        cfg = load_config(path)
        assert cfg.train.checkpoint_every == expected
        (tmp_path / "d.toml").write_text(dump_toml(cfg))
        assert load_config(tmp_path / "d.toml") == cfg
    assert load_config(None, ["train.checkpoint_every=20"]).train.checkpoint_every == "20"


def test_shard_indices_pad_and_skip():
    assert shard_indices(5) == [0, 1, 2, 3, 4]
    assert shard_indices(5, start=3) == [3, 4]
    # 2 processes: 5 batches padded to 6 by repeating the first
    assert shard_indices(5, rank=0, world_size=2) == [0, 2, 4]
    assert shard_indices(5, rank=1, world_size=2) == [1, 3, 0]
    # one process accumulating 2 batches a step takes the same padded order
    assert shard_indices(5, multiple=2) == [0, 1, 2, 3, 4, 0]
    assert shard_indices(5, rank=1, world_size=2, multiple=2, start=1) == [3, 0, 2]
    assert shard_indices(1, rank=1, world_size=3) == [0]
    assert shard_indices(0, rank=1, world_size=2) == []


def test_epoch_iter_resumes_the_epochs_order():
    sents = generate_treebank(40, seed=1, max_len=12)
    from spigot.data import Vocab

    words, pos = Vocab.from_sentences(sents, "words"), Vocab.from_sentences(sents, "pos")
    it = BucketIterator(sents, words, pos, batch_size=4, seed=3)
    it.epoch = 2
    full = [b.indices for b in it]
    assert it.epoch == 3
    it.epoch = 2
    part = it.epoch_iter(start=4)
    assert len(part) == len(full) - 4 and it.epoch == 3
    assert [b.indices for b in part] == full[4:]
    shards = []
    for r in (0, 1):  # each process is at the same epoch
        it.epoch = 2
        shards.append([b.indices for b in it.epoch_iter(rank=r, world_size=2)])
    padded = full + full[: len(full) % 2]
    assert shards == [padded[0::2], padded[1::2]]


# ------------------------------------------------------------------------------------------
# mid-epoch checkpoints in the trainer itself (any re-iterable, accumulation, time schedule)
# ------------------------------------------------------------------------------------------
class _Epochs:
    """A re-iterable of 7 shuffled batches per epoch that is not a BucketIterator."""

    def __init__(self) -> None:
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(28, 5, generator=g)
        self.y = torch.randn(28, 1, generator=g)
        self.epoch = 0

    def __len__(self) -> int:
        return 7

    def __iter__(self):
        order = torch.randperm(28, generator=torch.Generator().manual_seed(100 + self.epoch))
        self.epoch += 1
        for k in range(7):
            idx = order[4 * k : 4 * k + 4]
            yield (self.x[idx], self.y[idx])


def _toy(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 8), nn.Dropout(0.3), nn.Linear(8, 1))


def _toy_fit(model, batches, *, resume=None, on_checkpoint=None, **kw):
    set_threads(1)  # as the pipelines do: idle OpenMP workers spin and slow the other tests
    trainer = Trainer(model, lr=1e-2, progress=False, **kw)

    def loss_fn(batch):
        x, y = batch
        return nn.functional.mse_loss(model(x), y)

    return trainer.fit(
        batches,
        loss_fn,
        lambda: {"neg": -float(sum(p.abs().sum() for p in model.parameters()))},
        epochs=3,
        select="neg",
        restore_best=False,
        resume=resume,
        on_checkpoint=on_checkpoint,
    )


@pytest.mark.parametrize("accumulate", [1, 2])
def test_trainer_resumes_from_any_mid_epoch_state_exactly(accumulate):
    straight = _toy()
    _toy_fit(straight, _Epochs(), accumulate=accumulate)
    states: list[dict] = []
    model = _toy()
    _toy_fit(
        model,
        _Epochs(),
        accumulate=accumulate,
        checkpoint_every=2,
        on_checkpoint=lambda s: states.append(copy.deepcopy(s)),
    )
    assert all(map(torch.equal, model.parameters(), straight.parameters()))
    steps = -(-7 // accumulate)  # the last step of an epoch repeats its first batch
    assert [(s["partial"]["epoch"], s["partial"]["step"]) for s in states] == [
        (e, k) for e in (1, 2, 3) for k in range(2, steps + 1, 2)
    ]
    for st in (states[0], states[len(states) // 2]):
        resumed = _toy(seed=5)  # other weights and RNG state: all must come from the state
        torch.manual_seed(123)
        res = _toy_fit(resumed, _Epochs(), accumulate=accumulate, resume=st)
        assert all(map(torch.equal, resumed.parameters(), straight.parameters()))
        assert [h.epoch for h in res.history] == [1, 2, 3]


def test_cpu_seconds_do_not_count_waiting():
    """An epoch's ``cpu_seconds`` is the process's CPU time: a pause (here a sleep in every
    batch, as when another job holds the core or the process is stopped) adds wall time only."""
    model = _toy()
    trainer = Trainer(model, lr=1e-2, progress=False)

    def slow_loss(batch):
        time.sleep(0.05)
        x, y = batch
        return nn.functional.mse_loss(model(x), y)

    res = trainer.fit(_Epochs(), slow_loss, lambda: {"v": 0.0}, epochs=2, select="v")
    for e in res.history:
        assert e.seconds >= 7 * 0.05
        assert 0 < e.cpu_seconds < e.seconds - 6 * 0.05


def test_time_based_checkpoints():
    calls: list[int] = []
    _toy_fit(
        _toy(), _Epochs(), checkpoint_every="0.000001s", on_checkpoint=lambda s: calls.append(1)
    )
    assert len(calls) == 3 * 7  # after every step
    calls.clear()
    _toy_fit(_toy(), _Epochs(), checkpoint_every="10min", on_checkpoint=lambda s: calls.append(1))
    assert calls == []


# ------------------------------------------------------------------------------------------
# a real SIGKILL in the middle of an epoch
# ------------------------------------------------------------------------------------------
KILL_SETS = [
    *TINY,
    "data.synthetic_train=200",
    "data.batch_size=2",
    "mode=spigot",
    "train.pretrain_epochs=1",
    "train.epochs=2",
    "train.checkpoint_every=3",
    "train.log_grad_norms=true",  # its per-epoch sums are part of the mid-epoch state
]


def _spigot(*args: str) -> list[str]:
    return [sys.executable, "-m", "spigot", *args]


def _descendants(pid: int) -> list[int]:
    """The processes below ``pid`` (Linux ``/proc``): torchrun starts its workers in sessions
    of their own, which a signal to its process group does not reach."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended meanwhile
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        kids = children.get(todo.pop(), [])
        out += kids
        todo += kids
    return out


def _kill_after_checkpoint(cmd: list[str], run: Path, env: dict | None = None) -> dict:
    """Start ``cmd``; once ``run/last.pt`` exists, SIGKILL it and every process it started;
    return the trainer state of the ``last.pt`` left behind."""
    proc = subprocess.Popen(
        cmd,
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not (run / "last.pt").exists():
            if proc.poll() is not None:
                pytest.fail(f"the run ended before a checkpoint: {proc.stderr.read().decode()}")
            if time.monotonic() > deadline:
                pytest.fail("no checkpoint after 120 s")
            time.sleep(0.005)
        os.kill(proc.pid, signal.SIGSTOP)  # no new process from here on
        for pid in [*_descendants(proc.pid), proc.pid]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    finally:
        proc.wait()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    time.sleep(0.2)  # the workers' exit: nothing may write to the run any more
    assert not (run / "results.json").exists()
    return load_checkpoint(run / "last.pt")["trainer"]


def test_sigkill_mid_epoch_then_resume_equals_an_uninterrupted_run(config, tmp_path, capsys):
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    # killed by SIGKILL soon after its first mid-epoch checkpoint (3 steps into 100)
    cmd = _spigot("train", str(config), "--set", *KILL_SETS, "--out", str(killed), "--no-progress")
    state = _kill_after_checkpoint(cmd, killed)
    assert state["partial"] is not None and state["partial"]["step"] % 3 == 0
    rc = main(["train", "--resume", str(killed), "--no-progress"])
    assert rc == 0, capsys.readouterr().err
    args = ["train", str(config), "--set", *KILL_SETS, "--out", str(straight), "--no-progress"]
    assert main(args) == 0
    _same_run(straight, killed)  # bitwise equal weights, same scores, losses and log
    records = [json.loads(x) for x in (killed / "metrics.jsonl").read_text().splitlines()]
    norms = [
        [{k: v for k, v in r.items() if k != "time"} for r in map(json.loads, lines)]
        for lines in ((d / "metrics.jsonl").read_text().splitlines() for d in (straight, killed))
    ]
    grad_norms = [[r for r in n if r["event"] == "grad_norms"] for n in norms]
    assert len(grad_norms[0]) == 3 and grad_norms[0] == grad_norms[1]
    resumes = [r for r in records if r["event"] == "resume"]
    assert len(resumes) == 1 and resumes[0]["step"] == state["partial"]["step"]
    assert not any(p.name.endswith(".tmp") for p in killed.iterdir())


# ------------------------------------------------------------------------------------------
# run directories
# ------------------------------------------------------------------------------------------
def test_train_refuses_a_directory_with_a_run_unless_overwrite(config, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", str(config), "--set", *TINY, "--out", str(out), "--no-progress"]
    assert main(args) == 0
    capsys.readouterr()
    (out / "notes.txt").write_text("mine")
    before = (out / "results.json").read_text()
    stamp = (out / "best.pt").stat().st_mtime_ns
    assert main([*args, "--set", "seed=1"]) == 1
    err = _error(capsys)
    assert "already holds a run" in err and "--overwrite" in err and "finished" in err
    assert (out / "results.json").read_text() == before
    assert (out / "best.pt").stat().st_mtime_ns == stamp
    assert main([*args, "--set", "seed=1", "--overwrite"]) == 0
    capsys.readouterr()
    assert json.loads((out / "results.json").read_text())["seed"] == 1
    assert (out / "notes.txt").read_text() == "mine"  # not a run file: kept
    # an unfinished run points to --resume
    (out / "results.json").unlink()
    atomic_write_text("x", out / "last.pt")
    assert main(args) == 1
    assert "spigot train --resume" in _error(capsys)
    assert main(["train", "--resume", str(out), "--overwrite"]) == 1
    assert "not both" in _error(capsys)


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_run_files_follow_the_umask(config, tmp_path, umask):
    old = os.umask(umask)
    try:
        out = tmp_path / "run"
        args = ["train", str(config), "--set", *TINY, "mode=pipeline", "train.pretrain_epochs=1"]
        assert main([*args, "--out", str(out), "--no-progress"]) == 0
        atomic_torch_save({"a": 1}, out / "last.pt")
        atomic_write_bytes(b"x", tmp_path / "b.bin")
    finally:
        os.umask(old)
    want = 0o666 & ~umask
    names = ["config.toml", "best.pt", "syntax.pt", "last.pt", "results.json", "metrics.jsonl"]
    names.append("sentences.jsonl.gz")
    modes = {n: (out / n).stat().st_mode & 0o777 for n in names}
    assert modes == dict.fromkeys(names, want)
    assert (tmp_path / "b.bin").stat().st_mode & 0o777 == want
