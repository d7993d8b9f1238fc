"""Per-epoch traces of the latent-cluster experiment: what each estimator does to the scores.

Trains the model of :mod:`spigot.experiments.estimators` like :func:`~.estimators.train_one`
and records, per epoch, on the 5,000 training points:

* ``grad``: the mean over examples of ``||dL_i/ds_i||``, the surrogate gradient of an example's
  own loss reaching its cluster scores (with ``--reduction mean``, times the batch size);
* ``raises``: the share of examples whose surrogate raises the score of the chosen cluster
  (``dL/ds_c < 0``): how often the estimator reinforces its current choice;
* ``rule``: the share of examples with ``||dL/dz|| > 1``, where SPIGOT's rule
  ``eta = min(1, 1/||g||)`` shortens the step;
* ``moved``: the share whose argmax changes at ``s - dL/dz`` (what a unit step against the
  gradient flips; blackbox's and I-MLE's backward is 0 elsewhere);
* ``flip``: the share of points whose argmax cluster changed since the previous epoch;
* ``H``: entropy (bits) of the histogram of chosen clusters (``log2 10 = 3.32`` is uniform);
* ``distinct``: how many different classifiers the 10 true clusters go to (by majority; 10 is
  one classifier per cluster, as ``gold``);
* ``purity``: the share of points that go where the majority of their true cluster goes;
* ``gap``: the median gap between the best and second-best cluster score;
* ``target``: the share of examples whose chosen cluster is the one the loss pulls back to,
  ``argmin_k BCE(l_k, y)`` (the classifier with the largest logit if ``y = 1``, the smallest
  if ``y = 0``);
* ``own`` and ``other``: the medians of ``|l_choice|``, the chosen classifier's logit, and of
  ``max_{k != choice} |l_k|``, the largest logit of the classifiers not chosen (which mostly
  never saw the point's cluster);
* ``dev``: dev accuracy (hard argmax).

    python -m spigot.experiments.estimators_diagnosis --modes ste spigot marginals \\
        [--lr 0.03] [--epochs 10] [--batch 64] [--reduction sum] [--seed 0] [--every 1]
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

import spigot
from spigot.experiments.estimators import BATCH, ClusterModel, ClusterTask, accuracy, make_task

COLUMNS = (
    "grad",
    "raises",
    "rule",
    "moved",
    "flip",
    "H",
    "distinct",
    "purity",
    "gap",
    "target",
    "own",
    "other",
    "dev",
)


def assignment_stats(a: Tensor, c: Tensor, K: int) -> dict[str, float]:
    """``H`` (bits), ``distinct`` and ``purity`` of the chosen clusters ``a`` against the true
    clusters ``c`` (both ``[N]`` ids in ``0..K-1``)."""
    p = torch.bincount(a, minlength=K).double() / len(a)
    p = p[p > 0]
    majority, agree = [], 0
    for k in range(K):
        counts = torch.bincount(a[c == k], minlength=K)
        if counts.sum() > 0:
            majority.append(int(counts.argmax()))
            agree += int(counts.max())
    return {
        "H": float(-(p * p.log2()).sum()),
        "distinct": float(len(set(majority))),
        "purity": agree / len(a),
    }


def trace(
    task: ClusterTask,
    mode: str,
    *,
    lr: float,
    epochs: int,
    batch: int = BATCH,
    seed: int = 0,
    reduction: str = "sum",
    options: Mapping[str, Any] | None = None,
) -> list[dict[str, float]]:
    """Train ``mode`` (an estimator name) and return one dict of :data:`COLUMNS` per epoch."""
    if mode not in spigot.ESTIMATORS:
        raise ValueError(f"{mode!r} is not a registered estimator")
    torch.manual_seed(seed)
    x, y, c = task.splits["train"]
    model = ClusterModel(x.shape[1], task.K, mode, options)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    with torch.no_grad():
        prev = model.scorer(x).argmax(1)
    rows = []
    for _ in range(epochs):
        model.train()
        acc = dict.fromkeys(("grad", "raises", "rule", "moved"), 0.0)
        for idx in torch.randperm(len(y)).split(batch):
            s = model.scorer(x[idx])
            s.retain_grad()
            z = spigot.structured_argmax(s, model.structure, estimator=mode, **model.options)
            if z.requires_grad:
                z.retain_grad()
            logit = (z * model.classifiers(x[idx])).sum(1)
            loss = nn.functional.binary_cross_entropy_with_logits(
                logit, y[idx], reduction=reduction
            )
            opt.zero_grad()
            loss.backward()
            opt.step()
            scale = len(idx) if reduction == "mean" else 1
            if s.grad is None or z.grad is None:  # pipeline: nothing reaches the scores
                continue
            ds, g, sd = s.grad * scale, z.grad, s.detach()
            chosen = sd.argmax(1, keepdim=True)
            acc["grad"] += float(ds.norm(dim=1).sum())
            acc["raises"] += float((ds.gather(1, chosen) < 0).sum())
            acc["rule"] += float((g.norm(dim=1) > 1).sum())
            acc["moved"] += float(((sd - g).argmax(1, keepdim=True) != chosen).sum())
        row = {k: v / len(y) for k, v in acc.items()}
        with torch.no_grad():
            s_all, logits = model.scorer(x), model.classifiers(x)
            a = s_all.argmax(1)
            top2 = s_all.topk(2, dim=1).values
            target = torch.where(y > 0, logits.argmax(1), logits.argmin(1))
        row["flip"] = float((a != prev).double().mean())
        prev = a
        row.update(assignment_stats(a, c, task.K))
        row["gap"] = float((top2[:, 0] - top2[:, 1]).median())
        row["target"] = float((target == a).double().mean())
        own = logits.gather(1, a[:, None])[:, 0]
        others = logits.abs().scatter(1, a[:, None], -1.0).amax(1)
        row["own"], row["other"] = float(own.abs().median()), float(others.median())
        row["dev"] = accuracy(model, *task.splits["dev"])
        rows.append(row)
    return rows


def format_trace(mode: str, rows: Sequence[Mapping[str, float]], every: int = 1) -> list[str]:
    """Markdown table rows ``| mode | epoch | ... |`` for every ``every``-th epoch and the last."""
    out = []
    for i, r in enumerate(rows, start=1):
        if i % every and i != len(rows) and i != 1:
            continue
        cells = [
            f"{r['grad']:.3g}",
            *(f"{r[k]:.2f}" for k in ("raises", "rule", "moved", "flip", "H")),
            f"{r['distinct']:.0f}",
            f"{r['purity']:.2f}",
            f"{r['gap']:.3g}",
            f"{r['target']:.2f}",
            f"{r['own']:.2f}",
            f"{r['other']:.2f}",
            f"{100 * r['dev']:.1f}",
        ]
        out.append(f"| {mode} | {i} | " + " | ".join(cells) + " |")
    return out


def _option(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    if value == "None":
        return key, None
    try:
        v: Any = float(value)
    except ValueError:
        v = value
    return key, v


def main(argv: Sequence[str] | None = None) -> int:
    """Print the trace table of every ``--modes`` estimator."""
    p = argparse.ArgumentParser(prog="python -m spigot.experiments.estimators_diagnosis")
    p.add_argument("--modes", nargs="+", default=["ste", "spigot", "spigot-ce", "marginals"])
    p.add_argument("--lr", type=float, default=3e-2)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch", type=int, default=BATCH)
    p.add_argument("--reduction", choices=("sum", "mean"), default="sum")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--every", type=int, default=1, help="print every N-th epoch (and the last)")
    p.add_argument("--option", type=_option, action="append", default=[], metavar="KEY=VALUE")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    task = make_task()
    print(
        f"lr {args.lr:g}, batch {args.batch}, loss {args.reduction} over the batch, "
        f"seed {args.seed}, options {dict(args.option) or 'default'}"
    )
    print()
    print("| mode | epoch | " + " | ".join(COLUMNS) + " |")
    print("|---|---|" + "---|" * len(COLUMNS))
    for mode in args.modes:
        rows = trace(
            task,
            mode,
            lr=args.lr,
            epochs=args.epochs,
            batch=args.batch,
            seed=args.seed,
            reduction=args.reduction,
            options=dict(args.option),
        )
        for line in format_trace(mode, rows, args.every):
            print(line, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


__all__ = ["COLUMNS", "assignment_stats", "format_trace", "main", "trace"]
