"""The benchmark's peer wrappers (benchmarks/peers.py) against brute-force enumeration.

Each wrapper takes and returns spigot's convention (scores[b, h, m], index 0 = root); this
checks, on a tiny ragged batch, that its argmax has the best score over all trees of the
requested kind and that its marginals are the exact ones.  Skipped when the peer is not
installed (pip install -e '.[bench]', see benchmarks/README.md).
"""

from __future__ import annotations

import importlib.util
import itertools
from pathlib import Path

import pytest
import torch

from _load import load_script

PEERS_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "peers.py"


peers = load_script(PEERS_PATH, "_spigot_bench_peers")
# The peers warn about deprecated indexing / distribution validation on current torch.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

MODULES = {"torch-struct": "torch_struct", "supar": "supar", "networkx": "networkx"}
CASES = [
    ("torch-struct", "eisner"),
    ("torch-struct", "eisner-multi"),
    ("torch-struct", "mtt"),
    ("torch-struct", "inside"),
    ("supar", "eisner"),
    ("supar", "eisner-multi"),
    ("supar", "cle"),
    ("supar", "mtt"),
    ("supar", "inside"),
    ("networkx", "cle"),
]


def _require(peer: str):
    if peer == "supar":
        if importlib.util.find_spec("supar") is None:
            pytest.importorskip("supar")  # not installed: skips
        # `import supar` also needs nltk/dill; the wrapper can do without, so ask it.
        status = peers.peer_status("supar")
        if not status.available:
            pytest.skip(status.note)
    else:
        pytest.importorskip(MODULES[peer])


def enumerate_trees(length: int, projective: bool, single_root: bool):
    """All head lists (index 0 = -1) over `length` words forming a tree rooted at 0."""
    for hs in itertools.product(range(length + 1), repeat=length):
        heads = [-1, *hs]
        if any(heads[m] == m for m in range(1, length + 1)):
            continue
        if peers.is_tree(heads, projective, single_root):
            yield heads


def brute_force(scores: torch.Tensor, length: int, projective: bool, single_root: bool):
    """(best tree score, exact marginals [n+1, n+1]) for one sentence, in float64."""
    s = scores.double()
    trees, weights = [], []
    for heads in enumerate_trees(length, projective, single_root):
        z = torch.zeros_like(s)
        for m in range(1, length + 1):
            z[heads[m], m] = 1
        trees.append(z)
        weights.append(float((z * s).sum()))
    w = torch.tensor(weights, dtype=torch.float64)
    p = torch.softmax(w, 0)
    mu = torch.einsum("k,kij->ij", p, torch.stack(trees))
    return float(w.max()), mu


def test_enumeration_counts():
    # Trees rooted at 0 over n words: (n+1)^(n-1) (Cayley); with one root child: n^(n-1).
    assert sum(1 for _ in enumerate_trees(4, False, False)) == 125
    assert sum(1 for _ in enumerate_trees(4, False, True)) == 64
    # Projective: binom(3n, n) / (2n + 1) (OEIS A001764); single root child:
    # binom(3n - 2, n - 1) / n (OEIS A006013).
    assert sum(1 for _ in enumerate_trees(4, True, False)) == 55
    assert sum(1 for _ in enumerate_trees(4, True, True)) == 30
    assert sum(1 for _ in enumerate_trees(3, True, True)) == 7


@pytest.mark.parametrize(("peer", "op"), CASES)
def test_peer_matches_brute_force(peer, op):
    _require(peer)
    impl = peers.peer_impl(peer, op)
    assert impl is not None
    spec = peers.OP_SPEC[op]
    gen = torch.Generator().manual_seed(1234)
    n = 4
    scores = torch.randn(3, n + 1, n + 1, generator=gen)
    lengths = torch.tensor([4, 3, 2])
    out = impl(scores, lengths)
    assert out.shape == scores.shape
    for b, length in enumerate(lengths.tolist()):
        best, mu = brute_force(scores[b], length, spec["projective"], spec["single_root"])
        if spec["kind"] == "argmax":
            assert not peers.check_trees(
                out[b : b + 1], lengths[b : b + 1], spec["projective"], spec["single_root"]
            )
            got = float(peers.tree_score(out[b : b + 1], scores[b : b + 1])[0])
            assert got == pytest.approx(best, rel=1e-5, abs=1e-5)
        else:
            # torch-struct's matrix-tree adds eps=1e-5 to each exp(score): a ~1e-5 bias.
            torch.testing.assert_close(out[b].double(), mu, atol=1e-4, rtol=0)


def test_torch_struct_patch_keeps_values():
    _require("torch-struct")
    import torch_struct

    peers.peer_status("torch-struct")  # installs the run-time patch
    gen = torch.Generator().manual_seed(0)
    pot = torch.randn(2, 5, 5, generator=gen)
    lengths = torch.tensor([5, 3])
    # Without grad on the input (the case of torch-struct issue #104) and with it.
    logz = torch_struct.DependencyCRF(pot, lengths=lengths, multiroot=False).partition
    leaf = pot.clone().requires_grad_(True)
    logz2 = torch_struct.DependencyCRF(leaf, lengths=lengths, multiroot=False).partition
    torch.testing.assert_close(logz, logz2.detach())
    logz2.sum().backward()
    assert leaf.grad is not None
    # padding of the second sentence gets no marginal mass
    assert float(leaf.grad[1, 3:, :].abs().sum() + leaf.grad[1, :, 3:].abs().sum()) == 0.0


def test_conversions_round_trip():
    gen = torch.Generator().manual_seed(0)
    scores = torch.randn(2, 5, 5, generator=gen)
    scores[:, :, 0] = 0  # no arc enters the root
    scores.diagonal(dim1=1, dim2=2).zero_()  # no self-loop
    torch.testing.assert_close(peers.from_torch_struct(peers.to_torch_struct(scores)), scores)
    torch.testing.assert_close(peers.from_supar(peers.to_supar(scores)), scores)
