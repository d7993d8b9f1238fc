"""The masking helpers of the hot paths (``spigot._masking``) and SPIGOT's step size built on
them: the same values as ``torch.where`` / an explicit float64 norm over a sweep of shapes,
expanded masks, dtypes and magnitudes, with NaN and inf outside the mask ignored."""

from __future__ import annotations

import pytest
import torch

from spigot._masking import compact, masked_norm, zero_outside, zero_outside_
from spigot.estimators.hard import spigot_step_size

DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64]


def _case(seed: int, dtype: torch.dtype, scale: float, expanded: bool):
    g = torch.Generator().manual_seed(seed)
    x = (scale * torch.randn(3, 5, 5, 4, generator=g, dtype=torch.float64)).to(dtype)
    arcs = torch.rand(3, 5, 5, 1, generator=g) > 0.3
    mask = arcs.expand(3, 5, 5, 4) if expanded else (torch.rand(3, 5, 5, 4, generator=g) > 0.3)
    return x, mask


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("expanded", [True, False])
@pytest.mark.parametrize("poison", [None, float("nan"), float("inf"), -float("inf")])
def test_zero_outside_is_torch_where(dtype, expanded, poison):
    for seed in range(3):
        x, mask = _case(seed, dtype, 3.0, expanded)
        if poison is not None:
            x = torch.where(mask, x, torch.tensor(poison, dtype=dtype))  # every masked entry
        ref = torch.where(mask, x, torch.zeros((), dtype=dtype))
        out = zero_outside(x, mask)
        assert out.dtype == dtype and torch.equal(out, ref)  # -0.0 == 0.0
        y = x.clone()
        assert zero_outside_(y, mask) is y and torch.equal(y, ref)
        # with the answer of the finiteness test given (as check_finite returns it)
        finite = poison is None
        assert torch.equal(zero_outside(x, mask, finite=finite), ref)
        y = x.clone()
        assert torch.equal(zero_outside_(y, mask, finite=finite), ref)
    # the compact mask broadcasts back to the same values, with no expanded dimension left
    c = compact(mask)
    assert torch.equal(c.expand_as(mask), mask)
    assert all(st != 0 or sz == 1 for sz, st in zip(c.shape, c.stride(), strict=True))
    assert c.shape[-1] == (1 if expanded else 4)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("expanded", [True, False])
@pytest.mark.parametrize("scale", [1e-30, 1e-3, 1.0, 1e3, 1e30])
def test_masked_norm_and_the_step_size_match_float64(dtype, expanded, scale):
    for seed in range(3):
        x, mask = _case(seed, dtype, scale, expanded)
        x = torch.where(mask, x, torch.tensor(float("nan"), dtype=dtype))  # ignored
        ref = torch.where(mask, x, 0).double().pow(2).sum((1, 2, 3), keepdim=True).sqrt()
        norm = masked_norm(x, mask, (1, 2, 3))
        if 1e-15 < scale < 1e15 or dtype == torch.float64:  # float32 squares under/overflow
            torch.testing.assert_close(norm.double(), ref, rtol=1e-5, atol=0)
        # (an underflow gives a norm below any max_step: eta = 1, exact; an overflow gives inf,
        # which the step size replaces by the scaled norm)
        for max_step in (5 / 32, 1.0):
            eta = spigot_step_size(x, 3, mask, max_step)
            want = torch.clamp(max_step / ref, max=1.0)
            torch.testing.assert_close(eta.double(), want, rtol=1e-5, atol=0)
            assert eta.dtype == dtype
