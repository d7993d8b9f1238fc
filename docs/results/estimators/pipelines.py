"""Every estimator on both pipelines' synthetic defaults: one table and one plot.

    python docs/results/estimators/pipelines.py SYN2SEM_DIR SEM2SENT_DIR [--out PREFIX]
                                                [--collect SYN2SEM_EXP SEM2SENT_EXP]
                                                [--resamples 10000] [--seed 0]

``SYN2SEM_DIR`` and ``SEM2SENT_DIR`` are the output directories of the two ``spigot experiment``
commands of ``docs/estimators.md`` ("Every estimator on both pipelines' synthetic defaults");
only ``<mode>/seed<seed>/results.json`` and ``sentences.jsonl.gz`` are read. ``--collect``
first copies the small artifacts of every finished run (``config.toml``, ``metrics.jsonl``,
``results.json``, ``sentences.jsonl.gz``; no weights) from the two experiments' output
directories into ``SYN2SEM_DIR`` and ``SEM2SENT_DIR``: the committed copies are in
``docs/results/estimators/pipeline_runs/``. Every score is
recomputed from the per-sentence records and checked against ``results.json``. Writes
``PREFIX.md`` (the table), ``PREFIX.csv`` (one row per run) and ``PREFIX.png`` (the plot), and
prints the table.

Per estimator and pipeline: mean ± sd over seeds of the dev and test score (pipeline 1:
semantic labeled F1, and the syntactic parser's dev UAS at the end; pipeline 2: sentiment
accuracy, and the parser's dev LF after the sentiment stage), and the difference from
``joint`` on test (same training, no gradient through the structure): pooled over the seeds'
test sentences, with a paired permutation p-value, and the seed-level mean with its 95%
t-interval.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

from spigot import ESTIMATORS
from spigot.experiments.report import collect_artifacts
from spigot.experiments.significance import mean_sd, paired_permutation, seed_differences
from spigot.pipelines.syn2sem.outputs import SENTENCES_FILE, read_sentences

FLOOR = {"syn2sem": "none", "sem2sent": "bilstm"}


def _counts(records: list[dict[str, Any]], split: str, task: str) -> np.ndarray:
    """Per sentence: ``(correct, predicted, gold)`` arcs (syn2sem) or ``(correct, 1)``."""
    recs = sorted(
        (r for r in records if r["split"] == split), key=lambda r: r.get("i", r.get("index", 0))
    )
    if task == "syn2sem":
        return np.array([[r["correct"], r["pred"], r["gold"]] for r in recs], dtype=float)
    return np.array([[r["correct"], 1] for r in recs], dtype=float)


def _score(c: np.ndarray) -> float:
    if c.shape[1] == 2:
        return float(c[:, 0].sum() / c[:, 1].sum())
    correct, pred, gold = c.sum(axis=0)
    return float(2 * correct / (pred + gold)) if pred + gold else 0.0


def load(root: Path, task: str) -> dict[str, dict[int, dict[str, Any]]]:
    """``{mode: {seed: {"results", "dev", "test"}}}`` with the per-sentence counts."""
    runs: dict[str, dict[int, dict[str, Any]]] = {}
    metric = "lf" if task == "syn2sem" else "acc"
    for res in sorted(root.glob("*/seed*/results.json")):
        mode = res.parent.parent.name
        if mode == "pretrain":
            continue
        results = json.loads(res.read_text(encoding="utf-8"))
        records = read_sentences(res.parent / SENTENCES_FILE)
        run: dict[str, Any] = {"results": results}
        for split in ("dev", "test"):
            run[split] = _counts(records, split, task)
            want = results[split][metric]
            if abs(_score(run[split]) - want) > 1e-9:
                raise SystemExit(f"{res.parent}: {split} {metric} {_score(run[split])} != {want}")
        runs.setdefault(mode, {})[int(res.parent.name.removeprefix("seed"))] = run
    return runs


def _side(results: dict[str, Any], task: str) -> float:
    """The structure's quality at the end: dev UAS (syn2sem) or the parser's dev LF."""
    part = results["dev"] if task == "syn2sem" else results.get("parser_dev_after") or {}
    value = part.get("uas" if task == "syn2sem" else "lf")
    return math.nan if value is None else float(value)


def _cell(values: list[float]) -> str:
    vals = [100 * v for v in values if not math.isnan(v)]
    if not vals:
        return "–"
    m, sd = mean_sd(vals)
    return f"{m:.1f} ± {sd:.1f}"


def _versus_joint(
    runs: dict[str, dict[int, dict[str, Any]]], mode: str, resamples: int, seed: int
) -> tuple[str, dict[str, float]]:
    if mode == "joint" or "joint" not in runs or mode not in runs:
        return "", {}
    seeds = sorted(set(runs[mode]) & set(runs["joint"]))
    a = np.stack([runs[mode][s]["test"] for s in seeds])
    b = np.stack([runs["joint"][s]["test"] for s in seeds])
    perm = paired_permutation(a, b, n_permutations=resamples, seed=seed)
    deltas = [_score(a[i]) - _score(b[i]) for i in range(len(seeds))]
    sd = seed_differences(deltas)
    text = (
        f"{100 * sd.mean:+.1f} [{100 * sd.ci_low:+.1f}, {100 * sd.ci_high:+.1f}], "
        f"p {perm.p_value:.4f}"
    )
    return text, {"delta": sd.mean, "low": sd.ci_low, "high": sd.ci_high, "p": perm.p_value}


def table(
    both: dict[str, dict[str, dict[int, dict[str, Any]]]], resamples: int, seed: int
) -> tuple[str, list[str]]:
    syn, sem = both["syn2sem"], both["sem2sent"]
    controls = ["floor", "gold", "pipeline", "joint"]
    seen = [m for m in [*syn, *sem] if m not in ("none", "bilstm", "gold", "pipeline", "joint")]
    # the registry's order (spigot.ESTIMATORS), then any other mode
    estimators = [m for m in ESTIMATORS if m in seen] + sorted(set(seen) - set(ESTIMATORS))
    estimators = list(dict.fromkeys(estimators))
    order = controls + estimators
    head = (
        "| mode | syn2sem dev LF | syn2sem test LF | dev UAS after | test LF - joint [95% CI], p "
        "| sem2sent dev acc | sem2sent test acc | parser LF after | test acc - joint [95% CI], p |"
    )
    lines = [head, "|---|---|---|---|---|---|---|---|---|"]
    for row in order:
        cells = [row if row != "floor" else "floor (none / bilstm)"]
        for task, runs in (("syn2sem", syn), ("sem2sent", sem)):
            mode = FLOOR[task] if row == "floor" else row
            rs = [r["results"] for r in runs.get(mode, {}).values()]
            metric = "lf" if task == "syn2sem" else "acc"
            cells.append(_cell([r["dev"][metric] for r in rs]))
            cells.append(_cell([r["test"][metric] for r in rs]))
            cells.append(_cell([_side(r, task) for r in rs]))
            cells.append(_versus_joint(runs, mode, resamples, seed)[0] or "–")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n", order


def plot(
    both: dict[str, dict[str, dict[int, dict[str, Any]]]], order: list[str], path: Path
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(13, 8))
    panels = (
        ("syn2sem", "test", "pipeline 1: semantic test LF"),
        ("sem2sent", "test", "pipeline 2: sentiment test accuracy"),
        ("syn2sem", "side", "pipeline 1: the syntactic parser's dev UAS at the end"),
        ("sem2sent", "side", "pipeline 2: the semantic parser's dev LF at the end"),
    )
    for ax, (task, what, title) in zip(axes.flat, panels, strict=True):
        runs = both[task]
        metric = "lf" if task == "syn2sem" else "acc"
        names, means, sds, colors = [], [], [], []
        for row in order:
            mode = FLOOR[task] if row == "floor" else row
            rs = [r["results"] for r in runs.get(mode, {}).values()]
            vals = [100 * (r["test"][metric] if what == "test" else _side(r, task)) for r in rs]
            vals = [v for v in vals if not math.isnan(v)]
            if not vals:
                continue
            m, sd = mean_sd(vals)
            names.append("floor" if row == "floor" else row)
            means.append(m)
            sds.append(sd)
            colors.append("grey" if row in ("floor", "gold", "pipeline", "joint") else "tab:blue")
        ax.bar(range(len(names)), means, yerr=sds, capsize=2, color=colors)
        if "joint" in names:
            ax.axhline(means[names.index("joint")], linestyle="--", linewidth=1, color="black")
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels(names, rotation=45, ha="right")
        low = 0 if what == "side" else min(means) - 5
        ax.set_ylim(max(0, low), max(means) + 3)
        ax.set_title(title)
        ax.set_ylabel("% (mean ± sd, 3 seeds)")
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(
        "every estimator, default options, on each pipeline's synthetic default (dashed: joint)"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("syn2sem", type=Path)
    ap.add_argument("sem2sent", type=Path)
    ap.add_argument("--out", type=Path, default=None, help="output prefix (PREFIX.md/.csv/.png)")
    ap.add_argument("--collect", type=Path, nargs=2, default=None, metavar=("SYN2SEM", "SEM2SENT"))
    ap.add_argument("--resamples", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.collect:
        for src, dst in zip(args.collect, (args.syn2sem, args.sem2sent), strict=True):
            print(f"copied {collect_artifacts(src, dst)} runs from {src} to {dst}", file=sys.stderr)
    both = {"syn2sem": load(args.syn2sem, "syn2sem"), "sem2sent": load(args.sem2sent, "sem2sent")}
    md, order = table(both, args.resamples, args.seed)
    intro = (
        "Every estimator with its default options on each pipeline's synthetic default, seeds "
        "0-2 (`docs/estimators.md`). Scores in %, mean ± sd over seeds; the difference from "
        "`joint` is the seed-level mean with its 95% t-interval, and the p-value of a paired "
        "permutation test over the test sentences of all seeds.\n\n"
    )
    print(md, end="")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.with_suffix(".md").write_text(intro + md, encoding="utf-8")
        with args.out.with_suffix(".csv").open("w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["pipeline", "mode", "seed", "dev", "test", "structure_after"])
            for task, runs in both.items():
                metric = "lf" if task == "syn2sem" else "acc"
                for mode, by_seed in runs.items():
                    for s, r in sorted(by_seed.items()):
                        res = r["results"]
                        w.writerow(
                            [
                                task,
                                mode,
                                s,
                                res["dev"][metric],
                                res["test"][metric],
                                _side(res, task),
                            ]
                        )
        plot(both, order, args.out.with_suffix(".png"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
