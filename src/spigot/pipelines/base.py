"""What every pipeline's task shares: checkpoints, resume payloads and result files.

A pipeline's task class (``Syn2SemTask``, ``Sem2SentTask``) holds one run's config,
vocabularies and model; it subclasses :class:`PipelineTask` for the parts that do not depend
on the pipeline:

* :meth:`PipelineTask.checkpoint` / :meth:`save`: the model checkpoint (config, vocabularies,
  weights) that ``spigot evaluate`` and ``spigot predict`` read;
* :meth:`PipelineTask.resume_payload` / :meth:`resume_state`: ``last.pt``, written after every
  epoch, from which an interrupted run continues exactly;
* :func:`write_results`: ``results.json`` with NaN written as ``null``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from spigot.training import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_VERSION,
    atomic_torch_save,
    atomic_write_text,
    load_checkpoint,
)

__all__ = ["PipelineTask", "flat_keys", "write_results"]


class PipelineTask:
    """Base of the pipelines' task classes (see the module docstring).

    Subclasses set :attr:`name` (the pipeline's registered name) and the attributes
    ``config`` (a config dataclass with ``to_dict()``), ``vocabs`` (name -> vocabulary with
    ``to_dict()``) and ``model`` (an ``nn.Module``).
    """

    name = ""
    config: Any
    vocabs: dict[str, Any]
    model: Any

    def checkpoint_extras(self) -> dict[str, Any]:
        """Pipeline-specific entries of the checkpoint (e.g. the word embedding size)."""
        return {}

    def checkpoint(self, **extra: Any) -> dict[str, Any]:
        """The checkpoint payload (config, vocabularies, weights, ``extra``)."""
        return {
            "format": CHECKPOINT_FORMAT,
            "version": CHECKPOINT_VERSION,
            "task": self.name,
            "config": self.config.to_dict(),
            "vocabs": {k: v.to_dict() for k, v in self.vocabs.items()},
            **self.checkpoint_extras(),
            "state_dict": self.model.state_dict(),
            **extra,
        }

    def save(self, path: str | os.PathLike, **extra: Any) -> None:
        """Write the checkpoint atomically."""
        atomic_torch_save(self.checkpoint(**extra), path)

    def resume_payload(self, **state: Any) -> dict[str, Any]:
        """The ``last.pt`` payload: the config and ``state`` (trainer state, history, ...)."""
        return {
            "format": CHECKPOINT_FORMAT,
            "version": CHECKPOINT_VERSION,
            "task": self.name,
            "kind": "resume",
            "config": self.config.to_dict(),
            **state,
        }

    def resume_state(self, out_dir: str | os.PathLike) -> dict[str, Any]:
        """The ``last.pt`` payload of the interrupted run in ``out_dir``.

        Raises:
            FileNotFoundError: there is no ``last.pt`` (the run finished or never started).
            ValueError: it was written with another configuration.
        """
        path = Path(out_dir) / "last.pt"
        if not path.is_file():
            done = (Path(out_dir) / "results.json").is_file()
            raise FileNotFoundError(
                f"nothing to resume in {out_dir}: no last.pt"
                + (" (the run has finished: see results.json)" if done else "")
            )
        payload = load_checkpoint(path)
        if payload.get("kind") != "resume":
            raise ValueError(f"{path} is not a resume checkpoint")
        ours, theirs = flat_keys(self.config.to_dict()), flat_keys(payload["config"])
        diff = sorted(k for k in ours.keys() | theirs.keys() if ours.get(k) != theirs.get(k))
        if diff:
            raise ValueError(
                f"cannot resume {out_dir}: it was started with other settings "
                f"({', '.join(diff)} differ)"
            )
        return payload


def flat_keys(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"train": {"lr": 1}}`` -> ``{"train.lr": 1}``."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flat_keys(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _finite(x: Any) -> Any:
    if isinstance(x, float) and x != x:
        return None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_finite(v) for v in x]
    return x


def write_results(results: dict[str, Any], path: str | os.PathLike) -> None:
    """Write ``results`` as indented JSON, NaN as ``null``, atomically."""
    atomic_write_text(json.dumps(_finite(results), indent=2) + "\n", path)
