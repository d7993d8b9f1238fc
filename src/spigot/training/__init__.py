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

The package's modules:

- :mod:`spigot.training.io`: atomic writes, the JSON-lines metrics log, checkpoint loading.
- :mod:`spigot.training.devices`: ``train.device``, autocast of ``train.precision``, torchrun.
- :mod:`spigot.training.state`: threads, seeds, RNG states, the checkpoint schedule, epoch records.
- :mod:`spigot.training.trainer`: :class:`Trainer`, the epoch loop.

Everything public is re-exported here: import it from :mod:`spigot.training`.
"""

from __future__ import annotations

from spigot.data._text import DataError
from spigot.training.devices import (
    PRECISIONS,
    autocast_dtype,
    autocast_modules,
    barrier,
    close_distributed,
    device_scope,
    distributed_env,
    init_distributed,
    is_main_process,
    rank_and_world,
    resolve_device,
)
from spigot.training.io import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_VERSION,
    JsonlLog,
    atomic_torch_save,
    atomic_write_bytes,
    atomic_write_text,
    clean_temp_files,
    load_checkpoint,
    truncate_log,
)
from spigot.training.state import (
    CheckpointEvery,
    EpochStats,
    FitResult,
    parse_checkpoint_every,
    rng_state,
    seed_everything,
    set_rng_state,
    set_threads,
    stage_summary,
)
from spigot.training.trainer import Trainer

__all__ = [
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_VERSION",
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
    "device_scope",
    "barrier",
    "clean_temp_files",
    "close_distributed",
    "distributed_env",
    "init_distributed",
    "is_main_process",
    "load_checkpoint",
    "truncate_log",
    "parse_checkpoint_every",
    "rank_and_world",
    "resolve_device",
    "rng_state",
    "seed_everything",
    "set_rng_state",
    "set_threads",
    "stage_summary",
]
