"""Measure again the parser's dev scores before the sentiment stage of finished SST runs.

Two runs of the SST table (``ste/seed4`` and ``marginals/seed4``) were interrupted in their
sentiment stage and resumed by code that measured the parser's scores "before" on a freshly
initialised parser (all zeros; fixed since: ``last.pt`` keeps the scores). Their training and
their sentiment scores are unaffected. This script evaluates, on the parser's dev data, the
parser each run started from (its ``train.init_parser``) exactly as the run does, and writes
the scores into the run's ``results.json`` as ``parser_dev_before``, keeping the wrong ones as
``parser_dev_before_at_resume``.

Before writing, it measures the runs given with ``--check`` (uninterrupted runs from the same
pre-trained parsers) the same way and stops unless it reproduces their recorded scores
exactly::

    python docs/results/sem2sent/sst/remeasure_before.py \\
        runs/sem2sent-sst/ste/seed4 runs/sem2sent-sst/marginals/seed4 \\
        --check runs/sem2sent-sst/spigot/seed4 runs/sem2sent-sst/pipeline/seed4
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from spigot.config import load_config
from spigot.pipelines.sem2sent.task import Sem2SentTask
from spigot.training import load_checkpoint


def measure(run: Path, cache: dict[str, Any]) -> dict[str, float]:
    """The dev scores of the parser that ``run`` started from."""
    cfg = load_config(run / "config.toml")
    start = cfg.train.init_parser
    if not start:
        raise SystemExit(f"{run}: no train.init_parser; this script measures only such runs")
    if "splits" not in cache:
        cache["splits"] = Sem2SentTask.load_splits(cfg)
    if start not in cache:  # as the run measures it (the label rule: synthetic data only)
        splits = cache["splits"]
        task = Sem2SentTask.from_checkpoint(load_checkpoint(start))
        scores = task.evaluate_parser(splits.parser["dev"])
        scores.update(task.rule_accuracy(splits["dev"]))
        cache[start] = scores
    return dict(cache[start])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", type=Path, help="finished runs to repair")
    ap.add_argument(
        "--check", nargs="+", type=Path, required=True, help="uninterrupted runs to reproduce"
    )
    args = ap.parse_args(argv)
    cache: dict[str, Any] = {}
    for run in args.check:
        recorded = json.loads((run / "results.json").read_text())["parser_dev_before"]
        if measure(run, cache) != recorded:
            print(f"{run}: the measurement differs from the recorded scores", file=sys.stderr)
            return 1
        print(f"{run}: reproduced (LF {recorded['lf']:.4f})")
    for run in args.runs:
        path = run / "results.json"
        res = json.loads(path.read_text())
        if "parser_dev_before_at_resume" in res:
            print(f"{run}: already repaired")
            continue
        res["parser_dev_before_at_resume"] = res["parser_dev_before"]
        res["parser_dev_before"] = measure(run, cache)
        path.write_text(json.dumps(res, indent=2) + "\n")
        print(f"{run}: parser LF before {res['parser_dev_before']['lf']:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
