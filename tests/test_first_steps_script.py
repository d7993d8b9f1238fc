"""docs/results/propbank/first_steps.py: its gradient measures against their definitions."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from _load import load_script

SCRIPT = Path(__file__).resolve().parents[1] / "docs" / "results" / "propbank" / "first_steps.py"


@pytest.fixture(scope="module")
def script():
    return load_script(SCRIPT, "propbank_first_steps")


def tree_mask(lengths: list[int], n: int) -> torch.Tensor:
    """Heads 0..len, modifiers 1..len, no self-loops: ``[B, n+1, n+1]``."""
    idx = torch.arange(n + 1)
    masks = []
    for length in lengths:
        ok = (idx[:, None] <= length) & (idx[None, :] >= 1) & (idx[None, :] <= length)
        masks.append(ok & (idx[:, None] != idx[None, :]))
    return torch.stack(masks)


def push(monitor, path: str, grad: torch.Tensor, mask: torch.Tensor) -> None:
    s = torch.zeros_like(grad, requires_grad=True)
    (monitor.watch(s, path, mask) * grad).sum().backward()


def test_center_columns_removes_exactly_the_column_means(script):
    torch.manual_seed(0)
    mask = tree_mask([4, 2], 4)
    g = torch.randn(2, 5, 5, dtype=torch.float64)
    c = script.center_columns(g, mask)
    assert torch.all(c[~mask] == 0)
    torch.testing.assert_close(c.sum(dim=1), torch.zeros(2, 5, dtype=torch.float64))
    rest = torch.where(mask, g, 0) - c  # what was removed: one value per column
    for b in range(2):
        for i in range(5):
            col = rest[b, :, i][mask[b, :, i]]
            if col.numel():
                torch.testing.assert_close(col, col[:1].expand_as(col))


def test_const_share_is_one_for_column_constants_and_zero_for_centered(script):
    torch.manual_seed(1)
    mask = tree_mask([4, 3], 4)
    g = torch.randn(2, 5, 5)
    constant = torch.where(mask, torch.randn(2, 1, 5).expand(2, 5, 5), 0)
    for grad, share in ((constant, 1.0), (script.center_columns(g, mask), 0.0)):
        monitor = script.ColumnMonitor()
        monitor.new_batch(2)
        push(monitor, "semantic", grad, mask)
        assert monitor.summary()["const"] == pytest.approx(share, abs=1e-6)
    # a mix: the share is the constant part's squared norm over the whole
    monitor = script.ColumnMonitor()
    monitor.new_batch(2)
    centered = script.center_columns(g, mask)
    push(monitor, "semantic", centered + constant, mask)
    expected = constant.pow(2).sum() / (centered + constant).pow(2).sum()
    assert monitor.summary()["const"] == pytest.approx(float(expected), rel=1e-5)


def test_syn0_counts_sentences_with_no_syntactic_gradient(script):
    mask = tree_mask([3, 3, 3], 3)
    grad = torch.zeros(3, 4, 4)
    grad[1, 0, 2] = 1.0  # only the second sentence has a gradient
    monitor = script.ColumnMonitor()
    monitor.new_batch(3)
    push(monitor, "syntactic", grad, mask)
    out = monitor.summary()
    assert out["syn0"] == pytest.approx(2 / 3)
    assert out["grad_syntactic"] == pytest.approx(1 / 3)


def test_mode_config_reads_the_joint_run(script, tmp_path):
    from spigot.config import apply_overrides, dump_toml
    from spigot.pipelines.syn2sem.config import Syn2SemConfig

    run = tmp_path / "joint" / "seed3"
    run.mkdir(parents=True)
    cfg = apply_overrides(Syn2SemConfig(), {"mode": "joint", "seed": 3, "train.lr": 0.01})
    (run / "config.toml").write_text(dump_toml(cfg))
    ste = script.mode_config(tmp_path, "ste:0.1", 3)
    assert (ste.mode, ste.train.eta, ste.train.lr, ste.seed) == ("ste", 0.1, 0.01, 3)
    assert script.mode_config(tmp_path, "ste-centered", 3).mode == "ste"
    assert script.mode_config(tmp_path, "spigot", 3).train.eta == 0.0
    with pytest.raises(SystemExit, match="joint run of seed 4"):
        script.mode_config(tmp_path, "ste", 4)
