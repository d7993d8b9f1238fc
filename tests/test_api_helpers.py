"""Public layout helpers: heads <-> arcs, the arc mask for lengths, token batching."""

from __future__ import annotations

import itertools

import pytest
import torch

import spigot
from brute import heads_of, trees

CONFIGS = list(itertools.product((False, True), (True, False)))


@pytest.mark.parametrize(("projective", "single_root"), CONFIGS)
def test_from_heads_and_to_heads_invert_each_other_on_every_tree(projective, single_root):
    tree = spigot.DependencyTree(projective=projective, single_root=single_root)
    for n in range(1, 5):
        ts = trees(n, projective, single_root)
        heads = torch.tensor(ts)  # [T, n+1]
        z = tree.from_heads(heads)
        assert z.dtype == torch.float32 and z.shape == (len(ts), n + 1, n + 1)
        for k, t in enumerate(ts):
            assert heads_of(z[k]) == t
        assert torch.equal(tree.to_heads(z), heads)
        # the argmax of a tree's own indicator scores is that tree; heads() agrees with to_heads
        assert torch.equal(tree.heads(z.double()), heads)


def test_from_heads_pads_and_rejects_what_is_not_a_tree():
    tree = spigot.DependencyTree()
    heads = torch.tensor([[0, 2, 0, 9], [0, 0, 1, 1]])  # padding of sentence 0 holds garbage
    z = tree.from_heads(heads, torch.tensor([2, 3]), dtype=torch.float64)
    assert z.dtype == torch.float64 and torch.all(z[0, :, 3] == 0) and torch.all(z[0, 3] == 0)
    assert torch.equal(tree.to_heads(z), torch.tensor([[0, 2, 0, 0], [0, 0, 1, 1]]))
    bad = {
        "is not a head": torch.tensor([[0, 1, 0]]),  # self-loop
        "is not a head of": torch.tensor([[0, 3, 0]]),  # beyond the sentence
        "cycle": torch.tensor([[0, 2, 1, 0]]),
        "root children": torch.tensor([[0, 0, 0]]),
    }
    for msg, h in bad.items():
        with pytest.raises(ValueError, match=msg):
            tree.from_heads(h)
    spigot.DependencyTree(single_root=False).from_heads(torch.tensor([[0, 0, 0]]))
    with pytest.raises(ValueError, match="not projective"):
        spigot.DependencyTree(projective=True).from_heads(torch.tensor([[0, 3, 4, 0, 3]]))
    spigot.DependencyTree().from_heads(torch.tensor([[0, 3, 4, 0, 3]]))  # fine if not projective
    for h in (torch.zeros(2, 3), torch.zeros(3, dtype=torch.long), [[0, 0]]):
        with pytest.raises(ValueError, match="`heads`"):
            tree.from_heads(h)


def test_lengths_mask_is_every_structure_mask():
    lengths = torch.tensor([3, 1, 2])
    mask = spigot.lengths_mask(lengths)
    assert mask.shape == (3, 4, 4)
    s = torch.zeros(3, 4, 4)
    for st in (spigot.DependencyTree(), spigot.DependencyGraph()):
        assert torch.equal(mask, st.mask(s, lengths))
    assert spigot.lengths_mask(lengths, n=5).shape == (3, 6, 6)
    with pytest.raises(ValueError, match="lengths"):
        spigot.lengths_mask(lengths, n=2)


def test_collate_tokens_pads_behind_a_root_and_carries_labels():
    b = spigot.collate_tokens([[5, 6, 7], [8]], labels=[1, 0], root_id=2, pad_id=0)
    assert torch.equal(b.ids, torch.tensor([[2, 5, 6, 7], [2, 8, 0, 0]]))
    assert torch.equal(b.lengths, torch.tensor([3, 1]))
    assert torch.equal(b.mask, torch.tensor([[True] * 4, [True, True, False, False]]))
    assert torch.equal(b.labels, torch.tensor([1, 0]))
    # straight into a structure
    scores = torch.randn(2, 4, 4)
    z = spigot.structured_argmax(scores, spigot.DependencyTree(), lengths=b.lengths)
    assert torch.all(z[1, :, 2:] == 0)
    assert spigot.collate_tokens([[1]]).labels is None
    assert spigot.collate_tokens([[3]], labels=torch.tensor([[0.5, 0.5]])).labels.shape == (1, 2)
    for args, msg in (
        (([],), "at least one"),
        (([[1], []],), "sentence 1 is empty"),
        (([[1, "a"]],), "integer token ids"),
        (([[1]], [0, 1]), "one entry per sentence"),
    ):
        with pytest.raises(ValueError, match=msg):
            spigot.collate_tokens(*args)
    with pytest.raises(ValueError, match="must differ"):
        spigot.collate_tokens([[1]], root_id=0, pad_id=0)


def test_first_slow_kernel_call_says_it_is_compiling_once(monkeypatch, capsys):
    import time
    import types

    import spigot.structures.tree as tree_mod

    def slow_kernel(s, lengths, single_root):
        time.sleep(0.3)  # stands in for numba compiling on first use
        return torch.zeros(s.shape[:2], dtype=torch.long).numpy()

    fake = types.SimpleNamespace(chu_liu_edmonds=slow_kernel)
    monkeypatch.setattr(tree_mod, "_kernels", lambda: fake)
    monkeypatch.setattr(tree_mod, "_WARM", set())
    monkeypatch.setattr(tree_mod, "_COMPILE_NOTICE_AFTER", 0.05)
    s = torch.zeros(1, 3, 3)
    spigot.DependencyTree().argmax(s)
    spigot.DependencyTree().argmax(s)
    err = capsys.readouterr().err
    assert err.count("compiling the tree kernel 'chu_liu_edmonds'") == 1
