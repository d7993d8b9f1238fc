"""Bad input gives a ValueError that names the argument; nothing is mutated."""

from __future__ import annotations

import pytest
import torch

import spigot

ARC_STRUCTS = [
    spigot.DependencyTree(),
    spigot.DependencyTree(projective=True),
    spigot.DependencyGraph(),
]
OPS = ["argmax", "marginals", "log_partition", "project"]


@pytest.mark.parametrize("structure", ARC_STRUCTS, ids=repr)
@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize(
    ("scores", "lengths", "pattern"),
    [
        (torch.zeros(4, 4), None, r"`(scores|x)`.*3 dimensions"),
        (torch.zeros(1, 2, 4, 4), None, r"`(scores|x)`.*3 dimensions"),
        (torch.zeros(2, 4, 5), None, r"`(scores|x)`.*square"),
        (torch.zeros(2, 1, 1), None, r"`(scores|x)`.*n\+1 >= 2"),
        (torch.zeros(2, 4, 4, dtype=torch.long), None, r"`(scores|x)`.*floating"),
        ([[0.0]], None, r"`(scores|x)`.*torch.Tensor"),
        (torch.zeros(2, 4, 4), torch.tensor([3, 4]), r"`lengths`.*1\.\.3"),
        (torch.zeros(2, 4, 4), torch.tensor([0, 2]), r"`lengths`.*1\.\.3"),
        (torch.zeros(2, 4, 4), torch.tensor([3]), r"`lengths`.*shape"),
        (torch.zeros(2, 4, 4), torch.tensor([[3, 3]]), r"`lengths`.*shape"),
        (torch.zeros(2, 4, 4), torch.tensor([3.0, 3.0]), r"`lengths`.*integer"),
        (torch.zeros(2, 4, 4), [3, 3], r"`lengths`.*torch.Tensor"),
    ],
)
def test_bad_shapes_dtypes_lengths(structure, op, scores, lengths, pattern):
    with pytest.raises(ValueError, match=pattern):
        getattr(structure, op)(scores, lengths)


@pytest.mark.parametrize("structure", ARC_STRUCTS, ids=repr)
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_scores_on_valid_arcs(structure, bad):
    s = torch.zeros(2, 4, 4)
    s[1, 0, 2] = bad
    with pytest.raises(ValueError, match=r"`scores` must be finite.*\(1, 0, 2\)"):
        structure.argmax(s)
    with pytest.raises(ValueError, match="must be finite"):
        spigot.structured_argmax(s, structure)


def test_non_finite_values_off_the_valid_arcs_are_allowed():
    # -inf on the diagonal, in column 0 and on padding is a common way to mask
    s = torch.randn(2, 4, 4)
    s[:, :, 0] = -float("inf")
    s.diagonal(dim1=1, dim2=2).fill_(-float("inf"))
    s[1, 3, :] = float("nan")
    s[1, :, 3] = float("nan")
    lengths = torch.tensor([3, 2])
    for structure in ARC_STRUCTS:
        for op in OPS:
            out = getattr(structure, op)(s, lengths)
            assert torch.isfinite(out).all()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_check_finite_over_magnitudes_masks_and_dtypes(dtype):
    """The one-pass test (a finite sum) and the entrywise one agree: finite values whose sum
    overflows pass, a non-finite entry raises where the mask marks it valid and only there."""
    from spigot._validate import check_finite

    big = torch.finfo(dtype).max
    g = torch.Generator().manual_seed(0)
    for scale in (1e-3, 1.0, big / 4, big):
        x = (scale * torch.rand(3, 5, generator=g, dtype=torch.float64)).to(dtype)
        # from big / 4 on, a sum in the tensor's own dtype overflows (float32 and float64:
        # the entrywise test decides)
        assert bool(torch.isfinite(x.double().sum().to(dtype))) == (scale < big / 4)
        assert check_finite(x, None, "x") is True  # every entry finite
        for bad in (float("nan"), float("inf"), -float("inf")):
            for at in ((0, 0), (2, 4), (1, 2)):
                y = x.clone()
                y[at] = bad
                mask = torch.ones(3, 5, dtype=torch.bool)
                with pytest.raises(ValueError, match=rf"`x` must be finite.*{at[0]}, {at[1]}"):
                    check_finite(y, mask, "x")
                mask[at] = False
                assert check_finite(y, mask, "x") is False  # masked: allowed, reported
    assert check_finite(torch.zeros(0, 3, dtype=dtype), None, "x") is True


def test_categorical_bad_input():
    cat = spigot.Categorical()
    with pytest.raises(ValueError, match="`scores`.*floating"):
        cat.argmax(torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="`lengths` must be None"):
        cat.argmax(torch.zeros(3), torch.tensor([1]))
    with pytest.raises(ValueError, match="`scores` must be finite"):
        cat.marginals(torch.tensor([0.0, float("nan")]))


def test_bad_estimator_eta_structure():
    s = torch.zeros(1, 3, 3)
    tree = spigot.DependencyTree()
    with pytest.raises(ValueError, match="`estimator` must be one of"):
        spigot.structured_argmax(s, tree, estimator="gumbel")
    for eta in (0.0, -1.0, float("nan"), float("inf"), "1", True):
        with pytest.raises(ValueError, match="`eta`"):
            spigot.structured_argmax(s, tree, eta=eta)
    with pytest.raises(ValueError, match="'ste' has no option 'eta' \\(its options: gamma\\)"):
        spigot.structured_argmax(s, tree, estimator="ste", eta=0.5)
    with pytest.raises(
        ValueError, match="`estimator` must be one of blackbox, .*, ste-marginals; got 'sparsemax'"
    ):
        spigot.StructuredArgmax(tree, estimator="sparsemax")
    with pytest.raises(
        ValueError, match="'marginals' has no option 'etta' \\(its options: none\\)"
    ):
        spigot.StructuredArgmax(tree, estimator="marginals", etta=1.0)
    with pytest.raises(ValueError, match="`structure`"):
        spigot.structured_argmax(s, "tree")
    with pytest.raises(ValueError, match="`structure`"):
        spigot.StructuredArgmax("tree")


def test_import_is_light():
    """`import spigot` adds no top-level package beyond what torch and numpy import."""
    import subprocess
    import sys

    code = (
        "import sys, torch, numpy; before = {m.split('.')[0] for m in sys.modules}; "
        "import spigot; after = {m.split('.')[0] for m in sys.modules}; "
        "print(','.join(sorted(after - before)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "spigot"
