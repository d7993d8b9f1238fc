"""examples/latent_tree_sst.py runs end to end on a tiny SST-2 subset with every estimator."""

from pathlib import Path

import pytest

from _load import load_script

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "latent_tree_sst.py"


def load():
    return load_script(EXAMPLE, "latent_tree_sst")


@pytest.mark.parametrize(
    "args",
    [
        ["--estimator", "spigot"],
        ["--estimator", "spigot", "--normalize", "rms"],
        ["--estimator", "ste"],
        ["--estimator", "marginals"],
        ["--estimator", "pipeline"],
        ["--baseline", "none"],
        ["--baseline", "fixed"],
    ],
    ids=lambda a: "-".join(a[1::2]),
)
def test_latent_tree_example_runs(args, shared_data, capsys):
    if not (shared_data / "sst" / "sst2_train.tsv").is_file():
        pytest.skip(f"SST-2 not found under {shared_data / 'sst'} (see docs/data.md)")
    hist = load().main(
        [
            *args,
            "--train-size",
            "64",
            "--eval-size",
            "64",
            "--epochs",
            "1",
            "--data",
            str(shared_data),
        ]
    )
    assert len(hist["dev"]) == len(hist["test"]) == 1
    assert all(0.0 <= acc <= 1.0 for acc in hist["dev"] + hist["test"])
    assert "epoch 1" in capsys.readouterr().out
    if "--baseline" in args:
        assert hist["max_score"] == [0.0]  # no scorer in the baselines
    else:
        assert 0.0 < hist["max_score"][0] < 1e3


def test_ptb_escapes_are_undone(shared_data):
    if not (shared_data / "sst" / "sst2_train.tsv").is_file():
        pytest.skip(f"SST-2 not found under {shared_data / 'sst'} (see docs/data.md)")
    tokens, labels = load().read_sst2(shared_data / "sst" / "sst2_train.tsv")
    assert len(tokens) == len(labels) == 6920 and set(labels) == {0, 1}
    words = {t for s in tokens for t in s}
    assert "(" in words and ")" in words and "/" in " ".join(words)
    assert not any(t in words for t in ("-LRB-", "-RRB-")) and not any("\\" in t for t in words)
    assert any("\u00a0" in t for t in words)  # "8 1/2": split on ASCII spaces only
