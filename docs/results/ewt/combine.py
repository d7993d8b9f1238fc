"""Combine the EWT runs of docs/results.md into one table, CSV and learning-curve plot.

    python docs/results/ewt/combine.py [RUNS_DIR] [OUT_DIR]

Reads ``RUNS_DIR/ewt/{pipeline,ste,marginals}/seed*`` and ``RUNS_DIR/ewt/spigot/seed*``
(``train.eta_scale = "batch"``) written by ``spigot experiment``, and
``RUNS_DIR/ewt-sentence/spigot/seed*`` (``"sentence"``) written by ``spigot train``. Writes
``OUT_DIR/results.md``, ``results.csv``, ``runs.csv`` and ``learning_curve.png``. The
defaults are ``runs`` and ``docs/results/ewt``.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

from spigot.pipelines.syn2sem.experiment import format_table, plot_curves, summarize


def main() -> None:
    runs = Path(sys.argv[1] if len(sys.argv) > 1 else "runs")
    out = Path(sys.argv[2] if len(sys.argv) > 2 else "docs/results/ewt")
    groups = {
        "pipeline": runs / "ewt" / "pipeline",
        "ste": runs / "ewt" / "ste",
        "marginals": runs / "ewt" / "marginals",
        "spigot": runs / "ewt-sentence" / "spigot",
        "spigot (eta_scale=batch)": runs / "ewt" / "spigot",
    }
    results = {}
    for name, folder in groups.items():
        seeds = sorted(folder.glob("seed*/results.json"))
        if not seeds:
            raise SystemExit(f"no finished run in {folder}")
        results[name] = [json.loads(p.read_text()) for p in seeds]
    rows = summarize(results)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.md").write_text(format_table(rows), encoding="utf-8")
    with (out / "results.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    with (out / "runs.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(
            [
                "mode",
                "seed",
                "best_epoch",
                "dev_lf",
                "test_lf",
                "dev_uas",
                "test_uas",
                "sec_per_epoch",
                "sent_per_sec",
            ]
        )
        for name, rs in results.items():
            for r in rs:
                w.writerow(
                    [
                        name,
                        r["seed"],
                        r["best_epoch"],
                        r["dev"]["lf"],
                        r["test"]["lf"],
                        r["dev"]["uas"],
                        r["test"]["uas"],
                        r["seconds_per_epoch"],
                        r["sentences_per_second"],
                    ]
                )
    plot_curves(results, out / "learning_curve.png")
    print(format_table(rows), end="")
    for name, rs in results.items():  # dev LF / UAS after each epoch, mean over seeds
        curves = [[c for c in r["curve"] if c["phase"] != "syntax"] for r in rs]
        cells = []
        for e in range(min(len(c) for c in curves)):
            lf = sum(c[e]["lf"] for c in curves) / len(curves)
            uas = sum(c[e]["uas"] for c in curves) / len(curves)
            cells.append(f"{100 * lf:.1f} / {100 * uas:.1f}")
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
