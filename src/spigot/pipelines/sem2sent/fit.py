"""Training of pipeline 2: the parser's pre-training, then the sentiment stage.

:func:`fit` is :meth:`Sem2SentTask.fit <spigot.pipelines.sem2sent.task.Sem2SentTask.fit>`;
the epoch loop, early stopping and resume are the shared :class:`spigot.training.Trainer`'s.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from spigot.pipelines.run import RunContext
from spigot.pipelines.sem2sent.data import Interleaved, Sem2SentData
from spigot.pipelines.syn2sem.outputs import SENTENCES_FILE, write_sentences
from spigot.training import EpochStats, Trainer, stage_summary

if TYPE_CHECKING:  # pragma: no cover
    from spigot.pipelines.sem2sent.task import Sem2SentTask

__all__ = ["fit"]

logger = logging.getLogger("spigot")


def fit(
    task: Sem2SentTask,
    splits: Sem2SentData,
    out_dir: str | os.PathLike,
    *,
    progress: bool | None = None,
    resume: bool = False,
) -> dict[str, Any]:
    """Train ``task`` with its config's mode; write the run directory; return the results.

    Stage 1 (modes with a parser, unless ``train.init_parser`` is set): the parser alone on
    its graph bank, up to ``train.pretrain_epochs`` epochs, early-stopped on its dev labeled F1;
    the best parser is saved as ``parser.pt`` (reusable by other runs through
    ``train.init_parser``). Stage 2: the classifier (and in the joint modes the parser, on
    ``train.parser_fraction`` of its data per epoch) on the sentiment data, up to
    ``train.epochs`` epochs, early-stopped on dev accuracy.

    The run directory gets ``config.toml``, ``metrics.jsonl``, ``best.pt`` (best dev
    accuracy), ``results.json`` (dev/test accuracy, the parser's dev LF before and after the
    sentiment stage, time per epoch) and ``sentences.jsonl.gz`` (per test/dev sentence:
    gold, predicted, correct; for paired tests). ``last.pt`` (after every epoch and every
    ``train.checkpoint_every``) makes an interrupted run resumable (``resume=True``), with the
    same result as an uninterrupted one. The model trains on ``train.device``; under
    ``torchrun`` every process runs this function and process 0 alone writes and evaluates
    (the others return an empty dict), as in :func:`spigot.pipelines.syn2sem.fit.fit`.
    """
    with RunContext.start(task, out_dir, progress=progress, resume=resume) as run:
        return _fit(task, splits, run)


def _fit(task: Sem2SentTask, splits: Sem2SentData, run: RunContext) -> dict[str, Any]:
    """:func:`fit` after its settings are checked: train, write the run directory."""
    cfg, t = task.config, task.config.train
    model = task.model
    main, state = run.main, run.state
    parser_train = splits.parser.get("train") or []
    parser_dev = splits.parser.get("dev") or []
    parser = model.parser
    init_parser = bool(parser is not None and t.init_parser and state is None)
    if init_parser:
        task.load_parser(t.init_parser)
    model.to(run.device)
    log = run.open(cfg)
    log.write(
        {
            "event": "start",
            "resumed": state is not None,
            "task": task.name,
            "mode": cfg.mode,
            "seed": cfg.seed,
            "device": str(run.device),
            "processes": run.world,
            "n_train": len(splits["train"]),
            "n_dev": len(splits["dev"]),
            "n_test": len(splits.get("test") or []),
            "n_parser_train": len(parser_train),
            "n_parser_dev": len(parser_dev),
            "n_parameters": sum(p.numel() for p in model.parameters()),
            "vocab_sizes": {k: len(v) for k, v in task.vocabs.items()},
            "data": splits.report,
        }
    )
    if init_parser:
        log.write({"event": "init_parser", "path": t.init_parser})
    encoders = [model.encoder] + ([parser.encoder] if parser is not None else [])

    def trainer(patience: int) -> Trainer:
        return run.trainer(model, patience, encoders, lr=t.lr, clip=t.clip)

    run.start_clock()
    done_before = run.stages_before
    resume_stage = run.resumed_stage
    history: list[Any] = []
    carried: dict[str, Any] = {}  # what last.pt keeps besides the trainer's state

    def on_epoch(stage_history: list[Any]) -> Callable[[dict[str, Any]], None]:
        def save(trainer_state: dict[str, Any]) -> None:
            run.save_last(task, trainer_state, stage_history, **carried)

        return save

    def on_device() -> Any:
        return run.on_device(encoders)

    # stage 1: the parser alone
    n_pre = t.pretrain_epochs if parser is not None and not t.init_parser else 0
    if resume_stage == "sentiment":
        history.extend(EpochStats(**e) for e in done_before)
    elif n_pre > 0:
        assert parser is not None
        res = trainer(t.pretrain_patience).fit(
            task.batches(parser_train, train=True, parser=True),
            lambda b: model.parser_loss(b),
            lambda: task.evaluate_parser(parser_dev),
            epochs=n_pre,
            select="lf",
            phase="parser",
            parameters=parser.parameters(),
            on_epoch=on_epoch([]),
            resume=run.stage_resume(),
        )
        history.extend(res.history)
        if main:
            task.save(
                run.out / "parser.pt", epoch=res.best_epoch, phase="parser", dev=res.best_metrics
            )
        log.write({"event": "parser_stage", **stage_summary(res.history, "parser", "lf", n_pre)})
    parser_before: dict[str, float] = {}
    if parser is not None and main:
        if resume_stage == "sentiment" and run.state and "parser_before" in run.state:
            parser_before = dict(run.state["parser_before"])
        else:
            if resume_stage == "sentiment":
                # a last.pt written before it kept the parser's scores: measure the parser the
                # stage started from (the trainer's resume below replaces it by the saved one);
                # without pre-training or init_parser, that is the freshly built one
                start = t.init_parser or (run.out / "parser.pt" if n_pre > 0 else None)
                if start:
                    task.load_parser(start)
                log.write({"event": "parser_before_remeasured"})
            with on_device():
                parser_before = task.evaluate_parser(parser_dev)
                parser_before.update(task.rule_accuracy(splits["dev"]))
    carried["parser_before"] = parser_before
    if cfg.mode == "pipeline":
        model.freeze_parser()
    # stage 2: sentiment (and the parser's own loss on a fraction of its data, joint modes)
    best_path = run.out / "best.pt"

    def on_best(epoch: int, metrics: Any) -> None:
        task.save(best_path, epoch=epoch, phase="sentiment", dev=dict(metrics))

    steps = Interleaved(
        task.batches(splits["train"], train=True),
        task.batches(parser_train, train=True, parser=True)
        if cfg.parser_trains() and parser_train
        else None,
        t.parser_fraction,
        cfg.seed,
    )
    res = trainer(t.patience).fit(
        steps,
        lambda step: model.loss(step, task.labels_of(step.sentiment), t.parser_weight),
        lambda: task.evaluate(splits["dev"]),
        epochs=t.epochs,
        select="acc",
        phase="sentiment",
        on_best=on_best,
        on_epoch=on_epoch(list(history)),
        resume=run.stage_resume("sentiment"),
    )
    history.extend(res.history)
    if not main:
        return {}
    if res.best_epoch == 0:
        on_best(0, {})
    train_seconds = run.elapsed()
    records: list[dict[str, Any]] = []
    with on_device():
        final = {"dev": task.evaluate(splits["dev"], records=records, split="dev")}
        if splits.get("test"):
            final["test"] = task.evaluate(splits["test"], records=records, split="test")
        parser_after = task.evaluate_parser(parser_dev) if parser is not None else {}
        if parser is not None:
            parser_after.update(task.rule_accuracy(splits["dev"]))
    write_sentences(records, run.out / SENTENCES_FILE)
    results = run.results(
        task,
        res,
        final,
        history,
        best_path,
        train_seconds=train_seconds,
        timed=[e for e in history if e.phase == "sentiment"],
        parser_dev_before=parser_before or None,
        parser_dev_after=parser_after or None,
        parser_stage=stage_summary(history, "parser", "lf", n_pre) if n_pre > 0 else None,
    )
    return run.finish(results)
