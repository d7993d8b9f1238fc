"""Training-step time of each syn2sem mode on the same batch (issue: SPIGOT vs STE cost).

One optimiser step (forward, loss, backward, Adam update) of the syntactic-then-semantic model
with the paper's default sizes (2-layer BiLSTMs of 200 units per direction, MLPs of 100), on one
fixed batch of synthetic sentences, for every mode; every repeat restarts from the same
parameters and optimiser state; median over repeats, and each mode's time as a ratio to the
straight-through step. Installs nothing; prints a Markdown table.

    python benchmarks/bench_train_step.py [--batch 32] [--min-len 20 --max-len 40] [--repeats 20]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from _steps import resettable_step
from spigot.config import load_config
from spigot.data.batching import collate
from spigot.pipelines.syn2sem.task import Syn2SemTask
from spigot.training import seed_everything

MODES = ("pipeline", "ste", "spigot", "marginals")


def make_step(mode: str, args: argparse.Namespace) -> tuple[Callable[[], None], int]:
    """A closure that runs one training step of ``mode`` from a fixed starting state."""
    cfg = load_config(
        None,
        [
            f"mode={mode}",
            "data.source=synthetic",
            f"data.synthetic_train={args.batch * 4}",
            "data.synthetic_dev=8",
            "data.synthetic_test=8",
            f"data.synthetic_min_len={args.min_len}",
            f"data.synthetic_max_len={args.max_len}",
        ],
    )
    seed_everything(0)
    splits = Syn2SemTask.load_splits(cfg)
    task = Syn2SemTask.from_config(cfg, splits["train"])
    sents = splits["train"][: args.batch]
    v = task.vocabs
    batch = collate(sents, v["words"], v["pos"], label_vocab=v["labels"])
    model = task.model
    if mode == "pipeline":
        model.freeze_syntax()
    model.train()
    timed = resettable_step(model, lambda: model.loss(batch)[0])
    return timed, int(batch.lengths.sum())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--min-len", type=int, default=20)
    ap.add_argument("--max-len", type=int, default=40)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--modes", default=",".join(MODES))
    args = ap.parse_args()
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; batch of {args.batch} "
        f"synthetic sentences of {args.min_len}-{args.max_len} words; paper-size model"
    )
    modes = args.modes.split(",")
    steps = {m: make_step(m, args) for m in modes}
    times: dict[str, list[float]] = {m: [] for m in modes}
    for _ in range(args.repeats):  # interleaved, so that drift hits every mode alike
        for m in modes:
            fn, _ = steps[m]
            t0 = time.perf_counter()
            fn()
            times[m].append(time.perf_counter() - t0)
    ste = statistics.median(times["ste"]) if "ste" in times else float("nan")
    print("\n| mode | step (ms), median | min | words/s | median / ste median |")
    print("|---|---|---|---|---|")
    for m in modes:
        med = statistics.median(times[m])
        words = steps[m][1]
        print(
            f"| {m} | {med * 1e3:.1f} | {min(times[m]) * 1e3:.1f} | {words / med:.0f} | "
            f"{med / ste:.3f} |"
        )


if __name__ == "__main__":
    main()
