"""The state of a run: threads, seeds, RNG states, the checkpoint schedule, epoch records.

:func:`rng_state` and :func:`set_rng_state` save and restore the global random generators
(torch, numpy, Python, CUDA) in a form that ``torch.load(weights_only=True)`` reads, so that
a resumed run draws the same batches and dropout masks; :func:`parse_checkpoint_every`
reads ``train.checkpoint_every``. :class:`EpochStats` (one epoch, also kept in the resumable
state's history) and :class:`FitResult` are what :meth:`spigot.training.Trainer.fit`
records and returns.
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

__all__ = [
    "CheckpointEvery",
    "EpochStats",
    "FitResult",
    "parse_checkpoint_every",
    "rng_state",
    "seed_everything",
    "set_rng_state",
    "set_threads",
    "stage_summary",
]


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
# checkpoint schedule and RNG states
# ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CheckpointEvery:
    """When :class:`Trainer` writes a mid-epoch checkpoint: every ``steps`` optimizer steps
    or every ``seconds`` of training (0 and 0: only at the end of each epoch)."""

    steps: int = 0
    seconds: float = 0.0

    def __bool__(self) -> bool:
        return self.steps > 0 or self.seconds > 0


_UNITS = {"s": 1.0, "sec": 1.0, "min": 60.0, "h": 3600.0}


def parse_checkpoint_every(value: int | str | CheckpointEvery | None) -> CheckpointEvery:
    """Read ``train.checkpoint_every``.

    ``500`` or ``"500"`` (or ``"500steps"``): after every 500 optimizer steps; ``"10min"``,
    ``"90s"``, ``"1.5h"``: after the first optimizer step that ends at least that long after
    the last checkpoint; ``0`` / ``"0"``: only at the end of each epoch.

    Raises:
        ValueError: anything else (the message names ``train.checkpoint_every``).
    """
    if isinstance(value, CheckpointEvery):
        return value
    if value is None:
        return CheckpointEvery()
    bad = ValueError(
        "train.checkpoint_every must be a number of optimizer steps (e.g. 500) or a duration "
        f'(e.g. "10min", "90s", "1h"); 0 = only at the end of each epoch; got {value!r}'
    )
    if isinstance(value, bool):
        raise bad
    if isinstance(value, int):
        if value < 0:
            raise bad
        return CheckpointEvery(steps=value)
    text = str(value).strip().lower().replace(" ", "")
    m = re.fullmatch(r"(\d+)(?:steps?)?", text)
    if m:
        return CheckpointEvery(steps=int(m.group(1)))
    m = re.fullmatch(r"(\d+(?:\.\d*)?|\.\d+)(s|sec|min|h)", text)
    if m:
        return CheckpointEvery(seconds=float(m.group(1)) * _UNITS[m.group(2)])
    raise bad


def _as_tuple(x: Any) -> Any:
    """Lists back to tuples (``random.setstate`` needs the nested tuple it gave)."""
    return tuple(_as_tuple(v) for v in x) if isinstance(x, (list, tuple)) else x


def rng_state(device: torch.device | None = None) -> dict[str, Any]:
    """The states of torch's (CPU and, for a CUDA ``device``, CUDA), numpy's and Python's
    global random generators, in a form ``torch.load(weights_only=True)`` reads."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()  # noqa: NPY002
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
    }
    if device is not None and device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: Mapping[str, Any], device: torch.device | None = None) -> None:
    """Restore what :func:`rng_state` returned (missing entries are left alone)."""
    if state.get("torch") is not None:
        torch.set_rng_state(state["torch"])
    if state.get("python") is not None:
        random.setstate(_as_tuple(state["python"]))
    if state.get("numpy") is not None:
        kind, keys, pos, has_gauss, cached = state["numpy"]
        np.random.set_state(  # noqa: NPY002
            (kind, np.asarray(keys, dtype=np.int64).astype(np.uint32), pos, has_gauss, cached)
        )
    if state.get("cuda") is not None and device is not None and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)


# ------------------------------------------------------------------------------------------
# what Trainer.fit records
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
    cpu_seconds: float = 0.0
    """CPU time of the training pass (this process, every thread; ``time.process_time``):
    unlike ``seconds`` (wall time), it does not grow when other jobs share the machine or the
    process is paused. 0 in records written before it existed."""


def stage_summary(
    history: Sequence[EpochStats], phase: str, metric: str, max_epochs: int
) -> dict[str, Any]:
    """How the stage ``phase`` of ``history`` ended: epochs run (of ``max_epochs``), whether it
    stopped early, and the epoch (the first of the best by dev ``metric``) whose weights it
    kept, with that score as ``dev_<metric>``."""
    epochs = [e for e in history if e.phase == phase]
    scores = [e.metrics.get(metric, float("nan")) for e in epochs]
    best = max(range(len(epochs)), key=lambda i: (scores[i], -i)) if epochs else None
    return {
        "epochs_run": len(epochs),
        "max_epochs": max_epochs,
        "stopped_early": len(epochs) < max_epochs,
        "best_epoch": epochs[best].epoch if best is not None else 0,
        f"dev_{metric}": scores[best] if best is not None else None,
    }


@dataclass
class FitResult:
    """What :meth:`Trainer.fit` returns: the best epoch, its dev metrics and the history."""

    phase: str
    best_epoch: int
    best_score: float
    best_metrics: dict[str, float]
    history: list[EpochStats]
    stopped_early: bool = False
