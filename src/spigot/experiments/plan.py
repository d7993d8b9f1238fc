"""The runs of ``spigot experiment NAME``: modes, seeds per mode, and dev grids.

A config file may carry the whole protocol of an experiment in an ``[experiment]`` table, which
``spigot train`` ignores (``configs/syn2sem_propbank.toml``)::

    [experiment]
    modes = ["pipeline", "joint", "ste", "marginals", "spigot", "none", "gold"]
    seeds = [0, 1, 2, 3, 4]          # or a count: seeds = 5 means 0..4

    [experiment.mode_seeds]          # modes that run only the first N seeds
    none = 3
    gold = 3

    [experiment.eta_grid]            # train.eta values tried per mode, chosen on dev LF
    ste = [0.0, 0.1, 0.01]
    spigot = [0.0, 0.1, 0.01]

Every (mode, eta) pair of a grid is a *variant*, trained with each of the mode's seeds in
``OUT/<mode>-eta<eta>/seed<seed>``; a mode without a grid has one variant, in
``OUT/<mode>/seed<seed>``. After training, :func:`select` keeps for each mode the variant with
the best dev score (labeled F1 for ``syn2sem``, accuracy for ``sem2sent``) averaged over its
seeds (ties: the first in grid order): test scores play no part in the choice.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spigot.config import EXPERIMENT_TABLE, ConfigError, tomllib

__all__ = [
    "DEFAULT_MODES",
    "DEFAULT_SEEDS",
    "ExperimentPlan",
    "Variant",
    "format_grid",
    "plan_from_dict",
    "read_plan",
    "select",
]

DEFAULT_MODES = ("pipeline", "ste", "marginals", "spigot")
DEFAULT_SEEDS = (0, 1)


@dataclass(frozen=True)
class Variant:
    """One configuration of a mode: ``eta`` is its ``train.eta`` (``None``: the config's)."""

    mode: str
    eta: float | None = None

    @property
    def label(self) -> str:
        """``"spigot"``, or ``"spigot (eta=0.1)"`` for a grid point."""
        return self.mode if self.eta is None else f"{self.mode} (eta={self.eta:g})"

    @property
    def dirname(self) -> str:
        """``"spigot"``, or ``"spigot-eta0.1"`` for a grid point."""
        return self.mode if self.eta is None else f"{self.mode}-eta{self.eta:g}"


@dataclass
class ExperimentPlan:
    """Which runs an experiment trains.

    Attributes:
        modes: the modes, in table order.
        seeds: the seeds of every mode.
        mode_seeds: modes that run only the first ``N`` of ``seeds``.
        eta_grid: modes whose ``train.eta`` is chosen on dev among these values.
    """

    modes: tuple[str, ...] = DEFAULT_MODES
    seeds: tuple[int, ...] = DEFAULT_SEEDS
    mode_seeds: dict[str, int] = field(default_factory=dict)
    eta_grid: dict[str, tuple[float, ...]] = field(default_factory=dict)
    valid_modes: tuple[str, ...] = ()

    def validate(self) -> ExperimentPlan:
        """Check the plan against :attr:`valid_modes` (empty: pipeline 1's modes); raise
        :class:`~spigot.config.ConfigError` naming the problem."""
        MODES = self.valid_modes or _syn2sem_modes()  # noqa: N806
        modes = list(self.modes)
        unknown = [m for m in modes if m not in MODES]
        if not modes or unknown or len(set(modes)) != len(modes):
            raise ConfigError(
                f"--modes must be distinct modes among {', '.join(MODES)}; got {' '.join(modes)}"
            )
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"the seeds must be distinct, got {list(self.seeds)}")
        for key, table in (("mode_seeds", self.mode_seeds), ("eta_grid", self.eta_grid)):
            bad = [m for m in table if m not in MODES]
            if bad:
                raise ConfigError(f"experiment.{key}: unknown modes {', '.join(bad)}")
        for mode, n in self.mode_seeds.items():
            if not isinstance(n, int) or isinstance(n, bool) or n < 1:
                raise ConfigError(f"experiment.mode_seeds.{mode} must be an integer >= 1")
        for mode, grid in self.eta_grid.items():
            if mode not in ("ste", "spigot"):
                raise ConfigError(f"experiment.eta_grid: train.eta has no effect in mode {mode!r}")
            if not grid or len(set(grid)) != len(grid) or any(v < 0 for v in grid):
                raise ConfigError(
                    f"experiment.eta_grid.{mode} must be distinct values >= 0, got {list(grid)}"
                )
        return self

    def seeds_of(self, mode: str) -> tuple[int, ...]:
        """The seeds that ``mode`` runs."""
        n = self.mode_seeds.get(mode, len(self.seeds))
        return tuple(self.seeds[:n])

    def variants(self) -> list[Variant]:
        """Every variant, modes in order, grid points in grid order."""
        out = []
        for mode in self.modes:
            grid = self.eta_grid.get(mode)
            if grid:
                out.extend(Variant(mode, float(v)) for v in grid)
            else:
                out.append(Variant(mode))
        return out


def _syn2sem_modes() -> tuple[str, ...]:
    from spigot.pipelines.syn2sem.config import MODES

    return MODES


def plan_from_dict(table: Mapping[str, Any], valid_modes: Sequence[str] = ()) -> ExperimentPlan:
    """An :class:`ExperimentPlan` from the ``[experiment]`` table of a config file, its modes
    checked against ``valid_modes`` (empty: pipeline 1's)."""
    known = {"modes", "seeds", "mode_seeds", "eta_grid"}
    unknown = sorted(set(table) - known)
    if unknown:
        raise ConfigError(
            f"unknown key(s) in [experiment]: {', '.join(unknown)}; "
            f"known: {', '.join(sorted(known))}"
        )
    plan = ExperimentPlan(valid_modes=tuple(valid_modes))
    if "modes" in table:
        plan.modes = tuple(_list(table["modes"], str, "experiment.modes"))
    if "seeds" in table:
        seeds = table["seeds"]
        if isinstance(seeds, int) and not isinstance(seeds, bool):
            if seeds < 1:
                raise ConfigError(f"experiment.seeds must be >= 1, got {seeds}")
            plan.seeds = tuple(range(seeds))
        else:
            plan.seeds = tuple(_list(seeds, int, "experiment.seeds"))
    for key in ("mode_seeds", "eta_grid"):
        value = table.get(key, {})
        if not isinstance(value, Mapping):
            raise ConfigError(f"experiment.{key} must be a table, got {value!r}")
        if key == "mode_seeds":
            plan.mode_seeds = dict(value)
        else:
            plan.eta_grid = {
                m: tuple(float(v) for v in _list(g, float, f"experiment.eta_grid.{m}"))
                for m, g in value.items()
            }
    return plan.validate()


def _list(value: Any, typ: type, key: str) -> list[Any]:
    ok = (int, float) if typ is float else (typ,)
    if not isinstance(value, list) or not all(
        isinstance(v, ok) and not isinstance(v, bool) for v in value
    ):
        raise ConfigError(f"{key} must be a list of {typ.__name__} values, got {value!r}")
    return value


def read_plan(path: str | Path, valid_modes: Sequence[str] = ()) -> ExperimentPlan | None:
    """The plan in the ``[experiment]`` table of the TOML file at ``path`` (``None``: none)."""
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the config: {exc}") from None
    table = data.get(EXPERIMENT_TABLE)
    if table is None:
        return None
    if not isinstance(table, Mapping):
        raise ConfigError(f"{path}: [{EXPERIMENT_TABLE}] must be a table")
    return plan_from_dict(table, valid_modes)


def _mean_dev(runs: Sequence[Mapping[str, Any]], metric: str) -> float:
    vals = [(r.get("dev") or {}).get(metric) for r in runs]
    vals = [float(v) for v in vals if v is not None and not math.isnan(float(v))]
    return sum(vals) / len(vals) if vals else -math.inf


def select(
    variants: Sequence[Variant],
    results: Mapping[str, Sequence[Mapping[str, Any]]],
    metric: str = "lf",
) -> dict[str, Variant]:
    """For each mode, the variant with the best mean dev ``metric`` over its runs
    (``results``: run results by variant label); ties go to the first variant in order."""
    best: dict[str, tuple[float, Variant]] = {}
    for v in variants:
        score = _mean_dev(results.get(v.label, ()), metric)
        if v.mode not in best or score > best[v.mode][0]:
            best[v.mode] = (score, v)
    return {mode: v for mode, (_, v) in best.items()}


def format_grid(rows: Sequence[Mapping[str, Any]], chosen: Sequence[str]) -> str:
    """Markdown table of the grid variants' dev scores (``rows`` from ``summarize``; the labels
    in ``chosen`` are marked as selected)."""
    lines = ["| variant | seeds | dev LF | dev UAS | selected |", "|---|---|---|---|---|"]
    for r in rows:
        cells = [
            r["mode"],
            str(r["n_seeds"]),
            f"{r['dev_lf_mean']:.1f} ± {r['dev_lf_sd']:.1f}",
            "–" if math.isnan(r["dev_uas_mean"]) else f"{r['dev_uas_mean']:.1f}",
            "yes" if r["mode"] in chosen else "",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
