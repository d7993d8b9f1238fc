"""spigot.nn.BiaffineArcScorer: shapes, scale, RMS normalisation, gradients, a tree on top."""

import math

import pytest
import torch

import spigot
from spigot.nn import BiaffineArcScorer


def test_shapes_and_tree():
    torch.manual_seed(0)
    scorer = BiaffineArcScorer(8, 6)
    states = torch.randn(3, 5, 8)
    lengths = torch.tensor([4, 2, 3])
    scores = scorer(states, lengths)
    assert scores.shape == (3, 5, 5) and torch.isfinite(scores).all()
    z = spigot.structured_argmax(scores, spigot.DependencyTree(), lengths=lengths)
    assert torch.equal(z.sum(1)[:, 1:], spigot.lengths_mask(lengths).any(1)[:, 1:].float())
    z.sum().backward()  # gradients reach the scorer's weights
    assert scorer.weight.grad is not None and torch.isfinite(scorer.weight.grad).all()


def test_default_scale_is_inverse_sqrt_hidden():
    torch.manual_seed(0)
    a, b = BiaffineArcScorer(4, 16), BiaffineArcScorer(4, 16, scale=1.0)
    b.load_state_dict(a.state_dict())
    x = torch.randn(2, 6, 4)
    torch.testing.assert_close(a(x), b(x) / math.sqrt(16))


def test_rms_normalisation_is_scale_free_and_keeps_argmax():
    torch.manual_seed(0)
    raw = BiaffineArcScorer(4, 8, scale=1000.0)
    norm = BiaffineArcScorer(4, 8, scale=1000.0, normalize="rms")
    norm.load_state_dict(raw.state_dict())
    x, lengths = torch.randn(3, 7, 4), torch.tensor([6, 3, 1])
    mask = spigot.lengths_mask(lengths)
    s = norm(x, lengths)
    rms = (torch.where(mask, s, 0).pow(2).sum((1, 2)) / mask.sum((1, 2))).sqrt()
    torch.testing.assert_close(rms, torch.ones(3))
    tree = spigot.DependencyTree()
    assert torch.equal(tree.argmax(s, lengths), tree.argmax(raw(x, lengths), lengths))


def test_rms_result_does_not_depend_on_scale():
    torch.manual_seed(0)
    a = BiaffineArcScorer(4, 8, scale=1000.0, normalize="rms")
    b = BiaffineArcScorer(4, 8, scale=0.01, normalize="rms")
    b.load_state_dict(a.state_dict())
    x = torch.randn(2, 5, 4)
    torch.testing.assert_close(a(x), b(x))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"in_dim": 0, "hidden": 4},
        {"in_dim": 4, "hidden": 4, "normalize": "l2"},
        {"in_dim": 4, "hidden": 4, "scale": -1.0},
    ],
)
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        BiaffineArcScorer(**kwargs)


def test_bad_states():
    with pytest.raises(ValueError, match="states"):
        BiaffineArcScorer(4, 4)(torch.randn(2, 5, 3))
