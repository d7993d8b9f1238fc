"""One training run's context, shared by every pipeline's ``fit``.

A pipeline's ``fit`` (:func:`spigot.pipelines.syn2sem.fit.fit`,
:func:`spigot.pipelines.sem2sent.fit.fit`) does what is its own (data, stages, results) between
the steps that are everyone's, in this order::

    run = RunContext.start(task, out_dir, progress=progress, resume=resume)
    ...                                   # pipeline checks and initialisation, model.to(run.device)
    log = run.open(task.config)           # the run directory, config.toml, metrics.jsonl
    trainer = run.trainer(model, patience, encoders)
    run.start_clock()
    run.save_last(task, trainer_state, stage_history)   # in every on_epoch callback
    run.finish(results)                   # results.json, the final log record, drop last.pt

Everything that can fail (device, precision, ``checkpoint_every``, ``accumulate``, the
checkpoint to resume) is checked by :meth:`RunContext.start`, before any file is written.
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
from spigot.pipelines.base import write_results
from spigot.training import (
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

__all__ = ["RunContext"]


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

    def finish(self, results: dict[str, Any]) -> dict[str, Any]:
        """Log the final record, write ``results.json``, remove ``last.pt``."""
        assert self.log is not None
        self.log.write({"event": "final", **{k: v for k, v in results.items() if k != "curve"}})
        write_results(results, self.out / "results.json")
        self.last_path.unlink(missing_ok=True)
        return results
