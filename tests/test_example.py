"""The README's toy example trains through a hard tree: its loss must go down."""

from pathlib import Path

import pytest

from _load import load_script

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "toy_tree.py"


def load():
    return load_script(EXAMPLE, "toy_tree")


@pytest.mark.parametrize("estimator", ["spigot", "ste", "marginals"])
def test_toy_example_learns(estimator, capsys):
    losses = load().main(["--estimator", estimator, "--steps", "100"])
    assert losses[-1] < 0.2 * losses[0]


def test_toy_example_pipeline_cannot_learn(capsys):
    losses = load().main(["--estimator", "pipeline", "--steps", "10"])
    assert losses[-1] == losses[0]  # no gradient reaches the scorer
