"""Training of pipeline 1: the syntactic stage, then the semantic (or joint) stage.

:func:`fit` is :meth:`Syn2SemTask.fit <spigot.pipelines.syn2sem.task.Syn2SemTask.fit>`; the
epoch loop, early stopping, resume, devices and data-parallel training are the shared
:class:`spigot.training.Trainer`'s.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from spigot.data import Sentence
from spigot.models.diagnostics import syntax_summary
from spigot.pipelines.run import RunContext
from spigot.pipelines.syn2sem.data import summary
from spigot.pipelines.syn2sem.outputs import SENTENCES_FILE, write_sentences
from spigot.training import DataError, EpochStats, Trainer

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
    with RunContext.start(task, out_dir, progress=progress, resume=resume) as run:
        return _fit(task, splits, run)


def _fit(task: Syn2SemTask, splits: dict[str, list[Sentence]], run: RunContext) -> dict[str, Any]:
    """:func:`fit` after its settings are checked: train, write the run directory."""
    cfg, t = task.config, task.config.train
    main, state = run.main, run.state
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
    task.model.to(run.device)
    # -- the run directory ---------------------------------------------------------------
    log = run.open(cfg)
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
            "device": str(run.device),
            "precision": t.precision,
            "processes": run.world,
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
        return run.trainer(task.model, patience, encoders, lr=t.lr, clip=t.clip)

    history: list[Any] = []
    run.start_clock()
    phase = "semantics" if cfg.mode in ("pipeline", "none") else "joint"
    # a run resumed in its second stage has its first stage's history in the state
    done_before = run.stages_before
    resume_stage = run.resumed_stage

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
            run.save_last(task, trainer_state, stage_history, monitor=monitor_state)

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
            resume=run.stage_resume(),
        )
        history.extend(res.history)
        if main:
            # the best syntactic parser, reusable by other runs through train.init_syntax
            best = res.best_metrics
            task.save(run.out / "syntax.pt", epoch=res.best_epoch, phase="syntax", dev=best)
        log.write({"event": "syntax_stage", **syntax_summary(res.history, n_syntax)})
    if cfg.mode == "pipeline":
        task.model.freeze_syntax()
    # stage 2: semantics (joint with syntax except in pipeline / none / gold-without-loss)
    best_path = run.out / "best.pt"

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
        resume=run.stage_resume(phase),
    )
    history.extend(res.history)
    if not main:
        return {}
    if res.best_epoch == 0:  # no semantic epoch ran: save the model as it is
        on_best(0, {})
    train_seconds = run.elapsed()
    per_sentence: list[dict[str, Any]] = []  # counts of the dev-selected model
    with run.on_device(encoders):
        final = {"dev": task.evaluate(dev, records=per_sentence, split="dev")}
        if splits.get("test"):
            final["test"] = task.evaluate(splits["test"], records=per_sentence, split="test")
    write_sentences(per_sentence, run.out / SENTENCES_FILE)
    results = run.results(
        task,
        res,
        final,
        history,
        best_path,
        train_seconds=train_seconds,
        syntax_stage=syntax_summary(history, n_syntax) if n_syntax > 0 else None,
        data=summary(report or {}),
    )
    return run.finish(results)
