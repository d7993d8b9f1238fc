"""What every pipeline's task shares: checkpoints, resume payloads and result files.

A pipeline's task class (``Syn2SemTask``, ``Sem2SentTask``) holds one run's config,
vocabularies and model; it subclasses :class:`PipelineTask` for the parts that do not depend
on the pipeline:

* :meth:`PipelineTask.checkpoint` / :meth:`save`: the model checkpoint (config, vocabularies,
  weights) that ``spigot evaluate`` and ``spigot predict`` read;
* :meth:`PipelineTask.resume_payload` / :meth:`resume_state`: ``last.pt``, written after every
  epoch (and every ``train.checkpoint_every``), from which an interrupted run continues exactly;
* :meth:`PipelineTask.holds_run` / :meth:`clear_run`: whether a directory already holds a run
  (``spigot train`` refuses it without ``--resume`` or ``--overwrite``) and clearing it;
* :func:`model_checkpoint`: a checkpoint that ``spigot evaluate``/``predict`` can use (not a
  ``last.pt`` nor a ``syntax.pt``);
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
    clean_temp_files,
    load_checkpoint,
)

__all__ = [
    "LEGACY_VALUES",
    "PipelineTask",
    "SENTENCES_FILE",
    "config_differences",
    "flat_keys",
    "model_checkpoint",
    "write_results",
]

SENTENCES_FILE = "sentences.jsonl.gz"
"""Name of the per-sentence file of a run directory (every pipeline writes one: the counts of
each dev and test sentence, from which its scores and significance tests are recomputed)."""


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

    run_files: tuple[str, ...] = (
        "config.toml",
        "metrics.jsonl",
        "best.pt",
        "last.pt",
        "results.json",
        # pipeline 1's other outputs (a subclass lists its own)
        "syntax.pt",
        "sentences.jsonl.gz",
    )
    """The files a run directory may hold: :meth:`holds_run` looks for them and
    :meth:`clear_run` removes them (and nothing else)."""

    resume_ignores: tuple[str, ...] = ("train.progress", "train.checkpoint_every")
    """Config keys that may differ when a run is resumed (they do not change its numbers)."""

    @classmethod
    def holds_run(cls, out_dir: str | os.PathLike) -> list[str]:
        """The run files already in ``out_dir`` (empty: a new or unrelated directory)."""
        d = Path(out_dir)
        return [name for name in cls.run_files if (d / name).exists()] if d.is_dir() else []

    @classmethod
    def clear_run(cls, out_dir: str | os.PathLike) -> list[str]:
        """Remove the run files (and leftover temporary files) of ``out_dir``; return the
        names removed. Other files are left alone. Raises
        :class:`~spigot.pipelines.run.RunDirectoryBusy` if a process is training into it."""
        from spigot.pipelines.run import check_not_busy

        d = Path(out_dir)
        check_not_busy(d)
        gone = cls.holds_run(d)
        for name in gone:
            (d / name).unlink()
        gone += [p.name for p in clean_temp_files(d)]
        return gone

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
        diff = config_differences(payload["config"], self.config.to_dict(), self.resume_ignores)
        if diff:
            raise ValueError(
                f"cannot resume {out_dir}: it was started with other settings "
                f"({', '.join(diff)} differ)"
            )
        return payload


def model_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """The payload of a model checkpoint (``best.pt``) for ``spigot evaluate``/``predict``.

    Raises:
        ValueError: the file is not a spigot checkpoint, or is one that holds no trained
            model: a resume checkpoint (``last.pt``) or the syntactic stage's parser
            (``syntax.pt``); the message names the file and says what to use instead.
    """
    payload = load_checkpoint(path)
    p = Path(path)
    if payload.get("kind") == "resume":
        raise ValueError(
            f"{p} is the resume checkpoint (last.pt) of an unfinished run, not a model: "
            f"continue the run with 'spigot train --resume {p.parent}', or evaluate its best.pt"
        )
    if payload.get("phase") == "syntax":
        raise ValueError(
            f"{p} holds only the parser of the syntactic stage (syntax.pt), not a trained "
            "model: evaluate the run's best.pt (syntax.pt is for train.init_syntax)"
        )
    if "state_dict" not in payload or "vocabs" not in payload or "config" not in payload:
        raise ValueError(f"{p} is a spigot checkpoint without a model (no weights)")
    return payload


LEGACY_VALUES: dict[str, tuple[Any, ...]] = {
    "train.device": ("cpu", "auto"),
    "train.precision": ("fp32",),
    "train.accumulate": (1,),
    "train.checkpoint_every": ("0",),
    "train.max_step": (1.0,),
}
"""Keys added to the configs after runs were written, with the values that reproduce what those
runs did (CPU, float32, one batch per step, SPIGOT's step rule with length 1; checkpoint_every
never changes results). A run whose ``config.toml`` (or ``last.pt``) lacks such a key counts as
run with the key's value now if that value is one of these (``"auto"`` only where CUDA is
unavailable, so that it means the CPU). Keys added with an empty table as default
(``train.estimator_options``) need no entry: an empty table has no keys to differ."""


def config_differences(
    old: dict[str, Any], new: dict[str, Any], ignore: tuple[str, ...] = ()
) -> list[str]:
    """The keys (dotted, sorted) in which a run written with config ``old`` differs from
    ``new``: a key missing from ``old`` counts as equal if ``new`` holds one of its
    :data:`LEGACY_VALUES`; every other key must be present in both and equal. Keys in
    ``ignore`` are skipped."""
    a, b = flat_keys(old), flat_keys(new)
    diff = []
    for key in sorted(a.keys() | b.keys()):
        if key in ignore:
            continue
        if key in a and key in b:
            if a[key] != b[key]:
                diff.append(key)
        elif key in b and key in LEGACY_VALUES and b[key] in LEGACY_VALUES[key]:
            if key == "train.device" and b[key] == "auto":
                import torch

                if torch.cuda.is_available():
                    diff.append(key)
        else:
            diff.append(key)
    return diff


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
