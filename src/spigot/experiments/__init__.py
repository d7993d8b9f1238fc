"""Experiments run by ``spigot experiment NAME`` (imported on demand), and what they share.

* every pipeline of :mod:`spigot.pipelines` (``syn2sem``, ``sem2sent``): its modes over
  several seeds, with a results table and learning curves (the pipeline's ``experiment``
  module);
* ``estimators`` (:mod:`spigot.experiments.estimators`): every registered estimator on the
  latent-cluster task of Mihaylova et al. (2020), with the floor and ceiling controls.

Shared: :mod:`~spigot.experiments.plan` (modes, seeds, dev grids),
:mod:`~spigot.experiments.significance` (paired tests), :mod:`~spigot.experiments.plots`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

EXPERIMENTS: dict[str, str] = {
    "estimators": "spigot.experiments.estimators:main",
}
"""Experiments that are not a pipeline: name -> ``"module:function"`` taking the parsed
command-line arguments."""


def experiment_names() -> list[str]:
    """Every name ``spigot experiment`` accepts: the pipelines, then :data:`EXPERIMENTS`."""
    from spigot.pipelines import PIPELINES

    return [*PIPELINES, *EXPERIMENTS]


def get_experiment(name: str) -> Callable[[Any], int]:
    """The entry point of experiment ``name`` (imported lazily)."""
    from spigot.pipelines import PIPELINES, experiment_main

    if name in PIPELINES:
        return experiment_main(name)  # type: ignore[no-any-return]
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; known: {', '.join(experiment_names())}")
    module, _, fn = EXPERIMENTS[name].partition(":")
    return getattr(importlib.import_module(module), fn)  # type: ignore[no-any-return]


__all__ = ["EXPERIMENTS", "experiment_names", "get_experiment"]
