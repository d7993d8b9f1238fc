"""The generic training loop shared by spigot's pipelines.

:class:`Trainer` runs epochs over a batch iterator (with a tqdm progress bar), calls a loss
function, back-propagates, clips the gradient norm and steps Adam; after every epoch it
evaluates on dev, writes one JSON line to the run's metrics log, keeps the best weights by a
dev metric (higher is better), writes the best checkpoint atomically and stops early after
``patience`` epochs without improvement. A pipeline may call :meth:`Trainer.fit` several
times (e.g. syntactic pre-training, then joint training), each call with its own parameters,
loss and selection metric.

The pipelines that use it are registered in :mod:`spigot.pipelines`.
"""

from __future__ import annotations

import copy
import json
import math
import os
import random
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from spigot.data._text import DataError

__all__ = [
    "CHECKPOINT_FORMAT",
    "DataError",
    "EpochStats",
    "FitResult",
    "JsonlLog",
    "Trainer",
    "atomic_torch_save",
    "atomic_write_bytes",
    "atomic_write_text",
    "load_checkpoint",
    "seed_everything",
    "set_threads",
]

CHECKPOINT_FORMAT = "spigot-checkpoint"
CHECKPOINT_VERSION = 1


def set_threads(n: int) -> None:
    """Use ``n`` CPU threads in torch *and* in the compiled tree kernels (0 = leave defaults).

    The numba kernels run in parallel over the batch; their OpenMP workers keep spinning after
    each call and slow torch down several times on a small or shared CPU, so a model that
    calls them between torch operations should use the same small thread count for both.
    """
    if n <= 0:
        return
    torch.set_num_threads(n)
    try:
        import numba

        numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    except ImportError:  # pragma: no cover - numba is a dependency
        pass


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, numpy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 - seeds third-party code using the global RNG
    torch.manual_seed(seed)


# ------------------------------------------------------------------------------------------
# files
# ------------------------------------------------------------------------------------------
def _atomic(path: str | os.PathLike, write: Callable[[Any], None], mode: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` to a temporary file in the same directory, then ``os.replace``."""
    _atomic(path, lambda f: torch.save(obj, f), "wb")


def atomic_write_text(text: str, path: str | os.PathLike) -> None:
    """Write a text file atomically (temporary file + ``os.replace``)."""
    _atomic(path, lambda f: f.write(text), "w")


def atomic_write_bytes(data: bytes, path: str | os.PathLike) -> None:
    """Write a binary file atomically (temporary file + ``os.replace``)."""
    _atomic(path, lambda f: f.write(data), "wb")


def _jsonable(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, Mapping):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.integer, np.floating)):
        return _jsonable(x.item())
    if isinstance(x, Tensor):
        return _jsonable(x.tolist())
    return x


class JsonlLog:
    """Append-only JSON-lines metrics log (one object per line, flushed at once).

    ``path=None`` keeps the records in memory only (:attr:`records`). Non-finite floats are
    written as ``null``. The file is emptied first unless ``append`` (a resumed run keeps
    the records of its earlier epochs).
    """

    def __init__(self, path: str | os.PathLike | None = None, *, append: bool = False) -> None:
        self.path = Path(path) if path is not None else None
        self.records: list[dict[str, Any]] = []
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if not append or not self.path.exists():
                self.path.write_text("", encoding="utf-8")

    def write(self, record: Mapping[str, Any]) -> None:
        rec = {"time": round(time.time(), 3), **_jsonable(dict(record))}
        self.records.append(rec)
        if self.path is not None:
            with self.path.open("a", encoding="utf-8") as f:
                f.write(json.dumps(rec) + "\n")


def _as_tuple(x: Any) -> Any:
    """Lists back to tuples (``random.setstate`` needs the nested tuple it gave)."""
    return tuple(_as_tuple(v) for v in x) if isinstance(x, (list, tuple)) else x


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint written by a spigot trainer (safe ``weights_only`` loading)."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"checkpoint not found: {p}")
    try:
        payload = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling problem means "not a checkpoint"
        raise ValueError(f"{p} is not a readable spigot checkpoint: {exc}") from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{p} is not a spigot checkpoint (no format={CHECKPOINT_FORMAT!r})")
    if payload.get("version", 0) > CHECKPOINT_VERSION:
        raise ValueError(
            f"{p} was written by a newer spigot (checkpoint version {payload['version']})"
        )
    return payload


# ------------------------------------------------------------------------------------------
# the loop
# ------------------------------------------------------------------------------------------
@dataclass
class EpochStats:
    """One epoch of :meth:`Trainer.fit`."""

    phase: str
    epoch: int
    loss: float
    seconds: float
    eval_seconds: float
    sentences: int
    sentences_per_second: float
    metrics: dict[str, float] = field(default_factory=dict)
    best: bool = False


@dataclass
class FitResult:
    """What :meth:`Trainer.fit` returns: the best epoch, its dev metrics and the history."""

    phase: str
    best_epoch: int
    best_score: float
    best_metrics: dict[str, float]
    history: list[EpochStats]
    stopped_early: bool = False


LossFn = Callable[[Any], "tuple[Tensor, Mapping[str, float]] | Tensor"]


class Trainer:
    """Adam + gradient clipping + per-epoch dev evaluation + best checkpoint + early stop.

    Args:
        model: the module to train (``train()``/``eval()`` are switched around evaluation).
        lr: Adam learning rate.
        clip: max global gradient L2 norm (0 = no clipping).
        patience: epochs without a better dev score before stopping (0 = never stop early).
        log: a :class:`JsonlLog` receiving one record per epoch.
        progress: show tqdm progress bars (needs ``tqdm``).
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
    ) -> None:
        self.model = model
        self.lr = lr
        self.clip = clip
        self.patience = patience
        self.log = log if log is not None else JsonlLog()
        self.progress = progress

    def _bar(self, iterable: Iterable[Any], total: int | None, desc: str) -> Iterable[Any]:
        if not self.progress:
            return iterable
        from tqdm.auto import tqdm

        return tqdm(iterable, total=total, desc=desc, leave=False, dynamic_ncols=True)

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
    ) -> FitResult:
        """Train for up to ``epochs`` epochs.

        Args:
            batches: re-iterable batches (e.g. a :class:`~spigot.data.BucketIterator`, which
                reshuffles with a new seed at each pass); ``len()`` is used for the bar.
            loss_fn: ``batch -> loss`` or ``(loss, {name: float})``; the loss is already
                normalised (the trainer does not divide it).
            evaluate: ``() -> {metric: value}`` on dev, called in ``eval()`` mode, no grad.
            epochs: number of epochs (0: nothing happens).
            select: the dev metric to maximise (must be in ``evaluate()``'s result).
            phase: name written in the log (``"syntax"``, ``"joint"``, ...).
            parameters: what to optimise (default: every parameter that requires grad).
            on_best: called with ``(epoch, metrics)`` after each new best (e.g. save).
            restore_best: load the best epoch's weights back at the end.
            on_epoch: called after every epoch with the state that ``resume`` accepts
                (weights, optimizer, best weights and score, history, torch and Python RNG
                states, the iterator's epoch counter); save it to make the run resumable.
            resume: a state from ``on_epoch`` of an interrupted call with the same phase,
                model, parameters and batches: training continues with the next epoch
                exactly as if it had not stopped (same batches, same dropout masks).
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
        bad, stopped, first = 0, False, 1
        if resume is not None:
            if resume.get("phase") != phase:
                raise ValueError(f"cannot resume phase {resume.get('phase')!r} as {phase!r}")
            self.model.load_state_dict(resume["model"])
            optimizer.load_state_dict(resume["optimizer"])
            best_score, best_epoch = resume["best_score"], resume["best_epoch"]
            best_metrics, best_state = dict(resume["best_metrics"]), resume["best_state"]
            bad, stopped = resume["bad"], resume["stopped"]
            history = [EpochStats(**h) for h in resume["history"]]
            torch.set_rng_state(resume["rng_torch"])
            random.setstate(_as_tuple(resume["rng_python"]))
            if resume.get("batches_epoch") is not None:
                batches.epoch = resume["batches_epoch"]  # type: ignore[attr-defined]
            first = resume["epoch"] + 1
            self.log.write({"event": "resume", "phase": phase, "epoch": resume["epoch"]})
        for epoch in range(first, epochs + 1):
            if stopped:
                break
            self.model.train()
            total, n_sent, n_batches = 0.0, 0, 0
            start = time.perf_counter()
            try:
                n_total = len(batches)  # type: ignore[arg-type]
            except TypeError:
                n_total = None
            bar = self._bar(batches, n_total, f"{phase} {epoch}/{epochs}")
            for batch in bar:
                out = loss_fn(batch)
                loss, stats = out if isinstance(out, tuple) else (out, {})
                if not torch.isfinite(loss):
                    raise FloatingPointError(
                        f"phase {phase!r}, epoch {epoch}: the loss is {loss.item()}"
                    )
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if self.clip > 0:
                    nn.utils.clip_grad_norm_(params, self.clip)
                optimizer.step()
                total += float(loss.detach())
                n_batches += 1
                n_sent += len(batch)
                if self.progress and hasattr(bar, "set_postfix"):
                    bar.set_postfix(loss=f"{total / n_batches:.4f}", refresh=False)
            seconds = time.perf_counter() - start
            self.model.eval()
            t_eval = time.perf_counter()
            with torch.no_grad():
                metrics = dict(evaluate())
            eval_seconds = time.perf_counter() - t_eval
            if select not in metrics:
                raise KeyError(f"evaluate() returned no {select!r} (got {sorted(metrics)})")
            score = metrics[select]
            improved = score > best_score
            stats = EpochStats(
                phase=phase,
                epoch=epoch,
                loss=total / max(n_batches, 1),
                seconds=seconds,
                eval_seconds=eval_seconds,
                sentences=n_sent,
                sentences_per_second=n_sent / seconds if seconds > 0 else float("nan"),
                metrics=metrics,
                best=improved,
            )
            history.append(stats)
            record = asdict(stats)
            record.update({f"dev_{k}": v for k, v in record.pop("metrics").items()})
            self.log.write({"event": "epoch", **record})
            if improved:
                best_score, best_epoch, best_metrics, bad = score, epoch, metrics, 0
                best_state = copy.deepcopy(self.model.state_dict())
                if on_best is not None:
                    on_best(epoch, metrics)
            else:
                bad += 1
                if self.patience and bad >= self.patience:
                    stopped = True
                    self.log.write({"event": "early_stop", "phase": phase, "epoch": epoch})
            if on_epoch is not None:
                on_epoch(
                    {
                        "phase": phase,
                        "epoch": epoch,
                        "model": self.model.state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "best_score": best_score,
                        "best_epoch": best_epoch,
                        "best_metrics": best_metrics,
                        "best_state": best_state,
                        "bad": bad,
                        "stopped": stopped,
                        "history": [asdict(h) for h in history],
                        "rng_torch": torch.get_rng_state(),
                        "rng_python": random.getstate(),
                        "batches_epoch": getattr(batches, "epoch", None),
                    }
                )
        if restore_best and best_state is not None:
            self.model.load_state_dict(best_state)
        self.model.eval()
        return FitResult(phase, best_epoch, best_score, best_metrics, history, stopped)
