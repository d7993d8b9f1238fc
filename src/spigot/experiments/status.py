"""What ``spigot experiment ... --status`` reports: the state of every run of a grid (reused,
running, resumes, restarts, to do; :func:`run_state`) and the time the unfinished ones need
at the pace of the finished ones (:func:`time_left`). Nothing is trained or written."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from spigot.experiments.runner import Job, epochs_logged, reusable
from spigot.pipelines.base import config_differences

__all__ = ["run_state", "status", "time_left"]


def run_state(run_dir: Path, cfg_dict: dict[str, Any]) -> tuple[str, str]:
    """What :func:`execute` will do with the run in ``run_dir``: ``(state, detail)``, state one
    of ``"done"`` (reused), ``"running"`` (a process is training it now), ``"resumes"``,
    ``"restarts"`` (its last.pt or finished run has other settings: trained again), ``"to
    do"``."""
    done = reusable(run_dir, cfg_dict)
    return ("done", "") if done is not None else _unfinished_state(run_dir, cfg_dict)


def _unfinished_state(run_dir: Path, cfg_dict: dict[str, Any]) -> tuple[str, str]:
    """:func:`run_state` of a run that :func:`reusable` does not reuse."""
    from spigot.config import tomllib
    from spigot.pipelines.run import RunDirectoryBusy, check_not_busy
    from spigot.training import load_checkpoint

    epochs = epochs_logged(run_dir)
    if run_dir.is_dir():
        try:
            check_not_busy(run_dir)
        except RunDirectoryBusy as exc:
            return "running", f"process {exc.holder}, {epochs} epoch(s) logged"
    if (run_dir / "last.pt").is_file():
        try:
            old = load_checkpoint(run_dir / "last.pt").get("config") or {}
        except (ValueError, OSError) as exc:
            return "restarts", f"unreadable last.pt ({exc})"
        diff = config_differences(old, cfg_dict, ("train.progress", "train.checkpoint_every"))
        if diff:
            return "restarts", f"its last.pt has other settings: {', '.join(diff)}"
        return "resumes", f"{epochs} epoch(s) logged"
    if (run_dir / "config.toml").is_file():
        try:
            old = tomllib.loads((run_dir / "config.toml").read_text(encoding="utf-8"))
            diff = config_differences(old, cfg_dict)
        except (ValueError, OSError) as exc:
            return "restarts", f"unreadable config.toml ({exc})"
        if diff:
            return "restarts", f"the run there has other settings: {', '.join(diff)}"
        return "to do", "started before, stopped before its first checkpoint"
    return "to do", ""


def status(jobs_plan: Sequence[Job], expected: dict[tuple[str, int], int], jobs: int = 1) -> str:
    """A Markdown table of every job's :func:`run_state`, the totals, and the time the runs
    left would take (:func:`time_left`) with ``jobs`` parallel jobs."""
    lines = ["| run | state | detail | epochs at most |", "|---|---|---|---|"]
    counts: dict[str, int] = {}
    states: list[tuple[Job, str, dict[str, Any] | None]] = []
    for job in jobs_plan:
        key, cfg_dict, run_dir, _ = job
        done = reusable(Path(run_dir), cfg_dict)  # read once: the state and the time left
        if done is not None:
            state, detail = "done", ""
        else:
            state, detail = _unfinished_state(Path(run_dir), cfg_dict)
        counts[state] = counts.get(state, 0) + 1
        states.append((job, state, done))
        lines.append(f"| {key[0]}/seed{key[1]} | {state} | {detail} | {expected[key]} |")
    order = ("done", "running", "resumes", "restarts", "to do")
    total = ", ".join(f"{counts[s]} {s}" for s in order if s in counts)
    return "\n".join(lines) + f"\n\n{len(jobs_plan)} runs: {total}\n" + time_left(states, jobs)


def _family(label: str) -> str:
    """``"ste (eta=0.1)"`` -> ``"ste"``: a grid point's mode."""
    return label.split(" ")[0]


def time_left(states: Sequence[tuple[Job, str, dict[str, Any] | None]], jobs: int = 1) -> str:
    """The time the unfinished runs of ``states`` (``(job, state, results if done)``) need, at
    the pace of the finished ones: each run takes the mean logged ``train_seconds`` of the
    finished runs of its label (else of its mode, else of every finished run but the
    pre-training), less the epochs it has already logged at their mean seconds per epoch. An
    empty string when nothing is left or nothing has finished."""
    finished = [(job[0][0], res) for job, _, res in states if res and res.get("train_seconds")]
    left = [(job, state) for job, state, res in states if res is None]
    if not left or not finished:
        return ""

    def pace(label: str) -> tuple[float, float, bool] | None:
        """Mean seconds per run and per epoch, and whether they are of the run's own mode."""
        for own, pick in (
            (True, lambda lab: lab == label),
            (True, lambda lab: _family(lab) == _family(label)),
            (False, lambda lab: (lab == "pretrain") == (label == "pretrain")),
        ):
            runs = [r for lab, r in finished if pick(lab)]
            if runs:
                secs = [float(r["train_seconds"]) for r in runs]
                epochs = [max(int(r.get("epochs_run") or 1), 1) for r in runs]
                per_epoch = [s / e for s, e in zip(secs, epochs, strict=True)]
                return sum(secs) / len(secs), sum(per_epoch) / len(per_epoch), own
        return None

    seconds, unknown, borrowed = 0.0, 0, 0
    for (key, _, run_dir, _), state in left:
        p = pace(key[0])
        if p is None:
            unknown += 1
            continue
        borrowed += not p[2]
        logged = epochs_logged(Path(run_dir)) if state in ("resumes", "running") else 0
        seconds += max(p[0] - logged * p[1], 0.0)
    hours = seconds / 3600
    text = (
        f"Time left: about {hours:.1f} h of training for {len(left) - unknown} unfinished "
        f"run(s), each timed by the mean logged training time of the finished runs of its mode"
    )
    if borrowed:
        text += f" ({borrowed} by those of every mode: theirs has no finished run yet)"
    if jobs > 1:
        text += f"; about {hours / jobs:.1f} h with {jobs} jobs at the same pace"
    if unknown:
        text += f"; no estimate for {unknown} run(s): nothing like them has finished"
    return text + ".\n"
