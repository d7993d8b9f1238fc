"""spigot.training.stage_summary: how one stage of a training history ended."""

from __future__ import annotations

from spigot.models.diagnostics import syntax_summary
from spigot.training import EpochStats, stage_summary


def epoch(phase: str, k: int, **metrics: float) -> EpochStats:
    return EpochStats(phase, k, 1.0, 1.0, 0.1, 10, 10.0, metrics=dict(metrics))


HISTORY = [
    epoch("syntax", 1, uas=0.5),
    epoch("syntax", 2, uas=0.7),
    epoch("syntax", 3, uas=0.7),  # a tie: the first of the best is kept
    epoch("syntax", 4, uas=0.6),
    epoch("joint", 1, uas=0.9, lf=0.3),
    epoch("joint", 2, uas=0.2, lf=0.4),
]


def test_first_of_the_best_of_the_phase_only():
    assert stage_summary(HISTORY, "syntax", "uas", 10) == {
        "epochs_run": 4,
        "max_epochs": 10,
        "stopped_early": True,
        "best_epoch": 2,
        "dev_uas": 0.7,
    }
    joint = stage_summary(HISTORY, "joint", "lf", 2)
    assert (joint["best_epoch"], joint["dev_lf"], joint["stopped_early"]) == (2, 0.4, False)
    assert syntax_summary(HISTORY, 10) == stage_summary(HISTORY, "syntax", "uas", 10)


def test_a_stage_that_did_not_run():
    out = stage_summary(HISTORY, "parser", "lf", 5)
    assert out == {
        "epochs_run": 0,
        "max_epochs": 5,
        "stopped_early": True,
        "best_epoch": 0,
        "dev_lf": None,
    }
