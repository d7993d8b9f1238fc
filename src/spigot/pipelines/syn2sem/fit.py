"""Training of pipeline 1: the syntactic stage, then the semantic (or joint) stage.

:func:`fit` is :meth:`Syn2SemTask.fit <spigot.pipelines.syn2sem.task.Syn2SemTask.fit>`; the
epoch loop, early stopping, resume, devices and data-parallel training are the shared
:class:`spigot.training.Trainer`'s.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from spigot.config import dump_toml
from spigot.data import Sentence
from spigot.models.diagnostics import syntax_summary
from spigot.pipelines.base import write_results
from spigot.pipelines.syn2sem.data import summary
from spigot.pipelines.syn2sem.outputs import SENTENCES_FILE, write_sentences
from spigot.training import (
    DataError,
    EpochStats,
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

if TYPE_CHECKING:  # pragma: no cover
    from spigot.pipelines.syn2sem.task import Syn2SemTask

__all__ = ["fit"]

logger = logging.getLogger("spigot")

_MONITOR_FIELDS = ("sums", "n_sentences", "cos_sum", "n_cos")


def fit(
    task: Syn2SemTask,
    splits: dict[str, list[Sentence]],
    out_dir: str | os.PathLike,
    *,
    progress: bool | None = None,
    resume: bool = False,
) -> dict[str, Any]:
    """Train ``task`` with its config's mode; write the run directory; return the results.

    The run directory gets ``config.toml``, ``metrics.jsonl`` (one record per epoch plus
    the final scores, and a ``data`` record with what reading the files skipped),
    ``best.pt`` (best dev labeled F1, written atomically), ``syntax.pt`` (the syntactic
    parser after the syntactic stage, if one ran), ``results.json`` and
    ``sentences.jsonl.gz`` (per-sentence counts of the dev and test scores of the best
    model, :mod:`spigot.pipelines.syn2sem.outputs`). While the run is in progress,
    ``last.pt`` holds everything needed to continue it after a crash or a kill (written
    atomically after every epoch, and every ``train.checkpoint_every`` optimizer steps or
    minutes, and removed at the end). Nothing is written before the settings, the data and
    ``train.init_syntax`` have been checked.

    The model trains on ``train.device`` with ``train.precision`` autocast in its encoders.
    Under ``torchrun`` (a process group initialised by the caller, see
    :func:`spigot.training.init_distributed`) every process runs this function: they train
    together, and process 0 alone writes the run directory and evaluates; the others return
    an empty dict.

    Args:
        splits: ``{"train", "dev", "test"}`` sentences (a
            :class:`~spigot.pipelines.syn2sem.data.Splits` adds its report to the log).
        out_dir: the run directory.
        progress: progress bars (default: ``train.progress``).
        resume: continue the interrupted run in ``out_dir`` from its ``last.pt``, which
            must have been written with the same config (and number of processes); the
            result is the same as if the run had never stopped.
    """
    cfg, t = task.config, task.config.train
    rank, world = rank_and_world()
    main = rank == 0
    progress = (t.progress if progress is None else progress) and main
    out = Path(out_dir)
    last_path = out / "last.pt"
    # -- everything that can fail, before any file is written --------------------------
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
    train_it = task.batches(splits["train"], train=True)
    if train_it.n_skipped and main:
        logger.warning(
            "skipped %d training sentences longer than data.max_length=%d",
            train_it.n_skipped,
            cfg.data.max_length,
        )
    if not train_it.kept:
        raise DataError("no training sentence is left after the length filter")
    init_syntax = bool(t.init_syntax and cfg.mode != "none" and state is None)
    if init_syntax:
        task.load_syntax(t.init_syntax)
    task.model.to(device)
    # -- the run directory ---------------------------------------------------------------
    log_path = out / "metrics.jsonl"
    if main:
        out.mkdir(parents=True, exist_ok=True)
        if state is not None:
            clean_temp_files(out)  # of a write that the kill interrupted
            truncate_log(log_path, state.get("log_bytes"))
        atomic_write_text(dump_toml(cfg), out / "config.toml")
    log = JsonlLog(log_path if main else None, append=state is not None)
    for name in ("dev", "test"):
        if main:
            task.warn_unknown_labels(splits.get(name) or [], name)
    dev = splits["dev"]
    n_params = sum(p.numel() for p in task.model.parameters())
    log.write(
        {
            "event": "start",
            "resumed": state is not None,
            "task": task.name,
            "mode": cfg.mode,
            "seed": cfg.seed,
            "device": str(device),
            "precision": t.precision,
            "processes": world,
            "n_train": len(train_it.kept),
            "n_dev": len(dev),
            "n_test": len(splits.get("test") or []),
            "n_skipped_train": train_it.n_skipped,
            "n_parameters": n_params,
            "vocab_sizes": {k: len(v) for k, v in task.vocabs.items()},
        }
    )
    report = getattr(splits, "report", None)
    if report:
        log.write({"event": "data", **report})
    if init_syntax:
        log.write({"event": "init_syntax", "path": t.init_syntax})

    encoders = [task.model.syntax.encoder, task.model.semantics.encoder]

    def trainer(patience: int) -> Trainer:
        return Trainer(
            task.model,
            lr=t.lr,
            clip=t.clip,
            patience=patience,
            log=log,
            progress=progress,
            device=device,
            precision=t.precision,
            autocast=encoders,
            accumulate=t.accumulate,
            checkpoint_every=every,
        )

    history: list[Any] = []
    start = time.perf_counter()
    phase = "semantics" if cfg.mode in ("pipeline", "none") else "joint"
    # a run resumed in its second stage has its first stage's history in the state
    done_before: list[dict[str, Any]] = state["stage_history"] if state else []
    resume_stage = state["trainer"]["phase"] if state else None
    elapsed_before = state["elapsed"] if state else 0.0

    monitor = task.model.grad_monitor
    if monitor is not None and state is not None and state.get("monitor"):
        for k in _MONITOR_FIELDS:  # the sums of the epoch that the kill interrupted
            setattr(monitor, k, state["monitor"][k])

    def on_epoch(stage_history: list[Any]) -> Callable[[dict[str, Any]], None]:
        def save(trainer_state: dict[str, Any]) -> None:
            monitor_state = None
            if monitor is not None:
                if trainer_state["partial"] is None:
                    e = {k: trainer_state[k] for k in ("phase", "epoch")}
                    log.write({"event": "grad_norms", **e, **monitor.summary()})
                else:
                    monitor_state = {k: getattr(monitor, k) for k in _MONITOR_FIELDS}
            payload = task.resume_payload(
                trainer=trainer_state,
                stage_history=[dataclasses.asdict(e) for e in stage_history],
                elapsed=elapsed_before + time.perf_counter() - start,
                monitor=monitor_state,
                # what the log holds at this point: a resumed run drops the records written
                # after it (their work is redone)
                log_bytes=log_path.stat().st_size,
            )
            atomic_torch_save(payload, last_path)

        return save

    # stage 1: syntax alone (pipeline stage 1, or pre-training of the joint modes)
    n_syntax = cfg.syntactic_epochs()
    if resume_stage == phase:  # the syntactic stage had finished
        history.extend(EpochStats(**e) for e in done_before)
    elif n_syntax > 0:
        res = trainer(t.pretrain_patience).fit(
            train_it,
            lambda b: task.model.syntactic_loss(b, t.syntactic_loss),
            lambda: task.evaluate(dev, semantics=False),
            epochs=n_syntax,
            select="uas",
            phase="syntax",
            parameters=task.model.syntax.parameters(),
            on_epoch=on_epoch([]),
            resume=state["trainer"] if state else None,
        )
        history.extend(res.history)
        if main:
            # the best syntactic parser, reusable by other runs through train.init_syntax
            task.save(out / "syntax.pt", epoch=res.best_epoch, phase="syntax", dev=res.best_metrics)
        log.write({"event": "syntax_stage", **syntax_summary(res.history, n_syntax)})
    if cfg.mode == "pipeline":
        task.model.freeze_syntax()
    # stage 2: semantics (joint with syntax except in pipeline / none / gold-without-loss)
    best_path = out / "best.pt"

    def on_best(epoch: int, metrics: Any) -> None:
        task.save(best_path, epoch=epoch, phase=phase, dev=dict(metrics))

    res = trainer(t.patience).fit(
        train_it,
        lambda b: task.model.loss(b, t.syntactic_loss, t.syntactic_weight),
        lambda: task.evaluate(dev),
        epochs=t.epochs,
        select="lf",
        phase=phase,
        on_best=on_best,
        on_epoch=on_epoch(list(history)),
        resume=state["trainer"] if resume_stage == phase else None,
    )
    history.extend(res.history)
    if not main:
        return {}
    if res.best_epoch == 0:  # no semantic epoch ran: save the model as it is
        on_best(0, {})
    train_seconds = elapsed_before + time.perf_counter() - start
    per_sentence: list[dict[str, Any]] = []  # counts of the dev-selected model
    with device_scope(device, t.precision, encoders):
        final = {"dev": task.evaluate(dev, records=per_sentence, split="dev")}
        if splits.get("test"):
            final["test"] = task.evaluate(splits["test"], records=per_sentence, split="test")
    write_sentences(per_sentence, out / SENTENCES_FILE)
    epoch_seconds = [e.seconds for e in history]
    n_sent = sum(e.sentences for e in history)
    results = {
        "task": task.name,
        "mode": cfg.mode,
        "seed": cfg.seed,
        "best_epoch": res.best_epoch,
        "stopped_early": res.stopped_early,
        "dev": final["dev"],
        "test": final.get("test"),
        "epochs_run": len(history),
        "syntax_stage": syntax_summary(history, n_syntax) if n_syntax > 0 else None,
        "seconds_per_epoch": sum(epoch_seconds) / len(epoch_seconds) if history else 0.0,
        "sentences_per_second": n_sent / sum(epoch_seconds) if history else 0.0,
        "train_seconds": train_seconds,
        "device": str(device),
        "processes": world,
        "curve": [
            {"phase": e.phase, "epoch": e.epoch, "loss": e.loss, **e.metrics} for e in history
        ],
        "checkpoint": str(best_path),
        "sentences": SENTENCES_FILE,
        "data": summary(report or {}),
    }
    log.write({"event": "final", **{k: v for k, v in results.items() if k != "curve"}})
    write_results(results, out / "results.json")
    last_path.unlink(missing_ok=True)
    return results
