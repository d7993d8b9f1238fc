"""``spigot experiment syn2sem``: every training mode over several seeds, one results table.

Each (mode, seed) run trains a :class:`~spigot.pipelines.syn2sem.task.Syn2SemTask` in
``OUT/<mode>/seed<seed>/`` (config, JSONL log, best checkpoint, results, per-sentence scores);
a mode with a ``train.eta`` grid has one directory per value, ``OUT/<mode>-eta<eta>/``, and the
value with the best mean dev LF is its row (:mod:`spigot.experiments.plan`, which also reads
the modes, seeds and grids from a config's ``[experiment]`` table). The experiment then
writes ``OUT/results.md`` and ``OUT/results.csv`` (mean ± sd over seeds of dev/test labeled F1
and UAS, seconds per training epoch and training sentences per second, per mode),
``OUT/runs.csv`` (one row per run), ``OUT/learning_curve.png`` (dev labeled F1 and UAS per
epoch, mean over seeds) and ``OUT/experiment.json``, and prints the table.

Runs go to ``jobs`` worker processes (default: 2, one torch thread each); results do not
depend on ``jobs``.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from spigot.config import apply_overrides, config_from_dict, load_config
from spigot.experiments.plan import (
    DEFAULT_MODES,
    DEFAULT_SEEDS,
    ExperimentPlan,
    format_grid,
    read_plan,
    select,
)
from spigot.experiments.plots import plot_curves
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


def _run_one(
    cfg_dict: dict[str, Any], out_dir: str, progress: bool, resume: bool = True
) -> dict[str, Any]:
    """Train one (mode, seed) run; executed in a worker process.

    With ``resume``, a run interrupted in ``out_dir`` with the same config continues from its
    ``last.pt``; otherwise the run starts from scratch.
    """
    from spigot.pipelines.syn2sem.task import Syn2SemTask

    logging.getLogger("spigot").setLevel(logging.INFO if progress else logging.WARNING)
    cfg = config_from_dict(cfg_dict, Syn2SemConfig)
    splits = Syn2SemTask.load_splits(cfg)
    task = Syn2SemTask.from_config(cfg, splits["train"])
    can_resume = False
    if resume and (Path(out_dir) / "last.pt").is_file():
        try:
            task.resume_state(out_dir)
            can_resume = True
        except ValueError as exc:
            logger.warning("%s: starting again (%s)", out_dir, exc)
    return task.fit(splits, out_dir, progress=progress, resume=can_resume)


def _mean_sd(values: Sequence[float]) -> tuple[float, float]:
    vals = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not vals:
        return float("nan"), float("nan")
    m = sum(vals) / len(vals)
    if len(vals) < 2:
        return m, 0.0
    return m, math.sqrt(sum((v - m) ** 2 for v in vals) / (len(vals) - 1))


def _get(res: dict[str, Any], split: str, key: str) -> float:
    part = res.get(split) or {}
    v = part.get(key)
    return float("nan") if v is None else float(v)


COLUMNS = (
    ("dev_lf", "dev LF", 100.0),
    ("test_lf", "test LF", 100.0),
    ("dev_uas", "dev UAS", 100.0),
    ("test_uas", "test UAS", 100.0),
    ("sec_per_epoch", "s/epoch", 1.0),
    ("sent_per_sec", "sent/s", 1.0),
)


def summarize(results: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """One row per mode: ``n_seeds`` and ``<column>_mean``/``<column>_sd`` for every column."""
    rows = []
    for mode, runs in results.items():
        values = {
            "dev_lf": [_get(r, "dev", "lf") for r in runs],
            "test_lf": [_get(r, "test", "lf") for r in runs],
            "dev_uas": [_get(r, "dev", "uas") for r in runs],
            "test_uas": [_get(r, "test", "uas") for r in runs],
            "sec_per_epoch": [r["seconds_per_epoch"] for r in runs],
            "sent_per_sec": [r["sentences_per_second"] for r in runs],
        }
        row: dict[str, Any] = {"mode": mode, "n_seeds": len(runs)}
        for key, _, scale in COLUMNS:
            m, sd = _mean_sd(values[key])
            row[f"{key}_mean"], row[f"{key}_sd"] = m * scale, sd * scale
        rows.append(row)
    return rows


def _cell(m: float, sd: float, digits: int) -> str:
    if math.isnan(m):
        return "–"
    return f"{m:.{digits}f} ± {sd:.{digits}f}"


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """The Markdown table (scores in %, mean ± sd over seeds)."""
    head = ["mode", "seeds"] + [title for _, title, _ in COLUMNS]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["mode"], str(r["n_seeds"])]
        for key, _, _ in COLUMNS:
            digits = 0 if key == "sent_per_sec" else (2 if key == "sec_per_epoch" else 1)
            cells.append(_cell(r[f"{key}_mean"], r[f"{key}_sd"], digits))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _csv(rows: Sequence[dict[str, Any]]) -> str:
    buf = io.StringIO()
    if rows:
        w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    return buf.getvalue()


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _expected_epochs(cfg: dict[str, Any]) -> int:
    """Training epochs a run will do at most (fewer if it stops early)."""
    c = config_from_dict(cfg, Syn2SemConfig)
    return c.syntactic_epochs() + c.train.epochs


def _epochs_logged(run_dir: Path) -> int:
    """How many epoch records the run's ``metrics.jsonl`` holds so far."""
    try:
        text = (run_dir / "metrics.jsonl").read_text(encoding="utf-8")
    except OSError:
        return 0
    return text.count('"event": "epoch"')


def _reusable(run_dir: Path, cfg_dict: dict[str, Any]) -> dict[str, Any] | None:
    """The results of a finished run in ``run_dir`` if it ran with exactly ``cfg_dict``.

    The run's ``config.toml`` is compared as written, every key included: a file from an
    older spigot that lacks a newer key does not count as that key's current default.
    """
    from spigot.config import tomllib

    res_path, cfg_path = run_dir / "results.json", run_dir / "config.toml"
    if not (res_path.is_file() and cfg_path.is_file()):
        return None
    try:
        if tomllib.loads(cfg_path.read_text(encoding="utf-8")) != cfg_dict:
            return None
        return json.loads(res_path.read_text(encoding="utf-8"))
    except (ValueError, OSError):
        return None


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
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    pretrain = share_pretraining and config.train.pretrain_epochs > 0
    # every job: (key, config dict, run dir, key of the job it waits for or None)
    jobs_plan: list[tuple[tuple[str, int], dict[str, Any], str, tuple[str, int] | None]] = []
    pre_seeds = sorted({s for m in plan.modes if m != "none" for s in plan.seeds_of(m)})
    if pretrain:
        for seed in pre_seeds:
            cfg = apply_overrides(config, {"mode": "pipeline", "seed": seed, "train.epochs": 0})
            jobs_plan.append(
                (("pretrain", seed), cfg.to_dict(), str(out / "pretrain" / f"seed{seed}"), None)
            )
    runs = []
    for v in variants:
        for seed in plan.seeds_of(v.mode):
            over: dict[str, Any] = {"mode": v.mode, "seed": seed}
            if v.eta is not None:
                over["train.eta"] = v.eta
            after = None
            if pretrain and v.mode != "none":
                syntax = out / "pretrain" / f"seed{seed}" / "syntax.pt"
                over.update({"train.pretrain_epochs": 0, "train.init_syntax": str(syntax)})
                after = ("pretrain", seed)
            cfg = apply_overrides(config, over)
            run_dir = str(out / v.dirname / f"seed{seed}")
            runs.append((v.label, seed))
            jobs_plan.append(((v.label, seed), cfg.to_dict(), run_dir, after))
    results: dict[str, list[dict[str, Any]]] = {v.label: [] for v in variants}
    done: dict[tuple[str, int], dict[str, Any]] = {}
    if reuse:
        for key, cfg_dict, run_dir, _ in jobs_plan:
            old = _reusable(Path(run_dir), cfg_dict)
            if old is not None:
                logger.info("reusing the finished run in %s", run_dir)
                done[key] = old
    todo = [j for j in jobs_plan if j[0] not in done]
    expected = {key: _expected_epochs(cfg_dict) for key, cfg_dict, _, _ in jobs_plan}
    counted = {key: expected[key] if key in done else 0 for key in expected}
    bar: Any = None
    if progress:  # one step per training epoch of any run, finished runs included
        from tqdm.auto import tqdm

        bar = tqdm(
            total=sum(expected.values()),
            initial=sum(counted.values()),
            desc="epochs",
            unit="epoch",
            dynamic_ncols=True,
        )

    def advance(key: tuple[str, int], n: int) -> None:
        n = min(n, expected[key])
        if bar is not None and n > counted[key]:
            bar.update(n - counted[key])
        counted[key] = max(counted[key], n)

    def finished(key: tuple[str, int], res: dict[str, Any]) -> None:
        done[key] = res
        advance(key, expected[key])
        if bar is not None:
            bar.set_postfix_str(f"{len(done)}/{len(jobs_plan)} runs, last {key[0]}/seed{key[1]}")

    if jobs <= 1:
        for key, cfg_dict, run_dir, _ in todo:  # pre-training jobs come first in the plan
            finished(key, _run_one(cfg_dict, run_dir, progress, reuse))
    else:
        import multiprocessing as mp
        from concurrent.futures import FIRST_COMPLETED, wait

        with ProcessPoolExecutor(max_workers=jobs, mp_context=mp.get_context("spawn")) as pool:
            running: dict[Any, tuple[str, int]] = {}
            waiting = list(todo)
            dirs = {key: Path(run_dir) for key, _, run_dir, _ in todo}
            while waiting or running:
                ready = [j for j in waiting if j[3] is None or j[3] in done]
                for job in ready:
                    waiting.remove(job)
                    key, cfg_dict, run_dir, _ = job
                    running[pool.submit(_run_one, cfg_dict, run_dir, False, reuse)] = key
                if not running:
                    missing = sorted({j[3] for j in waiting if j[3] is not None})
                    raise RuntimeError(f"jobs wait for runs that never finished: {missing}")
                finished_now, _ = wait(running, timeout=5.0, return_when=FIRST_COMPLETED)
                for fut in finished_now:
                    finished(running.pop(fut), fut.result())
                if bar is not None:  # the workers show no bars: follow their logs
                    for key in running.values():
                        advance(key, _epochs_logged(dirs[key]))
    if bar is not None:
        bar.close()
    for label, seed in runs:
        results[label].append(done[(label, seed)])
    wall = time.perf_counter() - start
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
        uas_m, uas_sd = _mean_sd([_get(r, "dev", "uas") for r in pre])
        sec_m, _ = _mean_sd([r["seconds_per_epoch"] for r in pre])
        epochs = _plural(config.train.pretrain_epochs, "epoch")
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
            f"{sec_m:.1f} s/epoch, dev UAS {_cell(100 * uas_m, 100 * uas_sd, 1)} (not included "
            "in the modes' s/epoch)"
        )
    md = header + table + ("\n" + "\n".join(f"- {n}" for n in notes) + "\n" if notes else "")
    (out / "results.md").write_text(md, encoding="utf-8")
    (out / "results.csv").write_text(_csv(rows), encoding="utf-8")
    chosen_labels = {v.label for v in chosen.values()}
    run_rows = [
        {
            "mode": r["mode"],
            "variant": label,
            "selected": label in chosen_labels,
            "seed": r["seed"],
            "best_epoch": r["best_epoch"],
            "dev_lf": _get(r, "dev", "lf"),
            "test_lf": _get(r, "test", "lf"),
            "dev_uas": _get(r, "dev", "uas"),
            "test_uas": _get(r, "test", "uas"),
            "sec_per_epoch": r["seconds_per_epoch"],
            "sent_per_sec": r["sentences_per_second"],
        }
        for label, label_runs in results.items()
        for r in label_runs
    ]
    (out / "runs.csv").write_text(_csv(run_rows), encoding="utf-8")
    plotted = plot_curves(
        {m: results[v.label] for m, v in chosen.items()}, out / "learning_curve.png"
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
    )
    print(summary["markdown"], end="")
    print(f"\nwrote {Path(args.out) / 'results.md'}, results.csv, runs.csv, learning_curve.png")
    return 0
