"""Training-step time of each sem2sent mode on the same batch (issue 10: a SPIGOT step may cost
at most 1.05 times a straight-through step).

One optimiser step (forward, loss, backward, Adam update) of pipeline 2 on one fixed batch (the
training sentences around the median length, as in a length-bucketed batch), for every mode;
every repeat restarts from the same parameters and optimiser state; the modes are interleaved
in a new random order per repeat; median over repeats, each mode's median as a ratio to the
straight-through step's, and the median of the ratios within a repeat with its quartiles.
No parser batch is interleaved, so the steps differ only in what passes through the graph. The
modes other than ``pipeline`` (whose parser is frozen) run on one model whose ``mode`` is set
before each step: the same tensors, so that the allocator's state and the memory layout, which
move single-model timings by several percent on a CPU, cannot favour one estimator.

By default: the sizes of ``Sem2SentConfig`` (the original's: a 2-layer BiLSTM parser of 200
units per direction, a 1-layer BiLSTM classifier of 200) on synthetic sentences (few labels),
with a freshly initialised parser. ``--config configs/sem2sent_sst.toml``: that config's sizes
and data (SST's training set and the PropBank label set, 58 labels; needs ``../shared/data``).
``--init-parser``: start from a pre-trained parser (a run's ``parser.pt``), whose graphs have
as few arcs as the gold ones, instead of a fresh one, which switches on about half of them.

    python benchmarks/bench_sem2sent_step.py [--batch 32] [--repeats 30] [--threads 1]
    python benchmarks/bench_sem2sent_step.py --config configs/sem2sent_sst.toml \
        --init-parser runs/sem2sent-sst/pretrain/seed0/parser.pt
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

from _steps import resettable_step
from spigot.config import apply_overrides, load_config
from spigot.pipelines.sem2sent.config import Sem2SentConfig
from spigot.pipelines.sem2sent.data import Sem2SentData, Step
from spigot.pipelines.sem2sent.task import Sem2SentTask
from spigot.training import seed_everything, set_threads

MODES = ("pipeline", "joint", "ste", "spigot", "marginals")
#: modes whose parser keeps its gradient: one model serves them all (its ``mode`` set before
#: each step), so that they run on the same tensors and only the graph's backward differs
SHARED = ("joint", "ste", "spigot", "marginals")
_SPLITS: dict[str, Sem2SentData] = {}
_SHARED: dict[str, tuple[Any, Any, torch.Tensor]] = {}


def make_step(mode: str, args: argparse.Namespace) -> tuple[Callable[[], None], int]:
    """A closure that runs one training step of ``mode`` from a fixed starting state."""
    over: dict[str, object] = {"mode": mode, "train.threads": args.threads}
    if args.config:
        cfg = load_config(args.config, over)
    else:
        over.update(
            {
                "data.synthetic_train": args.batch * 2,
                "data.synthetic_dev": 8,
                "data.synthetic_test": 8,
                "data.synthetic_parser_train": 64,
                "data.synthetic_parser_dev": 8,
            }
        )
        cfg = apply_overrides(Sem2SentConfig(), over)
    seed_everything(0)
    key = args.config or "synthetic"
    if key not in _SPLITS:  # read once for every mode
        _SPLITS[key] = Sem2SentTask.load_splits(cfg)
    splits = _SPLITS[key]

    def build() -> tuple[Any, Any, torch.Tensor]:
        task = Sem2SentTask.from_splits(cfg, splits)
        if args.init_parser:
            task.load_parser(args.init_parser)
        by_length = sorted(splits["train"], key=lambda x: len(x.words))
        mid = max(0, len(by_length) // 2 - args.batch // 2)
        # sentences of the median length, as in a length-bucketed training batch
        batch = next(iter(task.batches(by_length[mid : mid + args.batch], train=False)))
        return task.model, batch, task.labels_of(batch)

    if mode in SHARED:
        if key not in _SHARED:
            _SHARED[key] = build()
        model, batch, labels = _SHARED[key]
    else:  # pipeline
        model, batch, labels = build()
        model.freeze_parser()
    model.train()

    def loss() -> torch.Tensor:
        model.mode = mode  # the shared model's only difference between these modes
        return model.loss(Step(batch), labels)[0]

    return resettable_step(model, loss), int(batch.lengths.sum())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--config", help="a sem2sent config: its sizes and data (default: synthetic)")
    ap.add_argument("--init-parser", help="a parser.pt to start the parser from")
    args = ap.parse_args()
    set_threads(args.threads)
    modes = args.modes.split(",")
    steps = {m: make_step(m, args) for m in modes}
    words = next(iter(steps.values()))[1]
    what = (
        f"sentences of {args.config}, its sizes"
        if args.config
        else "synthetic sentiment sentences, default (original) sizes"
    )
    parser = f"parser from {args.init_parser}" if args.init_parser else "fresh parser"
    print(
        f"torch {torch.__version__}, {args.threads} thread(s); batch of {args.batch} {what} "
        f"({words} words); {parser}"
    )
    times: dict[str, list[float]] = {m: [] for m in modes}
    order = random.Random(0)
    for _ in range(args.repeats):  # interleaved, so that drift hits every mode alike,
        for m in order.sample(modes, len(modes)):  # in a new order each time (no position bias)
            t0 = time.perf_counter()
            steps[m][0]()
            times[m].append(time.perf_counter() - t0)
    ste = statistics.median(times["ste"]) if "ste" in times else float("nan")
    print(
        "\n| mode | step (ms), median | min | words/s | median / ste median "
        "| ratio to ste in the same repeat: median [quartiles] |"
    )
    print("|---|---|---|---|---|---|")
    for m in modes:
        med = statistics.median(times[m])
        paired = "–"
        if "ste" in times:
            r = [a / b for a, b in zip(times[m], times["ste"], strict=True)]
            q1, q2, q3 = statistics.quantiles(r, n=4) if len(r) > 1 else (r[0],) * 3
            paired = f"{q2:.3f} [{q1:.3f}, {q3:.3f}]"
        print(
            f"| {m} | {med * 1e3:.1f} | {min(times[m]) * 1e3:.1f} | {words / med:.0f} | "
            f"{med / ste:.3f} | {paired} |"
        )


if __name__ == "__main__":
    main()
