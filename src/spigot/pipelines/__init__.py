"""spigot's NLP pipelines, one folder each (imported on demand: ``import spigot`` does not).

* :mod:`spigot.pipelines.syn2sem`: pipeline 1, syntactic then semantic dependency parsing
  through a hard tree;
* :mod:`spigot.pipelines.sem2sent`: pipeline 2, semantic dependency graphs feeding a
  sentiment classifier.

Each folder holds the pipeline's ``config`` (dataclasses), ``model`` (an ``nn.Module``),
``task`` (data, vocabularies and model of one run: fit, evaluate, predict, checkpoints),
``data`` glue and ``experiment`` (``spigot experiment NAME``). What they share lives once:
the building blocks in :mod:`spigot.models`, the epoch loop and checkpoints in
:mod:`spigot.training`, the task base in :mod:`spigot.pipelines.base`, the experiment runner
in :mod:`spigot.experiments`. A third pipeline is a third folder here plus one line in
:data:`PIPELINES`.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

PIPELINES: dict[str, str] = {
    "syn2sem": "spigot.pipelines.syn2sem",
    "sem2sent": "spigot.pipelines.sem2sent",
}
"""Pipeline name (a config's ``task``) -> its package. Each package's ``__init__`` names its
``CONFIG`` class and, as ``"module:attribute"`` strings imported on demand, its ``TASK`` class
and its ``EXPERIMENT`` entry point."""


def get_pipeline(name: str) -> ModuleType:
    """The package of pipeline ``name`` (its ``__init__`` does not import torch)."""
    if name not in PIPELINES:
        raise ValueError(f"unknown pipeline {name!r}; known: {', '.join(PIPELINES)}")
    return importlib.import_module(PIPELINES[name])


def _load(ref: str) -> Any:
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)


def config_class(name: str) -> type:
    """The config dataclass of pipeline ``name``."""
    return get_pipeline(name).CONFIG  # type: ignore[no-any-return]


def task_class(name: str) -> Any:
    """The task class of pipeline ``name`` (imports torch)."""
    return _load(get_pipeline(name).TASK)


def experiment_main(name: str) -> Any:
    """The ``spigot experiment NAME`` entry point of pipeline ``name``."""
    return _load(get_pipeline(name).EXPERIMENT)


__all__ = ["PIPELINES", "config_class", "experiment_main", "get_pipeline", "task_class"]
