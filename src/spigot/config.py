"""Run configurations: read from plain TOML files, overridden from the command line, written back.

Each pipeline defines its configuration as dataclasses with documented defaults (top-level
keys ``task``, ``mode``, ``seed``, ``name`` and tables such as ``[data]``, ``[model]`` and
``[train]``; :mod:`spigot.pipelines.syn2sem.config`, :mod:`spigot.pipelines.sem2sent.config`);
a file's ``task`` key names the pipeline (default ``"syn2sem"``). This module holds what they
share: :func:`load_config`, :func:`config_from_dict` (unknown keys and wrongly typed values
raise :class:`ConfigError`), overrides and :func:`dump_toml`.

A file may also hold an ``[experiment]`` table (modes, seeds, grids) that only ``spigot
experiment`` reads (:mod:`spigot.experiments.plan`); a run's configuration ignores it.

Overrides (``spigot train CONFIG --set train.epochs=3 --set mode=ste``) name a key either with
its table (``train.epochs``) or alone when the name is unique (``epochs``); the value is read as
a TOML value (``3``, ``0.5``, ``true``, ``"text"``) or, failing that, taken as a plain string
(``mode=ste``).

This module does not import torch.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):  # pragma: no cover - depends on the interpreter
    import tomllib
else:  # pragma: no cover
    try:
        import tomli as tomllib
    except ImportError as exc:  # pragma: no cover
        raise ImportError(
            "reading TOML configs on Python 3.10 needs the 'tomli' package (pip install tomli)"
        ) from exc

__all__ = [
    "EXPERIMENT_TABLE",
    "ConfigError",
    "LoopConfig",
    "apply_overrides",
    "check_estimator_options",
    "config_from_dict",
    "dump_toml",
    "load_config",
    "check_choice",
    "check_nonneg",
    "check_positive",
    "parse_override",
]

EXPERIMENT_TABLE = "experiment"
"""A config file's table read by ``spigot experiment`` only (the runs, their seeds and grids,
:mod:`spigot.experiments.plan`); a run's configuration ignores it."""

PathLike = str | os.PathLike


class ConfigError(ValueError):
    """A configuration file or override is invalid (unknown key, wrong type, bad value)."""


# ------------------------------------------------------------------------------------------
# validation helpers
# ------------------------------------------------------------------------------------------
def check_choice(key: str, value: object, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{key} must be one of {', '.join(map(repr, allowed))}; got {value!r}")


def check_positive(key: str, value: float) -> None:
    if value <= 0:
        raise ConfigError(f"{key} must be > 0, got {value}")


def check_nonneg(key: str, value: float) -> None:
    if value < 0:
        raise ConfigError(f"{key} must be >= 0, got {value}")


def check_estimator_options(
    mode: str, options: dict[str, Any], reserved: dict[str, dict[str, str]]
) -> None:
    """Check ``train.estimator_options`` against the registered estimator named by ``mode``.

    ``reserved[mode]`` maps the options a pipeline sets itself to the config key that sets
    them (e.g. ``{"spigot": {"eta": "train.eta"}}``).
    """
    if not options:
        return
    from spigot.estimators import ESTIMATORS, _resolve

    if mode not in ESTIMATORS or mode == "pipeline":
        names = ", ".join(n for n in ESTIMATORS if n != "pipeline")
        raise ConfigError(
            f"train.estimator_options is for the estimator modes ({names}); mode {mode!r} "
            "takes none"
        )
    for option in options:
        if option in reserved.get(mode, {}):
            raise ConfigError(
                f"train.estimator_options.{option}: set by {reserved[mode][option]} in mode "
                f"{mode!r}"
            )
    try:
        _resolve(mode, options)
    except ValueError as exc:
        raise ConfigError(f"train.estimator_options: {exc}") from None


@dataclass
class LoopConfig:
    """The ``[train]`` keys every pipeline shares (a pipeline's ``TrainConfig`` adds its own).

    Attributes:
        lr: Adam learning rate.
        clip: gradient clipping (max global L2 norm; 0 = none).
        eta: the step size of the two hard estimators that pass a gradient, so that one dev
            grid tunes both. ``spigot``: the step of ``z - proj(z - eta dL/dz)``; 0 = the
            original per-sentence rule ``min(1, max_step/||dL/dz||)``. ``ste``: a multiplier of the
            straight-through gradient, ``dL/ds := eta dL/dz`` (the forward pass is unchanged);
            0 = 1, plain straight-through. Other modes ignore it.
        max_step: ``spigot`` with ``eta = 0``: the rule ``eta = min(1, max_step/||dL/dz||)``
            per sentence, i.e. the step is ``dL/dz`` shortened to length ``max_step``. The
            original code used 1 in its syntactic-then-semantic pipeline (pipeline 1) and 5/32
            in its semantic-then-sentiment one (pipeline 2). Other modes ignore it.
        estimator_options: options of the mode's registered estimator, e.g. ``{ lam = 10.0 }``
            for ``blackbox``, ``{ samples = 5, sigma = 0.5 }`` for ``perturbed``,
            ``{ polytope = "marginal" }`` for ``spigot``; ``{}`` = its defaults. ``spigot``'s
            ``eta`` and ``ste``'s ``gamma`` are ``eta``; ``spigot``'s ``max_step`` is
            ``max_step``. On the command line:
            ``--set train.estimator_options.lam=10``.
        threads: torch and tree-kernel CPU threads (0 = torch's default; 1 is fastest for
            small models on a shared CPU).
        progress: tqdm progress bars.
        device: ``"auto"`` (CUDA when available, else the CPU), ``"cpu"``, ``"cuda"`` or
            ``"cuda:N"``: where the model, its batches and losses live (the tree algorithms
            run compiled on the CPU whatever the device). Asking for CUDA where there is none
            is an error, never a silent fallback (:func:`spigot.training.resolve_device`).
            Under ``torchrun``, ``"cuda"``/``"auto"`` give every process its ``LOCAL_RANK``.
        precision: ``"fp32"``, ``"bf16"`` or ``"fp16"`` (CUDA only): autocast of the
            BiLSTM encoders; scorers, structures and losses stay in float32 (float64 in the
            tree kernels). No loss scaling (it would change SPIGOT's step): prefer bf16.
        accumulate: batches per optimizer step (gradient accumulation: the gradients of
            ``accumulate`` batches are averaged). With ``N`` processes a step covers
            ``N * accumulate`` batches.
        checkpoint_every: also write ``last.pt`` in the middle of an epoch: an integer is a
            number of optimizer steps (``500``), a string with a unit a duration
            (``"10min"``, ``"90s"``, ``"1h"``); ``0`` = only at the end of each epoch.
            A run killed at any time resumes from its last checkpoint with exactly the
            weights of an uninterrupted run.
    """

    lr: float = 1e-3
    clip: float = 1.0
    eta: float = 0.0
    max_step: float = 1.0
    estimator_options: dict[str, Any] = field(default_factory=dict)
    threads: int = 1
    progress: bool = True
    device: str = "auto"
    precision: str = "fp32"
    accumulate: int = 1
    checkpoint_every: str = "0"

    def check(self, mode: str, reserved: dict[str, dict[str, str]]) -> None:
        """Check the shared keys (``mode``'s estimator options against the registry, with
        ``reserved`` as in :func:`check_estimator_options`); raise :class:`ConfigError`."""
        if self.lr <= 0:
            raise ConfigError(f"train.lr must be > 0, got {self.lr}")
        check_nonneg("train.clip", self.clip)
        check_nonneg("train.eta", self.eta)
        check_positive("train.max_step", self.max_step)
        if self.eta > 0 and self.max_step != 1.0 and mode == "spigot":
            raise ConfigError(
                f"train.max_step = {self.max_step} bounds the step of SPIGOT's rule (train.eta "
                f"= 0); with train.eta = {self.eta} it would do nothing"
            )
        check_estimator_options(mode, self.estimator_options, reserved)
        check_nonneg("train.threads", self.threads)
        check_choice("train.precision", self.precision, ("fp32", "bf16", "fp16"))
        check_positive("train.accumulate", self.accumulate)


def _sections(cls: type) -> dict[str, type]:
    """Field name -> dataclass type, for the fields that are themselves dataclasses."""
    out = {}
    for f in dataclasses.fields(cls):
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else None
        if dataclasses.is_dataclass(default):
            out[f.name] = type(default)
    return out


def _field_types(cls: type) -> dict[str, type]:
    obj = cls()
    return {f.name: type(getattr(obj, f.name)) for f in dataclasses.fields(cls)}


def _coerce(key: str, value: Any, typ: type) -> Any:
    """Check ``value`` against the default's type (ints are accepted for floats)."""
    if typ is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
    elif typ is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif typ is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str) and value.lower() in ("auto", "none"):  # eta = "auto"
            return 0.0
    elif typ is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
    elif typ is dict:  # a table of scalar options, e.g. train.estimator_options
        if isinstance(value, dict):
            for k, v in value.items():
                if not isinstance(v, (bool, int, float, str)):
                    raise ConfigError(
                        f"{key}.{k} must be a number, a string or a boolean, got {v!r}"
                    )
            return dict(value)
        raise ConfigError(f"{key} must be a table (e.g. {{ gamma = 0.1 }}), got {value!r}")
    raise ConfigError(f"{key} must be of type {typ.__name__}, got {value!r}")


def _unknown(key: str, valid: list[str]) -> ConfigError:
    close = difflib.get_close_matches(key.split(".")[-1], [v.split(".")[-1] for v in valid], 1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return ConfigError(f"unknown config key {key!r}{hint}; valid keys: {', '.join(valid)}")


def config_from_dict(data: dict[str, Any], cls: type | None = None) -> Any:
    """Build (and validate) a config from nested dicts, e.g. a parsed TOML file.

    The class is ``cls`` or the one registered for ``data["task"]`` (default ``"syn2sem"``).
    Unknown keys and wrongly typed values raise :class:`ConfigError`.
    """
    if cls is None:
        from spigot.pipelines import PIPELINES, config_class

        task = data.get("task", "syn2sem")
        if task not in PIPELINES:
            raise ConfigError(f"unknown task {task!r}; known tasks: {', '.join(PIPELINES)}")
        cls = config_class(task)
    sections = _sections(cls)
    types = _field_types(cls)
    top: dict[str, Any] = {}
    sub: dict[str, dict[str, Any]] = {}
    valid = [k for k in types if k not in sections] + [
        f"{s}.{k}" for s, c in sections.items() for k in _field_types(c)
    ]
    for key, value in data.items():
        if key in sections:
            if not isinstance(value, dict):
                raise ConfigError(f"[{key}] must be a table, got {value!r}")
            stypes = _field_types(sections[key])
            kw = {}
            for k, v in value.items():
                if k not in stypes:
                    raise _unknown(f"{key}.{k}", valid)
                kw[k] = _coerce(f"{key}.{k}", v, stypes[k])
            sub[key] = kw
        elif key in types:
            top[key] = _coerce(key, value, types[key])
        else:
            raise _unknown(key, valid)
    obj = cls(**top, **{s: sections[s](**kw) for s, kw in sub.items()})
    return obj.validate() if hasattr(obj, "validate") else obj


def load_config(path: PathLike | None = None, overrides: Any = ()) -> Any:
    """Read a TOML config (``None``: all defaults) and apply ``overrides``.

    The file's ``[experiment]`` table, if any, is left out: it describes a set of runs
    (:func:`spigot.experiments.plan.read_plan`), not one run.

    Args:
        path: the ``.toml`` file.
        overrides: ``["train.epochs=3", ...]`` strings or a ``{key: value}`` dict.

    Raises:
        ConfigError: missing file, TOML syntax error, unknown key or invalid value.
    """
    data: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file not found: {p}")
        try:
            data = tomllib.loads(p.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{p}: invalid TOML: {exc}") from None
    data.pop(EXPERIMENT_TABLE, None)  # read by ``spigot experiment`` only
    cfg = config_from_dict(data)
    return apply_overrides(cfg, overrides)


def parse_override(text: str) -> tuple[str, Any]:
    """``"train.epochs=3"`` -> ``("train.epochs", 3)``; the value is a TOML value or a string."""
    key, eq, raw = text.partition("=")
    key = key.strip()
    if not eq or not key:
        raise ConfigError(f"override {text!r} is not of the form key=value")
    raw = raw.strip()
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return key, value


def apply_overrides(cfg: Any, overrides: Any) -> Any:
    """A copy of ``cfg`` with ``overrides`` (``key=value`` strings or a dict) applied."""
    items = overrides.items() if isinstance(overrides, dict) else map(parse_override, overrides)
    data = dataclasses.asdict(cfg)
    sections = _sections(type(cfg))
    for key, value in items:
        if "." in key:
            sec, _, k = key.partition(".")
            if sec not in sections:
                raise _unknown(key, _all_keys(type(cfg)))
            field_name, dot, option = k.partition(".")
            if dot and isinstance(data[sec].get(field_name), dict):
                data[sec][field_name] = {**data[sec][field_name], option: value}
            else:
                data[sec][k] = value
        elif key in data and key not in sections:
            data[key] = value
        else:
            owners = [s for s, c in sections.items() if key in _field_types(c)]
            if len(owners) == 1:
                data[owners[0]][key] = value
            elif len(owners) > 1:
                raise ConfigError(
                    f"config key {key!r} is ambiguous; write one of "
                    + ", ".join(f"{s}.{key}" for s in owners)
                )
            else:
                raise _unknown(key, _all_keys(type(cfg)))
    return config_from_dict(data, type(cfg))


def _all_keys(cls: type) -> list[str]:
    sections = _sections(cls)
    return [k for k in _field_types(cls) if k not in sections] + [
        f"{s}.{k}" for s, c in sections.items() for k in _field_types(c)
    ]


def _toml_value(v: Any) -> str:
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k} = {_toml_value(x)}" for k, x in v.items()) + "}"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    s = str(v).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{s}"'


def dump_toml(cfg: Any) -> str:
    """Render a config as TOML text that :func:`load_config` reads back to an equal config."""
    data = dataclasses.asdict(cfg)
    sections = _sections(type(cfg))
    lines = [f"{k} = {_toml_value(v)}" for k, v in data.items() if k not in sections]
    for s in sections:
        lines.append("")
        lines.append(f"[{s}]")
        lines.extend(f"{k} = {_toml_value(v)}" for k, v in data[s].items())
    return "\n".join(lines) + "\n"
