"""Devices, precision and processes: ``train.device``, ``train.precision`` and torchrun.

:func:`resolve_device` reads ``train.device`` (never falling back to the CPU silently),
:func:`autocast_modules` autocasts the encoders for ``train.precision``, and the rest joins,
queries and leaves the process group that ``torchrun`` sets up (one process without it).
"""

from __future__ import annotations

import contextlib
import datetime
import os
import re
from collections.abc import Iterable, Iterator
from typing import Any

import torch
from torch import Tensor, nn

__all__ = [
    "device_scope",
    "PRECISIONS",
    "autocast_dtype",
    "autocast_modules",
    "barrier",
    "close_distributed",
    "distributed_env",
    "init_distributed",
    "is_main_process",
    "rank_and_world",
    "resolve_device",
]

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


@contextlib.contextmanager
def device_scope(
    device: torch.device | str | None, precision: str, modules: Iterable[nn.Module]
) -> Iterator[None]:
    """Batches built inside the block on ``device`` (:func:`spigot.data.batching.batch_device`)
    and ``modules`` autocast to ``precision``, as during training: for a pipeline's final
    evaluation outside :class:`~spigot.training.Trainer`."""
    from spigot.data.batching import batch_device

    with batch_device(device), autocast_modules(list(modules), device, precision):
        yield
