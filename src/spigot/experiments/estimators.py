"""``spigot experiment estimators``: every registered estimator on one latent-structure task.

The synthetic latent-cluster task of Mihaylova, Niculae & Martins (2020, section 5): a point
``x = centre[c] + 0.1 noise`` in 100 dimensions belongs to one of ``K = 10`` clusters ``c``;
its label is ``y = [w_c · x > b_c]``, so the right linear classifier depends on the cluster,
which is never observed. The model scores the clusters (``s = A x + a``), makes a hard choice
``z = structured_argmax(s, Categorical(), estimator=...)`` and applies the chosen linear
classifier: ``logit = sum_k z_k (W_k · x + v_k)``; binary cross-entropy. Only the estimator
differs between runs; every one uses its default options (the same tuning budget: none).

Controls: ``none`` (one linear classifier, no cluster: the floor) and ``gold`` (the true
cluster one-hot instead of ``z``: the ceiling). 5,000 / 1,000 / 1,000 points from a fixed data
seed; model seeds vary. Writes ``results.md``, ``results.csv`` and ``accuracy.png``.

    spigot experiment estimators [--modes spigot ste ...] [--seeds 0 1 2] [--out DIR]
"""

from __future__ import annotations

import csv
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

import spigot

CONTROLS = ("none", "gold")


@dataclass(frozen=True)
class ClusterTask:
    """The data: ``x [N, D]``, ``y [N]`` (0/1 floats), ``c [N]`` (cluster ids) per split."""

    splits: dict[str, tuple[Tensor, Tensor, Tensor]]
    K: int


def make_task(
    K: int = 10, dim: int = 100, sizes: tuple[int, int, int] = (5000, 1000, 1000), seed: int = 0
) -> ClusterTask:
    """Generate the latent-cluster data (Mihaylova et al. 2020) from ``seed``."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(K, dim, generator=g)
    w = torch.randn(K, dim, generator=g)
    b = (w * centres).sum(1)  # each cluster's boundary passes through its centre
    splits = {}
    for name, n in zip(("train", "dev", "test"), sizes, strict=True):
        c = torch.randint(0, K, (n,), generator=g)
        x = centres[c] + 0.1 * torch.randn(n, dim, generator=g)
        y = ((w[c] * x).sum(1) > b[c]).float()
        splits[name] = (x, y, c)
    return ClusterTask(splits, K)


class ClusterModel(nn.Module):
    """Cluster scorer + one linear classifier per cluster (``mode`` an estimator or a control)."""

    def __init__(self, dim: int, K: int, mode: str) -> None:
        super().__init__()
        self.mode = mode
        self.scorer = nn.Linear(dim, K)
        self.classifiers = nn.Linear(dim, 1 if mode == "none" else K)
        self.structure = spigot.Categorical()

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        logits = self.classifiers(x)  # [N, K]
        if self.mode == "none":
            return logits[:, 0]
        if self.mode == "gold":
            z = torch.nn.functional.one_hot(c, logits.shape[1]).to(x.dtype)
        elif self.training:
            z = spigot.structured_argmax(self.scorer(x), self.structure, estimator=self.mode)
        else:  # evaluation always decodes the hard argmax
            z = self.structure.argmax(self.scorer(x))
        return (z * logits).sum(1)


def train_one(
    task: ClusterTask, mode: str, seed: int, epochs: int = 30, batch: int = 64, lr: float = 3e-2
) -> dict[str, Any]:
    """Train one run; the epoch with the best dev accuracy is evaluated on test."""
    torch.manual_seed(seed)
    x, y, c = task.splits["train"]
    model = ClusterModel(x.shape[1], task.K, mode)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    best: dict[str, Any] = {"dev": -1.0}
    t0 = time.perf_counter()
    for epoch in range(1, epochs + 1):
        model.train()
        for idx in torch.randperm(len(y)).split(batch):
            logit = model(x[idx], c[idx])
            loss = nn.functional.binary_cross_entropy_with_logits(logit, y[idx])
            opt.zero_grad()
            if loss.requires_grad:
                loss.backward()
                opt.step()
        acc = {k: accuracy(model, *task.splits[k]) for k in ("dev", "test")}
        if acc["dev"] > best["dev"]:
            best = {**acc, "epoch": epoch}
    best["seconds"] = time.perf_counter() - t0
    return {"mode": mode, "seed": seed, **best}


@torch.no_grad()
def accuracy(model: ClusterModel, x: Tensor, y: Tensor, c: Tensor) -> float:
    model.eval()
    return float(((model(x, c) > 0).float() == y).float().mean())


def _row(mode: str, runs: list[dict[str, Any]]) -> dict[str, Any]:
    def ms(key: str) -> tuple[float, float]:
        v = [100 * r[key] for r in runs]
        return statistics.mean(v), statistics.stdev(v) if len(v) > 1 else 0.0

    (dm, ds), (tm, ts) = ms("dev"), ms("test")
    secs = statistics.mean(r["seconds"] for r in runs)
    return {"mode": mode, "dev": dm, "dev_sd": ds, "test": tm, "test_sd": ts, "seconds": secs}


def main(args: Any) -> int:
    modes = list(args.modes) if args.modes else [*CONTROLS, *spigot.ESTIMATORS]
    unknown = [m for m in modes if m not in spigot.ESTIMATORS and m not in CONTROLS]
    if unknown:
        known = ", ".join([*CONTROLS, *spigot.ESTIMATORS])
        raise SystemExit(f"unknown modes {unknown}; choose from {known}")
    seeds = list(args.seeds) if args.seeds else [0, 1, 2]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    task = make_task()
    runs: list[dict[str, Any]] = []
    for mode in modes:
        for seed in seeds:
            r = train_one(task, mode, seed)
            runs.append(r)
            print(f"{mode:14s} seed {seed}: dev {100 * r['dev']:.1f}  test {100 * r['test']:.1f}")
    rows = [_row(m, [r for r in runs if r["mode"] == m]) for m in modes]
    with open(out / "results.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(runs[0]))
        w.writeheader()
        w.writerows(runs)
    lines = [
        f"Latent-cluster task (K = 10, 100 dimensions, 5,000 / 1,000 / 1,000), seeds {seeds}, "
        "30 epochs of Adam (lr 3e-2, batches of 64), best dev epoch; mean ± sd accuracy (%).",
        "",
        "| mode | dev | test | s/run |",
        "|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['mode']} | {r['dev']:.1f} ± {r['dev_sd']:.1f} | {r['test']:.1f} ± "
            f"{r['test_sd']:.1f} | {r['seconds']:.1f} |"
        )
    table = "\n".join(lines)
    (out / "results.md").write_text(table + "\n")
    print(table)
    _plot(runs, modes, out / "accuracy.png")
    return 0


def _plot(runs: list[dict[str, Any]], modes: list[str], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # the nlp extra brings matplotlib
        print("(matplotlib not installed: no plot)")
        return
    fig, ax = plt.subplots(figsize=(8, 3.5))
    for i, m in enumerate(modes):
        acc = [100 * r["test"] for r in runs if r["mode"] == m]
        ax.scatter([i] * len(acc), acc, s=18)
    ax.set_xticks(range(len(modes)), modes, rotation=45, ha="right")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("latent-cluster task: one point per seed")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
