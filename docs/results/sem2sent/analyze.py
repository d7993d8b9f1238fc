"""Tables and significance tests of a ``spigot experiment sem2sent`` run (docs/results_sem2sent.md).

    python docs/results/sem2sent/analyze.py RUNS [--collect EXPERIMENT_DIR] [--out FILE]
                                            [--resamples 10000] [--seed 0]

``RUNS`` holds the committed artifacts of every run of the experiment, in its layout
(``<mode>[-eta<eta>]/seed<seed>/``, ``pretrain/seed<seed>/``), each with ``config.toml``,
``metrics.jsonl``, ``results.json`` and ``sentences.jsonl.gz`` (per test/dev sentence: gold,
predicted, correct); no weights. ``--collect DIR`` first copies exactly these files from an
experiment's output directory.

The script recomputes every accuracy from the per-sentence records, checks it against each
run's ``results.json``, and prints (with ``--out``, writes) Markdown:

1. per mode, mean ± sd over seeds of dev and test accuracy, the parser's dev LF before and
   after the sentiment stage and its unlabeled precision and recall after it (how the
   sentiment loss changed its graphs), epochs run, the best epoch and CPU seconds per
   sentiment epoch;
2. SPIGOT against every other mode on the test sentences: per seed a paired bootstrap (95%
   interval, p-value) and a paired permutation test; pooled over the common seeds; the
   seed-level differences with their 95% t-interval and exact sign-flip p-value
   (:mod:`spigot.experiments.significance`); for the comparisons of the question
   (:data:`PRIMARY`: pipeline, joint, ste, marginals) the Holm-adjusted pooled bootstrap
   p-value and the protocol's verdict (:func:`~spigot.experiments.significance.verdict`).

Accuracies in points (x100); differences are SPIGOT minus the other mode.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from spigot.experiments.report import collect_artifacts
from spigot.experiments.significance import (
    decide,
    mean_sd,
    paired_bootstrap,
    paired_permutation,
    seed_differences,
)
from spigot.pipelines.syn2sem.outputs import SENTENCES_FILE, read_sentences

REFERENCE = "spigot"
PRIMARY = ("pipeline", "joint", "ste", "marginals")
"""The comparisons of the question (Holm-adjusted together); ``bilstm`` is secondary."""


def load_runs(root: Path) -> dict[str, dict[int, dict[str, Any]]]:
    """``{mode dir: {seed: {"results": ..., "counts": {split: [N, 2] (correct, 1)}}}}``."""
    runs: dict[str, dict[int, dict[str, Any]]] = {}
    for res in sorted(root.glob("*/seed*/results.json")):
        mode = res.parent.parent.name
        if mode == "pretrain":
            continue
        seed = int(res.parent.name.removeprefix("seed"))
        results = json.loads(res.read_text(encoding="utf-8"))
        records = read_sentences(res.parent / SENTENCES_FILE)
        counts = {}
        for split in ("dev", "test"):
            recs = sorted((r for r in records if r["split"] == split), key=lambda r: r["index"])
            counts[split] = np.array([[r["correct"], 1] for r in recs], dtype=float)
            acc = counts[split][:, 0].mean() if len(recs) else float("nan")
            want = (results.get(split) or {}).get("acc")
            if want is not None and abs(acc - want) > 1e-12:
                raise SystemExit(f"{res.parent}: {split} accuracy {acc} != results.json {want}")
        runs.setdefault(mode, {})[seed] = {"results": results, "counts": counts}
    return runs


def _cell(values: list[float]) -> str:
    vals = [100 * v for v in values if v is not None and v == v]
    if not vals:
        return "–"
    m, sd = mean_sd(vals)
    return f"{m:.1f} ± {sd:.1f}"


def _plain(values: list[float], digits: int = 1) -> str:
    vals = [float(v) for v in values if v is not None and v == v]
    if not vals:
        return "–"
    m, sd = mean_sd(vals)
    return f"{m:.{digits}f} ± {sd:.{digits}f}"


def tables(runs: dict[str, dict[int, dict[str, Any]]], resamples: int, seed: int) -> str:
    lines = [
        "| mode | seeds | dev acc | test acc | parser LF before | parser LF after | "
        "parser UP / UR after | epochs run | best epoch | CPU s/epoch |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for mode, by_seed in runs.items():
        rs = [r["results"] for r in by_seed.values()]

        def parser(key: str, metric: str) -> list[float | None]:
            return [(r.get(key) or {}).get(metric) for r in rs]  # noqa: B023

        after = f"{_cell(parser('parser_dev_after', 'up'))} / "
        after += _cell(parser("parser_dev_after", "ur"))
        if after == "– / –":
            after = "–"
        lines.append(
            f"| {mode} | {len(rs)} | {_cell([r['dev']['acc'] for r in rs])} | "
            f"{_cell([(r.get('test') or {}).get('acc') for r in rs])} | "
            f"{_cell(parser('parser_dev_before', 'lf'))} | "
            f"{_cell(parser('parser_dev_after', 'lf'))} | {after} | "
            f"{_plain([r.get('epochs_run') for r in rs])} | "
            f"{_plain([r.get('best_epoch') for r in rs])} | "
            f"{_plain([r.get('cpu_seconds_per_epoch') or None for r in rs], 0)} |"
        )
    out = ["## Accuracy (%, mean ± sd over seeds)", "", *lines, ""]
    if REFERENCE not in runs:
        return "\n".join(out)
    out += [
        "## SPIGOT against each mode, test accuracy (points; SPIGOT minus the other)",
        "",
        "| other | seeds | pooled delta [95% CI] | bootstrap p | permutation p | "
        "seed-level mean [95% t-CI] | sign-flip p | Holm p | verdict |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    a_runs = runs[REFERENCE]
    pooled = []  # (mode, row, bootstrap p, seed summary)
    for mode, b_runs in runs.items():
        if mode == REFERENCE:
            continue
        seeds = sorted(set(a_runs) & set(b_runs))
        if not seeds:
            continue
        a = np.stack([a_runs[s]["counts"]["test"] for s in seeds])
        b = np.stack([b_runs[s]["counts"]["test"] for s in seeds])
        boot = paired_bootstrap(a, b, n_resamples=resamples, seed=seed)
        perm = paired_permutation(a, b, n_permutations=resamples, seed=seed)
        deltas = [float(a[i, :, 0].mean() - b[i, :, 0].mean()) for i in range(len(seeds))]
        sd = seed_differences(deltas)
        row = (
            f"| {mode} | {len(seeds)} | {100 * boot.delta:+.2f} [{100 * boot.ci_low:+.2f}, "
            f"{100 * boot.ci_high:+.2f}] | {boot.p_value:.4f} | {perm.p_value:.4f} | "
            f"{100 * sd.mean:+.2f} [{100 * sd.ci_low:+.2f}, {100 * sd.ci_high:+.2f}] | "
            f"{sd.p_sign_flip:.4f} |"
        )
        pooled.append((mode, row, boot.p_value, sd))
    decided = decide(
        [p for _, _, p, _ in pooled],
        [sd for *_, sd in pooled],
        [mode in PRIMARY for mode, *_ in pooled],
    )
    for (_, row, _, _), decision in zip(pooled, decided, strict=True):
        if decision is None:
            out.append(row + " – | – |")
            continue
        adjusted, said = decision
        said = said if said == "not established" else f"SPIGOT {said}"
        out.append(row + f" {adjusted:.4f} | {said} |")
    out += ["", "Per seed (paired bootstrap over test sentences):", ""]
    out += ["| other | seed | delta [95% CI] | p |", "|---|---|---|---|"]
    for mode, b_runs in runs.items():
        if mode == REFERENCE:
            continue
        for s in sorted(set(a_runs) & set(b_runs)):
            t = paired_bootstrap(
                a_runs[s]["counts"]["test"],
                b_runs[s]["counts"]["test"],
                n_resamples=resamples,
                seed=seed,
            )
            out.append(
                f"| {mode} | {s} | {100 * t.delta:+.2f} [{100 * t.ci_low:+.2f}, "
                f"{100 * t.ci_high:+.2f}] | {t.p_value:.4f} |"
            )
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", type=Path)
    ap.add_argument("--collect", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--resamples", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.collect is not None:
        print(f"collected {collect_artifacts(args.collect, args.runs)} runs", file=sys.stderr)
    md = tables(load_runs(args.runs), args.resamples, args.seed)
    print(md, end="")
    if args.out is not None:
        args.out.write_text(md, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
