"""The experiments' results table and score plot, derived from one list of columns."""

from __future__ import annotations

import math

import pytest

from spigot.experiments.report import Column, format_table, plot_scores, summarize

COLUMNS = (
    Column("dev", "dev acc", lambda r: r["dev"]),
    Column("secs", "s/epoch", lambda r: r["secs"], scale=1.0, digits=2),
)
RESULTS = {
    "a": [{"dev": 0.5, "secs": 1.0}, {"dev": 0.7, "secs": 3.0}],
    "b": [{"dev": 0.9, "secs": 2.0}],
    "c": [{"dev": float("nan"), "secs": 2.0}],
}


def test_summarize_scales_mean_and_sd():
    rows = {r["mode"]: r for r in summarize(RESULTS, COLUMNS)}
    assert rows["a"]["n_seeds"] == 2
    assert rows["a"]["dev_mean"] == pytest.approx(60.0)
    assert rows["a"]["dev_sd"] == pytest.approx(100 * math.sqrt(0.02))  # sample sd
    assert rows["a"]["secs_mean"] == pytest.approx(2.0)
    assert rows["b"]["dev_mean"] == pytest.approx(90.0)
    assert rows["b"]["dev_sd"] == 0.0  # one seed: sd 0 by convention
    assert math.isnan(rows["c"]["dev_mean"])


def test_format_table_has_a_row_per_mode_with_the_column_digits():
    table = format_table(summarize(RESULTS, COLUMNS), COLUMNS).splitlines()
    assert table[0] == "| mode | seeds | dev acc | s/epoch |"
    assert table[2].startswith("| a | 2 | 60.0 ± 14.1 | 2.00 ± 1.41 |")
    assert table[3].startswith("| b | 1 | 90.0")
    assert len(table) == 2 + len(RESULTS)


def test_plot_scores_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    rows = summarize(RESULTS, COLUMNS)
    path = tmp_path / "scores.png"
    assert plot_scores(rows, COLUMNS[:1], path, title="t", reference={"a": "floor"})
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
