"""``spigot experiment syn2sem``: every training mode over several seeds, one results table.

Each (mode, seed) run trains a :class:`~spigot.pipelines.syn2sem.task.Syn2SemTask` in
``OUT/<mode>/seed<seed>/`` (config, JSONL log, best checkpoint, results, per-sentence scores);
a mode with a ``train.eta`` grid has one directory per value, ``OUT/<mode>-eta<eta>/``, and the
value with the best mean dev LF is its row (:mod:`spigot.experiments.plan`, which also reads
the modes, seeds and grids from a config's ``[experiment]`` table). The experiment then
writes ``OUT/results.md`` and ``OUT/results.csv`` (mean ± sd over seeds of dev/test labeled F1
and UAS, seconds per training epoch and training sentences per second, per mode),
``OUT/runs.csv`` (one row per run), ``OUT/learning_curve.png`` (dev labeled F1 and UAS per
epoch, mean over seeds), ``OUT/scores.png`` (dev and test LF per mode) and
``OUT/experiment.json``, and prints the table.

Runs go to ``jobs`` worker processes (default: 2, one torch thread each); results do not
depend on ``jobs``.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from spigot.config import apply_overrides, config_from_dict, load_config
from spigot.experiments import report
from spigot.experiments.grid import run_grid
from spigot.experiments.plan import (
    DEFAULT_MODES,
    DEFAULT_SEEDS,
    ExperimentPlan,
    format_grid,
    read_plan,
    select,
)
from spigot.experiments.plots import plot_curves
from spigot.experiments.report import Column, get_number
from spigot.experiments.runner import (
    cell,
    get,
    mean_sd,
    plural,
    slurm_params,
    to_csv,
)
from spigot.pipelines.syn2sem.config import Syn2SemConfig

__all__ = [
    "DEFAULT_MODES",
    "QUICK_SYNTHETIC",
    "format_table",
    "plot_curves",
    "quick_config",
    "run_experiment",
    "summarize",
]

logger = logging.getLogger("spigot")

QUICK_SYNTHETIC: dict[str, Any] = {
    "data.source": "synthetic",
    "data.synthetic_train": 1000,
    "data.synthetic_dev": 200,
    "data.synthetic_test": 200,
    "data.synthetic_max_len": 25,
    "data.batch_size": 16,
    "model.word_dim": 50,
    "model.pos_dim": 25,
    "model.lstm_hidden": 64,
    "model.lstm_layers": 1,
    "model.mlp_dim": 64,
    "model.label_mlp_dim": 32,
    "model.coupling_dim": 32,
    "train.epochs": 8,
    "train.lr": 2e-3,
    "train.threads": 1,
}
"""The small synthetic configuration (``configs/syn2sem_synthetic.toml`` holds the same
values): what ``spigot experiment syn2sem`` runs without ``--config``."""


def quick_config() -> Syn2SemConfig:
    """The dataclass defaults with :data:`QUICK_SYNTHETIC` applied."""
    return apply_overrides(Syn2SemConfig(), QUICK_SYNTHETIC)


COLUMNS = (
    Column("dev_lf", "dev LF", lambda r: get(r, "dev", "lf")),
    Column("test_lf", "test LF", lambda r: get(r, "test", "lf")),
    Column("dev_uas", "dev UAS", lambda r: get(r, "dev", "uas")),
    Column("test_uas", "test UAS", lambda r: get(r, "test", "uas")),
    Column("sec_per_epoch", "s/epoch", lambda r: r["seconds_per_epoch"], 1.0, 2),
    Column(
        "cpu_per_epoch", "CPU s/epoch", lambda r: get_number(r, "cpu_seconds_per_epoch"), 1.0, 2
    ),
    Column("sent_per_sec", "sent/s", lambda r: r["sentences_per_second"], 1.0, 0),
)
"""The results table's columns (scores in %, mean ± sd over seeds)."""


def summarize(results: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """One row per mode: ``n_seeds`` and ``<column>_mean``/``<column>_sd`` for every column."""
    return report.summarize(results, COLUMNS)


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """The Markdown table (scores in %, mean ± sd over seeds)."""
    return report.format_table(rows, COLUMNS)


def _expected_epochs(cfg: dict[str, Any]) -> int:
    """Training epochs a run will do at most (fewer if it stops early)."""
    c = config_from_dict(cfg, Syn2SemConfig)
    return c.syntactic_epochs() + c.train.epochs


def run_experiment(
    config: Syn2SemConfig,
    *,
    seeds: Sequence[int] = DEFAULT_SEEDS,
    modes: Sequence[str] = DEFAULT_MODES,
    mode_seeds: dict[str, int] | None = None,
    eta_grid: dict[str, Sequence[float]] | None = None,
    out_dir: str | os.PathLike = "runs/syn2sem",
    jobs: int = 2,
    progress: bool = True,
    share_pretraining: bool = True,
    reuse: bool = True,
    executor: str = "local",
    slurm: dict[str, Any] | None = None,
    status_only: bool = False,
) -> dict[str, Any]:
    """Train every mode with every seed; write and return the summary (see module doc).

    With ``train.pretrain_epochs = P > 0`` and ``share_pretraining``, the syntactic parser of
    each seed is pre-trained once, for ``P`` epochs (at most ``P`` with
    ``train.pretrain_patience``: early stopping on dev UAS, the best epoch kept), in
    ``OUT/pretrain/seed<seed>/``; every mode of that seed but ``none`` then starts from that
    parser (``train.init_syntax``): ``pipeline`` freezes it, the joint modes (``joint``,
    ``ste``, ``spigot``, ``marginals``, ``gold``) fine-tune it. The modes of one seed thus
    differ only in what happens after pre-training, and pre-training is paid once per seed
    instead of once per run. ``reuse`` keeps the results of any run directory that already
    finished with the same configuration and resumes any run interrupted in the middle (from
    its ``last.pt``), so an interrupted experiment continues where it stopped.

    ``mode_seeds`` gives modes that run only the first ``N`` seeds; ``eta_grid`` gives modes
    (``ste``, ``spigot``) trained once per ``train.eta`` value, of which the variant with the
    best mean dev LF is the mode's row (:mod:`spigot.experiments.plan`).
    """
    plan = ExperimentPlan(
        tuple(modes),
        tuple(seeds),
        dict(mode_seeds or {}),
        {m: tuple(float(v) for v in g) for m, g in (eta_grid or {}).items() if m in modes},
    ).validate()
    variants = plan.variants()
    out = Path(out_dir)
    pretrain = share_pretraining and config.train.pretrain_epochs > 0
    grid = run_grid(
        config,
        plan,
        out,
        pretrain=pretrain,
        uses_pretraining=lambda mode: mode != "none",
        init_key="train.init_syntax",
        init_file="syntax.pt",
        expected_epochs=_expected_epochs,
        jobs=jobs,
        progress=progress,
        reuse=reuse,
        executor=executor,
        slurm=slurm,
        status_only=status_only,
    )
    if isinstance(grid, str):  # what a run of the experiment would do, and nothing else
        return {"status": grid}
    jobs_plan, done, results, wall = grid.jobs_plan, grid.done, grid.results, grid.wall_seconds
    pre_seeds = [key[1] for key, *_ in jobs_plan if key[0] == "pretrain"]
    chosen = select(variants, results)
    all_rows = summarize(results)
    by_label = {r["mode"]: r for r in all_rows}
    rows = [by_label[chosen[m].label] for m in plan.modes]
    table = format_table(rows)
    by_mode = {m: by_label[chosen[m].label] for m in plan.modes}
    notes = []
    if "gold" in by_mode and "none" in by_mode:
        for split in ("dev", "test"):
            g, n = by_mode["gold"][f"{split}_lf_mean"], by_mode["none"][f"{split}_lf_mean"]
            notes.append(f"gold - none ({split} LF): {g - n:+.1f} points")
    n_seeds = "/".join(sorted({str(len(plan.seeds_of(m))) for m in plan.modes}, key=int))
    header = (
        f"# syn2sem: {len(modes)} modes x {n_seeds} seeds (seeds {', '.join(map(str, seeds))})"
        f", {len(jobs_plan)} runs, {wall / 60:.1f} min wall time, {jobs} job(s)\n\n"
        "LF = SDP labeled F1 (tops included), UAS = unlabeled attachment; % , mean ± sd over "
        "seeds; best epoch by dev LF. s/epoch and sent/s: training only.\n\n"
    )
    grid_rows = [by_label[v.label] for v in variants if v.mode in plan.eta_grid]
    if grid_rows:
        picked = [chosen[m].label for m in plan.eta_grid]
        notes.append(
            "train.eta chosen on mean dev LF over seeds: "
            + ", ".join(picked)
            + "\n\n"
            + format_grid(grid_rows, picked).rstrip("\n")
        )
    if pretrain:
        pre = [done[("pretrain", seed)] for seed in pre_seeds]
        uas_m, uas_sd = mean_sd([get(r, "dev", "uas") for r in pre])
        sec_m, _ = mean_sd([r["seconds_per_epoch"] for r in pre])
        epochs = plural(config.train.pretrain_epochs, "epoch")
        if config.train.pretrain_patience:
            stages = [r.get("syntax_stage") or {} for r in pre]
            ran = ", ".join(str(st.get("epochs_run", "?")) for st in stages)
            best = ", ".join(str(st.get("best_epoch", "?")) for st in stages)
            epochs = (
                f"up to {epochs} with early stopping on dev UAS (patience "
                f"{config.train.pretrain_patience}; epochs run per seed: {ran}; best: {best})"
            )
        notes.append(
            f"syntactic pre-training, shared by the modes of each seed: {epochs} at "
            f"{sec_m:.1f} s/epoch, dev UAS {cell(100 * uas_m, 100 * uas_sd, 1)} (not included "
            "in the modes' s/epoch)"
        )
    md = header + table + ("\n" + "\n".join(f"- {n}" for n in notes) + "\n" if notes else "")
    (out / "results.md").write_text(md, encoding="utf-8")
    (out / "results.csv").write_text(to_csv(rows), encoding="utf-8")
    chosen_labels = {v.label for v in chosen.values()}
    run_rows = [
        {
            "mode": r["mode"],
            "variant": label,
            "selected": label in chosen_labels,
            "seed": r["seed"],
            "best_epoch": r["best_epoch"],
            "dev_lf": get(r, "dev", "lf"),
            "test_lf": get(r, "test", "lf"),
            "dev_uas": get(r, "dev", "uas"),
            "test_uas": get(r, "test", "uas"),
            "sec_per_epoch": r["seconds_per_epoch"],
            "sent_per_sec": r["sentences_per_second"],
        }
        for label, label_runs in results.items()
        for r in label_runs
    ]
    (out / "runs.csv").write_text(to_csv(run_rows), encoding="utf-8")
    plotted = plot_curves(
        {m: results[v.label] for m, v in chosen.items()}, out / "learning_curve.png"
    )
    report.plot_scores(
        rows,
        COLUMNS[:2],
        out / "scores.png",
        title=f"syn2sem: {len(plan.modes)} modes, seeds {', '.join(map(str, seeds))}",
        reference={"none": "no tree", "gold": "gold tree"},
    )
    summary = {
        "modes": list(modes),
        "seeds": list(seeds),
        "mode_seeds": {m: list(plan.seeds_of(m)) for m in plan.modes},
        "eta_grid": {m: list(g) for m, g in plan.eta_grid.items()},
        "selected": {m: v.label for m, v in chosen.items()},
        "variants": all_rows,
        "jobs": jobs,
        "wall_seconds": wall,
        "rows": rows,
        "notes": notes,
        "config": config.to_dict(),
        "markdown": md,
        "plot": str(out / "learning_curve.png") if plotted else None,
    }
    (out / "experiment.json").write_text(
        json.dumps(summary, indent=2, default=str).replace("NaN", "null") + "\n",
        encoding="utf-8",
    )
    return summary


def main(args: Any) -> int:
    """Entry point of ``spigot experiment syn2sem`` (called by :mod:`spigot.cli`).

    The modes, seeds, per-mode seed counts and ``train.eta`` grid come from the config's
    ``[experiment]`` table (:mod:`spigot.experiments.plan`) if it has one; ``--modes`` and
    ``--seeds`` replace its modes and seeds, ``--no-grid`` drops its grid.
    """
    cfg = load_config(args.config, args.set or []) if args.config else quick_config()
    if not args.config and args.set:
        cfg = apply_overrides(cfg, args.set)
    plan = (read_plan(args.config) if args.config else None) or ExperimentPlan()
    progress = cfg.train.progress and not args.no_progress
    summary = run_experiment(
        cfg,
        seeds=args.seeds or plan.seeds,
        modes=args.modes or plan.modes,
        mode_seeds=plan.mode_seeds,
        eta_grid={} if getattr(args, "no_grid", False) else plan.eta_grid,
        out_dir=args.out,
        jobs=args.jobs,
        progress=progress,
        share_pretraining=not getattr(args, "separate_pretraining", False),
        reuse=not getattr(args, "rerun", False),
        executor=getattr(args, "executor", "local"),
        slurm=slurm_params(args, Path(args.out)),
        status_only=getattr(args, "status", False),
    )
    if "status" in summary:
        print(summary["status"], end="")
        return 0
    print(summary["markdown"], end="")
    print(
        f"\nwrote {Path(args.out) / 'results.md'}, results.csv, runs.csv, learning_curve.png, "
        "scores.png"
    )
    return 0
