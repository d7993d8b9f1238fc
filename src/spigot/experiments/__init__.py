"""Experiments run by ``spigot experiment NAME`` (imported on demand).

* ``syn2sem`` (:mod:`spigot.experiments.syn2sem`): pipeline 1, every training mode over
  several seeds, with a results table and learning curves.
* ``estimators`` (:mod:`spigot.experiments.estimators`): every registered estimator on the
  latent-cluster task of Mihaylova et al. (2020), with the floor and ceiling controls.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

EXPERIMENTS: dict[str, str] = {
    "syn2sem": "spigot.experiments.syn2sem:main",
    "estimators": "spigot.experiments.estimators:main",
}
"""Experiment name -> ``"module:function"`` taking the parsed command-line arguments."""


def get_experiment(name: str) -> Callable[[Any], int]:
    """The entry point of experiment ``name`` (imported lazily)."""
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; known: {', '.join(EXPERIMENTS)}")
    module, _, fn = EXPERIMENTS[name].partition(":")
    return getattr(importlib.import_module(module), fn)


__all__ = ["EXPERIMENTS", "get_experiment"]
