"""Data-parallel training under torchrun: 2 CPU processes with gloo.

The equivalence tested: DistributedDataParallel averages the gradients of the ``N`` processes,
each computed on one batch of the epoch's order (process ``r`` takes batches ``r, r + N, ...``;
each loss is per word of its own batch). One optimizer step thus covers ``N`` consecutive
batches and applies the mean of their gradients, which is what one process does with
``train.accumulate = N`` (it sums the ``N`` gradients, then divides by ``N``). Both pad an
epoch whose number of batches is not a multiple of ``N`` with its first batches. With ``N = 2``
the two sums are the same floating-point operations (``(g0 + g1) / 2``; halving is exact), so
the weights are compared bitwise. Word dropout is off: the processes have their own random
streams, which one process cannot reproduce.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from spigot.cli import main
from spigot.training import load_checkpoint, set_threads
from test_no_lost_work import _kill_after_checkpoint
from test_training_cli import TINY

pytestmark = pytest.mark.skipif(
    not (dist.is_available() and dist.is_gloo_available()), reason="needs torch.distributed/gloo"
)

ROOT = Path(__file__).resolve().parents[1]

SETS = [
    *TINY,
    "data.synthetic_train=120",  # 60 batches: 30 steps of 2 batches per epoch
    "data.batch_size=2",
    "model.word_dropout=0",
    "mode=spigot",
    "train.pretrain_epochs=1",  # two stages: two DistributedDataParallel wrappers
    "train.epochs=1",
]


def _torchrun(*args: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "spigot",
        *args,
    ]


def _run(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.fixture(scope="module")
def config(tmp_path_factory) -> Path:
    set_threads(1)
    path = tmp_path_factory.mktemp("cfg") / "tiny.toml"
    path.write_text('task = "syn2sem"\nmode = "spigot"\n\n[data]\nsource = "synthetic"\n')
    return path


@pytest.fixture(scope="module")
def two(tmp_path_factory, config) -> Path:
    """An uninterrupted run of 2 processes."""
    out = tmp_path_factory.mktemp("ddp") / "two"
    _run(_torchrun("train", str(config), "--set", *SETS, "--out", str(out), "--no-progress"))
    return out


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path)["state_dict"]


def _epochs(run: Path) -> list[dict]:
    timing = ("time", "seconds", "cpu_seconds", "eval_seconds", "sentences_per_second")
    records = map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
    return [
        {k: v for k, v in r.items() if k not in timing} for r in records if r["event"] == "epoch"
    ]


def _same_weights(a: Path, b: Path) -> None:
    for name in ("syntax.pt", "best.pt"):
        wa, wb = _weights(a / name), _weights(b / name)
        assert wa.keys() == wb.keys()
        assert all(torch.equal(wa[k], wb[k]) for k in wa), name


def test_two_processes_equal_one_accumulating_their_batches(two, config, tmp_path):
    one = tmp_path / "one"
    args = ["train", str(config), "--set", *SETS, "train.accumulate=2"]
    assert main([*args, "--out", str(one), "--no-progress"]) == 0
    _same_weights(one, two)  # after the syntactic epoch, and after the joint one
    assert _epochs(one) == _epochs(two)  # the same losses (summed over processes) and dev scores
    ra, rb = (json.loads((d / "results.json").read_text()) for d in (one, two))
    assert (ra["dev"], ra["test"]) == (rb["dev"], rb["test"])
    assert (ra["processes"], rb["processes"]) == (1, 2)
    # process 0 alone wrote the run directory and its log
    starts = [r for r in map(json.loads, (two / "metrics.jsonl").read_text().splitlines())]
    assert [r["event"] for r in starts].count("start") == 1
    assert sorted(p.name for p in two.iterdir()) == [
        "best.pt",
        "config.toml",
        "metrics.jsonl",
        "results.json",
        "sentences.jsonl.gz",
        "syntax.pt",
    ]


def test_two_processes_resume_after_sigkill(two, config, tmp_path):
    killed = tmp_path / "killed"
    args = ["train", str(config), "--set", *SETS, "train.checkpoint_every=2"]
    state = _kill_after_checkpoint(_torchrun(*args, "--out", str(killed), "--no-progress"), killed)
    assert state["world_size"] == 2 and len(state["ranks"]) == 2
    assert state["partial"] is not None  # killed in the middle of an epoch
    copy = tmp_path / "copy"
    shutil.copytree(killed, copy)
    _run(_torchrun("train", "--resume", str(killed), "--no-progress"))
    _same_weights(two, killed)
    assert _epochs(two) == _epochs(killed)
    assert not (killed / "last.pt").exists()
    # a checkpoint of 2 processes does not resume in 1
    log = (copy / "metrics.jsonl").read_text()
    assert main(["train", "--resume", str(copy), "--no-progress"]) == 1
    assert (copy / "metrics.jsonl").read_text() == log  # refused before writing anything
