"""The steps that every pipeline's ``spigot experiment`` shares: plan the jobs of a grid (each
seed's pre-training first, :func:`~spigot.experiments.runner.plan_jobs`), then either report
their status or run them (:func:`~spigot.experiments.runner.execute`), and gather the results
by variant. The pipelines add their own tables, notes and plots."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spigot.experiments.plan import ExperimentPlan
from spigot.experiments.runner import Job, execute, plan_jobs
from spigot.experiments.status import status

__all__ = ["GridResults", "run_grid"]


@dataclass
class GridResults:
    """What :func:`run_grid` ran."""

    jobs_plan: list[Job]
    """Every job, pre-training first."""
    done: dict[tuple[str, int], dict[str, Any]]
    """The results of every job by key ``(label, seed)``, pre-training included."""
    results: dict[str, list[dict[str, Any]]]
    """Variant label -> the results of its runs, in seed order (no pre-training)."""
    wall_seconds: float


def run_grid(
    config: Any,
    plan: ExperimentPlan,
    out: str | os.PathLike,
    *,
    pretrain: bool,
    uses_pretraining: Callable[[str], bool],
    init_key: str,
    init_file: str,
    expected_epochs: Callable[[dict[str, Any]], int],
    jobs: int = 2,
    progress: bool = True,
    reuse: bool = True,
    executor: str = "local",
    slurm: dict[str, Any] | None = None,
    status_only: bool = False,
) -> GridResults | str:
    """Run every variant and seed of ``plan`` in ``OUT`` (see :func:`plan_jobs` for
    ``pretrain``, ``uses_pretraining``, ``init_key``, ``init_file`` and :func:`execute` for the
    rest); ``expected_epochs(config dict)`` is the most epochs a run trains (for the progress
    bar and the status). With ``status_only``, return the :func:`status` text instead, having
    trained and written nothing."""
    out = Path(out)
    if not status_only:
        out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    jobs_plan, runs = plan_jobs(
        config,
        plan,
        out,
        pretrain=pretrain,
        uses_pretraining=uses_pretraining,
        init_key=init_key,
        init_file=init_file,
    )
    expected = {key: expected_epochs(cfg_dict) for key, cfg_dict, _, _ in jobs_plan}
    if status_only:
        return status(jobs_plan, expected, jobs)
    done = execute(
        jobs_plan,
        expected=expected,
        jobs=jobs,
        progress=progress,
        reuse=reuse,
        executor=executor,
        slurm=slurm,
    )
    results: dict[str, list[dict[str, Any]]] = {v.label: [] for v in plan.variants()}
    for label, seed in runs:
        results[label].append(done[(label, seed)])
    return GridResults(jobs_plan, done, results, time.perf_counter() - start)
