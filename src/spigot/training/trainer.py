"""The epoch loop: :class:`Trainer`."""

from __future__ import annotations

import contextlib
import copy
import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict
from typing import Any

import torch
from torch import Tensor, nn

from spigot.training.devices import (
    _all_gather,
    _broadcast,
    autocast_dtype,
    autocast_modules,
    rank_and_world,
)
from spigot.training.io import JsonlLog
from spigot.training.state import (
    CheckpointEvery,
    EpochStats,
    FitResult,
    parse_checkpoint_every,
    rng_state,
    set_rng_state,
)

__all__ = ["Trainer"]


LossFn = Callable[[Any], "tuple[Tensor, Mapping[str, float]] | Tensor"]


class _LossModule(nn.Module):
    """``batch -> loss_fn(batch)`` as a module, so that DistributedDataParallel sees the
    forward pass of any loss (the pipelines' losses are methods, not ``forward``)."""

    def __init__(self, model: nn.Module, loss_fn: LossFn) -> None:
        super().__init__()
        self.model = model
        self.loss_fn = loss_fn

    def forward(self, batch: Any) -> Any:
        return self.loss_fn(batch)


class Trainer:
    """Adam + gradient clipping + per-epoch dev evaluation + best checkpoint + early stop.

    Args:
        model: the module to train (``train()``/``eval()`` are switched around evaluation).
        lr: Adam learning rate.
        clip: max global gradient L2 norm (0 = no clipping).
        patience: epochs without a better dev score before stopping (0 = never stop early).
        log: a :class:`JsonlLog` receiving one record per epoch (written by process 0 only).
        progress: show tqdm progress bars (needs ``tqdm``; process 0 only).
        device: move the model there now, and the training batches (anything with a
            ``.to(device)``) and the batches of every :class:`~spigot.data.BucketIterator`
            iterated during :meth:`fit` (also the dev set's) there too (``None``: leave
            everything where it is). See :func:`resolve_device`.
        precision: ``"fp32"``, ``"bf16"`` or ``"fp16"``: autocast of ``autocast`` modules
            during :meth:`fit` (:func:`autocast_modules`).
        autocast: the modules to autocast (default: every
            :class:`~spigot.models.encoder.BiLSTMEncoder` of the model).
        accumulate: batches per optimizer step and process: the gradients of ``accumulate``
            batches (each loss as it is) are summed, then divided by ``accumulate``.
        checkpoint_every: mid-epoch checkpoints (:func:`parse_checkpoint_every`): ``500``
            optimizer steps, ``"10min"``, or 0 (only at epoch ends).

    With a torch.distributed process group of ``N`` processes (``torchrun``), :meth:`fit`
    wraps the model in ``DistributedDataParallel`` (gradients averaged over the processes),
    process ``r`` takes global batches ``r, r + N, ...`` of every epoch, and process 0 alone
    evaluates, logs and calls the callbacks; the others receive its dev metrics, so that all
    keep the same best weights and stop at the same epoch. One optimizer step then covers
    ``N * accumulate`` consecutive batches of the epoch's order, exactly as one process with
    ``accumulate = N * accumulate`` (up to the order of the floating-point sums).
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        lr: float = 1e-3,
        clip: float = 1.0,
        patience: int = 0,
        log: JsonlLog | None = None,
        progress: bool = True,
        device: torch.device | str | None = None,
        precision: str = "fp32",
        autocast: Sequence[nn.Module] | None = None,
        accumulate: int = 1,
        checkpoint_every: int | str | CheckpointEvery = 0,
    ) -> None:
        self.model = model
        self.lr = lr
        self.clip = clip
        self.patience = patience
        self.log = log if log is not None else JsonlLog()
        self.device = torch.device(device) if device is not None else None
        if self.device is not None:
            model.to(self.device)
        autocast_dtype(precision, self.device)  # validates
        self.precision = precision
        self.autocast = list(autocast) if autocast is not None else None
        if accumulate < 1:
            raise ValueError(f"train.accumulate must be >= 1, got {accumulate}")
        self.accumulate = int(accumulate)
        self.checkpoint_every = parse_checkpoint_every(checkpoint_every)
        self.rank, self.world_size = rank_and_world()
        self.progress = progress and self.rank == 0
        self._last_checkpoint = time.monotonic()

    # -- helpers ---------------------------------------------------------------------------
    def _bar(self, iterable: Iterable[Any], total: int | None, desc: str) -> Iterable[Any]:
        if not self.progress:
            return iterable
        from tqdm.auto import tqdm

        return tqdm(iterable, total=total, desc=desc, leave=False, dynamic_ncols=True)

    def _write(self, record: Mapping[str, Any]) -> None:
        if self.rank == 0:
            self.log.write(record)

    @contextlib.contextmanager
    def _scope(self) -> Iterator[None]:
        """Batches on :attr:`device` and autocast encoders, for training and evaluation."""
        from spigot.data.batching import batch_device

        with contextlib.ExitStack() as stack:
            if self.device is not None:
                stack.enter_context(batch_device(self.device))
            if self.precision != "fp32":
                modules = self.autocast
                if modules is None:
                    from spigot.models.encoder import BiLSTMEncoder

                    modules = [m for m in self.model.modules() if isinstance(m, BiLSTMEncoder)]
                    if not modules:
                        raise ValueError(
                            f"train.precision = {self.precision!r} autocasts the encoders, but "
                            "the model has no BiLSTMEncoder: pass Trainer(autocast=[...])"
                        )
                stack.enter_context(autocast_modules(modules, self.device, self.precision))
            yield

    def _epoch_pass(self, batches: Iterable[Any], start: int) -> Iterable[Any]:
        """This process's batches of the next epoch, from its ``start``-th."""
        from spigot.data.batching import shard_indices

        A, W, r = self.accumulate, self.world_size, self.rank
        if hasattr(batches, "epoch_iter"):
            return batches.epoch_iter(  # type: ignore[no-any-return]
                start=start, rank=r, world_size=W, multiple=A
            )
        if W == 1 and A == 1 and start == 0:
            return batches
        # any other re-iterable: one epoch in memory, then the same selection
        items = list(iter(batches))
        return [
            items[g]
            for g in shard_indices(len(items), rank=r, world_size=W, multiple=A, start=start)
        ]

    def _to_device(self, batch: Any) -> Any:
        if self.device is not None and hasattr(batch, "to"):
            return batch.to(self.device)
        return batch

    def _ddp(self, loss_fn: LossFn) -> Any:
        from torch.nn.parallel import DistributedDataParallel

        ids = (
            [self.device.index] if self.device is not None and self.device.type == "cuda" else None
        )
        return DistributedDataParallel(
            _LossModule(self.model, loss_fn),
            device_ids=ids,
            find_unused_parameters=True,  # e.g. the semantic parser in the syntactic stage
        )

    def _due(self, since: int) -> bool:
        """Whether a mid-epoch checkpoint is due after this optimizer step (the same answer
        in every process: process 0's clock decides a time-based schedule)."""
        every = self.checkpoint_every
        if every.steps:
            return since >= every.steps
        if every.seconds:
            due = time.monotonic() - self._last_checkpoint >= every.seconds
            return bool(_broadcast(due))
        return False

    # -- the loop --------------------------------------------------------------------------
    def fit(
        self,
        batches: Iterable[Any],
        loss_fn: LossFn,
        evaluate: Callable[[], Mapping[str, float]],
        *,
        epochs: int,
        select: str,
        phase: str = "train",
        parameters: Iterable[nn.Parameter] | None = None,
        on_best: Callable[[int, Mapping[str, float]], None] | None = None,
        restore_best: bool = True,
        on_epoch: Callable[[dict[str, Any]], None] | None = None,
        resume: Mapping[str, Any] | None = None,
        on_checkpoint: Callable[[dict[str, Any]], None] | None = None,
    ) -> FitResult:
        """Train for up to ``epochs`` epochs.

        Args:
            batches: re-iterable batches (e.g. a :class:`~spigot.data.BucketIterator`, which
                reshuffles with a new seed at each pass); ``len()`` is used for the bar. A
                :class:`~spigot.data.BucketIterator` (anything with its ``epoch_iter``)
                resumes and shards an epoch without collating the batches it skips; any
                other iterable is held in memory for one epoch when it must be (a resumed
                epoch, several processes, ``accumulate > 1``).
            loss_fn: ``batch -> loss`` or ``(loss, {name: float})``; the loss is already
                normalised (the trainer does not divide it).
            evaluate: ``() -> {metric: value}`` on dev, called in ``eval()`` mode, no grad,
                in process 0 only.
            epochs: number of epochs (0: nothing happens).
            select: the dev metric to maximise (must be in ``evaluate()``'s result).
            phase: name written in the log (``"syntax"``, ``"joint"``, ...).
            parameters: what to optimise (default: every parameter that requires grad).
            on_best: called with ``(epoch, metrics)`` after each new best (e.g. save).
            restore_best: load the best epoch's weights back at the end.
            on_epoch: called after every epoch with the state that ``resume`` accepts
                (weights, optimizer, best weights and score, history, the torch, numpy,
                Python (and CUDA) RNG states of every process, the iterator's epoch
                counter); save it to make the run resumable. Its ``"partial"`` entry is
                ``None`` at the end of an epoch.
            resume: a state from ``on_epoch`` or ``on_checkpoint`` of an interrupted call
                with the same phase, model, parameters, batches, number of processes and
                ``accumulate``: training continues exactly as if it had not stopped (same
                batches, same dropout masks), from the next epoch or from the middle of one.
            on_checkpoint: called with the same kind of state after the optimizer steps that
                ``checkpoint_every`` selects, with ``state["partial"]`` giving the position
                in the epoch (``None``: those states go to ``on_epoch``).

        The callbacks run in process 0 only.
        """
        params = [p for p in (parameters or self.model.parameters()) if p.requires_grad]
        history: list[EpochStats] = []
        best_score, best_epoch, best_metrics = -math.inf, 0, {}
        best_state: dict[str, Tensor] | None = None
        if epochs <= 0:
            return FitResult(phase, 0, best_score, {}, history)
        if not params:
            raise ValueError(f"phase {phase!r}: no trainable parameters")
        optimizer = torch.optim.Adam(params, lr=self.lr)
        A = self.accumulate
        bad, stopped, first = 0, False, 1
        partial: Mapping[str, Any] | None = None
        mine: Mapping[str, Any] = {}
        if resume is not None:
            if resume.get("phase") != phase:
                raise ValueError(f"cannot resume phase {resume.get('phase')!r} as {phase!r}")
            ranks = resume.get("ranks") or [
                {"rng": {"torch": resume["rng_torch"], "python": resume["rng_python"]}}
            ]
            if len(ranks) != self.world_size:
                raise ValueError(
                    f"cannot resume phase {phase!r}: the run was trained by {len(ranks)} "
                    f"process(es), this is {self.world_size}; resume it with as many "
                    "(torchrun --nproc_per_node)"
                )
            partial = resume.get("partial")
            if partial is not None and resume.get("accumulate", 1) != A:
                raise ValueError(
                    f"cannot resume phase {phase!r} in the middle of an epoch with accumulate="
                    f"{A}: it was trained with {resume.get('accumulate', 1)}"
                )
            self.model.load_state_dict(resume["model"])
            optimizer.load_state_dict(resume["optimizer"])
            best_score, best_epoch = resume["best_score"], resume["best_epoch"]
            best_metrics, best_state = dict(resume["best_metrics"]), resume["best_state"]
            if best_state is not None and self.device is not None:
                best_state = {k: v.to(self.device) for k, v in best_state.items()}
            bad, stopped = resume["bad"], resume["stopped"]
            history = [EpochStats(**h) for h in resume["history"]]
            mine = ranks[self.rank]
            set_rng_state(mine["rng"], self.device)
            if resume.get("batches_epoch") is not None:
                batches.epoch = resume["batches_epoch"]  # type: ignore[attr-defined]
            first = resume["epoch"] + 1
            where = {"step": partial["step"]} if partial is not None else {}
            self._write({"event": "resume", "phase": phase, "epoch": resume["epoch"], **where})

        def state(epoch: int, part: dict[str, Any] | None, stats: dict[str, Any]) -> Any:
            """The resumable state (in process 0; ``None`` in the others)."""
            ranks = _all_gather({"rng": rng_state(self.device), **stats})
            self._last_checkpoint = time.monotonic()
            if self.rank != 0:
                return None
            return {
                "phase": phase,
                "epoch": epoch,
                "partial": part,
                "model": self.model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "best_score": best_score,
                "best_epoch": best_epoch,
                "best_metrics": best_metrics,
                "best_state": best_state,
                "bad": bad,
                "stopped": stopped,
                "history": [asdict(h) for h in history],
                "ranks": ranks,
                "world_size": self.world_size,
                "accumulate": A,
                # process 0's RNG states, where earlier versions kept them
                "rng_torch": ranks[0]["rng"]["torch"],
                "rng_python": ranks[0]["rng"]["python"],
                "batches_epoch": getattr(batches, "epoch", None),
            }

        mid_epoch = on_checkpoint if on_checkpoint is not None else on_epoch
        ddp = self._ddp(loss_fn) if self.world_size > 1 else None
        self._last_checkpoint = time.monotonic()
        try:
            with self._scope():
                for epoch in range(first, epochs + 1):
                    if stopped:
                        break
                    self.model.train()
                    step, total, n_sent, n_batches, done, cpu_done = 0, 0.0, 0, 0, 0.0, 0.0
                    if partial is not None and partial["epoch"] == epoch:
                        step, done = partial["step"], partial["seconds"]
                        cpu_done = partial.get("cpu_seconds", 0.0)
                        total, n_batches, n_sent = mine["loss"], mine["batches"], mine["sentences"]
                        if partial.get("batches_epoch") is not None:
                            batches.epoch = partial["batches_epoch"]  # type: ignore[attr-defined]
                    partial = None
                    plan_epoch = getattr(batches, "epoch", None)
                    local = self._epoch_pass(batches, step * A)
                    try:
                        n_total: int | None = len(local)  # type: ignore[arg-type]
                    except TypeError:
                        n_total = None
                    bar = self._bar(local, n_total, f"{phase} {epoch}/{epochs}")
                    start = time.perf_counter() - done
                    cpu_start = time.process_time() - cpu_done
                    micro, since = 0, 0
                    optimizer.zero_grad(set_to_none=True)
                    for batch in bar:
                        batch = self._to_device(batch)
                        micro += 1
                        sync = micro % A == 0
                        no_sync = ddp.no_sync() if ddp is not None and not sync else None
                        with no_sync or contextlib.nullcontext():
                            out = ddp(batch) if ddp is not None else loss_fn(batch)
                            loss = out[0] if isinstance(out, tuple) else out
                            if not torch.isfinite(loss):
                                raise FloatingPointError(
                                    f"phase {phase!r}, epoch {epoch}: the loss is {loss.item()}"
                                )
                            loss.backward()
                        total += float(loss.detach())
                        n_batches += 1
                        n_sent += len(batch)
                        if self.progress and hasattr(bar, "set_postfix"):
                            bar.set_postfix(loss=f"{total / n_batches:.4f}", refresh=False)
                        if not sync:
                            continue
                        if A > 1:
                            for p in params:
                                if p.grad is not None:
                                    p.grad.div_(A)
                        if self.clip > 0:
                            nn.utils.clip_grad_norm_(params, self.clip)
                        optimizer.step()
                        optimizer.zero_grad(set_to_none=True)
                        step += 1
                        since += 1
                        if self.checkpoint_every and self._due(since):
                            since = 0
                            part = {
                                "epoch": epoch,
                                "step": step,
                                "batches_epoch": plan_epoch,
                                "seconds": time.perf_counter() - start,
                                "cpu_seconds": time.process_time() - cpu_start,
                            }
                            stats = {"loss": total, "batches": n_batches, "sentences": n_sent}
                            st = state(epoch - 1, part, stats)
                            if st is not None and mid_epoch is not None:
                                mid_epoch(st)
                    seconds = time.perf_counter() - start
                    cpu_seconds = time.process_time() - cpu_start
                    if self.world_size > 1:
                        sums = _all_gather((total, n_batches, n_sent))
                        total = sum(s[0] for s in sums)
                        n_batches = sum(s[1] for s in sums)
                        n_sent = sum(s[2] for s in sums)
                    self.model.eval()
                    metrics: dict[str, float] = {}
                    eval_seconds = 0.0
                    if self.rank == 0:
                        t_eval = time.perf_counter()
                        with torch.no_grad():
                            metrics = dict(evaluate())
                        eval_seconds = time.perf_counter() - t_eval
                    metrics, eval_seconds = _broadcast((metrics, eval_seconds))
                    if select not in metrics:
                        raise KeyError(f"evaluate() returned no {select!r} (got {sorted(metrics)})")
                    score = metrics[select]
                    improved = score > best_score
                    stats_e = EpochStats(
                        phase=phase,
                        epoch=epoch,
                        loss=total / max(n_batches, 1),
                        seconds=seconds,
                        eval_seconds=eval_seconds,
                        sentences=n_sent,
                        sentences_per_second=n_sent / seconds if seconds > 0 else float("nan"),
                        metrics=metrics,
                        best=improved,
                        cpu_seconds=cpu_seconds,
                    )
                    history.append(stats_e)
                    record = asdict(stats_e)
                    record.update({f"dev_{k}": v for k, v in record.pop("metrics").items()})
                    self._write({"event": "epoch", **record})
                    if improved:
                        best_score, best_epoch, best_metrics, bad = score, epoch, metrics, 0
                        best_state = copy.deepcopy(self.model.state_dict())
                        if on_best is not None and self.rank == 0:
                            on_best(epoch, metrics)
                    else:
                        bad += 1
                        if self.patience and bad >= self.patience:
                            stopped = True
                            self._write({"event": "early_stop", "phase": phase, "epoch": epoch})
                    st = state(epoch, None, {})
                    if st is not None and on_epoch is not None:
                        on_epoch(st)
        finally:
            del ddp
        if restore_best and best_state is not None:
            self.model.load_state_dict(best_state)
        self.model.eval()
        return FitResult(phase, best_epoch, best_score, best_metrics, history, stopped)
