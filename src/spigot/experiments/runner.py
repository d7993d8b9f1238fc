"""Running a grid of runs: reuse of finished runs, resume, dependencies, worker processes.

Every pipeline's ``spigot experiment`` plans its runs as *jobs* ``(key, config dict, run
directory, key of the job it waits for or None)`` (e.g. the runs of a seed wait for that seed's
pre-training) and hands them to :func:`execute`, which

* keeps the results of any run directory that already finished with exactly the same
  configuration (:func:`reusable`) and resumes any run interrupted in the middle (from its
  ``last.pt``), so an interrupted experiment continues where it stopped;
* runs the others in ``jobs`` worker processes (``spawn``; one torch thread each by the
  configs), or as one Slurm job each through ``submitit`` (``executor="slurm"``), a job
  starting once the job it waits for has finished;
* shows one progress bar over the training epochs of all runs, following the workers' logs.

A worker ends itself when the experiment process that started it is gone, so an experiment
killed and restarted never has two processes training one run (each run directory is also
locked while a process trains into it: :class:`spigot.pipelines.run.RunContext`).

Results do not depend on ``jobs``. The helpers below (:func:`mean_sd`, :func:`to_csv`, ...)
serve the pipelines' result tables.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from spigot.config import config_from_dict
from spigot.experiments.significance import mean_sd
from spigot.pipelines.base import LEGACY_VALUES, config_differences

__all__ = [
    "Job",
    "cell",
    "epochs_logged",
    "EXECUTORS",
    "LEGACY_VALUES",
    "execute",
    "get",
    "mean_sd",
    "plan_jobs",
    "plural",
    "reusable",
    "run_one",
    "slurm_params",
    "to_csv",
]

logger = logging.getLogger("spigot")

Job = tuple[tuple[str, int], dict[str, Any], str, "tuple[str, int] | None"]
"""``(key, config dict, run directory, key of the job it waits for or None)``; a key is
``(label, seed)``."""


def run_one(
    cfg_dict: dict[str, Any], out_dir: str, progress: bool, resume: bool = True
) -> dict[str, Any]:
    """Train one run of the pipeline named by ``cfg_dict["task"]``; executed in a worker.

    With ``resume``, a run that has finished in ``out_dir`` with the same config since the
    experiment was planned (by another process) is reused as it is, and one interrupted with
    the same config continues from its ``last.pt``; otherwise the run starts from scratch.
    """
    from spigot.pipelines import task_class

    logging.getLogger("spigot").setLevel(logging.INFO if progress else logging.WARNING)
    if resume:
        done = reusable(Path(out_dir), cfg_dict)
        if done is not None:
            logger.info("%s finished meanwhile: reusing it", out_dir)
            return done
    cfg = config_from_dict(cfg_dict)
    task_cls = task_class(cfg.task)
    splits = task_cls.load_splits(cfg)
    if hasattr(task_cls, "from_splits"):
        task = task_cls.from_splits(cfg, splits)
    else:
        task = task_cls.from_config(cfg, splits["train"])
    can_resume = False
    if resume and (Path(out_dir) / "last.pt").is_file():
        try:
            task.resume_state(out_dir)
            can_resume = True
        except ValueError as exc:
            logger.warning("%s: starting again (%s)", out_dir, exc)
    return task.fit(splits, out_dir, progress=progress, resume=can_resume)


def cell(m: float, sd: float, digits: int) -> str:
    if math.isnan(m):
        return "–"
    return f"{m:.{digits}f} ± {sd:.{digits}f}"


def to_csv(rows: Sequence[dict[str, Any]]) -> str:
    buf = io.StringIO()
    if rows:
        w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    return buf.getvalue()


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def epochs_logged(run_dir: Path) -> int:
    """How many epoch records the run's ``metrics.jsonl`` holds so far."""
    try:
        text = (run_dir / "metrics.jsonl").read_text(encoding="utf-8")
    except OSError:
        return 0
    return text.count('"event": "epoch"')


def _same_config(old: dict[str, Any], new: dict[str, Any]) -> bool:
    """Whether a run written with ``old`` (a ``config.toml``) ran with ``new``
    (:func:`spigot.pipelines.base.config_differences`)."""
    return not config_differences(old, new)


def reusable(run_dir: Path, cfg_dict: dict[str, Any]) -> dict[str, Any] | None:
    """The results of a finished run in ``run_dir`` if it ran with exactly ``cfg_dict``.

    The run's ``config.toml`` is compared as written, every key included: a file from an
    older spigot that lacks a newer key does not count as that key's current default, except
    for the keys of :data:`LEGACY_VALUES` at the values that reproduce the old behaviour.
    """
    from spigot.config import tomllib

    res_path, cfg_path = run_dir / "results.json", run_dir / "config.toml"
    if not (res_path.is_file() and cfg_path.is_file()):
        return None
    try:
        if not _same_config(tomllib.loads(cfg_path.read_text(encoding="utf-8")), cfg_dict):
            return None
        return json.loads(res_path.read_text(encoding="utf-8"))
    except (ValueError, OSError):
        return None


def get(res: dict[str, Any], split: str, key: str) -> float:
    """``res[split][key]`` as a float (NaN when absent)."""
    part = res.get(split) or {}
    v = part.get(key)
    return float("nan") if v is None else float(v)


EXECUTORS = ("local", "slurm", "submitit-local")
"""Where :func:`execute` runs the jobs (see its ``executor`` argument)."""


class _SubmititPool:
    """``submit(fn, *args)`` -> a job with ``done()`` and ``result()``, through submitit."""

    def __init__(self, kind: str, params: dict[str, Any]) -> None:
        try:
            import submitit
        except ImportError as exc:
            raise ImportError(
                "the Slurm executor needs submitit: pip install 'torch-spigot[cluster]'"
            ) from exc
        params = dict(params)
        folder = params.pop("folder", "runs/submitit")
        if kind == "slurm":
            self.executor: Any = submitit.AutoExecutor(folder=folder, cluster="slurm")
        else:
            self.executor = submitit.LocalExecutor(folder=folder)
        if params:
            self.executor.update_parameters(**params)

    def submit(self, fn: Any, *args: Any) -> Any:
        return self.executor.submit(fn, *args)

    def __enter__(self) -> _SubmititPool:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def _exit_with_parent(parent: int, poll: float = 1.0) -> None:
    """Worker initializer: end this worker as soon as the experiment process that started it
    is gone (killed, say), instead of training on as an orphan beside a restarted experiment.
    The run it leaves resumes from its last checkpoint."""
    import threading

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll)
        os._exit(1)

    threading.Thread(target=watch, name="spigot-parent-watch", daemon=True).start()


def _pool(executor: str, jobs: int, slurm: dict[str, Any]) -> Any:
    if executor == "local":
        import multiprocessing as mp

        return ProcessPoolExecutor(
            max_workers=jobs,
            mp_context=mp.get_context("spawn"),
            initializer=_exit_with_parent,
            initargs=(os.getpid(),),
        )
    return _SubmititPool(executor, slurm)


def _wait_any(running: list[Any], poll: float) -> list[Any]:
    """The jobs of ``running`` that have finished, waiting up to ``poll`` seconds for one."""
    from concurrent.futures import FIRST_COMPLETED, Future, wait

    if all(isinstance(f, Future) for f in running):
        return list(wait(running, timeout=poll, return_when=FIRST_COMPLETED)[0])
    deadline = time.monotonic() + poll
    while True:
        ready = [f for f in running if f.done()]
        if ready or time.monotonic() >= deadline:
            return ready
        time.sleep(min(0.5, poll))


def execute(
    jobs_plan: Sequence[Job],
    *,
    expected: dict[tuple[str, int], int],
    jobs: int = 2,
    progress: bool = True,
    reuse: bool = True,
    executor: str = "local",
    slurm: dict[str, Any] | None = None,
    poll: float = 5.0,
) -> dict[tuple[str, int], dict[str, Any]]:
    """Run every job of ``jobs_plan`` (see the module docstring); return the results by key.

    Args:
        jobs_plan: the jobs, a job listed after the one it waits for.
        expected: the most training epochs each job will run (for the progress bar).
        jobs: worker processes (1: run in this process, with the runs' own progress bars).
        progress: show the progress bar.
        reuse: keep finished runs with the same config and resume interrupted ones.
        executor: ``"local"`` (worker processes on this machine), ``"slurm"`` (one cluster job
            per run through ``submitit``, ``pip install torch-spigot[cluster]``) or
            ``"submitit-local"`` (submitit's local executor: the Slurm path, run here; for
            tests and debugging).
        slurm: for ``"slurm"``: ``submitit`` parameters, e.g. ``{"folder": "runs/x/slurm",
            "slurm_partition": "gpu", "timeout_min": 240, "gpus_per_node": 1,
            "cpus_per_task": 2, "mem_gb": 16}`` (``folder``: where submitit keeps its logs).
        poll: seconds between checks of the running jobs.
    """
    if executor not in EXECUTORS:
        raise ValueError(f"executor must be one of {', '.join(EXECUTORS)}, got {executor!r}")
    done: dict[tuple[str, int], dict[str, Any]] = {}
    if reuse:
        for key, cfg_dict, run_dir, _ in jobs_plan:
            old = reusable(Path(run_dir), cfg_dict)
            if old is not None:
                logger.info("reusing the finished run in %s", run_dir)
                done[key] = old
    todo = [j for j in jobs_plan if j[0] not in done]
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

    if not todo:
        pass
    elif executor == "local" and jobs <= 1:
        for key, cfg_dict, run_dir, _ in todo:  # pre-training jobs come first in the plan
            finished(key, run_one(cfg_dict, run_dir, progress, reuse))
    else:
        with _pool(executor, jobs, slurm or {}) as pool:
            running: dict[Any, tuple[str, int]] = {}
            waiting = list(todo)
            dirs = {key: Path(run_dir) for key, _, run_dir, _ in todo}
            while waiting or running:
                ready = [j for j in waiting if j[3] is None or j[3] in done]
                for job in ready:
                    waiting.remove(job)
                    key, cfg_dict, run_dir, _ = job
                    running[pool.submit(run_one, cfg_dict, run_dir, False, reuse)] = key
                if not running:
                    missing = sorted({j[3] for j in waiting if j[3] is not None})
                    raise RuntimeError(f"jobs wait for runs that never finished: {missing}")
                finished_now = _wait_any(list(running), poll)
                for fut in finished_now:
                    key = running.pop(fut)
                    try:
                        res = fut.result()
                    except Exception as exc:
                        raise RuntimeError(
                            f"run {key[0]}/seed{key[1]} failed in {dirs[key]}: {exc}"
                        ) from exc
                    finished(key, res)
                if bar is not None:  # the workers show no bars: follow their logs
                    for key in running.values():
                        advance(key, epochs_logged(dirs[key]))
    if bar is not None:
        bar.close()
    return done


def slurm_params(args: Any, out: Path) -> dict[str, Any]:
    """submitit parameters from ``spigot experiment``'s ``--slurm-*`` options (absent ones
    are left to submitit's defaults); submitit's logs go to ``OUT/slurm``."""
    params: dict[str, Any] = {"folder": str(out / "slurm")}
    for opt, key in (
        ("slurm_partition", "slurm_partition"),
        ("slurm_time", "timeout_min"),
        ("slurm_gpus", "gpus_per_node"),
        ("slurm_cpus", "cpus_per_task"),
        ("slurm_mem_gb", "mem_gb"),
        ("slurm_account", "slurm_account"),
    ):
        value = getattr(args, opt, None)
        if value is not None:
            params[key] = value
    return params


def plan_jobs(
    config: Any,
    plan: Any,
    out: Path,
    *,
    pretrain: bool,
    uses_pretraining: Callable[[str], bool],
    init_key: str,
    init_file: str,
) -> tuple[list[Job], list[tuple[str, int]]]:
    """The jobs of an experiment whose modes share a per-seed pre-trained parser.

    With ``pretrain``, each seed of the modes for which ``uses_pretraining(mode)`` first gets
    a pre-training job in ``OUT/pretrain/seed<seed>/`` (the config in mode ``pipeline`` with
    ``train.epochs = 0`` and ``train.max_step = 1``, which it does not use); every run of such
    a mode then waits for it and starts from its ``init_file`` through the config key
    ``init_key`` (with ``train.pretrain_epochs = 0``).
    Each variant of ``plan`` (an :class:`~spigot.experiments.plan.ExperimentPlan`) runs its
    seeds in ``OUT/<variant dir>/seed<seed>/``.

    Returns:
        ``(jobs, runs)``: the jobs, pre-training first, and the ``(variant label, seed)`` of
        every run in order.
    """
    from spigot.config import apply_overrides

    jobs: list[Job] = []
    pre_seeds = sorted({s for m in plan.modes if uses_pretraining(m) for s in plan.seeds_of(m)})
    if pretrain:
        for seed in pre_seeds:
            # pre-training trains no estimator: SPIGOT's train.max_step stays at its default,
            # so that the pre-trained parsers are shared whatever the modes' step
            pre = {"mode": "pipeline", "seed": seed, "train.epochs": 0, "train.max_step": 1.0}
            cfg = apply_overrides(config, pre)
            jobs.append(
                (("pretrain", seed), cfg.to_dict(), str(out / "pretrain" / f"seed{seed}"), None)
            )
    runs = []
    for v in plan.variants():
        for seed in plan.seeds_of(v.mode):
            over: dict[str, Any] = {"mode": v.mode, "seed": seed}
            if v.eta is not None:
                over["train.eta"] = v.eta
            after = None
            if pretrain and uses_pretraining(v.mode):
                path = out / "pretrain" / f"seed{seed}" / init_file
                over.update({"train.pretrain_epochs": 0, init_key: str(path)})
                after = ("pretrain", seed)
            cfg = apply_overrides(config, over)
            runs.append((v.label, seed))
            jobs.append(
                ((v.label, seed), cfg.to_dict(), str(out / v.dirname / f"seed{seed}"), after)
            )
    return jobs, runs
