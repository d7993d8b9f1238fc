"""The generic training loop shared by spigot's pipelines.

:class:`Trainer` runs epochs over a batch iterator (with a tqdm progress bar), calls a loss
function, back-propagates, clips the gradient norm and steps Adam; after every epoch it
evaluates on dev, writes one JSON line to the run's metrics log, keeps the best weights by a
dev metric (higher is better), writes the best checkpoint atomically and stops early after
``patience`` epochs without improvement. A pipeline may call :meth:`Trainer.fit` several
times (e.g. syntactic pre-training, then joint training), each call with its own parameters,
loss and selection metric.

No lost work: the state that :meth:`Trainer.fit` hands to its ``on_epoch`` (and, every
``checkpoint_every`` optimizer steps or minutes, ``on_checkpoint``) callback continues the
run exactly, also from the middle of an epoch (weights, Adam, the RNG states of torch, numpy
and Python, the position in the epoch's batch order and the partial epoch statistics).

Devices and processes: ``Trainer(device=..., precision=...)`` puts the model and its batches
on a device (:func:`resolve_device`) and autocasts the encoders (:func:`autocast_modules`);
under ``torchrun`` (:func:`init_distributed`) the model is trained with
``DistributedDataParallel``, every process taking its share of each epoch's batches
(:func:`spigot.data.batching.shard_indices`) and process 0 alone evaluating, logging and
calling the callbacks.

The pipelines that use it are registered in :mod:`spigot.pipelines`.
"""

from __future__ import annotations

import contextlib
import copy
import datetime
import json
import math
import os
import pickle
import random
import re
import secrets
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from spigot.data._text import DataError

__all__ = [
    "CHECKPOINT_FORMAT",
    "PRECISIONS",
    "CheckpointEvery",
    "DataError",
    "EpochStats",
    "FitResult",
    "JsonlLog",
    "Trainer",
    "atomic_torch_save",
    "atomic_write_bytes",
    "atomic_write_text",
    "autocast_dtype",
    "autocast_modules",
    "barrier",
    "clean_temp_files",
    "close_distributed",
    "distributed_env",
    "init_distributed",
    "is_main_process",
    "load_checkpoint",
    "parse_checkpoint_every",
    "rank_and_world",
    "resolve_device",
    "rng_state",
    "seed_everything",
    "set_rng_state",
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
_TEMP = re.compile(r"\..+\.[A-Za-z0-9_]+\.tmp")


def _open_temp(path: Path) -> tuple[int, Path]:
    """A new file next to ``path``, opened like ``open(..., "x")`` (so the umask applies)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:  # pragma: no cover - 32 random bits
            continue
    raise FileExistsError(f"cannot create a temporary file next to {path}")  # pragma: no cover


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. Windows
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - file systems without directory fsync
        pass
    finally:
        os.close(fd)


def _atomic(path: str | os.PathLike, write: Callable[[Any], None], binary: bool) -> None:
    """Write ``path`` through a temporary file in its directory and ``os.replace``.

    The temporary file is created with mode ``0o666`` minus the umask, as ``open()`` would
    (``tempfile.mkstemp`` makes ``0o600`` files), so the result has the user's usual mode.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _open_temp(path)
    try:
        with os.fdopen(fd, "wb") if binary else os.fdopen(fd, "w", encoding="utf-8") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` to a temporary file in the same directory, then ``os.replace``."""
    _atomic(path, lambda f: torch.save(obj, f), binary=True)


def atomic_write_text(text: str, path: str | os.PathLike) -> None:
    """Write a UTF-8 text file atomically (temporary file + ``os.replace``)."""
    _atomic(path, lambda f: f.write(text), binary=False)


def atomic_write_bytes(data: bytes, path: str | os.PathLike) -> None:
    """Write a binary file atomically (temporary file + ``os.replace``)."""
    _atomic(path, lambda f: f.write(data), binary=True)


def clean_temp_files(directory: str | os.PathLike) -> list[Path]:
    """Remove the temporary files that a killed atomic write left in ``directory``
    (``.NAME.XXXX.tmp``); return them."""
    d = Path(directory)
    if not d.is_dir():
        return []
    gone = [p for p in d.iterdir() if p.is_file() and _TEMP.fullmatch(p.name)]
    for p in gone:
        p.unlink(missing_ok=True)
    return gone


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


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint written by a spigot trainer (safe ``weights_only`` loading).

    Raises:
        FileNotFoundError: no such file.
        ValueError: a directory, or a file that is not a spigot checkpoint (the message names
            it and says why in one line).
    """
    p = Path(path)
    if p.is_dir():
        raise ValueError(f"{p} is a directory, not a checkpoint file (give e.g. {p / 'best.pt'})")
    if not p.is_file():
        raise FileNotFoundError(f"checkpoint not found: {p}")
    try:
        payload = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        why = (
            "it holds Python objects other than tensors"
            if "weights only" in str(exc).lower()
            else _first_line(exc)
        )
        raise ValueError(f"{p} is not a readable spigot checkpoint ({why})") from None
    except Exception as exc:  # noqa: BLE001 - any unpickling problem means "not a checkpoint"
        raise ValueError(
            f"{p} is not a readable spigot checkpoint (torch.load: {_first_line(exc)})"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{p} is not a spigot checkpoint (no format={CHECKPOINT_FORMAT!r})")
    if payload.get("version", 0) > CHECKPOINT_VERSION:
        raise ValueError(
            f"{p} was written by a newer spigot (checkpoint version {payload['version']})"
        )
    return payload


# ------------------------------------------------------------------------------------------
# devices and precision
# ------------------------------------------------------------------------------------------
_CUDA = re.compile(r"cuda(?::(\d+))?")


def resolve_device(name: str = "auto") -> torch.device:
    """The device of ``train.device``: ``"auto"`` (CUDA when available, else the CPU),
    ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.

    Under ``torchrun`` with several processes, ``"cuda"`` and ``"auto"`` give each process
    the GPU of its ``LOCAL_RANK``.

    Raises:
        ValueError: an unknown name, or CUDA asked for where there is none (nothing falls back
            to the CPU silently), or a GPU index that does not exist.
    """
    text = str(name).strip().lower()
    _, world, local_rank = distributed_env()
    if text == "auto":
        text = "cuda" if torch.cuda.is_available() else "cpu"
    if text == "cpu":
        return torch.device("cpu")
    m = _CUDA.fullmatch(text)
    if m is None:
        raise ValueError(f"train.device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {name!r}")
    if not torch.cuda.is_available():
        why = (
            f"this torch {torch.__version__} is built without CUDA"
            if torch.version.cuda is None
            else "no CUDA device is visible"
        )
        raise ValueError(
            f"train.device = {name!r} but CUDA is not available ({why}); use 'cpu', or "
            "'auto' to take CUDA only where there is one"
        )
    if m.group(1) is not None:
        if world > 1:
            raise ValueError(
                f"train.device = {name!r} under torchrun: every process takes the GPU of its "
                "LOCAL_RANK, set train.device = 'cuda' (or 'auto')"
            )
        index = int(m.group(1))
    else:
        index = local_rank if world > 1 else torch.cuda.current_device()
    if index >= torch.cuda.device_count():
        raise ValueError(
            f"train.device = {name!r}: cuda:{index} does not exist "
            f"({torch.cuda.device_count()} CUDA device(s) visible)"
        )
    return torch.device("cuda", index)


PRECISIONS: dict[str, torch.dtype | None] = {
    "fp32": None,
    "bf16": torch.bfloat16,
    "fp16": torch.float16,
}
"""``train.precision`` -> the autocast dtype of the encoders (``None``: no autocast)."""


def autocast_dtype(precision: str, device: torch.device | str | None) -> torch.dtype | None:
    """The autocast dtype of ``precision`` on ``device`` (``None`` for ``"fp32"``).

    Raises:
        ValueError: an unknown precision, or ``"fp16"`` off CUDA (torch has no fp16 LSTM
            kernel on the CPU: use ``"bf16"`` there).
    """
    if precision not in PRECISIONS:
        raise ValueError(
            f"train.precision must be one of {', '.join(map(repr, PRECISIONS))}, got {precision!r}"
        )
    dev = torch.device(device) if device is not None else torch.device("cpu")
    if precision == "fp16" and dev.type != "cuda":
        raise ValueError(
            "train.precision = 'fp16' needs a CUDA device (torch has no fp16 LSTM on the "
            "CPU); use 'bf16' on the CPU"
        )
    return PRECISIONS[precision]


def _float32(x: Any) -> Any:
    if isinstance(x, Tensor):
        return x.float() if x.is_floating_point() and x.dtype != torch.float32 else x
    if isinstance(x, tuple):
        return tuple(_float32(v) for v in x)
    if isinstance(x, list):
        return [_float32(v) for v in x]
    if isinstance(x, dict):
        return {k: _float32(v) for k, v in x.items()}
    return x


@contextlib.contextmanager
def autocast_modules(
    modules: Iterable[nn.Module], device: torch.device | str | None, precision: str
) -> Iterator[None]:
    """Within the block, ``modules`` (e.g. the encoders) run under ``torch.autocast`` with
    the dtype of ``precision`` and return float32 tensors.

    Only their ``forward`` is wrapped: everything else (scorers, structures, losses) stays in
    float32 (the tree algorithms in float64, as always). ``"fp32"`` does nothing. There is
    no loss scaling for ``"fp16"``: a scaled loss would change the gradient that SPIGOT's
    step rule reads (its step depends on the gradient's norm), so prefer ``"bf16"``.
    """
    dev = torch.device(device) if device is not None else torch.device("cpu")
    dtype = autocast_dtype(precision, dev)
    if dtype is None:
        yield
        return
    saved: list[tuple[nn.Module, Any]] = []
    seen: set[int] = set()
    for module in modules:
        if id(module) in seen:
            continue
        seen.add(id(module))
        inner = module.forward

        def forward(*args: Any, _inner: Any = inner, **kwargs: Any) -> Any:
            with torch.autocast(device_type=dev.type, dtype=dtype):
                out = _inner(*args, **kwargs)
            return _float32(out)

        saved.append((module, module.__dict__.get("forward")))
        module.forward = forward  # type: ignore[method-assign]
    try:
        yield
    finally:
        for module, old in reversed(saved):
            if old is None:
                del module.forward
            else:
                module.forward = old  # type: ignore[method-assign]


# ------------------------------------------------------------------------------------------
# several processes (torchrun)
# ------------------------------------------------------------------------------------------
def distributed_env() -> tuple[int, int, int]:
    """``(rank, world_size, local_rank)`` from torchrun's environment (``(0, 1, 0)``
    outside it)."""
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world <= 1:
        return 0, 1, 0
    return int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0"))


def init_distributed(device: torch.device) -> bool:
    """Join the process group that torchrun set up (``WORLD_SIZE > 1``): NCCL for a CUDA
    device, gloo for the CPU. Returns whether there are several processes."""
    import torch.distributed as dist

    _, world, _ = distributed_env()
    if world <= 1:
        return False
    if not dist.is_available():  # pragma: no cover - torch builds without distributed
        raise RuntimeError("this torch has no torch.distributed: cannot train with torchrun")
    if not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(
            backend="nccl" if device.type == "cuda" else "gloo",
            # the others wait while process 0 evaluates on dev
            timeout=datetime.timedelta(minutes=60),
        )
    return True


def close_distributed() -> None:
    """Leave the process group, if any."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def rank_and_world() -> tuple[int, int]:
    """``(rank, world_size)`` of the initialised process group (``(0, 1)`` without one)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main_process() -> bool:
    """Whether this process writes the run's files (rank 0, or the only process)."""
    return rank_and_world()[0] == 0


def barrier() -> None:
    """Wait for every process (nothing without a process group)."""
    import torch.distributed as dist

    if rank_and_world()[1] > 1:
        dist.barrier()


def _all_gather(obj: Any) -> list[Any]:
    import torch.distributed as dist

    _, world = rank_and_world()
    if world == 1:
        return [obj]
    out: list[Any] = [None] * world
    dist.all_gather_object(out, obj)
    return out


def _broadcast(obj: Any) -> Any:
    import torch.distributed as dist

    if rank_and_world()[1] == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


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
                    step, total, n_sent, n_batches, done = 0, 0.0, 0, 0, 0.0
                    if partial is not None and partial["epoch"] == epoch:
                        step, done = partial["step"], partial["seconds"]
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
                            }
                            stats = {"loss": total, "batches": n_batches, "sentences": n_sent}
                            st = state(epoch - 1, part, stats)
                            if st is not None and mid_epoch is not None:
                                mid_epoch(st)
                    seconds = time.perf_counter() - start
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
