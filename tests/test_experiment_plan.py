"""Experiment plans (the ``[experiment]`` table: modes, seeds per mode, the eta grid chosen on
dev) and which finished runs an experiment reuses, on tiny synthetic data."""

from __future__ import annotations

import json

import pytest

from spigot.cli import main
from test_training_cli import TINY


def test_a_run_from_an_older_config_is_not_reused(tmp_path):
    from spigot.config import dump_toml
    from spigot.experiments.runner import reusable as _reusable
    from spigot.pipelines.syn2sem.experiment import quick_config

    cfg = quick_config()
    (tmp_path / "results.json").write_text("{}")
    (tmp_path / "config.toml").write_text(dump_toml(cfg))
    assert _reusable(tmp_path, cfg.to_dict()) == {}
    # the same file without a key that a newer version added: not the same run
    text = "\n".join(x for x in dump_toml(cfg).splitlines() if not x.startswith("eta_scale"))
    (tmp_path / "config.toml").write_text(text)
    assert _reusable(tmp_path, cfg.to_dict()) is None


PLAN = """task = "syn2sem"
mode = "spigot"

[data]
source = "synthetic"

[experiment]
modes = ["none", "pipeline", "spigot"]
seeds = 2

[experiment.mode_seeds]
none = 1

[experiment.eta_grid]
spigot = [0.0, 0.5]
"""


def test_experiment_plan_from_the_config_grid_and_seeds_per_mode(tmp_path, capsys):
    from spigot.config import load_config

    config = tmp_path / "plan.toml"
    config.write_text(PLAN)
    assert load_config(config).mode == "spigot"  # a run ignores the [experiment] table
    out = tmp_path / "exp"
    args = ["experiment", "syn2sem", "--config", str(config), "--set", *TINY]
    args += ["train.pretrain_epochs=1", "--out", str(out), "--no-progress"]
    assert main([*args, "--jobs", "2"]) == 0
    printed = capsys.readouterr().out
    runs = sorted(str(p.parent.relative_to(out)) for p in out.rglob("results.json"))
    assert runs == [
        "none/seed0",
        "pipeline/seed0",
        "pipeline/seed1",
        "pretrain/seed0",
        "pretrain/seed1",
        "spigot-eta0.5/seed0",
        "spigot-eta0.5/seed1",
        "spigot-eta0/seed0",
        "spigot-eta0/seed1",
    ]
    assert "eta = 0.5" in (out / "spigot-eta0.5" / "seed1" / "config.toml").read_text()
    # the variant with the best mean dev LF is the spigot row; test scores play no part
    dev = {
        eta: sum(
            json.loads((out / f"spigot-eta{eta}" / f"seed{s}" / "results.json").read_text())["dev"][
                "lf"
            ]
            for s in (0, 1)
        )
        for eta in ("0", "0.5")
    }
    best = "spigot (eta=0.5)" if dev["0.5"] > dev["0"] else "spigot (eta=0)"
    summary = json.loads((out / "experiment.json").read_text())
    assert summary["selected"] == {"none": "none", "pipeline": "pipeline", "spigot": best}
    assert summary["mode_seeds"] == {"none": [0], "pipeline": [0, 1], "spigot": [0, 1]}
    assert f"| {best} | 2 |" in printed and "train.eta chosen on mean dev LF" in printed
    assert "| spigot (eta=0) | 2 |" in printed and "| spigot (eta=0.5) | 2 |" in printed
    assert "| none | 1 |" in printed
    header, *rows = (out / "runs.csv").read_text().splitlines()
    assert header.startswith("mode,variant,selected,seed") and len(rows) == 7
    # everything is reused; --modes and --seeds replace the plan's
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("best.pt")}
    assert main([*args, "--jobs", "1"]) == 0
    assert {p: p.stat().st_mtime_ns for p in out.rglob("best.pt")} == stamps
    capsys.readouterr()
    assert main([*args, "--jobs", "1", "--modes", "spigot", "--seeds", "0", "--no-grid"]) == 0
    assert (out / "spigot" / "seed0" / "results.json").is_file()  # train.eta as configured
    assert "1 modes x 1 seeds" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ("seeds = [0, 0]", "seeds must be distinct"),
        ("modes = ['spigot', 'jiont']", "--modes must be distinct modes among"),
        ("[experiment.eta_grid]\njoint = [0.1]", "train.eta has no effect in mode 'joint'"),
        ("[experiment.mode_seeds]\nnone = 0", "mode_seeds.none must be an integer >= 1"),
        ("grid = 1", "unknown key\\(s\\) in \\[experiment\\]: grid"),
        ("[experiment.eta_grid]\nste = 0.1", "eta_grid.ste must be a list of float"),
    ],
)
def test_experiment_plan_errors(tmp_path, table, message):
    from spigot.config import ConfigError
    from spigot.experiments.plan import read_plan

    path = tmp_path / "bad.toml"
    path.write_text(f'task = "syn2sem"\n\n[experiment]\n{table}\n')
    with pytest.raises(ConfigError, match=message):
        read_plan(path)
