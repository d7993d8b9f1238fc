"""Tables and significance tests of the PropBank experiment of docs/results.md (issue 9).

    python docs/results/propbank/analyze.py [RUNS] [--collect EXPERIMENT_DIR] [--out FILE]
                                            [--resamples 10000] [--seed 0] [--metrics lf nt_lf]

``RUNS`` (default ``docs/results/propbank/runs``) holds the committed artifacts of every run of
``spigot experiment syn2sem --config configs/syn2sem_propbank.toml``, in the experiment's
layout (``<mode>[-eta<eta>]/seed<seed>/`` and ``pretrain/seed<seed>/``), each with its resolved
``config.toml``, ``metrics.jsonl``, ``results.json`` and ``sentences.jsonl.gz`` (per-sentence
counts, :mod:`spigot.pipelines.syn2sem.outputs`); no weights. ``--collect DIR`` first copies
exactly these files from an experiment's output directory ``DIR`` into ``RUNS``.

The script recomputes every score from the per-sentence counts, checks them against each
run's ``results.json``, and prints (and with ``--out`` writes) Markdown tables:

1. per mode (for ``ste`` and ``spigot``, the ``train.eta`` with the best mean dev LF), mean
   ± sd over seeds of dev and test LF, UF, UAS and LF on non-tree arcs, with epochs and hours;
2. the ``train.eta`` grid on dev (the only scores the choice sees);
3. test LF per EWT genre, the training time of every variant and of the pre-training
   (hours, seconds per epoch, CPU seconds per epoch), and the gradients that reach the
   syntactic arc scores per sentence from the semantic and the syntactic loss in the joint
   modes (the STE diagnosis);
4. SPIGOT against every other mode, per metric of ``--metrics``: per seed, a paired bootstrap
   over test sentences (``--resamples`` resamples, seeded with ``--seed``) with its 95%
   interval and p-value and a paired permutation test; pooled over the common seeds (the
   mean over seeds of the difference; sentences resampled jointly); and the seed-level paired
   differences with their 95% t-interval and exact sign-flip p-value
   (:mod:`spigot.experiments.significance`); for the comparisons of the question (joint,
   marginals, pipeline) the Holm-adjusted pooled bootstrap p-value and the protocol's verdict.

Scores are in points (x100); differences are SPIGOT minus the other mode.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from spigot.config import tomllib
from spigot.experiments.plan import Variant, select
from spigot.experiments.report import collect_artifacts
from spigot.experiments.significance import (
    SeedSummary,
    decide,
    mean_sd,
    paired_bootstrap,
    paired_permutation,
    score,
    seed_differences,
)
from spigot.pipelines.syn2sem.data import GENRES
from spigot.pipelines.syn2sem.outputs import SENTENCES_FILE, read_sentences

ARTIFACTS = ("config.toml", "metrics.jsonl", "results.json", SENTENCES_FILE)
"""The files of a run directory that are committed (no checkpoints)."""
EXPERIMENT_FILES = ("experiment.json", "results.md", "results.csv", "runs.csv")

METRICS: dict[str, tuple[str, ...]] = {
    "lf": ("correct", "pred", "gold"),
    "uf": ("correct_u", "pred_u", "gold_u"),
    "uas": ("heads", "tokens"),
    "nt_lf": ("nt_correct", "nt_pred", "nt_gold"),
}
"""Per-sentence count keys of each metric (F1 from 3 counts, accuracy from 2)."""
TITLES = {"lf": "LF", "uf": "UF", "uas": "UAS", "nt_lf": "non-tree LF"}
CHECKED = {"lf": "lf", "uf": "uf", "uas": "uas"}  # metric -> key of results.json
REFERENCE = "spigot"
PRIMARY = ("joint", "marginals", "pipeline")
"""The comparisons of the issue's question (Holm-adjusted together)."""
MODE_ORDER = ("none", "gold", "pipeline", "joint", "ste", "marginals", "spigot")


@dataclass
class Run:
    """One finished run: its mode, ``train.eta``, seed, results and per-sentence records."""

    mode: str
    eta: float
    seed: int
    path: Path
    results: dict[str, Any]
    records: dict[str, dict[str, dict[str, Any]]]  # split -> sent_id -> record
    pretrain: bool = False

    def counts(self, split: str, metric: str, ids: Sequence[str] | None = None) -> np.ndarray:
        """``[N, k]`` counts of ``metric`` on ``ids`` (default: every sentence of ``split``)."""
        recs = self.records[split]
        rows = [recs[i] for i in (ids if ids is not None else recs)]
        keys = METRICS[metric]
        if any(r[k] is None for r in rows for k in keys):
            return np.full((len(rows), len(keys)), np.nan)
        return np.array([[r[k] for k in keys] for r in rows], dtype=np.float64)

    def score(self, split: str, metric: str, ids: Sequence[str] | None = None) -> float:
        """The corpus-level score (a fraction; ``nan`` if the run has no such counts)."""
        c = self.counts(split, metric, ids)
        return float("nan") if np.isnan(c).any() or not len(c) else float(score(c.sum(0)))


# ------------------------------------------------------------------------------------------
# reading
# ------------------------------------------------------------------------------------------
def collect(source: Path, runs: Path) -> int:
    """Copy the committed artifacts of every finished run under ``source`` into ``runs``."""
    n = collect_artifacts(source, runs, ARTIFACTS)
    for name in EXPERIMENT_FILES:
        if (source / name).is_file():
            shutil.copy2(source / name, runs / name)
    return n


def load_runs(root: Path) -> list[Run]:
    """Every run directory under ``root`` (a directory with ``results.json``)."""
    runs = []
    for res in sorted(root.rglob("results.json")):
        d = res.parent
        cfg = tomllib.loads((d / "config.toml").read_text(encoding="utf-8"))
        records: dict[str, dict[str, dict[str, Any]]] = {}
        for r in read_sentences(d / SENTENCES_FILE) if (d / SENTENCES_FILE).is_file() else ():
            records.setdefault(r["split"], {})[r["sent_id"] or str(r["i"])] = r
        runs.append(
            Run(
                mode=cfg["mode"],
                eta=float(cfg["train"]["eta"]),
                seed=int(cfg["seed"]),
                path=d,
                results=json.loads(res.read_text(encoding="utf-8")),
                records=records,
                pretrain=cfg["train"]["epochs"] == 0,
            )
        )
    return runs


def check(runs: Sequence[Run]) -> list[str]:
    """Scores recomputed from the counts that differ from ``results.json`` (should be none)."""
    problems = []
    for run in runs:
        if not run.records:
            problems.append(f"{run.path}: no {SENTENCES_FILE}")
            continue
        for split in run.records:
            for metric, key in CHECKED.items():
                want = (run.results.get(split) or {}).get(key)
                got = run.score(split, metric)
                if want is None and np.isnan(got):
                    continue
                if want is None or abs(got - want) > 1e-9:
                    problems.append(f"{run.path}: {split} {key} {got} != results.json {want}")
    return problems


def variants(runs: Sequence[Run]) -> dict[Variant, list[Run]]:
    """Runs by variant: a mode run with several ``train.eta`` values is a grid."""
    etas: dict[str, set[float]] = {}
    for r in runs:
        etas.setdefault(r.mode, set()).add(r.eta)
    out: dict[Variant, list[Run]] = {}
    for r in sorted(runs, key=lambda r: (_order(r.mode), r.eta, r.seed)):
        v = Variant(r.mode, r.eta if len(etas[r.mode]) > 1 else None)
        twin = next((x for x in out.get(v, []) if x.seed == r.seed), None)
        if twin is not None:
            raise SystemExit(f"two runs of {v.label} with seed {r.seed}: {twin.path}, {r.path}")
        out.setdefault(v, []).append(r)
    return out


def _order(mode: str) -> int:
    return MODE_ORDER.index(mode) if mode in MODE_ORDER else len(MODE_ORDER)


# ------------------------------------------------------------------------------------------
# tables
# ------------------------------------------------------------------------------------------
def _pm(values: Sequence[float], scale: float = 100.0, digits: int = 1) -> str:
    m, sd = mean_sd([v * scale for v in values])
    return "–" if np.isnan(m) else f"{m:.{digits}f} ± {sd:.{digits}f}"


def _p(p: float) -> str:
    return f"{p:.4f}" if p >= 1e-4 else f"{p:.1e}"


def _ci(low: float, high: float) -> str:
    return f"[{100 * low:+.2f}, {100 * high:+.2f}]"


def main_table(chosen: dict[str, Variant], groups: dict[Variant, list[Run]]) -> str:
    cols = [(s, m) for s in ("dev", "test") for m in ("lf", "uf", "uas", "nt_lf")]
    head = ["mode", "seeds"] + [f"{s} {TITLES[m]}" for s, m in cols]
    head += ["best epoch", "epochs", "hours"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for v in chosen.values():
        runs = groups[v]
        cells = [v.label, str(len(runs))]
        cells += [_pm([r.score(s, m) for r in runs]) for s, m in cols]
        cells.append(_pm([r.results["best_epoch"] for r in runs], 1.0))
        cells.append(_pm([r.results["epochs_run"] for r in runs], 1.0))
        cells.append(f"{sum(r.results['train_seconds'] for r in runs) / 3600:.1f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def grid_table(chosen: dict[str, Variant], groups: dict[Variant, list[Run]]) -> str:
    lines = ["| variant | seeds | dev LF | dev UAS | selected |", "|---|---|---|---|---|"]
    for v, runs in groups.items():
        if v.eta is None:
            continue
        sel = "yes" if chosen.get(v.mode) == v else ""
        dev_lf = _pm([r.score("dev", "lf") for r in runs])
        dev_uas = _pm([r.score("dev", "uas") for r in runs])
        lines.append(f"| {v.label} | {len(runs)} | {dev_lf} | {dev_uas} | {sel} |")
    return "\n".join(lines) + "\n"


def genre_table(chosen: dict[str, Variant], groups: dict[Variant, list[Run]]) -> str:
    first = groups[next(iter(chosen.values()))][0].records["test"].values()
    sizes = {g: sum(r["genre"] == g for r in first) for g in GENRES}
    head = ["mode"] + [f"{g} ({sizes[g]})" for g in GENRES]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for v in chosen.values():
        cells = [v.label]
        for g in GENRES:
            vals = []
            for r in groups[v]:
                ids = [i for i, rec in r.records["test"].items() if rec["genre"] == g]
                vals.append(r.score("test", "lf", ids) if ids else float("nan"))
            cells.append(_pm(vals))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _common_ids(runs: Sequence[Run], split: str) -> list[str]:
    ids = set(runs[0].records[split])
    for r in runs[1:]:
        ids &= set(r.records[split])
    return sorted(ids, key=lambda i: runs[0].records[split][i]["i"])


def test_tables(
    chosen: dict[str, Variant],
    groups: dict[Variant, list[Run]],
    metric: str,
    resamples: int,
    seed: int,
) -> str:
    """SPIGOT against every other mode on the test sentences: pooled and per seed.

    The pooled bootstrap p-values of the primary comparisons (:data:`PRIMARY`) get a Holm
    adjustment; the verdict of the protocol: SPIGOT is better (worse) when that adjusted
    p-value is below 0.05 and the 95% t-interval of the seed-level differences lies above
    (below) 0, otherwise the difference is not established.
    """
    ref = groups[chosen[REFERENCE]]
    pooled: list[tuple[str, str, float, SeedSummary]] = []  # mode, row, bootstrap p, seeds
    per_seed = [
        "| SPIGOT vs | seed | Δ | 95% bootstrap CI | bootstrap p | permutation p |",
        "|---|---|---|---|---|---|",
    ]
    for mode, v in chosen.items():
        if mode == REFERENCE:
            continue
        other = {r.seed: r for r in groups[v]}
        pairs = [(a, other[a.seed]) for a in ref if a.seed in other]
        if not pairs or np.isnan(pairs[0][1].score("test", metric)):
            continue
        ids = _common_ids([r for pair in pairs for r in pair], "test")
        a = np.stack([x.counts("test", metric, ids) for x, _ in pairs])
        b = np.stack([y.counts("test", metric, ids) for _, y in pairs])
        for k, (x, _) in enumerate(pairs):
            boot = paired_bootstrap(a[k], b[k], n_resamples=resamples, seed=seed)
            perm = paired_permutation(a[k], b[k], n_permutations=resamples, seed=seed)
            per_seed.append(
                f"| {v.label} | {x.seed} | {100 * boot.delta:+.2f} | "
                f"{_ci(boot.ci_low, boot.ci_high)} | {_p(boot.p_value)} | {_p(perm.p_value)} |"
            )
        sd = seed_differences(
            [x.score("test", metric, ids) - y.score("test", metric, ids) for x, y in pairs]
        )
        boot = paired_bootstrap(a, b, n_resamples=resamples, seed=seed)
        perm = paired_permutation(a, b, n_permutations=resamples, seed=seed)
        deltas = ", ".join(f"{100 * d:+.2f}" for d in sd.deltas)
        t_ci = "–" if np.isnan(sd.ci_low) else _ci(sd.ci_low, sd.ci_high)
        row = (
            f"| {v.label} | {len(pairs)} | {deltas} | {100 * sd.mean:+.2f} {t_ci} | "
            f"{_p(sd.p_sign_flip)} | {100 * boot.delta:+.2f} {_ci(boot.ci_low, boot.ci_high)} | "
            f"{_p(boot.p_value)} | {_p(perm.p_value)} |"
        )
        pooled.append((mode, row, boot.p_value, sd))
    lines = [
        "| SPIGOT vs | seeds | per-seed Δ | mean Δ [95% t-CI] | sign-flip p | pooled Δ "
        "[95% bootstrap CI] | bootstrap p | permutation p | Holm p | verdict |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    decided = decide(
        [p for _, _, p, _ in pooled],
        [sd for *_, sd in pooled],
        [mode in PRIMARY for mode, *_ in pooled],
    )
    for (_, row, _, _), decision in zip(pooled, decided, strict=True):
        if decision is None:
            lines.append(row + " – | – |")
            continue
        adjusted, said = decision
        said = said if said == "not established" else f"SPIGOT {said}"
        lines.append(row + f" {_p(adjusted)} | {said} |")
    return "\n".join(lines) + "\n\n" + "\n".join(per_seed) + "\n"


def _grad_records(run: Run) -> list[dict[str, Any]]:
    """The ``grad_norms`` records of the run's joint phase, in epoch order."""
    out = []
    for line in (run.path / "metrics.jsonl").read_text(encoding="utf-8").splitlines():
        rec = json.loads(line)
        if rec.get("event") == "grad_norms" and rec.get("phase") == "joint":
            out.append(rec)
    return out


def _curve(run: Run, phase: str, epoch: int, key: str) -> float | None:
    """A dev metric of one epoch of the run's learning curve (``None`` if absent)."""
    for c in run.results.get("curve", []):
        if c["phase"] == phase and c["epoch"] == epoch:
            return c.get(key)
    return None


def grad_table(chosen: dict[str, Variant], groups: dict[Variant, list[Run]]) -> str:
    """The gradient on the syntactic arc scores, per sentence, in the first joint epoch and
    the best one: from the semantic loss through ``z`` and from the syntactic loss, their
    ratio and cosine (mean over seeds; every variant of the joint modes)."""
    head = "| variant | epoch | semantic | syntactic | ratio | cosine | dev UAS |"
    lines = [head, "|---|---|---|---|---|---|---|"]
    for v, runs in groups.items():
        if v.mode in ("none", "pipeline"):
            continue
        per_run = [(_grad_records(r), r) for r in runs]
        if not all(recs for recs, _ in per_run):
            continue
        for which in ("first", "best"):
            picked = []
            for recs, r in per_run:
                epoch = 1 if which == "first" else max(r.results["best_epoch"], 1)
                rec = next((x for x in recs if x["epoch"] == epoch), recs[-1])
                picked.append((rec, _curve(r, "joint", rec["epoch"], "uas")))
            cells = [v.label, which]
            for key in ("grad_semantic", "grad_syntactic", "grad_ratio", "grad_cosine"):
                vals = [rec.get(key) for rec, _ in picked]
                m, sd = mean_sd([x for x in vals if x is not None])
                sd = 0.0 if sd < 1e-9 * max(1.0, abs(m)) else sd  # rounding noise
                cells.append("–" if np.isnan(m) else f"{m:.3g} ± {sd:.2g}")
            cells.append(_pm([u for _, u in picked if u is not None]))
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def pretrain_table(runs: Sequence[Run]) -> str:
    lines = ["| seed | epochs run | best epoch | dev UAS | test UAS |", "|---|---|---|---|---|"]
    for r in sorted(runs, key=lambda r: r.seed):
        st = r.results.get("syntax_stage") or {}
        lines.append(
            f"| {r.seed} | {st.get('epochs_run', '?')} | {st.get('best_epoch', '?')} | "
            f"{100 * r.score('dev', 'uas'):.1f} | {100 * r.score('test', 'uas'):.1f} |"
        )
    return "\n".join(lines) + "\n"


def compute_table(pre: Sequence[Run], groups: dict[Variant, list[Run]]) -> str:
    """Training time of every variant and the pre-training: runs, epochs, hours (the sum of
    the runs' wall-clock ``train_seconds``), mean seconds per epoch, and mean CPU seconds per
    epoch (``cpu_seconds_per_epoch``, recorded by the runs that have it), with the total."""
    head = "| variant | runs | epochs | hours | s/epoch | CPU s/epoch (runs) |"
    lines = [head, "|---|---|---|---|---|---|"]
    rows = [("pre-training", list(pre))] if pre else []
    rows += [(v.label, runs) for v, runs in groups.items()]
    total_s, total_runs, total_epochs = 0.0, 0, 0
    for label, runs in rows:
        seconds = sum(r.results["train_seconds"] for r in runs)
        epochs = [
            (r.results.get("syntax_stage") or {}).get("epochs_run", 0)
            if r.pretrain
            else r.results["epochs_run"]
            for r in runs
        ]
        n_epochs = sum(epochs)
        cpu = [c for r in runs if (c := r.results.get("cpu_seconds_per_epoch"))]
        cpu_cell = f"{np.mean(cpu):.0f} ({len(cpu)})" if cpu else "–"
        per_epoch = seconds / n_epochs if n_epochs else float("nan")
        lines.append(
            f"| {label} | {len(runs)} | {n_epochs} | {seconds / 3600:.1f} | "
            f"{per_epoch:.0f} | {cpu_cell} |"
        )
        total_s += seconds
        total_runs += len(runs)
        total_epochs += n_epochs
    lines.append(f"| total | {total_runs} | {total_epochs} | {total_s / 3600:.1f} | | |")
    return "\n".join(lines) + "\n"


def report(root: Path, resamples: int, seed: int, metrics: Sequence[str]) -> str:
    """The whole Markdown report of the runs under ``root``."""
    runs = load_runs(root)
    if not runs:
        raise SystemExit(f"no finished run under {root}")
    problems = check(runs)
    if problems:
        raise SystemExit("scores do not match results.json:\n" + "\n".join(problems))
    pre = [r for r in runs if r.pretrain]
    groups = variants([r for r in runs if not r.pretrain])
    chosen_all = select(
        list(groups), {v.label: [r.results for r in rs] for v, rs in groups.items()}
    )
    chosen = {m: chosen_all[m] for m in sorted(chosen_all, key=_order)}
    out = [f"# PropBank EWT: {len(runs)} runs under {root}\n"]
    out += ["## Per mode (mean ± sd over seeds)\n", main_table(chosen, groups)]
    if any(v.eta is not None for v in groups):
        out += ["## train.eta grid (dev; the best mean dev LF is selected)\n"]
        out += [grid_table(chosen, groups)]
    if pre:
        out += ["## Syntactic pre-training (shared by the modes of each seed)\n"]
        out += [pretrain_table(pre)]
    out += ["## Test LF per genre (sentences)\n", genre_table(chosen, groups)]
    out += ["## Training time (wall clock; two runs shared the two cores)\n"]
    out += [compute_table(pre, groups)]
    grads = grad_table(chosen, groups)
    if grads.count("\n") > 2:
        out += [
            "## Gradient on the syntactic arc scores per sentence (train.log_grad_norms)\n",
            grads,
        ]
    if REFERENCE in chosen:
        for metric in metrics:
            out += [
                f"## SPIGOT against each mode: test {TITLES[metric]}, points "
                f"({resamples} resamples, seed {seed})\n",
                test_tables(chosen, groups, metric, resamples, seed),
            ]
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("runs", nargs="?", default="docs/results/propbank/runs", type=Path)
    p.add_argument("--collect", type=Path, help="copy the artifacts of this experiment first")
    p.add_argument("--out", type=Path, help="also write the report to this file")
    p.add_argument("--resamples", type=int, default=10_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--metrics", nargs="+", default=["lf", "nt_lf"], choices=sorted(METRICS))
    args = p.parse_args(argv)
    if args.collect:
        n = collect(args.collect, args.runs)
        print(
            f"copied the artifacts of {n} runs from {args.collect} to {args.runs}", file=sys.stderr
        )
    text = report(args.runs, args.resamples, args.seed, args.metrics)
    print(text)
    if args.out:
        args.out.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
