"""``spigot experiment estimators``: the tuning grid, the selection on dev, and the traces."""

from __future__ import annotations

import csv
import math
from argparse import Namespace
from pathlib import Path

import pytest
import torch

import spigot
from spigot.experiments import estimators as ex
from spigot.experiments.estimators_diagnosis import assignment_stats, trace


def test_every_estimator_gets_the_same_grid():
    for mode in [*ex.CONTROLS, *spigot.ESTIMATORS]:
        configs = ex.grid(mode)
        assert len(set(configs)) == len(configs)
        assert {c.lr for c in configs} == set(ex.GRID_LRS)
        if mode in ex.OPTION_GRID:
            assert len(configs) == 3 * len(ex.GRID_LRS)
        else:  # no step or temperature option: the learning rates alone
            assert len(configs) == len(ex.GRID_LRS)
            assert all(c.option is None and c.options == {} for c in configs)
    assert {len(values) for _, values in ex.OPTION_GRID.values()} == {3}


@pytest.mark.parametrize("mode", sorted(ex.OPTION_GRID))
def test_grid_options_are_the_estimators_own_with_the_default_first(mode):
    option, values = ex.OPTION_GRID[mode]
    default, _ = spigot.ESTIMATORS[mode].options[option]
    assert values[0] == default
    s = torch.randn(4, 10, requires_grad=True)
    for v in values:  # accepted by the estimator, and a backward pass runs
        z = spigot.structured_argmax(s, spigot.Categorical(), estimator=mode, **{option: v})
        (z * torch.randn(4, 10)).sum().backward()


def _run(mode: str, lr: float, value: object, seed: int, dev: float, test: float) -> dict:
    cfg = ex.Config(mode, lr, "lam" if value is not None else None, value)
    return {**ex._config_columns(cfg), "seed": seed, "dev": dev, "test": test}


def test_select_uses_the_mean_dev_accuracy_and_never_test():
    a, b, c = (ex.Config("blackbox", 0.01, "lam", v) for v in (1.0, 0.1, 10.0))
    runs = {
        a: [_run("blackbox", 0.01, 1.0, s, d, 0.9) for s, d in enumerate((0.60, 0.70))],
        b: [_run("blackbox", 0.01, 0.1, s, d, 0.1) for s, d in enumerate((0.80, 0.62))],
        c: [_run("blackbox", 0.01, 10.0, s, d, 0.99) for s, d in enumerate((0.50, 0.55))],
    }
    assert ex.select([a, b, c], runs) == b  # mean dev 0.71 beats 0.65 (and c's better test)
    tie = {a: runs[a], b: runs[a], c: runs[c]}
    assert ex.select([a, b, c], tie) == a  # ties: the first in grid order (the default)


def test_overrides():
    assert ex.parse_overrides(["epochs=3", "lrs=0.01,0.03", "batch=32"]) == {
        "epochs": 3,
        "lrs": (0.01, 0.03),
        "batch": 32,
    }
    for bad in (["epochs=0"], ["lrs=-1"], ["lr=0.1"], ["epochs"]):
        with pytest.raises(SystemExit):
            ex.parse_overrides(bad)


def test_train_one_is_deterministic_and_uses_the_options():
    task = ex.make_task(sizes=(256, 64, 64))
    a = ex.train_one(task, "spigot", 0, epochs=2, lr=1e-2, options={"eta": 0.1})
    b = ex.train_one(task, "spigot", 0, epochs=2, lr=1e-2, options={"eta": 0.1})
    assert {k: a[k] for k in ("dev", "test", "epoch")} == {
        k: b[k] for k in ("dev", "test", "epoch")
    }
    assert 0 <= a["dev"] <= 1 and a["epoch"] in (1, 2)
    with pytest.raises(ValueError, match="no option"):
        ex.train_one(task, "marginals", 0, epochs=1, options={"eta": 0.1})


def _args(out: Path, **kw: object) -> Namespace:
    base = {"modes": ["none", "blackbox"], "seeds": [0, 1], "out": str(out), "jobs": 1}
    return Namespace(**{**base, "set": ["epochs=1", "lrs=0.03"], "no_grid": False, **kw})


def test_main_runs_the_grid_and_flags_one_configuration_per_mode(tmp_path):
    assert ex.main(_args(tmp_path)) == 0
    with open(tmp_path / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 * (1 + 3)  # seeds x (none: 1 lr; blackbox: 1 lr x 3 lam)
    for mode in ("none", "blackbox"):
        chosen = {(r["lr"], r["value"]) for r in rows if r["mode"] == mode and r["selected"] == "1"}
        assert len(chosen) == 1
        assert sum(r["selected"] == "1" for r in rows if r["mode"] == mode) == 2
    md = (tmp_path / "results.md").read_text()
    assert "| blackbox | lr 0.03, lam " in md and "lam 1 / 0.1 / 10" in md


def test_no_grid_trains_the_defaults_only(tmp_path):
    assert ex.main(_args(tmp_path, no_grid=True, set=["epochs=1"])) == 0
    with open(tmp_path / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["mode"], r["lr"], r["option"]) for r in rows] == [
        ("none", "0.03", ""),
        ("none", "0.03", ""),
        ("blackbox", "0.03", ""),
        ("blackbox", "0.03", ""),
    ]


def test_assignment_stats():
    c = torch.tensor([0, 0, 1, 1, 2, 2])
    st = assignment_stats(torch.tensor([3, 3, 3, 3, 5, 4]), c, K=6)
    assert st["distinct"] == 2 and st["purity"] == pytest.approx(5 / 6)
    p = (4 / 6, 1 / 6, 1 / 6)
    assert st["H"] == pytest.approx(-sum(q * math.log2(q) for q in p))


def test_spigot_never_raises_the_score_of_its_choice():
    # SPIGOT's surrogate at a vertex: dL/ds_c = 1 - proj(z - eta g)_c >= 0 on the chosen
    # cluster, so a descent step never raises its score (docs/estimators.md); STE's does
    task = ex.make_task(sizes=(512, 64, 64))
    spig = trace(task, "spigot", lr=1e-2, epochs=2)
    ste = trace(task, "ste", lr=1e-2, epochs=2)
    assert all(r["raises"] == 0 for r in spig)
    assert all(r["raises"] > 0.2 for r in ste)
    assert all(0 <= r["flip"] <= 1 and 1 <= r["distinct"] <= 10 for r in spig + ste)
