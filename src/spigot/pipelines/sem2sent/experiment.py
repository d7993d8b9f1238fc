"""``spigot experiment sem2sent``: every mode of pipeline 2 over several seeds, one table.

Each seed's parser is pre-trained once (``OUT/pretrain/seed<seed>/parser.pt``, early stopping
on its dev labeled F1) and shared by that seed's modes (``train.init_parser``); each (mode,
seed) run then trains in ``OUT/<mode>/seed<seed>/`` (``OUT/<mode>-eta<eta>/`` for a point of a
``train.eta`` grid, chosen on mean dev accuracy). Runs are scheduled, reused and resumed by
:mod:`spigot.experiments.runner`. The experiment writes ``OUT/results.md`` (mean ± sd over
seeds of dev/test accuracy, the parser's dev LF before and after the sentiment stage, seconds
per epoch), ``OUT/scores.png`` (dev and test accuracy per mode), ``OUT/runs.csv`` and
``OUT/experiment.json``, and prints the table.
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
from spigot.experiments.plan import ExperimentPlan, read_plan, select
from spigot.experiments.report import Column, get_number
from spigot.experiments.runner import (
    cell,
    get,
    mean_sd,
    slurm_params,
    to_csv,
)
from spigot.pipelines.sem2sent.config import MODES, Sem2SentConfig
from spigot.training.state import EpochStats, stage_summary

__all__ = [
    "DEFAULT_MODES",
    "QUICK_SYNTHETIC",
    "format_table",
    "quick_config",
    "run_experiment",
    "summarize",
]

logger = logging.getLogger("spigot")

QUICK_SYNTHETIC: dict[str, Any] = {
    "data.source": "synthetic",
    "model.word_dim": 50,
    "model.parser_hidden": 64,
    "model.parser_layers": 1,
    "model.mlp_dim": 64,
    "model.label_mlp_dim": 32,
    "model.hidden": 64,
    "model.role_dim": 16,
    "model.feature_dim": 64,
    "model.classifier_mlp_dim": 64,
    "model.dropout": 0.2,
    "model.word_dropout": 0.1,
    "train.epochs": 30,
    "train.patience": 12,
    "train.pretrain_epochs": 15,
    "train.pretrain_patience": 3,
    "train.lr": 5e-3,
    "train.threads": 1,
}
"""The synthetic default (``configs/sem2sent_synthetic.toml`` holds the same values): what
``spigot experiment sem2sent`` runs without ``--config``."""


def quick_config() -> Sem2SentConfig:
    """The dataclass defaults with :data:`QUICK_SYNTHETIC` applied."""
    return apply_overrides(Sem2SentConfig(), QUICK_SYNTHETIC)


DEFAULT_MODES = ("bilstm", "gold", "pipeline", "joint", "ste", "marginals", "spigot")
DEFAULT_SEEDS = (0, 1, 2)


def _lf(res: dict[str, Any], key: str, metric: str = "lf") -> float:
    part = res.get(key) or {}
    v = part.get(metric)
    return float("nan") if v is None else float(v)


COLUMNS = (
    Column("dev_acc", "dev acc", lambda r: get(r, "dev", "acc")),
    Column("test_acc", "test acc", lambda r: get(r, "test", "acc")),
    Column("lf_before", "parser LF before", lambda r: _lf(r, "parser_dev_before")),
    Column("lf_after", "parser LF after", lambda r: _lf(r, "parser_dev_after")),
    Column(
        "rule_before",
        "rule on parser graph before",
        lambda r: _lf(r, "parser_dev_before", "rule_acc"),
    ),
    Column(
        "rule_after", "rule on parser graph after", lambda r: _lf(r, "parser_dev_after", "rule_acc")
    ),
    Column("sec_per_epoch", "s/epoch", lambda r: r["seconds_per_epoch"], 1.0, 2),
    Column(
        "cpu_per_epoch", "CPU s/epoch", lambda r: get_number(r, "cpu_seconds_per_epoch"), 1.0, 2
    ),
)
"""The results table's columns (scores in %, mean ± sd over seeds)."""


def _parser_stage(results: dict[str, Any], max_epochs: int) -> dict[str, Any]:
    """A pre-training run's ``parser_stage``; for runs written before it existed, the same
    summary from their per-epoch ``curve``."""
    if results.get("parser_stage"):
        return results["parser_stage"]
    history = [
        EpochStats(e["phase"], e["epoch"], e["loss"], 0.0, 0.0, 0, 0.0, metrics=e)
        for e in results.get("curve", [])
    ]
    return stage_summary(history, "parser", "lf", max_epochs)


def summarize(results: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """One row per variant: ``n_seeds`` and ``<column>_mean``/``<column>_sd``."""
    return report.summarize(results, COLUMNS)


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """The Markdown table (scores in %, mean ± sd over seeds)."""
    return report.format_table(rows, COLUMNS)


def _expected_epochs(cfg_dict: dict[str, Any]) -> int:
    c = config_from_dict(cfg_dict, Sem2SentConfig)
    pre = c.train.pretrain_epochs if c.uses_parser() and not c.train.init_parser else 0
    return pre + c.train.epochs


def run_experiment(
    config: Sem2SentConfig,
    *,
    seeds: Sequence[int] = DEFAULT_SEEDS,
    modes: Sequence[str] = DEFAULT_MODES,
    mode_seeds: dict[str, int] | None = None,
    eta_grid: dict[str, Sequence[float]] | None = None,
    out_dir: str | os.PathLike = "runs/sem2sent",
    jobs: int = 2,
    progress: bool = True,
    reuse: bool = True,
    executor: str = "local",
    slurm: dict[str, Any] | None = None,
    status_only: bool = False,
) -> dict[str, Any]:
    """Train every mode with every seed; write and return the summary (see module doc)."""
    plan = ExperimentPlan(
        tuple(modes),
        tuple(seeds),
        dict(mode_seeds or {}),
        {m: tuple(float(v) for v in g) for m, g in (eta_grid or {}).items() if m in modes},
        valid_modes=MODES,
    ).validate()
    variants = plan.variants()
    out = Path(out_dir)
    parsed = [m for m in plan.modes if m not in ("bilstm", "gold")]
    pretrain = config.train.pretrain_epochs > 0 and not config.train.init_parser and parsed
    grid = run_grid(
        config,
        plan,
        out,
        pretrain=bool(pretrain),
        uses_pretraining=lambda mode: mode in parsed,
        init_key="train.init_parser",
        init_file="parser.pt",
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
    chosen = select(variants, results, metric="acc")
    by_label = {r["mode"]: r for r in summarize(results)}
    rows = [by_label[chosen[m].label] for m in plan.modes]
    notes = []
    by_mode = {m: by_label[chosen[m].label] for m in plan.modes}
    if "gold" in by_mode and "bilstm" in by_mode:
        for split in ("dev", "test"):
            g, b = by_mode["gold"][f"{split}_acc_mean"], by_mode["bilstm"][f"{split}_acc_mean"]
            notes.append(f"gold - bilstm ({split} accuracy): {g - b:+.1f} points")
    if plan.eta_grid:
        notes.append(
            "train.eta chosen on mean dev accuracy: "
            + ", ".join(chosen[m].label for m in plan.eta_grid)
        )
    if pretrain:
        pre = [done[k] for k in sorted(done) if k[0] == "pretrain"]
        lf_m, lf_sd = mean_sd([_lf(r, "parser_dev_before") for r in pre])
        stages = [_parser_stage(r, config.train.pretrain_epochs) for r in pre]
        ran = ", ".join(str(st["epochs_run"]) for st in stages)
        best = ", ".join(str(st["best_epoch"]) for st in stages)
        notes.append(
            f"parser pre-training, shared by the modes of each seed: up to "
            f"{config.train.pretrain_epochs} epochs, early stopping on dev LF (patience "
            f"{config.train.pretrain_patience}; epochs run per seed: {ran}; best: {best}); dev "
            f"LF {cell(100 * lf_m, 100 * lf_sd, 1)}"
        )
    md = (
        f"# sem2sent: {len(plan.modes)} modes, seeds {', '.join(map(str, plan.seeds))}, "
        f"{len(jobs_plan)} runs, {wall / 60:.1f} min wall time, {jobs} job(s)\n\n"
        "acc = sentiment accuracy, % (mean ± sd over seeds; best epoch by dev accuracy); parser "
        "LF = the parser's labeled F1 on its dev graphs before and after the sentiment stage; "
        "rule on parser graph (synthetic data) = the task's label rule applied to the parser's "
        "graph of the dev sentences, the accuracy its graph allows (gold graph: 100).\n\n"
        + format_table(rows)
        + ("\n" + "\n".join(f"- {n}" for n in notes) + "\n" if notes else "")
    )
    (out / "results.md").write_text(md, encoding="utf-8")
    report.plot_scores(
        rows,
        COLUMNS[:2],
        out / "scores.png",
        title=f"sem2sent: {len(plan.modes)} modes, seeds {', '.join(map(str, plan.seeds))}",
        reference={"bilstm": "no graph", "gold": "gold graph"},
    )
    run_rows = [
        {
            "variant": label,
            "seed": r["seed"],
            "best_epoch": r["best_epoch"],
            "dev_acc": get(r, "dev", "acc"),
            "test_acc": get(r, "test", "acc"),
            "parser_lf_before": _lf(r, "parser_dev_before"),
            "parser_lf_after": _lf(r, "parser_dev_after"),
            "sec_per_epoch": r["seconds_per_epoch"],
        }
        for label, label_runs in results.items()
        for r in label_runs
    ]
    (out / "runs.csv").write_text(to_csv(run_rows), encoding="utf-8")
    summary = {
        "modes": list(plan.modes),
        "seeds": list(plan.seeds),
        "selected": {m: v.label for m, v in chosen.items()},
        "rows": rows,
        "notes": notes,
        "wall_seconds": wall,
        "config": config.to_dict(),
        "markdown": md,
    }
    (out / "experiment.json").write_text(
        json.dumps(summary, indent=2, default=str).replace("NaN", "null") + "\n", encoding="utf-8"
    )
    return summary


def main(args: Any) -> int:
    """Entry point of ``spigot experiment sem2sent`` (called by :mod:`spigot.cli`); without
    ``--config`` it runs the synthetic default (``configs/sem2sent_synthetic.toml``)."""
    cfg = load_config(args.config, args.set or []) if args.config else quick_config()
    if not args.config and args.set:
        cfg = apply_overrides(cfg, args.set)
    if cfg.task != "sem2sent":
        raise ValueError(f"{args.config}: task = {cfg.task!r}, not 'sem2sent'")
    plan = (read_plan(args.config, MODES) if args.config else None) or ExperimentPlan(
        DEFAULT_MODES, DEFAULT_SEEDS, valid_modes=MODES
    )
    summary = run_experiment(
        cfg,
        seeds=args.seeds or plan.seeds,
        modes=args.modes or plan.modes,
        mode_seeds=plan.mode_seeds,
        eta_grid={} if getattr(args, "no_grid", False) else plan.eta_grid,
        out_dir=args.out,
        jobs=args.jobs,
        progress=cfg.train.progress and not args.no_progress,
        reuse=not getattr(args, "rerun", False),
        executor=getattr(args, "executor", "local"),
        slurm=slurm_params(args, Path(args.out)),
        status_only=getattr(args, "status", False),
    )
    if "status" in summary:
        print(summary["status"], end="")
        return 0
    print(summary["markdown"], end="")
    print(f"\nwrote {Path(args.out) / 'results.md'}, scores.png, runs.csv, experiment.json")
    return 0
