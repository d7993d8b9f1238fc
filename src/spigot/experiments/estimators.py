"""``spigot experiment estimators``: every registered estimator on one latent-structure task.

The synthetic latent-cluster task of Mihaylova, Niculae & Martins (2020, section 5): a point
``x = centre[c] + 0.1 noise`` in 100 dimensions belongs to one of ``K = 10`` clusters ``c``;
its label is ``y = [w_c · x > b_c]``, so the right linear classifier depends on the cluster,
which is never observed. The model scores the clusters (``s = A x + a``), makes a hard choice
``z = structured_argmax(s, Categorical(), estimator=...)`` and applies the chosen linear
classifier: ``logit = sum_k z_k (W_k · x + v_k)``; binary cross-entropy, **summed** over the
examples of a batch, so the gradient each estimator receives for an example is that example's
own ``dL/dz`` (as in Peng et al.'s code, and as SPIGOT's step rule ``min(1, 1/||g||)`` and the
step options ``eta``, ``gamma``, ``lam`` assume). Adam is invariant to the scale of the loss up
to floating point, so for every estimator whose backward is linear in ``dL/dz`` this trains as
the batch mean did; for the others the mean made every step option 64 times smaller than its
value (``docs/estimators.md``).

The same tuning budget for every estimator (:func:`grid`): the learning rate in
:data:`GRID_LRS` times, for an estimator with a step or temperature option
(:data:`OPTION_GRID`), three values of that option (its default, ten times less and ten times more):
9 configurations; an estimator without one (and the controls) gets the 3 learning rates. Each
configuration trains every seed; :func:`select` keeps, per mode, the configuration with the
best dev accuracy averaged over the seeds (each run's dev accuracy is that of its best epoch),
and only that configuration's test accuracy enters the table.

Controls: ``none`` (one linear classifier, no cluster: the floor) and ``gold`` (the true
cluster one-hot instead of ``z``: the ceiling). 5,000 / 1,000 / 1,000 points from a fixed data
seed; model seeds vary. Writes ``results.md``, ``results.csv`` (every run of the grid, the
selected ones flagged) and ``accuracy.png``.

    spigot experiment estimators [--modes spigot ste ...] [--seeds 0 1 2] [--out DIR]
        [--jobs N] [--no-grid] [--set epochs=30 batch=64 lrs=0.003,0.01,0.03]

``--no-grid``: every estimator's default options at one learning rate (3e-2, or the first of
``lrs``), no tuning: the protocol of the table before the grid, with the summed loss.
"""

from __future__ import annotations

import csv
import math
import multiprocessing as mp
import statistics
import time
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

import spigot

CONTROLS = ("none", "gold")

#: The learning rates of the grid (Adam), the same for every mode.
GRID_LRS: tuple[float, ...] = (3e-3, 1e-2, 3e-2)

#: Each estimator's step or temperature option and its three grid values: its default first
#: (so that a tie keeps the default), then ten times less and more; SPIGOT's default ``None``
#: is the rule ``eta = min(1, 1/||g||)``. ``ste``'s ``gamma`` only rescales the scorer's
#: gradient, which Adam undoes: its three values train the same model up to floating point
#: (kept so that every estimator with an option gets the same number of configurations).
OPTION_GRID: dict[str, tuple[str, tuple[Any, ...]]] = {
    "ste": ("gamma", (1.0, 0.1, 10.0)),
    "spigot": ("eta", (None, 0.1, 10.0)),
    "spigot-ce": ("gamma", (1.0, 0.1, 10.0)),
    "spigot-eg": ("gamma", (1.0, 0.1, 10.0)),
    "perturbed": ("sigma", (1.0, 0.1, 10.0)),
    "imle": ("lam", (1.0, 0.1, 10.0)),
    "blackbox": ("lam", (1.0, 0.1, 10.0)),
}

#: Training defaults (``--set KEY=VALUE`` overrides them).
EPOCHS = 30
BATCH = 64
NO_GRID_LR = 3e-2


@dataclass(frozen=True)
class Config:
    """One configuration of a mode: the learning rate and at most one estimator option."""

    mode: str
    lr: float
    option: str | None = None
    value: Any = None

    @property
    def options(self) -> dict[str, Any]:
        """The keyword options for :func:`spigot.structured_argmax`."""
        return {} if self.option is None else {self.option: self.value}

    @property
    def label(self) -> str:
        """E.g. ``"lr 0.01"`` or ``"lr 0.01, eta rule"``."""
        out = f"lr {self.lr:g}"
        if self.option is not None:
            out += f", {self.option} {_fmt(self.value)}"
        return out


def _fmt(value: Any) -> str:
    return "rule" if value is None else f"{value:g}"


OptionGrid = Mapping[str, tuple[str, tuple[Any, ...]]]


def grid(
    mode: str, lrs: Sequence[float] = GRID_LRS, option_grid: OptionGrid = OPTION_GRID
) -> list[Config]:
    """Every configuration of ``mode``: each learning rate times its option values, if any."""
    option, values = option_grid.get(mode, (None, (None,)))
    return [Config(mode, float(lr), option, v) for lr in lrs for v in values]


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
    """Cluster scorer + one linear classifier per cluster (``mode`` an estimator or a control).

    ``options`` are the estimator's options (:func:`spigot.structured_argmax`).
    """

    def __init__(
        self, dim: int, K: int, mode: str, options: Mapping[str, Any] | None = None
    ) -> None:
        super().__init__()
        self.mode = mode
        self.options = dict(options or {})
        self.scorer = nn.Linear(dim, K)
        self.classifiers = nn.Linear(dim, 1 if mode == "none" else K)
        self.structure = spigot.Categorical()

    def choose(self, x: Tensor, c: Tensor) -> Tensor:
        """``z [N, K]``: the gold one-hot, the estimator's output (training) or the argmax."""
        if self.mode == "gold":
            return torch.nn.functional.one_hot(c, self.classifiers.out_features).to(x.dtype)
        s = self.scorer(x)
        if self.training:
            return spigot.structured_argmax(s, self.structure, estimator=self.mode, **self.options)
        return self.structure.argmax(s)  # evaluation always decodes the hard argmax

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        logits = self.classifiers(x)  # [N, K]
        if self.mode == "none":
            return logits[:, 0]
        return (self.choose(x, c) * logits).sum(1)


def train_one(
    task: ClusterTask,
    mode: str,
    seed: int,
    epochs: int = EPOCHS,
    batch: int = BATCH,
    lr: float = NO_GRID_LR,
    options: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Train one run (loss summed over each batch); the epoch with the best dev accuracy is
    evaluated on test. Returns ``{mode, seed, dev, test, epoch, seconds}``."""
    torch.manual_seed(seed)
    x, y, c = task.splits["train"]
    model = ClusterModel(x.shape[1], task.K, mode, options)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    best: dict[str, Any] = {"dev": -1.0}
    t0 = time.perf_counter()
    for epoch in range(1, epochs + 1):
        model.train()
        for idx in torch.randperm(len(y)).split(batch):
            logit = model(x[idx], c[idx])
            loss = nn.functional.binary_cross_entropy_with_logits(logit, y[idx], reduction="sum")
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
    """Accuracy of the hard-decision model on one split."""
    model.eval()
    return float(((model(x, c) > 0).float() == y).float().mean())


# -- the grid ---------------------------------------------------------------------------------
@dataclass
class GridResult:
    """Every run of the grid and the configuration selected per mode."""

    runs: list[dict[str, Any]]
    selected: dict[str, Config] = field(default_factory=dict)


def _run_job(job: tuple[Config, int, int, int]) -> dict[str, Any]:
    """One run in a worker: ``(config, seed, epochs, batch)`` -> its result row."""
    cfg, seed, epochs, batch = job
    torch.set_num_threads(1)
    r = train_one(make_task(), cfg.mode, seed, epochs, batch, cfg.lr, cfg.options)
    return {**_config_columns(cfg), **r}


def _config_columns(cfg: Config) -> dict[str, Any]:
    return {
        "mode": cfg.mode,
        "lr": cfg.lr,
        "option": cfg.option or "",
        "value": "" if cfg.option is None else _fmt(cfg.value),
    }


def mean_dev(runs: Iterable[Mapping[str, Any]]) -> float:
    """Mean dev accuracy of ``runs`` (one per seed)."""
    return statistics.mean(float(r["dev"]) for r in runs)


def select(
    configs: Sequence[Config], runs_of: Mapping[Config, Sequence[Mapping[str, Any]]]
) -> Config:
    """The configuration with the best mean dev accuracy over its seeds (ties: the first in
    ``configs`` order). Test accuracies play no part."""
    best, best_dev = configs[0], -math.inf
    for cfg in configs:
        d = mean_dev(runs_of[cfg])
        if d > best_dev:
            best, best_dev = cfg, d
    return best


def run_grid(
    modes: Sequence[str],
    seeds: Sequence[int],
    *,
    lrs: Sequence[float] = GRID_LRS,
    option_grid: OptionGrid = OPTION_GRID,
    epochs: int = EPOCHS,
    batch: int = BATCH,
    jobs: int = 1,
    log: Any = print,
) -> GridResult:
    """Train every configuration of :func:`grid` for every mode and seed; select per mode.

    With ``jobs > 1`` the runs go to ``jobs`` spawned worker processes (one torch thread each;
    the same results), which know the estimators that ``import spigot`` registers.
    """
    plan = {m: grid(m, lrs, option_grid) for m in modes}
    jobs_list = [(cfg, s, epochs, batch) for m in modes for cfg in plan[m] for s in seeds]
    rows: list[dict[str, Any]] = []
    if jobs > 1:
        ctx = mp.get_context("spawn")
        with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
            for job, r in zip(jobs_list, pool.map(_run_job, jobs_list), strict=True):
                rows.append(r)
                _log_run(log, job[0], r)
    else:
        torch.set_num_threads(1)
        task = make_task()
        for cfg, s, ep, b in jobs_list:
            r = {**_config_columns(cfg), **train_one(task, cfg.mode, s, ep, b, cfg.lr, cfg.options)}
            rows.append(r)
            _log_run(log, cfg, r)
    result = GridResult(rows)
    for m in modes:
        runs_of = {cfg: [r for r in rows if _matches(r, cfg)] for cfg in plan[m]}
        result.selected[m] = select(plan[m], runs_of)
    for r in rows:
        r["selected"] = int(_matches(r, result.selected[r["mode"]]))
    return result


def _matches(row: Mapping[str, Any], cfg: Config) -> bool:
    return all(row[k] == v for k, v in _config_columns(cfg).items())


def _log_run(log: Any, cfg: Config, r: Mapping[str, Any]) -> None:
    log(
        f"{cfg.mode:14s} {cfg.label:22s} seed {r['seed']}: dev {100 * r['dev']:.1f}  "
        f"test {100 * r['test']:.1f}  ({r['seconds']:.1f} s)"
    )


# -- tables -----------------------------------------------------------------------------------
def _ms(runs: Sequence[Mapping[str, Any]], key: str) -> tuple[float, float]:
    v = [100 * float(r[key]) for r in runs]
    return statistics.mean(v), statistics.stdev(v) if len(v) > 1 else 0.0


def format_tables(
    result: GridResult,
    modes: Sequence[str],
    seeds: Sequence[int],
    *,
    lrs: Sequence[float],
    option_grid: OptionGrid = OPTION_GRID,
    epochs: int,
    batch: int,
) -> str:
    """``results.md``: the selected configuration per mode, then mean dev of every grid point."""
    n_cfg = {m: len(grid(m, lrs, option_grid)) for m in modes}
    counts = sorted(set(n_cfg.values()))
    steps = epochs * math.ceil(5000 / batch)
    if max(counts) > 1 or len(lrs) > 1:
        protocol = (
            f"per mode the configuration with the best mean dev accuracy among "
            f"{' or '.join(map(str, counts))} (learning rate in "
            f"{', '.join(f'{lr:g}' for lr in lrs)}, times 3 values of the estimator's step or "
            f"temperature option where it has one); mean ± sd accuracy (%) of that configuration."
        )
    else:
        protocol = (
            f"every estimator with its default options at the learning rate {lrs[0]:g} (no "
            f"tuning); mean ± sd accuracy (%)."
        )
    lines = [
        f"Latent-cluster task (K = 10, 100 dimensions, 5,000 / 1,000 / 1,000), seeds "
        f"{list(seeds)}, {epochs} epochs of Adam ({steps} steps: batches of {batch}, loss summed "
        f"over the batch), best dev epoch; {protocol}",
        "",
        "| mode | selected | configs | dev | test | s/run |",
        "|---|---|---|---|---|---|",
    ]
    for m in modes:
        cfg = result.selected[m]
        runs = [r for r in result.runs if _matches(r, cfg)]
        (dm, ds), (tm, ts) = _ms(runs, "dev"), _ms(runs, "test")
        secs = statistics.mean(float(r["seconds"]) for r in runs)
        lines.append(
            f"| {m} | {cfg.label} | {n_cfg[m]} | {dm:.1f} ± {ds:.1f} | {tm:.1f} ± {ts:.1f} | "
            f"{secs:.1f} |"
        )
    if max(counts) > 1:
        note = (
            "Mean dev accuracy (%) of every configuration, one column per learning rate, the "
            "option's values in the order of the `option` column; the selected one in bold:"
        )
        lines += ["", note, ""]
        lines += [
            "| mode | option | " + " | ".join(f"lr {lr:g}" for lr in lrs) + " |",
            "|---|---|" + "---|" * len(lrs),
        ]
        for m in modes:
            option, values = option_grid.get(m, (None, (None,)))
            cells = []
            for lr in lrs:
                parts = []
                for v in values:
                    cfg = Config(m, float(lr), option, v)
                    d = 100 * mean_dev(r for r in result.runs if _matches(r, cfg))
                    parts.append(f"**{d:.1f}**" if cfg == result.selected[m] else f"{d:.1f}")
                cells.append(" / ".join(parts))
            opt = "-" if option is None else f"{option} " + " / ".join(_fmt(v) for v in values)
            lines.append(f"| {m} | {opt} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# -- the command ------------------------------------------------------------------------------
_SETTABLE = {"epochs": int, "batch": int, "lrs": str}


def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    """``["epochs=10", "lrs=0.003,0.01"]`` -> ``{"epochs": 10, "lrs": (0.003, 0.01)}``."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or key not in _SETTABLE:
            raise SystemExit(
                f"--set {item!r}: the estimators experiment takes "
                f"{', '.join(f'{k}=...' for k in _SETTABLE)}"
            )
        try:
            if key == "lrs":
                lrs = tuple(float(v) for v in value.split(",") if v)
                if not lrs or any(not (math.isfinite(v) and v > 0) for v in lrs):
                    raise ValueError
                out[key] = lrs
            else:
                out[key] = int(value)
                if out[key] < 1:
                    raise ValueError
        except ValueError:
            raise SystemExit(f"--set {item!r}: not a valid {key}") from None
    return out


def main(args: Any) -> int:
    """``spigot experiment estimators`` (arguments: ``modes``, ``seeds``, ``out``, ``jobs``,
    ``no_grid``, ``set``; see the module doc)."""
    modes = list(args.modes) if args.modes else [*CONTROLS, *spigot.ESTIMATORS]
    unknown = [m for m in modes if m not in spigot.ESTIMATORS and m not in CONTROLS]
    if unknown:
        known = ", ".join([*CONTROLS, *spigot.ESTIMATORS])
        raise SystemExit(f"unknown modes {unknown}; choose from {known}")
    seeds = list(args.seeds) if args.seeds else [0, 1, 2]
    sets = parse_overrides(getattr(args, "set", None) or [])
    epochs, batch = sets.get("epochs", EPOCHS), sets.get("batch", BATCH)
    if getattr(args, "no_grid", False):  # every estimator's defaults, one learning rate
        lrs: tuple[float, ...] = sets.get("lrs", (NO_GRID_LR,))[:1]
        option_grid: OptionGrid = {}
    else:
        lrs, option_grid = sets.get("lrs", GRID_LRS), OPTION_GRID
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    protocol = {"lrs": lrs, "option_grid": option_grid, "epochs": epochs, "batch": batch}
    jobs = max(1, int(getattr(args, "jobs", 1) or 1))
    result = run_grid(modes, seeds, jobs=jobs, **protocol)
    table = format_tables(result, modes, seeds, **protocol)
    with open(out / "results.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(result.runs[0]))
        w.writeheader()
        w.writerows(result.runs)
    (out / "results.md").write_text(table + "\n")
    print(table)
    _plot([r for r in result.runs if r["selected"]], modes, out / "accuracy.png")
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
    ax.set_title("latent-cluster task, selected configuration: one point per seed")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
