"""Training-step time of each sem2sent mode on the same batch (issue 10: a SPIGOT step may cost
at most 1.05 times a straight-through step).

One optimiser step (forward, loss, backward, Adam update) of pipeline 2 with the default sizes
of ``Sem2SentConfig`` (the original's: a 2-layer BiLSTM parser of 200 units per direction, a
1-layer BiLSTM classifier of 200), on one fixed batch of synthetic sentiment sentences, for
every mode; every repeat restarts from the same parameters and optimiser state; modes
interleaved; median over repeats, and each mode's time as a ratio to the straight-through step.
No parser batch is interleaved, so the steps differ only in what passes through the graph.

    python benchmarks/bench_sem2sent_step.py [--batch 32] [--repeats 30] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from _steps import resettable_step
from spigot.config import apply_overrides
from spigot.pipelines.sem2sent.config import Sem2SentConfig
from spigot.pipelines.sem2sent.data import Step
from spigot.pipelines.sem2sent.task import Sem2SentTask
from spigot.training import seed_everything, set_threads

MODES = ("pipeline", "joint", "ste", "spigot", "marginals")


def make_step(mode: str, args: argparse.Namespace) -> tuple[Callable[[], None], int]:
    """A closure that runs one training step of ``mode`` from a fixed starting state."""
    cfg = apply_overrides(
        Sem2SentConfig(),
        {
            "mode": mode,
            "data.synthetic_train": args.batch * 2,
            "data.synthetic_dev": 8,
            "data.synthetic_test": 8,
            "data.synthetic_parser_train": 64,
            "data.synthetic_parser_dev": 8,
            "train.threads": args.threads,
        },
    )
    seed_everything(0)
    splits = Sem2SentTask.load_splits(cfg)
    task = Sem2SentTask.from_splits(cfg, splits)
    batch = next(iter(task.batches(splits["train"][: args.batch], train=False)))
    labels = task.labels_of(batch)
    model = task.model
    if mode == "pipeline":
        model.freeze_parser()
    model.train()
    timed = resettable_step(model, lambda: model.loss(Step(batch), labels)[0])
    return timed, int(batch.lengths.sum())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--modes", default=",".join(MODES))
    args = ap.parse_args()
    set_threads(args.threads)
    modes = args.modes.split(",")
    steps = {m: make_step(m, args) for m in modes}
    words = next(iter(steps.values()))[1]
    print(
        f"torch {torch.__version__}, {args.threads} thread(s); batch of {args.batch} synthetic "
        f"sentiment sentences ({words} words); default (original) sizes"
    )
    times: dict[str, list[float]] = {m: [] for m in modes}
    for _ in range(args.repeats):  # interleaved, so that drift hits every mode alike
        for m in modes:
            t0 = time.perf_counter()
            steps[m][0]()
            times[m].append(time.perf_counter() - t0)
    ste = statistics.median(times["ste"]) if "ste" in times else float("nan")
    print("\n| mode | step (ms), median | min | words/s | median / ste median |")
    print("|---|---|---|---|---|")
    for m in modes:
        med = statistics.median(times[m])
        print(
            f"| {m} | {med * 1e3:.1f} | {min(times[m]) * 1e3:.1f} | {words / med:.0f} | "
            f"{med / ste:.3f} |"
        )


if __name__ == "__main__":
    main()
