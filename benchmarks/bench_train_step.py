"""Training-step time of each syn2sem mode on the same batch (issue: SPIGOT vs STE cost).

One optimiser step (forward, loss, backward, Adam update) of the syntactic-then-semantic model
with the paper's default sizes (2-layer BiLSTMs of 200 units per direction, MLPs of 100), on one
fixed batch of synthetic sentences, for every mode; median over repeats, and each mode's time
as a ratio to the straight-through step. Installs nothing; prints a Markdown table.

    python benchmarks/bench_train_step.py [--batch 32] [--min-len 20 --max-len 40] [--repeats 20]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from spigot.config import load_config
from spigot.data.batching import collate
from spigot.models.syn2sem import Syn2SemTask
from spigot.training import seed_everything

MODES = ("pipeline", "ste", "spigot", "marginals")


def step_time(mode: str, args: argparse.Namespace) -> tuple[float, float]:
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
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3)

    def step() -> None:
        opt.zero_grad()
        loss, _ = model.loss(batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    for _ in range(3):
        step()
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    words = int(batch.lengths.sum())
    return statistics.median(times), words / statistics.median(times)


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
    rows = {m: step_time(m, args) for m in args.modes.split(",")}
    ste = rows.get("ste", (float("nan"),))[0]
    print("\n| mode | step (ms) | words/s | / ste step |\n|---|---|---|---|")
    for m, (t, wps) in rows.items():
        print(f"| {m} | {t * 1e3:.1f} | {wps:.0f} | {t / ste:.3f} |")


if __name__ == "__main__":
    main()
