"""One training run's context, shared by every pipeline's ``fit``.

A pipeline's ``fit`` (:func:`spigot.pipelines.syn2sem.fit.fit`,
:func:`spigot.pipelines.sem2sent.fit.fit`) does what is its own (data, stages, results) between
the steps that are everyone's, in this order::

    with RunContext.start(task, out_dir, progress=progress, resume=resume) as run:
    ...                                   # pipeline checks and initialisation, model.to(run.device)
    log = run.open(task.config)           # lock the run directory; config.toml, metrics.jsonl
    trainer = run.trainer(model, patience, encoders)
    run.start_clock()
    run.save_last(task, trainer_state, stage_history)   # in every on_epoch callback
    run.finish(results)                   # results.json, the final log record, drop last.pt

Everything that can fail (device, precision, ``checkpoint_every``, ``accumulate``, the
checkpoint to resume) is checked by :meth:`RunContext.start`, before any file is written.
:meth:`RunContext.open` locks the directory (``OUT/.lock``) until the ``with`` block ends, so
that a second process started on the same run (a restarted experiment beside an old worker, a
second ``spigot train --resume``) fails with :class:`RunDirectoryBusy` instead of writing into
it too.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from spigot.config import dump_toml
from spigot.pipelines.base import SENTENCES_FILE, write_results
from spigot.training import (
    EpochStats,
    FitResult,
    JsonlLog,
    Trainer,
    atomic_torch_save,
    atomic_write_text,
    autocast_dtype,
    clean_temp_files,
    device_scope,
    parse_checkpoint_every,
    rank_and_world,
    resolve_device,
    seed_everything,
    truncate_log,
)

__all__ = ["LOCK_FILE", "RunContext", "RunDirectoryBusy", "check_not_busy"]

LOCK_FILE = ".lock"
"""Held (``flock``) by the process that trains into a run directory; holds its pid."""


class RunDirectoryBusy(OSError):
    """Another process is training into the run directory; ``holder`` is its pid as the lock
    file holds it (``"?"`` if unreadable)."""

    def __init__(self, message: str, holder: str = "?") -> None:
        super().__init__(message)
        self.holder = holder


def _lock(out: Path) -> Any:
    """An open ``OUT/.lock`` holding an exclusive ``flock``, or None without ``fcntl``.

    Raises :class:`RunDirectoryBusy` (naming the holder's pid) if another process holds it.
    The holder deletes the file when it lets go (:meth:`RunContext.release`); a lock taken on a
    file that was deleted meanwhile is dropped and taken again on the new file.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        return None
    path = out / LOCK_FILE
    while True:
        handle = path.open("a+", encoding="utf-8")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            holder = handle.read().strip() or "?"
            handle.close()
            raise RunDirectoryBusy(
                f"{out} is in use: process {holder} is training into it (two processes must "
                "not write one run directory; wait for it, or stop it first)",
                holder,
            ) from None
        try:
            same = os.stat(path).st_ino == os.fstat(handle.fileno()).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return handle
        handle.close()  # its holder deleted the file between our open and our lock


def check_not_busy(out_dir: str | os.PathLike) -> None:
    """Raise :class:`RunDirectoryBusy` if a process is training into ``out_dir``."""
    out = Path(out_dir)
    if (out / LOCK_FILE).is_file():
        handle = _lock(out)
        if handle is not None:
            handle.close()


@dataclass
class RunContext:
    """Where and how one run trains: its process, device, directory, log and resume state.

    Attributes:
        out: the run directory.
        rank, world: this process and the number of processes (1 without ``torchrun``).
        progress: progress bars (process 0 only).
        device: the torch device of the model and its batches (``train.device``).
        precision: ``train.precision``.
        accumulate: ``train.accumulate``.
        every: the parsed ``train.checkpoint_every``.
        state: the ``last.pt`` payload being resumed, or None.
        log: the metrics log, once :meth:`open` has run.
    """

    out: Path
    rank: int
    world: int
    progress: bool
    device: Any
    precision: str
    accumulate: int
    every: Any
    state: dict[str, Any] | None
    log: JsonlLog | None = None
    started: float = field(default_factory=time.perf_counter)
    _lock: Any = field(default=None, repr=False)

    # -- one process per run directory ---------------------------------------------------------
    def __enter__(self) -> RunContext:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def release(self) -> None:
        """Delete the run directory's lock file and release the lock (the lock alone is also
        released when the process ends, however it ends)."""
        if self._lock is not None:
            (self.out / LOCK_FILE).unlink(missing_ok=True)
            self._lock.close()
            self._lock = None

    def _acquire(self) -> None:
        """Lock the run directory for this process (POSIX ``flock`` on ``OUT/.lock``, which
        then holds this pid), or raise :class:`RunDirectoryBusy`. Without ``fcntl``
        (Windows) there is no lock."""
        handle = _lock(self.out)
        if handle is not None:
            handle.seek(0)
            handle.truncate()
            handle.write(f"{os.getpid()}\n")
            handle.flush()
        self._lock = handle

    @classmethod
    def start(
        cls, task: Any, out_dir: str | os.PathLike, *, progress: bool | None, resume: bool
    ) -> RunContext:
        """Check the settings, load the state to resume, seed this process."""
        cfg, t = task.config, task.config.train
        rank, world = rank_and_world()
        out = Path(out_dir)
        device = resolve_device(t.device)
        autocast_dtype(t.precision, device)  # validates train.precision on this device
        every = parse_checkpoint_every(t.checkpoint_every)
        if t.accumulate < 1:
            raise ValueError(f"train.accumulate must be >= 1, got {t.accumulate}")
        state: dict[str, Any] | None = None
        if resume:
            state = task.resume_state(out)
            n = state["trainer"].get("world_size", 1)
            if n != world:
                raise ValueError(
                    f"cannot resume {out}: it was trained by {n} process(es), this is {world}; "
                    f"resume it with as many (torchrun --nproc_per_node={n})"
                )
        # each process its own dropout masks (process 0 as a single process would)
        seed_everything(cfg.seed + 1_000_003 * rank)
        return cls(
            out=out,
            rank=rank,
            world=world,
            progress=bool((t.progress if progress is None else progress) and rank == 0),
            device=device,
            precision=t.precision,
            accumulate=t.accumulate,
            every=every,
            state=state,
        )

    # -- what a resumed run brings -------------------------------------------------------------
    @property
    def main(self) -> bool:
        """Whether this process writes the run directory and evaluates (process 0)."""
        return self.rank == 0

    @property
    def resumed_stage(self) -> str | None:
        """The stage (trainer phase) the resumed run was in, or None."""
        return self.state["trainer"]["phase"] if self.state else None

    @property
    def stages_before(self) -> list[dict[str, Any]]:
        """The epoch records of the stages the resumed run had finished."""
        return self.state["stage_history"] if self.state else []

    def stage_resume(self, phase: str | None = None) -> dict[str, Any] | None:
        """The trainer state to resume a stage from: the resumed run's, if it was in ``phase``
        (any stage when ``phase`` is None), else None."""
        if self.state is None or (phase is not None and self.resumed_stage != phase):
            return None
        return self.state["trainer"]  # type: ignore[no-any-return]

    def start_clock(self) -> None:
        """Start counting training time (after the data and the model are ready)."""
        self.started = time.perf_counter()

    def elapsed(self) -> float:
        """Training seconds so far, the interrupted run's included."""
        before = self.state["elapsed"] if self.state else 0.0
        return float(before) + time.perf_counter() - self.started

    # -- the run directory ---------------------------------------------------------------
    @property
    def log_path(self) -> Path:
        return self.out / "metrics.jsonl"

    @property
    def last_path(self) -> Path:
        return self.out / "last.pt"

    def open(self, config: Any) -> JsonlLog:
        """Create the run directory (process 0): ``config.toml`` and the metrics log (a
        resumed run's log is cut back to what its ``last.pt`` had seen)."""
        if self.main:
            self.out.mkdir(parents=True, exist_ok=True)
            self._acquire()
            if self.state is not None:
                clean_temp_files(self.out)  # of a write that the kill interrupted
                truncate_log(self.log_path, self.state.get("log_bytes"))
            atomic_write_text(dump_toml(config), self.out / "config.toml")
        self.log = JsonlLog(self.log_path if self.main else None, append=self.state is not None)
        return self.log

    def trainer(
        self,
        model: nn.Module,
        patience: int,
        encoders: Sequence[nn.Module],
        *,
        lr: float,
        clip: float,
    ) -> Trainer:
        """The shared :class:`~spigot.training.Trainer` for one stage of this run."""
        return Trainer(
            model,
            lr=lr,
            clip=clip,
            patience=patience,
            log=self.log,
            progress=self.progress,
            device=self.device,
            precision=self.precision,
            autocast=list(encoders),
            accumulate=self.accumulate,
            checkpoint_every=self.every,
        )

    def on_device(self, encoders: Sequence[nn.Module]) -> Any:
        """The evaluation scope: the run's device and the encoders' autocast."""
        return device_scope(self.device, self.precision, list(encoders))

    def save_last(
        self,
        task: Any,
        trainer_state: dict[str, Any],
        stage_history: Sequence[Any],
        **extra: Any,
    ) -> None:
        """Write ``last.pt`` atomically: the trainer's state, the finished stages' epochs, the
        time so far, ``extra`` and the log's size at this point (a resumed run drops the
        records written after it: their work is redone)."""
        payload = task.resume_payload(
            trainer=trainer_state,
            stage_history=[dataclasses.asdict(e) for e in stage_history],
            elapsed=self.elapsed(),
            **extra,
            log_bytes=self.log_path.stat().st_size,
        )
        atomic_torch_save(payload, self.last_path)

    def results(
        self,
        task: Any,
        fit: FitResult,
        final: dict[str, Any],
        history: Sequence[EpochStats],
        best_path: Path,
        *,
        train_seconds: float,
        timed: Sequence[EpochStats] | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        """The ``results.json`` fields every pipeline writes, then ``extra``: the run's
        identity, the last stage's best epoch (``fit``), the final ``dev``/``test`` scores, the
        whole ``history`` (``curve``, ``epochs_run``) and the training speed over the epochs
        ``timed`` (default: all of them), ``train_seconds`` (:meth:`elapsed` when training
        ended)."""
        timed = list(history if timed is None else timed)
        seconds = sum(e.seconds for e in timed)
        n = max(len(timed), 1)
        cfg = task.config
        return {
            "task": task.name,
            "mode": cfg.mode,
            "seed": cfg.seed,
            "best_epoch": fit.best_epoch,
            "stopped_early": fit.stopped_early,
            "dev": final["dev"],
            "test": final.get("test"),
            "epochs_run": len(history),
            **extra,
            "seconds_per_epoch": seconds / n if timed else 0.0,
            "cpu_seconds_per_epoch": sum(e.cpu_seconds for e in timed) / n if timed else 0.0,
            "sentences_per_second": (
                sum(e.sentences for e in timed) / seconds if timed and seconds else 0.0
            ),
            "train_seconds": train_seconds,
            "device": str(self.device),
            "processes": self.world,
            "curve": [
                {"phase": e.phase, "epoch": e.epoch, "loss": e.loss, **e.metrics} for e in history
            ],
            "checkpoint": str(best_path),
            "sentences": SENTENCES_FILE,
        }

    def finish(self, results: dict[str, Any]) -> dict[str, Any]:
        """Log the final record, write ``results.json``, remove ``last.pt``."""
        assert self.log is not None
        self.log.write({"event": "final", **{k: v for k, v in results.items() if k != "curve"}})
        write_results(results, self.out / "results.json")
        self.last_path.unlink(missing_ok=True)
        return results
